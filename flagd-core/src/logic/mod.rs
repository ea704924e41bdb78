//! JSON Logic, compiled once and evaluated many times, with the results of
//! json-logic-engine 5 (compiled mode) as used by `@openfeature/flagd-core`.
//!
//! Compilation resolves `$ref`s, enforces [`Limits`], rejects unknown operators and runs
//! deterministic sub-expressions once (as json-logic-engine's `build` does, including
//! failing when one of them throws). Evaluation walks the resulting tree, borrowing from
//! the context and the expression wherever it can.

mod arith;
mod compile;

pub use compile::OPERATORS;
mod eval;
mod fractional;
mod funcs;
mod node;
mod value;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::context::EvaluationContext;
use crate::error::LogicError;
use crate::hash::Murmur3;
use eval::Env;
use node::Node;
use value::Val;

/// Size limits applied when compiling an expression.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of operators and arrays.
    pub max_depth: usize,
    /// Most nodes (operators, literals, array items) in one expression.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_depth: 64, max_nodes: 10_000 }
    }
}

/// What a compilation may refer to besides the expression itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileEnv<'a> {
    /// Size limits.
    pub limits: Limits,
    /// flagd's `$evaluators`, the targets of `{"$ref": name}`.
    pub evaluators: Option<&'a Map<String, Value>>,
}

/// Data an expression reads: the context, plus the injected `$flagd` properties.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The evaluation context (`var` reads from it).
    pub(crate) context: &'a EvaluationContext,
    /// The flag being evaluated (`$flagd.flagKey`, default `fractional` bucketing). Set
    /// only with its hasher below, so the two cannot disagree.
    pub(crate) flag_key: &'a str,
    /// A hasher already fed `flag_key`, which every `fractional` bucketing value follows:
    /// a compiled flag keeps it, so evaluation does not hash the key again.
    key_hash: Murmur3,
}

impl<'a> Scope<'a> {
    /// The scope of an evaluation of flag `flag_key` for `context`.
    pub fn new(context: &'a EvaluationContext, flag_key: &'a str) -> Self {
        Self::with_key_hash(context, flag_key, Murmur3::of(flag_key.as_bytes()))
    }

    /// As [`Scope::new`], with the key's hasher computed once beforehand.
    pub(crate) fn with_key_hash(context: &'a EvaluationContext, flag_key: &'a str, key_hash: Murmur3) -> Self {
        Self { context, flag_key, key_hash }
    }
}

/// A failure while evaluating (flagd reports these as `GENERAL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalFailure(pub Cow<'static, str>);

/// A compiled JSON Logic expression.
#[derive(Debug, Clone)]
pub struct Logic {
    source: Value,
    root: Arc<Node>,
}

impl Logic {
    /// Compiles an expression, checking operators, arguments and limits.
    pub fn compile(expr: &Value, env: &CompileEnv<'_>) -> Result<Self, LogicError> {
        let resolved = compile::resolve(expr, env)?;
        let root = compile::compile(&resolved)?;
        Ok(Self { source: expr.clone(), root: Arc::new(root) })
    }

    /// The expression as written (with `$ref`s as written).
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Whether the expression's result is truthy (JavaScript truthiness: unlike
    /// json-logic-engine's own `if`, an empty array or object counts as true here).
    pub fn is_truthy(&self, scope: &Scope<'_>) -> Result<bool, EvalFailure> {
        let env = Env::of(scope);
        Ok(eval::eval(&self.root, &env, &Val::Root, &mut Val::Null)?.js_truthy())
    }

    /// The result as flagd reads a targeting rule: `None` for null/undefined, otherwise
    /// the JavaScript `String(result)` (a variant name).
    pub fn variant_name<'s>(&'s self, scope: &Scope<'s>) -> Result<Option<Cow<'s, str>>, EvalFailure> {
        let env = Env::of(scope);
        Ok(match eval::eval(&self.root, &env, &Val::Root, &mut Val::Null)? {
            Val::Null => None,
            Val::Str(s) => Some(s),
            other => Some(Cow::Owned(other.to_js_string().into_owned())),
        })
    }
}
