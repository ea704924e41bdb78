//! The API's error type: every failure a handler can report, mapped in one place to a
//! status and `{"error": {"code", "message"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagd_core::Problem;
use serde::Serialize;
use serde_json::Value;

use crate::store::StoreError;

/// Everything the admin API can answer with besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (body, query, path); `code` names what.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The definitions in the request are invalid; every problem is listed.
    #[error("{} problem{} in the definitions", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    Invalid { problems: Vec<Problem> },
    /// The change would make a stored document larger than the store takes.
    #[error("{0}")]
    TooLarge(String),
    /// No token, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// The token's role or environment does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing named does not exist.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The change conflicts with what is stored: it exists already (`ALREADY_EXISTS`), or
    /// it would lock every administrator out (`LAST_ADMIN_TOKEN`).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// `If-Match` is stale; `current` is the state the caller should start from.
    #[error("the resource changed since you read it (current ETag {etag})")]
    PreconditionFailed { etag: String, current: Value },
    /// A whole-config write without `If-Match`.
    #[error("this write needs an If-Match header with the ETag you read")]
    PreconditionRequired,
    /// The endpoint exists but not with this method.
    #[error("this endpoint does not accept that method")]
    MethodNotAllowed,
    /// The body is larger than the server accepts; `hint` (empty, or starting with "; ")
    /// says what to do where there is more to say than "send less".
    #[error("request body larger than {limit} bytes{hint}")]
    PayloadTooLarge { limit: usize, hint: &'static str },
    /// The database is unreachable: writes cannot be made now.
    #[error("the database is unavailable; evaluation continues from memory, retry writes later")]
    Unavailable(#[source] StoreError),
    /// A change was not applied within the time the caller was willing to wait;
    /// `laggards` names each replica behind and how far it got.
    #[error("change {seq} is not applied yet by {}; wait again, or see GET /api/v1/cluster", laggards.join(", "))]
    WaitTimeout { seq: i64, laggards: Vec<String> },
    /// Anything else: the detail goes to the log, not to the caller.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// What an operator reads when this error ends the server's start (or a retry of it):
    /// the detail an API caller is not shown, since there is no caller to keep it from.
    pub fn for_operator(&self) -> String {
        match self {
            Self::Internal(detail) => detail.clone(),
            Self::Unavailable(source) => format!("the database is unavailable: {source}"),
            other => other.to_string(),
        }
    }

    /// A 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    /// A 409 for something that exists already.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::Conflict { code: "ALREADY_EXISTS", message: message.into() }
    }

    /// A 404 for a flag.
    pub fn flag_not_found(key: &str) -> Self {
        Self::NotFound { code: "FLAG_NOT_FOUND", message: format!("no flag `{key}`") }
    }

    /// A 404 for an environment.
    pub fn environment_not_found(name: &str) -> Self {
        Self::NotFound { code: "ENVIRONMENT_NOT_FOUND", message: format!("no environment `{name}`") }
    }

    /// A 404 for a change no write has reached yet; `latest` is the last one committed.
    pub fn change_not_found(seq: i64, latest: i64) -> Self {
        Self::NotFound {
            code: "CHANGE_NOT_FOUND",
            message: format!("no change {seq} has been written yet; the latest is {latest}"),
        }
    }

    /// A 409 for a segment that flags still use, naming them.
    pub fn segment_in_use(env: &str, key: &str, flags: &[String]) -> Self {
        let names: Vec<String> = flags.iter().map(|f| format!("`{f}`")).collect();
        Self::Conflict {
            code: "SEGMENT_IN_USE",
            message: format!(
                "segment `{key}` is used by the rules of {} in `{env}`: take it out of them first",
                names.join(", ")
            ),
        }
    }

    /// A 409 for an import into one environment that would change what every environment
    /// serves from a flag's shared definition.
    pub fn shared_definition(key: &str, change: &str) -> Self {
        Self::Conflict {
            code: "SHARED_DEFINITION",
            message: format!(
                "flag `{key}`: the file changes {change}, but a flag's definition is shared by every \
                 environment and an import into one must not change what the others serve; change it for \
                 all with `PATCH /api/v1/flags/{key}` first"
            ),
        }
    }

    /// A 409 for a promotion whose source has nothing set, which would empty the target.
    pub fn nothing_to_promote(key: &str, from: &str, to: &str) -> Self {
        Self::Conflict {
            code: "NOTHING_TO_PROMOTE",
            message: format!(
                "flag `{key}` has nothing set in `{from}` (disabled, no lists, rules or fallthrough): promoting it \
                 would clear its configuration in `{to}`"
            ),
        }
    }

    /// A 404 for a segment.
    pub fn segment_not_found(env: &str, key: &str) -> Self {
        Self::NotFound { code: "SEGMENT_NOT_FOUND", message: format!("no segment `{key}` in environment `{env}`") }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_DEFINITION"),
            Self::TooLarge(_) => (StatusCode::UNPROCESSABLE_ENTITY, "DOCUMENT_TOO_LARGE"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            Self::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::PreconditionFailed { .. } => (StatusCode::PRECONDITION_FAILED, "PRECONDITION_FAILED"),
            Self::PreconditionRequired => (StatusCode::PRECONDITION_REQUIRED, "PRECONDITION_REQUIRED"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE"),
            Self::WaitTimeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "WAIT_TIMEOUT"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(ref inner) if is_connection_error(inner) => Self::Unavailable(e),
            StoreError::TooLarge { .. } => Self::TooLarge(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Errors that mean "the database is not there" rather than "the query is wrong": no
/// connection, or the server ending ours (SQLSTATE class 08, PostgreSQL's shutdown codes
/// 57P01–57P03, MySQL's "server gone away" family reported as HY000 with these numbers).
fn is_connection_error(e: &sqlx::Error) -> bool {
    const MYSQL_GONE: [&str; 3] = ["1053", "2006", "2013"];
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let message = db.message();
            code.starts_with("08")
                || code.starts_with("57P0")
                || MYSQL_GONE.iter().any(|n| message.contains(n) || code == *n)
                || message.contains("server shutdown")
        }
        _ => false,
    }
}

/// The error body as the API documents it. [`ApiError`] writes the same shape through
/// borrowed private types, so this one exists only for the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `FLAG_NOT_FOUND`, `INVALID_BODY`, `FORBIDDEN`.
    pub code: String,
    /// What went wrong, in words a person can act on.
    pub message: String,
    /// With 422 `INVALID_DEFINITION`: every problem found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<Problem>>,
    /// With 412 `PRECONDITION_FAILED`: the current state to start again from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<&'a [Problem]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<&'a Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.to_string();
        match &self {
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            _ => {}
        }
        let (problems, current) = match &self {
            Self::Invalid { problems } => (Some(problems.as_slice()), None),
            Self::PreconditionFailed { current, .. } => (None, Some(current)),
            _ => (None, None),
        };
        let body = Body { error: Detail { code, message, problems, current } };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::PreconditionFailed { etag, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(etag) {
                response.headers_mut().insert(header::ETAG, v);
            }
        }
        response
    }
}
