//! The committed OpenAPI document (`openapi/flagd.json`) is the one the code generates,
//! the server serves it, and it covers every route the README lists and nothing the
//! router does not serve.
//!
//! Regenerate after changing the API: `UPDATE_OPENAPI=1 cargo test -p flagd-server --test server openapi`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use flagd_server::openapi::ApiDoc;
use flagd_server::service::{ConfigView, SegmentView, Service};
use serde_json::Value;
use tower::ServiceExt;
use utoipa::OpenApi;

const ADMIN_TOKEN: &str = "admin-secret-for-tests";

const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p flagd-server --test server openapi";

/// Every operation of the README's "The HTTP API" table, plus the document itself.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/ofrep/v1/evaluate/flags/{key}"),
    ("post", "/ofrep/v1/evaluate/flags"),
    ("get", "/api/v1/environments"),
    ("post", "/api/v1/environments"),
    ("get", "/api/v1/flags"),
    ("post", "/api/v1/flags"),
    ("get", "/api/v1/flags/{key}"),
    ("patch", "/api/v1/flags/{key}"),
    ("delete", "/api/v1/flags/{key}"),
    ("get", "/api/v1/flags/{key}/environments/{env}"),
    ("put", "/api/v1/flags/{key}/environments/{env}"),
    ("post", "/api/v1/flags/{key}/environments/{env}/enable"),
    ("post", "/api/v1/flags/{key}/environments/{env}/disable"),
    ("put", "/api/v1/flags/{key}/environments/{env}/rollout"),
    ("post", "/api/v1/flags/{key}/environments/{env}/allow"),
    ("delete", "/api/v1/flags/{key}/environments/{env}/allow"),
    ("post", "/api/v1/flags/{key}/environments/{env}/deny"),
    ("delete", "/api/v1/flags/{key}/environments/{env}/deny"),
    ("post", "/api/v1/flags/{key}/environments/{env}/evaluate"),
    ("post", "/api/v1/flags/{key}/promote"),
    ("get", "/api/v1/environments/{env}/segments"),
    ("post", "/api/v1/environments/{env}/segments"),
    ("get", "/api/v1/environments/{env}/segments/{key}"),
    ("put", "/api/v1/environments/{env}/segments/{key}"),
    ("delete", "/api/v1/environments/{env}/segments/{key}"),
    ("get", "/api/v1/environments/{env}/export"),
    ("post", "/api/v1/environments/{env}/import"),
    ("get", "/api/v1/environments/{env}/snapshot"),
    ("get", "/api/v1/stream"),
    ("get", "/api/v1/wait"),
    ("get", "/api/v1/cluster"),
    ("delete", "/api/v1/cluster/replicas/{id}"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

fn committed_path() -> PathBuf {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    workspace.join("openapi").join("flagd.json")
}

fn generated() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().expect("the document serialises");
    text.push('\n');
    text
}

/// A server on a fresh SQLite file; the directory goes when the guard drops.
struct App {
    router: flagd_server::App,
    dir: PathBuf,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl App {
    async fn new() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("flagd-openapi-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = flagd_server::store::connect(&format!("sqlite:{}", dir.join("flagd.db").display())).await.unwrap();
        let (service, _) = Service::start(store, Some(ADMIN_TOKEN)).await.unwrap();
        Self { router: flagd_server::app(Arc::clone(&service)), dir }
    }

    async fn call(&self, method: Method, path: &str) -> (StatusCode, Vec<u8>) {
        self.call_with(method, path, None).await
    }

    async fn call_with(&self, method: Method, path: &str, token: Option<&str>) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Body::empty()).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, bytes.to_vec())
    }
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = committed_path();
    let generated = generated();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the code (or missing); regenerate it with `{REGENERATE}` and commit it",
        path.display()
    );
}

#[tokio::test]
async fn the_server_serves_the_document() {
    let app = App::new().await;
    let (status, body) = app.call(Method::GET, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let served: Value = serde_json::from_slice(&body).unwrap();
    let expected: Value = serde_json::from_str(&generated()).unwrap();
    assert_eq!(served, expected);
}

#[test]
fn every_route_of_the_readme_is_documented_and_nothing_else() {
    let doc: Value = serde_json::from_str(&generated()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().unwrap().keys().filter(|k| *k != "parameters");
            methods.map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut listed: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    listed.sort();
    assert_eq!(documented, listed, "the documented operations differ from the README's table");
}

/// Every documented operation reaches a handler: without a token that is 401 (or the
/// answer of an open endpoint), never the router's 404 or 405.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = App::new().await;
    for (method, path) in ROUTES {
        let concrete = path.replace("{key}", "some-key").replace("{env}", "production").replace("{id}", "some-id");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = app.call(method.clone(), &concrete).await;
        let open = ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(path);
        let expected = if open { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
        assert_eq!(status, expected, "{method} {concrete}: {}", String::from_utf8_lossy(&body));
    }
}

/// Each status a handler answers with an `error` body is documented with the error schema,
/// and every authenticated operation names both token schemes.
#[test]
fn errors_and_security_are_documented() {
    let doc: Value = serde_json::from_str(&generated()).unwrap();
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("bearerAuth") && schemes.contains_key("ApiKeyAuth"), "{schemes:?}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let open = ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&path.as_str());
            if open {
                assert!(op.get("security").is_none(), "{method} {path} needs no token");
                continue;
            }
            let security = op["security"].as_array().unwrap_or_else(|| panic!("{method} {path} has no security"));
            assert_eq!(security.len(), 2, "{method} {path}");
            let unauthorized = &op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(unauthorized, "#/components/schemas/ErrorBody", "{method} {path}");
        }
    }
}

/// Every operation with path parameters answers one that does not decode (`%FF` is not
/// UTF-8) with a 400, and documents that 400 with the code the body carries.
#[tokio::test]
async fn an_undecodable_path_parameter_gets_the_documented_400() {
    let app = App::new().await;
    let doc: Value = serde_json::from_str(&generated()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        let concrete = path.replace("{key}", "%FF").replace("{env}", "%FF").replace("{id}", "%FF");
        for (method, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = app.call_with(method.clone(), &concrete, Some(ADMIN_TOKEN)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {concrete}: {}", String::from_utf8_lossy(&body));
            let body: Value = serde_json::from_slice(&body).unwrap();
            let code = body["error"]["code"].as_str().or(body["errorCode"].as_str()).unwrap();
            let documented = op["responses"]["400"]["description"].as_str().unwrap_or_default();
            assert!(documented.contains(&format!("`{code}`")), "{method} {path}: 400 `{code}` not in {documented:?}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations have path parameters");
}

/// `ConfigUpdate` and `SegmentUpdate` spell out the fields of what they replace (plus
/// `reason` for a configuration) instead of flattening it, so they must follow when a
/// field is added there.
#[test]
fn each_replacement_body_has_every_field_of_what_it_replaces() {
    let doc: Value = serde_json::from_str(&generated()).unwrap();
    let fields = |schema: &str| -> Vec<String> {
        let mut names: Vec<String> =
            doc["components"]["schemas"][schema]["properties"].as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    };
    for (body, replaced, extra) in
        [("ConfigUpdate", "EnvironmentConfig", Some("reason")), ("SegmentUpdate", "Segment", None)]
    {
        let mut expected = fields(replaced);
        expected.extend(extra.map(str::to_owned));
        expected.sort();
        assert_eq!(fields(body), expected, "{body} against {replaced}");
    }
}

/// What a view adds to what it shows (a configuration's `version`, a write's `unchanged`)
/// is ignored by the `PUT` that replaces it, so that what a read or a write answered may be
/// sent back: every such field is on the list the handler drops, and the body's schema
/// names it.
#[test]
fn every_field_a_view_adds_is_documented_as_ignored_on_replacement() {
    let doc: Value = serde_json::from_str(&generated()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let names = |schema: &Value| -> Vec<String> {
        schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    };
    let cases: [(&str, &str, &str, &[&str]); 2] = [
        ("ConfigView", "EnvironmentConfig", "ConfigUpdate", &ConfigView::READ_ONLY),
        ("SegmentView", "Segment", "SegmentUpdate", &SegmentView::READ_ONLY),
    ];
    for (view, shown, body, read_only) in cases {
        let shown = names(&schemas[shown]);
        let mut added: Vec<String> = schemas[view]["allOf"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(names)
            .filter(|field| !shown.contains(field))
            .collect();
        added.sort();
        let mut ignored: Vec<String> = read_only.iter().map(|f| (*f).to_owned()).collect();
        ignored.sort();
        assert_eq!(added, ignored, "what {view} adds is what a PUT ignores");
        let description = schemas[body]["description"].as_str().unwrap();
        for field in read_only {
            assert!(description.contains(&format!("`{field}`")), "{body} says `{field}` is ignored: {description}");
        }
    }
}
