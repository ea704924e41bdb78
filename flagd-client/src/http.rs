//! The HTTP plumbing both modes share: one connection pool, the token on every request,
//! and server errors turned into [`ClientError`]s.

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::certificates::root_certificates;
use crate::error::ClientError;
use crate::options::ClientOptions;

/// A connection to one server with one token.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: String,
}

/// How long a pool's requests may take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pool {
    /// Evaluations: each request within `options.timeout`, since a caller waits on it.
    Requests,
    /// Snapshots: connecting and every read within `options.timeout`, the whole download
    /// as long as it keeps arriving. A large environment over a slow link takes longer
    /// than any one evaluation should, and nobody's getter waits on it.
    Downloads,
    /// Change streams: only connecting is bounded, since a stream stays open indefinitely.
    Streams,
}

impl Http {
    /// A pool for `options.url` and `options.token`, its time limits set by `pool`.
    pub(crate) fn new(options: &ClientOptions, pool: Pool) -> Result<Self, ClientError> {
        let base = base_url(&options.url)
            .map_err(|why| ClientError::Options(format!("the server URL `{}` {why}", options.url)))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", options.token))
            .map_err(|_| ClientError::Options("the token contains characters a header cannot carry".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let mut builder = reqwest::Client::builder().default_headers(headers).connect_timeout(options.timeout);
        if let Some(pem) = &options.ca_certificates {
            let certificates = root_certificates(pem)
                .map_err(|why| ClientError::Options(format!("the CA certificates given {why}")))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let builder = match pool {
            Pool::Requests => builder.timeout(options.timeout),
            Pool::Downloads => builder.read_timeout(options.timeout),
            Pool::Streams => builder,
        };
        let client = builder.build().map_err(|e| ClientError::Options(e.to_string()))?;
        Ok(Self { client, base })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    pub(crate) fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(self.url(path))
    }
}

/// `url` without its trailing `/` (and surrounding whitespace) once it is known to be an
/// HTTP(S) address a path can be added to, or why it is not one: anything else would only
/// fail later, at every request, in the HTTP library's words ("builder error"), which name
/// neither the setting nor the URL. flagctl checks `FLAGD_URL` with it too.
pub fn base_url(url: &str) -> Result<String, BadUrl> {
    let given = url.trim();
    if !given.contains("://") {
        return Err(BadUrl::NotHttp);
    }
    let parsed = reqwest::Url::parse(given).map_err(|_| BadUrl::NotUrl)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BadUrl::NotHttp);
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(BadUrl::NoHost);
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(BadUrl::QueryOrFragment);
    }
    Ok(given.trim_end_matches('/').to_owned())
}

/// Why a server URL is unusable ([`base_url`]), worded to follow the URL itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    /// No `http://` or `https://` in front.
    #[error("is not an http:// or https:// address")]
    NotHttp,
    /// Not a URL at all.
    #[error("is not a URL")]
    NotUrl,
    /// No host to connect to.
    #[error("names no host")]
    NoHost,
    /// A query or fragment, after which no path can be added.
    #[error("has a query or fragment, which paths cannot follow")]
    QueryOrFragment,
}

/// Sends a request; network failures become [`ClientError::Unreachable`].
pub(crate) async fn send(request: RequestBuilder) -> Result<Response, ClientError> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| ClientError::Options(e.to_string()))?;
    let url = request.url().to_string();
    client.execute(request).await.map_err(|error| ClientError::Unreachable { url, error })
}

/// The response if its status is a success or one of `also`; otherwise the server's error.
pub(crate) async fn expect(response: Response, also: &[StatusCode]) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() || also.contains(&status) {
        return Ok(response);
    }
    Err(Failure::read(response).await.into_error())
}

/// An answer with an error status, its body read.
#[derive(Debug)]
pub(crate) struct Failure {
    url: String,
    status: StatusCode,
    body: Value,
}

impl Failure {
    pub(crate) async fn read(response: Response) -> Self {
        let url = response.url().to_string();
        let status = response.status();
        // A body that is no JSON (a proxy's HTML page) says nothing more than the status.
        let body = response.json().await.unwrap_or(Value::Null);
        Self { url, status, body }
    }

    /// OFREP's verdict on one flag (`{errorCode, errorDetails}` with 400 or 404: no such
    /// flag, an unusable context), as opposed to a refusal of the request itself.
    pub(crate) fn evaluation_error(&self) -> Option<(&str, Option<&str>)> {
        if !matches!(self.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND) {
            return None;
        }
        let code = self.body["errorCode"].as_str()?;
        Some((code, self.body["errorDetails"].as_str()))
    }

    /// The failure as a [`ClientError::Status`], with the server's code and message.
    pub(crate) fn into_error(self) -> ClientError {
        let body = &self.body;
        // Admin-API errors are `{"error": {code, message}}`; OFREP's are `{errorCode, errorDetails}`.
        let (code, message) = match (&body["error"], &body["errorCode"]) {
            (Value::Object(e), _) => (e.get("code").and_then(Value::as_str), e.get("message").and_then(Value::as_str)),
            (_, Value::String(code)) => (Some(code.as_str()), body["errorDetails"].as_str()),
            _ => (None, None),
        };
        ClientError::Status {
            url: self.url,
            status: self.status.as_u16(),
            code: code.map(str::to_owned),
            message: message.unwrap_or_else(|| self.status.canonical_reason().unwrap_or("error")).to_owned(),
        }
    }
}

/// Reads a JSON body.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let url = response.url().to_string();
    let bytes = response.bytes().await.map_err(|error| ClientError::Unreachable { url: url.clone(), error })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol { url, message: e.to_string() })
}

/// `text` (a flag key, an environment or segment name) as one URL path segment or query
/// value of flagd's API: everything but the unreserved characters percent-encoded, so that
/// a `/`, `?`, `#` or `%` in it names that thing rather than another route.
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
