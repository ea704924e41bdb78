//! `/api/v1/flags…`: definitions, per-environment configurations, quick operations and
//! promotion.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use flagd_core::{EnvironmentConfig, FlagDefinition};
use serde::Deserialize;
use serde_json::Value;

use super::json::JsonBody;
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::service::{ConfigView, FlagPatch, QuickOp, RolloutRequest, Service, etag, parse_etag};

/// The flag routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/flags", get(list).post(create))
        .route("/api/v1/flags/{key}", get(read).patch(update).delete(remove))
        .route("/api/v1/flags/{key}/environments/{env}", get(read_config).put(write_config))
        .route("/api/v1/flags/{key}/environments/{env}/enable", post(enable))
        .route("/api/v1/flags/{key}/environments/{env}/disable", post(disable))
        .route("/api/v1/flags/{key}/environments/{env}/rollout", put(rollout))
        .route("/api/v1/flags/{key}/environments/{env}/allow", post(allow).delete(disallow))
        .route("/api/v1/flags/{key}/environments/{env}/deny", post(deny).delete(undeny))
        .route("/api/v1/flags/{key}/promote", post(promote))
}

/// A body with nothing but an optional reason.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
}

/// `{"companies": ["12", 45], "reason": "…"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Companies {
    companies: Vec<Value>,
    reason: Option<String>,
}

impl Companies {
    fn ids(&self) -> Result<Vec<String>, ApiError> {
        if self.companies.is_empty() {
            return Err(ApiError::bad_request("INVALID_BODY", "`companies` must list at least one company id"));
        }
        self.companies
            .iter()
            .map(|v| {
                flagd_core::context::company_key(v).ok_or_else(|| {
                    ApiError::bad_request("INVALID_COMPANY_ID", format!("company ids are strings or integers, got {v}"))
                })
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Promotion {
    from: String,
    to: String,
    #[serde(default)]
    include_state: bool,
    reason: Option<String>,
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(parse_etag)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("INVALID_IF_MATCH", "If-Match must be an ETag this API returned")),
    }
}

fn with_etag(version: i64, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn config_response(view: ConfigView) -> Response {
    with_etag(view.version, axum::Json(view))
}

async fn list(State(s): State<Arc<Service>>, p: Principal) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(serde_json::json!({ "flags": s.flags().await? })).into_response())
}

async fn create(
    State(s): State<Arc<Service>>,
    p: Principal,
    JsonBody(def): JsonBody<FlagDefinition>,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    let view = s.create_flag(&p, def).await?;
    Ok((StatusCode::CREATED, with_etag(view.version, axum::Json(view))).into_response())
}

async fn read(State(s): State<Arc<Service>>, p: Principal, Path(key): Path<String>) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    let view = s.flag(&key).await?;
    Ok(with_etag(view.version, axum::Json(view)))
}

async fn update(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(key): Path<String>,
    headers: HeaderMap,
    JsonBody(patch): JsonBody<FlagPatch>,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    let view = s.update_flag(&p, &key, patch, if_match(&headers)?).await?;
    Ok(with_etag(view.version, axum::Json(view)))
}

async fn remove(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<Reason>,
) -> Result<StatusCode, ApiError> {
    p.require(Access::Write)?;
    s.delete_flag(&p, &key, body.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn read_config(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path((key, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(config_response(s.config(&key, &env).await?))
}

async fn write_config(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path((key, env)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    let version = if_match(&headers)?.ok_or(ApiError::PreconditionRequired)?;
    let Value::Object(mut fields) = body else {
        return Err(ApiError::bad_request("INVALID_BODY", "the body must be a configuration object"));
    };
    let reason = match fields.remove("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r),
        Some(_) => return Err(ApiError::bad_request("INVALID_BODY", "`reason` must be a string")),
    };
    // What GET returned may be sent back as is: drop the read-only fields.
    for read_only in ["flag", "environment", "version", "updatedAt", "updatedBy"] {
        fields.remove(read_only);
    }
    let config: EnvironmentConfig = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("invalid configuration: {e}")))?;
    Ok(config_response(s.put_config(&p, &key, &env, config, version, reason).await?))
}

async fn quick(
    s: &Service,
    p: &Principal,
    key: &str,
    env: &str,
    op: QuickOp,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    Ok(config_response(s.quick(p, key, env, op, reason).await?))
}

async fn enable(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path((key, env)): Path<(String, String)>,
    JsonBody(body): JsonBody<Reason>,
) -> Result<Response, ApiError> {
    quick(&s, &p, &key, &env, QuickOp::Enable, body.reason).await
}

async fn disable(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path((key, env)): Path<(String, String)>,
    JsonBody(body): JsonBody<Reason>,
) -> Result<Response, ApiError> {
    quick(&s, &p, &key, &env, QuickOp::Disable, body.reason).await
}

async fn rollout(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path((key, env)): Path<(String, String)>,
    JsonBody(body): JsonBody<RolloutRequest>,
) -> Result<Response, ApiError> {
    let reason = body.reason.clone();
    quick(&s, &p, &key, &env, QuickOp::Rollout(body), reason).await
}

async fn list_op(
    s: &Service,
    p: &Principal,
    (key, env): (String, String),
    body: Companies,
    op: fn(Vec<String>) -> QuickOp,
) -> Result<Response, ApiError> {
    let ids = body.ids()?;
    quick(s, p, &key, &env, op(ids), body.reason).await
}

async fn allow(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(path): Path<(String, String)>,
    JsonBody(body): JsonBody<Companies>,
) -> Result<Response, ApiError> {
    list_op(&s, &p, path, body, QuickOp::Allow).await
}

async fn disallow(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(path): Path<(String, String)>,
    JsonBody(body): JsonBody<Companies>,
) -> Result<Response, ApiError> {
    list_op(&s, &p, path, body, QuickOp::Disallow).await
}

async fn deny(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(path): Path<(String, String)>,
    JsonBody(body): JsonBody<Companies>,
) -> Result<Response, ApiError> {
    list_op(&s, &p, path, body, QuickOp::Deny).await
}

async fn undeny(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(path): Path<(String, String)>,
    JsonBody(body): JsonBody<Companies>,
) -> Result<Response, ApiError> {
    list_op(&s, &p, path, body, QuickOp::Undeny).await
}

async fn promote(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<Promotion>,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    Ok(config_response(s.promote(&p, &key, &body.from, &body.to, body.include_state, body.reason).await?))
}
