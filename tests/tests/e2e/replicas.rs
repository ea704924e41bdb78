//! Several flagd-server processes on one database (SQLite file, MariaDB, PostgreSQL):
//! a kill switch thrown on one replica is served by the others, the cluster-wide wait
//! returns only once it is, stopped replicas leave the cluster view, concurrent writers
//! on different replicas lose no update, `kill -9` loses no acknowledged write, replicas
//! started at the same moment on a new database all come up, a database blip during a
//! wait delays its answer rather than failing it, and a kill switch reaches a replica whose
//! heartbeat cannot be recorded.
//!
//! MariaDB and PostgreSQL come from `FLAGD_TEST_MYSQL_URL` / `FLAGD_TEST_POSTGRES_URL`
//! (as for the store contract); each test creates a database of its own there and drops
//! it afterwards. An unset URL leaves that backend out; a set one that does not answer
//! fails the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flagd_tests::{Database, KilledOnDrop, Proxy, Server, ServerOptions, databases, flagctl_binary, signal};
use serde_json::{Value, json};

const FLAG: &str = "portal";

fn replica(shared: &Database) -> Server {
    Server::start_with(&ServerOptions { database_url: Some(shared.url.clone()), ..ServerOptions::default() }).unwrap()
}

/// A replica on the shared database that polls it only once a minute.
fn polling_once_a_minute(shared: &Database) -> ServerOptions {
    ServerOptions {
        database_url: Some(shared.url.clone()),
        args: vec!["--sync-interval".into(), "1m".into()],
        ..ServerOptions::default()
    }
}

fn eventually(what: &str, deadline: Duration, condition: impl Fn() -> bool) {
    assert!(within(deadline, condition), "{what}: not within {deadline:?}");
}

/// Whether `condition` holds before `deadline` runs out, asking every 10 ms.
fn within(deadline: Duration, condition: impl Fn() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while !condition() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn served(server: &Server, token: &str) -> Value {
    server.client(Some(token)).ofrep(FLAG, &json!({"companyId": 42})).unwrap().body["value"].clone()
}

fn cluster_ids(server: &Server) -> Vec<String> {
    let view = server.admin().get("/api/v1/cluster").unwrap().body;
    view["replicas"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn own_id(server: &Server) -> String {
    let view = server.admin().get("/api/v1/cluster").unwrap().body;
    let me = view["replicas"].as_array().unwrap().iter().find(|r| r["this"] == json!(true)).unwrap();
    me["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_kill_switch_on_one_replica_is_served_by_all_and_the_wait_proves_it() {
    for (backend, shared) in databases("kill").unwrap() {
        eprintln!("replicas on {backend}: {}", shared.url);
        let (a, b) = (replica(&shared), replica(&shared));
        let mut c = replica(&shared);
        let admin = a.admin();
        admin.create_flag(&json!({"key": FLAG})).unwrap();
        admin.set_config(FLAG, "production", &json!({"state": "ENABLED", "fallthrough": {"variant": "on"}})).unwrap();
        let token = admin.create_token("app", "evaluate", Some("production")).unwrap();
        for other in [&b, &c] {
            eventually(&format!("{backend}: the token and flag reach {}", other.url()), Duration::from_secs(5), || {
                other.client(Some(&token)).ofrep(FLAG, &json!({"companyId": 42})).is_ok_and(|r| r.status == 200)
            });
        }
        eventually(&format!("{backend}: three replicas in the view"), Duration::from_secs(5), || {
            cluster_ids(&a).len() == 3
        });

        let off = admin.quick_op(FLAG, "production", "disable", Some(&json!({"reason": "incident"}))).unwrap();
        let version = off["version"].as_i64().unwrap();
        let waited = admin.get(&format!("/api/v1/wait?seq={version}&timeoutMs=5000")).unwrap();
        assert_eq!(waited.status, 200, "{backend}: {}", waited.body);
        assert_eq!(waited.body["scope"], "cluster");
        let applied: Vec<i64> =
            waited.body["replicas"].as_array().unwrap().iter().map(|r| r["appliedSeq"].as_i64().unwrap()).collect();
        assert!(applied.len() == 3 && applied.iter().all(|s| *s >= version), "{backend}: {applied:?}");
        // Once the wait returned, every replica serves the change: no polling here.
        for server in [&a, &b, &c] {
            assert_eq!(served(server, &token), json!(false), "{backend}: {}", server.url());
        }

        // The same through flagctl: `--wait` returns once all three serve the change.
        let out = std::process::Command::new(flagctl_binary().unwrap())
            .args(["enable", FLAG, "--env", "production", "--reason", "recovered", "--wait"])
            .env("FLAGD_URL", a.url())
            .env("FLAGD_TOKEN", a.admin_token())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{backend}: {stderr}");
        assert!(stderr.contains("applied by every live replica (3 replicas"), "{backend}: {stderr}");
        for server in [&a, &b, &c] {
            assert_eq!(served(server, &token), json!(true), "{backend}: {}", server.url());
        }

        let stopped = own_id(&c);
        assert!(c.terminate(Duration::from_secs(10)).unwrap().success());
        eventually(&format!("{backend}: a stopped replica leaves the view"), Duration::from_secs(5), || {
            !cluster_ids(&a).contains(&stopped)
        });
        assert_eq!(cluster_ids(&a).len(), 2, "{backend}");
    }
}

#[test]
fn concurrent_if_match_writers_on_different_replicas_lose_no_update() {
    for (backend, shared) in databases("ifmatch").unwrap() {
        let (a, b) = (replica(&shared), replica(&shared));
        a.admin().create_flag(&json!({"key": FLAG})).unwrap();
        let (_, etag) = a.admin().config(FLAG, "production").unwrap();
        let put = |server: &Server, company: &str| {
            let body = json!({"state": "ENABLED", "allow": [company]});
            let path = format!("/api/v1/flags/{FLAG}/environments/production");
            server.admin().request("PUT", &path, Some(&body), &[("if-match", &etag)]).unwrap().status
        };
        let (first, second) = std::thread::scope(|s| {
            let one = s.spawn(|| put(&a, "1"));
            let two = s.spawn(|| put(&b, "2"));
            (one.join().unwrap(), two.join().unwrap())
        });
        let mut statuses = [first, second];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 412], "{backend}: exactly one write wins, the other is told");
        let (config, _) = b.admin().config(FLAG, "production").unwrap();
        let winner = if first == 200 { "1" } else { "2" };
        assert_eq!(config["allow"], json!([winner]), "{backend}");
    }
}

#[test]
fn kill_9_during_acknowledged_writes_loses_nothing_acknowledged() {
    for (backend, shared) in databases("kill9").unwrap() {
        let mut server = replica(&shared);
        server.admin().create_flag(&json!({"key": FLAG})).unwrap();
        let admin = server.admin().with_timeout(Duration::from_secs(2));
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut acked = Vec::new();
                for i in 1..=100_000u32 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = json!({"percentage": f64::from(i % 100_000) / 1000.0, "reason": format!("write {i}")});
                    let path = format!("/api/v1/flags/{FLAG}/environments/production/rollout");
                    match admin.request("PUT", &path, Some(&body), &[]) {
                        Ok(r) if r.status == 200 => acked.push((i, r.body["version"].as_i64().unwrap())),
                        // The server died mid-request: not acknowledged, so no promise made.
                        _ => break,
                    }
                }
                acked
            });
            eventually(&format!("{backend}: writes flowing"), Duration::from_secs(20), || {
                server.admin().get("/readyz").is_ok_and(|r| r.body["appliedSeq"].as_i64().unwrap_or(0) > 25)
            });
            server.kill().unwrap();
            stop.store(true, Ordering::Relaxed);
            writer.join().unwrap()
        });
        assert!(acknowledged.len() > 20, "{backend}: {} writes before the kill", acknowledged.len());

        server.restart(&ServerOptions { database_url: Some(shared.url.clone()), ..ServerOptions::default() }).unwrap();
        let admin = server.admin();
        let events = admin.get(&format!("/api/v1/audit?flag={FLAG}&limit=1000")).unwrap().body;
        let audited: std::collections::HashMap<i64, String> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["seq"].as_i64().unwrap(), e["reason"].as_str().unwrap_or_default().to_owned()))
            .collect();
        for (i, version) in &acknowledged {
            assert_eq!(audited.get(version), Some(&format!("write {i}")), "{backend}: acknowledged write {i} audited");
        }
        // The stored state is one whole write: the last acknowledged one or one after it.
        let (config, etag) = admin.config(FLAG, "production").unwrap();
        let stored_version: i64 = etag.trim_matches('"').parse().unwrap();
        let (last_i, last_version) = *acknowledged.last().unwrap();
        assert!(stored_version >= last_version, "{backend}: stored {stored_version} < acknowledged {last_version}");
        let reason = &audited[&stored_version];
        let i: u32 = reason.trim_start_matches("write ").parse().unwrap();
        assert!(i >= last_i, "{backend}");
        let on = config["fallthrough"]["rollout"]["variants"][0]["weight"].as_f64().unwrap();
        assert!((on - f64::from(i % 100_000) / 1000.0).abs() < 1e-9, "{backend}: {config}");
    }
}

#[test]
fn postgresql_replicas_are_woken_by_notify_not_by_polling() {
    let Some((_, shared)) = databases("notify").unwrap().into_iter().find(|(backend, _)| *backend == "postgres") else {
        eprintln!("FLAGD_TEST_POSTGRES_URL is not set: the NOTIFY test needs PostgreSQL");
        return;
    };
    // Polling once a minute: anything faster than that came through NOTIFY.
    let options = polling_once_a_minute(&shared);
    let (a, b) = (Server::start_with(&options).unwrap(), Server::start_with(&options).unwrap());
    let admin = a.admin();
    admin.create_flag(&json!({"key": FLAG})).unwrap();
    let token = admin.create_token("app", "evaluate", Some("production")).unwrap();
    let started = Instant::now();
    admin.set_config(FLAG, "production", &json!({"state": "ENABLED", "fallthrough": {"variant": "on"}})).unwrap();
    eventually("the change reaches the other replica", Duration::from_secs(10), || {
        b.client(Some(&token)).ofrep(FLAG, &json!({"companyId": 42})).is_ok_and(|r| r.body["value"] == json!(true))
    });
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn a_write_on_one_replica_does_not_skip_what_another_committed_just_before() {
    for (backend, shared) in databases("gap").unwrap() {
        // Polling once a minute: whatever a replica serves sooner came with its own write.
        let options = polling_once_a_minute(&shared);
        let (a, b) = (Server::start_with(&options).unwrap(), Server::start_with(&options).unwrap());
        let admin = b.admin();
        admin.create_flag(&json!({"key": FLAG})).unwrap();
        admin.create_flag(&json!({"key": "other"})).unwrap();
        // Replica A learns of the flags and tokens through its own writes only.
        let staging = a.admin().create_token("staging app", "evaluate", Some("staging")).unwrap();
        let on = json!({"state": "ENABLED", "fallthrough": {"variant": "on"}});
        admin.set_config(FLAG, "staging", &on).unwrap();
        a.admin().quick_op("other", "production", "enable", None).unwrap();
        let served = a.client(Some(&staging)).ofrep(FLAG, &json!({"companyId": 42})).unwrap();
        assert_eq!(served.body["value"], json!(true), "{backend}: A applied B's earlier change: {}", served.body);
    }
}

/// Creates [`FLAG`] enabled in production on `server`, so that the kill switch a test
/// throws is a change (disabling a flag that is already off changes nothing).
fn live_flag(server: &Server) {
    let admin = server.admin();
    admin.create_flag(&json!({"key": FLAG})).unwrap();
    admin.quick_op(FLAG, "production", "enable", None).unwrap();
}

#[test]
fn a_replica_that_polls_seldom_stays_in_the_wait_as_behind_until_it_polls() {
    for (backend, shared) in databases("seldom").unwrap() {
        if backend == "postgres" {
            // NOTIFY wakes every replica at once: there a long interval is never behind.
            continue;
        }
        let a = replica(&shared);
        live_flag(&a);
        let slow = Server::start_with(&polling_once_a_minute(&shared)).unwrap();
        let slow_id = own_id(&slow);
        // Longer than a heartbeat counts (3 s): the replica must still be in the view.
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            assert!(cluster_ids(&a).contains(&slow_id), "{backend}: the seldom-polling replica left the view");
            std::thread::sleep(Duration::from_millis(200));
        }

        let off = a.admin().quick_op(FLAG, "production", "disable", Some(&json!({"reason": "incident"}))).unwrap();
        let version = off["version"].as_i64().unwrap();
        let waited = a.admin().get(&format!("/api/v1/wait?seq={version}&timeoutMs=1000")).unwrap();
        assert_eq!(waited.status, 504, "{backend}: the wait passed a replica that has not applied it: {}", waited.body);
        assert!(waited.body.to_string().contains(&slow_id), "{backend}: the laggard is named: {}", waited.body);
    }
}

/// A deployment's replicas start at the same moment on a new database, all with one new
/// `--admin-token`: each runs the migrations and makes sure of the admin token. All come
/// up, one admin token is stored, and a flag written on one is served by all. Several
/// rounds, each on new databases, since a race need not show every time; every failed
/// start is reported at the end, so that one backend's do not hide another's.
#[test]
fn replicas_started_together_on_a_new_database_all_come_up() {
    const ROUNDS: usize = 3;
    const REPLICAS: usize = 4;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        for (backend, shared) in databases("together").unwrap() {
            let options = ServerOptions {
                database_url: Some(shared.url.clone()),
                // Each change a follower applies is logged, for the report of one that lags.
                env: vec![("RUST_LOG".into(), "info,sqlx=warn,flagd_server=debug".into())],
                ..ServerOptions::default()
            };
            let started: Vec<_> = std::thread::scope(|s| {
                let starting: Vec<_> = (0..REPLICAS).map(|_| s.spawn(|| Server::start_with(&options))).collect();
                starting.into_iter().map(|start| start.join().unwrap()).collect()
            });
            let (servers, failed): (Vec<_>, Vec<_>) = started.into_iter().partition(Result::is_ok);
            if !failed.is_empty() {
                let logs: Vec<String> = failed.into_iter().filter_map(Result::err).map(|e| e.0).collect();
                failures.push(format!(
                    "{backend}, round {round}: {} of {REPLICAS} did not start:\n{}",
                    logs.len(),
                    logs.join("\n")
                ));
                continue;
            }
            let servers: Vec<Server> = servers.into_iter().map(Result::unwrap).collect();
            let admin = servers[0].admin();
            let tokens = admin.get("/api/v1/tokens").unwrap().body;
            let admins = tokens["tokens"].as_array().unwrap().iter().filter(|t| t["role"] == "admin").count();
            assert_eq!(admins, 1, "{backend}, round {round}: {tokens}");
            admin.create_flag(&json!({"key": FLAG})).unwrap();
            admin
                .set_config(FLAG, "production", &json!({"state": "ENABLED", "fallthrough": {"variant": "on"}}))
                .unwrap();
            let token = admin.create_token("app", "evaluate", Some("production")).unwrap();
            for server in &servers {
                let reached = within(Duration::from_secs(5), || {
                    server
                        .client(Some(&token))
                        .ofrep(FLAG, &json!({"companyId": 42}))
                        .is_ok_and(|r| r.body["value"] == json!(true))
                });
                // What the replica answers and says of itself is what tells a stalled
                // follower from one that applied the change wrongly.
                assert!(
                    reached,
                    "{backend}, round {round}: the flag does not reach {} within 5 s; it answers {:?}\n\
                     cluster view there: {:?}\n{}",
                    server.url(),
                    server.client(Some(&token)).ofrep(FLAG, &json!({"companyId": 42})),
                    server.admin().get("/api/v1/cluster").map(|r| r.body),
                    server.logs()
                );
            }
        }
    }
    assert!(failures.is_empty(), "{} rounds with failed starts:\n{}", failures.len(), failures.join("\n"));
}

/// Another session holding the `replicas` table locked, as an operator's `ALTER TABLE`
/// would: every heartbeat, and every read of the cluster view, waits on it. Released (and
/// its client killed) on drop.
struct ReplicasTableLocked<'a> {
    db: &'a Database,
    sql: &'static LockSql,
    _client: KilledOnDrop,
}

/// The statements that hold, observe and release the lock on one database server.
struct LockSql {
    hold: &'static str,
    /// The holding session's id, once it holds the lock.
    holder: &'static str,
    /// How many statements wait for the lock.
    waiting: &'static str,
    /// The statement ending the session with this id.
    end: fn(&str) -> String,
}

const MARIADB_LOCK: LockSql = LockSql {
    hold: "LOCK TABLES replicas WRITE; SELECT SLEEP(120)",
    holder: "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND INFO = 'SELECT SLEEP(120)'",
    waiting: "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
              WHERE DB = DATABASE() AND STATE = 'Waiting for table metadata lock'",
    end: |id| format!("KILL {id}"),
};

const POSTGRES_LOCK: LockSql = LockSql {
    hold: "BEGIN; LOCK TABLE replicas IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120)",
    holder: "SELECT pid FROM pg_locks WHERE relation = 'replicas'::regclass AND granted \
             AND mode = 'AccessExclusiveLock' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    waiting: "SELECT count(*) FROM pg_locks WHERE relation = 'replicas'::regclass AND NOT granted \
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    end: |pid| format!("SELECT pg_terminate_backend({pid})"),
};

impl LockSql {
    /// `None` on SQLite, which has no table locks: a write there locks the whole file, the
    /// kill switch's write included.
    fn on(backend: &str) -> Option<&'static Self> {
        match backend {
            "mariadb" => Some(&MARIADB_LOCK),
            "postgres" => Some(&POSTGRES_LOCK),
            _ => None,
        }
    }
}

impl<'a> ReplicasTableLocked<'a> {
    /// Locks the table and returns once the lock is held.
    fn hold(sql: &'static LockSql, db: &'a Database) -> Self {
        let locked = Self { db, sql, _client: db.sql_in_background(sql.hold).unwrap().unwrap() };
        eventually("the replicas table is locked", Duration::from_secs(10), || locked.holder().is_some());
        locked
    }

    fn query(&self, sql: &str) -> String {
        self.db.sql(sql).unwrap().unwrap().trim().to_owned()
    }

    fn holder(&self) -> Option<String> {
        Some(self.query(self.sql.holder)).filter(|id| !id.is_empty())
    }

    fn waiting(&self) -> usize {
        self.query(self.sql.waiting).parse().unwrap()
    }
}

impl Drop for ReplicasTableLocked<'_> {
    /// Ends the holding session (MariaDB's `SLEEP` would outlive its killed client, and the
    /// database's drop would wait for it); never panics, since it may run while a failed
    /// assertion unwinds.
    fn drop(&mut self) {
        if let Some(Ok(id)) = self.db.sql(self.sql.holder) {
            let id = id.trim();
            if !id.is_empty() {
                let _ = self.db.sql(&(self.sql.end)(id));
            }
        }
    }
}

/// A kill switch must not wait on bookkeeping: with the `replicas` table locked, so that
/// no replica can record a heartbeat, a replica still serves a change thrown on another
/// within the sync interval's reach, a wait ends at its timeout, and cluster-view polls end
/// in seconds without taking the connections writes need; once the lock lifts, the
/// cluster-wide wait proves the change served.
#[test]
fn a_kill_switch_reaches_a_replica_whose_heartbeat_is_held_up() {
    for (backend, shared) in databases("heldup").unwrap() {
        let Some(lock_sql) = LockSql::on(backend) else { continue };
        let (a, b) = (replica(&shared), replica(&shared));
        let admin = a.admin();
        admin.create_flag(&json!({"key": FLAG})).unwrap();
        admin.set_config(FLAG, "production", &json!({"state": "ENABLED", "fallthrough": {"variant": "on"}})).unwrap();
        let token = admin.create_token("app", "evaluate", Some("production")).unwrap();
        eventually(&format!("{backend}: the flag reaches the second replica"), Duration::from_secs(5), || {
            b.client(Some(&token)).ofrep(FLAG, &json!({"companyId": 42})).is_ok_and(|r| r.body["value"] == json!(true))
        });
        let lock = ReplicasTableLocked::hold(lock_sql, &shared);
        // Both replicas' heartbeats (a second apart at most) now wait on the lock, and give
        // up in seconds, saying so, rather than wait for as long as it lasts.
        eventually(&format!("{backend}: both heartbeats wait"), Duration::from_secs(10), || lock.waiting() >= 2);
        for (name, replica) in [("first", &a), ("second", &b)] {
            eventually(
                &format!("{backend}: the {name} replica logs its heartbeat failing"),
                Duration::from_secs(10),
                || replica.logs().contains("cannot record this replica's heartbeat"),
            );
        }

        let off = admin.quick_op(FLAG, "production", "disable", None).unwrap();
        let version = off["version"].as_i64().unwrap();
        eventually(&format!("{backend}: the kill switch reaches the second replica"), Duration::from_secs(10), || {
            served(&b, &token) == json!(false)
        });
        // A wait cannot read the heartbeats: it ends at its timeout all the same.
        let started = Instant::now();
        let waited = admin.get(&format!("/api/v1/wait?seq={version}&timeoutMs=500")).unwrap();
        assert_eq!(waited.status, 504, "{backend}: {}", waited.body);
        assert!(waited.body.to_string().contains("did not return in time"), "{backend}: {}", waited.body);
        assert!(started.elapsed() < Duration::from_secs(5), "{backend}: the wait took {:?}", started.elapsed());

        // Console polls of the cluster view, more at once than a server has connections,
        // end as busy and leave writes their connections.
        let polls: Vec<_> = (0..40)
            .map(|_| {
                let admin = a.admin();
                std::thread::spawn(move || admin.get("/api/v1/cluster").unwrap())
            })
            .collect();
        eventually(&format!("{backend}: the polls wait on the lock"), Duration::from_secs(10), || lock.waiting() >= 4);
        admin.quick_op(FLAG, "production", "enable", Some(&json!({"reason": "beside the polls"}))).unwrap();
        for poll in polls {
            let reply = poll.join().unwrap();
            assert_eq!(reply.status, 503, "{backend}: {}", reply.body);
            let code = reply.body["error"]["code"].as_str().unwrap_or_default();
            assert!(["DATABASE_BUSY", "DATABASE_UNAVAILABLE"].contains(&code), "{backend}: {}", reply.body);
        }
        assert!(lock.holder().is_some(), "{backend}: the lock was held throughout");

        drop(lock);
        let waited = admin.get(&format!("/api/v1/wait?seq={version}&timeoutMs=10000")).unwrap();
        assert_eq!(waited.status, 200, "{backend}: once the lock lifts, the wait sees both: {}", waited.body);
    }
}

/// A replica that fell silent (here stopped with SIGSTOP; in life, cut off from the
/// database while it goes on serving what it had) stays in the cluster view, so a wait
/// names it instead of passing it by, and succeeds once it is back and caught up.
#[test]
fn a_wait_does_not_pass_by_a_replica_that_fell_silent() {
    for (backend, shared) in databases("silent").unwrap() {
        let (a, b) = (replica(&shared), replica(&shared));
        live_flag(&a);
        let silent_id = own_id(&b);
        eventually(&format!("{backend}: both in the view"), Duration::from_secs(5), || cluster_ids(&a).len() == 2);
        signal(b.pid(), "-STOP").unwrap();
        let silent_for = |view: &Value| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
            let replicas = view["replicas"].as_array().unwrap();
            let b = replicas.iter().find(|r| r["id"] == json!(silent_id)).map(|r| r["lastSeen"].as_i64().unwrap());
            b.map(|seen| i64::try_from(now).unwrap() - seen)
        };
        eventually(&format!("{backend}: silent past the liveness window"), Duration::from_secs(10), || {
            silent_for(&a.admin().get("/api/v1/cluster").unwrap().body).is_some_and(|ms| ms > 3_500)
        });

        let off = a.admin().quick_op(FLAG, "production", "disable", Some(&json!({"reason": "incident"}))).unwrap();
        let version = off["version"].as_i64().unwrap();
        let waited = a.admin().get(&format!("/api/v1/wait?seq={version}&timeoutMs=500")).unwrap();
        signal(b.pid(), "-CONT").unwrap();
        assert_eq!(waited.status, 504, "{backend}: the wait passed a silent replica by: {}", waited.body);
        let message = waited.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&silent_id) && message.contains("silent for"), "{backend}: {message}");

        let waited = a.admin().get(&format!("/api/v1/wait?seq={version}&timeoutMs=10000")).unwrap();
        assert_eq!(waited.status, 200, "{backend}: back and caught up: {}", waited.body);
    }
}

/// libfaketime's library, which shifts the clock of a process it is preloaded into
/// (Debian's `faketime`, installed by `.ci/run`).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A replica on a host whose clock is two minutes behind is still in the cluster view:
/// heartbeats are stamped and read on the database's clock, not each host's.
#[test]
fn a_replica_whose_clock_is_off_is_judged_by_the_databases_clock() {
    assert!(std::path::Path::new(FAKETIME).exists(), "{FAKETIME} is missing: apt-get install faketime");
    for (backend, shared) in databases("skew").unwrap() {
        if backend == "sqlite" {
            // SQLite's clock is the process's own: the shifted replica would shift it too.
            continue;
        }
        let a = replica(&shared);
        live_flag(&a);
        let behind = Server::start_with(&ServerOptions {
            database_url: Some(shared.url.clone()),
            env: vec![
                ("LD_PRELOAD".into(), FAKETIME.into()),
                ("FAKETIME".into(), "-120s".into()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ],
            ..ServerOptions::default()
        })
        .unwrap();
        let id = own_id(&behind);
        eventually(
            &format!("{backend}: the replica two minutes behind is in the view"),
            Duration::from_secs(5),
            || cluster_ids(&a).contains(&id),
        );
        let off = a.admin().quick_op(FLAG, "production", "disable", None).unwrap()["version"].as_i64().unwrap();
        let waited = a.admin().get(&format!("/api/v1/wait?seq={off}&timeoutMs=5000")).unwrap();
        assert_eq!(waited.status, 200, "{backend}: {}", waited.body);
        assert!(waited.body.to_string().contains(&id), "{backend}: the wait counted it: {}", waited.body);
    }
}

/// What a replica logs (at debug level) each time a wait fails to read the heartbeats.
const WAIT_RETRIED: &str = "cannot read the replicas' heartbeats; retrying";

/// The change is committed when a wait starts, so a database blip while the wait reads
/// the replicas' heartbeats only delays its answer: once the database is back and every
/// replica serves the change, the wait says so, rather than failing at the first error.
#[test]
fn a_wait_outlasts_a_database_blip_and_answers_once_every_replica_serves_the_change() {
    for (backend, shared) in databases("blip").unwrap() {
        if backend == "sqlite" {
            // A file: there is no link to cut.
            continue;
        }
        // A reaches the database through a link that the test cuts; B directly.
        let link = Proxy::tcp(shared.address().unwrap()).unwrap();
        let a = Server::start_with(&ServerOptions {
            database_url: Some(shared.url_through(link.address()).unwrap()),
            env: vec![("RUST_LOG".into(), "info,sqlx=warn,flagd_server::replication=debug".into())],
            ..ServerOptions::default()
        })
        .unwrap();
        let b = replica(&shared);
        live_flag(&a);
        eventually(&format!("{backend}: both in the view"), Duration::from_secs(5), || cluster_ids(&a).len() == 2);
        // B holds the wait up until it runs again.
        signal(b.pid(), "-STOP").unwrap();
        let off = a.admin().quick_op(FLAG, "production", "disable", Some(&json!({"reason": "incident"}))).unwrap();
        let version = off["version"].as_i64().unwrap();

        let waited = std::thread::scope(|s| {
            let waiting = s.spawn(|| a.admin().get(&format!("/api/v1/wait?seq={version}&timeoutMs=20000")).unwrap());
            link.cut();
            eventually(&format!("{backend}: the wait meets the outage"), Duration::from_secs(20), || {
                waiting.is_finished() || a.logs().contains(WAIT_RETRIED)
            });
            link.restore();
            signal(b.pid(), "-CONT").unwrap();
            waiting.join().unwrap()
        });
        assert_eq!(waited.status, 200, "{backend}: a database blip failed the wait: {}", waited.body);
        let applied: Vec<i64> =
            waited.body["replicas"].as_array().unwrap().iter().map(|r| r["appliedSeq"].as_i64().unwrap()).collect();
        assert!(applied.len() == 2 && applied.iter().all(|s| *s >= version), "{backend}: {applied:?}");
    }
}

/// An import into one environment can change flag definitions, which every environment
/// shares: the other replicas rebuild every environment, not only the one imported into,
/// before the wait for the import passes.
#[test]
fn an_import_into_one_environment_reaches_every_environment_of_every_replica() {
    for (backend, shared) in databases("import").unwrap() {
        let (a, b) = (replica(&shared), replica(&shared));
        let admin = a.admin();
        live_flag(&a);
        let token = admin.create_token("app", "evaluate", Some("staging")).unwrap();
        eventually(&format!("{backend}: the token reaches B"), Duration::from_secs(5), || {
            b.client(Some(&token)).ofrep(FLAG, &json!({"companyId": 42})).is_ok_and(|r| r.status == 200)
        });

        let file = json!({"flags": [{"key": "imported", "state": "ENABLED"}]});
        let r = admin.post("/api/v1/environments/development/import", &file).unwrap();
        assert_eq!(r.status, 200, "{backend}: {}", r.body);
        let seq = admin.get("/api/v1/cluster").unwrap().body["currentSeq"].as_i64().unwrap();
        let waited = admin.get(&format!("/api/v1/wait?seq={seq}&timeoutMs=5000")).unwrap();
        assert_eq!(waited.status, 200, "{backend}: {}", waited.body);
        let served = b.client(Some(&token)).ofrep("imported", &json!({"companyId": 42})).unwrap();
        assert_eq!(
            (served.status, &served.body["reason"]),
            (200, &json!("DISABLED")),
            "{backend}: B serves the imported flag in staging, where it starts disabled: {}",
            served.body
        );
    }
}

/// An import that changes only an environment's flag-set metadata is a change of that
/// environment like any other: the other replicas serve it once the wait for it passes,
/// and a replica started afterwards reads it from the database.
#[test]
fn a_flag_set_metadata_import_reaches_every_replica_and_outlives_a_restart() {
    for (backend, shared) in databases("metadata").unwrap() {
        let (a, mut b) = (replica(&shared), replica(&shared));
        let admin = a.admin();
        live_flag(&a);
        let token = admin.create_token("app", "evaluate", Some("production")).unwrap();
        eventually(&format!("{backend}: the token reaches B"), Duration::from_secs(5), || {
            b.client(Some(&token)).ofrep(FLAG, &json!({"companyId": 42})).is_ok_and(|r| r.status == 200)
        });
        eventually(&format!("{backend}: two replicas in the view"), Duration::from_secs(5), || {
            cluster_ids(&a).len() == 2
        });

        let file = json!({"metadata": {"team": "portal"}, "flags": {}});
        let r = admin.post("/api/v1/environments/production/import", &file).unwrap();
        assert_eq!(r.status, 200, "{backend}: {}", r.body);
        assert_eq!(r.body["changes"].as_array().map(Vec::len), Some(1), "{backend}: only the metadata: {}", r.body);
        let seq = admin.get("/api/v1/cluster").unwrap().body["currentSeq"].as_i64().unwrap();
        let waited = admin.get(&format!("/api/v1/wait?seq={seq}&timeoutMs=5000")).unwrap();
        assert_eq!(waited.status, 200, "{backend}: {}", waited.body);
        let metadata =
            |server: &Server| server.client(Some(&token)).ofrep(FLAG, &json!({"companyId": 42})).unwrap().body;
        for server in [&a, &b] {
            let served = metadata(server);
            assert_eq!(served["metadata"], json!({"team": "portal"}), "{backend}, {}: {served}", server.url());
        }

        assert!(b.terminate(Duration::from_secs(10)).unwrap().success(), "{backend}");
        b.restart(&ServerOptions { database_url: Some(shared.url.clone()), ..ServerOptions::default() }).unwrap();
        let served = metadata(&b);
        assert_eq!(served["metadata"], json!({"team": "portal"}), "{backend}: restarted: {served}");
    }
}
