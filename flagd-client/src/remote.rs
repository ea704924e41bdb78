//! Remote mode: evaluation over OFREP, one bulk request per context, cached for a short
//! TTL and then revalidated with `If-None-Match`, so a steady context costs one 304 per
//! TTL. Getters never fail: on any error they serve the context's last known answer or
//! the caller's default.
//!
//! Callers never queue behind the network for a context that has an answer: when it
//! expires, one caller revalidates it while the others are served the held answer, and
//! after a failed revalidation the held answer is served for another TTL before the
//! server is asked again. Concurrent first requests for a context share one request. A
//! client-wide circuit breaker stops asking a server that keeps failing.
//!
//! A refusal (a 4xx: a wrong or revoked token, a context the server cannot evaluate) is
//! held for a TTL like an answer, so it too costs one request per context per TTL; callers
//! get their default with the server's reason meanwhile. A refused token also replaces the
//! answer held: a revoked token must stop serving flags, not serve old ones for a day.
//!
//! A context's answer stays in the cache for `stale_ttl` after the server last answered
//! for it (each answer, a 304 included, writes the entry again, which restarts its
//! lifetime; a failure does not), so an outage is bridged that long and no longer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use flagd_core::{ErrorCode, EvaluationContext, Reason, flag_not_found};
use moka::future::Cache;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::clock;
use crate::details::{Details, FlagType, error_code_named, reason_named};
use crate::error::ClientError;
use crate::http::{self, Http, Pool};
use crate::options::ClientOptions;

/// The longest a cache entry may live: the cache refuses lifetimes of 1000 years and
/// more, and a longer `stale_ttl` means "for ever" in practice anyway.
const LONGEST_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// After this many consecutive failed requests (timeouts, refused connections, 5xx) the
/// client stops asking the server.
const BREAKER_FAILURES: u32 = 3;

/// How long the open breaker sends nothing; then one request probes the server.
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(5);

const BULK_PATH: &str = "/ofrep/v1/evaluate/flags";

/// A client evaluating on the server.
///
/// Rules that read the time use the server's clock: OFREP carries no evaluation time, so a
/// context's `.at(unix_seconds)` does not reach the server (it applies in-process only).
///
/// Its calls are `async` and must run on a Tokio runtime (its HTTP connections belong to
/// the runtime that opened them): use it within one runtime that outlives it.
#[derive(Debug, Clone)]
pub struct RemoteClient {
    http: Http,
    ttl: Duration,
    cache: Cache<String, Arc<Slot>>,
    breaker: Arc<Breaker>,
    /// Whether the server's last word on the token was a refusal, which was logged: the
    /// next refusal, for this context or another, is not (one WARN per refusal, not one
    /// per context and TTL), until an answer shows the token accepted again.
    token_refused: Arc<AtomicBool>,
}

/// Every flag's result for one context, as the server last sent it.
#[derive(Debug)]
pub struct BulkAnswer {
    etag: Option<String>,
    /// Shared, so that revalidating an unchanged answer (304) copies nothing.
    flags: Arc<HashMap<String, FlagAnswer>>,
}

/// One context's held answer and when the server may next be asked about it.
#[derive(Debug)]
struct Slot(Mutex<Held>);

/// What the server last said about a context: every flag, or why it refused.
type Said = Result<Arc<BulkAnswer>, Arc<ClientError>>;

#[derive(Debug)]
struct Held {
    answer: Said,
    /// Until then the answer is served without asking: one TTL after an answer, and also
    /// one TTL after a failed attempt, so an outage costs one request per TTL, not per call.
    due: Instant,
    /// Only one caller revalidates at a time; the others are served the held answer.
    refreshing: bool,
}

/// The right to revalidate a slot; dropping it (even with the caller's future) frees it.
#[derive(Debug)]
struct Refresh<'a>(&'a Slot);

/// Consecutive failures across the whole client, and whether requests are held back.
#[derive(Debug, Default)]
struct Breaker(Mutex<BreakerState>);

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    /// Set once `failures` reaches [`BREAKER_FAILURES`]: no request before this instant.
    open_until: Option<Instant>,
    /// After the cool-down, one request probes the server and the rest stay held back.
    probing: bool,
}

/// Permission to send one request; its outcome must be reported with [`Permit::record`].
#[derive(Debug)]
struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
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
            None => Details::failed(default, ErrorCode::FlagNotFound, flag_not_found(key)),
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
    /// A client for the server and `evaluate` token in `options`. Nothing is sent yet; a
    /// URL that is no HTTP(S) address, or a token no header can carry, fails here
    /// ([`ClientError::Options`]).
    pub fn new(options: &ClientOptions) -> Result<Self, ClientError> {
        let ttl = options.cache_ttl;
        let cache = Cache::builder()
            .max_capacity(options.cache_capacity)
            .time_to_live(options.stale_ttl.max(ttl).min(LONGEST_LIFETIME))
            .build();
        let http = Http::new(options, Pool::Requests)?;
        Ok(Self { http, ttl, cache, breaker: Arc::default(), token_refused: Arc::default() })
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
    /// `If-None-Match` by one caller while the others are served the held answer. When the
    /// server cannot answer, the last answer for this context is served if there is one
    /// (for up to `stale_ttl` after the server last answered for it), and the server is not
    /// asked about it again for one TTL.
    pub async fn evaluate_all(&self, ctx: &EvaluationContext) -> Result<Arc<BulkAnswer>, ClientError> {
        let body = request_body(ctx);
        if self.ttl.is_zero() {
            return self.fetch_all(body, None).await.map(Arc::new);
        }
        let first = async {
            match self.fetch_all(body.clone(), None).await {
                // Not held: the next caller asks again, as the server may be back by then.
                Err(e) if !e.is_refusal() => Err(e),
                said => Ok(Slot::new(said.map(Arc::new).map_err(Arc::new), self.ttl)),
            }
        };
        let slot = self.cache.try_get_with_by_ref(&body, first).await.map_err(unshare)?;
        let (held, refresh) = slot.claim();
        let said = match refresh {
            None => held,
            Some(refresh) => self.revalidate(&body, &slot, held, refresh).await,
        };
        said.map_err(unshare)
    }

    /// Asks the server about a held answer; on failure the held answer stays and is served,
    /// unless the server refused the token.
    async fn revalidate(&self, body: &str, slot: &Arc<Slot>, held: Said, refresh: Refresh<'_>) -> Said {
        match self.fetch_all(body.to_owned(), held.as_deref().ok()).await {
            Ok(fresh) => {
                let fresh = refresh.settle(Some(Ok(Arc::new(fresh))), self.ttl);
                // Writing the slot again restarts its time to live in the cache.
                self.cache.insert(body.to_owned(), Arc::clone(slot)).await;
                fresh
            }
            Err(e) => {
                let refused = e.refuses_token();
                let told = refused && self.token_refused.swap(true, Ordering::Relaxed);
                if !matches!(e, ClientError::CircuitOpen { .. }) && !told {
                    let serving =
                        if refused { "the default, for every context until it is accepted" } else { "the last answer" };
                    tracing::warn!(error = %e, serving, "flagd bulk evaluation failed");
                }
                // Not written to the cache again: its lifetime keeps counting from the last
                // answer, so the held answer is dropped `stale_ttl` after it.
                refresh.settle(refused.then(|| Err(Arc::new(e))), self.ttl)
            }
        }
    }

    async fn fetch_all(&self, body: String, held: Option<&BulkAnswer>) -> Result<BulkAnswer, ClientError> {
        let mut request = self.http.post(BULK_PATH).header(CONTENT_TYPE, "application/json").body(body);
        if let Some(etag) = held.and_then(|h| h.etag.as_deref()) {
            request = request.header(IF_NONE_MATCH, etag);
        }
        self.guarded(BULK_PATH, async {
            let response = http::expect(http::send(request).await?, &[StatusCode::NOT_MODIFIED]).await?;
            let etag = response.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
            if let (StatusCode::NOT_MODIFIED, Some(held)) = (response.status(), held) {
                return Ok(BulkAnswer { etag: etag.or_else(|| held.etag.clone()), flags: Arc::clone(&held.flags) });
            }
            let BulkBody { flags } = http::json(response).await?;
            let flags = Arc::new(flags.into_iter().map(|f| (f.key.clone(), f)).collect());
            Ok(BulkAnswer { etag, flags })
        })
        .await
    }

    /// One flag straight from the server (OFREP single evaluation, not cached). Evaluation
    /// errors (`FLAG_NOT_FOUND`, `TARGETING_KEY_MISSING`, ...) come back in the details;
    /// `Err` means the server could not be asked, or refused the request (any other error
    /// status: a wrong token, a URL that reaches no OFREP endpoint), as for
    /// [`RemoteClient::evaluate_all`].
    pub async fn evaluate(&self, key: &str, ctx: &EvaluationContext) -> Result<Details<Value>, ClientError> {
        if matches!(key, "" | "." | "..") {
            // A URL cannot carry these as a path segment (`..` would name the parent
            // route, even percent-encoded), so the flag is read from every flag's answer.
            return Ok(self.fetch_all(request_body(ctx), None).await?.details(key, Value::Null));
        }
        let path = format!("{BULK_PATH}/{}", http::segment(key));
        let request = self.http.post(&path).header(CONTENT_TYPE, "application/json").body(request_body(ctx));
        self.guarded(&path, async {
            let response = http::send(request).await?;
            if !response.status().is_success() {
                return flag_failure(http::Failure::read(response).await);
            }
            let answer: FlagAnswer = http::json(response).await?;
            Ok(answer.details(Value::Null))
        })
        .await
    }

    /// Runs one exchange with the server unless the circuit breaker holds requests back,
    /// and tells the breaker how it went.
    async fn guarded<T>(
        &self,
        path: &str,
        exchange: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let permit =
            self.breaker.admit().map_err(|failures| ClientError::CircuitOpen { url: self.http.url(path), failures })?;
        let result = exchange.await;
        if result.is_ok() {
            self.token_refused.store(false, Ordering::Relaxed);
        }
        // An error status other than 5xx still means the server is up and answering.
        permit.record(result.as_ref().is_err_and(ClientError::is_transient));
        result
    }
}

impl Slot {
    fn new(answer: Said, ttl: Duration) -> Arc<Self> {
        let held = Held { answer, due: clock::later(Instant::now(), ttl), refreshing: false };
        Arc::new(Self(Mutex::new(held)))
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // The state is valid between any two statements, so a panicking holder left it usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The held answer, and the right to revalidate it if it is due and nobody else is.
    fn claim(&self) -> (Said, Option<Refresh<'_>>) {
        let mut held = self.lock();
        let answer = held.answer.clone();
        if held.refreshing || Instant::now() < held.due {
            return (answer, None);
        }
        held.refreshing = true;
        (answer, Some(Refresh(self)))
    }
}

impl Refresh<'_> {
    /// Stores `fresh` (if any) and leaves the answer alone for `wait`; returns the answer now held.
    fn settle(self, fresh: Option<Said>, wait: Duration) -> Said {
        let mut held = self.0.lock();
        if let Some(fresh) = fresh {
            held.answer = fresh;
        }
        held.due = clock::later(Instant::now(), wait);
        held.answer.clone()
    }
}

impl Drop for Refresh<'_> {
    fn drop(&mut self) {
        self.0.lock().refreshing = false;
    }
}

impl Breaker {
    fn lock(&self) -> MutexGuard<'_, BreakerState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A permit to send a request, or the number of consecutive failures holding it back.
    fn admit(&self) -> Result<Permit<'_>, u32> {
        let mut state = self.lock();
        let Some(until) = state.open_until else { return Ok(Permit { breaker: self, probe: false }) };
        if Instant::now() < until || state.probing {
            return Err(state.failures);
        }
        state.probing = true;
        Ok(Permit { breaker: self, probe: true })
    }
}

impl Permit<'_> {
    fn record(mut self, failed: bool) {
        let mut state = self.breaker.lock();
        self.probe = false;
        state.probing = false;
        if !failed {
            if state.open_until.is_some() {
                tracing::info!("flagd-server answers again; requests resume");
            }
            *state = BreakerState::default();
            return;
        }
        state.failures = state.failures.saturating_add(1);
        if state.failures >= BREAKER_FAILURES {
            if state.open_until.is_none() {
                tracing::warn!(failures = state.failures, cool_down = ?BREAKER_COOL_DOWN, "flagd-server keeps failing; pausing requests");
            }
            state.open_until = Some(clock::later(Instant::now(), BREAKER_COOL_DOWN));
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // A probe abandoned by its caller must not keep every later request held back.
        if self.probe {
            self.breaker.lock().probing = false;
        }
    }
}

/// The error of a request several callers waited on, as each of them gets it: a copy where
/// the error can be copied, so that callers can match on it; a network error cannot be.
fn unshare(shared: Arc<ClientError>) -> ClientError {
    match &*shared {
        ClientError::CircuitOpen { url, failures } => {
            ClientError::CircuitOpen { url: url.clone(), failures: *failures }
        }
        ClientError::Status { url, status, code, message } => {
            ClientError::Status { url: url.clone(), status: *status, code: code.clone(), message: message.clone() }
        }
        ClientError::Protocol { url, message } => ClientError::Protocol { url: url.clone(), message: message.clone() },
        _ => Arc::try_unwrap(shared).unwrap_or_else(ClientError::Shared),
    }
}

/// An error answer to a single evaluation: OFREP's verdict on the flag if it is one, else
/// the request's failure, as a bulk evaluation reports it.
fn flag_failure(failure: http::Failure) -> Result<Details<Value>, ClientError> {
    match failure.evaluation_error() {
        Some((code, details)) => Ok(Details::failed(Value::Null, error_code_named(code), details.unwrap_or(code))),
        None => Err(failure.into_error()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> BulkAnswer {
        BulkAnswer { etag: None, flags: Arc::default() }
    }

    #[test]
    fn a_revalidation_abandoned_by_its_caller_lets_the_next_caller_revalidate() {
        let slot = Slot::new(Ok(Arc::new(answer())), Duration::ZERO);
        let (_, first) = slot.claim();
        assert!(first.is_some());
        assert!(slot.claim().1.is_none(), "one revalidation at a time");
        drop(first);
        assert!(slot.claim().1.is_some());
    }

    #[test]
    fn a_probe_abandoned_by_its_caller_does_not_keep_the_breaker_open() {
        let cooled_down = BreakerState { failures: BREAKER_FAILURES, open_until: Some(Instant::now()), probing: false };
        let breaker = Breaker(Mutex::new(cooled_down));
        let probe = breaker.admit();
        assert!(probe.is_ok());
        assert!(breaker.admit().is_err(), "one probe at a time");
        drop(probe);
        let probe = breaker.admit();
        assert!(probe.is_ok());
        probe.into_iter().for_each(|p| p.record(false));
        assert!(breaker.admit().is_ok_and(|p| !p.probe), "a probe that got an answer closes the breaker");
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_only() {
        let breaker = Breaker::default();
        for _ in 1..BREAKER_FAILURES {
            breaker.admit().into_iter().for_each(|p| p.record(true));
        }
        breaker.admit().into_iter().for_each(|p| p.record(false));
        for _ in 1..BREAKER_FAILURES {
            breaker.admit().into_iter().for_each(|p| p.record(true));
        }
        assert!(breaker.admit().is_ok(), "an answer in between resets the count");
        breaker.admit().into_iter().for_each(|p| p.record(true));
        assert_eq!(breaker.admit().err(), Some(BREAKER_FAILURES));
    }
}
