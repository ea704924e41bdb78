//! Walks a compiled [`Node`] tree against the data, with the semantics of the code
//! json-logic-engine generates for each shape.

use std::borrow::Cow;

use serde_json::Value;

use super::arith;
use super::compile::split_path;
use super::funcs;
use super::node::{ArithOp, CmpOp, IterKind, Node};
use super::value::{Val, js_compare, loose_eq, same_value_zero, strict_eq};
use super::{EvalFailure, Scope};
use crate::context::EvaluationContext;
use crate::hash::Murmur3;

/// What evaluation reads besides the data value: the context behind [`Val::Root`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    pub(crate) ctx: &'a EvaluationContext,
    pub(crate) flag_key: &'a str,
    /// A hasher fed `flag_key` (see [`Scope`]).
    pub(crate) key_hash: Murmur3,
}

impl<'a> Env<'a> {
    pub(crate) fn of(scope: &Scope<'a>) -> Self {
        Self { ctx: scope.context, flag_key: scope.flag_key, key_hash: scope.key_hash }
    }
}

pub(crate) type Res<'a> = Result<Val<'a>, EvalFailure>;

pub(crate) fn fail(message: &'static str) -> EvalFailure {
    EvalFailure(Cow::Borrowed(message))
}

/// Evaluates `node` with `data` as what `var` reads.
pub(crate) fn eval<'a>(node: &'a Node, env: &Env<'a>, data: &Val<'a>, prev: &mut Val<'a>) -> Res<'a> {
    match node {
        Node::Const(v) => Ok(v.reborrow()),
        Node::Array(items) => items.iter().map(|n| eval(n, env, data, prev)).collect::<Result<_, _>>().map(Val::Arr),
        Node::Var { path, default, nullish } => {
            let v = match lookup(env, data, path) {
                Some(v) if !(*nullish && v.is_null()) => v,
                _ => default.as_deref().map_or(Ok(Val::Null), |d| eval(d, env, data, prev))?,
            };
            // The generated code keeps the value in the function's shared `prev`.
            if *nullish {
                *prev = v.clone();
            }
            Ok(v)
        }
        Node::Data => Ok(data.clone()),
        Node::VarDyn(arg) => Ok(var_method(env, data, &eval(arg, env, data, prev)?)),
        Node::If(nodes) => eval_if(nodes, env, data, prev),
        Node::And(nodes) => logical(nodes, env, data, prev, false),
        Node::Or(nodes) => logical(nodes, env, data, prev, true),
        Node::Not(n) => Ok(Val::Bool(!eval(n, env, data, prev)?.truthy())),
        Node::Truthy(n) => Ok(Val::Bool(eval(n, env, data, prev)?.truthy())),
        Node::Cmp(op, args, shared) => compare(*op, args, *shared, env, data, prev),
        Node::In(a, b) => {
            let a = eval(a, env, data, prev)?;
            in_op(&a, &eval(b, env, data, prev)?)
        }
        Node::Cat { parts, skip_null } => cat(parts, *skip_null, env, data, prev),
        Node::Arith(op, nodes) => arith::over_list(*op, nodes, env, data, prev),
        Node::ArithOf(op, n) => {
            let v = eval(n, env, data, prev)?;
            if matches!(op, ArithOp::Add | ArithOp::Sub | ArithOp::Div) {
                *prev = v.clone();
            }
            arith::over_value(*op, &v)
        }
        Node::Iter(kind, list, body) => {
            let list = eval(list, env, data, prev)?;
            if *kind == IterKind::All {
                *prev = list.clone();
            }
            iterate(*kind, &list, body, env)
        }
        Node::Reduce { list, body, init } => reduce(list, body, init.as_deref(), env, data, prev),
        Node::Call(f, args) => funcs::call(*f, args, env, data, prev),
        Node::FractionalFast { attribute, nullish, buckets } => {
            super::fractional::fast(attribute.as_deref(), *nullish, buckets, env, data, prev)
        }
        Node::Fractional(args, buckets) => super::fractional::fractional(args, buckets.as_deref(), env, data, prev),
        Node::Throw(message) => Err(fail(message)),
    }
}

/// Property `key` of `v` as JavaScript reads it (`undefined` is `None`).
pub(crate) fn get_prop<'a>(env: &Env<'a>, v: &Val<'a>, key: &str) -> Option<Val<'a>> {
    match v {
        Val::Root if key == "$flagd" => Some(flagd_object(env)),
        Val::Root => env.ctx.get(key).map(Val::from_json),
        Val::Json(Value::Object(m)) => m.get(key).map(Val::from_json),
        Val::Json(Value::Array(a)) => array_prop(a.len(), key, |i| a.get(i).map(Val::from_json)),
        Val::List(a) => array_prop(a.len(), key, |i| a.get(i).map(Val::reborrow)),
        Val::Arr(a) => array_prop(a.len(), key, |i| a.get(i).cloned()),
        Val::Fields(f) => f.iter().find(|(k, _)| k == key).map(|(_, v)| v.reborrow()),
        Val::Obj(f) => f.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        Val::Str(s) => string_prop(s, key),
        _ => None,
    }
}

fn array_prop<'a>(len: usize, key: &str, item: impl FnOnce(usize) -> Option<Val<'a>>) -> Option<Val<'a>> {
    if key == "length" {
        return Some(Val::Num(len as f64));
    }
    index(key).and_then(item)
}

fn string_prop<'a>(s: &str, key: &str) -> Option<Val<'a>> {
    if key == "length" {
        return Some(Val::Num(s.encode_utf16().count() as f64));
    }
    let unit = s.encode_utf16().nth(index(key)?)?;
    Some(Val::Str(Cow::Owned(String::from_utf16_lossy(&[unit]))))
}

/// A canonical array index (`"0"`, `"12"`, not `"01"` or `"+1"`).
fn index(key: &str) -> Option<usize> {
    let canonical = !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) && (key == "0" || !key.starts_with('0'));
    if canonical { key.parse().ok() } else { None }
}

fn flagd_field<'a>(env: &Env<'a>, key: &str) -> Option<Val<'a>> {
    match key {
        "flagKey" => Some(Val::Str(Cow::Borrowed(env.flag_key))),
        "timestamp" => env.ctx.now().map(|t| Val::Num(t as f64)),
        _ => None,
    }
}

fn flagd_object<'a>(env: &Env<'a>) -> Val<'a> {
    let fields =
        ["flagKey", "timestamp"].into_iter().filter_map(|k| flagd_field(env, k).map(|v| (Cow::Borrowed(k), v)));
    Val::Obj(fields.collect())
}

/// Walks a `var` path; `$flagd.*` is answered without building the `$flagd` object.
pub(crate) fn lookup<'a>(env: &Env<'a>, data: &Val<'a>, path: &[String]) -> Option<Val<'a>> {
    let (mut cur, rest) = match (data, path) {
        (Val::Root, [first, second, rest @ ..]) if first == "$flagd" => (flagd_field(env, second)?, rest),
        (_, [first, rest @ ..]) => (get_prop(env, data, first)?, rest),
        (_, []) => return Some(data.clone()),
    };
    for seg in rest {
        cur = get_prop(env, &cur, seg)?;
    }
    Some(cur)
}

/// The interpreter's `var`: `[key, default]` or `key`; only `undefined` takes the default.
fn var_method<'a>(env: &Env<'a>, data: &Val<'a>, arg: &Val<'a>) -> Val<'a> {
    let (key, default) = match arg.as_array() {
        Some(items) => (items.get(0).map(Val::into_owned), items.get(1).map(Val::into_owned)),
        None => (Some(arg.clone()), None),
    };
    let key = match key {
        None | Some(Val::Null) => return data.clone(),
        Some(Val::Str(s)) if s.is_empty() => return data.clone(),
        Some(k) => k.to_js_string().into_owned(),
    };
    lookup(env, data, &split_path(&key)).or(default).unwrap_or(Val::Null)
}

fn eval_if<'a>(nodes: &'a [Node], env: &Env<'a>, data: &Val<'a>, prev: &mut Val<'a>) -> Res<'a> {
    let mut pairs = nodes.chunks_exact(2);
    for pair in &mut pairs {
        if let [cond, then] = pair {
            if eval(cond, env, data, prev)?.truthy() {
                return eval(then, env, data, prev);
            }
        }
    }
    pairs.remainder().first().map_or(Ok(Val::Null), |otherwise| eval(otherwise, env, data, prev))
}

/// `and`/`or`: the first operand that decides, else the last one.
fn logical<'a>(nodes: &'a [Node], env: &Env<'a>, data: &Val<'a>, prev: &mut Val<'a>, stop_when: bool) -> Res<'a> {
    let mut last = Val::Null;
    for n in nodes {
        last = eval(n, env, data, prev)?;
        *prev = last.clone();
        if last.truthy() == stop_when {
            break;
        }
    }
    Ok(last)
}

/// Comparisons as generated: `(prev = a) < compareCheck(b, prev)`, where `prev` is the
/// function-wide variable, so when `b` itself assigns it (a `var`, say) the check sees
/// `b`'s value rather than `a`'s. Chains also store each checked operand in `prev`.
fn compare<'a>(
    op: CmpOp,
    args: &'a [Node],
    shared: bool,
    env: &Env<'a>,
    data: &Val<'a>,
    prev: &mut Val<'a>,
) -> Res<'a> {
    let Some((first, rest)) = args.split_first() else { return Err(fail("Invalid Arguments")) };
    let mut left = eval(first, env, data, prev)?;
    *prev = left.clone();
    let chain = rest.len() > 1;
    for n in rest {
        let item = eval(n, env, data, prev)?;
        let against = if shared { prev.clone() } else { left.clone() };
        let item = compare_check(item, &against, op.strict())?;
        if chain {
            *prev = item.clone();
        }
        if !holds(op, &left, &item) {
            return Ok(Val::Bool(false));
        }
        left = item;
    }
    Ok(Val::Bool(true))
}

/// json-logic-engine's `compareCheck`: refuses operands that are not numbers unless both
/// are strings or null, and swaps null for a value that compares the way `null` should.
fn compare_check<'a>(item: Val<'a>, prev: &Val<'a>, strict: bool) -> Res<'a> {
    let str_or_null = |v: &Val<'_>| matches!(v, Val::Str(_) | Val::Null);
    if strict || (str_or_null(&item) && str_or_null(prev)) {
        return Ok(item);
    }
    if arith::coerce(&item)?.is_nan() && !prev.is_null() {
        return Err(fail("NaN"));
    }
    if arith::coerce(prev)?.is_nan() {
        return Err(fail("NaN"));
    }
    if prev.is_null() && !item.js_truthy() {
        return Ok(Val::Null);
    }
    if item.is_null() && !prev.js_truthy() {
        return Ok(Val::Num(0.0));
    }
    Ok(item)
}

fn holds(op: CmpOp, a: &Val<'_>, b: &Val<'_>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        CmpOp::Lt => js_compare(a, b) == Some(Less),
        CmpOp::Le => matches!(js_compare(a, b), Some(Less | Equal)),
        CmpOp::Gt => js_compare(a, b) == Some(Greater),
        CmpOp::Ge => matches!(js_compare(a, b), Some(Greater | Equal)),
        CmpOp::Eq => loose_eq(a, b),
        CmpOp::Ne => !loose_eq(a, b),
        CmpOp::StrictEq => strict_eq(a, b),
        CmpOp::StrictNe => !strict_eq(a, b),
    }
}

/// `(b || []).includes(a)`: substring for strings, SameValueZero membership for arrays.
pub(crate) fn in_op<'a>(item: &Val<'_>, within: &Val<'_>) -> Res<'a> {
    if !within.js_truthy() {
        return Ok(Val::Bool(false));
    }
    if let Val::Str(s) = within {
        return Ok(Val::Bool(s.contains(item.to_js_string().as_ref())));
    }
    match within.as_array() {
        Some(items) => Ok(Val::Bool(items.iter().any(|x| same_value_zero(&x, item)))),
        None => Err(fail("TypeError: includes is not a function")),
    }
}

fn cat<'a>(parts: &'a [Node], skip_null: bool, env: &Env<'a>, data: &Val<'a>, prev: &mut Val<'a>) -> Res<'a> {
    let mut out = String::new();
    for p in parts {
        let v = eval(p, env, data, prev)?;
        if !(skip_null && v.is_null()) {
            // Writing into a String cannot fail.
            let _ = v.write_js(&mut out);
        }
    }
    Ok(Val::Str(Cow::Owned(out)))
}

/// Item `i` of an array value, keeping what it borrows.
pub(crate) fn item_at<'a>(list: &Val<'a>, i: usize) -> Option<Val<'a>> {
    match list {
        Val::Json(Value::Array(a)) => a.get(i).map(Val::from_json),
        Val::List(a) => a.get(i).map(Val::reborrow),
        Val::Arr(a) => a.get(i).cloned(),
        _ => None,
    }
}

fn iterate<'a>(kind: IterKind, list: &Val<'a>, body: &'a Node, env: &Env<'a>) -> Res<'a> {
    if kind == IterKind::AllLoose {
        return all_loose(list, body, env);
    }
    let len = match list.as_array() {
        // `all` of an empty array is false, unlike `Array.prototype.every`.
        Some(items) if items.len() == 0 && kind == IterKind::All => return Ok(Val::Bool(false)),
        Some(items) => items.len(),
        None if !list.js_truthy() => 0,
        None => return Err(fail("TypeError: not an array")),
    };
    let mut out = Vec::new();
    for i in 0..len {
        let Some(item) = item_at(list, i) else { break };
        // Each body call is its own generated function, with its own `prev`.
        let result = eval(body, env, &item, &mut Val::Null)?;
        match kind {
            IterKind::Map => out.push(result),
            IterKind::Filter if result.truthy() => out.push(item),
            IterKind::Filter => {}
            IterKind::All if !result.truthy() => return Ok(Val::Bool(false)),
            IterKind::Some | IterKind::None if result.truthy() => return Ok(Val::Bool(kind == IterKind::Some)),
            IterKind::All | IterKind::AllLoose | IterKind::Some | IterKind::None => {}
        }
    }
    Ok(match kind {
        IterKind::Map | IterKind::Filter => Val::Arr(out),
        IterKind::All | IterKind::AllLoose | IterKind::None => Val::Bool(true),
        IterKind::Some => Val::Bool(false),
    })
}

fn reduce<'a>(
    list: &'a Node,
    body: &'a Node,
    init: Option<&'a Node>,
    env: &Env<'a>,
    data: &Val<'a>,
    prev: &mut Val<'a>,
) -> Res<'a> {
    let list = eval(list, env, data, prev)?;
    let init = init.map(|n| eval(n, env, data, prev).and_then(assert_flat)).transpose()?;
    let len = match list.as_array() {
        Some(items) => items.len(),
        None if !list.js_truthy() => 0,
        None => return Err(fail("TypeError: not an array")),
    };
    let (mut acc, start) = match init {
        Some(v) => (v, 0),
        None => (item_at(&list, 0).ok_or_else(|| fail("TypeError: Reduce of empty array with no initial value"))?, 1),
    };
    for i in start..len {
        let Some(current) = item_at(&list, i) else { break };
        let pair = Val::Obj(vec![(Cow::Borrowed("accumulator"), acc), (Cow::Borrowed("current"), current)]);
        acc = assert_flat(eval(body, env, &pair, &mut Val::Null)?)?;
    }
    Ok(acc)
}

/// json-logic-engine (maxDepth 0) refuses accumulators holding arrays or objects.
fn assert_flat(v: Val<'_>) -> Res<'_> {
    let nested = match &v {
        Val::Json(Value::Object(m)) => m.values().any(|x| matches!(x, Value::Array(_) | Value::Object(_))),
        Val::Fields(f) => f.iter().any(|(_, x)| x.is_object_like()),
        Val::Obj(f) => f.iter().any(|(_, x)| x.is_object_like()),
        Val::Root => true,
        other => other.as_array().is_some_and(|a| a.iter().any(|x| x.is_object_like())),
    };
    if nested { Err(fail("Exceeded Allowed Depth")) } else { Ok(v) }
}

/// The interpreter's `all`: falsy → `[]` → false; an empty array → false; a string is
/// walked by character; a value without a length (number, object, `true`) passes.
fn all_loose<'a>(list: &Val<'a>, body: &'a Node, env: &Env<'a>) -> Res<'a> {
    if !list.js_truthy() {
        return Ok(Val::Bool(false));
    }
    if let Some(items) = list.as_array() {
        if items.len() == 0 {
            return Ok(Val::Bool(false));
        }
        return iterate(IterKind::All, list, body, env);
    }
    if let Val::Str(s) = list {
        for ch in s.chars() {
            let item = Val::Str(Cow::Owned(ch.to_string()));
            if !eval(body, env, &item, &mut Val::Null)?.truthy() {
                return Ok(Val::Bool(false));
            }
        }
    }
    Ok(Val::Bool(true))
}
