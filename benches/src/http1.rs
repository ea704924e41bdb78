//! Plain blocking HTTP/1.1 answers, read over std for the load harness's own clients
//! (`ofrep_churn`, `ofrep_latency`): they must not compete with the server and wrk for
//! the two cores more than their requests require.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Any failure of a harness client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP answer: status, `ETag` if any, body.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// A keep-alive connection as the harness's clients use it: no Nagle delay, and a read
/// that waits more than 5 s fails rather than hanging the run.
pub fn connect(addr: SocketAddr) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(BufReader::new(stream))
}

/// Reads one answer (`Content-Length` or chunked) from a keep-alive connection.
pub fn read_reply(conn: &mut BufReader<TcpStream>) -> Result<Reply, BoxError> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
    let (mut length, mut chunked, mut etag) = (0usize, false, None);
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse()?,
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "etag" => etag = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)?;
            let start = body.len();
            body.resize(start + size + 2, 0);
            conn.read_exact(&mut body[start..])?;
            body.truncate(start + size);
            if size == 0 {
                break;
            }
        }
    } else {
        body.resize(length, 0);
        conn.read_exact(&mut body)?;
    }
    Ok(Reply { status, etag, body })
}
