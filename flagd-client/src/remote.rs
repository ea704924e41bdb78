//! Remote mode: evaluation over OFREP, one bulk request per context, cached for a short
//! TTL and then revalidated with `If-None-Match`, so a steady context costs one 304 per
//! TTL. Getters never fail: on any error they serve the context's last known answer or
//! the caller's default.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagd_core::{ErrorCode, EvaluationContext, Reason};
use moka::future::Cache;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::details::{Details, FlagType, error_code_named, reason_named};
use crate::error::ClientError;
use crate::http::{self, Http, Pool};
use crate::options::ClientOptions;

/// A stale answer is kept this many TTLs, to be revalidated cheaply or served while the
/// server cannot be reached.
const STALE_TTLS: u32 = 60;

/// A client evaluating on the server.
#[derive(Debug, Clone)]
pub struct RemoteClient {
    http: Http,
    ttl: Duration,
    cache: Cache<String, Arc<BulkAnswer>>,
}

/// Every flag's result for one context, as the server last sent it.
#[derive(Debug)]
pub struct BulkAnswer {
    etag: Option<String>,
    fetched: Instant,
    /// Shared, so that revalidating an unchanged answer (304) copies nothing.
    flags: Arc<HashMap<String, FlagAnswer>>,
}

/// One flag's result on the wire (OFREP success or failure item).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlagAnswer {
    key: String,
    value: Option<Value>,
    variant: Option<String>,
    reason: Option<String>,
    error_code: Option<String>,
    error_details: Option<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct BulkBody {
    flags: Vec<FlagAnswer>,
}

impl FlagAnswer {
    fn details<T: FlagType>(&self, default: T) -> Details<T> {
        if let Some(code) = &self.error_code {
            let message = self.error_details.clone().unwrap_or_else(|| code.clone());
            return Details::failed(default, error_code_named(code), message);
        }
        let reason = self.reason.as_deref().map_or(Reason::Default, reason_named);
        Details::served(&self.key, self.value.as_ref(), self.variant.as_deref(), reason, default)
    }
}

impl BulkAnswer {
    /// One flag's result as `T`; `FLAG_NOT_FOUND` if the environment has no such flag.
    pub fn details<T: FlagType>(&self, key: &str, default: T) -> Details<T> {
        match self.flags.get(key) {
            Some(answer) => answer.details(default),
            None => Details::failed(default, ErrorCode::FlagNotFound, format!("no flag `{key}` in this environment")),
        }
    }

    /// The flags' keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }

    /// A flag's metadata, if the flag exists.
    pub fn metadata(&self, key: &str) -> Option<&Map<String, Value>> {
        self.flags.get(key).map(|a| &a.metadata)
    }

    /// The `ETag` the server gave this answer.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

impl RemoteClient {
    /// A client for the server and `evaluate` token in `options`. Nothing is sent yet.
    pub fn new(options: &ClientOptions) -> Result<Self, ClientError> {
        let ttl = options.cache_ttl;
        let cache = Cache::builder()
            .max_capacity(options.cache_capacity)
            .time_to_live(ttl.saturating_mul(STALE_TTLS).max(Duration::from_secs(1)))
            .build();
        Ok(Self { http: Http::new(options, Pool::Requests)?, ttl, cache })
    }

    /// A boolean flag, or `default`.
    pub async fn bool_value(&self, key: &str, ctx: &EvaluationContext, default: bool) -> bool {
        self.details(key, ctx, default).await.value
    }

    /// A string flag, or `default`.
    pub async fn string_value(&self, key: &str, ctx: &EvaluationContext, default: &str) -> String {
        self.details(key, ctx, default.to_owned()).await.value
    }

    /// An integer flag, or `default`.
    pub async fn int_value(&self, key: &str, ctx: &EvaluationContext, default: i64) -> i64 {
        self.details(key, ctx, default).await.value
    }

    /// A number flag, or `default`.
    pub async fn float_value(&self, key: &str, ctx: &EvaluationContext, default: f64) -> f64 {
        self.details(key, ctx, default).await.value
    }

    /// An object flag (any JSON), or `default`.
    pub async fn object_value(&self, key: &str, ctx: &EvaluationContext, default: Value) -> Value {
        self.details(key, ctx, default).await.value
    }

    /// One flag with variant, reason and error, from the context's (cached) bulk answer.
    pub async fn details<T: FlagType>(&self, key: &str, ctx: &EvaluationContext, default: T) -> Details<T> {
        match self.evaluate_all(ctx).await {
            Ok(answer) => answer.details(key, default),
            Err(e) => Details::failed(default, ErrorCode::General, e.to_string()),
        }
    }

    /// Every flag for `ctx`: from the cache while fresh, then revalidated with
    /// `If-None-Match`. When the server cannot answer, the last answer for this context
    /// is served if there is one.
    pub async fn evaluate_all(&self, ctx: &EvaluationContext) -> Result<Arc<BulkAnswer>, ClientError> {
        let body = request_body(ctx);
        let held = self.cache.get(&body).await;
        if let Some(answer) = held.as_ref().filter(|a| a.fetched.elapsed() < self.ttl) {
            return Ok(Arc::clone(answer));
        }
        match self.fetch_all(body.clone(), held.as_deref()).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                if !self.ttl.is_zero() {
                    self.cache.insert(body, Arc::clone(&fresh)).await;
                }
                Ok(fresh)
            }
            Err(e) => {
                tracing::warn!(error = %e, "flagd bulk evaluation failed");
                held.ok_or(e)
            }
        }
    }

    async fn fetch_all(&self, body: String, held: Option<&BulkAnswer>) -> Result<BulkAnswer, ClientError> {
        let mut request =
            self.http.post("/ofrep/v1/evaluate/flags").header(CONTENT_TYPE, "application/json").body(body);
        if let Some(etag) = held.and_then(|h| h.etag.as_deref()) {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = http::expect(http::send(request).await?, &[StatusCode::NOT_MODIFIED]).await?;
        let etag = response.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let (StatusCode::NOT_MODIFIED, Some(held)) = (response.status(), held) {
            return Ok(BulkAnswer {
                etag: etag.or_else(|| held.etag.clone()),
                fetched: Instant::now(),
                flags: Arc::clone(&held.flags),
            });
        }
        let BulkBody { flags } = http::json(response).await?;
        let flags = Arc::new(flags.into_iter().map(|f| (f.key.clone(), f)).collect());
        Ok(BulkAnswer { etag, fetched: Instant::now(), flags })
    }

    /// One flag straight from the server (OFREP single evaluation, not cached). Evaluation
    /// errors (`FLAG_NOT_FOUND`, `TARGETING_KEY_MISSING`, ...) come back in the details;
    /// `Err` means the server could not be asked.
    pub async fn evaluate(&self, key: &str, ctx: &EvaluationContext) -> Result<Details<Value>, ClientError> {
        let path = format!("/ofrep/v1/evaluate/flags/{key}");
        let request = self.http.post(&path).header(CONTENT_TYPE, "application/json").body(request_body(ctx));
        let evaluation_failures = [StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND];
        let response = http::expect(http::send(request).await?, &evaluation_failures).await?;
        let answer: FlagAnswer = http::json(response).await?;
        Ok(answer.details(Value::Null))
    }
}

/// The OFREP request body, which is also the cache key: equal contexts give equal bytes.
fn request_body(ctx: &EvaluationContext) -> String {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        context: &'a EvaluationContext,
    }
    // Attributes keyed by strings always serialise.
    serde_json::to_string(&Body { context: ctx }).unwrap_or_else(|_| "{}".to_owned())
}
