//! Invalid definitions are refused with every problem, each naming the flag and path.

use flagd_core::{Dialect, Ruleset, RulesetSource, check_keys};
use serde_json::json;

fn problems(source: serde_json::Value) -> Vec<(Option<String>, String, String)> {
    let source: RulesetSource = serde_json::from_value(source).expect("parses");
    let err = Ruleset::compile(&source).expect_err("must be refused");
    err.problems.into_iter().map(|p| (p.key, p.path, p.message)).collect()
}

#[test]
fn every_problem_is_reported_with_flag_and_path() {
    let found = problems(json!({"flags": [
        {"key": "checkout", "variants": {"a": "x", "b": 2}, "offVariant": "a",
         "rules": [
            {"serve": {"variant": "a"}},
            {"serve": {"variant": "zzz"}},
            {"serve": {"rollout": {"variants": [{"variant": "a", "weight": 60}, {"variant": "b", "weight": 30}]}}},
            {"serve": {"rollout": {"variants": [{"variant": "a", "weight": 100}], "bucketBy": ""}}}
         ]},
        {"key": "Bad Key"},
        {"key": "dup"}, {"key": "dup"},
        {"key": "re", "rules": [{"conditions": [{"attribute": "email", "op": "matches", "value": "(unclosed"}], "serve": {"variant": "on"}}]},
        {"key": "logic", "fallthrough": {"targeting": {"if": [{"bogus": [1]}, "on", "off"]}},
         "rules": [{"logic": {"and": [true, {"nope": 1}]}, "serve": {"variant": "on"}}]}
    ], "segments": [{"key": "s", "conditions": [{"attribute": "", "op": "equals", "value": 1}]}]}));
    let has = |path: &str, needle: &str| found.iter().any(|(_, p, m)| p == path && m.contains(needle));
    assert!(has("flags.checkout.variants.b", "mixed variant types"), "{found:#?}");
    assert!(has("flags.checkout.rules[1].serve.variant", "unknown variant `zzz`"), "{found:#?}");
    assert!(has("flags.checkout.rules[2].serve.rollout", "sum to 90%"), "{found:#?}");
    assert!(has("flags.checkout.rules[3].serve.rollout.bucketBy", "must not be empty"), "{found:#?}");
    assert!(has("flags.Bad Key.key", "invalid key"), "{found:#?}");
    assert!(has("flags.dup", "duplicate flag key"), "{found:#?}");
    assert!(has("flags.re.rules[0].conditions[0].value", "invalid regular expression"), "{found:#?}");
    assert!(has("flags.logic.fallthrough.targeting.if[0]", "bogus"), "{found:#?}");
    assert!(has("flags.logic.rules[0].logic.and[1]", "nope"), "{found:#?}");
    assert!(has("segments.s.conditions[0].attribute", "must not be empty"), "{found:#?}");
    assert!(found.iter().filter(|(k, ..)| k.as_deref() == Some("checkout")).count() >= 3);
}

#[test]
fn keys_alone_are_checked_as_compiling_checks_them() {
    let long = "k".repeat(129);
    let source = json!({
        "flags": [{"key": "dup"}, {"key": "dup"}, {"key": long}, {"key": "Bad Key"}],
        "segments": [{"key": "s"}, {"key": "s"}]
    });
    let compiled = problems(source.clone());
    let source: RulesetSource = serde_json::from_value(source).expect("parses");
    let flags = source.flags.iter().map(|f| f.definition.key.as_str());
    let segments = source.segments.iter().map(|s| s.key.as_str());
    let err = check_keys(flags, segments, Dialect::Native).expect_err("must be refused");
    let keys: Vec<_> = err.problems.into_iter().map(|p| (p.key, p.path, p.message)).collect();
    assert_eq!(keys.len(), 4, "{keys:#?}");
    for problem in &keys {
        assert!(compiled.contains(problem), "{problem:?} not among {compiled:#?}");
    }
    assert!(check_keys(["a", "b"], ["a"], Dialect::Native).is_ok(), "a flag and a segment may share a key");
}

#[test]
fn rollout_weights_take_at_most_three_decimals_within_range() {
    let found = problems(json!({"flags": [{"key": "f", "fallthrough": {"rollout": {"variants": [
        {"variant": "on", "weight": 12.3456}, {"variant": "off", "weight": 87.6544}]}}},
        {"key": "g", "fallthrough": {"rollout": {"variants": [{"variant": "on", "weight": -5}, {"variant": "off", "weight": 105}]}}}
    ]}));
    assert!(
        found
            .iter()
            .any(|(_, p, m)| p == "flags.f.fallthrough.rollout.variants[0].weight" && m.contains("three decimals"))
    );
    assert!(
        found.iter().any(|(_, p, m)| p == "flags.g.fallthrough.rollout.variants[0].weight" && m.contains("outside"))
    );
}

#[test]
fn unknown_segments_and_lists_without_on_variant_are_refused() {
    let found = problems(json!({"flags": [
        {"key": "f", "rules": [{"segments": ["ghost"], "serve": {"variant": "on"}}]},
        {"key": "g", "variants": {"x": "1", "y": "2"}, "offVariant": "x", "allow": ["1"]}
    ]}));
    assert!(found.iter().any(|(_, p, m)| p == "flags.f.rules[0].segments[0]" && m.contains("unknown segment")));
    assert!(found.iter().any(|(_, p, m)| p == "flags.g.allow" && m.contains("onVariant")));
}

#[test]
fn a_valid_source_compiles_and_the_error_text_lists_problems() {
    let source: RulesetSource = serde_json::from_value(json!({"flags": [{"key": "a b"}, {"key": "C"}]})).unwrap();
    let text = Ruleset::compile(&source).unwrap_err().to_string();
    assert!(text.starts_with("2 problems"), "{text}");
    assert!(text.contains("flags.a b.key") && text.contains("flags.C.key"), "{text}");
}
