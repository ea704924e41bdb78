//! The database goes away and comes back while flagd-server is under evaluation load:
//! evaluation goes on from memory with no failure, writes are refused with 503 while the
//! database is down and succeed again after it returns (no restart), `/readyz` says what
//! is happening, and every acknowledged write is in the audit log; a replica started while
//! its database is down serves its snapshot cache, which holds even a write acknowledged
//! as the server stopped.
//!
//! Each backend runs as an instance of its own that the test may stop: a PostgreSQL
//! cluster made with `pg_createcluster` (stopped and started with `pg_ctlcluster`), and
//! a MariaDB server started from a fresh data directory. Both need root and Debian's
//! PostgreSQL / MariaDB packages, which this project's machines have.
//!
//! A database that stays up but refuses connections (as an operator makes it before
//! maintenance) is an outage for writes too; that test uses a database of its own on the
//! server `FLAGD_TEST_POSTGRES_URL` names.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flagd_tests::{Client, Server, ServerOptions, TempDir, databases, free_port, run_checked, signal, tcp_sockets};
use serde_json::{Value, json};

const FLAG: &str = "portal";

/// A database server the test may stop and start.
trait Instance {
    fn url(&self) -> String;
    fn stop(&mut self);
    fn start(&mut self);
}

/// A PostgreSQL cluster of its own (trust authentication, loopback), dropped afterwards.
struct Postgres {
    version: String,
    name: String,
    port: u16,
    dir: TempDir,
}

impl Postgres {
    fn create() -> Self {
        let dir = TempDir::new("outage-pg").unwrap();
        let clusters = run_checked("pg_lsclusters", &["-h"], dir.path()).unwrap();
        let version = clusters.split_whitespace().next().expect("a PostgreSQL cluster exists").to_owned();
        let port = free_port().unwrap();
        static CLUSTERS: AtomicU64 = AtomicU64::new(0);
        let name = format!("flagd_outage_{}_{}", std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed));
        let port_arg = port.to_string();
        let args = [version.as_str(), &name, "-p", &port_arg, "--start", "--", "--auth=trust"];
        run_checked("pg_createcluster", &args, dir.path()).unwrap();
        Self { version, name, port, dir }
    }

    fn ctl(&self, action: &str) {
        run_checked("pg_ctlcluster", &[&self.version, &self.name, action], self.dir.path()).unwrap();
    }
}

impl Instance for Postgres {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
    fn stop(&mut self) {
        self.ctl("stop");
    }
    fn start(&mut self) {
        self.ctl("start");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = run_checked("pg_dropcluster", &[&self.version, &self.name, "--stop"], self.dir.path());
    }
}

/// A MariaDB server on a data directory of its own, without grant tables (loopback only).
struct MariaDb {
    dir: TempDir,
    port: u16,
    server: Option<Child>,
}

impl MariaDb {
    fn create() -> Self {
        let dir = TempDir::new("outage-mariadb").unwrap();
        run_checked("chown", &["mysql:mysql", &dir.path().display().to_string()], dir.path()).unwrap();
        let datadir = format!("--datadir={}", dir.path().join("data").display());
        run_checked("mariadb-install-db", &[&datadir, "--user=mysql", "--skip-test-db"], dir.path()).unwrap();
        let mut db = Self { port: free_port().unwrap(), dir, server: None };
        db.start();
        let port = db.port.to_string();
        run_checked("mysql", &["-uroot", "-h127.0.0.1", "-P", &port, "-e", "CREATE DATABASE flagd"], db.dir.path())
            .unwrap();
        db
    }
}

impl Instance for MariaDb {
    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/flagd", self.port)
    }
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            signal(server.id(), "-TERM").unwrap();
            server.wait().unwrap();
        }
    }
    fn start(&mut self) {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", path("mysqld.sock")))
            .arg(format!("--pid-file={}", path("mysqld.pid")))
            .args(["--user=mysql", "--bind-address=127.0.0.1", "--skip-grant-tables"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("mysqld.log")).unwrap())
            .spawn()
            .unwrap();
        self.server = Some(child);
        let port = self.port.to_string();
        let up = || run_checked("mysqladmin", &["-uroot", "-h127.0.0.1", "-P", &port, "ping"], self.dir.path()).is_ok();
        eventually("MariaDB answers", Duration::from_secs(30), up);
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn eventually(what: &str, deadline: Duration, condition: impl Fn() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn allow(admin: &Client, company: u32) -> Result<(u16, Value), flagd_tests::Error> {
    let path = format!("/api/v1/flags/{FLAG}/environments/production/allow");
    let body = json!({"companies": [company.to_string()], "reason": format!("company {company}")});
    admin.request("POST", &path, Some(&body), &[]).map(|r| (r.status, r.body))
}

fn survive_an_outage(db: &mut dyn Instance, backend: &str) {
    let server =
        Server::start_with(&ServerOptions { database_url: Some(db.url()), ..ServerOptions::default() }).unwrap();
    let admin = server.admin().with_timeout(Duration::from_secs(15));
    admin.create_flag(&json!({"key": FLAG})).unwrap();
    admin.set_config(FLAG, "production", &json!({"state": "ENABLED", "fallthrough": {"variant": "on"}})).unwrap();
    let token = admin.create_token("app", "evaluate", Some("production")).unwrap();
    let mut acknowledged = Vec::new();
    for company in 1..=3 {
        let (status, body) = allow(&admin, company).unwrap();
        assert_eq!(status, 200, "{backend}: {body}");
        acknowledged.push(body["version"].as_i64().unwrap());
    }

    let (stop, total, failed) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            let client = server.client(Some(&token));
            while !stop.load(Ordering::Relaxed) {
                let ok = client.ofrep(FLAG, &json!({"companyId": 42})).is_ok_and(|r| r.body["value"] == json!(true));
                total.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });

        db.stop();
        let readiness = || server.client(None).get("/readyz").unwrap().body;
        eventually(&format!("{backend}: /readyz reports the database down"), Duration::from_secs(15), || {
            readiness()["database"] == "down"
        });
        let ready = readiness();
        assert_eq!(ready["status"], "ready", "{backend}: evaluation is still served");
        let age = ready["snapshotAgeMs"].as_i64().unwrap();
        eventually(&format!("{backend}: the snapshot's age grows"), Duration::from_secs(5), || {
            readiness()["snapshotAgeMs"].as_i64().unwrap() > age
        });
        let (status, body) = allow(&admin, 100).unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (503, Some("DATABASE_UNAVAILABLE")), "{backend}: {body}");
        let during = total.load(Ordering::Relaxed);

        db.start();
        let started = Instant::now();
        let recovered = loop {
            match allow(&admin, 101) {
                Ok((200, body)) => break body["version"].as_i64().unwrap(),
                Ok((503, _)) | Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => panic!("{backend}: writes did not come back: {other:?}"),
            }
        };
        acknowledged.push(recovered);
        eventually(&format!("{backend}: /readyz reports the database up"), Duration::from_secs(15), || {
            readiness()["database"] == "up"
        });
        stop.store(true, Ordering::Relaxed);
        assert!(total.load(Ordering::Relaxed) > during, "{backend}: evaluations went on");
    });
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{backend}: of {} evaluations", total.load(Ordering::Relaxed));

    let audit = admin.get(&format!("/api/v1/audit?flag={FLAG}&limit=100")).unwrap().body;
    let seqs: Vec<i64> = audit["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    for version in &acknowledged {
        assert!(seqs.contains(version), "{backend}: acknowledged write {version} audited: {seqs:?}");
    }
    let refused = audit["events"].as_array().unwrap().iter().any(|e| e["reason"] == "company 100");
    assert!(!refused, "{backend}: the refused write left no trace");
}

#[test]
fn postgresql_stopping_and_starting_under_load_loses_no_evaluation_and_no_acknowledged_write() {
    survive_an_outage(&mut Postgres::create(), "postgres");
}

#[test]
fn mariadb_stopping_and_starting_under_load_loses_no_evaluation_and_no_acknowledged_write() {
    survive_an_outage(&mut MariaDb::create(), "mariadb");
}

#[test]
fn a_replica_started_while_its_database_is_down_serves_its_snapshot_cache_until_the_database_returns() {
    let mut db = Postgres::create();
    let cache_dir = TempDir::new("snapshot-cache").unwrap();
    let cache = cache_dir.path().join("flagd-cache.json");
    let options = ServerOptions {
        database_url: Some(db.url()),
        args: vec!["--snapshot-cache".into(), cache.display().to_string()],
        ..ServerOptions::default()
    };
    let mut server = Server::start_with(&options).unwrap();
    let admin = server.admin().with_timeout(Duration::from_secs(15));
    admin.create_flag(&json!({"key": FLAG})).unwrap();
    let config = json!({"state": "ENABLED", "allow": ["42"]});
    let stored = admin.set_config(FLAG, "production", &config).unwrap();
    let token = admin.create_token("app", "evaluate", Some("production")).unwrap();
    let version = admin.get("/readyz").unwrap().body["appliedSeq"].as_i64().unwrap();
    assert!(version >= stored["version"].as_i64().unwrap());
    let cached_seq = || {
        let text = std::fs::read_to_string(&cache).unwrap_or_default();
        serde_json::from_str::<Value>(&text).ok().and_then(|c| c["seq"].as_i64())
    };
    eventually("the cache holds the last change", Duration::from_secs(10), || cached_seq() >= Some(version));
    // It holds the token hashes: for the server's user alone.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cache).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the snapshot cache's mode is {mode:o}");
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());

    db.stop();
    server.restart(&options).unwrap();
    let evaluate = server.client(Some(&token));
    for (company, expected) in [(42, true), (7, false)] {
        let reply = evaluate.ofrep(FLAG, &json!({"companyId": company})).unwrap();
        assert_eq!((reply.status, &reply.body["value"]), (200, &json!(expected)), "company {company}: {}", reply.body);
    }
    let ready = server.client(None).get("/readyz").unwrap().body;
    assert_eq!((&ready["source"], &ready["database"]), (&json!("snapshot-cache"), &json!("down")), "{ready}");
    let (status, body) = allow(&server.admin(), 100).unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("DATABASE_UNAVAILABLE")), "{body}");

    db.start();
    eventually("the server goes back to the database", Duration::from_secs(30), || {
        let ready = server.client(None).get("/readyz").unwrap().body;
        ready["source"] == "database" && ready["database"] == "up"
    });
    let (status, body) = allow(&server.admin(), 101).unwrap();
    assert_eq!(status, 200, "writes work again: {body}");
}

/// A write that began before the server was told to stop is finished and acknowledged
/// (the server drains what it has begun), and its change is in the snapshot cache the
/// server leaves behind, which a boot with the database down would serve. The write is
/// held open by hand: its headers and half its body, then SIGTERM, then, once the server
/// takes no new connection (it is stopping), the rest.
#[test]
fn a_write_acknowledged_while_the_server_stops_is_in_its_snapshot_cache() {
    use std::io::{Read, Write};
    let cache_dir = TempDir::new("snapshot-cache").unwrap();
    let cache = cache_dir.path().join("flagd-cache.json");
    let options = ServerOptions {
        args: vec!["--snapshot-cache".into(), cache.display().to_string()],
        ..ServerOptions::default()
    };
    let mut server = Server::start_with(&options).unwrap();
    server.admin().create_flag(&json!({"key": FLAG})).unwrap();

    let body = json!({"reason": "enabled as the server stops"}).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut write = std::net::TcpStream::connect(server.address()).unwrap();
    let head = format!(
        "POST /api/v1/flags/{FLAG}/environments/production/enable HTTP/1.1\r\nHost: flagd\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{first}",
        server.admin_token(),
        body.len()
    );
    write.write_all(head.as_bytes()).unwrap();
    let (port, ours) = (server.address().port(), write.local_addr().unwrap().port());
    eventually("the server reads the write's head", Duration::from_secs(10), || {
        unread_by_server(port, ours) == Some(0)
    });
    signal(server.pid(), "-TERM").unwrap();
    eventually("the server stops taking connections", Duration::from_secs(10), || {
        std::net::TcpStream::connect(server.address()).is_err()
    });
    write.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    write.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let version = answer.split("\"version\":").nth(1).and_then(|v| v.split([',', '}']).next()).unwrap().to_owned();
    assert!(server.terminate(Duration::from_secs(10)).unwrap().success());

    let cached: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_eq!(cached["seq"].to_string(), version, "the cache holds change {version}: {}", cached["seq"]);
}

/// How many bytes of the connection from loopback port `client` to `server` the server
/// has not read yet; `None` while it has no such connection.
fn unread_by_server(server: u16, client: u16) -> Option<u64> {
    tcp_sockets().into_iter().find(|s| s.local_port == server && s.remote_port == client).map(|s| s.unread)
}

/// `ALTER DATABASE … ALLOW_CONNECTIONS false` and ending its sessions, as an operator does
/// before maintenance: the server answers every connection with an error of its own
/// (SQLSTATE 55000) rather than not answering, and writes must still get 503, not 500.
#[test]
fn a_postgresql_database_refusing_connections_answers_writes_with_503_until_it_takes_them_again() {
    let found = databases("refusing").unwrap().into_iter().find(|(backend, _)| *backend == "postgres");
    let (Some((_, db)), Ok(base)) = (found, std::env::var("FLAGD_TEST_POSTGRES_URL")) else {
        eprintln!("FLAGD_TEST_POSTGRES_URL is not set: the test needs PostgreSQL");
        return;
    };
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let dir = TempDir::new("refusing").unwrap();
    let psql = |sql: &str| run_checked("psql", &[&base, "-qAtc", sql], dir.path()).unwrap();
    let server =
        Server::start_with(&ServerOptions { database_url: Some(db.url.clone()), ..ServerOptions::default() }).unwrap();
    let admin = server.admin().with_timeout(Duration::from_secs(15));
    admin.create_flag(&json!({"key": FLAG})).unwrap();

    psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    // The timeout makes it wait until each session has ended, so none is left to serve.
    psql(&format!("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = '{name}'"));
    let (status, body) = allow(&admin, 100).unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("DATABASE_UNAVAILABLE")), "{body}");

    psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    let (status, body) = allow(&admin, 101).unwrap();
    assert_eq!(status, 200, "writes work again at once: {body}");
    let audit = admin.get(&format!("/api/v1/audit?flag={FLAG}&limit=100")).unwrap().body;
    let refused = audit["events"].as_array().unwrap().iter().any(|e| e["reason"] == "company 100");
    assert!(!refused, "the refused write left no trace: {audit}");
}
