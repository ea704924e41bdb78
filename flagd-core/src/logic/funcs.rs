//! Operators that are plain functions of their evaluated argument list: `max`, `min`,
//! `substr`, `merge`, `missing`, `missing_some`, `cat`/`in` with one expression argument,
//! and flagd's `starts_with`, `ends_with` and `sem_ver`.

use std::borrow::Cow;

use super::EvalFailure;
use super::compile::split_path;
use super::eval::{Env, Res, eval, fail, get_prop, in_op, item_at};
use super::node::{Args, Func};
use super::value::Val;
use crate::semver::{SemverOp, Version};

/// Argument lists up to this long are evaluated without allocating.
const INLINE_ARGS: usize = 8;

/// Evaluates the arguments (spreading a single array value) and hands them to `f`.
pub(crate) fn with_args<'a, T>(
    args: &'a Args,
    env: &Env<'a>,
    data: &Val<'a>,
    prev: &mut Val<'a>,
    f: impl FnOnce(&[Val<'a>]) -> Result<T, EvalFailure>,
) -> Result<T, EvalFailure> {
    match args {
        Args::List(nodes) if nodes.len() <= INLINE_ARGS => {
            let mut buf: [Val<'a>; INLINE_ARGS] = Default::default();
            for (slot, n) in buf.iter_mut().zip(nodes) {
                *slot = eval(n, env, data, prev)?;
            }
            f(buf.get(..nodes.len()).unwrap_or_default())
        }
        Args::List(nodes) => f(&nodes.iter().map(|n| eval(n, env, data, prev)).collect::<Result<Vec<_>, _>>()?),
        Args::Spread(node) => {
            let v = eval(node, env, data, prev)?;
            match v.as_array() {
                Some(items) => f(&(0..items.len()).filter_map(|i| item_at(&v, i)).collect::<Vec<_>>()),
                None => f(std::slice::from_ref(&v)),
            }
        }
    }
}

pub(crate) fn call<'a>(f: Func, args: &'a Args, env: &Env<'a>, data: &Val<'a>, prev: &mut Val<'a>) -> Res<'a> {
    if let (Func::Cat, Args::Spread(node)) = (f, args) {
        return cat_method(eval(node, env, data, prev)?);
    }
    with_args(args, env, data, prev, |vals| match f {
        Func::Max | Func::Min => extreme(vals, f == Func::Max),
        Func::Substr => substr(vals),
        Func::Merge => Ok(merge(vals)),
        Func::Missing => Ok(Val::Arr(missing(env, data, vals))),
        Func::MissingSome => missing_some(env, data, vals),
        Func::In => in_op(arg(vals, 0), arg(vals, 1)),
        Func::Cat => cat_method(Val::Arr(vals.to_vec())),
        Func::StartsWith | Func::EndsWith => string_test(vals, data, f == Func::StartsWith),
        Func::SemVer => sem_ver(vals, data),
    })
}

fn arg<'b, 'a>(vals: &'b [Val<'a>], i: usize) -> &'b Val<'a> {
    const NULL: &Val<'static> = &Val::Null;
    vals.get(i).unwrap_or(NULL)
}

/// flagd's operators read their logger from the data, which only the top level has:
/// inside an iterator body they throw.
fn require_root(data: &Val<'_>) -> Result<(), EvalFailure> {
    if matches!(data, Val::Root) { Ok(()) } else { Err(fail("Error: Logger not found in context")) }
}

fn extreme<'a>(vals: &[Val<'a>], max: bool) -> Res<'a> {
    let mut best: Option<f64> = None;
    for v in vals {
        let Val::Num(n) = v else { return Err(fail("Invalid Arguments")) };
        best = Some(match best {
            Some(b) if (max && *n > b) || (!max && *n < b) => *n,
            Some(b) => b,
            None => *n,
        });
    }
    best.map(Val::Num).ok_or_else(|| fail("Invalid Arguments"))
}

/// JavaScript's `ToIntegerOrInfinity`.
fn to_integer(v: &Val<'_>) -> f64 {
    let n = v.to_number();
    if n.is_nan() { 0.0 } else { n.trunc() }
}

fn substr<'a>(vals: &[Val<'a>]) -> Res<'a> {
    let Some(Val::Str(s)) = vals.first() else { return Err(fail("TypeError: string.substr is not a function")) };
    let units: Vec<u16> = s.encode_utf16().collect();
    let from = vals.get(1).map_or(0.0, to_integer);
    let size = units.len() as f64;
    let start = if from < 0.0 { (size + from).max(0.0) } else { from.min(size) };
    let tail = size - start;
    let length = match vals.get(2) {
        None => tail,
        // A negative end trims that many units from the end (json-logic's extension).
        Some(end) if js_negative(end) => match end {
            Val::Num(n) => tail + n.trunc(),
            _ => 0.0,
        },
        Some(end) => to_integer(end),
    };
    let length = length.clamp(0.0, tail);
    let (start, end) = (start as usize, (start + length) as usize);
    let piece = units.get(start..end).unwrap_or_default();
    Ok(Val::Str(Cow::Owned(String::from_utf16_lossy(piece))))
}

fn js_negative(v: &Val<'_>) -> bool {
    super::value::js_compare(v, &Val::Num(0.0)) == Some(std::cmp::Ordering::Less)
}

fn merge<'a>(vals: &[Val<'a>]) -> Val<'a> {
    let mut out = Vec::new();
    for v in vals {
        match v.as_array() {
            Some(_) => out.extend((0..).map_while(|i| item_at(v, i))),
            None => out.push(v.clone()),
        }
    }
    Val::Arr(out)
}

fn missing<'a>(env: &Env<'a>, data: &Val<'a>, keys: &[Val<'a>]) -> Vec<Val<'a>> {
    keys.iter().filter(|k| !present(env, data, &k.to_js_string())).cloned().collect()
}

fn present<'a>(env: &Env<'a>, data: &Val<'a>, key: &str) -> bool {
    let mut cur = data.clone();
    for seg in split_path(key) {
        if !cur.js_truthy() {
            return false;
        }
        match get_prop(env, &cur, &seg) {
            Some(v) => cur = v,
            None => return false,
        }
    }
    true
}

fn missing_some<'a>(env: &Env<'a>, data: &Val<'a>, vals: &[Val<'a>]) -> Res<'a> {
    let need = arg(vals, 0);
    let Some(options) = vals.get(1).filter(|o| o.as_array().is_some()) else {
        return Err(fail("TypeError: options is not an array"));
    };
    let keys: Vec<Val<'a>> = (0..).map_while(|i| item_at(options, i)).collect();
    let found = missing(env, data, &keys);
    let present = (keys.len() - found.len()) as f64;
    let enough = matches!(
        super::value::js_compare(&Val::Num(present), need),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    );
    Ok(Val::Arr(if enough { Vec::new() } else { found }))
}

/// The interpreter's `cat` on one value: strings pass, arrays concatenate skipping null.
fn cat_method<'a>(v: Val<'a>) -> Res<'a> {
    match &v {
        Val::Str(_) => Ok(v),
        Val::Null => Err(fail("TypeError: Cannot read properties of null (reading 'toString')")),
        _ => match v.as_array() {
            Some(items) => {
                let mut out = String::new();
                for item in items.iter().filter(|i| !i.is_null()) {
                    // Writing into a String cannot fail.
                    let _ = item.write_js(&mut out);
                }
                Ok(Val::Str(Cow::Owned(out)))
            }
            None => Ok(Val::Str(Cow::Owned(v.to_js_string().into_owned()))),
        },
    }
}

fn string_test<'a>(vals: &[Val<'a>], data: &Val<'a>, starts: bool) -> Res<'a> {
    require_root(data)?;
    Ok(match vals {
        [Val::Str(s), Val::Str(affix)] => {
            Val::Bool(if starts { s.starts_with(affix.as_ref()) } else { s.ends_with(affix.as_ref()) })
        }
        _ => Val::Null,
    })
}

fn sem_ver<'a>(vals: &[Val<'a>], data: &Val<'a>) -> Res<'a> {
    require_root(data)?;
    let [a, op, b] = vals else { return Ok(Val::Null) };
    let (Some(a), Some(b)) = (Version::parse_lenient(&a.to_js_string()), Version::parse_lenient(&b.to_js_string()))
    else {
        return Ok(Val::Null);
    };
    Ok(SemverOp::parse(&op.to_js_string()).map_or(Val::Null, |op| Val::Bool(op.holds(&a, &b))))
}
