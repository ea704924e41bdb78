//! What an evaluation returns: value, variant, reason, error and metadata.

use serde::Serialize;
use serde_json::{Map, Value};

/// Why a value was served (OpenFeature's standard reasons).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No rules: the fixed fallthrough.
    Static,
    /// A rule, allow list or deny list decided.
    TargetingMatch,
    /// A weighted rollout decided.
    Split,
    /// No rule matched: the fallthrough.
    Default,
    /// The flag is disabled: its off variant.
    Disabled,
    /// Evaluation failed; see the error code.
    Error,
}

impl Reason {
    /// Every reason, in declaration order: `ALL[r.index()] == r`.
    pub const ALL: [Reason; 6] =
        [Self::Static, Self::TargetingMatch, Self::Split, Self::Default, Self::Disabled, Self::Error];

    /// Where this reason stands in [`Reason::ALL`], for tables kept per reason.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The OpenFeature name, e.g. `TARGETING_MATCH`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Static => "STATIC",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Split => "SPLIT",
            Self::Default => "DEFAULT",
            Self::Disabled => "DISABLED",
            Self::Error => "ERROR",
        }
    }
}

/// OpenFeature error codes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag with that key in this environment.
    FlagNotFound,
    /// The flag's definition could not be parsed.
    ParseError,
    /// The flag's value is not of the requested type.
    TypeMismatch,
    /// A rollout needed a company id or targeting key and the context had neither.
    TargetingKeyMissing,
    /// The context is unusable.
    InvalidContext,
    /// Anything else (e.g. targeting named a variant that does not exist).
    General,
}

impl ErrorCode {
    /// The OpenFeature name, e.g. `FLAG_NOT_FOUND`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FlagNotFound => "FLAG_NOT_FOUND",
            Self::ParseError => "PARSE_ERROR",
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            Self::InvalidContext => "INVALID_CONTEXT",
            Self::General => "GENERAL",
        }
    }
}

/// What `FLAG_NOT_FOUND` says about `key`, worded the same by the server, the in-process
/// client and the remote client, so a log search finds every one.
pub fn flag_not_found(key: &str) -> String {
    format!("flag `{key}` not found")
}

/// A flag's result reduced to what was served and why (see [`Ruleset::outcomes`]). Within
/// one ruleset, two successful evaluations of a flag with the same outcome resolve alike.
///
/// [`Ruleset::outcomes`]: crate::Ruleset::outcomes
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// As [`Resolution::variant_index`].
    pub variant_index: Option<usize>,
    /// As [`Resolution::reason`]: [`Reason::Error`] when the evaluation failed.
    pub reason: Reason,
}

/// An evaluation error: code and explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolutionError {
    /// The OpenFeature error code.
    pub code: ErrorCode,
    /// What went wrong, for logs and API callers.
    pub message: String,
}

/// The result of evaluating one flag. It borrows from the ruleset, so producing it does
/// not allocate unless there is an error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution<'r> {
    /// The value served; `None` on error or when the flag has no variant to serve.
    pub value: Option<&'r Value>,
    /// The variant served.
    pub variant: Option<&'r str>,
    /// Where the served variant stands among its flag's variants (the order of
    /// [`Ruleset::variant_names`](crate::Ruleset::variant_names)), so that callers keeping
    /// something per variant index it instead of comparing names.
    #[serde(skip)]
    pub variant_index: Option<usize>,
    /// Why.
    pub reason: Reason,
    /// Set when `reason` is `Error`.
    pub error: Option<ResolutionError>,
    /// The flag's metadata.
    pub metadata: &'r Map<String, Value>,
}

impl<'r> Resolution<'r> {
    /// What was served and why.
    pub fn outcome(&self) -> Outcome {
        Outcome { variant_index: self.variant_index, reason: self.reason }
    }

    /// An error result.
    pub fn failed(code: ErrorCode, message: String, metadata: &'r Map<String, Value>) -> Self {
        Self {
            value: None,
            variant: None,
            variant_index: None,
            reason: Reason::Error,
            error: Some(ResolutionError { code, message }),
            metadata,
        }
    }

    /// The value as `T`, or a `TYPE_MISMATCH` error naming the flag.
    pub fn typed<T: FlagValue<'r>>(self, key: &str) -> Typed<'r, T> {
        match self.value.map(T::from_json) {
            Some(Some(v)) => Typed { value: Some(v), resolution: self },
            Some(None) => {
                let message = format!("flag `{key}` is not of type {}", T::TYPE_NAME);
                Typed { value: None, resolution: Self::failed(ErrorCode::TypeMismatch, message, self.metadata) }
            }
            None => Typed { value: None, resolution: self },
        }
    }
}

/// A typed evaluation: the value if it has the requested type, and the full resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Typed<'r, T> {
    /// The value, `None` on error (including `TYPE_MISMATCH`) or when nothing was served.
    pub value: Option<T>,
    /// Variant, reason, error and metadata.
    pub resolution: Resolution<'r>,
}

impl<T> Typed<'_, T> {
    /// The value, or `default` when there is none.
    pub fn or(self, default: T) -> T {
        self.value.unwrap_or(default)
    }
}

/// Rust types a flag value can be read as.
pub trait FlagValue<'r>: Sized {
    /// Name used in `TYPE_MISMATCH` messages.
    const TYPE_NAME: &'static str;
    /// The value, if it has this type.
    fn from_json(value: &'r Value) -> Option<Self>;
}

impl<'r> FlagValue<'r> for bool {
    const TYPE_NAME: &'static str = "boolean";
    fn from_json(value: &'r Value) -> Option<Self> {
        value.as_bool()
    }
}

impl<'r> FlagValue<'r> for &'r str {
    const TYPE_NAME: &'static str = "string";
    fn from_json(value: &'r Value) -> Option<Self> {
        value.as_str()
    }
}

impl<'r> FlagValue<'r> for i64 {
    const TYPE_NAME: &'static str = "integer";
    fn from_json(value: &'r Value) -> Option<Self> {
        value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
    }
}

impl<'r> FlagValue<'r> for f64 {
    const TYPE_NAME: &'static str = "number";
    fn from_json(value: &'r Value) -> Option<Self> {
        value.as_f64()
    }
}

impl<'r> FlagValue<'r> for &'r Map<String, Value> {
    const TYPE_NAME: &'static str = "object";
    fn from_json(value: &'r Value) -> Option<Self> {
        value.as_object()
    }
}

/// The entries of `metadata` that OFREP answers carry (booleans, strings and numbers), so
/// that whoever reports metadata over OFREP, or beside it, reports the same.
pub fn ofrep_metadata(metadata: &Map<String, Value>) -> Map<String, Value> {
    let scalar = |v: &Value| matches!(v, Value::Bool(_) | Value::String(_) | Value::Number(_));
    metadata.iter().filter(|(_, v)| scalar(v)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn every_reason_stands_at_its_index() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
    }
}
