//! The crate's errors: one enum for callers, with the detailed kinds it wraps.

use std::fmt;

/// Anything the core can refuse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The definitions were read but are not valid; every problem is listed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The input is not well-formed JSON of the expected shape.
    #[error("cannot read definitions: {0}")]
    Json(#[from] serde_json::Error),
    /// An evaluation context that cannot be used.
    #[error(transparent)]
    Context(#[from] ContextError),
}

/// One thing wrong with a definition: which flag (or segment), where, and what.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The flag (or segment) key the problem belongs to, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// JSON path of the offending value, e.g. `flags.checkout.rules[2].rollout`.
    pub path: String,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A JSON object that names a key twice (see [`crate::find_repeated_key`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` is named twice in {} (line {line}, column {column})", ObjectAt(object))]
pub struct RepeatedKey {
    /// The key.
    pub key: String,
    /// JSON path of the object that names it, e.g. `flags.checkout.variants`; empty for
    /// the top-level object.
    pub object: String,
    /// Line of its second naming, from 1.
    pub line: usize,
    /// Column where that naming ends, from 1.
    pub column: usize,
}

/// An object's path, in words.
struct ObjectAt<'a>(&'a str);

impl fmt::Display for ObjectAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            "" => f.write_str("the top-level object"),
            path => write!(f, "`{path}`"),
        }
    }
}

/// Every problem found in a set of definitions (never just the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The problems, in document order.
    pub problems: Vec<Problem>,
}

impl std::error::Error for ValidationError {}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{n} problem{} in flag definitions", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Why a number cannot be a rollout share (see [`crate::model::percent_milli`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    /// Below 0 or above 100.
    #[error("is outside 0..100 percent")]
    OutOfRange,
    /// Finer than a thousandth of a percent, the finest share a rollout has.
    #[error("has more than three decimals")]
    TooPrecise,
}

/// Why an evaluation context was refused (OFREP `INVALID_CONTEXT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The context is not a JSON object.
    #[error("the evaluation context must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// `companyId` is neither a string nor an integer.
    #[error("companyId must be a string or an integer from -2^63 to 2^64 - 1, got {0}")]
    CompanyId(&'static str),
    /// `targetingKey` is not a string.
    #[error("targetingKey must be a string, got {0}")]
    TargetingKey(&'static str),
}

/// Why a JSON Logic expression could not be compiled. `path` is relative to the
/// expression's root (empty for the root itself), e.g. `if[0].in[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogicError {
    /// An operator that neither JSON Logic nor flagd defines.
    #[error("unknown operator `{op}`")]
    UnknownOperator { op: String, path: String },
    /// Arguments of the wrong number or shape for an operator.
    #[error("bad arguments for `{op}`: {message}")]
    BadArguments { op: String, path: String, message: String },
    /// `$ref` to an evaluator that `$evaluators` does not define.
    #[error("unknown evaluator `{name}` in $ref")]
    UnknownRef { name: String, path: String },
    /// Nesting deeper than the limit.
    #[error("expression nested deeper than {limit} levels")]
    TooDeep { limit: usize, path: String },
    /// More nodes than the limit.
    #[error("expression has more than {limit} nodes")]
    TooLarge { limit: usize, path: String },
}

impl LogicError {
    /// Where in the expression the error is, relative to its root.
    pub fn path(&self) -> &str {
        match self {
            Self::UnknownOperator { path, .. }
            | Self::BadArguments { path, .. }
            | Self::UnknownRef { path, .. }
            | Self::TooDeep { path, .. }
            | Self::TooLarge { path, .. } => path,
        }
    }
}
