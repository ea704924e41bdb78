//! What a caller sees when evaluating flags in our own model.

use flagd_core::{ErrorCode, EvaluationContext, Reason};
use serde_json::json;

use crate::support::{ctx, outcome, ruleset};

#[test]
fn a_new_flag_is_disabled_and_serves_its_off_value() {
    let rs = ruleset(json!({"flags": [{"key": "customer_portal"}]}));
    let r = rs.evaluate("customer_portal", &ctx(json!({"companyId": 42})));
    assert_eq!(r.value, Some(&json!(false)));
    assert_eq!(outcome(&r), (Some("off"), "DISABLED"));
}

#[test]
fn an_enabled_flag_without_rules_is_static() {
    let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED", "fallthrough": {"variant": "on"}}]}));
    let r = rs.evaluate("f", &EvaluationContext::new());
    assert_eq!((r.value, outcome(&r)), (Some(&json!(true)), (Some("on"), "STATIC")));
}

#[test]
fn deny_beats_allow_and_segments() {
    let rs = ruleset(json!({
        "segments": [{"key": "pilot", "companies": ["42", "7"]}],
        "flags": [{"key": "f", "state": "ENABLED", "allow": [42], "deny": ["42"],
                   "rules": [{"segments": ["pilot"], "serve": {"variant": "on"}}]}]
    }));
    assert_eq!(outcome(&rs.evaluate("f", &ctx(json!({"companyId": 42})))), (Some("off"), "TARGETING_MATCH"));
    assert_eq!(outcome(&rs.evaluate("f", &ctx(json!({"companyId": "7"})))), (Some("on"), "TARGETING_MATCH"));
    assert_eq!(outcome(&rs.evaluate("f", &ctx(json!({"companyId": "8"})))), (Some("off"), "DEFAULT"));
}

#[test]
fn allowed_companies_get_the_on_variant_whatever_the_rules() {
    let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED", "allow": ["12", 45],
        "rules": [{"serve": {"variant": "off"}}]}]}));
    assert_eq!(outcome(&rs.evaluate("f", &ctx(json!({"companyId": 45})))), (Some("on"), "TARGETING_MATCH"));
    assert_eq!(outcome(&rs.evaluate("f", &ctx(json!({"companyId": 46})))), (Some("off"), "TARGETING_MATCH"));
}

#[test]
fn rules_apply_in_order_and_the_first_match_decides() {
    let rs = ruleset(json!({"flags": [{"key": "theme", "state": "ENABLED",
    "variants": {"classic": "classic", "dark": "dark", "neon": "neon"}, "offVariant": "classic",
    "rules": [
        {"conditions": [{"attribute": "plan", "op": "equals", "value": "enterprise"}], "serve": {"variant": "dark"}},
        {"conditions": [{"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]}], "serve": {"variant": "neon"}}
    ]}]}));
    let theme = |plan: &str| rs.string("theme", &ctx(json!({"plan": plan}))).value.map(str::to_owned);
    assert_eq!(theme("enterprise").as_deref(), Some("dark"));
    assert_eq!(theme("pro").as_deref(), Some("neon"));
    assert_eq!(theme("free").as_deref(), Some("classic"));
}

#[test]
fn full_and_empty_rollouts_serve_one_side_with_reason_split() {
    let rollout = |pct: f64| json!({"rollout": {"variants": [{"variant": "on", "weight": pct}, {"variant": "off", "weight": 100.0 - pct}]}});
    let rs = ruleset(json!({"flags": [
        {"key": "all", "state": "ENABLED", "fallthrough": rollout(100.0)},
        {"key": "none", "state": "ENABLED", "fallthrough": rollout(0.0)}
    ]}));
    for company in 0..200 {
        let c = ctx(json!({"companyId": company}));
        assert_eq!(outcome(&rs.evaluate("all", &c)), (Some("on"), "SPLIT"));
        assert_eq!(outcome(&rs.evaluate("none", &c)), (Some("off"), "SPLIT"));
    }
}

#[test]
fn a_rollout_without_company_or_targeting_key_is_an_error() {
    let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED",
        "fallthrough": {"rollout": {"variants": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}]}}}]}));
    let r = rs.evaluate("f", &ctx(json!({"plan": "pro"})));
    assert_eq!(r.reason, Reason::Error);
    assert_eq!(r.error.map(|e| e.code), Some(ErrorCode::TargetingKeyMissing));
    let by_user = rs.evaluate("f", &ctx(json!({"targetingKey": "user-1"})));
    assert_eq!(by_user.reason, Reason::Split);
}

#[test]
fn a_rollout_by_an_attribute_the_context_lacks_names_that_attribute() {
    let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED",
        "fallthrough": {"rollout": {"bucketBy": "userId",
            "variants": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}]}}}]}));
    let r = rs.evaluate("f", &ctx(json!({"companyId": 42, "targetingKey": "u1"})));
    let error = r.error.unwrap();
    assert_eq!(error.code, ErrorCode::TargetingKeyMissing);
    assert!(error.message.contains("`userId`") && !error.message.contains("company"), "{}", error.message);
    assert_eq!(rs.evaluate("f", &ctx(json!({"userId": 7}))).reason, Reason::Split);
}

/// Callers write a missing company id as `""`; as a company, it would put every such user
/// in one bucket, all in or all out of a rollout.
#[test]
fn an_empty_company_id_is_no_company() {
    let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED",
        "fallthrough": {"rollout": {"variants": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}]}}}]}));
    let mut served = std::collections::HashSet::new();
    for user in 0..40 {
        let key = format!("user-{user}");
        let with_empty = rs.evaluate("f", &ctx(json!({"companyId": "", "targetingKey": key})));
        assert_eq!(with_empty, rs.evaluate("f", &ctx(json!({"targetingKey": key}))), "{key}");
        served.insert(with_empty.variant);
    }
    assert_eq!(served.len(), 2, "users without a company are spread over the rollout");
    let nobody = rs.evaluate("f", &ctx(json!({"companyId": ""})));
    assert_eq!(nobody.error.map(|e| e.code), Some(ErrorCode::TargetingKeyMissing));
}

#[test]
fn a_rollout_matches_the_flagd_bucket_math() {
    // flagd v2: murmur3("f42") * 100000 >> 32, compared to 12500 (12.5 %).
    let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED",
        "fallthrough": {"rollout": {"variants": [{"variant": "on", "weight": 12.5}, {"variant": "off", "weight": 87.5}]}}}]}));
    for company in 0..500u32 {
        let id = company.to_string();
        let bucket = flagd_core::hash::bucket("f", &id, 100_000);
        let expected = if bucket < 12_500 { "on" } else { "off" };
        assert_eq!(rs.evaluate("f", &ctx(json!({"companyId": id}))).variant, Some(expected));
    }
}

#[test]
fn typed_accessors_report_type_mismatch_and_unknown_flags() {
    let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED", "fallthrough": {"variant": "on"}}]}));
    let c = EvaluationContext::new();
    assert_eq!(rs.boolean("f", &c).value, Some(true));
    let wrong = rs.string("f", &c);
    assert_eq!(wrong.value, None);
    assert_eq!(wrong.resolution.error.map(|e| e.code), Some(ErrorCode::TypeMismatch));
    let missing = rs.boolean("nope", &c);
    assert_eq!(missing.resolution.error.as_ref().map(|e| e.code), Some(ErrorCode::FlagNotFound));
    assert!(missing.or(true), "the caller's default is served");
}

#[test]
fn integer_and_float_accessors() {
    let rs = ruleset(json!({"flags": [
        {"key": "limit", "state": "ENABLED", "variants": {"low": 10, "high": 2.5}, "offVariant": "low", "fallthrough": {"variant": "low"}},
        {"key": "ratio", "state": "ENABLED", "variants": {"low": 10, "high": 2.5}, "offVariant": "low", "fallthrough": {"variant": "high"}}
    ]}));
    let c = EvaluationContext::new();
    assert_eq!(rs.integer("limit", &c).value, Some(10));
    assert_eq!(rs.float("ratio", &c).value, Some(2.5));
    assert_eq!(rs.integer("ratio", &c).resolution.error.map(|e| e.code), Some(ErrorCode::TypeMismatch));
}

#[test]
fn bulk_evaluation_reports_every_flag_in_order() {
    let rs = ruleset(json!({"flags": [
        {"key": "b", "state": "ENABLED", "fallthrough": {"variant": "on"}},
        {"key": "a"},
        {"key": "c", "state": "ENABLED"}
    ]}));
    let c = ctx(json!({"companyId": 1}));
    let all: Vec<(&str, &str)> = rs.evaluate_all(&c).map(|(k, r)| (k, r.reason.as_str())).collect();
    assert_eq!(all, vec![("b", "STATIC"), ("a", "DISABLED"), ("c", "STATIC")]);
}

#[test]
fn metadata_merges_ruleset_and_flag_values() {
    let rs = ruleset(json!({"metadata": {"env": "production", "team": "core"},
        "flags": [{"key": "f", "metadata": {"team": "portal"}}]}));
    let r = rs.evaluate("f", &EvaluationContext::new());
    assert_eq!(r.metadata.get("env"), Some(&json!("production")));
    assert_eq!(r.metadata.get("team"), Some(&json!("portal")));
}

/// (operator, operand, attribute value, expected) — a missing attribute never matches.
#[test]
fn condition_operators() {
    let cases = [
        ("in", json!(["pro", "enterprise"]), json!("pro"), true),
        ("in", json!([1, 2]), json!(2.0), true),
        ("not_in", json!(["pro"]), json!("free"), true),
        ("not_in", json!(["pro"]), json!("pro"), false),
        ("equals", json!("de"), json!("de"), true),
        ("equals", json!(3), json!("3"), false),
        ("not_equals", json!("de"), json!("fr"), true),
        ("starts_with", json!("acme"), json!("acme-corp"), true),
        ("starts_with", json!(["x", "ac"]), json!("acme"), true),
        ("ends_with", json!("@acme.com"), json!("jo@acme.com"), true),
        ("ends_with", json!("@acme.com"), json!(5), false),
        ("contains", json!("beta"), json!("alpha-beta"), true),
        ("contains", json!("beta"), json!(["alpha", "beta"]), true),
        ("contains", json!(3), json!([1, 3]), true),
        ("lt", json!(10), json!(9), true),
        ("<=", json!(10), json!(10), true),
        ("gt", json!(10), json!("11"), true),
        ("gte", json!(10), json!(9.99), false),
        ("semver_gte", json!("2.1.0"), json!("2.10.0"), true),
        ("semver_lt", json!("2.1.0"), json!("v2.0.9"), true),
        ("semver_eq", json!("1.2"), json!("1.2.0"), true),
        ("semver_gt", json!("1.0.0"), json!("1.0.0-beta"), false),
        ("semver_gt", json!("1.0.0"), json!("not a version"), false),
        ("before", json!("2026-01-01T00:00:00Z"), json!("2025-12-31T23:59:59Z"), true),
        ("after", json!("2026-01-01T00:00:00Z"), json!(1_767_225_601), true),
        ("matches", json!("^[a-z]+@acme\\.com$"), json!("jo@acme.com"), true),
        ("matches", json!("^[a-z]+$"), json!("Jo"), false),
    ];
    for (op, operand, attribute, expected) in cases {
        let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED",
            "rules": [{"conditions": [{"attribute": "a", "op": op, "value": operand}], "serve": {"variant": "on"}}]}]}));
        let hit = rs.boolean("f", &ctx(json!({"a": attribute}))).value;
        assert_eq!(hit, Some(expected), "{op} {operand} on {attribute}");
        let missing = rs.boolean("f", &ctx(json!({}))).value;
        assert_eq!(missing, Some(false), "{op} with the attribute missing");
    }
}

#[test]
fn date_conditions_read_the_injected_now() {
    let rs = ruleset(json!({"flags": [{"key": "launch", "state": "ENABLED",
        "rules": [{"conditions": [{"attribute": "$now", "op": "after", "value": "2026-12-01T00:00:00Z"}], "serve": {"variant": "on"}}]}]}));
    let before = EvaluationContext::new().at(1_764_547_200); // 2025-12-01
    let after = EvaluationContext::new().at(1_796_169_600); // 2026-12-02
    assert_eq!(rs.boolean("launch", &before).value, Some(false));
    assert_eq!(rs.boolean("launch", &after).value, Some(true));
    assert_eq!(rs.boolean("launch", &EvaluationContext::new()).value, Some(false), "no clock, no match");
}

#[test]
fn segments_match_by_company_or_by_conditions() {
    let rs = ruleset(json!({
        "segments": [{"key": "internal", "companies": ["1"],
                      "conditions": [{"attribute": "email", "op": "ends_with", "value": "@acme.com"}]}],
        "flags": [{"key": "f", "state": "ENABLED", "rules": [{"segments": ["internal"], "serve": {"variant": "on"}}]}]
    }));
    assert_eq!(rs.boolean("f", &ctx(json!({"companyId": 1}))).value, Some(true));
    assert_eq!(rs.boolean("f", &ctx(json!({"companyId": 2, "email": "a@acme.com"}))).value, Some(true));
    assert_eq!(rs.boolean("f", &ctx(json!({"companyId": 2, "email": "a@other.com"}))).value, Some(false));
}

#[test]
fn rules_can_bucket_by_another_attribute() {
    let rs = ruleset(json!({"flags": [{"key": "f", "state": "ENABLED",
        "fallthrough": {"rollout": {"bucketBy": "userId", "variants": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}]}}}]}));
    let variants: std::collections::HashSet<_> =
        (0..64).filter_map(|u| rs.evaluate("f", &ctx(json!({"companyId": 1, "userId": u}))).variant).collect();
    assert_eq!(variants.len(), 2, "users of one company split when bucketing by userId");
}
