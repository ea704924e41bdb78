//! Cross-module tests: cases whose expected outcomes were recorded from
//! `@openfeature/flagd-core` 4.0.1 (json-logic-engine 5.0.7, compiled mode) in node.

use serde_json::{Value, json};

use super::*;

/// One JSON line per case: `[logic, context, outcome]`, where the outcome is `B` (build
/// throws), `E` (evaluation throws), `N` (null/undefined) or `S:<String(result)>`.
const REFERENCE: &str = include_str!("reference_cases.jsonl");

fn outcome(logic: &Value, data: &Value) -> String {
    let Ok(compiled) = Logic::compile(logic, &CompileEnv::default()) else { return "B".into() };
    let ctx = EvaluationContext::from_json(data.clone()).unwrap();
    let scope = Scope::new(&ctx, "flag");
    match compiled.variant_name(&scope) {
        Err(_) => "E".into(),
        Ok(None) => "N".into(),
        Ok(Some(s)) => format!("S:{s}"),
    }
}

#[test]
fn matches_recorded_reference_outcomes() {
    let mut failures = Vec::new();
    let mut count = 0;
    for line in REFERENCE.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let want = case[2].as_str().unwrap();
        let got = outcome(&case[0], &case[1]);
        count += 1;
        if got != want {
            failures.push(format!("{}\n    want {want:?}\n    got  {got:?}", case[0]));
        }
    }
    assert!(count > 200);
    assert!(failures.is_empty(), "{} of {count} cases differ:\n{}", failures.len(), failures.join("\n"));
}

fn eval_with(logic: Value, ctx: &EvaluationContext, flag: &str) -> Option<String> {
    let compiled = Logic::compile(&logic, &CompileEnv::default()).unwrap();
    compiled.variant_name(&Scope::new(ctx, flag)).unwrap().map(Cow::into_owned)
}

#[test]
fn fractional_flagd_vectors() {
    let ctx = EvaluationContext::new();
    let buckets = json!([["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]);
    let with = |value: &str| {
        let mut args = vec![json!(value)];
        args.extend(buckets.as_array().unwrap().iter().cloned());
        eval_with(json!({ "fractional": args }), &ctx, "ignored")
    };
    assert_eq!(with("fractional-flagjack").as_deref(), Some("hearts"));
    assert_eq!(with("fractional-flagqueen").as_deref(), Some("spades"));
    // The default bucketing value is flagKey + targetingKey.
    let ctx = EvaluationContext::new().with_targeting_key("jack");
    let logic = json!({ "fractional": buckets });
    assert_eq!(eval_with(logic, &ctx, "fractional-flag").as_deref(), Some("hearts"));
    let by_cat = json!({"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
        ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]});
    assert_eq!(eval_with(by_cat, &ctx, "fractional-flag").as_deref(), Some("hearts"));
}

/// The specialised `fractional` (a `cat` of the flag key and one attribute) hashes strings
/// and safe integers straight from the context; every value must land in the bucket the
/// general node picks. A third, empty `cat` part hashes the same bytes and keeps the
/// expression off the specialised node.
#[test]
fn specialised_fractional_buckets_every_value_as_the_general_node_does() {
    let buckets = json!([["a", 1], ["b", 1], ["c", 1], ["d", 1], ["e", 1], ["f", 1], ["g", 1]]);
    let logic = |parts: Value| {
        let mut args = vec![json!({ "cat": parts })];
        args.extend(buckets.as_array().unwrap().iter().cloned());
        json!({ "fractional": args })
    };
    let fast = logic(json!([{"var": "$flagd.flagKey"}, {"var": "v"}]));
    let general = logic(json!([{"var": "$flagd.flagKey"}, {"var": "v"}, ""]));
    let values = [
        json!("acme"),
        json!(""),
        json!(42),
        json!(-7),
        json!(0),
        json!(9_007_199_254_740_991_u64),
        json!(9_007_199_254_740_993_u64),
        json!(-9_007_199_254_740_993_i64),
        json!(u64::MAX),
        json!(1.5),
        json!(42.0),
        json!(1e21),
        json!(true),
        Value::Null,
        json!([1, 2]),
        json!({"a": 1}),
    ];
    for value in values {
        let ctx = EvaluationContext::new().with_attribute("v", value.clone());
        for flag in ["f", "portal", "a-longer-flag-key"] {
            let want = eval_with(general.clone(), &ctx, flag);
            assert!(want.is_some(), "{value} picked nothing");
            assert_eq!(eval_with(fast.clone(), &ctx, flag), want, "{value} for flag {flag}");
        }
    }
}

#[test]
fn flagd_timestamp_and_borrowed_results() {
    let ctx = EvaluationContext::new().with_attribute("name", "ann").at(1_700_000_000);
    let scope = Scope::new(&ctx, "f");
    let ts = Logic::compile(&json!({"var": "$flagd.timestamp"}), &CompileEnv::default()).unwrap();
    assert_eq!(ts.variant_name(&scope).unwrap().as_deref(), Some("1700000000"));
    let name = Logic::compile(&json!({"if": [true, {"var": "name"}, "x"]}), &CompileEnv::default()).unwrap();
    assert!(matches!(name.variant_name(&scope).unwrap(), Some(Cow::Borrowed("ann"))));
    let lit = Logic::compile(&json!({"if": [{"var": "name"}, "lit", "x"]}), &CompileEnv::default()).unwrap();
    assert!(matches!(lit.variant_name(&scope).unwrap(), Some(Cow::Borrowed("lit"))));
    let no_time = EvaluationContext::new();
    let scope = Scope::new(&no_time, "f");
    assert_eq!(ts.variant_name(&scope).unwrap(), None);
}

#[test]
fn truthiness_of_results() {
    let ctx = EvaluationContext::new().with_attribute("tier", "gold");
    let scope = Scope::new(&ctx, "f");
    let cases = [
        (json!({"==": [{"var": "tier"}, "gold"]}), true),
        (json!({"var": "missing"}), false),
        (json!({"in": ["ol", {"var": "tier"}]}), true),
        (json!({"merge": []}), true),
    ];
    for (logic, want) in cases {
        let compiled = Logic::compile(&logic, &CompileEnv::default()).unwrap();
        assert_eq!(compiled.is_truthy(&scope).unwrap(), want, "{logic}");
    }
}

#[test]
fn errors_carry_paths() {
    let env = CompileEnv::default();
    let err = Logic::compile(&json!({"if": [{"in": [1, {"nope": 2}]}, 1, 2]}), &env).unwrap_err();
    assert!(matches!(&err, LogicError::UnknownOperator { op, .. } if op == "nope"));
    assert_eq!(err.path(), "if[0].in[1]");
    let err = Logic::compile(&json!({"and": [true, {"/": [{"var": "x"}, 0]}]}), &env).unwrap_err();
    assert!(matches!(err, LogicError::BadArguments { .. }));
    assert_eq!(err.path(), "and[1]./");
    let err = Logic::compile(&json!([1, {"a": 1, "b": 2}]), &env).unwrap_err();
    assert_eq!(err.path(), "[1]");
}

#[test]
fn limits_are_enforced() {
    let mut deep = json!(1);
    for _ in 0..10 {
        deep = json!({"!": [deep]});
    }
    let tight = CompileEnv { limits: Limits { max_depth: 8, max_nodes: 1000 }, evaluators: None };
    assert!(matches!(Logic::compile(&deep, &tight), Err(LogicError::TooDeep { limit: 8, .. })));
    let wide = json!({"merge": (0..50).collect::<Vec<_>>()});
    let small = CompileEnv { limits: Limits { max_depth: 8, max_nodes: 20 }, evaluators: None };
    assert!(matches!(Logic::compile(&wide, &small), Err(LogicError::TooLarge { limit: 20, .. })));
    assert!(Logic::compile(&wide, &CompileEnv::default()).is_ok());
}

#[test]
fn refs_resolve_and_cycles_fail() {
    let evaluators = json!({
        "isGold": {"==": [{"var": "tier"}, "gold"]},
        "either": {"or": [{"$ref": "isGold"}, {"var": "vip"}]},
        "loop": {"!": {"$ref": "loop2"}},
        "loop2": {"!": {"$ref": "loop"}},
    });
    let env = CompileEnv { limits: Limits::default(), evaluators: evaluators.as_object() };
    let logic = json!({"if": [{"$ref": "either"}, "yes", "no"]});
    let compiled = Logic::compile(&logic, &env).unwrap();
    assert_eq!(compiled.source(), &logic);
    let ctx = EvaluationContext::new().with_attribute("tier", "gold");
    let scope = Scope::new(&ctx, "f");
    assert_eq!(compiled.variant_name(&scope).unwrap().as_deref(), Some("yes"));
    let err = Logic::compile(&json!({"and": [{"$ref": "nope"}]}), &env).unwrap_err();
    assert!(matches!(&err, LogicError::UnknownRef { name, .. } if name == "nope"));
    assert_eq!(err.path(), "and[0]");
    assert!(matches!(Logic::compile(&json!({"$ref": "loop"}), &env), Err(LogicError::BadArguments { .. })));
    // Without $evaluators, `$ref` is just an unknown operator.
    assert!(matches!(
        Logic::compile(&json!({"$ref": "isGold"}), &CompileEnv::default()),
        Err(LogicError::UnknownOperator { .. })
    ));
}

#[test]
fn logic_is_shareable() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_traits::<Logic>();
}

#[test]
fn never_panics_on_odd_shapes() {
    let ctx = EvaluationContext::new().with_attribute("x", json!([[[]], {"a": null}]));
    let scope = Scope::new(&ctx, "f");
    let odd = [
        json!({"substr": [{"var": "x"}, {"var": "x"}, {"var": "x"}]}),
        json!({"reduce": [{"var": "x"}, {"var": "accumulator"}]}),
        json!({"fractional": {"var": "x"}}),
        json!({"missing_some": [{"var": "x"}, {"var": "x"}]}),
        json!({"var": [{"var": "x"}, {"var": "x"}]}),
        json!({"sem_ver": {"var": "x"}}),
        json!({"%": {"var": "x"}}),
        json!({"/": {"var": "x.0"}}),
        json!({"cat": {"var": "x"}}),
        json!({"map": [{"var": "x"}, {"map": [{"var": ""}, {"var": ""}]}]}),
    ];
    for logic in odd {
        if let Ok(compiled) = Logic::compile(&logic, &CompileEnv::default()) {
            let _ = compiled.variant_name(&scope);
            let _ = compiled.is_truthy(&scope);
        }
    }
}
