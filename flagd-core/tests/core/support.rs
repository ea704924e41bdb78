//! Helpers shared by the integration tests.

use flagd_core::{EvaluationContext, Resolution, Ruleset, RulesetSource};
use serde_json::Value;

/// Compiles a ruleset written as JSON in our own format.
pub fn ruleset(source: Value) -> Ruleset {
    let source: RulesetSource = serde_json::from_value(source).expect("source parses");
    Ruleset::compile(&source).unwrap_or_else(|e| panic!("source compiles: {e}"))
}

/// A context from JSON.
pub fn ctx(value: Value) -> EvaluationContext {
    EvaluationContext::from_json(value).expect("context is valid")
}

/// (variant, reason) of a resolution, for compact assertions.
pub fn outcome<'a>(r: &'a Resolution<'_>) -> (Option<&'a str>, &'static str) {
    (r.variant, r.reason.as_str())
}
