//! Reading and writing the flagd flag-definition format.

use flagd_core::flagd::export;
use flagd_core::{Dialect, Error, EvaluationContext, Ruleset, RulesetSource};
use serde_json::{Value, json};

use crate::support::{ctx, outcome, ruleset};

fn flagd(doc: Value) -> Ruleset {
    Ruleset::from_flagd_str(&doc.to_string()).unwrap_or_else(|e| panic!("imports: {e}"))
}

#[test]
fn imported_flags_report_flagd_reasons() {
    let rs = flagd(json!({
        "metadata": {"flagSetId": "web"},
        "$evaluators": {"is_pro": {"==": [{"var": "plan"}, "pro"]}},
        "flags": {
            "static": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "b"},
            "targeted": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                         "targeting": {"if": [{"$ref": "is_pro"}, "on", null]}, "metadata": {"owner": "x"}},
            "off": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}
        }
    }));
    let pro = ctx(json!({"plan": "pro"}));
    let free = ctx(json!({"plan": "free"}));
    assert_eq!(outcome(&rs.evaluate("static", &pro)), (Some("b"), "STATIC"));
    assert_eq!(outcome(&rs.evaluate("targeted", &pro)), (Some("on"), "TARGETING_MATCH"));
    assert_eq!(outcome(&rs.evaluate("targeted", &free)), (Some("off"), "DEFAULT"));
    let disabled = rs.evaluate("off", &pro);
    assert_eq!((outcome(&disabled), disabled.value), ((Some("off"), "DISABLED"), Some(&json!(false))));
    let meta = rs.evaluate("targeted", &pro).metadata.clone();
    assert_eq!((meta.get("flagSetId"), meta.get("owner")), (Some(&json!("web")), Some(&json!("x"))));
}

#[test]
fn invalid_flagd_documents_are_refused_with_every_problem() {
    let doc = r#"{"flags": {
        "a": {"state": "ON", "variants": {"x": 1}},
        "b": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "y"},
        "c": {"state": "ENABLED", "variants": {"x": 1}},
        "c": {"state": "ENABLED", "variants": {"x": 1}},
        "d": {"variants": {"x": 1}},
        "e": {"state": "ENABLED", "variants": {"x": 1}, "targeting": {"no_such_op": [1]}}
    }}"#;
    let Err(Error::Invalid(e)) = Ruleset::from_flagd_str(doc) else { panic!("must be refused") };
    let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"flags.a.state"), "{paths:?}");
    let message = |path: &str| e.problems.iter().find(|p| p.path == path).map(|p| p.message.clone());
    assert_eq!(message("flags.a.state").as_deref(), Some("state must be ENABLED or DISABLED, got `ON`"));
    assert_eq!(message("flags.d.state").as_deref(), Some("state is missing: ENABLED or DISABLED"));
    assert!(paths.contains(&"flags.b.defaultVariant"), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("flags.e.targeting")), "{paths:?}");
    assert!(
        e.problems.iter().any(|p| p.path == "flags.c" && p.message.starts_with("`c` is named twice in `flags`")),
        "{e}"
    );
}

/// Read, a variant named twice would be its last value: the document is refused instead,
/// naming where.
#[test]
fn a_name_given_twice_in_a_flagd_document_is_a_problem() {
    let doc = r##"{"flags": {"theme": {"state": "ENABLED", "defaultVariant": "dark",
        "variants": {"dark": "#000", "light": "#fff", "dark": "#111"}}}}"##;
    let Err(Error::Invalid(e)) = Ruleset::from_flagd_str(doc) else { panic!("must be refused") };
    let problem = e.problems.iter().find(|p| p.path == "flags.theme.variants.dark");
    let message = problem.map(|p| p.message.as_str()).unwrap_or_default();
    assert!(message.starts_with("`dark` is named twice in `flags.theme.variants` (line 2"), "{e}");
}

#[test]
fn malformed_json_is_a_clear_error() {
    assert!(matches!(Ruleset::from_flagd_str("{\"flags\": "), Err(Error::Json(_))));
    assert!(matches!(Ruleset::from_flagd_str("{}"), Err(Error::Invalid(_))));
}

/// Exporting and re-importing serves every context the same variant.
#[test]
fn export_round_trips_through_the_flagd_format() {
    let source_json = json!({
        "segments": [{"key": "pilot", "companies": ["7", "8"]},
                     {"key": "staff", "conditions": [{"attribute": "email", "op": "ends_with", "value": "@acme.com"}]}],
        "flags": [
            {"key": "portal", "state": "ENABLED", "deny": ["13"], "allow": ["5"],
             "rules": [{"segments": ["pilot", "staff"], "serve": {"variant": "on"}},
                       {"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]},
                                       {"attribute": "appVersion", "op": "semver_gte", "value": "2.1.0"}],
                        "serve": {"rollout": {"variants": [{"variant": "on", "weight": 33.333}, {"variant": "off", "weight": 66.667}]}}}],
             "fallthrough": {"rollout": {"variants": [{"variant": "on", "weight": 12.5}, {"variant": "off", "weight": 87.5}]}}},
            {"key": "theme", "state": "ENABLED", "variants": {"classic": "c", "dark": "d"}, "offVariant": "classic",
             "rules": [{"conditions": [{"attribute": "age", "op": "gte", "value": 30}], "serve": {"variant": "dark"}}]},
            {"key": "static", "state": "ENABLED", "fallthrough": {"variant": "on"}},
            {"key": "killed", "state": "DISABLED", "fallthrough": {"variant": "on"}}
        ]
    });
    let native = ruleset(source_json.clone());
    let source: RulesetSource = serde_json::from_value(source_json).unwrap();
    let exported = export(&source).unwrap();
    let imported = flagd(exported);
    let plans = ["pro", "free"];
    let versions = ["2.0.0", "2.1.0", "10.0.0"];
    for company in 0..300 {
        let c = ctx(json!({
            "companyId": company, "targetingKey": format!("user-{company}"),
            "plan": plans[company % 2], "appVersion": versions[company % 3], "age": company % 60,
            "email": if company % 11 == 0 { "x@acme.com" } else { "x@example.com" }
        }));
        for key in ["portal", "theme", "static"] {
            assert_eq!(imported.evaluate(key, &c).variant, native.evaluate(key, &c).variant, "{key} for {c:?}");
        }
    }
    let anonymous = EvaluationContext::new().with_targeting_key("u1");
    assert_eq!(imported.evaluate("portal", &anonymous).variant, native.evaluate("portal", &anonymous).variant);
    // Company ids span -2^63 to 2^64 - 1, as integers or strings, in lists as in contexts.
    let extremes = json!({"flags": [{"key": "edges", "state": "ENABLED",
        "allow": ["18446744073709551615", "-9223372036854775808"], "fallthrough": {"variant": "off"}}]});
    let edges = flagd(export(&serde_json::from_value(extremes).unwrap()).unwrap());
    for id in [json!(u64::MAX), json!(i64::MIN), json!(u64::MAX.to_string()), json!(i64::MIN.to_string())] {
        assert_eq!(edges.evaluate("edges", &ctx(json!({"companyId": id}))).variant, Some("on"), "{id}");
    }
    // An empty company id is no company on both sides: the user is bucketed by key.
    for user in 0..300 {
        let c = ctx(json!({"companyId": "", "targetingKey": format!("user-{user}"), "plan": "free"}));
        assert_eq!(imported.evaluate("portal", &c).variant, native.evaluate("portal", &c).variant, "{c:?}");
    }
    assert_eq!(imported.evaluate("killed", &anonymous).variant, Some("off"));
}

#[test]
fn export_refuses_what_flagd_cannot_express() {
    let source: RulesetSource = serde_json::from_value(json!({"flags": [{"key": "f",
        "rules": [{"conditions": [{"attribute": "email", "op": "matches", "value": "^a"}], "serve": {"variant": "on"}}]}]})).unwrap();
    let err = export(&source).unwrap_err();
    assert_eq!(err.problems[0].path, "flags.f.rules[0].conditions[0]");

    // Where a fallthrough's targeting yields null we serve no variant, and flagd would serve
    // `defaultVariant`: that is refused for a flag with an off variant, and exported for one
    // without (whose `defaultVariant` is null).
    let fallthrough = |no_off: bool| -> RulesetSource {
        serde_json::from_value(json!({"flags": [{"key": "f", "state": "ENABLED", "noOffVariant": no_off,
            "fallthrough": {"targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", null]}}}]}))
        .unwrap()
    };
    let err = export(&fallthrough(false)).unwrap_err();
    assert_eq!(err.problems[0].path, "flags.f.fallthrough.targeting", "{err}");
    let exported = export(&fallthrough(true)).unwrap();
    assert_eq!(exported["flags"]["f"]["defaultVariant"], Value::Null, "{exported}");
}

/// What an import of an exported file stores, as the server keeps it: flagd flags with
/// their `$ref`s inlined.
fn imported(file: &Value) -> RulesetSource {
    let mut source = flagd_core::flagd::import(&file.to_string()).unwrap();
    flagd_core::flagd::inline_evaluators(&mut source).unwrap();
    source
}

/// An exported file imports as one targeting rule per flag, which exports as the same
/// file again: round trips neither change it nor nest it deeper.
#[test]
fn an_exported_file_imports_and_exports_as_itself() {
    let rollout =
        json!({"rollout": {"variants": [{"variant": "on", "weight": 25.0}, {"variant": "off", "weight": 75.0}]}});
    let pro = json!({"if": [{"==": [{"var": "plan"}, "pro"]}, "on", null]});
    let source: RulesetSource = serde_json::from_value(json!({
        "segments": [{"key": "pilot", "companies": ["7", "8"]}],
        "flags": [
            {"key": "targeted", "state": "ENABLED", "rules": [{"serve": {"targeting": pro}}]},
            {"key": "chained", "state": "ENABLED",
             "rules": [{"serve": {"targeting": pro}},
                       {"conditions": [{"attribute": "country", "op": "equals", "value": "de"}], "serve": {"variant": "on"}}],
             "fallthrough": rollout},
            {"key": "rollout", "state": "ENABLED", "fallthrough": rollout},
            {"key": "lists", "state": "ENABLED", "deny": ["13"], "allow": ["5"]},
            {"key": "static", "state": "ENABLED", "fallthrough": {"variant": "on"}},
            {"key": "killed", "state": "DISABLED"},
            {"key": "pilot", "state": "ENABLED", "rules": [{"segments": ["pilot"], "serve": {"variant": "on"}}]}
        ]
    }))
    .unwrap();
    let first = export(&source).unwrap();
    assert_eq!(first["flags"]["targeted"]["targeting"], pro, "a rule without clauses is its serve alone");
    let second = export(&imported(&first)).unwrap();
    for (key, flag) in first["flags"].as_object().unwrap() {
        if key != "pilot" {
            assert_eq!(&second["flags"][key], flag, "{key}");
        }
    }
    // The segment's `$ref` comes back inlined (its `$evaluators` entry is the environment's,
    // not the flag's): from then on, the file is the same.
    let inlined = first["$evaluators"]["segment:pilot"].clone();
    assert_eq!(second["flags"]["pilot"]["targeting"]["if"][0]["or"][0], inlined, "{second}");
    let mut file = second;
    for _ in 0..30 {
        let again = export(&imported(&file)).unwrap();
        assert_eq!(again, file);
        file = again;
    }

    // A flagd file's targeting exports as it was written.
    let flagd_file = json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false},
        "defaultVariant": "off", "targeting": {"if": [true, {"if": [{"var": "beta"}, "on", null]}, null]}}}});
    assert_eq!(export(&imported(&flagd_file)).unwrap(), flagd_file);
}

#[test]
fn evaluators_can_be_inlined_so_flags_stand_alone() {
    let mut source = flagd_core::flagd::import(
        &json!({
            "$evaluators": {"pro": {"==": [{"var": "plan"}, "pro"]}, "pro_de": {"and": [{"$ref": "pro"}, {"==": [{"var": "country"}, "de"]}]}},
            "flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                            "targeting": {"if": [{"$ref": "pro_de"}, "on", null]}}}
        })
        .to_string(),
    )
    .unwrap();
    flagd_core::flagd::inline_evaluators(&mut source).unwrap();
    assert!(source.evaluators.is_empty());
    assert!(!serde_json::to_string(&source.flags).unwrap().contains("$ref"));
    let options = flagd_core::CompileOptions { dialect: Dialect::Flagd, ..Default::default() };
    let rs = Ruleset::compile_with(&source, &options).unwrap();
    assert_eq!(rs.evaluate("f", &ctx(json!({"plan": "pro", "country": "de"}))).variant, Some("on"));

    let mut cyclic = flagd_core::flagd::import(
        &json!({"$evaluators": {"a": {"$ref": "b"}, "b": {"$ref": "a"}},
                "flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"$ref": "a"}}}})
        .to_string(),
    )
    .unwrap();
    let err = flagd_core::flagd::inline_evaluators(&mut cyclic).unwrap_err();
    assert!(err.problems[0].message.contains("cycle"), "{err}");
}
