//! What in-process clients and deploy tooling follow: an environment's snapshot (the source
//! its ruleset is compiled from), a server-sent-events stream announcing each change, and a
//! wait for a change to be applied.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::params::{PathParams, QueryParams};
use crate::auth::{Access, Principal, Writer};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{ChangeStreamEvent, DatabaseErrors, PathErrors, ReadErrors};
use crate::replication::{ClusterView, ReplicaView};
use crate::service::{Service, etag, parse_etag};

/// How long a wait may last at most, so a forgotten client cannot hold a request forever.
const MAX_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Comments sent on an idle stream so proxies and clients can tell it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The sync routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/environments/{env}/snapshot", get(snapshot))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/wait", get(wait))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/cluster/replicas/{id}", delete(forget_replica))
}

/// The environment's flags and segments as the server serves them now. The `ETag` is the
/// change sequence number of the environment's last change.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/snapshot",
    operation_id = "environmentSnapshot",
    tag = "sync",
    params(
        ("env" = String, Path, description = "Environment name"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a snapshot you hold"),
    ),
    responses(
        (status = 200, description = "The snapshot", body = flagd_core::EnvironmentSnapshot,
        headers(("ETag" = String, description = "The snapshot's sequence number, quoted"))),
        (status = 304, description = "The snapshot is the one `If-None-Match` names"),
        (status = 403, description = "An `evaluate` token of another environment, or a role without reads", body = ErrorBody),
        (status = 404, description = "No such environment (`ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        PathErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn snapshot(
    State(s): State<Arc<Service>>,
    p: Principal,
    PathParams(env): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    p.require_rulesets_of(&env)?;
    let snapshot = s.snapshot(&env)?;
    let tag = HeaderValue::from_str(&etag(snapshot.seq())).map_err(|e| ApiError::Internal(e.to_string()))?;
    let held = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).and_then(parse_etag);
    if held == Some(snapshot.seq()) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let json = snapshot.json().map_err(|e| ApiError::Internal(format!("serialising a snapshot: {e}")))?;
    Ok(([(header::ETAG, tag), (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json)
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StreamParams {
    /// The environment to follow; optional for an `evaluate` token (its own), required
    /// for `read` and `admin` tokens.
    environment: Option<String>,
}

/// One `change` event: the environment's snapshot is now at `seq`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeEvent<'a> {
    /// Environment name.
    pub environment: &'a str,
    /// The sequence number of the snapshot to fetch.
    pub seq: i64,
}

/// Server-sent events announcing the environment's changes. The first `change` event
/// comes at once with the current sequence number; each later one means "fetch the
/// snapshot again". Keep-alive comments every 15 s. The stream ends when the server
/// shuts down, or once the token that opened it is revoked; reconnect with backoff and keep
/// serving the snapshot you hold meanwhile.
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    operation_id = "changeStream",
    tag = "sync",
    params(StreamParams),
    responses(
        (status = 200, description = "`text/event-stream` of `change` events, each with `id` = sequence number and \
        a `ChangeEvent` as JSON data", body = ChangeStreamEvent, content_type = "text/event-stream"),
        (status = 400, description = "A `read` or `admin` token without `environment` (`INVALID_QUERY`)", body = ErrorBody),
        (status = 403, description = "An `evaluate` token of another environment", body = ErrorBody),
        (status = 404, description = "No such environment (`ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn stream(
    State(s): State<Arc<Service>>,
    p: Principal,
    QueryParams(q): QueryParams<StreamParams>,
) -> Result<Response, ApiError> {
    let env = q.environment.or_else(|| p.environment().map(str::to_owned)).ok_or_else(|| {
        ApiError::bad_request("INVALID_QUERY", "say which environment to follow: `?environment=production`")
    })?;
    p.require_rulesets_of(&env)?;
    s.snapshot(&env)?;
    Ok(Sse::new(changes(s, p, env)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// A `change` event whenever the environment's snapshot advances, until the server closes
/// or `principal`'s token is revoked: a revoked token must stop learning of changes, as it
/// stops reading snapshots. A revocation is a change too, so it wakes the stream to see it.
fn changes(
    service: Arc<Service>,
    principal: Principal,
    env: String,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    let applied = service.snapshots().subscribe();
    let state = (service, principal, env, applied, i64::MIN);
    futures_util::stream::unfold(state, |(service, principal, env, mut applied, sent)| async move {
        loop {
            if !principal.is_live(&service) {
                return None;
            }
            let seq = service.snapshots().get(&env).map_or(sent, |s| s.seq());
            if seq > sent {
                let event = Event::default()
                    .event("change")
                    .id(seq.to_string())
                    .json_data(ChangeEvent { environment: &env, seq })
                    .unwrap_or_else(|_| Event::default().event("change").id(seq.to_string()));
                return Some((Ok(event), (service, principal, env, applied, seq)));
            }
            tokio::select! {
                changed = applied.changed() => changed.ok()?,
                () = service.closed() => return None,
            }
        }
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WaitParams {
    /// The sequence number to wait for: a write response's `version`.
    #[param(minimum = 0)]
    seq: i64,
    /// How long to wait, in milliseconds (default 10000); a longer wait is cut to 60000.
    // Documented as u128 (no format): u64's `int64` would claim an upper bound that
    // the server does not hold callers to.
    #[param(value_type = Option<u128>)]
    timeout_ms: Option<u64>,
    /// How long the caller has been waiting for this change already, in milliseconds, when
    /// it asks again (after a 504 at the server's one-minute cap, a restart, a 503): the
    /// replicas in the cluster view at the first request stay in the wait, so asking again
    /// does not let one that fell silent meanwhile pass.
    #[param(value_type = Option<u128>)]
    waited_ms: Option<u64>,
}

/// The answer to a wait that succeeded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitResult {
    /// The sequence number waited for.
    pub seq: i64,
    /// Who confirmed it: `cluster` (every replica in the cluster view) or `server` (the one the request
    /// reached, when it runs without the cluster view).
    #[schema(example = "cluster")]
    pub scope: &'static str,
    /// Each replica and how far it has applied the change sequence.
    pub replicas: Vec<ReplicaView>,
}

/// Returns once every replica in the cluster view (heard from within the server's
/// `--replica-memory`, ten minutes by default, before the wait began, or before `waitedMs`
/// earlier) serves change `seq`, or 504 after the timeout naming
/// the replicas behind and those gone silent: one that falls silent during the wait stays in
/// it. A `seq` above the last committed change is refused at once with 404: no write has
/// made it yet.
#[utoipa::path(
    get,
    path = "/api/v1/wait",
    operation_id = "waitForChange",
    tag = "sync",
    params(WaitParams),
    responses(
        (status = 200, description = "The change is served", body = WaitResult),
        (status = 400, description = "A missing or invalid `seq` or `timeoutMs` (`INVALID_QUERY`)", body = ErrorBody),
        (status = 404, description = "No write has reached `seq` yet (`CHANGE_NOT_FOUND`); the message names the \
        latest change", body = ErrorBody),
        (status = 504, description = "Not applied in time (`WAIT_TIMEOUT`); the message says how far it got, or \
        that the database did not return the replicas' heartbeats in time", body = ErrorBody),
        ReadErrors,
        // After the shared 503, which it replaces.
        (status = 503, description = "This server is stopping (`SHUTTING_DOWN`): ask again, another replica answers; \
        or the database was still unavailable at the timeout (`DATABASE_UNAVAILABLE`)", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn wait(
    State(s): State<Arc<Service>>,
    p: Principal,
    QueryParams(q): QueryParams<WaitParams>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    if q.seq < 0 {
        return Err(ApiError::bad_request("INVALID_QUERY", "`seq` is a write's `version`, a number from 0 up"));
    }
    let timeout = q.timeout_ms.map_or(DEFAULT_WAIT, Duration::from_millis).min(MAX_WAIT);
    // A wait may last a minute: a stopping server ends it at once (503, which flagctl asks
    // again after, reaching another replica) instead of holding its shutdown up that long.
    let view = tokio::select! {
        view = s.wait_for_cluster(q.seq, timeout, Duration::from_millis(q.waited_ms.unwrap_or(0))) => view?,
        () = s.closed() => return Err(ApiError::ShuttingDown),
    };
    let scope = if s.cluster_enabled() { "cluster" } else { "server" };
    Ok(axum::Json(WaitResult { seq: q.seq, scope, replicas: view.replicas }).into_response())
}

/// The replicas heard from within the server's `--replica-memory` (ten minutes by
/// default; each records a heartbeat every second) and how far each has applied the change
/// sequence. A replica that stops cleanly drops out at once; one silent for over 3 s has
/// been killed or is cut off from the database, where it may go on serving what it had, so
/// it stays that long.
#[utoipa::path(
    get,
    path = "/api/v1/cluster",
    operation_id = "cluster",
    tag = "sync",
    responses(
        (status = 200, description = "The replicas, oldest first", body = ClusterView),
        ReadErrors,
        // After the shared 503, which it replaces.
        (status = 503, description = "The database is unreachable (`DATABASE_UNAVAILABLE`), or the `replicas` table \
        stayed locked by another session for over 2 s (`DATABASE_BUSY`; `DATABASE_UNAVAILABLE` too, when more \
        requests wait on the lock than the heartbeats' connections)", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn cluster(State(s): State<Arc<Service>>, p: Principal) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(s.cluster().await?).into_response())
}

/// Takes a replica out of the cluster view, so that waits no longer count it: for one known
/// to be gone for good (killed, its host lost), which would otherwise stay in the view, and
/// make every wait fail naming it, until `--replica-memory` after it was last heard. A
/// replica heard from within 3 s is running and is refused; one only cut off from the
/// database comes back with its next heartbeat. The audit log records it
/// (`replica.forget`, the replica as it last reported itself in `before`).
#[utoipa::path(
    delete,
    path = "/api/v1/cluster/replicas/{id}",
    operation_id = "forgetReplica",
    tag = "sync",
    params(("id" = String, Path, description = "The replica's id, as `GET /api/v1/cluster` lists it")),
    responses(
        (status = 204, description = "Forgotten: waits no longer count it"),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        (status = 404, description = "No such replica, or one forgotten already (`REPLICA_NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "The replica was heard from within 3 s: it is running (`REPLICA_LIVE`)", body = ErrorBody),
        PathErrors,
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn forget_replica(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    s.forget_replica(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
