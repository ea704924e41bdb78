//! OFREP answers written from JSON kept with each snapshot. Within one snapshot a flag's
//! answer depends only on the variant served and the reason, so each (variant, reason)
//! item is serialised the first time it is served and an answer is then one copy of bytes
//! per flag of a bulk answer, and for a single flag the kept item itself (a shared
//! [`Bytes`]): no string escaping, no `Value` walk, per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use axum::body::Bytes;
use axum::http::HeaderValue;
use flagd_core::{ErrorCode, Outcome, Reason, Resolution, Ruleset};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::metrics::EvaluationCounters;

/// The cached pieces of every flag of one snapshot, in ruleset order.
#[derive(Debug, Default)]
pub struct AnswerPieces {
    flags: Vec<FlagPieces>,
}

/// A piece of JSON, serialised the first time it is needed.
type Lazy = OnceLock<Bytes>;

#[derive(Debug)]
struct FlagPieces {
    /// `{"key":"…"`.
    head: Box<[u8]>,
    /// Per variant (in the ruleset's variant order) and reason, once served: the whole item.
    items: Vec<[Lazy; Reason::ALL.len()]>,
    /// Once served: `,"metadata":{…}}`, closing the item.
    tail: Lazy,
}

impl AnswerPieces {
    /// Pieces for the flags of `ruleset` (keys now, the rest on first use).
    pub fn new(ruleset: &Ruleset) -> Result<Self, serde_json::Error> {
        let flags = ruleset
            .keys()
            .enumerate()
            .map(|(position, key)| {
                let items = ruleset.variant_names(position).map(|_| Default::default()).collect();
                Ok(FlagPieces { head: head(key)?.into_boxed_slice(), items, tail: OnceLock::new() })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Self { flags })
    }

    /// Appends the OFREP item for flag `key`, at `position` in the ruleset if it exists.
    pub fn write(
        &self,
        position: Option<usize>,
        key: &str,
        r: &Resolution<'_>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<()> {
        match self.kept(position, r) {
            Some(item) => out.extend_from_slice(item?),
            None => write_uncached(key, r, out)?,
        }
        Ok(())
    }

    /// The whole answer for flag `key` alone: the kept item where there is one, shared
    /// rather than copied.
    pub fn single(&self, position: Option<usize>, key: &str, r: &Resolution<'_>) -> serde_json::Result<Bytes> {
        if let Some(item) = self.kept(position, r) {
            return item.cloned();
        }
        let mut out = Vec::with_capacity(256);
        write_uncached(key, r, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// The kept item for `r`, made on first use: `None` for a failure, a flag outside the
    /// snapshot, or a result without a variant (nothing is kept for those).
    fn kept(&self, position: Option<usize>, r: &Resolution<'_>) -> Option<serde_json::Result<&Bytes>> {
        if r.error.is_some() {
            return None;
        }
        let flag = self.flags.get(position?)?;
        let cell = r.variant_index.and_then(|i| flag.items.get(i)?.get(r.reason.index()))?;
        Some(cached(cell, || flag.compose(r)))
    }
}

impl FlagPieces {
    /// The success item for `r`, serialised.
    fn compose(&self, r: &Resolution<'_>) -> serde_json::Result<Vec<u8>> {
        let mut item = Vec::new();
        let tail = cached(&self.tail, || metadata(r.metadata))?;
        write_success(&mut item, &self.head, &value_and_variant(r)?, r.reason, tail);
        Ok(item)
    }
}

/// One success item from its pieces.
fn write_success(out: &mut Vec<u8>, head: &[u8], fields: &[u8], reason: Reason, tail: &[u8]) {
    out.extend_from_slice(head);
    out.extend_from_slice(fields);
    out.extend_from_slice(b",\"reason\":\"");
    out.extend_from_slice(reason.as_str().as_bytes());
    out.push(b'"');
    out.extend_from_slice(tail);
}

/// `{"key":"…"`.
fn head(key: &str) -> serde_json::Result<Vec<u8>> {
    let mut out = b"{\"key\":".to_vec();
    serde_json::to_writer(&mut out, key)?;
    Ok(out)
}

/// The cell's piece, made and kept on first use.
fn cached(cell: &Lazy, make: impl FnOnce() -> serde_json::Result<Vec<u8>>) -> serde_json::Result<&Bytes> {
    if let Some(piece) = cell.get() {
        return Ok(piece);
    }
    let piece = make()?;
    Ok(cell.get_or_init(|| Bytes::from(piece)))
}

/// `,"value":…,"variant":"…"`, each part only when present.
fn value_and_variant(r: &Resolution<'_>) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(value) = r.value {
        out.extend_from_slice(b",\"value\":");
        serde_json::to_writer(&mut out, value)?;
    }
    if let Some(variant) = r.variant {
        out.extend_from_slice(b",\"variant\":");
        serde_json::to_writer(&mut out, variant)?;
    }
    Ok(out)
}

/// `,"metadata":{…}}` with the entries OFREP allows: booleans, strings and numbers.
fn metadata(map: &Map<String, Value>) -> serde_json::Result<Vec<u8>> {
    let mut out = b",\"metadata\":".to_vec();
    serde_json::to_writer(&mut out, &flagd_core::ofrep_metadata(map))?;
    out.push(b'}');
    Ok(out)
}

/// A failed evaluation in OFREP's shape.
#[derive(Serialize)]
struct Failure<'a> {
    key: &'a str,
    #[serde(rename = "errorCode")]
    error_code: ErrorCode,
    #[serde(rename = "errorDetails")]
    error_details: &'a str,
}

/// An item nothing is kept for: a failure, a position outside the snapshot, a success
/// without a variant.
fn write_uncached(key: &str, r: &Resolution<'_>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match &r.error {
        Some(e) => serde_json::to_writer(out, &Failure { key, error_code: e.code, error_details: &e.message }),
        None => {
            write_success(out, &head(key)?, &value_and_variant(r)?, r.reason, &metadata(r.metadata)?);
            Ok(())
        }
    }
}

/// Whole bulk answers of one snapshot by the outcome of every flag (see [`encode`]).
/// Within a snapshot a success item depends on nothing but its flag's outcome, so contexts
/// that come out the same way share one answer and its ETag: a bulk request still evaluates
/// (and counts) every flag but writes and hashes nothing. Answers holding an error are not
/// kept (error messages may name the context), and a snapshot keeps at most
/// [`MAX_BULK_ANSWERS`] answers and [`MAX_BULK_BYTES`] of bodies, so varied contexts cost
/// one lookup more, not memory.
///
/// A kept answer also counts how often it is served, and those servings reach the
/// evaluation counters (one per flag each) only when [`BulkAnswers::settle`] moves them:
/// one atomic add per request instead of one per flag, which was the largest single cost of
/// a bulk request after the system calls. The server settles before every metrics scrape
/// and when a snapshot is dropped, so no serving goes uncounted and counters never go back.
#[derive(Debug, Default)]
pub struct BulkAnswers {
    kept: RwLock<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    by_outcome: FxHashMap<Box<[u32]>, Tallied>,
    bytes: usize,
}

/// A kept answer and the servings of it not yet moved into the evaluation counters.
#[derive(Debug)]
struct Tallied {
    answer: BulkAnswer,
    unsettled: AtomicU64,
}

/// How many bulk answers one snapshot keeps.
pub const MAX_BULK_ANSWERS: usize = 256;
/// How many bytes of bulk answers one snapshot keeps (a few answers of a ruleset with
/// thousands of flags, hundreds of a small one).
pub const MAX_BULK_BYTES: usize = 4 << 20;

/// A bulk answer's body and entity tag.
#[derive(Debug, Clone)]
pub struct BulkAnswer {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl BulkAnswers {
    /// The answer kept for these outcomes, if any, counted as served once more. A request
    /// that finds none counts its evaluations itself (see [`count`]).
    pub fn serve(&self, outcomes: &[u32]) -> Option<BulkAnswer> {
        let kept = self.kept.read().ok()?;
        let tallied = kept.by_outcome.get(outcomes)?;
        tallied.unsettled.fetch_add(1, Ordering::Relaxed);
        Some(tallied.answer.clone())
    }

    /// Moves the servings of every kept answer into `counters`.
    pub fn settle(&self, counters: &EvaluationCounters) {
        let Ok(kept) = self.kept.read() else { return };
        for (outcomes, tallied) in &kept.by_outcome {
            let served = tallied.unsettled.swap(0, Ordering::Relaxed);
            if served > 0 {
                count(counters, outcomes, served);
            }
        }
    }

    /// Keeps an answer for these outcomes, unless that would pass the snapshot's maximum.
    /// The request keeping it has counted itself: it starts with no servings.
    pub fn keep(&self, outcomes: Vec<u32>, answer: BulkAnswer) {
        let Ok(mut kept) = self.kept.write() else { return };
        if kept.by_outcome.contains_key(outcomes.as_slice()) {
            return; // another request for the same outcomes kept it first
        }
        let bytes = kept.bytes + answer.body.len();
        if kept.by_outcome.len() < MAX_BULK_ANSWERS && bytes <= MAX_BULK_BYTES {
            kept.bytes = bytes;
            kept.by_outcome.insert(outcomes.into_boxed_slice(), Tallied { answer, unsettled: AtomicU64::new(0) });
        }
    }
}

/// One flag's [`Outcome`] as a number: which variant was served (its index plus one, 0
/// for none) and why. Two results of one flag with the same outcome and no error have the
/// same OFREP item.
pub fn encode(outcome: Outcome) -> u32 {
    let variant = outcome.variant_index.map_or(0, |i| u32::try_from(i).map_or(u32::MAX >> 3, |i| i + 1));
    (variant << 3) | outcome.reason.index() as u32
}

/// What [`encode`] encodes: the index of the variant served, if any, and the reason's
/// [`Reason::index`].
fn decode(outcome: u32) -> (Option<usize>, usize) {
    let variant = (outcome >> 3).checked_sub(1).and_then(|i| usize::try_from(i).ok());
    (variant, (outcome & 0b111) as usize)
}

/// Counts `n` evaluations of every flag with these outcomes (one per flag, in ruleset order).
pub fn count(counters: &EvaluationCounters, outcomes: &[u32], n: u64) {
    for (position, &outcome) in outcomes.iter().enumerate() {
        let (variant, reason) = decode(outcome);
        counters.add(position, variant, reason, n);
    }
}

/// The HTTP status of a single-flag answer.
pub fn status(r: &Resolution<'_>) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match &r.error {
        None => StatusCode::OK,
        Some(e) if e.code == ErrorCode::FlagNotFound => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use flagd_core::{EvaluationContext, RulesetSource};
    use serde_json::json;

    use super::*;

    fn answer(pieces: &AnswerPieces, ruleset: &Ruleset, key: &str, ctx: &EvaluationContext) -> Value {
        let position = ruleset.position(key);
        let r = match position {
            Some(p) => ruleset.evaluate_at(p, ctx),
            None => ruleset.evaluate(key, ctx),
        };
        let mut out = Vec::new();
        pieces.write(position, key, &r, &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_snapshot_keeps_bulk_answers_up_to_its_limits() {
        let answer =
            |len: usize| BulkAnswer { body: Bytes::from(vec![b' '; len]), etag: HeaderValue::from_static("\"0\"") };
        let kept = BulkAnswers::default();
        for i in 0..MAX_BULK_ANSWERS as u32 + 10 {
            kept.keep(vec![i], answer(10));
        }
        assert!(kept.serve(&[0]).is_some());
        assert!(kept.serve(&[MAX_BULK_ANSWERS as u32 - 1]).is_some());
        assert!(kept.serve(&[MAX_BULK_ANSWERS as u32]).is_none(), "no more than the maximum count");

        let kept = BulkAnswers::default();
        kept.keep(vec![1], answer(MAX_BULK_BYTES - 5));
        kept.keep(vec![2], answer(10));
        kept.keep(vec![3], answer(5));
        assert_eq!(kept.serve(&[1]).map(|a| a.body.len()), Some(MAX_BULK_BYTES - 5));
        assert!(kept.serve(&[2]).is_none(), "no more than the maximum bytes");
        assert!(kept.serve(&[3]).is_some());
    }

    #[test]
    fn an_outcome_gives_back_the_variant_and_reason_it_was_made_of() {
        for variant_index in [None, Some(0), Some(1), Some(1000)] {
            for reason in Reason::ALL {
                let outcome = Outcome { variant_index, reason };
                assert_eq!(decode(encode(outcome)), (variant_index, reason.index()), "{variant_index:?} {reason:?}");
            }
        }
    }

    #[test]
    fn answers_keep_their_shape_once_pieces_are_cached() {
        let source: RulesetSource = serde_json::from_value(json!({"flags": [{
            "key": "portal", "state": "ENABLED",
            "variants": {"on": {"a \"quoted\" value": [1]}, "off": {}}, "offVariant": "off",
            "metadata": {"ticket": "P-1", "weight": 2, "nested": {"dropped": true}},
            "allow": ["42"], "fallthrough": {"variant": "off"}
        }]}))
        .unwrap();
        let ruleset = Ruleset::compile(&source).unwrap();
        let pieces = AnswerPieces::new(&ruleset).unwrap();
        let pilot = EvaluationContext::new().with_company(42);
        let expected = json!({"key": "portal", "value": {"a \"quoted\" value": [1]}, "variant": "on",
            "reason": "TARGETING_MATCH", "metadata": {"ticket": "P-1", "weight": 2}});
        assert_eq!(answer(&pieces, &ruleset, "portal", &pilot), expected);
        assert_eq!(answer(&pieces, &ruleset, "portal", &pilot), expected, "served again from the cache");
        let other = answer(&pieces, &ruleset, "portal", &EvaluationContext::new().with_company(7));
        assert_eq!(
            (&other["variant"], &other["value"], &other["reason"]),
            (&json!("off"), &json!({}), &json!("DEFAULT"))
        );
        let missing = answer(&pieces, &ruleset, "nope", &pilot);
        assert_eq!((&missing["key"], &missing["errorCode"]), (&json!("nope"), &json!("FLAG_NOT_FOUND")));
    }
}
