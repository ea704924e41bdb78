//! Operations endpoints: liveness and readiness.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::openapi::{Health, Readiness};
use crate::service::Service;

/// Readiness probes have short deadlines; a database that does not answer in this time
/// is reported down rather than holding the probe.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// `/readyz` and `/metrics`.
pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// `/healthz`, answered where evaluations are (see [`crate::control`]): it says whether
/// this process serves requests.
pub fn liveness_routes() -> Router<Arc<Service>> {
    Router::new().route("/healthz", get(healthz))
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
    s.snapshots().settle();
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
    let database = match tokio::time::timeout(PING_TIMEOUT, s.store().ping()).await {
        Ok(Ok(())) => "up",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            "down"
        }
        Err(_) => {
            tracing::warn!("readiness: the database did not answer within {PING_TIMEOUT:?}");
            "down"
        }
    };
    let snapshots = s.snapshots();
    let body = json!({
        "status": "ready",
        "database": database,
        "appliedSeq": snapshots.applied_seq(),
        "snapshotAgeMs": snapshots.age_ms(),
        "source": if s.serving_cache() { "snapshot-cache" } else { "database" },
    });
    axum::Json(body).into_response()
}
