//! `/api/v1/flags…`: definitions, per-environment configurations, quick operations and
//! promotion.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use flagd_core::context::not_a_company_id;
use flagd_core::{CompanyId, EnvironmentConfig, FlagDefinition};
use serde::Deserialize;
use serde_json::Value;

use super::json::{JsonBody, OptionalJsonBody};
use super::params::{IfMatch, NoIfMatch, NoQuery, PathParams};
use super::with_etag;
use crate::auth::{Access, Principal, Writer};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{ConfigChangeResponses, ConfigUpdate, FlagList, PathErrors, ReadErrors, WriteErrors};
use crate::service::{ConfigView, FlagPatch, FlagView, QuickOp, RolloutRequest, Service};

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
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = ChangeReason)]
#[serde(deny_unknown_fields)]
struct Reason {
    /// Why, for the audit log.
    reason: Option<String>,
}

/// `{"companies": ["12", 45], "reason": "…"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Companies {
    /// Company ids, non-empty strings or integers; at least one.
    #[schema(value_type = Vec<CompanyId>, min_items = 1)]
    companies: Vec<Value>,
    /// Why, for the audit log.
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
                flagd_core::context::company_key(v)
                    .ok_or_else(|| ApiError::bad_request("INVALID_COMPANY_ID", not_a_company_id(v)))
            })
            .collect()
    }
}

/// `/api/v1/flags/{key}/environments/{env}…`: a flag's configuration in one environment.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct ConfigPath {
    /// Flag key
    key: String,
    /// Environment name
    env: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Promotion {
    /// The environment to copy from.
    from: String,
    /// The environment to copy to.
    to: String,
    /// Copy the kill-switch state too.
    #[serde(default)]
    include_state: bool,
    /// Why, for the audit log.
    reason: Option<String>,
}

fn config_response(view: ConfigView) -> Response {
    with_etag(view.version, axum::Json(view))
}

/// Every flag, with each environment's state.
#[utoipa::path(
    get,
    path = "/api/v1/flags",
    operation_id = "listFlags",
    tag = "flags",
    responses((status = 200, description = "Every flag", body = FlagList), ReadErrors),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn list(State(s): State<Arc<Service>>, p: Principal) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(serde_json::json!({ "flags": s.flags().await? })).into_response())
}

/// Creates a flag, disabled in every environment.
#[utoipa::path(
    post,
    path = "/api/v1/flags",
    operation_id = "createFlag",
    tag = "flags",
    request_body(content = FlagDefinition),
    responses(
        (status = 201, description = "Created", body = FlagView, headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 409, description = "A flag with this key exists (`ALREADY_EXISTS`)", body = ErrorBody),
        WriteErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn create(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    _: NoIfMatch,
    JsonBody(def): JsonBody<FlagDefinition>,
) -> Result<Response, ApiError> {
    let view = s.create_flag(&p, def).await?;
    Ok((StatusCode::CREATED, with_etag(view.version, axum::Json(view))).into_response())
}

/// One flag: its definition and each environment's state.
#[utoipa::path(
    get,
    path = "/api/v1/flags/{key}",
    operation_id = "getFlag",
    tag = "flags",
    params(("key" = String, Path, description = "Flag key")),
    responses(
        (status = 200, description = "The flag", body = FlagView, headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 404, description = "No such flag (`FLAG_NOT_FOUND`)", body = ErrorBody),
        ReadErrors,
        PathErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn read(
    State(s): State<Arc<Service>>,
    p: Principal,
    PathParams(key): PathParams<String>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    let view = s.flag(&key).await?;
    Ok(with_etag(view.version, axum::Json(view)))
}

/// Changes a definition, field by field.
///
/// A field left out stays, a field given replaces the stored one whole (`variants`, `tags`
/// and `metadata` included), and a field given as `null` goes back to what a flag created
/// without it has.
#[utoipa::path(
    patch,
    path = "/api/v1/flags/{key}",
    operation_id = "updateFlag",
    tag = "flags",
    params(("key" = String, Path, description = "Flag key"), IfMatch),
    request_body(content = FlagPatch),
    responses(
        (status = 200, description = "The flag after the change; with `\"unchanged\": true` it already was so, and nothing was written (same version, no audit event)", body = FlagView, headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 404, description = "No such flag (`FLAG_NOT_FOUND`)", body = ErrorBody),
        (status = 412, description = "`If-Match` is stale: `current` holds the state to start from, `ETag` its version", body = ErrorBody, headers(("ETag" = String, description = "The current version"))),
        WriteErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn update(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams(key): PathParams<String>,
    IfMatch(if_match): IfMatch,
    JsonBody(patch): JsonBody<FlagPatch>,
) -> Result<Response, ApiError> {
    let view = s.update_flag(&p, &key, patch, if_match).await?;
    Ok(with_etag(view.version, axum::Json(view)))
}

/// Deletes a flag from every environment.
///
/// With `If-Match`, only if the definition is still at that version.
#[utoipa::path(
    delete,
    path = "/api/v1/flags/{key}",
    operation_id = "deleteFlag",
    tag = "flags",
    params(("key" = String, Path, description = "Flag key"), IfMatch),
    request_body(content = Option<Reason>, description = "Optional; an empty body is `{}`"),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such flag (`FLAG_NOT_FOUND`)", body = ErrorBody),
        (status = 412, description = "`If-Match` is stale: nothing was deleted; `current` holds the definition, `ETag` its version", body = ErrorBody, headers(("ETag" = String, description = "The current version"))),
        WriteErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn remove(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams(key): PathParams<String>,
    IfMatch(if_match): IfMatch,
    OptionalJsonBody(body): OptionalJsonBody<Reason>,
) -> Result<StatusCode, ApiError> {
    s.delete_flag(&p, &key, body.reason, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A flag's whole configuration in one environment.
#[utoipa::path(
    get,
    path = "/api/v1/flags/{key}/environments/{env}",
    operation_id = "getFlagConfig",
    tag = "flags",
    params(ConfigPath),
    responses(
        (status = 200, description = "The configuration", body = ConfigView, headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 404, description = "No such flag or environment (`FLAG_NOT_FOUND`, `ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        ReadErrors,
        PathErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn read_config(
    State(s): State<Arc<Service>>,
    p: Principal,
    PathParams(path): PathParams<ConfigPath>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(config_response(s.config(&path.key, &path.env).await?))
}

/// Replaces a flag's configuration in one environment. What `GET` or a write returned may
/// be sent back as is: its read-only fields are ignored.
#[utoipa::path(
    put,
    path = "/api/v1/flags/{key}/environments/{env}",
    operation_id = "putFlagConfig",
    tag = "flags",
    params(ConfigPath, ("If-Match" = String, Header, description = "The `ETag` read (required); a stale one is refused with 412")),
    request_body(content = ConfigUpdate),
    responses(
        (status = 200, description = "The configuration after the change", body = ConfigView, headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 404, description = "No such flag or environment (`FLAG_NOT_FOUND`, `ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 412, description = "`If-Match` is stale: `current` holds the state to start from, `ETag` its version", body = ErrorBody, headers(("ETag" = String, description = "The current version"))),
        (status = 428, description = "No `If-Match` header", body = ErrorBody),
        WriteErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn write_config(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams(path): PathParams<ConfigPath>,
    IfMatch(if_match): IfMatch,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let version = if_match.ok_or(ApiError::PreconditionRequired)?;
    let Value::Object(mut fields) = body else {
        return Err(ApiError::bad_request("INVALID_BODY", "the body must be a configuration object"));
    };
    let reason = match fields.remove("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r),
        Some(_) => return Err(ApiError::bad_request("INVALID_BODY", "`reason` must be a string")),
    };
    for read_only in ConfigView::READ_ONLY {
        fields.remove(read_only);
    }
    let config: EnvironmentConfig = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("invalid configuration: {e}")))?;
    Ok(config_response(s.put_config(&p, &path.key, &path.env, config, version, reason).await?))
}

async fn quick(
    s: &Service,
    p: &Principal,
    path: &ConfigPath,
    op: QuickOp,
    reason: Option<String>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    Ok(config_response(s.quick(p, (&path.key, &path.env), op, reason, if_match).await?))
}

/// Turns the flag on in one environment: its rules apply.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{key}/environments/{env}/enable",
    operation_id = "enableFlag",
    tag = "flags",
    params(ConfigPath, IfMatch),
    request_body(content = Option<Reason>, description = "Optional; an empty body is `{}`"),
    responses(ConfigChangeResponses),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn enable(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams(path): PathParams<ConfigPath>,
    if_match: IfMatch,
    OptionalJsonBody(body): OptionalJsonBody<Reason>,
) -> Result<Response, ApiError> {
    quick(&s, &p, &path, QuickOp::Enable, body.reason, if_match).await
}

/// The kill switch: the off variant is served, whatever the rules say.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{key}/environments/{env}/disable",
    operation_id = "disableFlag",
    tag = "flags",
    params(ConfigPath, IfMatch),
    request_body(content = Option<Reason>, description = "Optional; an empty body is `{}`"),
    responses(ConfigChangeResponses),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn disable(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams(path): PathParams<ConfigPath>,
    if_match: IfMatch,
    OptionalJsonBody(body): OptionalJsonBody<Reason>,
) -> Result<Response, ApiError> {
    quick(&s, &p, &path, QuickOp::Disable, body.reason, if_match).await
}

/// Sets the fallthrough to a weighted rollout: a percentage of the on variant, or
/// explicit weights.
///
/// Without `bucketBy` it buckets as the rollout it replaces, so that a raised percentage
/// keeps everyone who had the on variant; `"bucketBy": "companyId"` restores the default.
#[utoipa::path(
    put,
    path = "/api/v1/flags/{key}/environments/{env}/rollout",
    operation_id = "setRollout",
    tag = "flags",
    params(ConfigPath, IfMatch),
    request_body(content = RolloutRequest),
    responses(ConfigChangeResponses),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn rollout(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams(path): PathParams<ConfigPath>,
    if_match: IfMatch,
    JsonBody(body): JsonBody<RolloutRequest>,
) -> Result<Response, ApiError> {
    let reason = body.reason.clone();
    quick(&s, &p, &path, QuickOp::Rollout(body), reason, if_match).await
}

/// The four company-list operations differ only in their route, name and operation:
/// one handler, with its OpenAPI entry, per `name: method "path" "operationId" => op`.
macro_rules! company_list_handlers {
    ($($(#[$doc:meta])* $name:ident: $method:ident $path:literal $id:literal => $op:expr;)*) => {$(
        $(#[$doc])*
        #[utoipa::path(
            $method,
            path = $path,
            operation_id = $id,
            tag = "flags",
            params(ConfigPath, IfMatch),
            request_body(content = Companies),
            responses(ConfigChangeResponses),
            security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
        )]
        async fn $name(
            State(s): State<Arc<Service>>,
            Writer(p): Writer,
            _: NoQuery,
            PathParams(path): PathParams<ConfigPath>,
            if_match: IfMatch,
            JsonBody(body): JsonBody<Companies>,
        ) -> Result<Response, ApiError> {
            let ids = body.ids()?;
            quick(&s, &p, &path, $op(ids), body.reason, if_match).await
        }
    )*};
}

company_list_handlers! {
    /// Adds companies to the allow list (they get the on variant).
    allow: post "/api/v1/flags/{key}/environments/{env}/allow" "allowCompanies" => QuickOp::Allow;
    /// Removes companies from the allow list.
    disallow: delete "/api/v1/flags/{key}/environments/{env}/allow" "removeAllowedCompanies" => QuickOp::Disallow;
    /// Adds companies to the deny list (they get the off variant, whatever else says).
    deny: post "/api/v1/flags/{key}/environments/{env}/deny" "denyCompanies" => QuickOp::Deny;
    /// Removes companies from the deny list.
    undeny: delete "/api/v1/flags/{key}/environments/{env}/deny" "removeDeniedCompanies" => QuickOp::Undeny;
}

/// Copies a configuration from one environment to another; the target keeps its state
/// unless `includeState`. `If-Match` takes the target's version: the copy replaces its
/// rules and lists whole, so a change made there since it was read gets 412.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{key}/promote",
    operation_id = "promoteFlag",
    tag = "flags",
    params(("key" = String, Path, description = "Flag key"), IfMatch),
    request_body(content = Promotion),
    responses(
        ConfigChangeResponses,
        (status = 409, description = "The source has nothing set, and copying it would empty the target (`NOTHING_TO_PROMOTE`)", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn promote(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams(key): PathParams<String>,
    IfMatch(if_match): IfMatch,
    JsonBody(body): JsonBody<Promotion>,
) -> Result<Response, ApiError> {
    let envs = (body.from.as_str(), body.to.as_str());
    Ok(config_response(s.promote(&p, &key, envs, body.include_state, body.reason, if_match).await?))
}
