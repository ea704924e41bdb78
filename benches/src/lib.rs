//! Fixtures for the flagd benchmarks (see README.md).
//!
//! Every builder returns a `Result` so that the library itself needs no `unwrap`; the
//! bench binary decides how to fail. The peer engine's fixtures live in the bench binary,
//! because `unleash-yggdrasil` is only a dev-dependency. [`http1`] reads HTTP answers for
//! the load harness's own clients.

pub mod http1;

use flagd_core::{Error, EvaluationContext, Ruleset, RulesetSource};
use serde_json::{Value, json};

/// The company every single-flag benchmark evaluates for.
pub const COMPANY: i64 = 42;
/// Its targeting key.
pub const TARGETING_KEY: &str = "user-1";

/// Keys of the single-flag cases in [`single_flag_ruleset`].
pub mod keys {
    /// Enabled, no rules, no lists.
    pub const STATIC_BOOLEAN: &str = "static-boolean";
    /// Allow list of 1,000 companies that includes [`super::COMPANY`].
    pub const ALLOW_LIST: &str = "allow-list-1000";
    /// 50 % of companies get `on`.
    pub const ROLLOUT_50: &str = "rollout-50";
    /// One rule with `plan in`, `country in` and `appVersion semver_gte`.
    pub const THREE_CONDITIONS: &str = "three-conditions";
    /// One rule with one `plan in` condition.
    pub const ONE_CONDITION: &str = "one-condition";
    /// flagd JSON Logic targeting with `fractional`, in [`super::flagd_fractional_ruleset`].
    pub const FRACTIONAL: &str = "fractionalFlag";
}

/// The context of the single-flag and bulk benchmarks: one company of a pro plan in
/// Germany on app version 2.3.1, so every condition fixture matches.
pub fn context() -> EvaluationContext {
    EvaluationContext::new()
        .with_company(COMPANY)
        .with_targeting_key(TARGETING_KEY)
        .with_attribute("plan", "pro")
        .with_attribute("country", "DE")
        .with_attribute("appVersion", "2.3.1")
}

/// `count` company ids as strings, with [`COMPANY`] in the middle so that a list lookup
/// cannot get lucky by finding it first.
pub fn company_ids(count: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..count).map(|i| (10_000 + i).to_string()).collect();
    if let Some(middle) = ids.get_mut(count / 2) {
        *middle = COMPANY.to_string();
    }
    ids
}

fn rollout(on_percent: f64) -> Value {
    json!({"rollout": {"variants": [
        {"variant": "on", "weight": on_percent},
        {"variant": "off", "weight": ((100.0 - on_percent) * 1000.0).round() / 1000.0}
    ]}})
}

fn three_conditions() -> Value {
    json!([
        {"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]},
        {"attribute": "country", "op": "in", "value": ["DE", "AT", "CH"]},
        {"attribute": "appVersion", "op": "semver_gte", "value": "2.0.0"}
    ])
}

/// The single-flag cases, one flag each, in one ruleset (as the server holds them).
pub fn single_flag_ruleset() -> Result<Ruleset, Error> {
    compile(single_flag_source())
}

/// The source of [`single_flag_ruleset`], in flagd-server's own format.
pub fn single_flag_source() -> Value {
    json!({"flags": [
        {"key": keys::STATIC_BOOLEAN, "state": "ENABLED", "fallthrough": {"variant": "on"}},
        {"key": keys::ALLOW_LIST, "state": "ENABLED", "allow": company_ids(1_000)},
        {"key": keys::ROLLOUT_50, "state": "ENABLED", "fallthrough": rollout(50.0)},
        {"key": keys::THREE_CONDITIONS, "state": "ENABLED",
         "rules": [{"conditions": three_conditions(), "serve": {"variant": "on"}}]},
        {"key": keys::ONE_CONDITION, "state": "ENABLED",
         "rules": [{"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}],
                    "serve": {"variant": "on"}}]}
    ]})
}

/// One flagd flag whose targeting splits 50/50 with `fractional`, bucketing by flag key
/// and company as flagd's own examples do.
pub fn flagd_fractional_ruleset() -> Result<Ruleset, Error> {
    let document = json!({"flags": {keys::FRACTIONAL: {
        "state": "ENABLED",
        "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "targeting": {"fractional": [
            {"cat": [{"var": "$flagd.flagKey"}, {"var": "companyId"}]},
            ["on", 50], ["off", 50]
        ]}
    }}});
    Ruleset::from_flagd_str(&document.to_string())
}

/// `count` flags in the proportions a real environment tends to have: 40 % static (a
/// quarter of those disabled), 20 % allow lists of 20 companies, 20 % percentage
/// rollouts, 10 % attribute-condition rules and 10 % segment rules behind a deny list.
/// Keys are `flag-00000`, `flag-00001`, …
pub fn mixed_source(count: usize) -> Result<RulesetSource, serde_json::Error> {
    let flags: Vec<Value> = (0..count).map(mixed_flag).collect();
    let segments = json!([
        {"key": "pilot", "companies": company_ids(50)},
        {"key": "enterprise", "conditions": [{"attribute": "plan", "op": "in", "value": ["enterprise"]}]}
    ]);
    serde_json::from_value(json!({"flags": flags, "segments": segments}))
}

fn mixed_flag(i: usize) -> Value {
    let key = format!("flag-{i:05}");
    // Slots 4 and 5 differ in whether the benchmark company is listed, so bulk evaluation
    // sees both a hit and a miss.
    let listed: Vec<String> =
        (0..20).map(|n| if i % 10 == 4 && n == 7 { COMPANY.to_string() } else { (i * 20 + n).to_string() }).collect();
    match i % 10 {
        0..=3 => {
            let state = if i % 10 == 3 { "DISABLED" } else { "ENABLED" };
            json!({"key": key, "state": state, "fallthrough": {"variant": (["on", "off"][i % 2])}})
        }
        4 | 5 => json!({"key": key, "state": "ENABLED", "allow": listed}),
        6 | 7 => json!({"key": key, "state": "ENABLED", "fallthrough": rollout((i % 100) as f64)}),
        8 => json!({"key": key, "state": "ENABLED", "variants": {"on": "new", "off": "old"},
                     "rules": [{"conditions": three_conditions(), "serve": {"variant": "on"}}],
                     "fallthrough": rollout(10.0)}),
        _ => json!({"key": key, "state": "ENABLED", "deny": listed,
                     "rules": [{"segments": ["pilot", "enterprise"], "serve": {"variant": "on"}}]}),
    }
}

/// Compiles [`mixed_source`] of `count` flags.
pub fn mixed_ruleset(count: usize) -> Result<Ruleset, Error> {
    let source = mixed_source(count)?;
    Ok(Ruleset::compile(&source)?)
}

fn compile(source: Value) -> Result<Ruleset, Error> {
    let source: RulesetSource = serde_json::from_value(source)?;
    Ok(Ruleset::compile(&source)?)
}

#[cfg(test)]
mod tests {
    use flagd_core::Reason;

    use super::*;

    #[test]
    fn single_flag_fixtures_take_the_path_they_are_named_for() {
        let rs = single_flag_ruleset().unwrap();
        let ctx = context();
        let reason = |key| rs.evaluate(key, &ctx).reason;
        assert_eq!(reason(keys::STATIC_BOOLEAN), Reason::Static);
        assert_eq!(reason(keys::ALLOW_LIST), Reason::TargetingMatch);
        assert_eq!(reason(keys::ROLLOUT_50), Reason::Split);
        assert_eq!(reason(keys::THREE_CONDITIONS), Reason::TargetingMatch);
        assert_eq!(reason(keys::ONE_CONDITION), Reason::TargetingMatch);
    }

    #[test]
    fn the_fractional_fixture_picks_a_variant() {
        let rs = flagd_fractional_ruleset().unwrap();
        assert_eq!(rs.evaluate(keys::FRACTIONAL, &context()).reason, Reason::TargetingMatch);
    }

    #[test]
    fn mixed_source_compiles_and_evaluates_without_errors() {
        let rs = mixed_ruleset(100).unwrap();
        let ctx = context();
        assert_eq!(rs.len(), 100);
        assert!(rs.evaluate_all(&ctx).all(|(_, r)| r.error.is_none()));
    }
}
