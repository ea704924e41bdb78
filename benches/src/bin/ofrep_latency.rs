//! The load harness's latency probe (see benches/README.md, "Server load").
//!
//! `ofrep_latency --addr HOST:PORT --path PATH [--rate 30000] [--connections 32]
//! [--seconds 10]` sends the wrk script's OFREP request (`OFREP_TOKEN`, `OFREP_CONTEXT`)
//! at a fixed rate, whatever the server's speed, and prints one `RESULT key=value …` line
//! in the wrk script's format. wrk keeps every connection busy, so the latency it reports
//! is mostly the queue it builds itself (connections / throughput); this probe offers both
//! servers the same load below their capacity, so their latencies compare what each adds.
//!
//! Request `k` of connection `i` is due at `(k * connections + i) / rate` seconds. Its
//! latency counts from when it was due if the previous answer on its connection came too
//! late to send it then (the server was behind: the wait is the server's), and otherwise
//! from when it was sent (the probe's own timer is not the server's).

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use flagd_benches::http1::{BoxError, connect, read_reply};

fn main() {
    if let Err(e) = run() {
        eprintln!("ofrep_latency: {e}");
        std::process::exit(1);
    }
}

struct Options {
    addr: SocketAddr,
    path: String,
    rate: f64,
    connections: usize,
    seconds: f64,
}

fn options() -> Result<Options, BoxError> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        addr: "127.0.0.1:8013".parse()?,
        path: String::new(),
        rate: 30_000.0,
        connections: 32,
        seconds: 10.0,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--addr" => o.addr = value()?.parse()?,
            "--path" => o.path = value()?,
            "--rate" => o.rate = value()?.parse()?,
            "--connections" => o.connections = value()?.parse()?,
            "--seconds" => o.seconds = value()?.parse()?,
            _ => return Err(format!("unknown argument {arg}").into()),
        }
    }
    if !o.path.starts_with('/') {
        return Err("--path must be given, starting with /".into());
    }
    if !(o.rate > 0.0 && o.seconds > 0.0 && o.connections > 0) {
        return Err("--rate, --seconds and --connections must be positive".into());
    }
    Ok(o)
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Latency of every answered request, in nanoseconds.
    latencies: Vec<u64>,
    /// Answers with a status of 400 or more (wrk's "non-2xx").
    failed: u64,
    connect: u64,
    read: u64,
    write: u64,
}

fn run() -> Result<(), BoxError> {
    let o = options()?;
    let token = std::env::var("OFREP_TOKEN").map_err(|_| "OFREP_TOKEN is not set")?;
    let context = std::env::var("OFREP_CONTEXT").map_err(|_| "OFREP_CONTEXT is not set")?;
    let body = format!("{{\"context\":{context}}}");
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        o.path,
        o.addr,
        body.len()
    )
    .into_bytes();
    let period = Duration::from_secs_f64(1.0 / o.rate);
    // Connections open before the clock starts, so no request waits for a handshake.
    let streams = (0..o.connections).map(|_| connect(o.addr)).collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(o.seconds);
    let connections = o.connections as u32;
    let tallies = std::thread::scope(|scope| {
        let workers: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                let request = &request;
                let first = start + period * i as u32;
                scope.spawn(move || probe(o.addr, stream, request, first, period * connections, end))
            })
            .collect();
        workers.into_iter().map(|w| w.join().map_err(|_| "a probe thread panicked")).collect::<Result<Vec<_>, _>>()
    })?;
    report(tallies, start.elapsed().min(end - start).as_secs_f64());
    Ok(())
}

/// One connection's requests, due every `every` from `first` until `end`.
fn probe(
    addr: SocketAddr,
    mut conn: BufReader<TcpStream>,
    request: &[u8],
    first: Instant,
    every: Duration,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut due = first;
    while due < end {
        let now = Instant::now();
        let from = if now < due {
            std::thread::sleep(due - now);
            Instant::now()
        } else {
            due
        };
        let answered = match conn.get_mut().write_all(request) {
            Err(_) => Err(&mut tally.write),
            Ok(()) => read_reply(&mut conn).map_err(|_| &mut tally.read),
        };
        match answered {
            Ok(reply) => {
                tally.latencies.push(u64::try_from(from.elapsed().as_nanos()).unwrap_or(u64::MAX));
                tally.failed += u64::from(reply.status >= 400);
            }
            Err(count) => {
                *count += 1;
                // Whatever the connection holds now is unknown: start a fresh one.
                match connect(addr) {
                    Ok(fresh) => conn = fresh,
                    Err(_) => tally.connect += 1,
                }
            }
        }
        due += every;
    }
    tally
}

fn report(tallies: Vec<Tally>, seconds: f64) {
    let mut all: Vec<u64> = tallies.iter().flat_map(|t| t.latencies.iter().copied()).collect();
    all.sort_unstable();
    let at = |q: f64| {
        let rank = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len().max(1));
        all.get(rank - 1).map_or(0, |ns| ns / 1000)
    };
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    println!(
        "RESULT requests={} seconds={seconds:.3} rps={:.1} p50_us={} p99_us={} max_us={} non2xx={} connect={} read={} write={} timeout=0",
        all.len(),
        all.len() as f64 / seconds,
        at(0.5),
        at(0.99),
        all.last().map_or(0, |ns| ns / 1000),
        sum(|t| t.failed),
        sum(|t| t.connect),
        sum(|t| t.read),
        sum(|t| t.write),
    );
}
