//! flagd-client against the real server binary: the in-process client follows changes
//! within 100 ms, survives the server being killed, reconnects at its first pace after an
//! outage, and serves the caller's defaults while its token is refused; the remote client
//! caches, revalidates with `If-None-Match`, and falls back instead of failing; concurrent
//! callers share its requests, and a hung server costs them no waiting beyond one request;
//! its single evaluation asks for exactly the key given; and either client refuses an
//! unusable URL up front.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagd_client::flagd_core::{ErrorCode, EvaluationContext, Reason, flag_not_found};
use flagd_client::{ClientError, ClientOptions, Details, InProcessClient, RemoteClient};
use flagd_tests::{Client, Hung, Proxy, Server, ServerOptions, free_port};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::Barrier;

pub(crate) const FLAG: &str = "portal";

/// `portal` enabled in production for everyone (fallthrough `on`), and an evaluate token.
pub(crate) fn set_up(server: &Server) -> String {
    let admin = server.admin();
    admin.create_flag(&json!({"key": FLAG})).unwrap();
    let config = json!({"state": "ENABLED", "fallthrough": {"variant": "on"}});
    admin.set_config(FLAG, "production", &config).unwrap();
    admin.create_token("in-process", "evaluate", Some("production")).unwrap()
}

pub(crate) fn toggle(admin: &Client, on: bool) -> i64 {
    let op = if on { "enable" } else { "disable" };
    let write = admin.quick_op(FLAG, "production", op, Some(&json!({"reason": "client test"}))).unwrap();
    write["version"].as_i64().unwrap()
}

pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// What the client library logged at WARN in this test process. One subscriber for the
/// whole process, installed by the first test that asks: a subscriber per thread misses
/// events when other tests' subscribers come and go meanwhile (tracing caches, per call
/// site, whether anyone listens). Tests tell their own lines apart by their server's URL,
/// which every such warning names.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<u8>>>);

impl Warnings {
    fn captured() -> &'static Self {
        static CAPTURED: std::sync::OnceLock<Warnings> = std::sync::OnceLock::new();
        CAPTURED.get_or_init(|| {
            let warnings = Self::default();
            let writer = warnings.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber in the e2e tests");
            warnings
        })
    }

    /// The lines about `server` logged so far.
    fn about(&self, server: &Server) -> String {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().filter(|line| line.contains(server.url())).map(|line| format!("{line}\n")).collect()
    }

    /// The lines about `server` that contain `message`.
    fn count(&self, server: &Server, message: &str) -> usize {
        self.about(server).lines().filter(|line| line.contains(message)).count()
    }
}

impl std::io::Write for Warnings {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn ctx() -> EvaluationContext {
    EvaluationContext::new().with_company(42).with_targeting_key("user-1")
}

/// Polls `condition` every few milliseconds until it holds or `deadline` passes.
pub(crate) fn eventually(deadline: Duration, condition: impl Fn() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// An import's flag-set metadata reaches the in-process client with the change: every flag
/// reports it, a flag's own keys winning.
#[test]
fn the_in_process_client_reports_the_flag_set_metadata_an_import_gives() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let client = rt.block_on(InProcessClient::connect(&ClientOptions::new(server.url(), &token))).unwrap();
    let admin = server.admin();
    let variants = json!({"on": true, "off": false});
    let own =
        json!({"state": "ENABLED", "variants": variants, "defaultVariant": "on", "metadata": {"team": "checkout"}});
    let file =
        json!({"metadata": {"team": "portal", "tier": "gold", "owners": {"lead": "ana"}}, "flags": {"own": own}});
    let r = admin.post("/api/v1/environments/production/import", &file).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let seq = admin.get("/api/v1/cluster").unwrap().body["currentSeq"].as_i64().unwrap();
    assert!(rt.block_on(client.wait_for_seq(seq, Duration::from_secs(5))), "change {seq} never arrived");

    let loaded = client.snapshot().unwrap();
    let metadata = |key: &str| Value::Object(loaded.ruleset.evaluate(key, &ctx()).metadata.clone());
    assert_eq!(metadata(FLAG), json!({"team": "portal", "tier": "gold", "owners": {"lead": "ana"}}));
    assert_eq!(metadata("own"), json!({"team": "checkout", "tier": "gold", "owners": {"lead": "ana"}}));

    // What the client reports is what OFREP reports: its scalar entries, for every flag.
    let remote = RemoteClient::new(&ClientOptions::new(server.url(), &token)).unwrap();
    let answer = rt.block_on(remote.evaluate_all(&ctx())).unwrap();
    for key in [FLAG, "own"] {
        assert_eq!(client.metadata(key).as_ref(), answer.metadata(key), "{key}");
    }
    assert_eq!(client.metadata("own"), Some(json!({"team": "checkout", "tier": "gold"}).as_object().unwrap().clone()));
    assert_eq!(client.metadata("nope"), None);
}

/// A key the environment lacks reads the same wherever it is looked up: the in-process
/// client, the remote client's cached bulk answer and the server's single evaluation.
#[test]
fn an_unknown_flag_is_reported_in_the_same_words_by_every_client() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let options = ClientOptions::new(server.url(), &token);
    let in_process = rt.block_on(InProcessClient::connect(&options)).unwrap();
    let remote = RemoteClient::new(&options).unwrap();

    let failure = |details: Details<Value>| (details.error_code, details.error_message);
    let answers = [
        ("in process", failure(in_process.details("nope", &ctx(), Value::Null))),
        ("remote, bulk", failure(rt.block_on(remote.details("nope", &ctx(), Value::Null)))),
        ("remote, single", failure(rt.block_on(remote.evaluate("nope", &ctx())).unwrap())),
    ];
    for (client, answer) in answers {
        assert_eq!(answer, (Some(ErrorCode::FlagNotFound), Some("flag `nope` not found".to_owned())), "{client}");
    }
}

#[test]
fn the_in_process_client_sees_each_change_within_100_ms() {
    let mut server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let client = rt.block_on(InProcessClient::connect(&ClientOptions::new(server.url(), &token))).unwrap();
    let details = client.details(FLAG, &ctx(), false);
    assert_eq!((details.value, details.reason, details.variant.as_deref()), (true, Reason::Static, Some("on")));

    let admin = server.admin();
    let mut latencies = Vec::new();
    for i in 0..20 {
        let on = i % 2 == 1;
        // From the start of the write request until the client serves its result.
        let started = Instant::now();
        let version = toggle(&admin, on);
        assert!(rt.block_on(client.wait_for_seq(version, Duration::from_secs(5))), "change {version} never arrived");
        latencies.push(started.elapsed());
        assert_eq!(client.bool_value(FLAG, &ctx(), !on), on, "toggle {i}");
    }
    latencies.sort();
    let (median, p90, max) = (latencies[10], latencies[18], latencies[19]);
    eprintln!("write start to in-process client: median {median:?}, p90 {p90:?}, max {max:?}");
    assert!(median < Duration::from_millis(100) && p90 < Duration::from_millis(100), "{latencies:?}");

    // An open change stream does not hold up a graceful shutdown.
    let status = server.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn the_in_process_client_serves_its_last_snapshot_while_the_server_is_gone_then_catches_up() {
    let mut server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let options = ClientOptions::new(server.url(), &token).max_backoff(Duration::from_millis(200));
    let client = rt.block_on(InProcessClient::connect(&options)).unwrap();
    assert!(client.is_connected());

    server.kill().unwrap();
    assert!(eventually(Duration::from_secs(5), || !client.is_connected()), "the client did not notice");
    assert!(client.bool_value(FLAG, &ctx(), false), "the last snapshot is served while the server is down");

    server.restart(&ServerOptions::default()).unwrap();
    let version = toggle(&server.admin(), false);
    assert!(rt.block_on(client.wait_for_seq(version, Duration::from_secs(10))), "never caught up");
    assert!(!client.bool_value(FLAG, &ctx(), true));
    assert!(eventually(Duration::from_secs(5), || client.is_connected()));
}

/// Once a reconnection has succeeded, the next drop is reopened after the first pause
/// (50 ms), not after the pause the outage before it had grown to: a kill switch written
/// just after a server restarted twice in a row reaches the client at once.
#[test]
fn a_stream_lost_again_after_an_outage_is_reopened_after_the_first_pause() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let proxy = Proxy::tcp(server.address()).unwrap();
    let rt = runtime();
    let max_backoff = Duration::from_secs(2);
    let options = ClientOptions::new(proxy.url(), &token).max_backoff(max_backoff);
    let client = rt.block_on(InProcessClient::connect(&options)).unwrap();

    // 2 s of failed attempts take the pause, 50 ms doubling, past 1.5 s.
    proxy.cut();
    assert!(eventually(Duration::from_secs(5), || !client.is_connected()), "the cut went unnoticed");
    std::thread::sleep(Duration::from_secs(2));
    proxy.restore();
    assert!(eventually(max_backoff * 3, || client.is_connected()), "no reconnection after the outage");

    // The new stream lasts a moment, shorter than `max_backoff`, then the link drops
    // once more and comes straight back.
    std::thread::sleep(Duration::from_millis(300));
    proxy.cut();
    proxy.restore();
    let started = Instant::now();
    let version = toggle(&server.admin(), false);
    assert!(rt.block_on(client.wait_for_seq(version, Duration::from_secs(10))), "the kill switch never arrived");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the kill switch reached the client {took:?} after the write");
    assert!(!client.bool_value(FLAG, &ctx(), true));
}

#[test]
fn connecting_with_a_bad_token_fails_at_once_with_the_servers_reason() {
    let server = Server::start().unwrap();
    let rt = runtime();
    let started = Instant::now();
    let err = rt.block_on(InProcessClient::connect(&ClientOptions::new(server.url(), "fdt_nope"))).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("401") && err.to_string().contains("unknown token"), "{err}");
}

/// Whether `details` is the caller's default (`false`) with a refusal naming `words`.
fn refused(details: &Details<bool>, words: &str) -> bool {
    !details.value
        && details.error_code == Some(ErrorCode::General)
        && details.error_message.as_deref().is_some_and(|m| m.contains("401") && m.contains(words))
}

/// A revoked token stops serving flags in-process as it does remotely: once the server
/// refuses it, every getter answers the caller's default with the server's reason.
#[test]
fn a_client_whose_token_is_revoked_serves_the_callers_defaults() {
    let server = Server::start().unwrap();
    set_up(&server);
    let admin = server.admin();
    let token = admin.create_token("revoked-soon", "evaluate", Some("production")).unwrap();
    let warnings = Warnings::captured();
    let rt = runtime();
    let options = ClientOptions::new(server.url(), &token).max_backoff(Duration::from_millis(200));
    let client = rt.block_on(InProcessClient::connect(&options)).unwrap();
    assert!(client.bool_value(FLAG, &ctx(), false));

    let before = admin_answers(&server, "4xx");
    admin.revoke_token("revoked-soon").unwrap();
    let revoked = || refused(&client.details(FLAG, &ctx(), false), "revoked");
    assert!(eventually(Duration::from_secs(5), revoked), "{:?}", client.details(FLAG, &ctx(), false));
    // Each reconnection is refused again; the log says so once, not once per attempt.
    let refused_thrice = || admin_answers(&server, "4xx") - before >= 3;
    assert!(eventually(Duration::from_secs(10), refused_thrice), "the client stopped reconnecting");
    assert_eq!(warnings.count(&server, "flagd refuses the token"), 1, "{}", warnings.about(&server));
    assert!(!client.bool_value(FLAG, &ctx(), false));
    assert_eq!(client.int_value("nope", &ctx(), 7), 7);
    assert!(client.snapshot().is_none() && client.metadata(FLAG).is_none());
    assert!(!client.is_connected());
}

/// A client refused meanwhile serves again, without a restart, once the server accepts its
/// token again (here: a server started on another database, then back on its own).
#[test]
fn a_client_whose_token_is_accepted_again_serves_again() {
    let mut server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let options = ClientOptions::new(server.url(), &token).max_backoff(Duration::from_millis(200));
    let client = rt.block_on(InProcessClient::connect(&options)).unwrap();

    let another = format!("sqlite:{}", server.dir().join("another.db").display());
    server.kill().unwrap();
    server.restart(&ServerOptions { database_url: Some(another), ..ServerOptions::default() }).unwrap();
    let unknown = || refused(&client.details(FLAG, &ctx(), false), "token");
    assert!(eventually(Duration::from_secs(5), unknown), "{:?}", client.details(FLAG, &ctx(), false));

    server.kill().unwrap();
    server.restart(&ServerOptions::default()).unwrap();
    let served = || client.details(FLAG, &ctx(), false).error_code.is_none() && client.bool_value(FLAG, &ctx(), false);
    assert!(eventually(Duration::from_secs(5), served), "{:?}", client.details(FLAG, &ctx(), false));
    assert!(eventually(Duration::from_secs(5), || client.is_connected()));
}

/// The change stream announces the followed environment's changes only: a write to
/// another environment is not seen by `wait_for_seq` until the followed one changes after
/// it (as its documentation says).
#[test]
fn waiting_for_another_environments_write_ends_with_the_next_change_of_ones_own() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let client = rt.block_on(InProcessClient::connect(&ClientOptions::new(server.url(), &token))).unwrap();
    let admin = server.admin();
    let write = admin.quick_op(FLAG, "staging", "enable", Some(&json!({"reason": "client test"}))).unwrap();
    let staging = write["version"].as_i64().unwrap();
    assert!(!rt.block_on(client.wait_for_seq(staging, Duration::from_millis(300))));

    let production = toggle(&admin, false);
    assert!(production > staging);
    assert!(rt.block_on(client.wait_for_seq(staging, Duration::from_secs(5))));
}

/// The client follows changes on its runtime: once that runtime is gone it no longer
/// updates, and says so.
#[test]
fn an_in_process_client_whose_runtime_is_gone_is_not_connected() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let options = ClientOptions::new(server.url(), &token);
    let client = std::thread::spawn(move || {
        let rt = runtime();
        let client = rt.block_on(InProcessClient::connect(&options)).unwrap();
        assert!(client.is_connected());
        client
    })
    .join()
    .unwrap();
    assert!(eventually(Duration::from_secs(2), || !client.is_connected()), "connected without a runtime");
    assert!(client.bool_value(FLAG, &ctx(), false), "the last snapshot is still served");
}

/// A server that cannot be reached yet (starting, restarting) is waited for: `connect`
/// succeeds once it answers within the connect timeout.
#[test]
fn connecting_waits_for_a_server_that_comes_up_within_the_connect_timeout() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let proxy = Proxy::tcp(server.address()).unwrap();
    proxy.cut();
    let rt = runtime();
    let options = ClientOptions::new(proxy.url(), &token)
        .connect_timeout(Duration::from_secs(10))
        .max_backoff(Duration::from_millis(200));
    let connecting = rt.spawn(async move { InProcessClient::connect(&options).await });

    std::thread::sleep(Duration::from_millis(500));
    assert!(!connecting.is_finished(), "connect gave up while the server was unreachable");
    proxy.restore();
    let started = Instant::now();
    let client = rt.block_on(connecting).unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "connected {:?} after the server came up", started.elapsed());
    assert!(client.is_connected());
    assert!(client.bool_value(FLAG, &ctx(), false));
}

/// With nothing listening, `connect` keeps trying for the connect timeout, then says why.
#[test]
fn connecting_to_nothing_fails_not_ready_after_the_connect_timeout() {
    let rt = runtime();
    let url = format!("http://127.0.0.1:{}", free_port().unwrap());
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = rt.block_on(InProcessClient::connect(&ClientOptions::new(url, "fdt_x").connect_timeout(timeout)));
    let took = started.elapsed();
    let err = err.err().unwrap();
    assert!(matches!(err, ClientError::NotReady { .. }), "{err}");
    assert!(err.to_string().contains("cannot reach flagd-server"), "{err}");
    assert!(took >= timeout && took < timeout + Duration::from_millis(500), "failed after {took:?}");
}

/// A server URL that cannot be used is refused when the client is made, naming it, rather
/// than failing every later request with the HTTP library's "builder error".
#[test]
fn a_url_that_is_no_usable_server_address_is_refused_up_front_naming_it() {
    let rt = runtime();
    for url in ["http://[::1", "http://exa mple.com:8013", "ftp://127.0.0.1:8013", "http://127.0.0.1:8013/?x=1"] {
        let options = ClientOptions::new(url, "fdt_x").connect_timeout(Duration::ZERO);
        let remote = RemoteClient::new(&options).err();
        let local = rt.block_on(InProcessClient::connect(&options)).err();
        for (client, error) in [("remote", remote), ("in-process", local)] {
            let named = error.as_ref().is_some_and(|e| e.to_string().contains(&format!("`{url}`")));
            assert!(matches!(error, Some(ClientError::Options(_))) && named, "{client}, {url}: {error:?}");
        }
    }
}

/// `Duration::MAX` means "for ever" for every duration option: both clients serve flags
/// with it rather than panic on a deadline too far to represent.
#[test]
fn the_longest_durations_are_taken_for_ever() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let options = ClientOptions::new(server.url(), &token)
        .timeout(Duration::MAX)
        .cache_ttl(Duration::MAX)
        .stale_ttl(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .max_backoff(Duration::MAX);
    let remote = RemoteClient::new(&options).unwrap();
    for call in ["first", "cached"] {
        assert!(rt.block_on(remote.bool_value(FLAG, &ctx(), false)), "{call} call");
    }
    let local = rt.block_on(InProcessClient::connect(&options)).unwrap();
    assert!(local.bool_value(FLAG, &ctx(), false));
    let version = toggle(&server.admin(), false);
    assert!(rt.block_on(local.wait_for_seq(version, Duration::from_secs(5))));
    assert!(!local.bool_value(FLAG, &ctx(), true));
}

/// Requests the server has answered on the OFREP bulk route with a status of `class`
/// (`3xx`, `4xx`, ...).
fn bulk_answers(server: &Server, class: &str) -> u64 {
    answers(server, "ofrep_bulk", class)
}

/// Admin API answers (the in-process client's snapshot and stream requests among them).
fn admin_answers(server: &Server, class: &str) -> u64 {
    answers(server, "admin", class)
}

/// The server's count of answers of `class` (`2xx`, `4xx`, ...) on `route`.
fn answers(server: &Server, route: &str, class: &str) -> u64 {
    let reply = server.client(None).get("/metrics").unwrap();
    let metrics = reply.body.as_str().unwrap();
    let series = format!("flagd_http_requests_total{{route=\"{route}\",status=\"{class}\"}} ");
    let line = metrics.lines().find(|l| l.starts_with(&series));
    line.and_then(|l| l.rsplit(' ').next()).map_or(0, |n| n.parse().unwrap())
}

/// A refused token costs one request per context per TTL, not one per call; callers get
/// their default with the server's reason, also for a context whose answer was held.
#[test]
fn a_refused_token_costs_one_request_per_context_per_ttl() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let warnings = Warnings::captured();
    let rt = runtime();
    let calls = |client: &RemoteClient, ctx: &EvaluationContext| -> Vec<Details<bool>> {
        (0..500).map(|_| rt.block_on(client.details(FLAG, ctx, false))).collect()
    };

    let wrong = ClientOptions::new(server.url(), "fdt_wrong").cache_ttl(Duration::from_secs(60));
    let wrong = RemoteClient::new(&wrong).unwrap();
    let before = bulk_answers(&server, "4xx");
    let answers = calls(&wrong, &ctx());
    assert_eq!(bulk_answers(&server, "4xx") - before, 1, "requests for 500 calls with a wrong token");
    assert!(answers.iter().all(|d| refused(d, "401")), "{:?}", answers[0]);

    // A token revoked while the client holds an answer: defaults within a TTL, then one
    // request per context per TTL.
    let ttl = Duration::from_millis(300);
    let client = RemoteClient::new(&ClientOptions::new(server.url(), &token).cache_ttl(ttl)).unwrap();
    assert!(rt.block_on(client.bool_value(FLAG, &ctx(), false)));
    let admin = server.admin();
    admin.revoke_token("in-process").unwrap();
    let revoked = || refused(&rt.block_on(client.details(FLAG, &ctx(), false)), "401");
    assert!(eventually(Duration::from_secs(5), revoked), "the held answer is served for a revoked token");

    let before = bulk_answers(&server, "4xx");
    let started = Instant::now();
    let answers = [calls(&client, &ctx()), calls(&client, &ctx().with_attribute("plan", "pro"))].concat();
    let ttls = u64::try_from(started.elapsed().as_millis() / ttl.as_millis()).unwrap() + 1;
    let requests = bulk_answers(&server, "4xx") - before;
    assert!(requests <= 2 * ttls, "{requests} requests for 1,000 calls of 2 contexts within {ttls} TTLs");
    assert!(answers.iter().all(|d| refused(d, "401")), "{:?}", answers[0]);

    // Asked again every TTL for either context, the server refuses the token each time;
    // the log says so once, not once per context and TTL.
    let refused_again = || {
        calls(&client, &ctx());
        calls(&client, &ctx().with_attribute("plan", "pro"));
        bulk_answers(&server, "4xx") - before >= 5
    };
    assert!(eventually(Duration::from_secs(10), refused_again), "the client stopped asking");
    let said = warnings.about(&server);
    assert_eq!(warnings.count(&server, "flagd bulk evaluation failed"), 1, "{said}");
    assert!(said.contains("for every context until it is accepted"), "{said}");
}

#[test]
fn the_remote_client_caches_revalidates_with_etags_and_falls_back_to_the_last_answer() {
    let mut server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let cached =
        RemoteClient::new(&ClientOptions::new(server.url(), &token).cache_ttl(Duration::from_secs(60))).unwrap();
    let uncached = RemoteClient::new(&ClientOptions::new(server.url(), &token).cache_ttl(Duration::ZERO)).unwrap();
    let ttl = Duration::from_millis(50);
    let short = RemoteClient::new(&ClientOptions::new(server.url(), &token).cache_ttl(ttl)).unwrap();
    for client in [&cached, &uncached, &short] {
        assert!(rt.block_on(client.bool_value(FLAG, &ctx(), false)));
    }

    toggle(&server.admin(), false);
    assert!(rt.block_on(cached.bool_value(FLAG, &ctx(), false)), "within the TTL the cached answer is served");
    assert!(!rt.block_on(uncached.bool_value(FLAG, &ctx(), true)), "without a cache every call asks");

    // After the TTL the short-lived cache revalidates: the first time the answer changed
    // (200), the second time it has not (304, counted by the server).
    std::thread::sleep(ttl);
    let details = rt.block_on(short.details(FLAG, &ctx(), true));
    assert_eq!((details.value, details.reason), (false, Reason::Disabled));
    let before = bulk_answers(&server, "3xx");
    std::thread::sleep(ttl);
    assert!(!rt.block_on(short.bool_value(FLAG, &ctx(), true)));
    assert_eq!(bulk_answers(&server, "3xx"), before + 1, "the revalidation was a 304");

    let single = rt.block_on(short.evaluate("nope", &ctx())).unwrap();
    assert_eq!(single.error_code, Some(ErrorCode::FlagNotFound));
    let typed = rt.block_on(short.details::<String>(FLAG, &ctx(), "x".into()));
    assert_eq!((typed.value.as_str(), typed.error_code), ("x", Some(ErrorCode::TypeMismatch)));

    // The server goes away: the last answer for the context is served, not the default.
    server.kill().unwrap();
    std::thread::sleep(ttl);
    assert!(!rt.block_on(short.bool_value(FLAG, &ctx(), true)), "the last known answer");
    let other = ctx().with_attribute("plan", "pro");
    let fallback = rt.block_on(short.details(FLAG, &other, true));
    assert_eq!((fallback.value, fallback.reason, fallback.error_code), (true, Reason::Error, Some(ErrorCode::General)));
}

/// Through an outage the remote client serves a context's last answer for `stale_ttl` after
/// the server last answered for it, however many cache TTLs that is; then the default.
#[test]
fn the_remote_client_serves_its_last_answer_through_an_outage_for_its_stale_ttl() {
    let mut server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let (ttl, stale_ttl) = (Duration::from_millis(20), Duration::from_secs(3));
    let options = ClientOptions::new(server.url(), &token).cache_ttl(ttl).stale_ttl(stale_ttl);
    let client = RemoteClient::new(&options).unwrap();
    let before_answer = Instant::now();
    assert!(rt.block_on(client.bool_value(FLAG, &ctx(), false)));
    server.kill().unwrap();

    // Far past 60 TTLs (1.2 s), up to shortly before the stale TTL ends: the last answer.
    let mut calls = 0;
    while before_answer.elapsed() < stale_ttl - Duration::from_millis(500) {
        let details = rt.block_on(client.details(FLAG, &ctx(), false));
        assert!(details.value, "the default {:?} into the outage: {details:?}", before_answer.elapsed());
        calls += 1;
        std::thread::sleep(ttl);
    }
    assert!(calls > 50, "only {calls} calls during the outage");

    // Once the stale TTL has passed: the caller's default, with the error.
    let defaulted = || rt.block_on(client.details(FLAG, &ctx(), false)).error_code == Some(ErrorCode::General);
    assert!(eventually(stale_ttl, defaulted), "the last answer is still served after {:?}", before_answer.elapsed());
    assert!(!rt.block_on(client.bool_value(FLAG, &ctx(), false)));
}

#[test]
fn the_remote_client_gives_the_default_within_its_timeout_when_nothing_listens() {
    let rt = runtime();
    let url = format!("http://127.0.0.1:{}", free_port().unwrap());
    let client = RemoteClient::new(&ClientOptions::new(url, "fdt_x").timeout(Duration::from_millis(200))).unwrap();
    let started = Instant::now();
    let details = rt.block_on(client.details(FLAG, &ctx(), Value::from("default")));
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!((details.value, details.error_code), (Value::from("default"), Some(ErrorCode::General)));
}

/// A key names that flag and no other route: characters a URL gives a meaning to (`/`,
/// `?`, `#`, `%`, dot segments) are sent as part of the key, so the server answers
/// FLAG_NOT_FOUND for each, in the words the bulk answer uses.
#[test]
fn a_single_evaluation_asks_for_exactly_the_key_it_is_given() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let client = RemoteClient::new(&ClientOptions::new(server.url(), &token)).unwrap();
    let served = rt.block_on(client.evaluate(FLAG, &ctx())).unwrap();
    assert_eq!((served.value, served.error_code), (Value::Bool(true), None));

    let keys =
        ["zz/../portal", "portal?x=1", "portal#frag", "%70ortal", "../flags", "portal/", "por tal", "", ".", ".."];
    for key in keys {
        let single = rt.block_on(client.evaluate(key, &ctx()));
        let single = single.map(|d| (d.value, d.error_code, d.error_message));
        let expected = (Value::Null, Some(ErrorCode::FlagNotFound), Some(flag_not_found(key)));
        assert_eq!(single.as_ref().ok(), Some(&expected), "evaluate({key:?}): {single:?}");
        let bulk = rt.block_on(client.details(key, &ctx(), Value::Null));
        assert_eq!((bulk.value, bulk.error_code, bulk.error_message), expected, "details({key:?})");
    }
}

/// Only OFREP's verdict on a flag comes back as details: any other error status (a URL
/// whose path reaches no OFREP endpoint, a wrong token) is the request's failure, for the
/// single evaluation as for the bulk one.
#[test]
fn an_error_answer_that_is_no_ofrep_verdict_is_a_refusal_of_the_request() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    let cases = [(format!("{}/flagd", server.url()), token.as_str(), 404), (server.url().to_owned(), "fdt_wrong", 401)];
    for (url, token, status) in cases {
        let client = RemoteClient::new(&ClientOptions::new(&url, token)).unwrap();
        let single = rt.block_on(client.evaluate(FLAG, &ctx())).err();
        let bulk = rt.block_on(client.evaluate_all(&ctx())).err();
        for (what, error) in [("evaluate", single), ("evaluate_all", bulk)] {
            let refusal = error.as_ref().is_some_and(|e| e.is_refusal() && !e.is_transient());
            let with_status = matches!(error, Some(ClientError::Status { status: s, .. }) if s == status);
            assert!(refusal && with_status, "{what} at {url} with {token}: {error:?}");
        }
    }
}

/// Requests the server has answered on the OFREP bulk route, whatever their status.
fn bulk_requests(server: &Server) -> u64 {
    let reply = server.client(None).get("/metrics").unwrap();
    let metrics = reply.body.as_str().unwrap();
    let line =
        metrics.lines().find(|l| l.starts_with("flagd_http_request_duration_seconds_count{route=\"ofrep_bulk\"}"));
    line.and_then(|l| l.rsplit(' ').next()).map_or(0, |n| n.parse().unwrap())
}

/// `n` concurrent `bool_value` calls for `ctx` (default `false`), released together once
/// all are spawned: each one's value and time.
fn burst(rt: &Runtime, client: &RemoteClient, ctx: &EvaluationContext, n: usize) -> Vec<(bool, Duration)> {
    let start = Arc::new(Barrier::new(n));
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (client, ctx, start) = (client.clone(), ctx.clone(), Arc::clone(&start));
            rt.spawn(async move {
                start.wait().await;
                let started = Instant::now();
                let on = client.bool_value(FLAG, &ctx, false).await;
                (on, started.elapsed())
            })
        })
        .collect();
    rt.block_on(async {
        let mut results = Vec::with_capacity(n);
        for call in calls {
            results.push(call.await.unwrap());
        }
        results
    })
}

#[test]
fn concurrent_remote_callers_share_one_request_for_a_new_context_and_one_revalidation() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    // Long enough that a burst ends well within one TTL, so one revalidation is right.
    let ttl = Duration::from_millis(500);
    let client = RemoteClient::new(&ClientOptions::new(server.url(), &token).cache_ttl(ttl)).unwrap();

    let before = bulk_requests(&server);
    let first = burst(&rt, &client, &ctx(), 200);
    let after_first = bulk_requests(&server);
    std::thread::sleep(ttl);
    let expired = burst(&rt, &client, &ctx(), 200);
    let after_expired = bulk_requests(&server);

    assert!(first.iter().chain(&expired).all(|(on, _)| *on), "every caller gets the server's answer");
    let requests = (after_first - before, after_expired - after_first);
    assert_eq!(requests, (1, 1), "bulk requests for 200 callers of a new context, then of an expired one");
}

/// Well under the request timeout (500 ms), well over a call served from memory.
const QUICK: Duration = Duration::from_millis(200);

#[test]
fn a_hung_server_costs_remote_callers_one_timeout_then_none_until_it_answers_again() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let rt = runtime();
    // Long enough that the second burst below comes within one TTL of the failed request.
    let ttl = Duration::from_secs(1);
    let client = RemoteClient::new(&ClientOptions::new(server.url(), &token).cache_ttl(ttl)).unwrap();
    assert!(rt.block_on(client.bool_value(FLAG, &ctx(), false)));

    let hung = Hung::new(&server).unwrap();
    std::thread::sleep(ttl);
    let slow = |calls: &[(bool, Duration)]| -> Vec<Duration> {
        assert!(calls.iter().all(|(on, _)| *on), "the held answer is served");
        calls.iter().map(|(_, took)| *took).filter(|took| *took >= QUICK).collect()
    };
    let expired = slow(&burst(&rt, &client, &ctx(), 50));
    assert!(expired.len() <= 1, "{} of 50 callers waited for the hung server: {expired:?}", expired.len());
    // The request just failed: the held answer is served for a TTL without asking again.
    let after_failure = slow(&burst(&rt, &client, &ctx(), 50));
    assert!(after_failure.is_empty(), "callers right after a failed request waited: {after_failure:?}");

    // Contexts nobody holds: a few requests time out, then the breaker answers at once.
    let new_context = |i: usize| ctx().with_attribute("plan", format!("plan-{i}"));
    let timed = |i: usize| {
        let started = Instant::now();
        let details = rt.block_on(client.details(FLAG, &new_context(i), true));
        assert_eq!((details.value, details.error_code), (true, Some(ErrorCode::General)), "the caller's default");
        started.elapsed()
    };
    let opened = (0..5).find(|i| timed(*i) < QUICK);
    assert!(opened.is_some(), "five new contexts in a row waited for the hung server");
    let waits: Vec<_> = (100..120).map(timed).collect();
    assert!(waits.iter().all(|took| *took < QUICK), "calls while the breaker is open: {waits:?}");
    let refused =
        [rt.block_on(client.evaluate_all(&new_context(200))).err(), rt.block_on(client.evaluate(FLAG, &ctx())).err()];
    for error in refused {
        assert!(matches!(error, Some(ClientError::CircuitOpen { .. })), "{error:?}");
    }
    let started = Instant::now();
    assert!(rt.block_on(client.bool_value(FLAG, &ctx(), false)), "the held answer, still");
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());

    // The server answers again: after the breaker's cool-down the client sees a change.
    drop(hung);
    toggle(&server.admin(), false);
    let resumed = Instant::now();
    let recovered = eventually(Duration::from_secs(10), || !rt.block_on(client.bool_value(FLAG, &ctx(), true)));
    assert!(recovered, "the client never asked the server again");
    eprintln!(
        "hung server: {} of 50 callers waited ({expired:?}); breaker open after {} new contexts; \
         slowest call while open {:?}; fresh answers {:?} after SIGCONT",
        expired.len(),
        opened.unwrap_or_default(),
        waits.iter().max(),
        resumed.elapsed()
    );
    let fresh = rt.block_on(client.details(FLAG, &new_context(0), true));
    assert_eq!((fresh.value, fresh.reason, fresh.error_code), (false, Reason::Disabled, None));
}
