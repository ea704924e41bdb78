//! What in-process clients and deploy tooling follow: snapshots, the change stream, the
//! wait for a change, and the admin API's diagnostic evaluation.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use flagd_core::{EnvironmentSnapshot, EvaluationContext, Reason, Ruleset};
use flagd_server::store::{Replica, Store};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::{ADMIN, Api, admin_get, reply};
use crate::faults::{Faults, Faulty};

const PORTAL: &str = "/api/v1/flags/portal/environments/production";

fn system_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A production flag enabled for company 42 only; returns the last write's version.
async fn pilot(api: &Api) -> i64 {
    api.create_flag(json!({"key": "portal"})).await;
    assert_eq!(api.admin(Method::POST, &format!("{PORTAL}/enable"), None).await.status, StatusCode::OK);
    let r = api.admin(Method::POST, &format!("{PORTAL}/allow"), Some(json!({"companies": ["42"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["version"].as_i64().unwrap()
}

#[tokio::test]
async fn a_snapshot_compiles_to_what_the_server_serves_and_revalidates_by_etag() {
    let api = Api::new().await;
    let version = pilot(&api).await;
    let eval = api.token("evaluate", Some("production")).await;
    let path = "/api/v1/environments/production/snapshot";

    let r = api.call(Method::GET, path, Some(&eval), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers[header::ETAG], format!("\"{version}\"").as_str());
    let snapshot: EnvironmentSnapshot = serde_json::from_value(r.body).unwrap();
    assert_eq!((snapshot.environment.as_str(), snapshot.seq), ("production", version));
    let local = Ruleset::compile(&snapshot.ruleset).unwrap();
    for company in ["42", "7"] {
        let ctx = EvaluationContext::new().with_company(company);
        let served = api.ofrep(&eval, "portal", json!({"companyId": company})).await.body;
        let here = local.evaluate("portal", &ctx);
        assert_eq!((Some(&served["value"]), served["reason"].as_str()), (here.value, Some(here.reason.as_str())));
    }

    let etag = format!("\"{version}\"");
    let unchanged = api.call(Method::GET, path, Some(&eval), None, &[("if-none-match", &etag)]).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    let disabled = api.admin(Method::POST, &format!("{PORTAL}/disable"), Some(json!({"reason": "r"}))).await;
    let changed = api.call(Method::GET, path, Some(&eval), None, &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body["seq"], disabled.body["version"]);
}

/// A quick operation compiles its environment from the snapshot the server already serves
/// with the one changed configuration swapped in, not from the database: after each kind
/// of configuration write, what the server serves is what a server that has just read the
/// same database serves.
#[tokio::test]
async fn after_every_configuration_write_the_served_snapshot_is_the_databases() {
    let api = Api::new().await;
    for key in ["alpha", "portal", "zulu"] {
        api.create_flag(json!({"key": key})).await;
    }
    api.create_segment("production", json!({"key": "beta", "companies": ["9"]})).await;
    let writes = [
        (Method::POST, format!("{PORTAL}/enable"), None),
        (Method::PUT, format!("{PORTAL}/rollout"), Some(json!({"percentage": 37.5}))),
        (Method::POST, format!("{PORTAL}/allow"), Some(json!({"companies": ["42", 7]}))),
        (Method::POST, format!("{PORTAL}/deny"), Some(json!({"companies": ["13"]}))),
        (Method::DELETE, format!("{PORTAL}/allow"), Some(json!({"companies": ["7"]}))),
        (Method::POST, "/api/v1/flags/alpha/environments/production/enable".into(), None),
        (Method::POST, "/api/v1/flags/portal/promote".into(), Some(json!({"from": "production", "to": "staging"}))),
        (Method::POST, format!("{PORTAL}/disable"), Some(json!({"reason": "incident"}))),
    ];
    let path = "/api/v1/environments/production/snapshot";
    for (method, uri, body) in writes {
        let r = api.admin(method, &uri, body).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        let served = api.admin(Method::GET, path, None).await.body;
        let read_back = admin_get(api.fresh_server().await, path).await.body;
        // Environments this write did not change keep the version they were compiled at,
        // while a server that has just started compiled each at the latest: compare content.
        assert_eq!(served["ruleset"], read_back["ruleset"], "after {uri}");
        assert_eq!(served["environment"], read_back["environment"]);
    }
}

#[tokio::test]
async fn snapshots_are_readable_by_their_environments_evaluate_tokens_and_by_admin_api_tokens() {
    let api = Api::new().await;
    let staging = api.token("evaluate", Some("staging")).await;
    let read = api.token("read", None).await;
    let path = "/api/v1/environments/production/snapshot";
    let cases: [(Option<&str>, StatusCode); 4] = [
        (Some(&staging), StatusCode::FORBIDDEN),
        (Some(&read), StatusCode::OK),
        (Some(ADMIN), StatusCode::OK),
        (None, StatusCode::UNAUTHORIZED),
    ];
    for (token, status) in cases {
        let r = api.call(Method::GET, path, token, None, &[]).await;
        assert_eq!(r.status, status, "{token:?}: {}", r.body);
    }
    let r = api.call(Method::GET, "/api/v1/environments/nowhere/snapshot", Some(ADMIN), None, &[]).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("ENVIRONMENT_NOT_FOUND")));
}

/// Reads server-sent events off a response body.
struct Events {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl Events {
    async fn open(api: &Api, query: &str, token: &str) -> Self {
        let req = Request::get(format!("/api/v1/stream{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let res = api.app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        Self { body: res.into_body().into_data_stream(), buffer: String::new() }
    }

    /// The next `change` event's data, waiting at most five seconds.
    async fn next_change(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    assert!(event.contains("event: change"), "{event}");
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.expect("no event in 5 s");
            self.buffer.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
        }
    }
}

impl Events {
    /// Waits at most five seconds for the stream to end, returning the `change` events'
    /// data sent before it did.
    async fn end(&mut self) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Some(chunk) = tokio::time::timeout_at(deadline, self.body.next()).await.expect("still open after 5 s")
        {
            self.buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        let data = self.buffer.lines().filter_map(|l| l.strip_prefix("data: "));
        data.map(|d| serde_json::from_str(d).unwrap()).collect()
    }
}

/// An evaluate token's creation and revocation are logged under its environment, but a
/// token is in no snapshot: a replica applying them reloads its tokens and leaves the
/// environment's snapshot, its version and its streams as they were.
#[tokio::test]
async fn a_replica_applying_token_changes_rebuilds_no_environment() {
    let api = Api::new().await;
    pilot(&api).await;
    let replica = api.replica().await;
    let before = replica.snapshot("production").unwrap().seq();
    let body = json!({"name": "edge", "role": "evaluate", "environment": "production"});
    let created = api.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
    let (id, value) = (created.body["id"].as_str().unwrap(), created.body["value"].as_str().unwrap());
    assert!(replica.catch_up().await.unwrap(), "the replica found the change");
    let app = flagd_server::app(Arc::clone(&replica));
    let read = |token: &str| {
        let request = Request::get("/api/v1/environments/production/snapshot")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        reply(app.clone(), request)
    };
    assert_eq!(read(value).await.status, StatusCode::OK, "the replica knows the new token");
    assert_eq!(api.admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await.status, StatusCode::NO_CONTENT);
    assert!(replica.catch_up().await.unwrap(), "the replica found the revocation");
    assert_eq!(read(value).await.status, StatusCode::UNAUTHORIZED, "the replica refuses the revoked token");
    assert_eq!(replica.snapshot("production").unwrap().seq(), before, "production's snapshot was not rebuilt");
}

/// A revoked token stops reading snapshots at once; it must stop hearing of changes too.
#[tokio::test]
async fn a_stream_ends_when_its_token_is_revoked() {
    let api = Api::new().await;
    let version = pilot(&api).await;
    let created = api
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "replica", "role": "evaluate", "environment": "production"})),
        )
        .await;
    let (id, value) = (created.body["id"].as_str().unwrap(), created.body["value"].as_str().unwrap());
    let mut events = Events::open(&api, "", value).await;
    assert_eq!(events.next_change().await["seq"], version);

    let revoked = api.admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let off = api.admin(Method::POST, &format!("{PORTAL}/disable"), Some(json!({"reason": "incident"}))).await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    let after = events.end().await;
    assert!(after.iter().all(|e| e["seq"] != off.body["version"]), "the change after the revocation: {after:?}");
    let again = api.call(Method::GET, "/api/v1/stream", Some(value), None, &[]).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
}

#[tokio::test]
async fn the_stream_announces_each_change_of_its_environment_only() {
    let api = Api::new().await;
    let version = pilot(&api).await;
    let eval = api.token("evaluate", Some("production")).await;
    let mut events = Events::open(&api, "", &eval).await;
    assert_eq!(events.next_change().await, json!({"environment": "production", "seq": version}));

    let staging = "/api/v1/flags/portal/environments/staging/enable";
    assert_eq!(api.admin(Method::POST, staging, None).await.status, StatusCode::OK);
    let off = api.admin(Method::POST, &format!("{PORTAL}/disable"), Some(json!({"reason": "incident"}))).await;
    assert_eq!(events.next_change().await["seq"], off.body["version"], "the staging change is not announced");

    let read = api.token("read", None).await;
    let mut followed = Events::open(&api, "?environment=production", &read).await;
    assert_eq!(followed.next_change().await["seq"], off.body["version"]);
    let r = api.call(Method::GET, "/api/v1/stream", Some(&read), None, &[]).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_QUERY")));
    let r = api.call(Method::GET, "/api/v1/stream?environment=staging", Some(&eval), None, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_wait_returns_once_the_change_is_served_and_times_out_naming_how_far_it_got() {
    let api = Api::new().await;
    let version = pilot(&api).await;
    let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={version}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["scope"], "server");
    assert!(r.body["replicas"][0]["appliedSeq"].as_i64().unwrap() >= version);

    // A server that does not follow the others on its database never applies the next
    // write, which it waits for as written all the same: the database has it.
    let behind = api.fresh_server().await;
    let off = api.admin(Method::POST, &format!("{PORTAL}/disable"), Some(json!({"reason": "r"}))).await;
    let next = off.body["version"].as_i64().unwrap();
    let r = admin_get(behind, &format!("/api/v1/wait?seq={next}&timeoutMs=50")).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::GATEWAY_TIMEOUT, Some("WAIT_TIMEOUT")));
    assert!(r.body["error"]["message"].as_str().unwrap().contains(&format!("applied up to {version}")), "{}", r.body);

    let bad = ["/api/v1/wait", "/api/v1/wait?seq=x", "/api/v1/wait?seq=1&timeoutMs=-5", "/api/v1/wait?seq=-1"];
    for path in bad {
        assert_eq!(api.admin(Method::GET, path, None).await.status, StatusCode::BAD_REQUEST, "{path}");
    }
    let eval = api.token("evaluate", Some("production")).await;
    let r = api.call(Method::GET, &format!("/api/v1/wait?seq={version}"), Some(&eval), None, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// A wait may last a minute; a server that is stopping ends it at once, so its shutdown is
/// not held up (a unit's stop timeout would kill it before it left the cluster view).
#[tokio::test]
async fn a_wait_ends_at_once_when_the_server_stops() {
    let api = Api::new().await;
    pilot(&api).await;
    let behind = api.replica().await;
    let off = api.admin(Method::POST, &format!("{PORTAL}/disable"), Some(json!({"reason": "r"}))).await;
    let next = off.body["version"].as_i64().unwrap();
    let app = flagd_server::app(Arc::clone(&behind));
    let path = format!("/api/v1/wait?seq={next}&timeoutMs=60000");
    let waiting = tokio::spawn(async move { admin_get(app, &path).await });
    behind.close();
    let r = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("ended within 5 s").unwrap();
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("SHUTTING_DOWN")));
}

#[tokio::test]
async fn a_wait_for_a_change_no_write_has_reached_is_refused_at_once_naming_the_latest() {
    let api = Api::new().await;
    let latest = pilot(&api).await;
    let started = Instant::now();
    let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={}&timeoutMs=30000", latest + 1), None).await;
    assert!(started.elapsed() < Duration::from_secs(5), "refused after {:?}", started.elapsed());
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("CHANGE_NOT_FOUND")));
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("no change {} has been written yet; the latest is {latest}", latest + 1)),
        "{message}"
    );

    let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={latest}&timeoutMs=30000"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// However short the wait, the database gets its moment to say that a change does not
/// exist: a database slow to answer (busy with writes) must not turn "no such change" into
/// "the replicas are behind on it", a 504 that sends an operator looking for a laggard.
#[tokio::test]
async fn a_short_wait_for_a_change_no_write_has_reached_is_refused_even_when_the_database_is_slow() {
    let faults = Arc::new(Faults::default());
    let (api, _) = Api::over(|inner| Arc::new(Faulty { inner, faults: Arc::clone(&faults) }) as Arc<dyn Store>).await;
    let latest = pilot(&api).await;
    faults.seq_read_ms.store(50, Ordering::SeqCst);
    for timeout in [0, 20] {
        let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={}&timeoutMs={timeout}", latest + 1), None).await;
        let code = r.body["error"]["code"].as_str();
        assert_eq!((r.status, code), (StatusCode::NOT_FOUND, Some("CHANGE_NOT_FOUND")), "{timeout} ms: {}", r.body);
    }
    let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={latest}&timeoutMs=0"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn the_cluster_view_tells_the_time_on_the_clock_of_its_heartbeats() {
    let api = Api::new().await;
    let before = system_ms();
    let r = api.admin(Method::GET, "/api/v1/cluster", None).await;
    let after = system_ms();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let now = r.body["now"].as_i64().unwrap_or_else(|| panic!("no `now`: {}", r.body));
    for replica in r.body["replicas"].as_array().unwrap() {
        assert!(now >= replica["lastSeen"].as_i64().unwrap(), "a heartbeat after `now`: {}", r.body);
    }
    // Without a clock offset measured, the database's clock is taken to be this host's.
    assert!((before - 2000..=after + 2000).contains(&now), "now {now} is not between {before} and {after}");
}

#[tokio::test]
async fn diagnostic_evaluation_reports_value_variant_reason_and_errors() {
    let api = Api::new().await;
    pilot(&api).await;
    let path = format!("{PORTAL}/evaluate");
    let hit = api.admin(Method::POST, &path, Some(json!({"context": {"companyId": 42}}))).await;
    assert_eq!(hit.status, StatusCode::OK, "{}", hit.body);
    assert_eq!((&hit.body["value"], &hit.body["variant"]), (&json!(true), &json!("on")));
    assert_eq!(hit.body["reason"], Reason::TargetingMatch.as_str());
    let miss = api.admin(Method::POST, &path, Some(json!({"context": {"companyId": 7}}))).await;
    assert_eq!((&miss.body["value"], &miss.body["reason"]), (&json!(false), &json!("DEFAULT")));

    let read = api.token("read", None).await;
    assert_eq!(api.call(Method::POST, &path, Some(&read), None, &[]).await.status, StatusCode::OK);
    let eval = api.token("evaluate", Some("production")).await;
    assert_eq!(api.call(Method::POST, &path, Some(&eval), None, &[]).await.status, StatusCode::FORBIDDEN);
    let r = api.admin(Method::POST, "/api/v1/flags/nope/environments/production/evaluate", None).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("FLAG_NOT_FOUND")));
    let r = api.admin(Method::POST, &path, Some(json!({"context": [1]}))).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_CONTEXT")));
}

/// Follows the cluster as a server does, remembering silent replicas for `memory`.
fn follow(service: &Arc<flagd_server::service::Service>, memory: Duration) -> tokio::task::JoinHandle<()> {
    let options = flagd_server::replication::ReplicaOptions {
        sync_interval: Duration::from_millis(200),
        address: "127.0.0.1:8013".into(),
        snapshot_cache: None,
        memory,
    };
    flagd_server::replication::spawn(Arc::clone(service), options)
}

/// A replica cut off from the database goes on serving what it had: until
/// `--replica-memory` has passed since it was last heard, no wait confirms a change
/// without it, whether it fell silent 30 s or 5 minutes ago.
#[tokio::test]
async fn a_replica_silent_for_minutes_is_still_waited_for_and_named() {
    let (api, service) = Api::over(|store| store).await;
    let _following = follow(&service, flagd_server::replication::DEFAULT_REPLICA_MEMORY);
    pilot(&api).await;
    let now = service.cluster_now_ms();
    let cut_off = Replica {
        id: "cut-off-replica".into(),
        address: "10.0.0.9:8013".into(),
        applied_seq: 0,
        started_at: now - 600_000,
        last_seen: now - 300_000,
    };
    service.store().heartbeat(&cut_off).await.unwrap();

    let off = api.admin(Method::POST, &format!("{PORTAL}/disable"), Some(json!({"reason": "incident"}))).await;
    let seq = off.body["version"].as_i64().unwrap();
    let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={seq}&timeoutMs=300"), None).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "the wait passed the silent replica by: {}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    // Last heard 300 s before the test's clock reading, and the wait began a moment later.
    assert!(message.contains("cut-off-replica") && message.contains("silent for 30"), "{message}");
    assert!(message.contains("`flagctl replica forget cut-off-replica`"), "{message}");
    assert!(message.contains("--replica-memory"), "{message}");
    let view = api.admin(Method::GET, "/api/v1/cluster", None).await;
    assert!(view.body.to_string().contains("cut-off-replica"), "{}", view.body);

    // Past the memory it is taken for gone.
    let gone = Replica { last_seen: now - 700_000, ..cut_off.clone() };
    service.store().heartbeat(&gone).await.unwrap();
    let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={seq}&timeoutMs=300"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // An operator who knows it is gone for good need not wait that long: forgotten, it no
    // longer counts. A running replica cannot be forgotten, nor by a read token.
    service.store().heartbeat(&cut_off).await.unwrap();
    let forget = "/api/v1/cluster/replicas/cut-off-replica";
    let read = api.token("read", None).await;
    assert_eq!(api.call(Method::DELETE, forget, Some(&read), None, &[]).await.status, StatusCode::FORBIDDEN);
    let own = format!("/api/v1/cluster/replicas/{}", service.id());
    let live = api.admin(Method::DELETE, &own, None).await;
    assert_eq!((live.status, live.body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("REPLICA_LIVE")));
    let r = api.admin(Method::DELETE, forget, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // Audited like any admin write: who forgot which replica, as it last reported itself.
    let events = api.admin(Method::GET, "/api/v1/audit?limit=1", None).await;
    let event = &events.body["events"][0];
    assert_eq!((&event["action"], &event["before"]["id"]), (&json!("replica.forget"), &json!("cut-off-replica")));
    let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={seq}&timeoutMs=300"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = api.admin(Method::DELETE, forget, None).await;
    assert_eq!(
        (again.status, again.body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("REPLICA_NOT_FOUND"))
    );
}

#[tokio::test]
async fn a_replica_that_falls_silent_while_a_wait_runs_is_waited_for_until_its_timeout() {
    let (api, service) = Api::over(|store| store).await;
    let _following = follow(&service, Duration::from_secs(30));
    pilot(&api).await;
    // Another replica, last heard 27 s ago (cut off from the database, still serving what
    // it had): in the cluster view, remembering 30 s, for 3 s more, less than the wait below lasts.
    let now = service.cluster_now_ms();
    let ghost = Replica {
        id: "ghost-replica".into(),
        address: "10.0.0.9:8013".into(),
        applied_seq: 0,
        started_at: now - 60_000,
        last_seen: now - 27_000,
    };
    service.store().heartbeat(&ghost).await.unwrap();

    let off = api.admin(Method::POST, &format!("{PORTAL}/disable"), Some(json!({"reason": "incident"}))).await;
    let seq = off.body["version"].as_i64().unwrap();
    let r = api.admin(Method::GET, &format!("/api/v1/wait?seq={seq}&timeoutMs=5000"), None).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "the wait passed the silent replica by: {}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("ghost-replica") && message.contains("silent for"), "{message}");
    // The view itself has let it go by now: the wait kept the view it started with.
    let view = api.admin(Method::GET, "/api/v1/cluster", None).await;
    assert!(!view.body.to_string().contains("ghost-replica"), "{}", view.body);
    let fresh = api.admin(Method::GET, &format!("/api/v1/wait?seq={seq}&timeoutMs=300"), None).await;
    assert_eq!(fresh.status, StatusCode::OK, "a wait begun now no longer counts it: {}", fresh.body);
    // A caller asking again after waiting 20 s already keeps the replicas heard from within
    // 30 s before it began: the one that fell silent meanwhile is still waited for.
    let again = api.admin(Method::GET, &format!("/api/v1/wait?seq={seq}&timeoutMs=300&waitedMs=20000"), None).await;
    assert_eq!(again.status, StatusCode::GATEWAY_TIMEOUT, "asked again, the wait passed it by: {}", again.body);
    assert!(again.body["error"]["message"].as_str().unwrap().contains("ghost-replica"), "{}", again.body);
}
