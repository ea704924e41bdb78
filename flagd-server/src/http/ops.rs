//! Operations endpoints: liveness and readiness.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::openapi::{Health, Readiness};
use crate::service::Service;

/// `/healthz`, `/readyz` and `/metrics`.
pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
    ),
)]
async fn metrics(State(s): State<Arc<Service>>) -> Response {
    let body = s.metrics().render(&s.snapshots().versions());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Liveness.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process serves requests", body = Health),
    ),
)]
async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready as long as rulesets are loaded: evaluation is served from memory even while the
/// database is down, which is reported alongside.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Rulesets are loaded; `database` says whether writes can be made", body = Readiness),
    ),
)]
async fn readyz(State(s): State<Arc<Service>>) -> Response {
    let database = match s.store().ping().await {
        Ok(()) => "up",
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            "down"
        }
    };
    axum::Json(json!({ "status": "ready", "database": database, "appliedSeq": s.snapshots().applied_seq() }))
        .into_response()
}
