//! In-process mode: the environment's snapshot is fetched from the server, compiled with
//! flagd-core and evaluated locally, so a getter costs an evaluation and no I/O. A change
//! stream (server-sent events) says when to fetch a new snapshot; when the stream drops,
//! the client reconnects with backoff and goes on serving the snapshot it holds.
//!
//! Two things can make a snapshot lag its stream. Behind a load balancer, the snapshot
//! request may reach another replica than the stream's, one that has not applied the
//! change yet: the client asks again until the snapshot reaches the change. And a server
//! whose sequence went back (its database restored from a backup, or replaced) announces
//! numbers below the snapshot held: a stream that starts there is followed, not ignored.
//!
//! A server that refuses the token on reconnecting (401/403: it was revoked) gets no more
//! say than one that answers: the snapshot stops being served, and callers get their
//! default with the refusal, until the server accepts the token again.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use flagd_core::{EnvironmentSnapshot, ErrorCode, EvaluationContext, Ruleset};
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::clock;
use crate::details::{Details, FlagType};
use crate::error::ClientError;
use crate::http::{self, Http, Pool};
use crate::options::ClientOptions;
use crate::sse;

/// The first reconnection pause; it doubles up to [`ClientOptions::max_backoff`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The server sends a keep-alive comment every 15 s; silence for longer means the
/// connection is dead even if TCP has not noticed.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
/// How long a snapshot may stay behind the change its stream announced (replicas apply a
/// change within their sync interval) before the stream is dropped and reopened.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// A client evaluating locally from a followed snapshot. Dropping it stops following.
///
/// Rules that read the time use the context's `.at(unix_seconds)` if set, else the local
/// clock.
///
/// It follows changes on a task of the Tokio runtime [`InProcessClient::connect`] ran on,
/// so that runtime must outlive the client. If the runtime shuts down first, the client
/// goes on serving its last snapshot, which no longer changes, and
/// [`InProcessClient::is_connected`] is false.
#[derive(Debug)]
pub struct InProcessClient {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InProcessClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The compiled snapshot being served.
#[derive(Debug)]
pub struct Loaded {
    /// Environment name.
    pub environment: String,
    /// The change sequence number of the environment's snapshot.
    pub seq: i64,
    /// The compiled flags.
    pub ruleset: Ruleset,
    reads_clock: bool,
}

impl Loaded {
    /// Runs `f` on a context that carries a time if the rules need one: contexts without
    /// `.at(…)` are stamped with the clock only then, so the common case copies nothing.
    pub fn with_time<R>(&self, ctx: &EvaluationContext, f: impl FnOnce(&EvaluationContext) -> R) -> R {
        if self.reads_clock && ctx.now().is_none() {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            f(&ctx.clone().at(i64::try_from(now).unwrap_or(i64::MAX)))
        } else {
            f(ctx)
        }
    }
}

#[derive(Debug)]
struct Shared {
    current: ArcSwapOption<Loaded>,
    applied: watch::Sender<i64>,
    connected: AtomicBool,
    /// Set while the server refuses the token: nothing is served meanwhile. A flag apart
    /// from `refusal`, as every getter checks it and a plain load costs next to nothing.
    refused: AtomicBool,
    /// Why the server refuses the token.
    refusal: ArcSwapOption<ClientError>,
}

impl Shared {
    fn seq(&self) -> Option<i64> {
        self.current.load().as_ref().map(|l| l.seq)
    }

    fn is_refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }

    /// Stops serving for `refusal`; whether the token was accepted until now.
    fn refuse(&self, refusal: ClientError) -> bool {
        self.refusal.store(Some(Arc::new(refusal)));
        !self.refused.swap(true, Ordering::AcqRel)
    }

    /// Serves again; whether the token had been refused.
    fn accept(&self) -> bool {
        let was = self.refused.swap(false, Ordering::AcqRel);
        self.refusal.store(None);
        was
    }
}

/// The `data` of a `change` event.
#[derive(Debug, Deserialize)]
struct Change {
    environment: String,
    seq: i64,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open change stream and what has been read of it.
struct Open {
    body: ByteStream,
    parser: sse::Parser,
}

/// How to reach the server: a pool for snapshots and one for the endless stream.
#[derive(Debug)]
struct Link {
    downloads: Http,
    streams: Http,
    stream_path: String,
    /// How long opening the stream may wait for the server's answer.
    timeout: Duration,
    max_backoff: Duration,
}

impl InProcessClient {
    /// Connects: opens the change stream, fetches and compiles the snapshot, and follows
    /// changes in the background. While the server cannot be reached (not started yet,
    /// restarting, answering 5xx) it tries again with backoff; if no snapshot is loaded
    /// within `options.connect_timeout` it fails with [`ClientError::NotReady`], naming
    /// the last attempt's failure. A refusal (a wrong token: 401/403, or another 4xx) fails
    /// at once, with the server's reason, as do unusable options
    /// ([`ClientError::Options`]: a URL that is no HTTP(S) address).
    ///
    /// Once connected, a server that refuses the token on a reconnection (it was revoked)
    /// stops the snapshot being served: every getter answers the caller's default with a
    /// `GENERAL` error naming the refusal, until the server accepts the token again.
    pub async fn connect(options: &ClientOptions) -> Result<Self, ClientError> {
        let stream_path = match &options.environment {
            Some(env) => format!("/api/v1/stream?environment={}", http::segment(env)),
            None => "/api/v1/stream".to_owned(),
        };
        let link = Link {
            downloads: Http::new(options, Pool::Downloads)?,
            streams: Http::new(options, Pool::Streams)?,
            stream_path,
            timeout: options.timeout,
            max_backoff: options.max_backoff.max(MIN_BACKOFF),
        };
        let shared = Arc::new(Shared {
            current: ArcSwapOption::empty(),
            applied: watch::Sender::new(i64::MIN),
            connected: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            refusal: ArcSwapOption::empty(),
        });
        let first = link.open_first(&shared, options.connect_timeout).await?;
        let task = tokio::spawn(follow(Following(Arc::clone(&shared)), link, first));
        Ok(Self { shared, task })
    }

    /// The snapshot served now; `None` while none is (not loaded, or the token refused).
    pub fn snapshot(&self) -> Option<Arc<Loaded>> {
        if self.shared.is_refused() { None } else { self.shared.current.load_full() }
    }

    /// The change sequence number of the snapshot served now.
    pub fn seq(&self) -> Option<i64> {
        self.shared.seq()
    }

    /// Whether the change stream is connected (while it is not, the last snapshot is
    /// served and reconnection is under way, unless the runtime following it is gone).
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Waits until the snapshot served reflects change `seq` (e.g. a write's `version`);
    /// false if `timeout` passes first.
    ///
    /// Only writes to the followed environment count: the change stream announces that
    /// environment's changes and no others, so the client cannot tell when it has passed
    /// the version of a write to another environment (a staging write while following
    /// production), and waiting for one returns true only once the followed environment
    /// changes after it. Wait for such a write on the server (`GET /api/v1/wait`). While the
    /// server refuses the token, this and [`Self::seq`] tell the snapshot held, which is not
    /// served ([`Self::snapshot`] is `None`).
    pub async fn wait_for_seq(&self, seq: i64, timeout: Duration) -> bool {
        let mut applied = self.shared.applied.subscribe();
        matches!(tokio::time::timeout(timeout, applied.wait_for(|a| *a >= seq)).await, Ok(Ok(_)))
    }

    /// A boolean flag, or `default`.
    pub fn bool_value(&self, key: &str, ctx: &EvaluationContext, default: bool) -> bool {
        self.read(default, |l| l.with_time(ctx, |ctx| l.ruleset.boolean(key, ctx).or(default)))
    }

    /// A string flag, or `default`.
    pub fn string_value(&self, key: &str, ctx: &EvaluationContext, default: &str) -> String {
        let owned = |l: &Loaded| l.with_time(ctx, |ctx| l.ruleset.string(key, ctx).or(default).to_owned());
        self.read(default.to_owned(), owned)
    }

    /// An integer flag, or `default`.
    pub fn int_value(&self, key: &str, ctx: &EvaluationContext, default: i64) -> i64 {
        self.read(default, |l| l.with_time(ctx, |ctx| l.ruleset.integer(key, ctx).or(default)))
    }

    /// A number flag, or `default`.
    pub fn float_value(&self, key: &str, ctx: &EvaluationContext, default: f64) -> f64 {
        self.read(default, |l| l.with_time(ctx, |ctx| l.ruleset.float(key, ctx).or(default)))
    }

    /// An object flag (any JSON), or `default`.
    pub fn object_value(&self, key: &str, ctx: &EvaluationContext, default: Value) -> Value {
        self.details(key, ctx, default).value
    }

    /// One flag with variant, reason and error.
    pub fn details<T: FlagType>(&self, key: &str, ctx: &EvaluationContext, default: T) -> Details<T> {
        if self.shared.is_refused() {
            let refusal = self.shared.refusal.load().as_ref().map(ToString::to_string);
            // `None` only if the token was accepted again just now.
            let message = refusal.unwrap_or_else(|| "flagd-server refused the token".to_owned());
            return Details::failed(default, ErrorCode::General, message);
        }
        match self.shared.current.load().as_ref() {
            Some(l) => l.with_time(ctx, |ctx| Details::from_resolution(key, &l.ruleset.evaluate(key, ctx), default)),
            None => Details::failed(default, ErrorCode::General, "no snapshot loaded"),
        }
    }

    /// A flag's metadata as the server's OFREP answers report it (its boolean, string and
    /// number entries, the environment's flag-set metadata under the flag's own), as
    /// [`crate::BulkAnswer::metadata`] gives it remotely; `None` if there is no such flag.
    pub fn metadata(&self, key: &str) -> Option<Map<String, Value>> {
        self.read(None, |l| l.ruleset.flag_metadata(key).map(flagd_core::ofrep_metadata))
    }

    fn read<R>(&self, default: R, f: impl FnOnce(&Loaded) -> R) -> R {
        if self.shared.is_refused() {
            return default;
        }
        self.shared.current.load().as_ref().map_or(default, |l| f(l))
    }
}

impl Link {
    /// Opens the stream for [`InProcessClient::connect`]: like [`Link::open`], tried again
    /// with backoff until `timeout` unless the server refused or the snapshot is unusable,
    /// which asking again does not change.
    async fn open_first(&self, shared: &Shared, timeout: Duration) -> Result<Open, ClientError> {
        let deadline = clock::later_tokio(tokio::time::Instant::now(), timeout);
        let mut backoff = Backoff::new(self.max_backoff);
        let mut cause = None;
        loop {
            match tokio::time::timeout_at(deadline, self.open(shared)).await {
                Ok(Ok(open)) => return Ok(open),
                Ok(Err(e)) if e.is_refusal() || matches!(e, ClientError::Compile { .. } | ClientError::Options(_)) => {
                    return Err(e);
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "flagd not reachable yet; connecting again with backoff");
                    cause = Some(Box::new(e));
                }
                Err(_) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ClientError::NotReady { timeout, cause });
            }
            // The last attempt comes at the deadline, so a server up by then is not missed.
            tokio::time::sleep_until(clock::later_tokio(now, backoff.pause()).min(deadline)).await;
        }
    }

    /// Opens the change stream and loads the snapshot its first event names.
    async fn open(&self, shared: &Shared) -> Result<Open, ClientError> {
        // A peer that accepts and never answers (a balancer before a dead backend) must
        // not hold the reconnection up for ever.
        let answer = tokio::time::timeout(self.timeout, http::send(self.streams.get(&self.stream_path)))
            .await
            .map_err(|_| ClientError::Protocol {
                url: self.streams.url(&self.stream_path),
                message: format!("no answer within {:?}", self.timeout),
            })??;
        let response = http::expect(answer, &[]).await?;
        shared.connected.store(true, Ordering::Relaxed);
        let mut open = Open { body: Box::pin(response.bytes_stream()), parser: sse::Parser::default() };
        let first = self.next_change(&mut open).await?.ok_or_else(|| ClientError::Protocol {
            url: self.streams.url(&self.stream_path),
            message: "the change stream ended before its first event".into(),
        })?;
        self.apply(shared, &first, true).await?;
        Ok(open)
    }

    /// The next `change` event, or `None` when the server ends the stream.
    async fn next_change(&self, open: &mut Open) -> Result<Option<Change>, ClientError> {
        let url = || self.streams.url(&self.stream_path);
        loop {
            let chunk = tokio::time::timeout(IDLE_LIMIT, open.body.next()).await.map_err(|_| {
                ClientError::Protocol { url: url(), message: format!("nothing received for {IDLE_LIMIT:?}") }
            })?;
            let Some(chunk) = chunk else { return Ok(None) };
            let chunk = chunk.map_err(|error| ClientError::Unreachable { url: url(), error })?;
            // Several events may arrive together; only the newest matters.
            let events = open.parser.push(&chunk);
            if let Some(event) = events.into_iter().rfind(|e| e.name == "change") {
                let change = serde_json::from_str(&event.data)
                    .map_err(|e| ClientError::Protocol { url: url(), message: format!("bad change event: {e}") })?;
                return Ok(Some(change));
            }
        }
    }

    /// Brings the snapshot served up to `change`: fetched until it is at least that new
    /// (see the module docs), or, where a stream starts behind the snapshot held, replaced
    /// by what the server serves now.
    async fn apply(&self, shared: &Shared, change: &Change, starts_stream: bool) -> Result<(), ClientError> {
        let mut went_back = starts_stream && shared.seq().is_some_and(|held| held > change.seq);
        if went_back {
            tracing::warn!(
                held = ?shared.seq(),
                announced = change.seq,
                "flagd's change sequence went back (its database restored or replaced?): following it"
            );
        }
        let deadline = clock::later_tokio(tokio::time::Instant::now(), CATCH_UP_LIMIT);
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            let held = if went_back { None } else { shared.seq() };
            if held.is_some_and(|seq| seq >= change.seq) {
                return Ok(());
            }
            if let Some(snapshot) = self.fetch(&change.environment, held).await? {
                went_back = false;
                let seq = snapshot.seq;
                install(shared, snapshot)?;
                if seq >= change.seq {
                    return Ok(());
                }
            }
            // Answered by a replica that has not applied the change yet: ask again.
            let pause = backoff.pause();
            if clock::later_tokio(tokio::time::Instant::now(), pause) > deadline {
                return Err(ClientError::Protocol {
                    url: self.downloads.url(&snapshot_path(&change.environment)),
                    message: format!("the snapshot stayed behind change {} for {CATCH_UP_LIMIT:?}", change.seq),
                });
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// The environment's snapshot if it is newer than `held` (a server behind `held`
    /// answers its older one, which is not taken).
    async fn fetch(&self, environment: &str, held: Option<i64>) -> Result<Option<EnvironmentSnapshot>, ClientError> {
        let mut request = self.downloads.get(&snapshot_path(environment));
        if let Some(seq) = held {
            request = request.header(IF_NONE_MATCH, format!("\"{seq}\""));
        }
        let response = http::expect(http::send(request).await?, &[StatusCode::NOT_MODIFIED]).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let etag_seq = response.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let snapshot: EnvironmentSnapshot = http::json(response).await?;
        tracing::debug!(environment = %snapshot.environment, seq = snapshot.seq, etag = ?etag_seq, "flagd snapshot");
        Ok(held.is_none_or(|seq| snapshot.seq > seq).then_some(snapshot))
    }
}

/// Pauses between attempts: [`MIN_BACKOFF`] first, doubling up to a ceiling.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self { next: MIN_BACKOFF, max }
    }

    /// The pause before the next attempt.
    fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = pause.saturating_mul(2).min(self.max);
        pause
    }
}

fn snapshot_path(environment: &str) -> String {
    format!("/api/v1/environments/{}/snapshot", http::segment(environment))
}

fn install(shared: &Shared, snapshot: EnvironmentSnapshot) -> Result<(), ClientError> {
    let EnvironmentSnapshot { environment, seq, ruleset: source } = snapshot;
    let reads_clock = source.reads_clock();
    let ruleset = Ruleset::compile(&source)
        .map_err(|problems| ClientError::Compile { environment: environment.clone(), problems })?;
    shared.current.store(Some(Arc::new(Loaded { environment, seq, ruleset, reads_clock })));
    shared.applied.send_replace(seq);
    Ok(())
}

/// The following task's hold on the shared state. A task is dropped, not run to an end,
/// when the client aborts it or its runtime shuts down; either way the client is then no
/// longer connected, and no one else would say so.
struct Following(Arc<Shared>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.connected.store(false, Ordering::Relaxed);
    }
}

/// Follows the stream for as long as the client lives, reconnecting with backoff.
async fn follow(following: Following, link: Link, first: Open) {
    let shared = &*following.0;
    let mut open = Some(first);
    let mut reopening = Reopening(Backoff::new(link.max_backoff));
    // Paces the attempts of one outage; each outage starts again from the first pause.
    let mut retrying = Backoff::new(link.max_backoff);
    let mut failures = 0_u32;
    loop {
        let pause = match open.take() {
            Some(stream) => reopening.after(follow_stream(shared, &link, stream).await),
            // Asking again soon would only be refused again soon.
            None if shared.is_refused() => link.max_backoff,
            None => retrying.pause(),
        };
        shared.connected.store(false, Ordering::Relaxed);
        tokio::time::sleep(pause).await;
        match link.open(shared).await {
            Ok(stream) => {
                failures = 0;
                retrying = Backoff::new(link.max_backoff);
                if shared.accept() {
                    tracing::info!("flagd accepts the token again; serving flags");
                }
                open = Some(stream);
            }
            Err(e) => {
                failures += 1;
                reconnect_failed(shared, e, failures, retrying.next);
            }
        }
    }
}

/// Reads `stream` until it ends; how long it lasted.
async fn follow_stream(shared: &Shared, link: &Link, stream: Open) -> Duration {
    let opened = tokio::time::Instant::now();
    if let Err(e) = read_changes(shared, link, stream).await {
        tracing::warn!(error = %e, "flagd change stream lost; serving the last snapshot while reconnecting");
    }
    opened.elapsed()
}

/// Reports a failed reconnection: the first of an outage is news, the retries after it are
/// not, and a refused token is news once, as from then on it stops the snapshot being served.
fn reconnect_failed(shared: &Shared, e: ClientError, failures: u32, retry_in: Duration) {
    if !e.refuses_token() {
        if failures == 1 {
            tracing::warn!(error = %e, ?retry_in, "flagd reconnect failed; retrying with backoff");
        } else {
            tracing::debug!(error = %e, ?retry_in, failures, "flagd reconnect failed");
        }
        return;
    }
    let message = e.to_string();
    if shared.refuse(e) {
        tracing::warn!(
            error = %message,
            "flagd refuses the token; serving callers' defaults until it accepts it again"
        );
    } else {
        tracing::debug!(error = %message, failures, "flagd still refuses the token");
    }
}

/// Paces the reopening of streams that end. A stream that lasted is reopened after the
/// first pause however long the outage before it was; streams that drop as soon as they
/// open (a failing snapshot, a proxy cutting them) are reopened ever more slowly, not 20
/// times a second.
#[derive(Debug)]
struct Reopening(Backoff);

/// How long a stream must have lasted to count as one that worked.
const STREAM_WORKED_AFTER: Duration = Duration::from_secs(1);

impl Reopening {
    /// The pause before reopening a stream that lasted `lasted`.
    fn after(&mut self, lasted: Duration) -> Duration {
        // One that outlived the pause it would now cost, and a second at least, was no
        // stream dropped at once: without that floor, one cut after 100 ms every time would
        // be reopened at the first pause every time, several times a second for ever.
        if lasted >= self.0.next.max(STREAM_WORKED_AFTER) {
            self.0 = Backoff::new(self.0.max);
        }
        self.0.pause()
    }
}

async fn read_changes(shared: &Shared, link: &Link, mut open: Open) -> Result<(), ClientError> {
    while let Some(change) = link.next_change(&mut open).await? {
        link.apply(shared, &change, false).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(2);

    #[test]
    fn streams_dropped_at_once_are_reopened_ever_more_slowly_and_one_that_lasted_at_once() {
        let mut reopening = Reopening(Backoff::new(MAX));
        let at_once: Vec<Duration> = (0..7).map(|_| reopening.after(Duration::ZERO)).collect();
        let expected: Vec<Duration> = [50, 100, 200, 400, 800, 1600, 2000].map(Duration::from_millis).into();
        assert_eq!(at_once, expected);
        assert_eq!(reopening.after(MAX / 2), MAX, "a stream shorter than the pause it costs changes nothing");
        assert_eq!(reopening.after(MAX), MIN_BACKOFF);
        let cut_after_a_moment: Vec<Duration> = (0..3).map(|_| reopening.after(Duration::from_millis(300))).collect();
        assert_eq!(cut_after_a_moment, [100, 200, 400].map(Duration::from_millis), "cut after 300 ms each time");
        assert_eq!(reopening.after(STREAM_WORKED_AFTER), MIN_BACKOFF);
    }
}
