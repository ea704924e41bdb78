//! The console's sessions: a `read` or `admin` token traded for a cookie, the cookie
//! accepted by the admin API, writes by cookie guarded by the session's CSRF token.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::api::{ADMIN, Api, Reply};

const CONFIG: &str = "/api/v1/flags/portal/environments/production";

/// A signed-in browser: its cookie pair and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn sign_in(api: &Api, token: &str) -> Reply {
    api.call(Method::POST, "/ui/session", None, Some(json!({ "token": token })), &[]).await
}

async fn browser(api: &Api, token: &str) -> Browser {
    let r = sign_in(api, token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let set_cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    Browser { cookie, csrf: r.body["csrf"].as_str().unwrap().to_owned() }
}

/// A request carrying only the cookie (and the CSRF header when `csrf` is given).
async fn by_cookie(
    api: &Api,
    b: &Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
    csrf: Option<&str>,
) -> Reply {
    let mut extra = vec![("cookie", b.cookie.as_str())];
    if let Some(csrf) = csrf {
        extra.push(("x-csrf-token", csrf));
    }
    api.call(method, path, None, body, &extra).await
}

async fn state(api: &Api) -> Value {
    api.admin(Method::GET, CONFIG, None).await.body["state"].clone()
}

async fn api_with_flag() -> Api {
    let api = Api::new().await;
    api.create_flag(json!({"key": "portal"})).await;
    let r = api.admin(Method::POST, &format!("{CONFIG}/enable"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    api
}

#[tokio::test]
async fn signing_in_with_an_admin_token_sets_a_strict_http_only_session_cookie() {
    let api = Api::new().await;
    let r = sign_in(&api, ADMIN).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["role"], "admin");
    assert_eq!(r.body["signedIn"], true);
    assert!(r.body["csrf"].as_str().is_some_and(|c| c.len() >= 32), "{}", r.body);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("flagd_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{attribute} missing from {cookie}");
    }
    assert!(!cookie.contains(ADMIN), "the cookie must not carry the token");
}

#[tokio::test]
async fn a_form_sign_in_works_like_json() {
    let api = Api::new().await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/ui/session")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={ADMIN}")))
        .unwrap();
    let r = api.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["role"], "admin");
}

/// `POST /ui/session` with `body`, the `Content-Type` given (if any) and `headers`.
async fn sign_in_raw(api: &Api, content_type: Option<&str>, body: String, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method(Method::POST).uri("/ui/session");
    if let Some(content_type) = content_type {
        req = req.header(header::CONTENT_TYPE, content_type);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    api.send(req.body(Body::from(body)).unwrap()).await
}

#[tokio::test]
async fn a_json_sign_in_is_read_as_json_whatever_its_content_type_says_as_curl_d_sends_it() {
    let api = Api::new().await;
    let json = format!(r#" {{"token": "{ADMIN}"}}"#);
    // curl -d labels any body a form; other clients send none.
    for content_type in [Some("application/x-www-form-urlencoded"), None, Some("text/plain")] {
        let r = sign_in_raw(&api, content_type, json.clone(), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{content_type:?}: {}", r.body);
        assert_eq!(r.body["role"], "admin");
        assert!(r.headers.contains_key(header::SET_COOKIE), "{content_type:?}");
    }
    // Where a sign-in comes from is judged whatever the body's format.
    let from_another_site = [
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "https://evil.example"), ("host", "flagd.internal:8013")],
    ];
    for headers in &from_another_site {
        for body in [json.clone(), format!("token={ADMIN}")] {
            let r = sign_in_raw(&api, Some("application/x-www-form-urlencoded"), body.clone(), headers).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?} {body}: {}", r.body);
            assert!(!r.headers.contains_key(header::SET_COOKIE), "{headers:?} {body}: no session is opened");
        }
    }
    // A form that is neither a form nor JSON still says what to send.
    let r = sign_in_raw(&api, Some("application/x-www-form-urlencoded"), "tokn=x".into(), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("form field `token`"), "{}", r.body);
}

#[tokio::test]
async fn the_cookie_reads_the_admin_api_and_get_session_returns_the_csrf_token() {
    let api = api_with_flag().await;
    let b = browser(&api, ADMIN).await;
    let r = by_cookie(&api, &b, Method::GET, "/api/v1/flags", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["flags"][0]["key"], "portal");
    let me = by_cookie(&api, &b, Method::GET, "/ui/session", None, None).await;
    assert_eq!(me.body["csrf"], b.csrf.as_str());
    assert_eq!(me.body["role"], "admin");
}

#[tokio::test]
async fn a_cookie_write_without_the_csrf_token_is_refused_and_changes_nothing() {
    let api = api_with_flag().await;
    let b = browser(&api, ADMIN).await;
    let audit = api.audit_count().await;
    for csrf in [None, Some("fdt_wrong"), Some("")] {
        let r = by_cookie(&api, &b, Method::POST, &format!("{CONFIG}/disable"), Some(json!({})), csrf).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{csrf:?}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "FORBIDDEN");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("X-CSRF-Token"), "{}", r.body);
    }
    assert_eq!(state(&api).await, "ENABLED");
    assert_eq!(api.audit_count().await, audit);
}

#[tokio::test]
async fn a_cookie_write_with_the_csrf_token_is_applied_and_audited_as_the_token() {
    let api = api_with_flag().await;
    let b = browser(&api, ADMIN).await;
    let body = json!({"reason": "incident 12"});
    let r = by_cookie(&api, &b, Method::POST, &format!("{CONFIG}/disable"), Some(body), Some(&b.csrf)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(state(&api).await, "DISABLED");
    let audit = api.admin(Method::GET, "/api/v1/audit?limit=1000", None).await.body;
    let disable = audit["events"].as_array().unwrap().iter().find(|e| e["action"] == "config.disable").unwrap();
    assert_eq!(disable["actor"], r.body["updatedBy"]);
    assert_eq!(
        disable["actor"],
        api.call(Method::GET, "/ui/session", None, None, &[("cookie", &b.cookie)]).await.body["name"]
    );
    let rollout = json!({"percentage": 12.5});
    let r = by_cookie(&api, &b, Method::PUT, &format!("{CONFIG}/rollout"), Some(rollout), Some(&b.csrf)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["fallthrough"]["rollout"]["variants"][0]["weight"], 12.5);
}

#[tokio::test]
async fn a_read_session_reads_but_cannot_write() {
    let api = api_with_flag().await;
    let read = api.token("read", None).await;
    let b = browser(&api, &read).await;
    let me = by_cookie(&api, &b, Method::GET, "/ui/session", None, None).await;
    assert_eq!(me.body["role"], "read");
    assert_eq!(by_cookie(&api, &b, Method::GET, CONFIG, None, None).await.status, StatusCode::OK);
    let r = by_cookie(&api, &b, Method::POST, &format!("{CONFIG}/disable"), Some(json!({})), Some(&b.csrf)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(state(&api).await, "ENABLED");
}

#[tokio::test]
async fn evaluate_and_unknown_tokens_cannot_sign_in() {
    let api = Api::new().await;
    let eval = api.token("evaluate", Some("production")).await;
    let r = sign_in(&api, &eval).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "FORBIDDEN");
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    let r = sign_in(&api, "fdt_not-a-token").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "UNAUTHORIZED");
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    let r = api.call(Method::POST, "/ui/session", None, Some(json!({"tokn": ADMIN})), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn after_signing_out_the_cookie_no_longer_works() {
    let api = api_with_flag().await;
    let b = browser(&api, ADMIN).await;
    let r = by_cookie(&api, &b, Method::DELETE, "/ui/session", None, Some(&b.csrf)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let r = by_cookie(&api, &b, Method::GET, "/api/v1/flags", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(by_cookie(&api, &b, Method::GET, "/ui/session", None, None).await.body, json!({"signedIn": false}));
    let r = by_cookie(&api, &b, Method::POST, &format!("{CONFIG}/disable"), Some(json!({})), Some(&b.csrf)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(state(&api).await, "ENABLED");
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions() {
    let api = api_with_flag().await;
    let created = api.admin(Method::POST, "/api/v1/tokens", Some(json!({"name": "ops", "role": "admin"}))).await;
    let b = browser(&api, created.body["value"].as_str().unwrap()).await;
    let id = created.body["id"].as_str().unwrap();
    let r = api.admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = by_cookie(&api, &b, Method::GET, "/api/v1/flags", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

#[tokio::test]
async fn the_console_page_and_assets_are_served_from_the_binary() {
    let api = Api::new().await;
    let mut total = 0;
    for (path, kind) in [("/ui", "text/html"), ("/ui/console.css", "text/css"), ("/ui/console.js", "text/javascript")] {
        let res =
            tower::ServiceExt::oneshot(api.app.clone(), Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
        assert!(res.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'self'"));
        total += axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().len();
    }
    assert!(total < 200 * 1024, "first load is {total} bytes");
}

/// A sign-in request with `headers`, as a browser would send it.
async fn sign_in_from(api: &Api, headers: &[(&str, &str)]) -> Reply {
    api.call(Method::POST, "/ui/session", None, Some(json!({ "token": ADMIN })), headers).await
}

#[tokio::test]
async fn a_page_of_another_site_cannot_sign_a_browser_in() {
    let api = Api::new().await;
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "https://evil.example"), ("host", "flagd.internal:8013")],
        vec![("origin", "null"), ("host", "flagd.internal:8013")],
    ] {
        let r = sign_in_from(&api, &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}: {}", r.body);
        assert!(!r.headers.contains_key(header::SET_COOKIE), "{headers:?}: no session is opened");
    }
    for headers in [
        vec![("sec-fetch-site", "same-origin")],
        vec![("sec-fetch-site", "none")],
        vec![("origin", "http://flagd.internal:8013"), ("host", "flagd.internal:8013")],
        vec![],
    ] {
        let r = sign_in_from(&api, &headers).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}: {}", r.body);
    }
}

#[tokio::test]
async fn signing_in_again_and_again_keeps_only_the_newest_sessions_of_a_token() {
    let api = api_with_flag().await;
    let mut browsers = Vec::new();
    for _ in 0..flagd_server::http::session::SESSIONS_PER_TOKEN + 5 {
        browsers.push(browser(&api, ADMIN).await);
    }
    let live: Vec<bool> = futures_util::future::join_all(
        browsers.iter().map(|b| by_cookie(&api, b, Method::GET, "/api/v1/flags", None, None)),
    )
    .await
    .iter()
    .map(|r| r.status == StatusCode::OK)
    .collect();
    let expected: Vec<bool> = (0..browsers.len()).map(|n| n >= 5).collect();
    assert_eq!(live, expected, "the five oldest sessions ended, the newest twenty live");
}

#[tokio::test]
async fn behind_a_tls_proxy_the_cookie_is_secure_and_session_answers_are_not_cached() {
    let api = Api::new().await;
    let r = sign_in_from(&api, &[("x-forwarded-proto", "https")]).await;
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.split("; ").any(|a| a == "Secure"), "{cookie}");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let plain = sign_in(&api, ADMIN).await;
    let cookie = plain.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "plain HTTP (a developer's loopback) keeps working: {cookie}");
    let me = api.call(Method::GET, "/ui/session", None, None, &[]).await;
    assert_eq!(me.headers[header::CACHE_CONTROL], "no-store");
}
