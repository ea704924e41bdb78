//! `/api/v1/environments…`: environments and their segments.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flagd_core::Segment;
use serde::Deserialize;

use super::json::{JsonBody, check_depth, read_body};
use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::service::{ImportMode, Service, etag, parse_etag};

/// The environment and segment routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/environments", get(list).post(create))
        .route("/api/v1/environments/{env}/segments", get(list_segments).post(create_segment))
        .route(
            "/api/v1/environments/{env}/segments/{key}",
            get(read_segment).put(replace_segment).delete(delete_segment),
        )
        .route("/api/v1/environments/{env}/export", get(export))
        .route("/api/v1/environments/{env}/import", axum::routing::post(import))
}

async fn export(State(s): State<Arc<Service>>, p: Principal, Path(env): Path<String>) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(s.export(&env).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportParams {
    #[serde(default)]
    mode: ImportMode,
    #[serde(default)]
    dry_run: bool,
    reason: Option<String>,
}

async fn import(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(env): Path<String>,
    Query(params): Query<ImportParams>,
    req: Request,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    let body = read_body(req, &()).await?;
    check_depth(&body)?;
    let report = s.import(&p, &env, &body, params.mode, params.dry_run, params.reason).await?;
    Ok(axum::Json(report).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEnvironment {
    name: String,
}

async fn list(State(s): State<Arc<Service>>, p: Principal) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(serde_json::json!({ "environments": s.environments().await? })).into_response())
}

async fn create(
    State(s): State<Arc<Service>>,
    p: Principal,
    JsonBody(body): JsonBody<NewEnvironment>,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    Ok((StatusCode::CREATED, axum::Json(s.create_environment(&p, &body.name).await?)).into_response())
}

async fn list_segments(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(env): Path<String>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(serde_json::json!({ "segments": s.segments(&env).await? })).into_response())
}

fn with_etag(version: i64, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

async fn create_segment(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path(env): Path<String>,
    JsonBody(segment): JsonBody<Segment>,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    let view = s.put_segment(&p, &env, segment, true, None).await?;
    Ok((StatusCode::CREATED, with_etag(view.version, axum::Json(view))).into_response())
}

async fn read_segment(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path((env, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    let view = s.segment(&env, &key).await?;
    Ok(with_etag(view.version, axum::Json(view)))
}

async fn replace_segment(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path((env, key)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(mut body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    p.require(Access::Write)?;
    if let Some(fields) = body.as_object_mut() {
        // What GET returned may be sent back as is.
        fields.remove("environment");
        fields.remove("version");
        fields.entry("key").or_insert_with(|| serde_json::Value::String(key.clone()));
    }
    let segment: Segment = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("invalid segment: {e}")))?;
    if segment.key != key {
        return Err(ApiError::bad_request("KEY_MISMATCH", "the body's `key` must match the path"));
    }
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(|v| {
        parse_etag(v)
            .ok_or_else(|| ApiError::bad_request("INVALID_IF_MATCH", "If-Match must be an ETag this API returned"))
    });
    let view = s.put_segment(&p, &env, segment, false, if_match.transpose()?).await?;
    Ok(with_etag(view.version, axum::Json(view)))
}

async fn delete_segment(
    State(s): State<Arc<Service>>,
    p: Principal,
    Path((env, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    p.require(Access::Write)?;
    s.delete_segment(&p, &env, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
