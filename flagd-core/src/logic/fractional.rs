//! flagd's `fractional`: deterministic bucketing of a value over weighted variants.
//!
//! The bucketing value is hashed straight into [`Murmur3`] (flag key and targeting key in
//! sequence, or the pieces of a `cat` one after another) so no string is built.

use std::fmt;

use serde_json::Value;

use super::EvalFailure;
use super::eval::{Env, Res, eval, fail, item_at, lookup};
use super::node::{Args, ConstBuckets, Node};
use super::value::Val;
use crate::hash::{Murmur3, bucket_of};

/// flagd refuses weight totals above `i32::MAX`.
const MAX_WEIGHT: f64 = 2_147_483_647.0;

/// A [`Murmur3`] that JavaScript's `String()` of values can be written into.
struct HashSink(Murmur3);

impl fmt::Write for HashSink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// How the first argument turned out: a bucketing value (already hashed) or a bucket.
enum First<'a> {
    Hashed(u32),
    Entry(Val<'a>),
    Missing,
}

pub(crate) fn fractional<'a>(
    args: &'a Args,
    buckets: Option<&'a ConstBuckets>,
    env: &Env<'a>,
    data: &Val<'a>,
    prev: &mut Val<'a>,
) -> Res<'a> {
    match args {
        Args::List(nodes) => {
            let Some((first, rest)) = nodes.split_first() else { return at_root(data).map(|()| Val::Null) };
            let first = first_arg(first, env, data, prev)?;
            if let (First::Hashed(hash), Some(b)) = (&first, buckets) {
                at_root(data)?;
                return Ok(pick_const(*hash, b));
            }
            let rest_at = |i: usize| rest.get(i).map(|n| eval(n, env, data, prev)).transpose();
            decide(first, rest.len(), rest_at, env, data)
        }
        Args::Spread(node) => {
            let v = eval(node, env, data, prev)?;
            let Some(items) = v.as_array() else {
                // A single non-array value: one malformed bucket (or a lone bucketing value).
                return at_root(data).map(|()| Val::Null);
            };
            let first = match item_at(&v, 0) {
                None => First::Missing,
                Some(Val::Str(s)) => First::Hashed(hash_str(&s)),
                Some(other) => First::Entry(other),
            };
            let rest_at = |i: usize| Ok(item_at(&v, i + 1));
            let n = items.len().saturating_sub(1);
            decide(first, n, rest_at, env, data)
        }
    }
}

/// flagd's `fractional` logs through the context it is given, which only the root has.
fn at_root(data: &Val<'_>) -> Result<(), EvalFailure> {
    if matches!(data, Val::Root) { Ok(()) } else { Err(fail("Error: Logger not found in context")) }
}

fn hash_str(s: &str) -> u32 {
    let mut h = Murmur3::new();
    h.write(s.as_bytes());
    h.finish()
}

/// Evaluates the first argument, hashing a `cat` piece by piece: the generated code
/// builds `'' + a + b …`, i.e. the concatenation of `String()` of each piece.
fn first_arg<'a>(node: &'a Node, env: &Env<'a>, data: &Val<'a>, prev: &mut Val<'a>) -> Result<First<'a>, EvalFailure> {
    if let Node::Cat { parts, skip_null: false } = node {
        let mut sink = HashSink(Murmur3::new());
        for p in parts {
            // Writing into the hasher cannot fail.
            let _ = eval(p, env, data, prev)?.write_js(&mut sink);
        }
        return Ok(First::Hashed(sink.0.finish()));
    }
    Ok(match eval(node, env, data, prev)? {
        Val::Str(s) => First::Hashed(hash_str(&s)),
        other => First::Entry(other),
    })
}

/// A validated bucket: its variant and weight.
struct Bucket<'a> {
    variant: Val<'a>,
    weight: f64,
}

/// flagd's `toBucketingList` for one entry: `[variant]` or `[variant, integer weight]`.
fn bucket<'a>(entry: &Val<'a>) -> Option<Bucket<'a>> {
    let len = entry.as_array()?.len();
    let variant = item_at(entry, 0)?;
    if !matches!(variant, Val::Str(_) | Val::Num(_) | Val::Bool(_) | Val::Null) {
        return None;
    }
    let weight = match (len, item_at(entry, 1)) {
        (1, _) => 1.0,
        // Negative weights (results of rollout arithmetic) count as zero.
        (2, Some(Val::Num(w))) if w.is_finite() && w.fract() == 0.0 => w.max(0.0),
        _ => return None,
    };
    Some(Bucket { variant, weight })
}

fn decide<'a>(
    first: First<'a>,
    n_rest: usize,
    mut rest_at: impl FnMut(usize) -> Result<Option<Val<'a>>, EvalFailure>,
    env: &Env<'a>,
    data: &Val<'a>,
) -> Res<'a> {
    at_root(data)?;
    let (hash, lead) = match first {
        First::Hashed(h) => (h, None),
        First::Missing => return Ok(Val::Null),
        First::Entry(e) => match default_hash(env) {
            Some(h) => (h, Some(e)),
            None => return Ok(Val::Null),
        },
    };
    let mut entry = |i: usize| -> Result<Option<Val<'a>>, EvalFailure> {
        match (&lead, i) {
            (Some(e), 0) => Ok(Some(e.clone())),
            (Some(_), i) => rest_at(i - 1),
            (None, i) => rest_at(i),
        }
    };
    let count = n_rest + usize::from(lead.is_some());
    let mut total = 0.0;
    for i in 0..count {
        let Some(b) = entry(i)?.as_ref().and_then(bucket) else { return Ok(Val::Null) };
        total += b.weight;
    }
    if total > MAX_WEIGHT {
        return Ok(Val::Null);
    }
    let target = bucket_of(hash, total as u64);
    let mut sum = 0u64;
    for i in 0..count {
        let Some(b) = entry(i)?.as_ref().and_then(bucket) else { return Ok(Val::Null) };
        sum += b.weight as u64;
        if sum > target {
            return Ok(b.variant);
        }
    }
    Ok(Val::Null)
}

/// `flagKey + targetingKey`, or nothing when the targeting key is missing or falsy.
fn default_hash(env: &Env<'_>) -> Option<u32> {
    let key = env.ctx.get(crate::context::TARGETING_KEY).map(Val::from_json).filter(Val::js_truthy)?;
    let mut sink = HashSink(env.key_hash);
    // Writing into the hasher cannot fail.
    let _ = key.write_js(&mut sink);
    Some(sink.0.finish())
}

/// Precomputes the buckets when every argument after the first is a valid literal
/// bucket; otherwise evaluation checks them each time, as flagd does.
pub(crate) fn const_buckets(args: &Args) -> Option<ConstBuckets> {
    let Args::List(nodes) = args else { return None };
    let mut variants = Vec::with_capacity(nodes.len().saturating_sub(1));
    let mut total = 0.0;
    for node in nodes.get(1..)? {
        let Node::Const(entry) = node else { return None };
        let b = bucket(entry)?;
        total += b.weight;
        variants.push((b.variant.into_owned(), total as u64));
    }
    (total <= MAX_WEIGHT).then_some(ConstBuckets { variants, total: total as u64 })
}

fn pick_const<'a>(hash: u32, buckets: &'a ConstBuckets) -> Val<'a> {
    let target = bucket_of(hash, buckets.total);
    match buckets.variants.iter().find(|(_, end)| *end > target) {
        Some((variant, _)) => variant.reborrow(),
        None => Val::Null,
    }
}

/// Picks the specialised node for the common shapes, or the general one.
pub(crate) fn specialise(args: Args) -> Node {
    let Args::List(nodes) = &args else { return Node::Fractional(args, None) };
    let fast = match nodes.first() {
        // No bucketing expression: every argument is a bucket, hashed by targeting key.
        Some(Node::Const(first)) if first.as_array().is_some() => {
            all_buckets(nodes).map(|buckets| (None, true, buckets))
        }
        Some(Node::Cat { parts, skip_null: false }) => match parts.as_slice() {
            [Node::Var { path: key, default: None, nullish: n1 }, Node::Var { path: attr, default: None, nullish }]
                if key.as_ref() == ["$flagd", "flagKey"] && n1 == nullish && attr.len() == 1 =>
            {
                let attribute = Some(attr.clone());
                const_buckets(&args).map(|buckets| (attribute, *nullish, buckets))
            }
            _ => None,
        },
        _ => None,
    };
    match fast {
        Some((attribute, nullish, buckets)) => Node::FractionalFast { attribute, nullish, buckets: Box::new(buckets) },
        None => {
            let buckets = const_buckets(&args).map(Box::new);
            Node::Fractional(args, buckets)
        }
    }
}

/// Buckets from every argument (the first included), when all are valid literals.
fn all_buckets(nodes: &[Node]) -> Option<ConstBuckets> {
    let mut variants = Vec::with_capacity(nodes.len());
    let mut total = 0.0;
    for node in nodes {
        let Node::Const(entry) = node else { return None };
        let b = bucket(entry)?;
        total += b.weight;
        variants.push((b.variant.into_owned(), total as u64));
    }
    (total <= MAX_WEIGHT).then_some(ConstBuckets { variants, total: total as u64 })
}

/// Evaluates a [`Node::FractionalFast`].
pub(crate) fn fast<'a>(
    attribute: Option<&'a [String]>,
    nullish: bool,
    buckets: &'a ConstBuckets,
    env: &Env<'a>,
    data: &Val<'a>,
    prev: &mut Val<'a>,
) -> Res<'a> {
    let hash = match attribute {
        None => {
            at_root(data)?;
            match default_hash(env) {
                Some(h) => h,
                None => return Ok(Val::Null),
            }
        }
        Some(path) => {
            let mut hasher = env.key_hash;
            match write_plain(&mut hasher, env, data, path) {
                Some(value) if nullish => *prev = Val::from_json(value),
                Some(_) => {}
                None => {
                    let value = match lookup(env, data, path) {
                        Some(v) if !(nullish && v.is_null()) => v,
                        _ => Val::Null,
                    };
                    let mut sink = HashSink(hasher);
                    // Writing into the hasher cannot fail.
                    let _ = value.write_js(&mut sink);
                    hasher = sink.0;
                    if nullish {
                        *prev = value;
                    }
                }
            }
            at_root(data)?;
            hasher.finish()
        }
    };
    Ok(pick_const(hash, buckets))
}

/// Integers JavaScript holds exactly, so that `String()` prints their digits.
const JS_SAFE_INTEGER: u64 = 1 << 53;

/// The usual bucketing value, a context attribute that is a string or a safe integer,
/// written into `hasher` as `String()` prints it, without building a `Val` (the general
/// path costs several times the rest of the evaluation). `None`, with nothing written,
/// for anything else.
fn write_plain<'a>(hasher: &mut Murmur3, env: &Env<'a>, data: &Val<'a>, path: &[String]) -> Option<&'a Value> {
    let (Val::Root, [name]) = (data, path) else { return None };
    if name == "$flagd" {
        return None;
    }
    let value = env.ctx.get(name)?;
    let mut digits = itoa::Buffer::new();
    let text = match value {
        Value::String(s) => s.as_str(),
        Value::Number(n) => digits.format(n.as_i64().filter(|i| i.unsigned_abs() < JS_SAFE_INTEGER)?),
        _ => return None,
    };
    hasher.write(text.as_bytes());
    Some(value)
}
