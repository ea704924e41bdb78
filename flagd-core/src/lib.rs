//! flagd-core (being written).

pub mod context;
pub mod flagd;
pub mod error;
pub mod hash;
pub mod logic;
pub mod model;
pub mod semver;

mod condition;
mod evaluate;
mod problems;
mod resolution;
mod ruleset;

pub use context::EvaluationContext;
pub use error::{ContextError, Error, LogicError, Problem, ValidationError};
pub use model::{Condition, Flag, FlagState, Operator, Rollout, Rule, RulesetSource, Segment, Serve, WeightedVariant};
pub use resolution::{ErrorCode, FlagValue, Reason, Resolution, ResolutionError, Typed};
pub use ruleset::{CompileOptions, Dialect, Ruleset, TOTAL_WEIGHT};
