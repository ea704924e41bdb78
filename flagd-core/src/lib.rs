//! flagd-core: the flag model, its validation, and a compiled, company-scoped evaluator.
//!
//! This crate is pure: no I/O, no async, no clock (the time of an evaluation comes in the
//! [`EvaluationContext`]). The server, the Rust client and `flagctl` all build on it.
//!
//! # Main types
//!
//! - [`RulesetSource`] and the [`model`] types: flags, variants, rules, rollouts,
//!   segments, as people write them (serde, camelCase JSON; see [`model`] for the shape).
//! - [`Ruleset`]: one environment's flags and segments, validated and compiled once
//!   ([`Ruleset::compile`]), then shared read-only; [`ValidationError`] lists every
//!   problem with the flag key and a JSON path.
//! - [`EvaluationContext`]: `companyId`, `targetingKey`, attributes and the time.
//! - [`Resolution`]: value, variant, [`Reason`], [`ErrorCode`] and metadata; the typed
//!   accessors ([`Ruleset::boolean`], [`Ruleset::string`], …) add `TYPE_MISMATCH`, and
//!   [`Ruleset::evaluate_all`] evaluates every flag for one context.
//! - [`flagd`]: the flagd flag-definition format ([`Ruleset::from_flagd_str`], export),
//!   with JSON Logic ([`logic`]) and flagd's `fractional`, `sem_ver`, `starts_with`,
//!   `ends_with`.
//! - [`hash`]: flagd's v2 bucketing, the one place that hashes.
//! - [`find_repeated_key`]: finds a JSON object that names a key twice, which serde would
//!   read as its last value.
//!
//! # Example
//!
//! ```
//! use flagd_core::{EvaluationContext, Reason, Ruleset, RulesetSource};
//!
//! let source: RulesetSource = serde_json::from_str(r#"{
//!   "segments": [{"key": "pilot", "companies": ["42"]}],
//!   "flags": [{
//!     "key": "customer_portal",
//!     "state": "ENABLED",
//!     "deny": ["13"],
//!     "rules": [{"segments": ["pilot"], "serve": {"variant": "on"}}],
//!     "fallthrough": {"rollout": {"variants": [
//!       {"variant": "on", "weight": 10}, {"variant": "off", "weight": 90}]}}
//!   }]
//! }"#)?;
//! let ruleset = Ruleset::compile(&source)?;
//!
//! let pilot = EvaluationContext::new().with_company(42);
//! let portal = ruleset.boolean("customer_portal", &pilot);
//! assert_eq!(portal.value, Some(true));
//! assert_eq!(portal.resolution.reason, Reason::TargetingMatch);
//!
//! // Everyone else is bucketed by company: 10 % of companies get the portal.
//! let other = EvaluationContext::new().with_company(7);
//! assert_eq!(ruleset.evaluate("customer_portal", &other).reason, Reason::Split);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod context;
pub mod error;
pub mod flagd;
pub mod hash;
pub mod logic;
pub mod model;
pub mod semver;

mod condition;
mod evaluate;
mod problems;
mod resolution;
mod ruleset;
mod unique_keys;

pub use context::EvaluationContext;
pub use error::{ContextError, Error, LogicError, PercentError, Problem, RepeatedKey, ValidationError};
#[cfg(feature = "openapi")]
pub use model::CompanyId;
pub use model::{
    Condition, EnvironmentConfig, EnvironmentSnapshot, Flag, FlagDefinition, FlagState, Operator, Rollout, Rule,
    RulesetSource, Segment, Serve, WeightedVariant, percent_milli,
};
pub use resolution::{
    ErrorCode, FlagValue, Outcome, Reason, Resolution, ResolutionError, Typed, flag_not_found, ofrep_metadata,
};
pub use ruleset::{CompileOptions, Dialect, Ruleset, TOTAL_WEIGHT, check_keys, is_strict_key};
pub use unique_keys::find_repeated_key;
