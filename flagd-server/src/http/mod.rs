//! The HTTP API: one router built from one module per resource, a JSON 404 for anything
//! else, a body limit, and one tracing span per request.

mod admin;
mod environments;
mod flags;
pub mod json;
mod ofrep;
mod ops;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::service::Service;

/// The whole API for one service.
pub fn app(service: Arc<Service>) -> Router {
    Router::new()
        .merge(ops::routes())
        .merge(ofrep::routes())
        .merge(flags::routes())
        .merge(environments::routes())
        .merge(admin::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(service)
}

async fn not_found() -> ApiError {
    ApiError::NotFound { code: "NOT_FOUND", message: "no such endpoint; see /openapi.json".into() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
