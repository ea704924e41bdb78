//! What a getter reports: the value (or the caller's default), the variant, the reason and
//! the error, in one shape for both modes.

use flagd_core::{ErrorCode, Reason, Resolution};
use serde_json::Value;

/// The outcome of one evaluation. `value` is always usable: on any error it is the
/// default the caller passed, and `error_code` says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Details<T> {
    /// The flag's value, or the caller's default on error.
    pub value: T,
    /// The variant served, if any.
    pub variant: Option<String>,
    /// Why this value: `Reason::Error` when the default was used.
    pub reason: Reason,
    /// The OpenFeature error code when the default was used.
    pub error_code: Option<ErrorCode>,
    /// What went wrong, for logs.
    pub error_message: Option<String>,
}

impl<T> Details<T> {
    /// The default, with the error that made it necessary.
    pub fn failed(default: T, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            value: default,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            error_message: Some(message.into()),
        }
    }

    /// Reads a served value as `T`, or the default with `TYPE_MISMATCH`.
    pub(crate) fn served(key: &str, value: Option<&Value>, variant: Option<&str>, reason: Reason, default: T) -> Self
    where
        T: FlagType,
    {
        match value.map(T::from_value) {
            Some(Some(value)) => {
                Self { value, variant: variant.map(str::to_owned), reason, error_code: None, error_message: None }
            }
            Some(None) => {
                Self::failed(default, ErrorCode::TypeMismatch, format!("flag `{key}` is not of type {}", T::TYPE_NAME))
            }
            // Served nothing (a flag without an off variant while disabled): the default, no error.
            None => Self {
                value: default,
                variant: variant.map(str::to_owned),
                reason,
                error_code: None,
                error_message: None,
            },
        }
    }

    /// A flagd-core resolution read as `T`.
    pub(crate) fn from_resolution(key: &str, r: &Resolution<'_>, default: T) -> Self
    where
        T: FlagType,
    {
        match &r.error {
            Some(e) => Self::failed(default, e.code, e.message.clone()),
            None => Self::served(key, r.value, r.variant, r.reason, default),
        }
    }
}

/// Rust types a flag value can be read as, owned (the borrowed forms are on
/// [`flagd_core::Ruleset`]).
pub trait FlagType: Sized {
    /// Name used in `TYPE_MISMATCH` messages.
    const TYPE_NAME: &'static str;
    /// The value, if it has this type.
    fn from_value(value: &Value) -> Option<Self>;
}

impl FlagType for bool {
    const TYPE_NAME: &'static str = "boolean";
    fn from_value(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl FlagType for String {
    const TYPE_NAME: &'static str = "string";
    fn from_value(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_owned)
    }
}

impl FlagType for i64 {
    const TYPE_NAME: &'static str = "integer";
    fn from_value(value: &Value) -> Option<Self> {
        <i64 as flagd_core::FlagValue>::from_json(value)
    }
}

impl FlagType for f64 {
    const TYPE_NAME: &'static str = "number";
    fn from_value(value: &Value) -> Option<Self> {
        value.as_f64()
    }
}

impl FlagType for Value {
    const TYPE_NAME: &'static str = "any JSON";
    fn from_value(value: &Value) -> Option<Self> {
        Some(value.clone())
    }
}

/// Reads an OpenFeature reason name; other servers may send reasons flagd does not
/// define, which read as `DEFAULT`.
pub(crate) fn reason_named(name: &str) -> Reason {
    const REASONS: [Reason; 6] =
        [Reason::Static, Reason::TargetingMatch, Reason::Split, Reason::Default, Reason::Disabled, Reason::Error];
    REASONS.into_iter().find(|r| r.as_str() == name).unwrap_or(Reason::Default)
}

/// Reads an OpenFeature error code name; unknown ones read as `GENERAL`.
pub(crate) fn error_code_named(name: &str) -> ErrorCode {
    const CODES: [ErrorCode; 6] = [
        ErrorCode::FlagNotFound,
        ErrorCode::ParseError,
        ErrorCode::TypeMismatch,
        ErrorCode::TargetingKeyMissing,
        ErrorCode::InvalidContext,
        ErrorCode::General,
    ];
    CODES.into_iter().find(|c| c.as_str() == name).unwrap_or(ErrorCode::General)
}
