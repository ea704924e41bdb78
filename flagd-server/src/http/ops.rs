//! Operations endpoints: liveness and readiness.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::service::Service;

/// `/healthz`, `/readyz` and `/metrics`.
pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// Prometheus text format.
async fn metrics(State(s): State<Arc<Service>>) -> Response {
    let body = s.metrics().render(&s.snapshots().versions());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready as long as rulesets are loaded: evaluation is served from memory even while the
/// database is down, which is reported alongside.
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
