//! Path, query and header parameters. axum's own extractors answer a parameter that does
//! not decode with a plain-text 400; these give the API's JSON error instead.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::service::parse_etag;

/// The NUL character percent-encoded, the only way a URL can carry it. It is refused in
/// paths and queries alike, as in bodies (`json::check_body` says why); `%2500` is the
/// text `%00`, which does not contain this.
const NUL: &str = "%00";

/// Path parameters of type `T`; a segment that does not decode (not UTF-8 once
/// percent-decoded, say) or holds NUL gets the API's JSON 400 with code `INVALID_PATH`.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().contains(NUL) {
            return Err(ApiError::bad_request(
                "INVALID_PATH",
                "a path parameter may not contain the NUL character (`%00`)",
            ));
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(e) => Err(ApiError::bad_request("INVALID_PATH", e.body_text())),
        }
    }
}

/// Query parameters of type `T`; a bad query string gets the API's JSON 400.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if query.contains(NUL) {
            return Err(ApiError::bad_request(
                "INVALID_QUERY",
                "a query parameter may not contain the NUL character (`%00`)",
            ));
        }
        let fields = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(fields).map(QueryParams).map_err(|e| {
            let message = match e.path().to_string() {
                field if field == "." => format!("invalid query string: {}", e.inner()),
                field => format!("invalid query parameter `{field}`: {}", e.inner()),
            };
            ApiError::bad_request("INVALID_QUERY", message)
        })
    }
}

/// For a write that reads no query parameters: a query string is refused with 400
/// `INVALID_QUERY`. Ignored, `?dryRun=true` on a delete would delete, and `?reason=…` on a
/// kill switch would leave the audit log without the reason.
#[derive(Debug)]
pub struct NoQuery;

/// What a caller who sent a query parameter to a write that has none was likely after.
const QUERY_HINTS: [(&str, &str); 2] = [
    ("reason", "; a reason goes in the JSON body, as {\"reason\": \"…\"}"),
    ("dryRun", "; only an import has a dry run"),
];

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let Some((name, _)) = form_urlencoded::parse(query.as_bytes()).find(|(name, _)| !name.is_empty()) else {
            return Ok(Self);
        };
        let hint = QUERY_HINTS.iter().find(|(known, _)| name.eq_ignore_ascii_case(known)).map_or("", |(_, hint)| hint);
        Err(ApiError::bad_request(
            "INVALID_QUERY",
            format!("this write takes no query parameters, and `{name}` would be ignored: nothing was changed{hint}"),
        ))
    }
}

/// An `If-Match` header: the version a write expects to replace or delete, if one was sent.
/// A value that is no ETag of this API is refused with 400 `INVALID_IF_MATCH` by every
/// write alike, rather than read as a version that never matches.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(names("If-Match"), parameter_in = Header)]
pub struct IfMatch(
    /// Optional: apply only if the resource is still at this version (its `ETag`), else 412
    #[param(value_type = Option<String>)]
    pub Option<i64>,
);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(sent) = parts.headers.get(axum::http::header::IF_MATCH) else { return Ok(Self(None)) };
        match sent.to_str().ok().and_then(parse_etag) {
            Some(version) => Ok(Self(Some(version))),
            None => Err(ApiError::bad_request(
                "INVALID_IF_MATCH",
                "If-Match must be an ETag this API returned, such as \"12\"",
            )),
        }
    }
}

/// For a write on what has no version to match (a creation, an import, a token's
/// revocation): any `If-Match` is refused with 400 `INVALID_IF_MATCH`. No value could
/// match, and the caller who sent one asked for a check that cannot be made; acting without
/// it would let them believe it was.
#[derive(Debug)]
pub struct NoIfMatch;

impl<S: Send + Sync> FromRequestParts<S> for NoIfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(axum::http::header::IF_MATCH) {
            return Err(ApiError::bad_request(
                "INVALID_IF_MATCH",
                "this has no version for If-Match to match: send the request without it",
            ));
        }
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use proptest::prelude::*;

    use super::*;
    use crate::service::ETAG_PATTERN;

    async fn read(value: &str) -> Result<Option<i64>, ApiError> {
        let request =
            Request::builder().header("if-match", value).body(()).map_err(|e| ApiError::Internal(e.to_string()))?;
        let (mut parts, ()) = request.into_parts();
        IfMatch::from_request_parts(&mut parts, &()).await.map(|IfMatch(v)| v)
    }

    fn etag_text() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec!["W/", "\"", "0", "7", "12", "-", "+", " ", "*", "a", ","]);
        prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn an_if_match_is_read_exactly_when_it_has_the_documented_shape(text in etag_text()) {
            let pattern = regex::Regex::new(ETAG_PATTERN).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let runtime = tokio::runtime::Builder::new_current_thread().build()?;
            let Ok(read) = runtime.block_on(read(&text)) else {
                prop_assert!(!pattern.is_match(text.trim()), "{:?} has the shape but was refused", text);
                return Ok(());
            };
            prop_assert!(pattern.is_match(text.trim()), "{:?} was read as {:?}", text, read);
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            prop_assert_eq!(read, digits.parse().ok());
        }
    }
}
