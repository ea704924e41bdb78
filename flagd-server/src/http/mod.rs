//! The HTTP API: one router built from one module per resource (plus the console under
//! `/ui`: [`session`] and `ui`), a JSON 404 for anything else, a body limit, and one
//! tracing span per request.

// Visible to the crate so that `crate::openapi` can name the handlers' path attributes.
pub(crate) mod admin;
pub(crate) mod environments;
pub(crate) mod evaluate;
pub(crate) mod flags;
pub mod json;
pub(crate) mod observe;
pub(crate) mod ofrep;
pub(crate) mod ofrep_answer;
pub(crate) mod ops;
pub mod session;
pub(crate) mod sync;
pub(crate) mod ui;

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use tower::Layer;

use crate::error::ApiError;
use crate::service::Service;

/// The whole API: the router inside the one observing middleware.
pub type App = observe::Observed<Router>;

/// The whole API for one service.
pub fn app(service: Arc<Service>) -> App {
    let router = Router::new()
        .merge(ops::routes())
        .merge(ofrep::routes())
        .merge(flags::routes())
        .merge(environments::routes())
        .merge(evaluate::routes())
        .merge(sync::routes())
        .merge(admin::routes())
        .merge(crate::openapi::routes())
        .merge(session::routes())
        .merge(ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::clone(&service));
    // Around the router rather than through `Router::layer`, which wraps (and boxes) every
    // route once more and so costs a service clone and a future allocation per request.
    observe::ObserveLayer::new(service).layer(router)
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
