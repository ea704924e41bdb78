//! `/api/v1/audit` and `/api/v1/tokens`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;

use super::json::JsonBody;
use super::params::{NoIfMatch, NoQuery, PathParams, QueryParams};
use crate::auth::{Access, Principal, Writer};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{AuditPage, DatabaseErrors, ReadErrors, TokenList};
use crate::service::{CreatedToken, NewToken, Service};
use crate::store::AuditQuery;

/// Page size when `limit` is not given, and the largest accepted.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// The audit and token routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only this flag.
    flag: Option<String>,
    /// Only this environment (which must exist).
    environment: Option<String>,
    /// Only this actor (a token's name).
    actor: Option<String>,
    /// Unix milliseconds or an RFC 3339 time.
    since: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    cursor: Option<i64>,
}

fn parse_since(since: &str) -> Result<i64, ApiError> {
    let rfc3339 = || chrono::DateTime::parse_from_rfc3339(since).ok().map(|d| d.timestamp_millis());
    since.parse::<i64>().ok().or_else(rfc3339).ok_or_else(|| {
        ApiError::bad_request(
            "INVALID_QUERY",
            format!("`since` must be Unix milliseconds or an RFC 3339 time, got `{since}`"),
        )
    })
}

/// The audit log, newest first, paged by `nextCursor`.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "listAuditEvents",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "One page of events", body = AuditPage),
        (status = 400, description = "Bad query parameters (`INVALID_QUERY`)", body = ErrorBody),
        (status = 404, description = "No such `environment` (`ENVIRONMENT_NOT_FOUND`); an unknown `flag` is not \
        refused, as a deleted flag's events stay", body = ErrorBody),
        ReadErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn audit(
    State(s): State<Arc<Service>>,
    p: Principal,
    QueryParams(q): QueryParams<AuditParams>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request("INVALID_QUERY", format!("`limit` must be 1 to {MAX_LIMIT}")));
    }
    let query = AuditQuery {
        flag: q.flag,
        environment: q.environment,
        actor: q.actor,
        since: q.since.as_deref().map(parse_since).transpose()?,
        before_id: q.cursor,
        limit,
    };
    let page = s.audit(&query).await?;
    let next_cursor = page.more.then(|| page.events.last().map(|e| e.id)).flatten();
    Ok(axum::Json(AuditPage { events: page.events, next_cursor }).into_response())
}

/// Every token, without values.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "listTokens",
    tag = "tokens",
    responses(
        (status = 200, description = "The tokens", body = TokenList),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn list_tokens(State(s): State<Arc<Service>>, p: Principal) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    Ok(axum::Json(serde_json::json!({ "tokens": s.list_tokens().await? })).into_response())
}

/// Creates a token. Its value is in this answer only: it is stored hashed.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "createToken",
    tag = "tokens",
    request_body(content = NewToken),
    responses(
        (status = 201, description = "Created, with its value", body = CreatedToken),
        (status = 400, description = "Malformed body, or a role and environment that do not go together (`INVALID_BODY`), an `If-Match` header (`INVALID_IF_MATCH`: a creation has no version to match), or a query parameter (`INVALID_QUERY`: this write takes none)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        (status = 404, description = "The `evaluate` token's environment does not exist (`ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 413, description = "Body larger than 1 MiB", body = ErrorBody),
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn create_token(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    _: NoIfMatch,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    Ok((StatusCode::CREATED, axum::Json(s.create_token(&p, body).await?)).into_response())
}

/// Revokes a token.
///
/// A token has no version, so this takes no `If-Match`: a request that sends one is refused
/// with 400 `INVALID_IF_MATCH` and revokes nothing, rather than revoking without the check
/// it asked for.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    operation_id = "revokeToken",
    tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked (or revoked already)"),
        (status = 400, description = "An `If-Match` header, which a token has no version for (`INVALID_IF_MATCH`), a query parameter (`INVALID_QUERY`: this write takes none), or a path parameter that does not decode (`INVALID_PATH`)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        (status = 404, description = "No such token (`TOKEN_NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "The last live admin token (`LAST_ADMIN_TOKEN`): create another first", body = ErrorBody),
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn revoke_token(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams(id): PathParams<String>,
    _: NoIfMatch,
) -> Result<StatusCode, ApiError> {
    s.revoke_token(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
