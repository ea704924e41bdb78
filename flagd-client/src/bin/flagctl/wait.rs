//! Waiting until a change is applied: `--wait` on writes, and `flagctl wait SEQ`.
//!
//! A write's response carries `version`, the change sequence number of that write. The
//! server's `GET /api/v1/wait?seq=N&timeoutMs=M` answers once the change is applied; a
//! server without that route is polled on `/readyz`, whose `appliedSeq` is the highest
//! change it serves.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{Refusal, Request, Target, explain};
use crate::exit::Failure;
use crate::output;
use crate::session::Session;
use crate::signals::Signals;

/// Pause between two `/readyz` polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Extra time the HTTP request gets over the server-side wait, which ends up to two of its
/// database reads (a second each) past its timeout; a server that hung meanwhile costs the
/// wait no more than this past `--wait-timeout`.
const REQUEST_SLACK: Duration = Duration::from_secs(2);
/// First pause after the server could not answer; it doubles up to [`RETRY_MAX`]. Short,
/// because a restarting server is usually back within a second or two.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// A change confirmed applied.
#[derive(Debug)]
struct Confirmed {
    /// How far the confirmation reaches, for people.
    sentence: String,
    /// The server's answer (`seq`, `scope`, `replicas`), for `--output json`.
    answer: Value,
}

/// Waits until change `seq` is applied or `--wait-timeout` passes; returns the sentence
/// that says how far the confirmation reaches. A `seq` no write has reached is refused at
/// once (the server's 404 `CHANGE_NOT_FOUND`, see [`explain`]).
pub async fn applied(session: &Session, seq: i64) -> Result<String, Failure> {
    Ok(confirm(session, seq).await?.sentence)
}

/// [`applied`], with the server's answer.
async fn confirm(session: &Session, seq: i64) -> Result<Confirmed, Failure> {
    let started = Instant::now();
    let deadline = started + session.wait_timeout;
    let mut outage = Outage::new(seq, session.wait_timeout);
    // The server caps one wait (at 60 s): ask again until our own deadline, saying how long
    // we have waited, so that a replica that fell silent meanwhile stays in the wait.
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).to_string();
        let request = Request::new(Method::GET, "/api/v1/wait", Target::default())
            .query("seq", seq.to_string())
            .query("timeoutMs", millis(remaining))
            .query("waitedMs", millis(started.elapsed()))
            .timeout(whole_seconds(remaining) + REQUEST_SLACK);
        let trouble = match session.api.exchange(request).await {
            Ok(Ok(reply)) => return Ok(Confirmed { sentence: confirmation(seq, &reply.body), answer: reply.body }),
            Ok(Err(r)) if r.code == "WAIT_TIMEOUT" && Instant::now() < deadline => continue,
            Ok(Err(r)) if r.code == "WAIT_TIMEOUT" => {
                return Err(timed_out(seq, session.wait_timeout, &lagging(&r)));
            }
            // Servers from before the wait route answer with the generic 404.
            Ok(Err(r)) if r.status == 404 && r.code == "NOT_FOUND" => {
                return poll_readyz(session, seq, deadline, outage).await;
            }
            // Another replica (or this one, restarted) can confirm the change: ask again.
            Ok(Err(r)) if r.code == "SHUTTING_DOWN" => Trouble::Stopping(server_trouble(&r)),
            Ok(Err(r)) if r.status >= 500 => Trouble::Unanswered(server_trouble(&r)),
            Ok(Err(r)) => return Err(explain(&r, &Target::default())),
            // The address answers, but not as flagd: asking again changes nothing.
            Err(wrong @ (Failure::NotFlagd(_) | Failure::Usage(_))) => return Err(wrong),
            Err(unreachable) => Trouble::Unanswered(unreachable.to_string()),
        };
        outage.pause(trouble, deadline).await?;
    }
}

/// `d` rounded up to whole seconds, as a request's timeout is named in its error.
fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Waits, and tells the user (stderr) when confirmed.
pub async fn report(session: &Session, seq: i64) -> Result<(), Failure> {
    let sentence = interruptible(seq, applied(session, seq)).await?;
    output::note(&sentence);
    Ok(())
}

/// `flagctl wait SEQ`: [`report`], and with `--output json` the server's answer on stdout,
/// which is then the command's only output.
pub async fn command(session: &Session, seq: i64) -> Result<(), Failure> {
    session.refuse_env("wait", "a change's sequence number is the whole server's, whichever environment it changed")?;
    if !session.json() {
        return report(session, seq).await;
    }
    output::json(&interruptible(seq, confirm(session, seq)).await?.answer);
    Ok(())
}

/// `wait` unless SIGINT or SIGTERM comes first: then the command ends (exit 130) saying
/// that the change is stored and how to go on waiting for it.
async fn interruptible<T>(seq: i64, wait: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    Signals::install()?.guard(wait).await.unwrap_or_else(|signal| {
        Err(Failure::Interrupted(format!(
            "{signal} before change seq {seq} was confirmed applied; the change is stored: \
             check with `flagctl wait {seq}`"
        )))
    })
}

fn confirmation(seq: i64, body: &Value) -> String {
    let replicas = body["replicas"].as_array().map_or(0, Vec::len);
    match body["scope"].as_str() {
        Some("cluster") => {
            let noun = if replicas == 1 { "replica" } else { "replicas" };
            format!("applied by every live replica ({replicas} {noun}, seq {seq})")
        }
        _ => server_only(seq),
    }
}

fn server_only(seq: i64) -> String {
    format!("applied by this server (seq {seq}); cluster-wide confirmation needs the cluster view")
}

/// What lagged behind `seq`, from a `WAIT_TIMEOUT` answer: its replicas as `id at seq K`
/// when listed, otherwise the server's own words.
fn lagging(refusal: &Refusal) -> String {
    let body = &refusal.body;
    let replicas = body["error"]["replicas"].as_array().or_else(|| body["replicas"].as_array());
    let behind: Vec<String> = replicas
        .map(|list| {
            list.iter()
                .map(|r| format!("{} at seq {}", output::cell(&r["id"]), output::cell(&r["appliedSeq"])))
                .collect()
        })
        .unwrap_or_default();
    if behind.is_empty() { refusal.message.clone() } else { behind.join(", ") }
}

fn timed_out(seq: i64, timeout: Duration, lagging: &str) -> Failure {
    Failure::WaitTimeout(format!(
        "change seq {seq} was not applied within {} (lagging: {lagging}); the change is stored and will apply \
         when the server catches up: check again with `flagctl wait {seq}` or raise --wait-timeout",
        crate::duration::show(timeout)
    ))
}

/// A 5xx answer in a few words (the server restarting, its database away).
fn server_trouble(r: &Refusal) -> String {
    format!("HTTP {} {}: {}", r.status, r.code, r.message)
}

/// Why an attempt to confirm a change got no confirmation.
#[derive(Debug)]
enum Trouble {
    /// No answer, or a 5xx: the server restarting, a proxy without a backend, its database away.
    Unanswered(String),
    /// The server answering the wait is stopping (`SHUTTING_DOWN`): it did answer, and
    /// saying it did not would send the user looking for a network fault.
    Stopping(String),
}

impl Trouble {
    /// What happened, as the end of the message of a wait given up on.
    fn said(&self) -> String {
        match self {
            Self::Unanswered(detail) => format!("the server did not answer ({detail})"),
            Self::Stopping(detail) => format!("the server was stopping ({detail})"),
        }
    }
}

/// The server not answering while a stored change is waited for: a restart, a proxy
/// without a backend, a database that is briefly away. Giving up at the first error
/// would leave a deploy script believing the change failed, so flagctl asks again with
/// a backoff until the deadline, and then says what is known.
#[derive(Debug)]
struct Outage {
    seq: i64,
    timeout: Duration,
    next_pause: Duration,
    told: bool,
}

impl Outage {
    fn new(seq: i64, timeout: Duration) -> Self {
        Self { seq, timeout, next_pause: RETRY_FIRST, told: false }
    }

    /// After `trouble`: sleeps before the next attempt, or fails once the deadline passed.
    async fn pause(&mut self, trouble: Trouble, deadline: Instant) -> Result<(), Failure> {
        let seq = self.seq;
        let now = Instant::now();
        if now >= deadline {
            return Err(Failure::WaitTimeout(format!(
                "change seq {seq} is stored, but flagctl could not confirm it was applied within {}: {}; check again \
                 with `flagctl wait {seq}` once it is back, or raise --wait-timeout",
                crate::duration::show(self.timeout),
                trouble.said()
            )));
        }
        if !self.told {
            self.told = true;
            let timeout = crate::duration::show(self.timeout);
            output::note(&match &trouble {
                Trouble::Unanswered(detail) => format!(
                    "the server did not answer the wait for seq {seq} ({detail}); the change is stored: asking again \
                     until --wait-timeout ({timeout})"
                ),
                Trouble::Stopping(detail) => format!(
                    "the server answering the wait for seq {seq} is stopping ({detail}); the change is stored: asking \
                     again until --wait-timeout ({timeout}), for another replica or this one once restarted to \
                     confirm it"
                ),
            });
        }
        tokio::time::sleep(self.next_pause.min(deadline - now)).await;
        self.next_pause = (self.next_pause * 2).min(RETRY_MAX);
        Ok(())
    }
}

async fn poll_readyz(session: &Session, seq: i64, deadline: Instant, mut outage: Outage) -> Result<Confirmed, Failure> {
    loop {
        let request = Request::new(Method::GET, "/readyz", Target::default());
        let reply = match session.api.exchange(request).await {
            Ok(Ok(reply)) => reply,
            // `/readyz` answers 503 while the server is not ready: wait that out too.
            Ok(Err(r)) if r.status >= 500 => {
                outage.pause(Trouble::Unanswered(server_trouble(&r)), deadline).await?;
                continue;
            }
            Ok(Err(r)) => return Err(explain(&r, &Target::default())),
            Err(wrong @ (Failure::NotFlagd(_) | Failure::Usage(_))) => return Err(wrong),
            Err(unreachable) => {
                outage.pause(Trouble::Unanswered(unreachable.to_string()), deadline).await?;
                continue;
            }
        };
        let applied = reply.body["appliedSeq"].as_i64().ok_or_else(|| {
            Failure::Server(format!(
                "{}/readyz reports no appliedSeq ({}); upgrade flagd-server to use --wait",
                session.api.base(),
                reply.body
            ))
        })?;
        if applied >= seq {
            // The shape of the wait route's answer, as far as `/readyz` tells it.
            return Ok(Confirmed { sentence: server_only(seq), answer: json!({ "seq": seq, "scope": "server" }) });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(seq, session.wait_timeout, &format!("this server at seq {applied}")));
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}
