//! The HTTP API end to end in-process (router + service + SQLite store), through
//! `oneshot` requests: what a caller sees for good and bad input.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use flagd_server::service::Service;
use flagd_server::store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) const ADMIN: &str = "admin-secret-for-tests";

/// A fresh server on its own SQLite file, with the admin token above.
pub(crate) struct Api {
    pub(crate) app: flagd_server::App,
    url: String,
    _dir: TempDir,
}

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Api {
    pub(crate) async fn new() -> Self {
        Self::over(|store| store).await.0
    }

    /// A fresh server whose store is `wrap` of its SQLite store, and the service behind it
    /// (for what no request reaches, such as the replicas' sync).
    pub(crate) async fn over(wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>) -> (Self, Arc<Service>) {
        let dir = std::env::temp_dir().join(format!("flagd-api-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("flagd.db").display());
        let service = service(wrap(flagd_server::store::connect(&url).await.unwrap())).await;
        let app = flagd_server::app(Arc::clone(&service));
        (Self { app, url, _dir: TempDir(dir) }, service)
    }

    /// A second server on the same database, which reads everything from it at start.
    pub(crate) async fn fresh_server(&self) -> flagd_server::App {
        start(&self.url).await
    }

    /// The service of a second server on the same database, started now: a replica, which
    /// applies what this one writes when it syncs ([`Service::catch_up`]).
    pub(crate) async fn replica(&self) -> Arc<Service> {
        service(flagd_server::store::connect(&self.url).await.unwrap()).await
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => Body::from(serde_json::to_vec(&v).unwrap()),
            None => Body::empty(),
        };
        self.send(req.header(header::CONTENT_TYPE, "application/json").body(body).unwrap()).await
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Reply {
        reply(self.app.clone(), req).await
    }

    pub(crate) async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(ADMIN), body, &[]).await
    }

    /// A new token of `role` (bound to `env` for `evaluate`), returning its value.
    pub(crate) async fn token(&self, role: &str, env: Option<&str>) -> String {
        let mut body = json!({"name": format!("{role} token"), "role": role});
        if let Some(env) = env {
            body["environment"] = json!(env);
        }
        let r = self.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["value"].as_str().unwrap().to_owned()
    }

    /// The Prometheus text of `/metrics`.
    pub(crate) async fn metrics(&self) -> String {
        let res = self.app.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
    }

    pub(crate) async fn ofrep(&self, token: &str, key: &str, context: Value) -> Reply {
        let path = format!("/ofrep/v1/evaluate/flags/{key}");
        self.call(Method::POST, &path, Some(token), Some(json!({"context": context})), &[]).await
    }

    pub(crate) async fn audit_count(&self) -> usize {
        let r = self.admin(Method::GET, "/api/v1/audit?limit=1000", None).await;
        r.body["events"].as_array().map_or(0, Vec::len)
    }

    pub(crate) async fn create_flag(&self, body: Value) {
        let r = self.admin(Method::POST, "/api/v1/flags", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    pub(crate) async fn create_segment(&self, env: &str, body: Value) {
        let r = self.admin(Method::POST, &format!("/api/v1/environments/{env}/segments"), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

/// `app`'s answer to a GET of `path` with the admin token.
pub(crate) async fn admin_get(app: flagd_server::App, path: &str) -> Reply {
    let req = Request::get(path).header(header::AUTHORIZATION, format!("Bearer {ADMIN}")).body(Body::empty());
    reply(app, req.unwrap()).await
}

/// `app`'s answer to `req`.
pub(crate) async fn reply(app: flagd_server::App, req: Request<Body>) -> Reply {
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    Reply { status, headers, body }
}

async fn start(url: &str) -> flagd_server::App {
    flagd_server::app(service(flagd_server::store::connect(url).await.unwrap()).await)
}

async fn service(store: Arc<dyn Store>) -> Arc<Service> {
    let (service, startup) = Service::start(store, Some(ADMIN)).await.unwrap();
    assert!(startup.generated_admin_token.is_none(), "an admin token was given");
    service
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    h.finish()
}

#[tokio::test]
async fn first_start_has_three_environments_and_new_flags_start_disabled() {
    let api = Api::new().await;
    let envs = api.admin(Method::GET, "/api/v1/environments", None).await;
    let names: Vec<&str> =
        envs.body["environments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3);
    for name in ["development", "staging", "production"] {
        assert!(names.contains(&name), "{names:?}");
    }
    api.create_flag(json!({"key": "customer_portal", "description": "New portal"})).await;
    let flag = api.admin(Method::GET, "/api/v1/flags/customer_portal", None).await;
    for env in ["development", "staging", "production"] {
        assert_eq!(flag.body["environments"][env]["state"], "DISABLED", "{}", flag.body);
    }
    let eval = api.token("evaluate", Some("production")).await;
    let r = api.ofrep(&eval, "customer_portal", json!({"companyId": 42})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (&r.body["value"], &r.body["variant"], &r.body["reason"]),
        (&json!(false), &json!("off"), &json!("DISABLED"))
    );
}

#[tokio::test]
async fn pilot_then_rollout_is_served_over_ofrep_immediately() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    let base = "/api/v1/flags/portal/environments/production";
    assert_eq!(api.admin(Method::POST, &format!("{base}/enable"), None).await.status, StatusCode::OK);
    let allow = api
        .admin(Method::POST, &format!("{base}/allow"), Some(json!({"companies": ["42", 7], "reason": "pilot"})))
        .await;
    assert_eq!(allow.status, StatusCode::OK, "{}", allow.body);
    assert_eq!(allow.body["allow"], json!(["42", "7"]));
    let rollout = api.admin(Method::PUT, &format!("{base}/rollout"), Some(json!({"percentage": 10}))).await;
    assert_eq!(rollout.status, StatusCode::OK, "{}", rollout.body);

    let eval = api.token("evaluate", Some("production")).await;
    let pilot = api.ofrep(&eval, "portal", json!({"companyId": 7})).await;
    assert_eq!((&pilot.body["value"], &pilot.body["reason"]), (&json!(true), &json!("TARGETING_MATCH")));
    for company in 100..160 {
        let r = api.ofrep(&eval, "portal", json!({"companyId": company, "targetingKey": "u"})).await;
        let bucket = flagd_core::hash::bucket("portal", &company.to_string(), 100_000);
        assert_eq!(r.body["value"], json!(bucket < 10_000), "company {company}");
        assert_eq!(r.body["reason"], "SPLIT");
    }
    let staging = api.token("evaluate", Some("staging")).await;
    assert_eq!(api.ofrep(&staging, "portal", json!({"companyId": 7})).await.body["reason"], "DISABLED");
}

/// A rollout by `userId` raised from 10 % to 50 %, as `flagctl rollout` and `ramp` send it
/// (no `bucketBy`): every user who had the feature keeps it.
#[tokio::test]
async fn a_rollout_without_bucket_by_keeps_the_bucketing_it_replaces() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "checkout"})).await;
    let base = "/api/v1/flags/checkout/environments/staging";
    api.admin(Method::POST, &format!("{base}/enable"), None).await;
    let eval = api.token("evaluate", Some("staging")).await;
    let users: Vec<String> = (0..200).map(|u| format!("u{u}")).collect();
    let served = |users: Vec<String>| {
        let (api, eval) = (&api, &eval);
        async move {
            let mut on = Vec::new();
            for user in users {
                let r = api.ofrep(eval, "checkout", json!({"companyId": 2, "userId": user})).await;
                assert_eq!(r.body["reason"], "SPLIT", "{}", r.body);
                if r.body["value"] == true {
                    on.push(user);
                }
            }
            on
        }
    };
    let rollout_path = format!("{base}/rollout");
    let rollout = |body: Value| api.admin(Method::PUT, &rollout_path, Some(body));

    let ten = rollout(json!({"percentage": 10, "bucketBy": "userId"})).await;
    assert_eq!(ten.body["fallthrough"]["rollout"]["bucketBy"], "userId", "{}", ten.body);
    let had_it = served(users.clone()).await;
    assert!(!had_it.is_empty() && had_it.len() < users.len(), "{had_it:?}");

    let fifty = rollout(json!({"percentage": 50})).await;
    assert_eq!(fifty.status, StatusCode::OK, "{}", fifty.body);
    assert_eq!(fifty.body["fallthrough"]["rollout"]["bucketBy"], "userId", "{}", fifty.body);
    let has_it = served(users.clone()).await;
    let lost: Vec<&String> = had_it.iter().filter(|u| !has_it.contains(u)).collect();
    assert!(lost.is_empty(), "users who lost the feature going from 10 % to 50 %: {lost:?}");
    assert!(has_it.len() > had_it.len(), "{has_it:?}");

    let weights = json!([{"variant": "on", "weight": 60}, {"variant": "off", "weight": 40}]);
    let weighted = rollout(json!({ "variants": weights })).await;
    assert_eq!(weighted.body["fallthrough"]["rollout"]["bucketBy"], "userId", "{}", weighted.body);

    // Back to the default, spelled out: stored as no `bucketBy`, so the same rollout
    // written either way compares equal and changes nothing.
    let by_company = rollout(json!({"percentage": 60, "bucketBy": "companyId"})).await;
    assert_eq!(by_company.status, StatusCode::OK, "{}", by_company.body);
    assert_eq!(by_company.body["fallthrough"]["rollout"].get("bucketBy"), None, "{}", by_company.body);
    let company_served = served(users.clone()).await;
    assert!(company_served.is_empty() || company_served.len() == users.len(), "one company, one answer");
    let again = rollout(json!({"percentage": 60})).await;
    assert_eq!(again.body["unchanged"], true, "{}", again.body);
    let mut config = api.admin(Method::GET, base, None).await;
    let etag = config.headers[header::ETAG].to_str().unwrap().to_owned();
    config.body["fallthrough"]["rollout"]["bucketBy"] = json!("companyId");
    let put = api.call(Method::PUT, base, Some(ADMIN), Some(config.body), &[("if-match", &etag)]).await;
    assert_eq!((put.status, &put.body["unchanged"]), (StatusCode::OK, &json!(true)), "{}", put.body);
}

#[tokio::test]
async fn stale_if_match_is_refused_with_the_current_state() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    let path = "/api/v1/flags/f/environments/staging";
    let read = api.admin(Method::GET, path, None).await;
    let etag = read.headers[header::ETAG].to_str().unwrap().to_owned();
    let mut config = read.body.clone();
    config["state"] = json!("ENABLED");

    let missing = api.admin(Method::PUT, path, Some(config.clone())).await;
    assert_eq!(missing.status, StatusCode::PRECONDITION_REQUIRED);

    let ok = api.call(Method::PUT, path, Some(ADMIN), Some(config.clone()), &[("if-match", &etag)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_ne!(ok.headers[header::ETAG].to_str().unwrap(), etag);

    config["deny"] = json!(["1"]);
    let stale = api.call(Method::PUT, path, Some(ADMIN), Some(config), &[("if-match", &etag)]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["error"]["code"], "PRECONDITION_FAILED");
    assert_eq!(stale.body["error"]["current"]["state"], "ENABLED");
    let now = api.admin(Method::GET, path, None).await;
    assert_eq!(now.body["deny"], Value::Null, "the stale write changed nothing");
}

/// One refused request: method, path, token, body, expected status and error code.
type BadCase<'a> = (Method, String, Option<&'a str>, Option<Value>, StatusCode, &'a str);

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    let reader = api.token("read", None).await;
    let revoked = api.token("admin", None).await;
    let list = api.admin(Method::GET, "/api/v1/tokens", None).await;
    let revoked_id = list.body["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "admin token").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.admin(Method::DELETE, &format!("/api/v1/tokens/{revoked_id}"), None).await.status,
        StatusCode::NO_CONTENT
    );

    let before_flag = api.admin(Method::GET, "/api/v1/flags/f", None).await.body;
    let before_audit = api.audit_count().await;
    let cfg = "/api/v1/flags/f/environments/production";
    let deep = json!({"key": "g", "metadata": {"x": (0..80).fold(json!(1), |acc, _| json!([acc]))}});
    let cases: Vec<BadCase<'_>> = vec![
        (
            Method::POST,
            "/api/v1/flags".into(),
            Some(ADMIN),
            Some(json!({"key": "Bad Key"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_DEFINITION",
        ),
        (
            Method::POST,
            "/api/v1/flags".into(),
            Some(ADMIN),
            Some(json!({"key": "g", "colour": "red"})),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/api/v1/flags".into(),
            Some(ADMIN),
            Some(json!({"key": "f"})),
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
        ),
        (Method::POST, "/api/v1/flags".into(), Some(ADMIN), Some(deep), StatusCode::BAD_REQUEST, "TOO_DEEP"),
        (
            Method::PUT,
            format!("{cfg}/rollout"),
            Some(ADMIN),
            Some(json!({"percentage": 150})),
            StatusCode::BAD_REQUEST,
            "INVALID_PERCENTAGE",
        ),
        (
            Method::PUT,
            format!("{cfg}/rollout"),
            Some(ADMIN),
            Some(json!({"percentage": 12.3456})),
            StatusCode::BAD_REQUEST,
            "INVALID_PERCENTAGE",
        ),
        (
            Method::PUT,
            format!("{cfg}/rollout"),
            Some(ADMIN),
            Some(json!({"percentage": "ten"})),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/api/v1/flags/f/environments/nowhere/enable".into(),
            Some(ADMIN),
            None,
            StatusCode::NOT_FOUND,
            "ENVIRONMENT_NOT_FOUND",
        ),
        (
            Method::POST,
            "/api/v1/flags/nope/environments/production/enable".into(),
            Some(ADMIN),
            None,
            StatusCode::NOT_FOUND,
            "FLAG_NOT_FOUND",
        ),
        (
            Method::POST,
            format!("{cfg}/allow"),
            Some(ADMIN),
            Some(json!({"companies": [1.5]})),
            StatusCode::BAD_REQUEST,
            "INVALID_COMPANY_ID",
        ),
        (
            Method::POST,
            format!("{cfg}/deny"),
            Some(ADMIN),
            Some(json!({"companies": ["42", ""]})),
            StatusCode::BAD_REQUEST,
            "INVALID_COMPANY_ID",
        ),
        (
            Method::POST,
            "/api/v1/environments/production/segments".into(),
            Some(ADMIN),
            Some(json!({"key": "pilot", "companies": [""]})),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::PUT,
            format!("{cfg}/rollout"),
            Some(ADMIN),
            Some(json!({"percentage": 50, "bucketBy": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_DEFINITION",
        ),
        // serde reads a struct from an array of its fields; the API takes objects only.
        (
            Method::POST,
            "/api/v1/flags".into(),
            Some(ADMIN),
            Some(json!(["g"])),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            "/api/v1/environments/production/import?mode=replace".into(),
            Some(ADMIN),
            Some(json!([])),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::POST,
            format!("{cfg}/allow"),
            Some(ADMIN),
            Some(json!({"companies": []})),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::PUT,
            cfg.into(),
            Some(ADMIN),
            Some(json!({"state": "ENABLED", "rules": [{"serve": {"variant": "nope"}}]})),
            StatusCode::PRECONDITION_REQUIRED,
            "PRECONDITION_REQUIRED",
        ),
        (Method::POST, format!("{cfg}/enable"), None, None, StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        (Method::POST, format!("{cfg}/enable"), Some("not-a-token"), None, StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        (Method::POST, format!("{cfg}/enable"), Some(revoked.as_str()), None, StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        (Method::POST, format!("{cfg}/enable"), Some(reader.as_str()), None, StatusCode::FORBIDDEN, "FORBIDDEN"),
        (
            Method::POST,
            "/api/v1/environments".into(),
            Some(ADMIN),
            Some(json!({"name": "UPPER"})),
            StatusCode::BAD_REQUEST,
            "INVALID_NAME",
        ),
        (Method::GET, "/api/v1/nothing-here".into(), Some(ADMIN), None, StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::GET, "/api/v1/audit?limit=many".into(), Some(ADMIN), None, StatusCode::BAD_REQUEST, "INVALID_QUERY"),
        (Method::GET, "/api/v1/audit?colour=red".into(), Some(ADMIN), None, StatusCode::BAD_REQUEST, "INVALID_QUERY"),
        (
            Method::POST,
            "/api/v1/environments/production/import?mode=sideways".into(),
            Some(ADMIN),
            Some(json!({"flags": []})),
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
        ),
    ];
    for (method, path, token, body, status, code) in cases {
        let r = api.call(method.clone(), &path, token, body, &[]).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{method} {path}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let malformed = Request::post("/api/v1/flags")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::from("{\"key\": "))
        .unwrap();
    let r = api.send(malformed).await;
    assert_eq!((r.status, &r.body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("INVALID_BODY")));
    let huge = Request::post("/api/v1/flags")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::from(format!("{{\"key\": \"h\", \"description\": \"{}\"}}", "x".repeat(1_100_000))))
        .unwrap();
    assert_eq!(api.send(huge).await.status, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(api.admin(Method::GET, "/api/v1/flags/f", None).await.body, before_flag);
    assert_eq!(api.audit_count().await, before_audit, "refused requests leave the audit log alone");
    assert_eq!(api.admin(Method::GET, "/api/v1/flags/g", None).await.status, StatusCode::NOT_FOUND);
}

/// The id of the token named `name`, and when it was revoked, as `caller` lists them.
async fn token_named(api: &Api, caller: &str, name: &str) -> (String, Value) {
    let list = api.call(Method::GET, "/api/v1/tokens", Some(caller), None, &[]).await;
    let found = list.body["tokens"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap().clone();
    (found["id"].as_str().unwrap().to_owned(), found["revokedAt"].clone())
}

/// A database where an earlier start stored an admin token with an empty value (the server
/// now refuses an empty `--admin-token`): a blank credential still names no token, in a
/// header or at the console's sign-in.
#[tokio::test]
async fn a_blank_credential_names_no_token_even_an_empty_one_stored_earlier() {
    let dir = std::env::temp_dir().join(format!("flagd-blank-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = TempDir(dir.clone());
    let store = flagd_server::store::connect(&format!("sqlite:{}", dir.join("flagd.db").display())).await.unwrap();
    let (service, _) = Service::start(store, Some("")).await.unwrap();
    let app = flagd_server::app(service);
    let create = || Request::post("/api/v1/flags").header(header::CONTENT_TYPE, "application/json");
    let body = || Body::from(r#"{"key": "blank"}"#);
    for (name, value) in [("x-api-key", ""), ("x-api-key", " "), ("authorization", "Bearer ")] {
        let r = reply(app.clone(), create().header(name, value).body(body()).unwrap()).await;
        assert_eq!((r.status, &r.body["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("UNAUTHORIZED")), "{name}");
    }
    let sign_in = Request::post("/ui/session").header(header::CONTENT_TYPE, "application/json");
    let r = reply(app.clone(), sign_in.body(Body::from(r#"{"token": ""}"#)).unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked() {
    let api = Api::new().await;
    let (first, _) = token_named(&api, ADMIN, "admin (--admin-token)").await;
    api.token("read", None).await;
    let before = api.audit_count().await;
    let refused = api.admin(Method::DELETE, &format!("/api/v1/tokens/{first}"), None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "LAST_ADMIN_TOKEN");
    assert_eq!(api.audit_count().await, before, "the refusal is not a change");

    let second = api.token("admin", None).await;
    assert_eq!(
        api.admin(Method::DELETE, &format!("/api/v1/tokens/{first}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.admin(Method::GET, "/api/v1/flags", None).await.status, StatusCode::UNAUTHORIZED);
    let (second_id, _) = token_named(&api, &second, "admin token").await;
    let own = api.call(Method::DELETE, &format!("/api/v1/tokens/{second_id}"), Some(&second), None, &[]).await;
    assert_eq!(own.body["error"]["code"], "LAST_ADMIN_TOKEN", "the one admin left keeps its token");
}

/// The audit log names whose token was revoked, and finds an evaluate token's revocation
/// by its environment, as it finds its creation.
#[tokio::test]
async fn a_revocation_is_logged_with_the_token_and_its_environment() {
    let api = Api::new().await;
    let body = json!({"name": "edge", "role": "evaluate", "environment": "staging"});
    let created = api.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(api.admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await.status, StatusCode::NO_CONTENT);
    let logged = api.admin(Method::GET, "/api/v1/audit?environment=staging", None).await;
    let actions = logged.body["events"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str());
    let tokens: Vec<&str> = actions.filter(|a| a.starts_with("token.")).collect();
    assert_eq!(tokens, ["token.revoke", "token.create"], "{}", logged.body);
    let revoke = &logged.body["events"][0];
    assert_eq!((&revoke["before"]["name"], &revoke["before"]["id"]), (&json!("edge"), &json!(id)), "{revoke}");
    assert!(revoke["before"]["revokedAt"].is_null() && revoke["after"]["revokedAt"].is_i64(), "{revoke}");
    assert!(revoke.to_string().find("hash").is_none(), "no secret in the log: {revoke}");
}

#[tokio::test]
async fn revoking_a_revoked_token_again_changes_nothing() {
    let api = Api::new().await;
    api.token("read", None).await;
    let (id, _) = token_named(&api, ADMIN, "read token").await;
    let path = format!("/api/v1/tokens/{id}");
    assert_eq!(api.admin(Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
    let (_, revoked_at) = token_named(&api, ADMIN, "read token").await;
    let events = api.audit_count().await;
    assert_eq!(api.admin(Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(token_named(&api, ADMIN, "read token").await.1, revoked_at, "the first revocation's time stays");
    assert_eq!(api.audit_count().await, events);
}

#[tokio::test]
async fn ofrep_follows_the_protocol() {
    let api = Api::new().await;
    api.create_flag(
        json!({"key": "theme", "variants": {"classic": "classic", "dark": "dark"}, "offVariant": "classic"}),
    )
    .await;
    api.create_flag(json!({"key": "limit", "variants": {"low": 10, "high": 100}, "offVariant": "low"})).await;
    let path = "/api/v1/flags/theme/environments/production";
    let cfg = api.admin(Method::GET, path, None).await;
    let etag = cfg.headers[header::ETAG].to_str().unwrap().to_owned();
    let body = json!({"state": "ENABLED", "rules": [{"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "serve": {"variant": "dark"}}]});
    assert_eq!(
        api.call(Method::PUT, path, Some(ADMIN), Some(body), &[("if-match", &etag)]).await.status,
        StatusCode::OK
    );
    let eval = api.token("evaluate", Some("production")).await;

    let pro = api.ofrep(&eval, "theme", json!({"plan": "pro"})).await;
    assert_eq!(
        pro.body,
        json!({"key": "theme", "value": "dark", "variant": "dark", "reason": "TARGETING_MATCH", "metadata": {}})
    );
    let missing = api.ofrep(&eval, "nope", json!({})).await;
    assert_eq!((missing.status, &missing.body["errorCode"]), (StatusCode::NOT_FOUND, &json!("FLAG_NOT_FOUND")));
    let bad_ctx = api.ofrep(&eval, "theme", json!({"companyId": 1.5})).await;
    assert_eq!((bad_ctx.status, &bad_ctx.body["errorCode"]), (StatusCode::BAD_REQUEST, &json!("INVALID_CONTEXT")));
    let details = bad_ctx.body["errorDetails"].as_str().unwrap_or_default();
    assert!(details.contains("a string or an integer from -2^63 to 2^64 - 1, got number"), "{details}");
    // A company named twice would be evaluated as the last one: refused, on every route
    // that reads a context.
    let twice = r#"{"context":{"companyId":42,"companyId":13}}"#;
    for path in ["/ofrep/v1/evaluate/flags/theme", "/ofrep/v1/evaluate/flags"] {
        let req = Request::post(path).header(header::AUTHORIZATION, format!("Bearer {eval}")).body(Body::from(twice));
        let r = api.send(req.unwrap()).await;
        assert_eq!((r.status, &r.body["errorCode"]), (StatusCode::BAD_REQUEST, &json!("INVALID_CONTEXT")), "{path}");
    }
    let diagnostic = "/api/v1/flags/theme/environments/production/evaluate";
    let req =
        Request::post(diagnostic).header(header::AUTHORIZATION, format!("Bearer {ADMIN}")).body(Body::from(twice));
    let r = api.send(req.unwrap()).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("INVALID_CONTEXT")),
        "{}",
        r.body
    );
    let undecodable = api.ofrep(&eval, "%FF", json!({})).await;
    assert_eq!((undecodable.status, &undecodable.body["errorCode"]), (StatusCode::BAD_REQUEST, &json!("PARSE_ERROR")));
    assert_eq!(undecodable.body["key"], "%FF", "OFREP's failure names the flag as the path gave it");
    let nul = api.ofrep(&eval, "f%00x", json!({})).await;
    assert_eq!(
        (nul.status, &nul.body["errorCode"], &nul.body["key"]),
        (StatusCode::BAD_REQUEST, &json!("PARSE_ERROR"), &json!("f%00x"))
    );
    let admin_eval = api.ofrep(ADMIN, "theme", json!({})).await;
    assert_eq!(admin_eval.status, StatusCode::FORBIDDEN);
    let by_key = api
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/theme",
            None,
            Some(json!({"context": {}})),
            &[("x-api-key", &eval)],
        )
        .await;
    assert_eq!(by_key.body["value"], "classic");
    // The scheme's name is case-insensitive.
    for scheme in ["BEARER", "bearer", "bEaReR"] {
        let auth = format!("{scheme} {eval}");
        let r = api
            .call(Method::POST, "/ofrep/v1/evaluate/flags/theme", None, Some(json!({})), &[("authorization", &auth)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", r.body);
    }
    let basic = api
        .call(
            Method::POST,
            "/ofrep/v1/evaluate/flags/theme",
            None,
            Some(json!({"context": {}})),
            &[("authorization", &format!("Basic {eval}"))],
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    let message = basic.body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("the `Authorization` header holds no bearer token"), "{message}");

    let bulk = api
        .call(Method::POST, "/ofrep/v1/evaluate/flags", Some(&eval), Some(json!({"context": {"plan": "pro"}})), &[])
        .await;
    assert_eq!(bulk.status, StatusCode::OK);
    let flags = bulk.body["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2);
    let etag = bulk.headers[header::ETAG].to_str().unwrap().to_owned();
    let (api, eval) = (&api, &eval);
    let revalidate = |held: String| async move {
        let context = Some(json!({"context": {"plan": "pro"}}));
        api.call(Method::POST, "/ofrep/v1/evaluate/flags", Some(eval), context, &[("if-none-match", &held)]).await
    };
    assert_eq!(revalidate(etag.clone()).await.status, StatusCode::NOT_MODIFIED);
    // A compressing proxy weakens the tags it passes on; the comparison is weak, in a list.
    for held in [format!("W/{etag}"), format!("\"other\", W/{etag}")] {
        assert_eq!(revalidate(held.clone()).await.status, StatusCode::NOT_MODIFIED, "{held}");
    }
    api.admin(Method::POST, "/api/v1/flags/limit/environments/production/enable", None).await;
    let changed = revalidate(format!("W/{etag}")).await;
    assert_eq!(changed.status, StatusCode::OK, "a change invalidates the ETag");
}

/// Bulk answers are kept per snapshot by the outcome of every flag: contexts asked in turn,
/// each several times, with errors among them, always get exactly the single-flag answers,
/// and one ETag per distinct answer.
#[tokio::test]
async fn bulk_answers_match_the_single_flag_answers_for_every_context_in_turn() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    api.create_flag(json!({"key": "split"})).await;
    let portal = "/api/v1/flags/portal/environments/production";
    let split = "/api/v1/flags/split/environments/production";
    for (method, path, body) in [
        (Method::POST, format!("{portal}/enable"), None),
        (Method::POST, format!("{portal}/allow"), Some(json!({"companies": ["42"]}))),
        (Method::POST, format!("{split}/enable"), None),
        (Method::PUT, format!("{split}/rollout"), Some(json!({"percentage": 50}))),
    ] {
        let r = api.admin(method, &path, body).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }
    let eval = api.token("evaluate", Some("production")).await;
    // 42 is allow-listed, the others differ by rollout bucket; {} has no company, so the
    // rollout fails with TARGETING_KEY_MISSING in its item.
    let contexts = [json!({"companyId": 42}), json!({"companyId": 7}), json!({}), json!({"companyId": "8"})];
    let mut etags = std::collections::HashMap::new();
    for round in 0..3 {
        for ctx in &contexts {
            let bulk = api
                .call(Method::POST, "/ofrep/v1/evaluate/flags", Some(&eval), Some(json!({"context": ctx})), &[])
                .await;
            assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
            for item in bulk.body["flags"].as_array().unwrap() {
                let key = item["key"].as_str().unwrap();
                let single = api.ofrep(&eval, key, ctx.clone()).await.body;
                assert_eq!(item, &single, "round {round}, context {ctx}, flag {key}");
            }
            let etag = bulk.headers[header::ETAG].to_str().unwrap().to_owned();
            let previous = etags.insert(bulk.body.to_string(), etag.clone());
            assert!(previous.is_none_or(|p| p == etag), "one ETag per answer");
        }
    }
    assert!(etags.len() >= 3, "the contexts give different answers: {etags:?}");
    assert_eq!(etags.values().collect::<std::collections::HashSet<_>>().len(), etags.len());
}

#[tokio::test]
async fn segments_change_every_flag_that_uses_them_and_cannot_vanish_under_them() {
    let api = Api::new().await;
    api.create_segment("production", json!({"key": "pilot", "companies": ["1"]})).await;
    api.create_flag(json!({"key": "f"})).await;
    let path = "/api/v1/flags/f/environments/production";
    let etag = api.admin(Method::GET, path, None).await.headers[header::ETAG].to_str().unwrap().to_owned();
    let body = json!({"state": "ENABLED", "rules": [{"segments": ["pilot"], "serve": {"variant": "on"}}]});
    assert_eq!(
        api.call(Method::PUT, path, Some(ADMIN), Some(body), &[("if-match", &etag)]).await.status,
        StatusCode::OK
    );
    let eval = api.token("evaluate", Some("production")).await;
    assert_eq!(api.ofrep(&eval, "f", json!({"companyId": 2})).await.body["value"], false);
    let segment = "/api/v1/environments/production/segments/pilot";
    let unconditional = api.admin(Method::PUT, segment, Some(json!({"companies": ["1", "2"]}))).await;
    assert_eq!(unconditional.status, StatusCode::PRECONDITION_REQUIRED, "a replacement needs If-Match");
    let etag = api.admin(Method::GET, segment, None).await.headers[header::ETAG].to_str().unwrap().to_owned();
    let put = api
        .call(Method::PUT, segment, Some(ADMIN), Some(json!({"companies": ["1", "2"]})), &[("if-match", &etag)])
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(api.ofrep(&eval, "f", json!({"companyId": 2})).await.body["value"], true);
    let events = api.audit_count().await;
    let del = api.admin(Method::DELETE, "/api/v1/environments/production/segments/pilot", None).await;
    assert_eq!(
        (del.status, &del.body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("SEGMENT_IN_USE")),
        "{}",
        del.body
    );
    let message = del.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("segment `pilot` is used by the rules of `f` in `production`"), "{message}");
    assert_eq!(api.audit_count().await, events, "nothing deleted");
    assert_eq!(api.ofrep(&eval, "f", json!({"companyId": 2})).await.body["value"], true);
}

#[tokio::test]
async fn the_audit_log_records_each_change_with_actor_reason_and_diff() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    let base = "/api/v1/flags/f/environments/production";
    api.admin(Method::POST, &format!("{base}/enable"), Some(json!({"reason": "launch"}))).await;
    api.admin(Method::POST, &format!("{base}/disable"), Some(json!({"reason": "incident 42"}))).await;
    let r = api.admin(Method::GET, "/api/v1/audit?flag=f&environment=production", None).await;
    let events = r.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{}", r.body);
    assert_eq!(events[0]["action"], "config.disable");
    assert_eq!(events[0]["reason"], "incident 42");
    assert_eq!(events[0]["before"]["state"], "ENABLED");
    assert_eq!(events[0]["after"]["state"], "DISABLED");
    assert_eq!(events[0]["actor"], "admin (--admin-token)");
    let page = api.admin(Method::GET, "/api/v1/audit?limit=1", None).await;
    let cursor = page.body["nextCursor"].as_i64().unwrap();
    let next = api.admin(Method::GET, &format!("/api/v1/audit?limit=1&cursor={cursor}"), None).await;
    assert!(next.body["events"][0]["id"].as_i64().unwrap() < cursor);
}

/// A company id written as a number past 64 bits arrives as a float: the allow and deny
/// operations, like a configuration, say which ids they take and what to do instead.
#[tokio::test]
async fn a_company_id_past_64_bits_is_refused_with_what_to_do() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    let events = api.audit_count().await;
    let body: Value = serde_json::from_str(r#"{"companies": ["7", 18446744073709551616]}"#).unwrap();
    for op in ["allow", "deny"] {
        let r =
            api.admin(Method::POST, &format!("/api/v1/flags/f/environments/staging/{op}"), Some(body.clone())).await;
        assert_eq!((r.status, &r.body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("INVALID_COMPANY_ID")));
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("from -2^63 to 2^64 - 1") && message.ends_with("write a longer id as a string"),
            "{message}"
        );
    }
    assert_eq!(api.audit_count().await, events, "nothing changed");
}

/// Token names may repeat (a token rotated under the same name), so each event also keeps
/// the id of the token that made it, as the token list shows it.
#[tokio::test]
async fn the_audit_log_tells_apart_two_tokens_of_one_name() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    let mut ids = Vec::new();
    for reason in ["old deploy token", "new deploy token"] {
        let body = json!({"name": "deploy", "role": "admin"});
        let created = api.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let (id, value) = (created.body["id"].as_str().unwrap(), created.body["value"].as_str().unwrap());
        let path = "/api/v1/flags/f/environments/staging/enable";
        let op = if ids.is_empty() { path.to_owned() } else { path.replace("enable", "disable") };
        let r = api.call(Method::POST, &op, Some(value), Some(json!({ "reason": reason })), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        ids.push(id.to_owned());
    }
    let tokens = api.admin(Method::GET, "/api/v1/tokens", None).await.body;
    let listed: Vec<_> = tokens["tokens"].as_array().unwrap().iter().filter(|t| t["name"] == "deploy").collect();
    assert!(ids.iter().all(|id| listed.iter().any(|t| t["id"] == json!(id))), "{tokens}");

    let events = api.admin(Method::GET, "/api/v1/audit?actor=deploy", None).await.body;
    let by: Vec<_> = events["events"].as_array().unwrap().iter().map(|e| (&e["actorToken"], &e["reason"])).collect();
    let expected = [(json!(ids[1]), json!("new deploy token")), (json!(ids[0]), json!("old deploy token"))];
    assert_eq!(by, expected.iter().map(|(a, b)| (a, b)).collect::<Vec<_>>(), "{events}");
    // The server's own changes (the environments of its first start) name no token.
    let first = api.admin(Method::GET, "/api/v1/audit?actor=flagd-server&limit=1", None).await.body;
    assert_eq!((&first["events"][0]["actor"], first["events"][0].get("actorToken")), (&json!("flagd-server"), None));
}

#[tokio::test]
async fn the_audit_log_of_an_unknown_environment_is_not_found_and_a_quiet_one_is_an_empty_page() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    api.admin(Method::POST, "/api/v1/flags/f/environments/production/enable", None).await;
    let r = api.admin(Method::GET, "/api/v1/audit?flag=f&environment=prodution", None).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("ENVIRONMENT_NOT_FOUND")));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("`prodution`"), "{}", r.body);

    let r = api.admin(Method::GET, "/api/v1/audit?flag=f&environment=development", None).await;
    assert_eq!((r.status, &r.body["events"]), (StatusCode::OK, &json!([])), "{}", r.body);
    // A flag is not checked: one deleted keeps its history, so an unknown one has an empty one.
    let r = api.admin(Method::GET, "/api/v1/audit?flag=nosuch", None).await;
    assert_eq!((r.status, &r.body["events"]), (StatusCode::OK, &json!([])), "{}", r.body);
}

#[tokio::test]
async fn promote_copies_rules_but_keeps_the_target_state() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    api.admin(Method::POST, "/api/v1/flags/f/environments/staging/enable", None).await;
    api.admin(Method::PUT, "/api/v1/flags/f/environments/staging/rollout", Some(json!({"percentage": 25}))).await;
    let r =
        api.admin(Method::POST, "/api/v1/flags/f/promote", Some(json!({"from": "staging", "to": "production"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["state"], "DISABLED");
    assert_eq!(r.body["fallthrough"]["rollout"]["variants"][0]["weight"], 25.0);
}

/// Promoting from an environment where nothing was set would take the target's pilot
/// companies and rollout away: it is refused, naming the flag and both environments, and
/// changes nothing. Once the source is set up, the same promotion goes through.
#[tokio::test]
async fn promoting_an_untouched_configuration_over_a_set_one_is_refused() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    let production = "/api/v1/flags/f/environments/production";
    api.admin(Method::POST, &format!("{production}/allow"), Some(json!({"companies": ["42"]}))).await;
    let before = (api.admin(Method::GET, production, None).await.body, api.audit_count().await);
    for include_state in [false, true] {
        let body = json!({"from": "staging", "to": "production", "includeState": include_state});
        let r = api.admin(Method::POST, "/api/v1/flags/f/promote", Some(body)).await;
        assert_eq!((r.status, &r.body["error"]["code"]), (StatusCode::CONFLICT, &json!("NOTHING_TO_PROMOTE")));
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("flag `f` has nothing set in `staging`"), "{message}");
        assert!(message.contains("clear its configuration in `production`"), "{message}");
    }
    let after = (api.admin(Method::GET, production, None).await.body, api.audit_count().await);
    assert_eq!(after, before, "a refused promotion changes nothing");

    api.admin(Method::POST, "/api/v1/flags/f/environments/staging/enable", None).await;
    let body = json!({"from": "staging", "to": "production"});
    let r = api.admin(Method::POST, "/api/v1/flags/f/promote", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((&r.body["state"], r.body.get("allow")), (&json!("DISABLED"), None), "{}", r.body);
}

#[tokio::test]
async fn a_bad_query_parameter_is_named_in_the_error() {
    let api = Api::new().await;
    let cases = [
        (Method::GET, "/api/v1/audit?limit=many", "invalid query parameter `limit`"),
        (Method::GET, "/api/v1/audit?cursor=zzz", "invalid query parameter `cursor`"),
        (Method::POST, "/api/v1/environments/production/import?dryRun=maybe", "invalid query parameter `dryRun`"),
        (Method::GET, "/api/v1/audit?colour=red", "unknown field `colour`"),
    ];
    for (method, path, named) in cases {
        let r = api.admin(method.clone(), path, None).await;
        assert_eq!((r.status, &r.body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("INVALID_QUERY")), "{path}");
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{method} {path}: {message}");
    }
}

#[tokio::test]
async fn company_lists_keep_their_order_and_name_each_company_once() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    let cfg = "/api/v1/flags/f/environments/production";
    let steps = [
        ("allow", Method::POST, json!(["42", 7, "42"]), "allow", json!(["42", "7"])),
        ("allow", Method::POST, json!(["7", "13", "1"]), "allow", json!(["42", "7", "13", "1"])),
        ("allow", Method::DELETE, json!(["42", "99", "1"]), "allow", json!(["7", "13"])),
        ("deny", Method::POST, json!(["5", "5", "6"]), "deny", json!(["5", "6"])),
        ("deny", Method::DELETE, json!(["6"]), "deny", json!(["5"])),
    ];
    for (op, method, companies, list, expected) in steps {
        let r = api.admin(method.clone(), &format!("{cfg}/{op}"), Some(json!({"companies": companies}))).await;
        assert_eq!(r.status, StatusCode::OK, "{method} {op} {companies}: {}", r.body);
        assert_eq!(r.body[list], expected, "{method} {op} {companies}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_quick_operations_lose_no_update() {
    let api = Arc::new(Api::new().await);
    api.create_flag(json!({"key": "f"})).await;
    let before = api.audit_count().await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let api = Arc::clone(&api);
            tokio::spawn(async move {
                let body = json!({"companies": [i.to_string()]});
                api.admin(Method::POST, "/api/v1/flags/f/environments/production/allow", Some(body)).await.status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let cfg = api.admin(Method::GET, "/api/v1/flags/f/environments/production", None).await;
    assert_eq!(cfg.body["allow"].as_array().unwrap().len(), 40, "{}", cfg.body);
    assert_eq!(api.audit_count().await, before + 40);
}

#[tokio::test]
async fn metrics_count_evaluations_by_flag_variant_and_reason() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "f"})).await;
    let eval = api.token("evaluate", Some("production")).await;
    for _ in 0..3 {
        api.ofrep(&eval, "f", json!({"companyId": 1})).await;
    }
    api.admin(Method::POST, "/api/v1/flags/f/environments/production/enable", None).await;
    api.ofrep(&eval, "f", json!({"companyId": 1})).await;
    api.call(Method::POST, "/ofrep/v1/evaluate/flags", Some(&eval), Some(json!({"context": {}})), &[]).await;

    let text = api.metrics().await;
    let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
    let count = |prefix: &str| line(prefix).and_then(|l| l.rsplit(' ').next().map(str::to_owned));
    let eval_line = "flagd_evaluations_total{environment=\"production\",flag=\"f\",variant=\"off\"";
    assert_eq!(count(&format!("{eval_line},reason=\"DISABLED\"}}")).as_deref(), Some("3"), "{text}");
    assert_eq!(
        count(&format!("{eval_line},reason=\"STATIC\"}}")).as_deref(),
        Some("2"),
        "counted across the swap: {text}"
    );
    assert_eq!(count("flagd_http_request_duration_seconds_count{route=\"ofrep_single\"}").as_deref(), Some("4"));
    assert_eq!(count("flagd_http_request_duration_seconds_count{route=\"ofrep_bulk\"}").as_deref(), Some("1"));
    assert!(line("flagd_ruleset_version{environment=\"production\"}").is_some(), "{text}");
    assert!(count("flagd_ruleset_reloads_total").is_some_and(|n| n.parse::<u64>().unwrap() >= 4));
}

#[tokio::test]
async fn metrics_count_every_flag_of_every_bulk_answer_even_when_served_again() {
    let api = Api::new().await;
    for key in ["a", "b"] {
        api.create_flag(json!({"key": key})).await;
    }
    api.admin(Method::POST, "/api/v1/flags/a/environments/production/enable", None).await;
    let eval = api.token("evaluate", Some("production")).await;
    let bulk = |n: usize| {
        let (api, eval) = (&api, &eval);
        async move {
            for _ in 0..n {
                let r =
                    api.call(Method::POST, "/ofrep/v1/evaluate/flags", Some(eval), Some(json!({"context": {}})), &[]);
                assert_eq!(r.await.status, StatusCode::OK);
            }
        }
    };
    let counted = |text: &str, flag: &str, reason: &str| {
        let prefix = format!(
            "flagd_evaluations_total{{environment=\"production\",flag=\"{flag}\",variant=\"off\",reason=\"{reason}\"}} "
        );
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|n| n.parse::<u64>().unwrap())
    };

    bulk(5).await;
    let text = api.metrics().await;
    assert_eq!((counted(&text, "a", "STATIC"), counted(&text, "b", "DISABLED")), (Some(5), Some(5)), "{text}");
    bulk(2).await;
    let text = api.metrics().await;
    assert_eq!((counted(&text, "a", "STATIC"), counted(&text, "b", "DISABLED")), (Some(7), Some(7)), "{text}");

    // Answers served from a snapshot that a change then replaced are counted too.
    bulk(3).await;
    api.admin(Method::POST, "/api/v1/flags/b/environments/production/enable", None).await;
    bulk(1).await;
    let text = api.metrics().await;
    assert_eq!(counted(&text, "a", "STATIC"), Some(11), "{text}");
    assert_eq!((counted(&text, "b", "DISABLED"), counted(&text, "b", "STATIC")), (Some(10), Some(1)), "{text}");
}

#[tokio::test]
async fn export_and_import_move_an_environment_and_dry_runs_change_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    let base = "/api/v1/flags/portal/environments/staging";
    api.admin(Method::POST, &format!("{base}/enable"), None).await;
    api.admin(Method::PUT, &format!("{base}/rollout"), Some(json!({"percentage": 12.5}))).await;
    let exported = api.admin(Method::GET, "/api/v1/environments/staging/export", None).await;
    assert_eq!(exported.status, StatusCode::OK, "{}", exported.body);
    assert_eq!(exported.body["flags"]["portal"]["state"], "ENABLED");
    assert!(exported.body["flags"]["portal"]["targeting"]["if"][1]["fractional"].is_array(), "{}", exported.body);

    let audit_before = api.audit_count().await;
    let dry = api
        .admin(Method::POST, "/api/v1/environments/production/import?dryRun=true", Some(exported.body.clone()))
        .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    assert_eq!(dry.body["dryRun"], true);
    assert_eq!(dry.body["changes"][0]["kind"], "config");
    assert_eq!(
        api.admin(Method::GET, "/api/v1/flags/portal/environments/production", None).await.body["state"],
        "DISABLED"
    );
    assert_eq!(api.audit_count().await, audit_before, "a dry run writes nothing");

    let real = api.admin(Method::POST, "/api/v1/environments/production/import", Some(exported.body)).await;
    assert_eq!(real.status, StatusCode::OK, "{}", real.body);
    let eval_staging = api.token("evaluate", Some("staging")).await;
    let eval_prod = api.token("evaluate", Some("production")).await;
    for company in 0..40 {
        let ctx = json!({"companyId": company});
        let a = api.ofrep(&eval_staging, "portal", ctx.clone()).await.body["value"].clone();
        let b = api.ofrep(&eval_prod, "portal", ctx).await.body["value"].clone();
        assert_eq!(a, b, "company {company} is served alike after the import");
    }

    let flagd_file = json!({"$evaluators": {"pro": {"==": [{"var": "plan"}, "pro"]}},
        "flags": {"theme": {"state": "ENABLED", "variants": {"dark": "dark", "light": "light"}, "defaultVariant": "light",
                            "targeting": {"if": [{"$ref": "pro"}, "dark", null]}}}});
    let r = api.admin(Method::POST, "/api/v1/environments/development/import?mode=replace", Some(flagd_file)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let eval_dev = api.token("evaluate", Some("development")).await;
    assert_eq!(api.ofrep(&eval_dev, "theme", json!({"plan": "pro"})).await.body["value"], "dark");

    let invalid = json!({"flags": {"broken": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "zzz"}}});
    let before = api.audit_count().await;
    let r = api.admin(Method::POST, "/api/v1/environments/development/import", Some(invalid)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(api.admin(Method::GET, "/api/v1/flags/broken", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.audit_count().await, before, "an invalid file changes nothing");
}

/// Importing what an environment already holds (a deploy that imports the same file every
/// time) is an unchanged write: no new version, nothing for replicas and clients to reload,
/// no audit event.
#[tokio::test]
async fn an_import_that_changes_nothing_makes_no_new_version() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    api.create_segment("staging", json!({"key": "pilot", "companies": ["1"]})).await;
    api.admin(Method::POST, "/api/v1/flags/portal/environments/staging/enable", None).await;
    // The first flagd import of what our own format built spells out its implicit parts
    // (README, "flagd format"); from then on the file is what the environment holds.
    let flagd = api.admin(Method::GET, "/api/v1/environments/staging/export", None).await;
    api.admin(Method::POST, "/api/v1/environments/staging/import", Some(flagd.body)).await;
    let snapshot = "/api/v1/environments/staging/snapshot";
    let version = |r: &Reply| r.headers[header::ETAG].to_str().unwrap().to_owned();
    let before = version(&api.admin(Method::GET, snapshot, None).await);
    let applied = api.call(Method::GET, "/readyz", None, None, &[]).await.body["appliedSeq"].clone();
    let events = api.audit_count().await;
    for format in ["flagd", "native"] {
        let exported =
            api.admin(Method::GET, &format!("/api/v1/environments/staging/export?format={format}"), None).await;
        // A flagd file has no segments (it inlines them), so a replace with one would delete them.
        let modes: &[&str] = if format == "native" { &["merge", "replace"] } else { &["merge"] };
        for mode in modes {
            let path = format!("/api/v1/environments/staging/import?mode={mode}");
            let r = api.admin(Method::POST, &path, Some(exported.body.clone())).await;
            assert_eq!((r.status, &r.body["changes"]), (StatusCode::OK, &json!([])), "{format} {mode}: {}", r.body);
        }
    }
    assert_eq!(version(&api.admin(Method::GET, snapshot, None).await), before, "the same version");
    let now = api.call(Method::GET, "/readyz", None, None, &[]).await.body["appliedSeq"].clone();
    assert_eq!(now, applied, "no change sequence number taken");
    assert_eq!(api.audit_count().await, events, "nothing recorded");
}

/// A flagd file cannot carry a flag's on variant: importing one (here, another
/// environment's export) keeps the stored on variant, so allow lists, wherever they are,
/// and percentage rollouts go on working. A native file, which can carry it, decides.
#[tokio::test]
async fn a_flagd_import_keeps_the_on_variant_the_format_cannot_carry() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "str_flag", "variants": {"red": "r", "green": "g", "blue": "b"},
                           "offVariant": "red", "onVariant": "green"}))
        .await;
    let r = api.admin(Method::POST, "/api/v1/environments", Some(json!({"name": "other"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let staging = "/api/v1/flags/str_flag/environments/staging";
    let r = api.admin(Method::POST, &format!("{staging}/allow"), Some(json!({"companies": ["42"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    api.admin(Method::POST, &format!("{staging}/enable"), None).await;

    let exported = api.admin(Method::GET, "/api/v1/environments/staging/export", None).await;
    assert_eq!(exported.body["flags"]["str_flag"]["defaultVariant"], "red", "{}", exported.body);
    let r = api.admin(Method::POST, "/api/v1/environments/other/import", Some(exported.body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let flag = api.admin(Method::GET, "/api/v1/flags/str_flag", None).await.body;
    assert_eq!((&flag["offVariant"], &flag["onVariant"]), (&json!("red"), &json!("green")), "{flag}");
    let other = api.token("evaluate", Some("other")).await;
    assert_eq!(api.ofrep(&other, "str_flag", json!({"companyId": 42})).await.body["variant"], "green");
    assert_eq!(api.ofrep(&other, "str_flag", json!({"companyId": 7})).await.body["variant"], "red");

    let production = "/api/v1/flags/str_flag/environments/production";
    let r = api.admin(Method::POST, &format!("{production}/allow"), Some(json!({"companies": ["1"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api.admin(Method::PUT, &format!("{production}/rollout"), Some(json!({"percentage": 10}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // The on variant is what production's list and rollout serve: an import into `other`
    // may not change it.
    let mut native = api.admin(Method::GET, "/api/v1/environments/other/export?format=native", None).await.body;
    native["flags"][0]["onVariant"] = json!("blue");
    let r = api.admin(Method::POST, "/api/v1/environments/other/import", Some(native)).await;
    assert_eq!((r.status, &r.body["error"]["code"]), (StatusCode::CONFLICT, &json!("SHARED_DEFINITION")), "{}", r.body);
    assert_eq!(api.admin(Method::GET, "/api/v1/flags/str_flag", None).await.body["onVariant"], "green");
}

/// An imported flagd flag without `defaultVariant` has no off variant, even one called
/// `off`: when its targeting picks nothing it serves the caller's default with reason
/// `DEFAULT`, as flagd does, also after a restart and through the in-process snapshot.
#[tokio::test]
async fn an_imported_flagd_flag_without_default_variant_serves_no_off_variant() {
    let api = Api::new().await;
    let file = json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": "new-ui", "off": "old-ui"},
                                      "targeting": {"if": [false, "on", null]}}}});
    let r = api.admin(Method::POST, "/api/v1/environments/production/import", Some(file)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let eval = api.token("evaluate", Some("production")).await;
    let served = |body: &Value| (body["value"].clone(), body["variant"].clone(), body["reason"].clone());
    let expected = (Value::Null, Value::Null, json!("DEFAULT"));
    assert_eq!(served(&api.ofrep(&eval, "f", json!({"companyId": 1})).await.body), expected);

    let restarted = api.fresh_server().await;
    let req = Request::post("/ofrep/v1/evaluate/flags/f")
        .header(header::AUTHORIZATION, format!("Bearer {eval}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"context": {"companyId": 1}}).to_string()))
        .unwrap();
    assert_eq!(served(&reply(restarted, req).await.body), expected, "after a restart");

    let snapshot = api.admin(Method::GET, "/api/v1/environments/production/snapshot", None).await.body;
    let source = serde_json::from_value(snapshot["ruleset"].clone()).unwrap();
    let in_process = flagd_core::Ruleset::compile(&source).unwrap();
    let r = in_process.evaluate("f", &flagd_core::EvaluationContext::from_json(json!({})).unwrap());
    assert_eq!((r.variant, r.reason.as_str()), (None, "DEFAULT"), "in process");

    let exported = api.admin(Method::GET, "/api/v1/environments/production/export", None).await.body;
    assert_eq!(exported["flags"]["f"]["defaultVariant"], Value::Null, "{exported}");
}

/// A file saved as UTF-8 by an editor on Windows starts with a byte order mark: it is
/// read as the JSON after it, for an import as for any admin body.
#[tokio::test]
async fn a_body_starting_with_a_byte_order_mark_is_read_as_the_json_after_it() {
    let api = Api::new().await;
    let admin = |path: &str, json: &str| {
        Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
            .body(Body::from(format!("\u{feff}{json}")))
            .unwrap()
    };
    let created = api.send(admin("/api/v1/flags", r#"{"key": "portal"}"#)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let file = r#"{"flags": {"theme": {"state": "ENABLED", "variants": {"a": "a"}, "defaultVariant": "a"}}}"#;
    let imported = api.send(admin("/api/v1/environments/staging/import", file)).await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    assert_eq!(imported.body["changes"][0]["key"], "theme", "{}", imported.body);
    let twice = api.send(admin("/api/v1/flags", &format!("\u{feff}{}", r#"{"key": "other"}"#))).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "one mark, not two: {}", twice.body);
}

/// A file that lists a flag or a segment twice is refused as a whole, in either format,
/// with each repeated key named, instead of the last entry silently winning.
#[tokio::test]
async fn an_import_listing_a_key_twice_is_refused_and_changes_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "dupx"})).await;
    let export = "/api/v1/environments/production/export?format=native";
    let before = (api.admin(Method::GET, export, None).await.body, api.audit_count().await);
    let flag = |state: &str| json!({"key": "dupx", "state": state});
    let segment = |company: &str| json!({"key": "pilot", "companies": [company]});
    let files = [
        (json!({"flags": [flag("DISABLED"), flag("ENABLED")]}), vec![("flags.dupx", "duplicate flag key `dupx`")]),
        (json!({"segments": [segment("1"), segment("2")]}), vec![("segments.pilot", "duplicate segment key `pilot`")]),
        (
            json!({"flags": [flag("ENABLED"), flag("ENABLED")], "segments": [segment("1"), segment("1")]}),
            vec![("flags.dupx", "duplicate flag key `dupx`"), ("segments.pilot", "duplicate segment key `pilot`")],
        ),
    ];
    for (file, expected) in files {
        for query in ["", "?dryRun=true", "?mode=replace"] {
            let path = format!("/api/v1/environments/production/import{query}");
            let r = api.admin(Method::POST, &path, Some(file.clone())).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query} {file}: {}", r.body);
            assert_eq!(r.body["error"]["code"], "INVALID_DEFINITION", "{}", r.body);
            let problems: Vec<_> = r.body["error"]["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["path"].as_str().unwrap(), p["message"].as_str().unwrap()))
                .collect();
            assert_eq!(problems, expected, "{}", r.body);
        }
    }
    let after = (api.admin(Method::GET, export, None).await.body, api.audit_count().await);
    assert_eq!(after, before, "a refused file changes nothing");
}

/// An import's report says what each change is: a flag the file creates has no
/// configuration before it, and a document too large to store is named, so that a file of
/// many flags and segments is fixed without searching.
#[tokio::test]
async fn an_import_reports_new_configurations_as_new_and_names_what_is_too_large() {
    let (api, service) = Api::over(|store| store).await;
    service.set_import_limit(4 << 20);
    let file = json!({"flags": [{"key": "fresh", "state": "ENABLED"}]});
    let dry = api.admin(Method::POST, "/api/v1/environments/production/import?dryRun=true", Some(file)).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    let config = dry.body["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "config").unwrap();
    assert_eq!((&config["action"], &config["before"]), (&json!("create"), &Value::Null), "{}", dry.body);
    assert_eq!(config["after"]["state"], "ENABLED", "{}", dry.body);

    let companies: Vec<String> = (0..95_000).map(|n| format!("company-{n:06}")).collect();
    let file = json!({"segments": [{"key": "small", "companies": ["1"]}, {"key": "huge", "companies": companies}]});
    let events = api.audit_count().await;
    let r = api.admin(Method::POST, "/api/v1/environments/production/import", Some(file)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "DOCUMENT_TOO_LARGE", "{}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("the segment `huge` in `production` would be"), "{message}");
    assert_eq!(api.audit_count().await, events, "a refused import changes nothing");
}

/// A write that changes nothing (a repeated kill switch, a company already listed, a
/// configuration put back as it is) is acknowledged as such: no new version, no audit
/// event, nothing for the replicas to apply.
#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_version_and_records_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    let path = "/api/v1/flags/portal/environments/production";
    let enabled = api.admin(Method::POST, &format!("{path}/enable"), None).await;
    assert_eq!((enabled.status, enabled.body.get("unchanged")), (StatusCode::OK, None), "{}", enabled.body);
    let listed = api.admin(Method::POST, &format!("{path}/allow"), Some(json!({"companies": ["7"]}))).await;
    let version = &listed.body["version"];
    let etag = listed.headers[header::ETAG].to_str().unwrap().to_owned();
    let events = api.audit_count().await;

    let config = api.admin(Method::GET, path, None).await.body;
    let again = [
        api.admin(Method::POST, &format!("{path}/enable"), Some(json!({"reason": "incident 12"}))).await,
        api.admin(Method::POST, &format!("{path}/allow"), Some(json!({"companies": ["7"]}))).await,
        api.admin(Method::DELETE, &format!("{path}/deny"), Some(json!({"companies": ["9"]}))).await,
        api.call(Method::PUT, path, Some(ADMIN), Some(config), &[("if-match", &etag)]).await,
    ];
    for r in &again {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!((&r.body["unchanged"], &r.body["version"]), (&json!(true), version), "{}", r.body);
        assert_eq!(r.headers[header::ETAG].to_str().unwrap(), etag);
        assert_eq!(r.body["allow"], json!(["7"]));
    }
    assert_eq!(api.audit_count().await, events, "nothing recorded");
    let seq = version.as_i64().unwrap();
    let latest = api.admin(Method::GET, "/api/v1/cluster", None).await.body["currentSeq"].as_i64().unwrap();
    assert_eq!(latest, seq, "no change was written");

    let changed = api.admin(Method::POST, &format!("{path}/disable"), None).await;
    assert_eq!((changed.body.get("unchanged"), changed.body["version"].as_i64()), (None, Some(seq + 1)));
    assert_eq!(api.audit_count().await, events + 1);
}

/// A write's answer, `unchanged` included, can be edited and sent back with `PUT`, as a
/// read's can: the fields a view adds are ignored on input.
#[tokio::test]
async fn what_a_write_answered_can_be_sent_back_with_put() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    api.create_segment("staging", json!({"key": "pilot", "companies": ["1"]})).await;
    let config = "/api/v1/flags/portal/environments/staging";
    api.admin(Method::POST, &format!("{config}/enable"), None).await;
    let segment = "/api/v1/environments/staging/segments/pilot";
    let etag = api.admin(Method::GET, segment, None).await.headers[header::ETAG].to_str().unwrap().to_owned();
    let same = json!({"companies": ["1"]});
    let enabled_again = api.admin(Method::POST, &format!("{config}/enable"), None).await;
    let replaced_alike = api.call(Method::PUT, segment, Some(ADMIN), Some(same), &[("if-match", &etag)]).await;
    let answers = [(config, enabled_again, "allow"), (segment, replaced_alike, "companies")];
    for (path, answer, list) in answers {
        assert_eq!(answer.body["unchanged"], true, "{path}: {}", answer.body);
        let etag = answer.headers[header::ETAG].to_str().unwrap().to_owned();
        let mut edited = answer.body.clone();
        edited[list] = json!(["7"]);
        let put = api.call(Method::PUT, path, Some(ADMIN), Some(edited), &[("if-match", &etag)]).await;
        assert_eq!(put.status, StatusCode::OK, "{path}: {}", put.body);
        assert_eq!((put.body.get("unchanged"), &put.body[list]), (None, &json!(["7"])), "{path}: {}", put.body);
    }
}

/// A flag `PATCH` that changes nothing (`{}`, or the values stored) is acknowledged as
/// such, as configuration writes are: no new version, no audit event, no change for the
/// replicas. Reordering variants is a change: their order is kept and shown.
#[tokio::test]
async fn a_flag_patch_that_changes_nothing_keeps_the_version_and_records_nothing() {
    let api = Api::new().await;
    let variants = json!({"on": true, "off": false});
    api.create_flag(json!({"key": "portal", "description": "first", "tags": ["a"], "variants": variants})).await;
    let path = "/api/v1/flags/portal";
    let before = api.admin(Method::GET, path, None).await;
    let etag = before.headers[header::ETAG].to_str().unwrap().to_owned();
    let events = api.audit_count().await;
    let current_seq = || async { api.admin(Method::GET, "/api/v1/cluster", None).await.body["currentSeq"].clone() };
    let seq = current_seq().await;

    let same = [json!({}), json!({"description": "first", "tags": ["a"], "variants": variants, "reason": "again"})];
    for patch in same {
        let r = api.call(Method::PATCH, path, Some(ADMIN), Some(patch.clone()), &[("if-match", &etag)]).await;
        assert_eq!((r.status, &r.body["unchanged"]), (StatusCode::OK, &json!(true)), "{patch}: {}", r.body);
        assert_eq!(r.headers[header::ETAG].to_str().unwrap(), etag, "{patch}");
        let mut answered = r.body.clone();
        answered.as_object_mut().unwrap().remove("unchanged");
        assert_eq!(answered, before.body, "{patch}: the flag as it was");
    }
    assert_eq!(api.audit_count().await, events, "nothing recorded");
    assert_eq!(current_seq().await, seq, "no change was written");
    assert_eq!(api.admin(Method::GET, path, None).await.body, before.body);

    // As text: `json!` writes object keys sorted, the order the flag was created with.
    let reordered = Request::patch(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::IF_MATCH, &etag)
        .body(Body::from(r#"{"variants": {"on": true, "off": false}}"#))
        .unwrap();
    let changed = api.send(reordered).await;
    assert_eq!((changed.status, changed.body.get("unchanged")), (StatusCode::OK, None), "{}", changed.body);
    assert!(changed.body["version"].as_i64() > before.body["version"].as_i64());
    assert_eq!(api.audit_count().await, events + 1);
}

#[tokio::test]
async fn a_segment_replaced_by_itself_keeps_its_version_and_records_nothing() {
    let api = Api::new().await;
    api.create_segment("staging", json!({"key": "pilot", "companies": ["1", 2], "description": "first wave"})).await;
    let path = "/api/v1/environments/staging/segments/pilot";
    let before = api.admin(Method::GET, path, None).await.body;
    let events = api.audit_count().await;

    let etag = format!("\"{}\"", before["version"]);
    let same = json!({"companies": [1, "2"], "description": "first wave"});
    let again = api.call(Method::PUT, path, Some(ADMIN), Some(same), &[("if-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!((&again.body["unchanged"], &again.body["version"]), (&json!(true), &before["version"]));
    assert_eq!(api.audit_count().await, events, "nothing recorded");

    let changed =
        api.call(Method::PUT, path, Some(ADMIN), Some(json!({"companies": ["1"]})), &[("if-match", &etag)]).await;
    assert_eq!(changed.body.get("unchanged"), None, "{}", changed.body);
    assert!(changed.body["version"].as_i64() > before["version"].as_i64());
    assert_eq!(api.audit_count().await, events + 1);
}

/// A flag's definition is every environment's: an import into one may add variants but not
/// change what the others serve. A flagd file's `defaultVariant` for a flag that exists is
/// the importing environment's fallthrough; production's kill switch keeps serving `off`.
#[tokio::test]
async fn an_import_into_one_environment_does_not_change_what_the_others_serve() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "ks"})).await;
    let eval = api.token("evaluate", Some("production")).await;
    let dev = api.token("evaluate", Some("development")).await;

    let on_by_default = json!({"flags": {"ks": {"state": "ENABLED", "variants": {"on": true, "off": false},
                                                "defaultVariant": "on"}}});
    let r = api.admin(Method::POST, "/api/v1/environments/development/import", Some(on_by_default)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let answer = |r: &Reply| (r.body["value"].clone(), r.body["variant"].clone(), r.body["reason"].clone());
    let killed = api.ofrep(&eval, "ks", json!({"companyId": 42})).await;
    assert_eq!(answer(&killed), (json!(false), json!("off"), json!("DISABLED")), "{}", killed.body);
    let served = api.ofrep(&dev, "ks", json!({"companyId": 42})).await;
    assert_eq!((&served.body["value"], &served.body["variant"]), (&json!(true), &json!("on")), "{}", served.body);
    let events = api.audit_count().await;

    let refusals = [
        (
            json!({"flags": {"ks": {"state": "ENABLED", "variants": {"on": "yes", "off": false}, "defaultVariant": "on"}}}),
            "variant `on` from true to \"yes\"",
        ),
        (
            json!({"flags": [{"key": "ks", "variants": {"on": true, "off": false, "x": 1}, "offVariant": "x"},
                          {"key": "other", "state": "ENABLED"}]}),
            "its off variant from `off` to `x`",
        ),
    ];
    for (file, change) in refusals {
        let r = api.admin(Method::POST, "/api/v1/environments/development/import", Some(file)).await;
        assert_eq!(
            (r.status, &r.body["error"]["code"]),
            (StatusCode::CONFLICT, &json!("SHARED_DEFINITION")),
            "{}",
            r.body
        );
        assert!(r.body["error"]["message"].as_str().unwrap().contains(change), "{}", r.body);
    }
    assert_eq!(api.admin(Method::GET, "/api/v1/flags/other", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.audit_count().await, events, "nothing refused was recorded");
    let killed = api.ofrep(&eval, "ks", json!({"companyId": 42})).await;
    assert_eq!(answer(&killed), (json!(false), json!("off"), json!("DISABLED")), "{}", killed.body);
}

/// A flagd file that creates a boolean flag turned on in development: production, which
/// never enabled it, serves `false` with reason DISABLED, not the file's `defaultVariant`.
/// A string flag's kill switch serves its default variant, there being no `false`.
#[tokio::test]
async fn a_boolean_flag_a_flagd_import_creates_is_off_wherever_it_is_disabled() {
    let api = Api::new().await;
    let file = json!({"flags": {
        "fresh": {"state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "yes"},
        "tone": {"state": "ENABLED", "variants": {"calm": "c", "loud": "l"}, "defaultVariant": "loud"}
    }});
    let r = api.admin(Method::POST, "/api/v1/environments/development/import", Some(file)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let answer = |r: &Reply| (r.body["value"].clone(), r.body["variant"].clone(), r.body["reason"].clone());
    let dev = api.token("evaluate", Some("development")).await;
    let served = api.ofrep(&dev, "fresh", json!({"companyId": 42})).await;
    assert_eq!(answer(&served), (json!(true), json!("yes"), json!("STATIC")), "{}", served.body);
    let production = api.token("evaluate", Some("production")).await;
    let killed = api.ofrep(&production, "fresh", json!({"companyId": 42})).await;
    assert_eq!(answer(&killed), (json!(false), json!("no"), json!("DISABLED")), "{}", killed.body);
    let tone = api.ofrep(&production, "tone", json!({"companyId": 42})).await;
    assert_eq!(answer(&tone), (json!("l"), json!("loud"), json!("DISABLED")), "{}", tone.body);
}

/// What a flagd file leaves out of a flag that exists stays: a variant another
/// environment's lists serve (the on variant), and the flag's metadata, which every
/// environment reports.
#[tokio::test]
async fn an_import_keeps_the_variants_and_metadata_the_file_leaves_out() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "hue", "variants": {"red": "r", "green": "g", "blue": "b"},
                           "offVariant": "red", "onVariant": "green", "metadata": {"team": "core"}}))
        .await;
    let file = json!({"flags": {"hue": {"state": "ENABLED", "variants": {"red": "r", "blue": "b"},
                                        "defaultVariant": "blue"}}});
    let r = api.admin(Method::POST, "/api/v1/environments/development/import", Some(file)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let flag = api.admin(Method::GET, "/api/v1/flags/hue", None).await.body;
    assert_eq!((&flag["offVariant"], &flag["onVariant"]), (&json!("red"), &json!("green")), "{flag}");
    assert_eq!((&flag["variants"]["green"], &flag["metadata"]), (&json!("g"), &json!({"team": "core"})), "{flag}");
    let dev = api.token("evaluate", Some("development")).await;
    let served = api.ofrep(&dev, "hue", json!({"companyId": 7})).await.body;
    assert_eq!((&served["variant"], &served["metadata"]), (&json!("blue"), &json!({"team": "core"})), "{served}");
}

/// A flagd file's problems point into the file as its author wrote it (`targeting`,
/// `defaultVariant`), not into the flags the server would have made of it.
#[tokio::test]
async fn a_refused_flagd_file_names_the_paths_written_in_it() {
    let api = Api::new().await;
    let file = json!({"flags": {
        "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
              "targeting": {"if": [{"$ref": "nowhere"}, "on", null]}},
        "b": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "gone"}
    }});
    let r = api.admin(Method::POST, "/api/v1/environments/development/import", Some(file)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let paths: Vec<&str> =
        r.body["error"]["problems"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert!(paths.iter().any(|p| p.ends_with("flags.a.targeting")), "{paths:?}");
    let file =
        json!({"flags": {"b": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "gone"}}});
    let r = api.admin(Method::POST, "/api/v1/environments/development/import", Some(file)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let paths: Vec<&str> =
        r.body["error"]["problems"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    // One mistake in the file, one problem: not one per environment, nor per model field.
    let problems = r.body["error"]["problems"].as_array().unwrap();
    assert_eq!(paths, ["flags.b.defaultVariant"], "{}", r.body);
    assert_eq!(problems[0]["message"], "unknown variant `gone` (variants: off, on)", "{}", r.body);
}

/// A mistake in a flag's definition, which every environment shares, is one problem at the
/// definition's path, not one per environment.
#[tokio::test]
async fn a_definition_problem_is_named_once_not_per_environment() {
    let api = Api::new().await;
    let r = api.admin(Method::POST, "/api/v1/environments", Some(json!({"name": "qa"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let flag = json!({"key": "s1", "variants": {"a": "1", "b": "x"}, "offVariant": "zz"});
    let r = api.admin(Method::POST, "/api/v1/flags", Some(flag)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let problems = &r.body["error"]["problems"];
    assert_eq!(
        problems,
        &json!([{"key": "s1", "path": "flags.s1.offVariant", "message": "unknown variant `zz` (variants: a, b)"}])
    );

    // A configuration that the new definition breaks stays named with its environment.
    api.create_flag(json!({"key": "t"})).await;
    let allowed = api.admin(Method::POST, "/api/v1/flags/t/environments/qa/allow", Some(json!({"companies": ["1"]})));
    assert_eq!(allowed.await.status, StatusCode::OK);
    let patch = json!({"variants": {"x": 1, "y": 2}, "offVariant": "x", "onVariant": "nope"});
    let r = api.admin(Method::PATCH, "/api/v1/flags/t", Some(patch)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let paths: Vec<&str> =
        r.body["error"]["problems"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["flags.t.onVariant", "environments.qa.flags.t.allow"], "{}", r.body);
}

/// A `PATCH` is a JSON merge patch: a field given as `null` goes back to what a flag
/// created without it has, so an off or on variant once named can be unnamed again, and a
/// field left out stays. Each change that changes something is one audit event.
#[tokio::test]
async fn a_patch_field_given_null_goes_back_to_its_default() {
    let api = Api::new().await;
    let variants = json!({"on": "blue", "off": "grey", "dark": "black"});
    let flag = json!({"key": "theme", "owner": "web", "tags": ["ui"], "variants": variants, "offVariant": "dark"});
    api.create_flag(flag).await;
    let token = api.token("evaluate", Some("production")).await;
    let served = || async { api.ofrep(&token, "theme", json!({"companyId": "1"})).await.body["variant"].clone() };
    assert_eq!(served().await, "dark", "disabled, the flag serves its off variant");

    let patch = |body: Value| api.admin(Method::PATCH, "/api/v1/flags/theme", Some(body));
    let events = api.audit_count().await;
    let unnamed = patch(json!({"offVariant": null, "tags": null})).await;
    assert_eq!(unnamed.status, StatusCode::OK, "{}", unnamed.body);
    for field in ["offVariant", "tags", "noOffVariant"] {
        assert_eq!(unnamed.body.get(field), None, "{field}: {}", unnamed.body);
    }
    assert_eq!((&unnamed.body["owner"], &unnamed.body["variants"]), (&json!("web"), &variants), "left out, kept");
    assert_eq!(served().await, "off", "the variant named `off` is the off variant again");

    let none = patch(json!({"noOffVariant": true})).await;
    assert_eq!(none.body["noOffVariant"], true, "{}", none.body);
    assert_eq!(served().await, Value::Null, "no off variant: nothing is served");
    let back = patch(json!({"noOffVariant": null, "onVariant": "dark"})).await;
    assert_eq!((back.body.get("noOffVariant"), &back.body["onVariant"]), (None, &json!("dark")), "{}", back.body);
    assert_eq!(served().await, "off");
    let boolean = patch(json!({"onVariant": null, "variants": null, "owner": null})).await;
    assert_eq!(boolean.status, StatusCode::OK, "{}", boolean.body);
    for field in ["onVariant", "variants", "owner"] {
        assert_eq!(boolean.body.get(field), None, "{field}: {}", boolean.body);
    }
    let evaluated = api.ofrep(&token, "theme", json!({"companyId": "1"})).await.body;
    assert_eq!((&evaluated["variant"], &evaluated["value"]), (&json!("off"), &json!(false)), "{evaluated}");

    let again = patch(json!({"offVariant": null, "tags": null})).await;
    assert_eq!(again.body["unchanged"], true, "null where nothing is set changes nothing: {}", again.body);
    assert_eq!(api.audit_count().await, events + 4, "one event per change");
}

/// A flagd-server file that cannot be read says where: which flag or segment (a flag's
/// definition and configuration share one object, so the path stops at the flag), and the
/// line and column, not only what.
#[tokio::test]
async fn an_unreadable_native_file_names_the_field_that_is_wrong() {
    let api = Api::new().await;
    let events = api.audit_count().await;
    let cases = [
        (json!({"flags": [{"key": "ok1"}, {"key": "ok2", "rules": [{"serve": {"varient": "on"}}]}]}), "flags[1]"),
        (json!({"flags": [{"key": "ok1", "state": "enabled"}]}), "flags[0]"),
        (json!({"flags": [], "segments": [{"key": "s", "companies": [""]}]}), "segments[0]"),
    ];
    for (file, path) in cases {
        let r = api.admin(Method::POST, "/api/v1/environments/development/import", Some(file)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{path}")) && message.contains("line 1 column"), "{path}: {message}");
    }
    assert_eq!(api.audit_count().await, events, "nothing imported");
}

/// Writers that read, change and write back with `If-Match`, retrying on 412: every
/// acknowledged write survives and each has exactly one audit event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_if_match_writers_lose_no_update() {
    let api = Arc::new(Api::new().await);
    api.create_flag(json!({"key": "f"})).await;
    let path = "/api/v1/flags/f/environments/staging";
    let writers: Vec<_> = (0..12)
        .map(|i| {
            let api = Arc::clone(&api);
            tokio::spawn(async move {
                let mut conflicts = 0;
                loop {
                    let read = api.admin(Method::GET, path, None).await;
                    let etag = read.headers[header::ETAG].to_str().unwrap().to_owned();
                    let mut config = read.body.clone();
                    let mut deny = config["deny"].as_array().cloned().unwrap_or_default();
                    deny.push(json!(format!("c{i}")));
                    config["deny"] = json!(deny);
                    let put = api.call(Method::PUT, path, Some(ADMIN), Some(config), &[("if-match", &etag)]).await;
                    match put.status {
                        StatusCode::OK => return conflicts,
                        StatusCode::PRECONDITION_FAILED => conflicts += 1,
                        other => panic!("unexpected {other}: {}", put.body),
                    }
                }
            })
        })
        .collect();
    let mut conflicts = 0;
    for w in writers {
        conflicts += w.await.unwrap();
    }
    let deny = api.admin(Method::GET, path, None).await.body["deny"].as_array().unwrap().len();
    assert_eq!(deny, 12, "every acknowledged write is there ({conflicts} stale attempts were refused)");
    let events = api.admin(Method::GET, "/api/v1/audit?flag=f&environment=staging", None).await;
    let updates = events.body["events"].as_array().unwrap().iter().filter(|e| e["action"] == "config.update").count();
    assert_eq!(updates, 12);
}

#[tokio::test]
async fn a_quick_operation_with_a_stale_if_match_is_refused_and_changes_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    let path = "/api/v1/flags/portal/environments/production";
    let read = api.admin(Method::GET, path, None).await;
    let etag = read.headers[header::ETAG].to_str().unwrap().to_owned();
    let changed = api.admin(Method::POST, &format!("{path}/allow"), Some(json!({"companies": ["7"]}))).await;
    assert_eq!(changed.status, StatusCode::OK);
    let events = api.audit_count().await;

    let stale = api.call(Method::POST, &format!("{path}/disable"), Some(ADMIN), None, &[("if-match", &etag)]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.body);
    assert_eq!(stale.body["error"]["current"]["allow"], json!(["7"]), "the state to start again from");
    assert_eq!(api.audit_count().await, events, "nothing recorded");
    let fresh = changed.headers[header::ETAG].to_str().unwrap().to_owned();
    let applied = api.call(Method::POST, &format!("{path}/enable"), Some(ADMIN), None, &[("if-match", &fresh)]).await;
    assert_eq!((applied.status, &applied.body["state"]), (StatusCode::OK, &json!("ENABLED")), "{}", applied.body);
}

/// A promotion replaces the target's rules and lists whole: with the target's `If-Match`,
/// a change made there since it was read is not overwritten.
#[tokio::test]
async fn a_promotion_with_a_stale_if_match_is_refused_and_changes_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    let staging = "/api/v1/flags/portal/environments/staging";
    let production = "/api/v1/flags/portal/environments/production";
    api.admin(Method::POST, &format!("{staging}/allow"), Some(json!({"companies": ["1"]}))).await;
    let seen = api.admin(Method::GET, production, None).await.headers[header::ETAG].to_str().unwrap().to_owned();
    let meanwhile = api.admin(Method::POST, &format!("{production}/deny"), Some(json!({"companies": ["9"]}))).await;
    assert_eq!(meanwhile.status, StatusCode::OK);
    let events = api.audit_count().await;

    let promotion = json!({"from": "staging", "to": "production"});
    let path = "/api/v1/flags/portal/promote";
    let stale = api.call(Method::POST, path, Some(ADMIN), Some(promotion.clone()), &[("if-match", &seen)]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.body);
    assert_eq!(stale.body["error"]["current"]["deny"], json!(["9"]), "the state to start again from");
    assert_eq!(api.admin(Method::GET, production, None).await.body["deny"], json!(["9"]));
    assert_eq!(api.audit_count().await, events, "nothing recorded");

    let fresh = meanwhile.headers[header::ETAG].to_str().unwrap().to_owned();
    let applied = api.call(Method::POST, path, Some(ADMIN), Some(promotion), &[("if-match", &fresh)]).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    assert_eq!((&applied.body["allow"], applied.body.get("deny")), (&json!(["1"]), None), "{}", applied.body);
}

#[tokio::test]
async fn every_write_that_takes_if_match_refuses_a_malformed_one_alike() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    api.create_segment("staging", json!({"key": "pilot", "companies": ["1"]})).await;
    let config = "/api/v1/flags/portal/environments/staging";
    let writes = [
        (Method::PATCH, "/api/v1/flags/portal".to_owned(), json!({"description": "x"})),
        (Method::PUT, config.to_owned(), json!({"state": "ENABLED"})),
        (Method::POST, format!("{config}/disable"), json!({})),
        (Method::PUT, format!("{config}/rollout"), json!({"percentage": 5})),
        (Method::PUT, "/api/v1/environments/staging/segments/pilot".to_owned(), json!({"companies": ["2"]})),
        (Method::POST, "/api/v1/flags/portal/promote".to_owned(), json!({"from": "staging", "to": "production"})),
    ];
    let events = api.audit_count().await;
    for (method, path, body) in &writes {
        for sent in ["", "banana", "\"12", "+3", "*"] {
            let r = api.call(method.clone(), path, Some(ADMIN), Some(body.clone()), &[("if-match", sent)]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path} with If-Match {sent:?}: {}", r.body);
            assert_eq!(r.body["error"]["code"], "INVALID_IF_MATCH");
        }
    }
    assert_eq!(api.audit_count().await, events, "nothing changed");

    let read = api.admin(Method::GET, config, None).await;
    let weak = format!("W/{}", read.headers[header::ETAG].to_str().unwrap());
    let r = api.call(Method::POST, &format!("{config}/enable"), Some(ADMIN), None, &[("if-match", &weak)]).await;
    assert_eq!(r.status, StatusCode::OK, "a weak form of the ETag read is that ETag: {}", r.body);
}

/// Deleting a flag deletes every environment's configuration with it; the audit event keeps
/// them all beside the definition, so the flag can be put back as it was.
#[tokio::test]
async fn a_deleted_flag_leaves_its_definition_and_every_configuration_in_the_audit_log() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal", "description": "the customer portal"})).await;
    let production = "/api/v1/flags/portal/environments/production";
    api.admin(Method::POST, &format!("{production}/allow"), Some(json!({"companies": ["42", 7]}))).await;
    api.admin(Method::POST, &format!("{production}/enable"), None).await;
    api.admin(Method::PUT, "/api/v1/flags/portal/environments/staging/rollout", Some(json!({"percentage": 12.5})))
        .await;
    let definition = api.admin(Method::GET, "/api/v1/flags/portal", None).await.body;
    let mut configured = Vec::new();
    for env in ["development", "production", "staging"] {
        configured
            .push((env, api.admin(Method::GET, &format!("/api/v1/flags/portal/environments/{env}"), None).await.body));
    }

    let deleted = api.admin(Method::DELETE, "/api/v1/flags/portal", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let audit = api.admin(Method::GET, "/api/v1/audit?flag=portal&limit=1", None).await;
    let event = &audit.body["events"][0];
    assert_eq!(event["action"], "flag.delete", "{}", audit.body);
    assert_eq!(event["before"]["definition"]["description"], definition["description"]);
    let environments = event["before"]["environments"].as_object().unwrap();
    assert_eq!(environments.len(), configured.len(), "{}", event["before"]);
    assert_eq!(event["before"].get("omittedEnvironments"), None, "every configuration fits");
    for (env, config) in configured {
        let kept = environments[env].as_object().unwrap();
        for (field, value) in kept {
            assert_eq!(value, &config[field], "{env}: {field}: {config}");
        }
    }
    assert_eq!(environments["production"]["state"], "ENABLED");
    assert_eq!(environments["production"]["allow"], json!(["42", "7"]));
    let staging = &environments["staging"]["fallthrough"]["rollout"]["variants"];
    assert_eq!(staging[0], json!({"variant": "on", "weight": 12.5}), "{}", environments["staging"]);
}

/// A flag may have a configuration in any number of environments, each up to 1 MiB: its
/// delete still records what it can (up to 8 MiB, which MySQL stores in one statement) and
/// names the environments whose configurations did not fit, rather than failing.
#[tokio::test]
async fn a_deleted_flag_whose_configurations_pass_8_mib_names_those_left_out_of_the_audit_log() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    let mut environments = vec!["development".to_owned(), "production".to_owned(), "staging".to_owned()];
    for n in 0..7 {
        let name = format!("region-{n}");
        let created = api.admin(Method::POST, "/api/v1/environments", Some(json!({"name": name}))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        environments.push(name);
    }
    environments.sort();
    // About 0.94 MB of JSON each: ten are over 8 MiB, eight are not.
    let companies: Vec<String> = (0..52_000).map(|n| format!("company-{n:07}")).collect();
    for env in &environments {
        let allowed = api
            .admin(
                Method::POST,
                &format!("/api/v1/flags/portal/environments/{env}/allow"),
                Some(json!({"companies": companies})),
            )
            .await;
        assert_eq!(allowed.status, StatusCode::OK, "{env}: {}", allowed.body);
    }

    let deleted = api.admin(Method::DELETE, "/api/v1/flags/portal", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let audit = api.admin(Method::GET, "/api/v1/audit?flag=portal&limit=1", None).await;
    let before = &audit.body["events"][0]["before"];
    assert_eq!(audit.body["events"][0]["action"], "flag.delete");
    assert!(serde_json::to_vec(before).unwrap().len() <= 8 * 1024 * 1024, "the event's before is within 8 MiB");
    let kept: Vec<&String> = before["environments"].as_object().unwrap().keys().collect();
    assert_eq!(kept, environments[..8].iter().collect::<Vec<_>>(), "the configurations that fit, by name");
    for env in &kept {
        assert_eq!(before["environments"][env.as_str()]["allow"].as_array().unwrap().len(), companies.len());
    }
    assert_eq!(before["omittedEnvironments"], json!(environments[8..]), "the others are named");
}

/// A delete with `If-Match` is a write like the others: a flag or segment changed since it
/// was read is not deleted, and a malformed header is refused.
#[tokio::test]
async fn a_delete_with_a_stale_if_match_is_refused_and_deletes_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal", "description": "first"})).await;
    api.create_segment("staging", json!({"key": "pilot", "companies": ["1"]})).await;
    let flag = "/api/v1/flags/portal";
    let segment = "/api/v1/environments/staging/segments/pilot";
    let changes = [(flag, json!({"description": "second"})), (segment, json!({"companies": ["2"]}))];
    for (path, change) in changes {
        let read = api.admin(Method::GET, path, None).await;
        let seen = read.headers[header::ETAG].to_str().unwrap().to_owned();
        let method = if path == flag { Method::PATCH } else { Method::PUT };
        let meanwhile = api.call(method, path, Some(ADMIN), Some(change), &[("if-match", &seen)]).await;
        assert_eq!(meanwhile.status, StatusCode::OK, "{}", meanwhile.body);
        let current = meanwhile.headers[header::ETAG].to_str().unwrap().to_owned();
        let events = api.audit_count().await;

        let stale = api.call(Method::DELETE, path, Some(ADMIN), None, &[("if-match", &seen)]).await;
        assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{path}: {}", stale.body);
        assert_eq!(stale.body["error"]["code"], "PRECONDITION_FAILED");
        assert_eq!(stale.headers[header::ETAG].to_str().unwrap(), current, "{path}: the version to start from");
        let state = if path == flag { "description" } else { "companies" };
        assert_eq!(stale.body["error"]["current"][state], meanwhile.body[state], "{path}: {}", stale.body);
        for sent in ["banana", "*"] {
            let malformed = api.call(Method::DELETE, path, Some(ADMIN), None, &[("if-match", sent)]).await;
            assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{path} with If-Match {sent:?}: {}", malformed.body);
            assert_eq!(malformed.body["error"]["code"], "INVALID_IF_MATCH");
        }
        assert_eq!(api.admin(Method::GET, path, None).await.status, StatusCode::OK, "{path} is still there");
        assert_eq!(api.audit_count().await, events, "{path}: nothing recorded");

        let deleted = api.call(Method::DELETE, path, Some(ADMIN), None, &[("if-match", &current)]).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{path}: {}", deleted.body);
        assert_eq!(api.admin(Method::GET, path, None).await.status, StatusCode::NOT_FOUND, "{path} is gone");
    }
}

/// A token has no version: a revocation sent with `If-Match` asks for a check that cannot
/// be made, and is refused rather than carried out without it.
#[tokio::test]
async fn a_token_revocation_with_if_match_is_refused_and_revokes_nothing() {
    let api = Api::new().await;
    let reader = api.token("read", None).await;
    let (id, _) = token_named(&api, ADMIN, "read token").await;
    let path = format!("/api/v1/tokens/{id}");
    let events = api.audit_count().await;
    for sent in ["\"1\"", "*", "banana"] {
        let r = api.call(Method::DELETE, &path, Some(ADMIN), None, &[("if-match", sent)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "If-Match {sent:?}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "INVALID_IF_MATCH");
    }
    assert_eq!(api.audit_count().await, events, "nothing recorded");
    let still = api.call(Method::GET, "/api/v1/flags", Some(&reader), None, &[]).await;
    assert_eq!(still.status, StatusCode::OK, "the token still works: {}", still.body);
    assert_eq!(api.admin(Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
}

/// Every admin write, with a body it accepts, on a flag `portal` and a segment `pilot` in
/// staging; the delete of the flag last.
fn every_write() -> Vec<(Method, String, Option<Value>)> {
    let config = "/api/v1/flags/portal/environments/staging";
    let companies = json!({"companies": ["7"]});
    vec![
        (Method::POST, "/api/v1/flags".to_owned(), Some(json!({"key": "other"}))),
        (Method::PATCH, "/api/v1/flags/portal".to_owned(), Some(json!({"description": "x"}))),
        (Method::PUT, config.to_owned(), Some(json!({"state": "ENABLED"}))),
        (Method::POST, format!("{config}/enable"), None),
        (Method::POST, format!("{config}/disable"), Some(json!({"reason": "r"}))),
        (Method::PUT, format!("{config}/rollout"), Some(json!({"percentage": 5}))),
        (Method::POST, format!("{config}/allow"), Some(companies.clone())),
        (Method::DELETE, format!("{config}/allow"), Some(companies.clone())),
        (Method::POST, format!("{config}/deny"), Some(companies.clone())),
        (Method::DELETE, format!("{config}/deny"), Some(companies)),
        (Method::POST, "/api/v1/flags/portal/promote".to_owned(), Some(json!({"from": "staging", "to": "production"}))),
        (Method::POST, "/api/v1/environments".to_owned(), Some(json!({"name": "qa"}))),
        (Method::POST, "/api/v1/environments/staging/segments".to_owned(), Some(json!({"key": "beta"}))),
        (Method::PUT, "/api/v1/environments/staging/segments/pilot".to_owned(), Some(json!({"companies": ["2"]}))),
        (Method::DELETE, "/api/v1/environments/staging/segments/pilot".to_owned(), None),
        (Method::POST, "/api/v1/tokens".to_owned(), Some(json!({"name": "ci", "role": "read"}))),
        (Method::POST, "/api/v1/environments/staging/import".to_owned(), Some(json!({"flags": {}}))),
        (Method::DELETE, "/api/v1/flags/portal".to_owned(), None),
    ]
}

/// A query parameter a write does not read would be ignored: `?dryRun=true` on a delete
/// would delete, `?reason=…` on a kill switch would record no reason. Refused instead.
#[tokio::test]
async fn a_write_refuses_query_parameters_it_does_not_read_and_changes_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    api.create_segment("staging", json!({"key": "pilot", "companies": ["1"]})).await;
    let events = api.audit_count().await;
    for (method, path, body) in every_write().into_iter().filter(|(_, path, _)| !path.ends_with("/import")) {
        for (query, hint) in
            [("dryRun=true", "only an import has a dry run"), ("reason=incident", "JSON body"), ("x", "")]
        {
            let at = format!("{path}?{query}");
            let r = api.call(method.clone(), &at, Some(ADMIN), body.clone(), &[]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {at}: {}", r.body);
            assert_eq!(r.body["error"]["code"], "INVALID_QUERY", "{method} {at}");
            let message = r.body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("nothing was changed") && message.contains(hint), "{method} {at}: {message}");
        }
    }
    assert_eq!(api.audit_count().await, events, "nothing recorded");
    assert_eq!(api.admin(Method::GET, "/api/v1/flags/portal", None).await.status, StatusCode::OK, "not deleted");
    let enabled = api.call(Method::POST, "/api/v1/flags/portal/environments/staging/enable?", Some(ADMIN), None, &[]);
    assert_eq!(enabled.await.status, StatusCode::OK, "an empty query is no parameter");
}

/// A create or an import has no version to match: `If-Match` asks for a check that cannot
/// be made, and is refused rather than the write made without it.
#[tokio::test]
async fn a_create_or_import_with_if_match_is_refused_and_creates_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    let creates = every_write().into_iter().filter(|(method, path, _)| {
        *method == Method::POST
            && ["/flags", "/environments", "/segments", "/tokens", "/import"].iter().any(|end| path.ends_with(end))
    });
    let events = api.audit_count().await;
    let mut seen = 0;
    for (method, path, body) in creates {
        seen += 1;
        for sent in ["\"1\"", "*"] {
            let r = api.call(method.clone(), &path, Some(ADMIN), body.clone(), &[("if-match", sent)]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} with If-Match {sent}: {}", r.body);
            assert_eq!(r.body["error"]["code"], "INVALID_IF_MATCH", "{path}");
        }
    }
    assert_eq!(seen, 5, "flags, environments, segments, tokens, import");
    assert_eq!(api.audit_count().await, events, "nothing recorded");
}

/// Authorisation comes before the body: a token that may not write hears so, not what is
/// wrong with a body it may not send.
#[tokio::test]
async fn a_token_that_may_not_write_is_refused_before_its_body_is_read() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    api.create_segment("staging", json!({"key": "pilot", "companies": ["1"]})).await;
    let reader = api.token("read", None).await;
    let events = api.audit_count().await;
    for (method, path, _) in every_write() {
        for body in [json!({"companies": [""], "percentage": "many", "key": "Not A Key"}), json!([1])] {
            let r = api.call(method.clone(), &path, Some(&reader), Some(body), &[]).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {}", r.body);
            assert!(r.body["error"]["message"].as_str().unwrap_or_default().contains("needs an `admin` token"));
        }
    }
    assert_eq!(api.audit_count().await, events, "nothing recorded");
}

#[tokio::test]
async fn an_empty_body_replaces_nothing() {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal", "description": "kept"})).await;
    api.create_segment("staging", json!({"key": "pilot", "companies": ["1"]})).await;
    let config = "/api/v1/flags/portal/environments/staging";
    assert_eq!(
        api.admin(Method::POST, &format!("{config}/allow"), Some(json!({"companies": ["7"]}))).await.status,
        200
    );
    let writes = [
        (Method::PUT, config),
        (Method::PUT, "/api/v1/environments/staging/segments/pilot"),
        (Method::PATCH, "/api/v1/flags/portal"),
    ];
    for (method, path) in writes {
        let before = api.admin(Method::GET, path, None).await;
        let etag = before.headers[header::ETAG].to_str().unwrap().to_owned();
        // Nothing, or only what an emptied file saved on Windows holds: a byte order mark.
        for body in ["", " \n", "\u{feff}", "\u{feff} \n"] {
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
                .header(header::IF_MATCH, &etag)
                .body(Body::from(body))
                .unwrap();
            let r = api.send(request).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path} {body:?}: {}", r.body);
            assert_eq!(r.body["error"]["code"], "INVALID_BODY");
        }
        assert_eq!(api.admin(Method::GET, path, None).await.body, before.body, "{method} {path} changed");
    }
}
