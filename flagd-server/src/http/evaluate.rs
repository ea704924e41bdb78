//! Evaluation for people and tools holding an admin-API token: one flag in any
//! environment, with the whole resolution (errors included) rather than OFREP's shape.
//! These evaluations are diagnostics, so they are not counted in the metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flagd_core::{ErrorCode, Reason};
use serde::Serialize;
use serde_json::{Map, Value};

use super::json::UnreadBody;
use super::ofrep_context::context;
use super::params::PathParams;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{OfrepRequest, ReadErrors};
use crate::service::Service;

/// The evaluate route.
pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/api/v1/flags/{key}/environments/{env}/evaluate", post(evaluate))
}

/// What one evaluation gave, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation<'a> {
    /// Flag key.
    pub key: &'a str,
    /// Environment name.
    pub environment: &'a str,
    /// The change sequence number of the ruleset that answered.
    pub seq: i64,
    /// The value served, of the flag's type; absent on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub value: Option<&'a Value>,
    /// The variant served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<&'a str>,
    /// Why: `STATIC`, `TARGETING_MATCH`, `SPLIT`, `DEFAULT`, `DISABLED` or `ERROR`.
    #[schema(value_type = String, example = "SPLIT")]
    pub reason: Reason,
    /// With reason `ERROR`: the OpenFeature error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "TARGETING_KEY_MISSING")]
    pub error_code: Option<ErrorCode>,
    /// With reason `ERROR`: what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<&'a str>,
    /// The flag's metadata, whole.
    #[schema(value_type = Object)]
    pub metadata: &'a Map<String, Value>,
}

/// Evaluates one flag in one environment for a context, as OFREP would, and reports
/// errors in the body rather than as a status.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{key}/environments/{env}/evaluate",
    operation_id = "evaluateForDiagnosis",
    tag = "flags",
    params(
        ("key" = String, Path, description = "Flag key"),
        ("env" = String, Path, description = "Environment name"),
    ),
    request_body(content = Option<OfrepRequest>, description = "The context; an empty body is an empty context"),
    responses(
        (status = 200, description = "The resolution, including evaluation errors", body = Evaluation),
        (status = 400, description = "The body, context or path is unusable (`PARSE_ERROR`, `INVALID_CONTEXT`, `INVALID_PATH`)", body = ErrorBody),
        (status = 404, description = "No such flag or environment (`FLAG_NOT_FOUND`, `ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        ReadErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn evaluate(
    State(s): State<Arc<Service>>,
    p: Principal,
    PathParams((key, env)): PathParams<(String, String)>,
    body: UnreadBody,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    let snapshot = s.snapshot(&env)?;
    let position = snapshot.ruleset.position(&key).ok_or_else(|| ApiError::flag_not_found(&key))?;
    let bytes = body.read().await?;
    let ctx = context(&bytes).map_err(|(code, details)| ApiError::bad_request(code.as_str(), details))?;
    let r = snapshot.ruleset.evaluate_at(position, &ctx);
    let error = r.error.as_ref();
    let body = Evaluation {
        key: &key,
        environment: &env,
        seq: snapshot.seq(),
        value: r.value,
        variant: r.variant,
        reason: r.reason,
        error_code: error.map(|e| e.code),
        error_message: error.map(|e| e.message.as_str()),
        metadata: r.metadata,
    };
    Ok(axum::Json(body).into_response())
}
