//! flagd-core evaluation and compilation, with unleash-yggdrasil as the peer baseline.
//! See README.md for what each case measures and the last recorded figures.

// Fixtures are constants built once before timing: failing to build one is a bug in the
// benchmark, and aborting with the reason is the right response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use flagd_benches::{
    COMPANY, TARGETING_KEY, company_ids, context, flagd_fractional_ruleset, keys, mixed_ruleset, mixed_source,
    single_flag_ruleset,
};
use flagd_core::{Reason, Ruleset};
use serde_json::json;
use unleash_yggdrasil::{ClientFeatures, Context, EngineState};

fn ours(c: &mut Criterion) {
    let rs = single_flag_ruleset().unwrap();
    let ctx = context();
    let mut group = c.benchmark_group("core");
    for (name, key) in [
        ("static_boolean", keys::STATIC_BOOLEAN),
        ("allow_list_hit_1000", keys::ALLOW_LIST),
        ("rollout_50", keys::ROLLOUT_50),
        ("three_conditions", keys::THREE_CONDITIONS),
        ("one_condition", keys::ONE_CONDITION),
    ] {
        group.bench_function(name, |b| b.iter(|| rs.boolean(black_box(key), black_box(&ctx)).value));
    }

    let fractional = flagd_fractional_ruleset().unwrap();
    // The fractional case only means something if the targeting actually picks a variant;
    // say so loudly rather than report the cost of falling through.
    let reason = fractional.evaluate(keys::FRACTIONAL, &ctx).reason;
    if reason != Reason::TargetingMatch {
        eprintln!("warning: core/flagd_fractional resolves with reason {} instead of TARGETING_MATCH", reason.as_str());
    }
    group.bench_function("flagd_fractional", |b| {
        b.iter(|| fractional.boolean(black_box(keys::FRACTIONAL), black_box(&ctx)).value)
    });

    let bulk = mixed_ruleset(100).unwrap();
    group.bench_function("bulk_100", |b| {
        b.iter(|| {
            // Touch every value so the optimiser cannot skip resolving one.
            black_box(&bulk).evaluate_all(black_box(&ctx)).map(|(_, r)| usize::from(r.value.is_some())).sum::<usize>()
        })
    });

    let source = mixed_source(10_000).unwrap();
    group.sample_size(10);
    group.bench_function("compile_10000", |b| b.iter(|| Ruleset::compile(black_box(&source)).unwrap()));
    group.finish();
}

/// Unleash's equivalents of the single-flag cases, delivered as an Unleash server would
/// (a `/api/client/features` body).
fn yggdrasil_engine() -> EngineState {
    let ids = company_ids(1_000);
    let default_with =
        |constraints: serde_json::Value| json!([{"name": "default", "constraints": constraints, "parameters": {}}]);
    let features = json!({"version": 2, "features": [
        {"name": "static-boolean", "enabled": true, "strategies": [{"name": "default", "parameters": {}}]},
        {"name": "allow-list-1000", "enabled": true,
         "strategies": default_with(json!([{"contextName": "companyId", "operator": "IN", "values": ids}]))},
        {"name": "rollout-50", "enabled": true, "strategies": [{"name": "flexibleRollout",
         "parameters": {"rollout": "50", "stickiness": "companyId", "groupId": "rollout-50"}}]},
        {"name": "three-constraints", "enabled": true, "strategies": default_with(json!([
            {"contextName": "plan", "operator": "IN", "values": ["pro", "enterprise"]},
            {"contextName": "country", "operator": "IN", "values": ["DE", "AT", "CH"]},
            {"contextName": "appVersion", "operator": "SEMVER_GTE", "value": "2.0.0"}
        ]))},
        {"name": "one-constraint", "enabled": true,
         "strategies": default_with(json!([{"contextName": "plan", "operator": "IN", "values": ["pro"]}]))}
    ]});
    let features: ClientFeatures = serde_json::from_value(features).unwrap();
    let engine = EngineState::default();
    let warnings = engine.apply_client_features(features);
    assert!(warnings.is_none(), "yggdrasil rejected a fixture: {:?}", warnings.map(|w| w.len()));
    engine
}

fn yggdrasil_context() -> Context {
    let properties: HashMap<String, String> = [
        ("companyId", COMPANY.to_string()),
        ("plan", "pro".into()),
        ("country", "DE".into()),
        ("appVersion", "2.3.1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Context { user_id: Some(TARGETING_KEY.to_owned()), properties: Some(properties), ..Context::default() }
}

fn peer(c: &mut Criterion) {
    let engine = yggdrasil_engine();
    let ctx = yggdrasil_context();
    let no_external = None;
    // Every constraint fixture must match, as ours do, or the comparison is of different
    // paths.
    for key in ["static-boolean", "allow-list-1000", "three-constraints", "one-constraint"] {
        assert!(engine.is_enabled(key, &ctx, &no_external), "yggdrasil fixture {key} does not match");
    }
    let mut group = c.benchmark_group("yggdrasil");
    for (name, key) in [
        ("static_boolean", "static-boolean"),
        ("allow_list_hit_1000", "allow-list-1000"),
        ("rollout_50", "rollout-50"),
        ("three_conditions", "three-constraints"),
        ("one_condition", "one-constraint"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| engine.is_enabled(black_box(key), black_box(&ctx), black_box(&no_external)))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // The machine has two cores shared with other builds: short runs keep the whole
    // binary near a minute.
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = ours, peer
}
criterion_main!(benches);
