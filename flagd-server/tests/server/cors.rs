//! Browser pages calling OFREP from another origin (`--cors-origin`): what the browser
//! needs to let a page read the answer, for the origins allowed only, and never on the
//! admin API.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use flagd_server::http::cors::parse_origin;
use flagd_server::{App, HttpOptions};
use serde_json::json;

use crate::api::{ADMIN, Api, Reply, reply};

const PAGE: &str = "https://app.example.com";
const ELSEWHERE: &str = "https://evil.example.net";
const SINGLE: &str = "/ofrep/v1/evaluate/flags/portal";
const BULK: &str = "/ofrep/v1/evaluate/flags";

/// A server allowing `origins`, an evaluate token for production, and the app.
async fn server(origins: &[&str]) -> (Api, String, App) {
    let (api, service) = Api::over(|store| store).await;
    api.create_flag(json!({"key": "portal"})).await;
    let token = api.token("evaluate", Some("production")).await;
    let cors_origins = origins.iter().map(|o| parse_origin(o).unwrap()).collect();
    let app = flagd_server::app_with(Arc::clone(&service), &HttpOptions { cors_origins });
    (api, token, app)
}

/// What a browser sends before a cross-origin POST with a token and a JSON body.
async fn preflight(app: &App, path: &str, origin: &str) -> Reply {
    let req = Request::options(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type,if-none-match")
        .body(Body::empty());
    reply(app.clone(), req.unwrap()).await
}

async fn post(app: &App, path: &str, origin: &str, token: Option<&str>) -> Reply {
    let mut req = Request::post(path).header(header::ORIGIN, origin).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = json!({"context": {"companyId": "42"}}).to_string();
    reply(app.clone(), req.body(Body::from(body)).unwrap()).await
}

fn allowed_origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap())
}

fn listed(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    let value = headers.get(name).map_or("", |v| v.to_str().unwrap());
    value.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect()
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_may_evaluate_and_read_the_bulk_etag() {
    let (_api, token, app) = server(&[PAGE]).await;
    for path in [SINGLE, BULK] {
        let r = preflight(&app, path, PAGE).await;
        assert!(r.status.is_success(), "{path}: preflight answered {}", r.status);
        assert_eq!(allowed_origin(&r.headers), Some(PAGE), "{path}");
        assert!(listed(&r.headers, header::ACCESS_CONTROL_ALLOW_METHODS).contains(&"post".to_owned()));
        let headers = listed(&r.headers, header::ACCESS_CONTROL_ALLOW_HEADERS);
        for needed in ["authorization", "content-type", "if-none-match", "x-api-key"] {
            assert!(headers.contains(&needed.to_owned()), "{path}: {needed} not allowed: {headers:?}");
        }
        assert_eq!(r.headers.get(header::ACCESS_CONTROL_MAX_AGE).unwrap(), "3600");
    }

    let r = post(&app, BULK, PAGE, Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(allowed_origin(&r.headers), Some(PAGE));
    assert_eq!(listed(&r.headers, header::ACCESS_CONTROL_EXPOSE_HEADERS), ["etag"], "the page reads the ETag");
    assert!(r.headers.contains_key(header::ETAG));
    let r = post(&app, SINGLE, PAGE, Some(&token)).await;
    assert_eq!((r.status, &r.body["reason"]), (StatusCode::OK, &json!("DISABLED")), "{}", r.body);
    assert_eq!(allowed_origin(&r.headers), Some(PAGE));
    // A refusal is readable too, so the page's client can tell a bad token from the network.
    let r = post(&app, SINGLE, PAGE, None).await;
    assert_eq!((r.status, allowed_origin(&r.headers)), (StatusCode::UNAUTHORIZED, Some(PAGE)));
}

#[tokio::test]
async fn other_origins_and_the_admin_api_get_no_cors_headers() {
    let (_api, token, app) = server(&[PAGE, "http://127.0.0.1:5173"]).await;
    let r = preflight(&app, SINGLE, ELSEWHERE).await;
    assert_eq!(allowed_origin(&r.headers), None, "a preflight from another origin");
    let r = post(&app, SINGLE, ELSEWHERE, Some(&token)).await;
    assert_eq!(allowed_origin(&r.headers), None, "a POST from another origin");
    assert_eq!(
        allowed_origin(&post(&app, SINGLE, "http://127.0.0.1:5173", Some(&token)).await.headers),
        Some("http://127.0.0.1:5173")
    );

    let r = preflight(&app, "/api/v1/flags", PAGE).await;
    assert_eq!(allowed_origin(&r.headers), None, "the admin API is never cross-origin");
    let req = Request::get("/api/v1/flags")
        .header(header::ORIGIN, PAGE)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    let r = reply(app.clone(), req.body(Body::empty()).unwrap()).await;
    assert_eq!((r.status, allowed_origin(&r.headers)), (StatusCode::OK, None));
}

#[tokio::test]
async fn any_origin_is_allowed_with_a_star_and_none_without_the_option() {
    let (_api, token, app) = server(&["*"]).await;
    let r = post(&app, SINGLE, ELSEWHERE, Some(&token)).await;
    assert_eq!((r.status, allowed_origin(&r.headers)), (StatusCode::OK, Some("*")));
    assert_eq!(allowed_origin(&preflight(&app, BULK, ELSEWHERE).await.headers), Some("*"));

    let (_api, token, app) = server(&[]).await;
    let r = post(&app, SINGLE, PAGE, Some(&token)).await;
    assert_eq!((r.status, allowed_origin(&r.headers)), (StatusCode::OK, None));
    let r = preflight(&app, SINGLE, PAGE).await;
    assert_eq!((r.status, allowed_origin(&r.headers)), (StatusCode::METHOD_NOT_ALLOWED, None));
}
