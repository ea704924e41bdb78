//! An in-process client whose snapshot lags the change stream it follows: behind a load
//! balancer, where the snapshot may come from a replica that has not applied the change
//! yet, and after the server's database was restored from a backup, when the sequence
//! numbers go back. Either way the client must end up serving what the server serves.
//! And a snapshot that takes longer to download than any one request may take.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use flagd_client::{ClientOptions, InProcessClient};
use flagd_tests::{Server, ServerOptions, pipe};
use serde_json::json;

use crate::client::{FLAG, ctx, eventually, runtime, set_up, toggle};

/// A TCP balancer on loopback that hands its connections to `backends` in turn.
fn round_robin(backends: Vec<SocketAddr>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (turn, inbound) in listener.incoming().enumerate() {
            let (Ok(inbound), Ok(outbound)) = (inbound, TcpStream::connect(backends[turn % backends.len()])) else {
                continue;
            };
            pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            pipe(outbound, inbound);
        }
    });
    address
}

/// A link from loopback to `backend` that passes the answers at about 1 MB/s.
fn slow_link(backend: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let (Ok(inbound), Ok(outbound)) = (inbound, TcpStream::connect(backend)) else { continue };
            pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            std::thread::spawn(move || trickle(outbound, inbound));
        }
    });
    address
}

/// Copies `from` to `to` 8 KiB every 8 ms.
fn trickle(mut from: TcpStream, mut to: TcpStream) {
    let mut chunk = [0_u8; 8192];
    while let Ok(read @ 1..) = from.read(&mut chunk) {
        if to.write_all(&chunk[..read]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(8));
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn behind_a_balancer_the_client_asks_again_until_the_snapshot_reaches_the_change() {
    let a = Server::start().unwrap();
    let token = set_up(&a);
    // B shares A's database and polls it every 5 s: a snapshot from B lags A's stream.
    let b = Server::start_with(&ServerOptions {
        database_url: Some(format!("sqlite:{}", a.dir().join("flagd.db").display())),
        args: vec!["--sync-interval".into(), "5s".into()],
        ..ServerOptions::default()
    })
    .unwrap();
    let (version, _) = a.admin().config(FLAG, "production").unwrap();
    let seq = version["version"].as_i64().unwrap();
    let waited = a.admin().get(&format!("/api/v1/wait?seq={seq}&timeoutMs=10000")).unwrap();
    assert_eq!(waited.status, 200, "B applied the set-up: {}", waited.body);

    // The stream's connection goes to A, the snapshots' (kept alive) to B.
    let balancer = format!("http://{}", round_robin(vec![a.address(), b.address()]));
    let rt = runtime();
    let client = rt.block_on(InProcessClient::connect(&ClientOptions::new(balancer, &token))).unwrap();
    assert!(client.bool_value(FLAG, &ctx(), false));

    let off = toggle(&a.admin(), false);
    assert!(rt.block_on(client.wait_for_seq(off, Duration::from_secs(9))), "the kill switch never reached the client");
    assert!(!client.bool_value(FLAG, &ctx(), true));
}

#[test]
fn after_the_database_is_restored_from_a_backup_the_client_follows_the_server() {
    let mut server = Server::start().unwrap();
    let token = set_up(&server);
    server.kill().unwrap();
    let backup = server.dir().join("backup");
    copy_database(server.dir(), &backup);

    // Later changes, which the client sees: its snapshot's sequence number passes the backup's.
    server.restart(&ServerOptions::default()).unwrap();
    let admin = server.admin();
    for on in [false, true, false, true] {
        toggle(&admin, on);
    }
    let rt = runtime();
    let options = ClientOptions::new(server.url(), &token).max_backoff(Duration::from_millis(200));
    let client = rt.block_on(InProcessClient::connect(&options)).unwrap();
    let held = client.seq().unwrap();
    assert!(client.bool_value(FLAG, &ctx(), false));

    server.kill().unwrap();
    copy_database(&backup, server.dir());
    server.restart(&ServerOptions::default()).unwrap();
    let off = toggle(&server.admin(), false);
    assert!(off < held, "the restored sequence is behind the client's ({off} < {held})");
    assert!(
        eventually(Duration::from_secs(10), || !client.bool_value(FLAG, &ctx(), true)),
        "the client ignored the kill switch of the restored database (it holds {:?})",
        client.seq()
    );
    assert_eq!(client.seq(), Some(off));
    let served = server.client(Some(&token)).ofrep(FLAG, &json!({"companyId": 42})).unwrap();
    assert_eq!(served.body["value"], json!(false));
}

/// Copies the SQLite database with its journal files from `from` to `to`, leaving out
/// journal files the source does not have.
fn copy_database(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["flagd.db", "flagd.db-wal", "flagd.db-shm"] {
        let (source, target) = (from.join(name), to.join(name));
        if source.exists() {
            std::fs::copy(&source, &target).unwrap();
        } else if target.exists() {
            std::fs::remove_file(&target).unwrap();
        }
    }
}

#[test]
fn a_snapshot_slower_to_download_than_the_request_timeout_still_loads() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    // About 800 KB of snapshot: some 0.8 s at the link's pace, three times the timeout,
    // which is still long enough for each piece on a busy machine.
    let companies: Vec<String> = (0..60_000).map(|n| format!("company-{n}")).collect();
    let path = format!("/api/v1/flags/{FLAG}/environments/production/allow");
    server.admin().post(&path, &json!({"companies": companies})).unwrap().success("allow").unwrap();

    let url = format!("http://{}", slow_link(server.address()));
    let options = ClientOptions::new(url, &token).timeout(Duration::from_millis(250));
    let rt = runtime();
    let client = rt.block_on(InProcessClient::connect(&options)).unwrap();
    assert!(client.bool_value(FLAG, &ctx(), false));
}
