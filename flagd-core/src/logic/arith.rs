//! `+ - * / %` as json-logic-engine's generated code computes them: operands pass
//! `precoerceNumber` (objects and NaN throw) and a NaN result throws, except in the
//! `reduce`-based forms used when the argument is a single expression.

use super::EvalFailure;
use super::eval::{Env, Res, eval, fail, item_at};
use super::node::{ArithOp, Node};
use super::value::Val;

/// `precoerceNumber`: NaN and any object (even an empty array) throw.
pub(crate) fn precoerce(v: &Val<'_>) -> Result<(), EvalFailure> {
    match v {
        Val::Num(n) if n.is_nan() => Err(fail("NaN")),
        v if v.is_object_like() => Err(fail("NaN")),
        _ => Ok(()),
    }
}

/// `+precoerceNumber(v)`.
pub(crate) fn coerce(v: &Val<'_>) -> Result<f64, EvalFailure> {
    precoerce(v)?;
    Ok(v.to_number())
}

fn finish<'a>(n: f64) -> Res<'a> {
    if n.is_nan() { Err(fail("NaN")) } else { Ok(Val::Num(n)) }
}

fn apply(op: ArithOp, a: f64, b: f64) -> f64 {
    match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div => a / b,
        ArithOp::Rem => a % b,
    }
}

/// The argument-list form, e.g. `precoerceNumber(+a + +b)`.
pub(crate) fn over_list<'a>(
    op: ArithOp,
    nodes: &'a [Node],
    env: &Env<'a>,
    data: &Val<'a>,
    prev: &mut Val<'a>,
) -> Res<'a> {
    let Some((first, rest)) = nodes.split_first() else {
        return Ok(Val::Num(if op == ArithOp::Mul { 1.0 } else { 0.0 }));
    };
    let mut acc = coerce(&eval(first, env, data, prev)?)?;
    if op == ArithOp::Sub && rest.is_empty() {
        return finish(acc).map(|_| Val::Num(-acc));
    }
    for n in rest {
        let b = coerce(&eval(n, env, data, prev)?)?;
        // Divisors go through `precoerceNumber(b || NaN)`, so zero throws.
        if op == ArithOp::Div && (b == 0.0 || b.is_nan()) {
            return Err(fail("NaN"));
        }
        acc = apply(op, acc, b);
    }
    finish(acc)
}

/// The single-expression form, where the generated code reduces over the value.
pub(crate) fn over_value<'a>(op: ArithOp, v: &Val<'a>) -> Res<'a> {
    let Some(items) = v.as_array() else { return over_scalar(op, v) };
    let len = items.len();
    let item = |i| item_at(v, i).unwrap_or(Val::Null);
    match op {
        ArithOp::Add | ArithOp::Mul => {
            let mut acc = if op == ArithOp::Add { 0.0 } else { 1.0 };
            for i in 0..len {
                acc = apply(op, acc, coerce(&item(i))?);
            }
            Ok(Val::Num(acc))
        }
        ArithOp::Sub if len == 1 => {
            let x = item(0);
            precoerce(&x)?;
            Ok(Val::Num(-x.to_number()))
        }
        ArithOp::Div if len == 1 => {
            let x = item(0);
            if !x.js_truthy() {
                return Err(fail("NaN"));
            }
            Ok(Val::Num(1.0 / coerce(&x)?))
        }
        _ if len < if op == ArithOp::Rem { 2 } else { 1 } => Err(fail("Invalid Arguments")),
        _ => {
            let mut acc = coerce(&item(0))?;
            for i in 1..len {
                let b = item(i);
                if op == ArithOp::Div && !b.js_truthy() {
                    return Err(fail("NaN"));
                }
                acc = apply(op, acc, coerce(&b)?);
            }
            Ok(Val::Num(acc))
        }
    }
}

fn over_scalar<'a>(op: ArithOp, v: &Val<'a>) -> Res<'a> {
    match op {
        ArithOp::Add => finish(v.to_number()),
        ArithOp::Sub => finish(v.to_number()).map(|_| Val::Num(-v.to_number())),
        // `(x).reduce(...)` on a non-array, or `assertSize` refusing it.
        ArithOp::Mul => Err(fail("TypeError: reduce is not a function")),
        ArithOp::Div | ArithOp::Rem => Err(fail("Invalid Arguments")),
    }
}
