//! Console sessions: `/ui/session` trades a `read` or `admin` token for a cookie, so the
//! browser never keeps the token. Sessions live in this process's memory only (a restart
//! signs everyone out). A write authenticated by the cookie must also carry the session's
//! CSRF token in `X-CSRF-Token`, which a page on another origin cannot read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::json::RawBody;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::service::Service;
use crate::store::Role;

/// The cookie's name.
pub const COOKIE: &str = "flagd_session";
/// The header a cookie-authenticated write must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts: a working day.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The most sessions one token keeps: signing in again past it ends the oldest, so that a
/// script signing in over and over cannot fill the server's memory with sessions.
pub const SESSIONS_PER_TOKEN: usize = 20;

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    principal: Principal,
    csrf: String,
    expires: Instant,
}

impl Session {
    fn of_token(&self, principal: &Principal) -> bool {
        self.principal.token_id() == principal.token_id()
    }
}

/// Live sessions by their id (the cookie's value).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for `principal`, returning its id and CSRF token.
    fn open(&self, principal: Principal) -> (String, String) {
        let id = crate::auth::generate_token();
        let csrf = crate::auth::generate_token();
        let now = Instant::now();
        let session = Session { principal, csrf: csrf.clone(), expires: now + LIFETIME };
        let mut by_id = self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Expired sessions are dropped here, so the map never outgrows the people signing in.
        by_id.retain(|_, s| s.expires > now);
        let mut own: Vec<(Instant, String)> = by_id
            .iter()
            .filter(|(_, s)| s.of_token(&session.principal))
            .map(|(id, s)| (s.expires, id.clone()))
            .collect();
        if own.len() >= SESSIONS_PER_TOKEN {
            own.sort_unstable();
            for (_, oldest) in &own[..=own.len() - SESSIONS_PER_TOKEN] {
                by_id.remove(oldest);
            }
        }
        by_id.insert(id.clone(), session);
        (id, csrf)
    }

    fn close(&self, id: &str) {
        self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    fn live(&self, id: &str) -> Option<Session> {
        let by_id = self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        by_id.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// The principal of the session whose cookie `parts` carries, or `None` without one.
    /// Writes (any method but GET and HEAD) also need the session's CSRF token.
    pub(crate) fn authenticate(&self, parts: &Parts, service: &Service) -> Option<Result<Principal, ApiError>> {
        let id = cookie(&parts.headers)?;
        let Some(session) = self.live(id) else {
            return Some(Err(ApiError::Unauthorized(
                "your console session has expired or was signed out; sign in again at /ui".into(),
            )));
        };
        if !session.principal.is_live(service) {
            self.close(id);
            return Some(Err(ApiError::Unauthorized(
                "the token this session was opened with has been revoked; sign in again with a live token".into(),
            )));
        }
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts.headers.get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
            if !same_secret(sent, session.csrf.as_bytes()) {
                return Some(Err(ApiError::Forbidden(
                    "a write from a console session needs the `X-CSRF-Token` header from GET /ui/session".into(),
                )));
            }
        }
        Some(Ok(session.principal))
    }
}

/// Compares in time independent of where the values differ, so the token cannot be
/// guessed byte by byte from response times.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session id in the `Cookie` header(s), if any.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == COOKIE).then_some(value))
}

/// The session routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/ui/session", get(current).post(sign_in).delete(sign_out))
}

/// The sign-in body, as JSON or as a form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// What the console needs to know about who is signed in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView<'a> {
    signed_in: bool,
    role: &'a str,
    name: &'a str,
    csrf: &'a str,
}

fn view(principal: &Principal, csrf: &str) -> Response {
    axum::Json(SessionView { signed_in: true, role: principal.role().as_str(), name: principal.name(), csrf })
        .into_response()
}

/// Sets (or, with `max_age` 0, clears) the session cookie. Behind a proxy that ends TLS
/// (`X-Forwarded-Proto: https`) it is also `Secure`, so that the browser never sends it
/// over plain HTTP, to a redirecting listener say.
fn set_cookie(mut response: Response, request: &HeaderMap, value: &str, max_age: u64) -> Response {
    let https = request
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let secure = if https { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    no_store(response)
}

/// Session answers carry the CSRF token: no cache may keep them.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Refuses a sign-in sent by a page of another site (login CSRF): SameSite keeps the
/// cookie from being sent cross-site, not from being set by a cross-site form post, which
/// would sign the victim's browser in as the attacker. Browsers say where a request comes
/// from in `Sec-Fetch-Site`, and older ones in `Origin`; tools such as curl send neither.
fn refuse_cross_site(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let cross_site = match (text(header::HeaderName::from_static("sec-fetch-site")), text(header::ORIGIN)) {
        (Some(site), _) => !matches!(site, "same-origin" | "none"),
        (None, Some(origin)) => {
            let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            text(header::HOST).is_none_or(|host| !authority.eq_ignore_ascii_case(host))
        }
        (None, None) => false,
    };
    if cross_site {
        return Err(ApiError::Forbidden("sign in from the console's own page: a page of another site cannot".into()));
    }
    Ok(())
}

/// The sign-in body: a form (`token=…`) when sent as one, otherwise JSON. A body that opens
/// a JSON object is JSON whatever its `Content-Type`, as in the admin API: `curl -d '{…}'`
/// labels it a form. A browser's form never opens with `{` (it percent-encodes it), and
/// where the body came from is judged by [`refuse_cross_site`] before it is read, whatever
/// its format.
fn parse_sign_in(headers: &HeaderMap, body: &[u8]) -> Result<SignIn, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let is_json_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_form && !is_json_object {
        return serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("send the form field `token`: {e}")));
    }
    super::json::parse(body)
}

/// Signs in with a `read` or `admin` token.
async fn sign_in(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    refuse_cross_site(&headers)?;
    let SignIn { token } = parse_sign_in(&headers, &body)?;
    let principal = Principal::from_value(&s, token.trim())?;
    if principal.role() == Role::Evaluate {
        return Err(ApiError::Forbidden(
            "`evaluate` tokens are for applications; sign in to the console with a `read` or `admin` token".into(),
        ));
    }
    let (id, csrf) = s.sessions().open(principal.clone());
    Ok(set_cookie(view(&principal, &csrf), &headers, &id, LIFETIME.as_secs()))
}

/// Who is signed in, with the CSRF token for writes; `{"signedIn": false}` without a
/// live session (a 200, so that opening the console signed out logs no failed request).
async fn current(State(s): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let session = cookie(&headers).and_then(|id| s.sessions().live(id)).filter(|session| session.principal.is_live(&s));
    no_store(match session {
        Some(session) => view(&session.principal, &session.csrf),
        None => axum::Json(serde_json::json!({ "signedIn": false })).into_response(),
    })
}

/// Signs out: the session ends on the server and the cookie is cleared.
async fn sign_out(State(s): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers) {
        s.sessions().close(id);
    }
    set_cookie(StatusCode::NO_CONTENT.into_response(), &headers, "", 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; flagd_session=abc; b=2"));
        assert_eq!(cookie(&headers), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("xflagd_session=abc"));
        assert_eq!(cookie(&headers), None);
    }

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
