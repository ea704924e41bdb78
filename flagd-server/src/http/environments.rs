//! `/api/v1/environments…`: environments and their segments.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flagd_core::Segment;
use serde::Deserialize;

use super::json::{JsonBody, UnreadBody, check_body, without_bom};
use super::params::{IfMatch, NoIfMatch, NoQuery, PathParams, QueryParams};
use super::with_etag;
use crate::auth::{Access, Principal, Writer};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{DatabaseErrors, EnvironmentList, ImportFile, PathErrors, ReadErrors, SegmentList, SegmentUpdate};
use crate::service::{ExportFormat, ImportMode, ImportReport, SegmentView, Service};
use crate::store::Environment;

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

/// The environment as a file: a flagd flag definition file, or this server's own format.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/export",
    operation_id = "exportEnvironment",
    tag = "environments",
    params(("env" = String, Path, description = "Environment name"), ExportParams),
    responses(
        (status = 200, description = "With `format=flagd` (the default) a flagd document, `flags` keyed by flag, as \
        flagd reads it; with `format=native` this server's own format, which imports back exactly", body = ImportFile),
        (status = 404, description = "No such environment (`ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 422, description = "With `format=flagd`: a rule or a segment has a condition flagd cannot express \
        (`matches`, or `before`/`after` on an attribute other than `$now`), or a flag with an off variant has a \
        fallthrough that is targeting (flagd would serve `defaultVariant` where it yields null), so the environment \
        cannot be written as a flagd document (`INVALID_DEFINITION`, with `problems` naming each); `format=native` \
        always works", body = ErrorBody),
        ReadErrors,
        PathErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn export(
    State(s): State<Arc<Service>>,
    p: Principal,
    PathParams(env): PathParams<String>,
    QueryParams(params): QueryParams<ExportParams>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(s.export(&env, params.format).await?).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExportParams {
    /// `flagd` (default), for flagd and its tools, or `native`, this server's own format,
    /// which keeps company lists as lists, imports back exactly and always works: flagd
    /// cannot express a `matches` condition nor `before`/`after` on an attribute (on `$now`
    /// it can), nor a fallthrough that is targeting on a flag with an off variant, so while
    /// the environment has one, `flagd` is refused with 422.
    #[serde(default)]
    #[param(inline)]
    format: ExportFormat,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ImportParams {
    /// `merge` (default) leaves what the file does not mention, and writes the file's
    /// flag-set metadata keys over the stored ones; `replace` makes the environment what the
    /// file says: every other flag gets a new flag's configuration in it (disabled, no allow
    /// or deny list, no rules, no rollout), other segments are deleted, and the flag-set
    /// metadata becomes the file's (none if it has none).
    #[serde(default)]
    mode: ImportMode,
    /// Report the changes without writing them.
    #[serde(default)]
    dry_run: bool,
    /// Why, for the audit log.
    reason: Option<String>,
}

/// Imports a flagd file or a flagd-server file, merging into the environment or replacing
/// it; a dry run returns the diff and writes nothing. A flagd file's `defaultVariant` is the
/// environment's fallthrough and a new flag's off variant (a boolean flag's is its `false`
/// variant); what the file leaves out
/// (description, owner, tags, metadata, variants, and the `onVariant` the flagd format
/// cannot carry) is kept as stored. A flag's definition is every environment's: a file that
/// changes what the others serve from it (a variant's value, the off or on variant) is
/// refused with 409 `SHARED_DEFINITION`. The file's top-level `metadata` is the
/// environment's flag-set metadata, reported with each of its flags (a flag's own keys win).
#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/import",
    operation_id = "importEnvironment",
    tag = "environments",
    params(("env" = String, Path, description = "Environment name"), ImportParams),
    request_body(content = ImportFile, description = "The file, in either format"),
    responses(
        (status = 200, description = "What the import did, or would do in a dry run", body = ImportReport),
        (status = 400, description = "Not a flagd file nor a flagd-server file, or an object in it names a key twice (`INVALID_BODY`), bad query (`INVALID_QUERY`, `INVALID_REASON`) or path (`INVALID_PATH`) parameters, or an `If-Match` header (`INVALID_IF_MATCH`: an import has no version to match)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        (status = 404, description = "No such environment (`ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "The file changes what other environments serve from a flag's shared definition: a variant's value, its off or on variant (`SHARED_DEFINITION`); change it with `PATCH /api/v1/flags/{key}`", body = ErrorBody),
        (status = 413, description = "File larger than the server takes: 1 MiB unless started with `--max-import-mib`", body = ErrorBody),
        (status = 422, description = "A flagd-server file lists a flag or segment key twice, or the change would make the environment invalid (`INVALID_DEFINITION`, with `problems`), or a stored document larger than 1 MiB (`DOCUMENT_TOO_LARGE`)", body = ErrorBody),
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn import(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoIfMatch,
    PathParams(env): PathParams<String>,
    QueryParams(params): QueryParams<ImportParams>,
    body: UnreadBody,
) -> Result<Response, ApiError> {
    let body = body.read_up_to(s.import_limit(), IMPORT_TOO_LARGE).await?;
    let body = without_bom(&body);
    check_body(body)?;
    let report = s.import(&p, &env, body, params.mode, params.dry_run, params.reason).await?;
    Ok(axum::Json(report).into_response())
}

/// What to do about an import file over the limit.
const IMPORT_TOO_LARGE: &str = "; the server takes a larger import file when started with --max-import-mib, and \
    an export in the server's own format (format=native) takes less room than flagd's";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewEnvironment {
    /// Same pattern as flag keys.
    #[schema(pattern = "^[a-z0-9][a-z0-9_.-]{0,127}$")]
    name: String,
}

/// Every environment.
#[utoipa::path(
    get,
    path = "/api/v1/environments",
    operation_id = "listEnvironments",
    tag = "environments",
    responses(
        (status = 200, description = "Every environment", body = EnvironmentList),
        ReadErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn list(State(s): State<Arc<Service>>, p: Principal) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(serde_json::json!({ "environments": s.environments().await? })).into_response())
}

/// Creates an environment; every flag starts disabled in it.
#[utoipa::path(
    post,
    path = "/api/v1/environments",
    operation_id = "createEnvironment",
    tag = "environments",
    request_body(content = NewEnvironment),
    responses(
        (status = 201, description = "Created", body = Environment),
        (status = 400, description = "Malformed body (`INVALID_BODY`, `TOO_DEEP`), an invalid name (`INVALID_NAME`), an `If-Match` header (`INVALID_IF_MATCH`: a creation has no version to match), or a query parameter (`INVALID_QUERY`: this write takes none)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        (status = 409, description = "It exists already (`ALREADY_EXISTS`)", body = ErrorBody),
        (status = 413, description = "Body larger than 1 MiB", body = ErrorBody),
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn create(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    _: NoIfMatch,
    JsonBody(body): JsonBody<NewEnvironment>,
) -> Result<Response, ApiError> {
    Ok((StatusCode::CREATED, axum::Json(s.create_environment(&p, &body.name).await?)).into_response())
}

/// Every segment of an environment.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/segments",
    operation_id = "listSegments",
    tag = "segments",
    params(("env" = String, Path, description = "Environment name")),
    responses(
        (status = 200, description = "The segments", body = SegmentList),
        (status = 404, description = "No such environment (`ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        ReadErrors,
        PathErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn list_segments(
    State(s): State<Arc<Service>>,
    p: Principal,
    PathParams(env): PathParams<String>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    Ok(axum::Json(serde_json::json!({ "segments": s.segments(&env).await? })).into_response())
}

/// Creates a segment.
#[utoipa::path(
    post,
    path = "/api/v1/environments/{env}/segments",
    operation_id = "createSegment",
    tag = "segments",
    params(("env" = String, Path, description = "Environment name")),
    request_body(content = Segment),
    responses(
        (status = 201, description = "Created", body = SegmentView, headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 400, description = "Malformed body, header, path or query (`INVALID_BODY`, `TOO_DEEP`, `INVALID_IF_MATCH`: a creation has no version to match, `INVALID_PATH`, `INVALID_QUERY`: this write takes no query parameters, ...)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        (status = 404, description = "No such environment (`ENVIRONMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "A segment with this key exists (`ALREADY_EXISTS`)", body = ErrorBody),
        (status = 413, description = "Body larger than 1 MiB", body = ErrorBody),
        (status = 422, description = "The change would make the environment invalid (`INVALID_DEFINITION`, with `problems`) or a stored document larger than 1 MiB (`DOCUMENT_TOO_LARGE`)", body = ErrorBody),
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn create_segment(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    _: NoIfMatch,
    PathParams(env): PathParams<String>,
    JsonBody(segment): JsonBody<Segment>,
) -> Result<Response, ApiError> {
    let view = s.put_segment(&p, &env, segment, true, None).await?;
    Ok((StatusCode::CREATED, with_etag(view.version, axum::Json(view))).into_response())
}

/// One segment.
#[utoipa::path(
    get,
    path = "/api/v1/environments/{env}/segments/{key}",
    operation_id = "getSegment",
    tag = "segments",
    params(("env" = String, Path, description = "Environment name"), ("key" = String, Path, description = "Segment key")),
    responses(
        (status = 200, description = "The segment", body = SegmentView, headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 404, description = "No such environment or segment (`ENVIRONMENT_NOT_FOUND`, `SEGMENT_NOT_FOUND`)", body = ErrorBody),
        ReadErrors,
        PathErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn read_segment(
    State(s): State<Arc<Service>>,
    p: Principal,
    PathParams((env, key)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    p.require(Access::Read)?;
    let view = s.segment(&env, &key).await?;
    Ok(with_etag(view.version, axum::Json(view)))
}

/// Replaces a segment; every flag using it changes with it. What `GET` or a write returned
/// may be sent back as is, and `key` may be left out. Like a configuration `PUT`, it needs
/// the `ETag` read: a whole replacement without it could undo a change made meanwhile.
#[utoipa::path(
    put,
    path = "/api/v1/environments/{env}/segments/{key}",
    operation_id = "replaceSegment",
    tag = "segments",
    params(("env" = String, Path, description = "Environment name"), ("key" = String, Path, description = "Segment key"), ("If-Match" = String, Header, description = "The `ETag` read (required); a stale one is refused with 412")),
    request_body(content = SegmentUpdate),
    responses(
        (status = 200, description = "The segment after the change", body = SegmentView, headers(("ETag" = String, description = "The version, for `If-Match`"))),
        (status = 400, description = "Malformed body, header, path or query (`INVALID_BODY`, `TOO_DEEP`, `KEY_MISMATCH`, `INVALID_IF_MATCH`, `INVALID_PATH`, `INVALID_QUERY`: this write takes no query parameters)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        (status = 404, description = "No such environment or segment (`ENVIRONMENT_NOT_FOUND`, `SEGMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 412, description = "`If-Match` is stale: `current` holds the state to start from, `ETag` its version", body = ErrorBody, headers(("ETag" = String, description = "The current version"))),
        (status = 413, description = "Body larger than 1 MiB", body = ErrorBody),
        (status = 428, description = "No `If-Match` header", body = ErrorBody),
        (status = 422, description = "The change would make the environment invalid (`INVALID_DEFINITION`, with `problems`) or a stored document larger than 1 MiB (`DOCUMENT_TOO_LARGE`)", body = ErrorBody),
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn replace_segment(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams((env, key)): PathParams<(String, String)>,
    IfMatch(if_match): IfMatch,
    JsonBody(mut body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let version = if_match.ok_or(ApiError::PreconditionRequired)?;
    if let Some(fields) = body.as_object_mut() {
        for read_only in SegmentView::READ_ONLY {
            fields.remove(read_only);
        }
        fields.entry("key").or_insert_with(|| serde_json::Value::String(key.clone()));
    }
    let segment: Segment = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("invalid segment: {e}")))?;
    if segment.key != key {
        return Err(ApiError::bad_request("KEY_MISMATCH", "the body's `key` must match the path"));
    }
    let view = s.put_segment(&p, &env, segment, false, Some(version)).await?;
    Ok(with_etag(view.version, axum::Json(view)))
}

/// Deletes a segment that no flag uses.
///
/// With `If-Match`, only if the segment is still at that version.
#[utoipa::path(
    delete,
    path = "/api/v1/environments/{env}/segments/{key}",
    operation_id = "deleteSegment",
    tag = "segments",
    params(("env" = String, Path, description = "Environment name"), ("key" = String, Path, description = "Segment key"), IfMatch),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed header, path or query (`INVALID_IF_MATCH`, `INVALID_PATH`, `INVALID_QUERY`: this write takes no query parameters)", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Needs an `admin` token", body = ErrorBody),
        (status = 404, description = "No such environment or segment (`ENVIRONMENT_NOT_FOUND`, `SEGMENT_NOT_FOUND`)", body = ErrorBody),
        (status = 409, description = "Flags' rules still use the segment (`SEGMENT_IN_USE`, naming them)", body = ErrorBody),
        (status = 412, description = "`If-Match` is stale: nothing was deleted; `current` holds the segment, `ETag` its version", body = ErrorBody, headers(("ETag" = String, description = "The current version"))),
        DatabaseErrors,
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn delete_segment(
    State(s): State<Arc<Service>>,
    Writer(p): Writer,
    _: NoQuery,
    PathParams((env, key)): PathParams<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<StatusCode, ApiError> {
    s.delete_segment(&p, &env, &key, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}
