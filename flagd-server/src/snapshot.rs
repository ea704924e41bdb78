//! The in-memory rulesets evaluation reads: one immutable, compiled snapshot per
//! environment, swapped atomically when a change commits. Evaluation never touches the
//! database and never takes a lock.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use flagd_core::Ruleset;
use tokio::sync::watch;

use crate::http::ofrep_answer::AnswerPieces;
use crate::metrics::{EvaluationCounters, Metrics};

/// One environment's compiled ruleset, as of a change sequence number.
#[derive(Debug)]
pub struct Snapshot {
    /// Environment name.
    pub environment: String,
    /// The change sequence number this snapshot reflects.
    pub seq: i64,
    /// The compiled flags and segments.
    pub ruleset: Ruleset,
    /// Where evaluations of these flags are counted.
    pub counters: EvaluationCounters,
    /// The flags' OFREP answers, pre-serialised in pieces.
    pub answers: AnswerPieces,
}

impl Snapshot {
    /// A snapshot of `ruleset`, with its evaluation counters resolved.
    pub fn new(environment: String, seq: i64, ruleset: Ruleset, metrics: &Metrics) -> Self {
        let counters = EvaluationCounters::new(&environment, &ruleset, metrics);
        // Without pieces (keys that cannot be serialised, which JSON-born keys always can),
        // answers are written the slow way, not refused.
        let answers = AnswerPieces::new(&ruleset).unwrap_or_default();
        Self { environment, seq, ruleset, counters, answers }
    }
}

/// Every environment's current snapshot, and the change sequence number applied so far.
#[derive(Debug)]
pub struct Snapshots {
    current: ArcSwap<HashMap<String, Arc<Snapshot>>>,
    /// The highest change sequence number whose effects are served here. A watch channel,
    /// so change streams and waiting writers wake on it instead of polling.
    applied: watch::Sender<i64>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self { current: ArcSwap::default(), applied: watch::Sender::new(0) }
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
            let newer_present = next.get(&snapshot.environment).is_some_and(|s| s.seq > snapshot.seq);
            if !newer_present {
                next.insert(snapshot.environment.clone(), Arc::clone(&snapshot));
            }
            next
        });
    }

    /// Each environment with the sequence number its snapshot reflects.
    pub fn versions(&self) -> Vec<(String, i64)> {
        self.current.load().values().map(|s| (s.environment.clone(), s.seq)).collect()
    }

    /// Records that every change up to `seq` is served (after its snapshots are installed).
    pub fn mark_applied(&self, seq: i64) {
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
