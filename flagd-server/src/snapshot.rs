//! The in-memory rulesets evaluation reads: one immutable, compiled snapshot per
//! environment, swapped atomically when a change commits. Evaluation never touches the
//! database and never takes a lock.

use std::collections::HashMap;
use std::sync::Arc;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use flagd_core::{EnvironmentSnapshot, Ruleset};
use tokio::sync::watch;

use crate::http::ofrep_answer::{AnswerPieces, BulkAnswers};
use crate::metrics::{EvaluationCounters, Metrics};

/// One environment's compiled ruleset, as of a change sequence number, with the source it
/// was compiled from (what in-process clients fetch).
#[derive(Debug)]
pub struct Snapshot {
    /// The source, environment name and sequence number.
    pub document: EnvironmentSnapshot,
    /// The compiled flags and segments.
    pub ruleset: Ruleset,
    /// Where evaluations of these flags are counted. Shared with the snapshot this one
    /// revises when only configurations changed (see [`Snapshot::revised`]).
    pub counters: Arc<EvaluationCounters>,
    /// The flags' OFREP answers, pre-serialised in pieces; shared like `counters`.
    pub answers: Arc<AnswerPieces>,
    /// Whole bulk answers, by the outcome of every flag.
    pub bulk: BulkAnswers,
    /// `document` as JSON, serialised on first request: most snapshots are never fetched.
    json: OnceLock<Bytes>,
}

impl Snapshot {
    /// A snapshot of `ruleset`, compiled from `document`, with its evaluation counters resolved.
    pub fn new(document: EnvironmentSnapshot, ruleset: Ruleset, metrics: &Metrics) -> Self {
        let counters = EvaluationCounters::new(&document.environment, &ruleset, metrics);
        // Without pieces (keys that cannot be serialised, which JSON-born keys always can),
        // answers are written the slow way, not refused.
        let answers = AnswerPieces::new(&ruleset).unwrap_or_default();
        Self::with_parts(document, ruleset, Arc::new(counters), Arc::new(answers))
    }

    /// A snapshot whose flags differ from `previous`'s only in their configurations: the
    /// same keys in the same order, with the same variants and metadata. Counter rows and
    /// answer pieces depend on nothing else, so they are shared rather than rebuilt (a
    /// quick operation then costs O(1) here instead of O(flags), and answers already
    /// serialised stay so).
    pub fn revised(previous: &Self, document: EnvironmentSnapshot, ruleset: Ruleset) -> Self {
        Self::with_parts(document, ruleset, Arc::clone(&previous.counters), Arc::clone(&previous.answers))
    }

    fn with_parts(
        document: EnvironmentSnapshot,
        ruleset: Ruleset,
        counters: Arc<EvaluationCounters>,
        answers: Arc<AnswerPieces>,
    ) -> Self {
        Self { document, ruleset, counters, answers, bulk: BulkAnswers::default(), json: OnceLock::new() }
    }

    /// Environment name.
    pub fn environment(&self) -> &str {
        &self.document.environment
    }

    /// The change sequence number this snapshot reflects.
    pub fn seq(&self) -> i64 {
        self.document.seq
    }

    /// The document as JSON.
    pub fn json(&self) -> Result<Bytes, serde_json::Error> {
        if let Some(json) = self.json.get() {
            return Ok(json.clone());
        }
        let json = Bytes::from(serde_json::to_vec(&self.document)?);
        Ok(self.json.get_or_init(|| json).clone())
    }
}

impl Drop for Snapshot {
    /// Bulk answers served from this snapshot are counted here at the latest (requests
    /// still holding it are done by now).
    fn drop(&mut self) {
        self.bulk.settle(&self.counters);
    }
}

/// Every environment's current snapshot, and the change sequence number applied so far.
#[derive(Debug)]
pub struct Snapshots {
    /// By environment name. Only admins add environments, so the map needs no hash built
    /// against chosen keys, and FxHash costs a fraction of std's SipHash per lookup.
    current: ArcSwap<HashMap<String, Arc<Snapshot>, rustc_hash::FxBuildHasher>>,
    /// The highest change sequence number whose effects are served here. A watch channel,
    /// so change streams and waiting writers wake on it instead of polling.
    applied: watch::Sender<i64>,
    /// When the snapshots were last known to match the database (Unix ms): at every
    /// change applied, and at every sync that found nothing new.
    confirmed_at: AtomicI64,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self { current: ArcSwap::default(), applied: watch::Sender::new(0), confirmed_at: AtomicI64::new(0) }
    }
}

impl Snapshots {
    /// The current snapshot of an environment.
    pub fn get(&self, environment: &str) -> Option<Arc<Snapshot>> {
        self.current.load().get(environment).cloned()
    }

    /// Installs a snapshot unless a newer one is already there (two writes may finish in
    /// either order; the later sequence number wins).
    pub fn install(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.current.rcu(|map| {
            let mut next = HashMap::clone(map);
            let newer_present = next.get(snapshot.environment()).is_some_and(|s| s.seq() > snapshot.seq());
            if !newer_present {
                next.insert(snapshot.environment().to_owned(), Arc::clone(&snapshot));
            }
            next
        });
    }

    /// Moves the bulk answers' servings into the evaluation counters (see `BulkAnswers`),
    /// so that a metrics scrape sees every evaluation served so far.
    pub fn settle(&self) {
        for snapshot in self.current.load().values() {
            snapshot.bulk.settle(&snapshot.counters);
        }
    }

    /// Each environment with the sequence number its snapshot reflects.
    pub fn versions(&self) -> Vec<(String, i64)> {
        self.current.load().values().map(|s| (s.environment().to_owned(), s.seq())).collect()
    }

    /// Records that the snapshots match the database as of now.
    pub fn confirm_current(&self) {
        self.confirmed_at(crate::service::now_ms());
    }

    /// Records that the snapshots matched the database at `unix_ms`.
    pub fn confirmed_at(&self, unix_ms: i64) {
        self.confirmed_at.store(unix_ms, Ordering::Relaxed);
    }

    /// Every environment's snapshot.
    pub fn all(&self) -> Vec<Arc<Snapshot>> {
        self.current.load().values().cloned().collect()
    }

    /// How long ago the snapshots were last known to match the database, in ms.
    pub fn age_ms(&self) -> i64 {
        crate::service::now_ms().saturating_sub(self.confirmed_at.load(Ordering::Relaxed))
    }

    /// Records that every change up to `seq` is served (after its snapshots are installed).
    pub fn mark_applied(&self, seq: i64) {
        self.confirm_current();
        self.applied.send_if_modified(|applied| {
            let newer = seq > *applied;
            if newer {
                *applied = seq;
            }
            newer
        });
    }

    /// The highest change sequence number whose effects are served here.
    pub fn applied_seq(&self) -> i64 {
        *self.applied.borrow()
    }

    /// A receiver that wakes whenever the applied sequence number advances.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.applied.subscribe()
    }
}
