//! A flagd file's top-level (flag-set) `metadata`: an import keeps it for the environment
//! imported into, every flag there reports it (its own keys winning) over OFREP, after a
//! restart, in the snapshot in-process clients compile and on replicas; exports write it.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use flagd_core::{EvaluationContext, Ruleset};
use serde_json::{Value, json};

use crate::api::{Api, reply};

const IMPORT: &str = "/api/v1/environments/production/import";

/// Two flags, `own` with metadata of its own that shares a key with the flag set's.
fn flagd_file(metadata: Option<Value>) -> Value {
    let variants = json!({"on": true, "off": false});
    let mut file = json!({"flags": {
        "own": {"state": "ENABLED", "variants": variants, "defaultVariant": "on", "metadata": {"team": "checkout"}},
        "plain": {"state": "ENABLED", "variants": variants, "defaultVariant": "off"},
    }});
    if let Some(metadata) = metadata {
        file["metadata"] = metadata;
    }
    file
}

async fn import(api: &Api, query: &str, file: Value) -> Value {
    let r = api.admin(Method::POST, &format!("{IMPORT}{query}"), Some(file)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// The metadata OFREP reports for `key` in the environment of `token`.
async fn served_metadata(api: &Api, token: &str, key: &str) -> Value {
    let r = api.ofrep(token, key, json!({"companyId": 1})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["metadata"].clone()
}

/// The `import.metadata.*` events of the audit log, newest first.
async fn metadata_events(api: &Api) -> Vec<Value> {
    let r = api.admin(Method::GET, "/api/v1/audit?environment=production&limit=1000", None).await;
    let events = r.body["events"].as_array().unwrap().iter();
    events.filter(|e| e["action"].as_str().unwrap().starts_with("import.metadata.")).cloned().collect()
}

#[tokio::test]
async fn every_flag_reports_the_flag_set_metadata_over_ofrep_after_a_restart_and_in_process() {
    let api = Api::new().await;
    import(&api, "", flagd_file(Some(json!({"team": "portal", "release": 3})))).await;
    let eval = api.token("evaluate", Some("production")).await;
    assert_eq!(served_metadata(&api, &eval, "plain").await, json!({"team": "portal", "release": 3}));
    assert_eq!(served_metadata(&api, &eval, "own").await, json!({"team": "checkout", "release": 3}));

    let bulk = api.call(Method::POST, "/ofrep/v1/evaluate/flags", Some(&eval), Some(json!({"context": {}})), &[]).await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    let reported: Vec<_> = bulk.body["flags"].as_array().unwrap().iter().map(|f| f["metadata"].clone()).collect();
    assert_eq!(reported, [json!({"team": "checkout", "release": 3}), json!({"team": "portal", "release": 3})]);

    let staging = api.token("evaluate", Some("staging")).await;
    assert_eq!(served_metadata(&api, &staging, "plain").await, json!({}), "only the environment imported into");

    let restarted = api.fresh_server().await;
    let req = Request::post("/ofrep/v1/evaluate/flags/plain")
        .header(header::AUTHORIZATION, format!("Bearer {eval}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"context": {}}).to_string()))
        .unwrap();
    assert_eq!(reply(restarted, req).await.body["metadata"], json!({"team": "portal", "release": 3}), "restarted");

    let snapshot = api.call(Method::GET, "/api/v1/environments/production/snapshot", Some(&eval), None, &[]).await;
    let in_process = Ruleset::compile(&serde_json::from_value(snapshot.body["ruleset"].clone()).unwrap()).unwrap();
    let local = in_process.evaluate("plain", &EvaluationContext::new());
    assert_eq!(Value::Object(local.metadata.clone()), json!({"team": "portal", "release": 3}), "in process");
}

#[tokio::test]
async fn exports_write_the_flag_set_metadata_and_a_native_export_imports_back_with_it() {
    let api = Api::new().await;
    import(&api, "", flagd_file(Some(json!({"team": "portal"})))).await;
    let flagd = api.admin(Method::GET, "/api/v1/environments/production/export", None).await.body;
    assert_eq!(flagd["metadata"], json!({"team": "portal"}), "{flagd}");
    assert_eq!(flagd["flags"]["own"]["metadata"], json!({"team": "checkout"}), "{flagd}");

    let native = api.admin(Method::GET, "/api/v1/environments/production/export?format=native", None).await.body;
    assert_eq!(native["metadata"], json!({"team": "portal"}), "{native}");
    let r = api.admin(Method::POST, "/api/v1/environments/staging/import?mode=replace", Some(native.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = api.admin(Method::GET, "/api/v1/environments/staging/export?format=native", None).await.body;
    assert_eq!(again, native, "a native export imports back exactly");
    let staging = api.token("evaluate", Some("staging")).await;
    assert_eq!(served_metadata(&api, &staging, "plain").await, json!({"team": "portal"}));
}

/// A merge writes the file's keys over the stored ones; a replace makes the metadata the
/// file's, none if it has none. Each import that changes it records one audit event, one
/// that does not records none, and a dry run shows the change and makes none.
#[tokio::test]
async fn a_merge_overwrites_keys_a_replace_replaces_and_each_change_is_audited_once() {
    let api = Api::new().await;
    let eval = api.token("evaluate", Some("production")).await;
    let first = import(&api, "", flagd_file(Some(json!({"team": "portal", "tier": "gold"})))).await;
    let change = first["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "metadata").unwrap().clone();
    assert_eq!(
        change,
        json!({"kind": "metadata", "key": "production", "action": "update",
               "before": {}, "after": {"team": "portal", "tier": "gold"}})
    );
    let events = metadata_events(&api).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((&events[0]["before"], &events[0]["after"]), (&json!({}), &json!({"team": "portal", "tier": "gold"})));

    let audited = api.audit_count().await;
    let same = import(&api, "", flagd_file(Some(json!({"team": "portal", "tier": "gold"})))).await;
    assert_eq!(same["changes"], json!([]), "the same file again changes nothing");
    assert_eq!(api.audit_count().await, audited, "and records nothing");

    import(&api, "", flagd_file(Some(json!({"tier": "silver", "region": "eu"})))).await;
    let merged = json!({"team": "portal", "tier": "silver", "region": "eu"});
    assert_eq!(served_metadata(&api, &eval, "plain").await, merged);

    let audited = api.audit_count().await;
    let dry = import(&api, "?mode=replace&dryRun=true", flagd_file(None)).await;
    let changes = dry["changes"].as_array().unwrap();
    assert!(
        changes.contains(&json!({"kind": "metadata", "key": "production", "action": "update",
                                     "before": merged, "after": {}})),
        "{dry}"
    );
    assert_eq!(served_metadata(&api, &eval, "plain").await, merged, "a dry run changes nothing");
    assert_eq!(api.audit_count().await, audited, "and records nothing");

    import(&api, "?mode=replace", flagd_file(None)).await;
    assert_eq!(served_metadata(&api, &eval, "plain").await, json!({}));
    let exported = api.admin(Method::GET, "/api/v1/environments/production/export", None).await.body;
    assert!(exported.get("metadata").is_none(), "{exported}");
    assert_eq!(metadata_events(&api).await.len(), 3, "one event per import that changed it");
}

/// A replica that did not make the change rebuilds the environment from the database: the
/// change is recorded as one of that environment's.
#[tokio::test]
async fn a_replica_following_the_database_serves_a_change_of_only_the_metadata() {
    let api = Api::new().await;
    import(&api, "", flagd_file(None)).await;
    let replica = api.replica().await;
    import(&api, "", flagd_file(Some(json!({"team": "portal"})))).await;
    assert!(replica.catch_up().await.unwrap(), "the replica found the change");
    let served = replica.snapshot("production").unwrap();
    let r = served.ruleset.evaluate("plain", &EvaluationContext::new());
    assert_eq!(Value::Object(r.metadata.clone()), json!({"team": "portal"}));
}
