//! Path and query parameters. axum's own extractors answer a parameter that does not decode
//! with a plain-text 400; these give the API's JSON error instead.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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
