//! Prometheus metrics, kept without locks on the evaluation path: every (environment,
//! flag, variant) has one row of atomic counters (one per reason) in a registry that
//! outlives snapshots; a snapshot resolves its rows once when it is built, so counting
//! an evaluation is an index and an atomic add, and counters never go backwards. A bulk
//! answer served again from a snapshot's cache is counted once on the answer and spread
//! over its flags' rows later (`BulkAnswers` in `http/ofrep_answer.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagd_core::{Reason, Ruleset};

/// One counter per reason, indexed by [`Reason::index`].
type Row = Arc<[AtomicU64; Reason::ALL.len()]>;

/// Environment → flag → variant ("" when none was served) → counters. Nested so that a
/// snapshot finds its existing rows by borrowed names, without building a key per row.
type Registry = BTreeMap<String, BTreeMap<String, BTreeMap<String, Row>>>;

/// The entry for `key`, created empty if missing (the key is copied only then). Always
/// `Some`; an `Option` only because the borrow checker refuses the lookup-or-insert form.
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> Option<&'m mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
}

/// The counter rows of one snapshot's flags, in ruleset order.
#[derive(Debug, Default)]
pub struct EvaluationCounters {
    /// Per flag: its variants' rows (in the ruleset's variant order), then the row for
    /// "no variant".
    flags: Vec<(Vec<Row>, Row)>,
}

impl EvaluationCounters {
    /// Resolves (creating as needed) the rows for every flag of `ruleset`.
    pub fn new(environment: &str, ruleset: &Ruleset, metrics: &Metrics) -> Self {
        let Ok(mut registry) = metrics.registry.lock() else { return Self::default() };
        let Some(environment) = entry(&mut registry, environment) else { return Self::default() };
        let flags = ruleset
            .keys()
            .enumerate()
            .map(|(i, key)| {
                let rows = entry(environment, key)?;
                let variants: Option<Vec<Row>> =
                    ruleset.variant_names(i).map(|v| entry(rows, v).map(|r| Arc::clone(r))).collect();
                Some((variants?, Arc::clone(entry(rows, "")?)))
            })
            .collect::<Option<_>>()
            .unwrap_or_default();
        Self { flags }
    }

    /// Counts one evaluation of the flag at `position` that served the variant at
    /// `variant_index` (see [`flagd_core::Resolution::variant_index`]).
    pub fn record(&self, position: usize, variant_index: Option<usize>, reason: Reason) {
        self.add(position, variant_index, reason.index(), 1);
    }

    /// Counts `n` such evaluations at once; `reason` is a [`Reason::index`].
    pub fn add(&self, position: usize, variant_index: Option<usize>, reason: usize, n: u64) {
        let Some((variants, none)) = self.flags.get(position) else { return };
        let row = variant_index.and_then(|i| variants.get(i)).unwrap_or(none);
        if let Some(cell) = row.get(reason) {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Request classes with their own latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /ofrep/v1/evaluate/flags/{key}`.
    OfrepSingle,
    /// `POST /ofrep/v1/evaluate/flags`.
    OfrepBulk,
    /// `/api/v1/…`.
    Admin,
    /// Everything else.
    Other,
}

impl Route {
    const ALL: [Route; 4] = [Route::OfrepSingle, Route::OfrepBulk, Route::Admin, Route::Other];

    /// The class of a request path.
    pub fn of(path: &str) -> Self {
        match path {
            "/ofrep/v1/evaluate/flags" => Self::OfrepBulk,
            p if p.starts_with("/ofrep/v1/evaluate/flags/") => Self::OfrepSingle,
            p if p.starts_with("/api/") => Self::Admin,
            _ => Self::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::OfrepSingle => "ofrep_single",
            Self::OfrepBulk => "ofrep_bulk",
            Self::Admin => "admin",
            Self::Other => "other",
        }
    }
}

/// Latency bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    by_status: [AtomicU64; 5],
}

/// Process-wide metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: [Histogram; 4],
    reloads: AtomicU64,
}

impl Metrics {
    /// Records one HTTP request.
    pub fn observe_request(&self, route: Route, status: u16, elapsed: Duration) {
        let Some(h) = Route::ALL.iter().position(|r| *r == route).and_then(|i| self.requests.get(i)) else { return };
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(b) = h.buckets.get(i) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if let Some(s) = h.by_status.get(usize::from(status / 100).saturating_sub(1)) {
            s.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a ruleset swap.
    pub fn record_reload(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, given each environment's served sequence number.
    pub fn render(&self, versions: &[(String, i64)]) -> String {
        let mut out = String::new();
        self.render_evaluations(&mut out);
        self.render_requests(&mut out);
        let _ = writeln!(out, "# HELP flagd_ruleset_version Change sequence number of the ruleset being served.");
        let _ = writeln!(out, "# TYPE flagd_ruleset_version gauge");
        for (env, seq) in versions {
            let _ = writeln!(out, "flagd_ruleset_version{{environment=\"{}\"}} {seq}", escape(env));
        }
        let _ = writeln!(out, "# HELP flagd_ruleset_reloads_total Rulesets compiled and swapped in.");
        let _ = writeln!(out, "# TYPE flagd_ruleset_reloads_total counter");
        let _ = writeln!(out, "flagd_ruleset_reloads_total {}", self.reloads.load(Ordering::Relaxed));
        out
    }

    fn render_evaluations(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP flagd_evaluations_total Flag evaluations served, by flag, variant and reason.");
        let _ = writeln!(out, "# TYPE flagd_evaluations_total counter");
        let Ok(registry) = self.registry.lock() else { return };
        let rows = registry.iter().flat_map(|(env, flags)| {
            flags
                .iter()
                .flat_map(move |(flag, variants)| variants.iter().map(move |(variant, row)| (env, flag, variant, row)))
        });
        for (env, flag, variant, row) in rows {
            for (reason, cell) in Reason::ALL.iter().zip(row.iter()) {
                let n = cell.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "flagd_evaluations_total{{environment=\"{}\",flag=\"{}\",variant=\"{}\",reason=\"{}\"}} {n}",
                        escape(env),
                        escape(flag),
                        escape(variant),
                        reason.as_str()
                    );
                }
            }
        }
    }

    fn render_requests(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP flagd_http_request_duration_seconds HTTP request latency by route class.");
        let _ = writeln!(out, "# TYPE flagd_http_request_duration_seconds histogram");
        for (route, h) in Route::ALL.iter().zip(&self.requests) {
            let label = route.label();
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "flagd_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ =
                writeln!(out, "flagd_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {count}");
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "flagd_http_request_duration_seconds_sum{{route=\"{label}\"}} {sum}");
            let _ = writeln!(out, "flagd_http_request_duration_seconds_count{{route=\"{label}\"}} {count}");
        }
        let _ = writeln!(out, "# HELP flagd_http_requests_total HTTP requests by route class and status class.");
        let _ = writeln!(out, "# TYPE flagd_http_requests_total counter");
        for (route, h) in Route::ALL.iter().zip(&self.requests) {
            for (i, n) in h.by_status.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "flagd_http_requests_total{{route=\"{}\",status=\"{}xx\"}} {n}",
                    route.label(),
                    i + 1
                );
            }
        }
    }
}

/// Escapes a label value for the text format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
