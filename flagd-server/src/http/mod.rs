//! The HTTP API: one router built from one module per resource, a JSON 404 for anything
//! else, a body limit, and one tracing span per request.

// Visible to the crate so that `crate::openapi` can name the handlers' path attributes.
pub(crate) mod admin;
pub(crate) mod environments;
pub(crate) mod evaluate;
pub(crate) mod flags;
pub mod json;
pub(crate) mod ofrep;
pub(crate) mod ops;
pub(crate) mod sync;

use std::sync::Arc;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::metrics::Route;
use crate::service::Service;

/// The whole API for one service.
pub fn app(service: Arc<Service>) -> Router {
    Router::new()
        .merge(ops::routes())
        .merge(ofrep::routes())
        .merge(flags::routes())
        .merge(environments::routes())
        .merge(evaluate::routes())
        .merge(sync::routes())
        .merge(admin::routes())
        .merge(crate::openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(Arc::clone(&service), observe))
        .layer(TraceLayer::new_for_http())
        .with_state(service)
}

/// Times every request into the latency histogram of its route class.
async fn observe(State(service): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let route = Route::of(req.uri().path());
    let started = Instant::now();
    let response = next.run(req).await;
    service.metrics().observe_request(route, response.status().as_u16(), started.elapsed());
    response
}

/// A response carrying the `ETag` of a stored version.
pub(crate) fn with_etag(version: i64, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&crate::service::etag(version)) {
        response.headers_mut().insert(axum::http::header::ETAG, v);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound { code: "NOT_FOUND", message: "no such endpoint; see /openapi.json".into() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
