//! JSON Logic, compiled once and evaluated many times (placeholder: being written).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::context::EvaluationContext;
use crate::error::LogicError;

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
    pub context: &'a EvaluationContext,
    /// The flag being evaluated (`$flagd.flagKey`, default `fractional` bucketing).
    pub flag_key: &'a str,
}

/// A failure while evaluating (flagd reports these as `GENERAL`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalFailure(pub Cow<'static, str>);

/// A compiled JSON Logic expression.
#[derive(Debug, Clone)]
pub struct Logic {
    source: Value,
}

impl Logic {
    /// Compiles an expression, checking operators, arguments and limits.
    pub fn compile(expr: &Value, _env: &CompileEnv<'_>) -> Result<Self, LogicError> {
        Ok(Self { source: expr.clone() })
    }

    /// The expression as written (with `$ref`s as written).
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Whether the expression's result is truthy (JavaScript truthiness).
    pub fn is_truthy(&self, _scope: &Scope<'_>) -> Result<bool, EvalFailure> {
        Ok(false)
    }

    /// The result as flagd reads a targeting rule: `None` for null/undefined, otherwise
    /// the JavaScript `String(result)` (a variant name).
    pub fn variant_name<'s>(&'s self, _scope: &Scope<'s>) -> Result<Option<Cow<'s, str>>, EvalFailure> {
        Ok(None)
    }
}
