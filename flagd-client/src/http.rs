//! The HTTP plumbing both modes share: one connection pool, the token on every request,
//! and server errors turned into [`ClientError`]s.

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

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
        let base = options.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Options(format!(
                "the server URL must start with http:// or https://, not `{base}`"
            )));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", options.token))
            .map_err(|_| ClientError::Options("the token contains characters a header cannot carry".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let builder = reqwest::Client::builder().default_headers(headers).connect_timeout(options.timeout);
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

/// Sends a request; network failures become [`ClientError::Unreachable`].
pub(crate) async fn send(request: RequestBuilder) -> Result<Response, ClientError> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| ClientError::Options(e.to_string()))?;
    let url = request.url().to_string();
    client.execute(request).await.map_err(|source| ClientError::Unreachable { url, source })
}

/// The response if its status is a success or one of `also`; otherwise the server's error.
pub(crate) async fn expect(response: Response, also: &[StatusCode]) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() || also.contains(&status) {
        return Ok(response);
    }
    let url = response.url().to_string();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    // Admin-API errors are `{"error": {code, message}}`; OFREP's are `{errorCode, errorDetails}`.
    let (code, message) = match (&body["error"], &body["errorCode"]) {
        (Value::Object(e), _) => (e.get("code").and_then(Value::as_str), e.get("message").and_then(Value::as_str)),
        (_, Value::String(code)) => (Some(code.as_str()), body["errorDetails"].as_str()),
        _ => (None, None),
    };
    Err(ClientError::Status {
        url,
        status: status.as_u16(),
        code: code.map(str::to_owned),
        message: message.unwrap_or_else(|| status.canonical_reason().unwrap_or("error")).to_owned(),
    })
}

/// Reads a JSON body.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let url = response.url().to_string();
    let bytes = response.bytes().await.map_err(|source| ClientError::Unreachable { url: url.clone(), source })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol { url, message: e.to_string() })
}
