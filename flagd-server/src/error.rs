//! The API's error type: every failure a handler can report, mapped in one place to a
//! status and `{"error": {"code", "message"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flagd_core::Problem;
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgSeverity;

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
    /// A lock this request needs was held elsewhere (a schema change, `LOCK TABLES`, a
    /// long transaction), or on SQLite this server's earlier writes held the write queue,
    /// for longer than a request waits: retry later.
    #[error("the database is busy: a lock or the writes ahead of this request held it up for too long; retry later")]
    Busy(#[source] StoreError),
    /// A change was not applied within the time the caller was willing to wait;
    /// `laggards` names each replica behind and how far it got, `hint` (empty, or starting
    /// with "; ") what the silence of some means.
    #[error("change {seq} is not applied yet by {}; wait again, or see GET /api/v1/cluster{hint}", laggards.join(", "))]
    WaitTimeout { seq: i64, laggards: Vec<String>, hint: String },
    /// The server is stopping: a long wait ends now rather than hold the shutdown up.
    #[error("this server is stopping; ask again, another replica answers")]
    ShuttingDown,
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
            Self::Busy(source) => format!("the database is busy: {source}"),
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

    /// A 404 for a replica the cluster view does not hold.
    pub fn replica_not_found(id: &str) -> Self {
        Self::NotFound {
            code: "REPLICA_NOT_FOUND",
            message: format!("no replica `{id}` in the cluster view (GET /api/v1/cluster lists them)"),
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
            Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "DATABASE_BUSY"),
            Self::WaitTimeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "WAIT_TIMEOUT"),
            Self::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(ref inner) => match trouble(inner) {
                Some(Trouble::Unavailable) => Self::Unavailable(e),
                Some(Trouble::Busy) => Self::Busy(e),
                None => Self::Internal(e.to_string()),
            },
            StoreError::TooLarge { .. } => Self::TooLarge(e.to_string()),
            StoreError::WriteQueue(_) => Self::Busy(e),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// What a database error tells a caller beyond "the query failed": retry later, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// The database cannot be reached now: no connection could be made or it was lost, or
    /// the server would not take one more session.
    Unavailable,
    /// It gave up waiting for a lock that another session holds.
    Busy,
}

fn trouble(e: &sqlx::Error) -> Option<Trouble> {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Some(Trouble::Unavailable),
        sqlx::Error::Database(db) => {
            let mysql_number = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number());
            let ends_session = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic));
            let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            if means_unavailable(code, mysql_number, ends_session) {
                Some(Trouble::Unavailable)
            } else if means_busy(code, mysql_number, sqlite) {
                Some(Trouble::Busy)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// MySQL / MariaDB error numbers that mean the server cannot serve this client now. Read
/// by number, not SQLSTATE: the handshake's error packets carry none, and 1203 comes with
/// 42000, the class of access and syntax errors.
const MYSQL_UNAVAILABLE: [u16; 8] = [
    1040, // too many connections
    1053, // server shutdown in progress
    1203, // the user has too many connections
    1927, // MariaDB: the connection was killed
    // The client library's own numbers, which a proxy in front of the server (MaxScale,
    // ProxySQL) sends when it cannot reach the server behind it.
    2002, 2003, 2006, 2013,
];

const SQLITE_BUSY: i32 = 5;
const MYSQL_LOCK_WAIT_TIMEOUT: u16 = 1205;
const POSTGRES_LOCK_NOT_AVAILABLE: &str = "55P03";

/// Whether the database gave up waiting for a lock, on what its error reports: the code
/// (SQLSTATE; SQLite's extended result code), MySQL's error number, and whether SQLite
/// sent it. PostgreSQL's `lock_not_available`, MySQL's lock wait timeout, SQLite's busy
/// (its primary code, under any extended one).
fn means_busy(code: &str, mysql_number: Option<u16>, sqlite: bool) -> bool {
    if sqlite {
        return code.parse::<i32>().is_ok_and(|c| c & 0xff == SQLITE_BUSY);
    }
    mysql_number == Some(MYSQL_LOCK_WAIT_TIMEOUT) || code == POSTGRES_LOCK_NOT_AVAILABLE
}

/// The [`Trouble::Unavailable`] behind [`trouble`], on what a database error reports:
/// its SQLSTATE (empty if none), MySQL's error number, and whether PostgreSQL ended the
/// session with it (severity `FATAL`).
fn means_unavailable(sqlstate: &str, mysql_number: Option<u16>, ends_session: bool) -> bool {
    // 08: connection exceptions. 53300: too many connections. 57P0x: the server shutting
    // down, crashed or starting up, the database dropped, the session timed out.
    let postgres = sqlstate.starts_with("08") || sqlstate == "53300" || sqlstate.starts_with("57P0");
    // 55000 is a generic class ("object not in prerequisite state") that queries raise
    // too, e.g. `currval` before `nextval`. A database set to `ALLOW_CONNECTIONS false`
    // raises it as FATAL while setting up the session, which no query error is; the
    // severity is read rather than the message, which the server may translate.
    let refused = sqlstate == "55000" && ends_session;
    postgres || refused || mysql_number.is_some_and(|n| MYSQL_UNAVAILABLE.contains(&n))
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
            Self::Busy(e) => tracing::warn!(error = %e, "database busy: a lock wait ran out"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_told_from_query_errors() {
        let unavailable = [
            ("08006", None, true),        // PostgreSQL: connection failure
            ("08004", Some(1040), false), // MySQL: too many connections, with a SQLSTATE
            ("", Some(1040), false),      // the same in the handshake, without one
            ("53300", None, true),        // PostgreSQL: too many connections
            ("57P01", None, true),        // PostgreSQL: terminated by an administrator
            ("57P03", None, true),        // PostgreSQL: cannot connect now (starting up)
            ("55000", None, true),        // PostgreSQL: database not accepting connections
            ("08S01", Some(1053), false), // MySQL: server shutdown
            ("42000", Some(1203), false), // MySQL: the user has too many connections
            ("70100", Some(1927), false), // MariaDB: connection killed
            ("HY000", Some(2002), false), // through a proxy: cannot connect
            ("HY000", Some(2003), false),
            ("HY000", Some(2006), false), // through a proxy: server gone away
            ("HY000", Some(2013), false), // through a proxy: lost connection
        ];
        for (sqlstate, number, fatal) in unavailable {
            assert!(means_unavailable(sqlstate, number, fatal), "{sqlstate} {number:?} means unavailable");
        }
        let query_errors = [
            ("55000", None, false),       // PostgreSQL: e.g. currval before nextval
            ("23505", None, false),       // PostgreSQL: unique violation
            ("42P01", None, false),       // PostgreSQL: no such table
            ("28P01", None, true),        // PostgreSQL: wrong password, a configuration error
            ("23000", Some(1062), false), // MySQL: duplicate entry
            ("42000", Some(1064), false), // MySQL: syntax error
            ("HY000", Some(1205), false), // MySQL: lock wait timeout
            ("2067", None, false),        // SQLite: unique constraint
            ("1040", None, false),        // SQLite: a code that is a MySQL number elsewhere
        ];
        for (sqlstate, number, fatal) in query_errors {
            assert!(!means_unavailable(sqlstate, number, fatal), "{sqlstate} {number:?} is a query error");
        }
    }

    #[test]
    fn lock_waits_that_ran_out_are_busy() {
        let cases = [
            ("55P03", None, false, true),        // PostgreSQL: lock_not_available
            ("HY000", Some(1205), false, true),  // MySQL: lock wait timeout
            ("5", None, true, true),             // SQLite: busy
            ("517", None, true, true),           // SQLite: busy, snapshot
            ("6", None, true, false),            // SQLite: locked (within one connection)
            ("40P01", None, false, false),       // PostgreSQL: deadlock
            ("40001", Some(1213), false, false), // MySQL: deadlock
            ("5", None, false, false),           // a "5" not from SQLite
        ];
        for (code, number, sqlite, busy) in cases {
            assert_eq!(means_busy(code, number, sqlite), busy, "{code} {number:?} sqlite: {sqlite}");
        }
    }

    #[test]
    fn lost_and_refused_connections_are_unavailable_and_other_errors_are_not() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let unavailable =
            [sqlx::Error::Io(io()), sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed, sqlx::Error::Tls(io().into())];
        for e in unavailable {
            let api = ApiError::from(StoreError::Database(e));
            assert_eq!(api.status_and_code(), (StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE"), "{api:?}");
        }
        let internal = [sqlx::Error::RowNotFound, sqlx::Error::ColumnNotFound("seq".to_owned())];
        for e in internal {
            let api = ApiError::from(StoreError::Database(e));
            assert_eq!(api.status_and_code(), (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"), "{api:?}");
        }
    }

    /// A lock held elsewhere past the database's wait is busy (503, retry), not an
    /// internal error: here SQLite's, with a second connection that waits not at all.
    #[tokio::test]
    async fn a_lock_wait_that_ran_out_is_busy() {
        use sqlx::{Connection, Executor, SqliteConnection};
        let dir = std::env::temp_dir().join(format!("flagd-busy-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}?mode=rwc", dir.join("busy.db").display());
        let mut holder = SqliteConnection::connect(&url).await.unwrap();
        holder.execute("CREATE TABLE t (x INTEGER)").await.unwrap();
        holder.execute("BEGIN IMMEDIATE").await.unwrap();
        let mut waiter = SqliteConnection::connect(&url).await.unwrap();
        waiter.execute("PRAGMA busy_timeout = 0").await.unwrap();
        let refused = waiter.execute("BEGIN IMMEDIATE").await.unwrap_err();
        let api = ApiError::from(StoreError::Database(refused));
        assert_eq!(api.status_and_code(), (StatusCode::SERVICE_UNAVAILABLE, "DATABASE_BUSY"), "{api:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
