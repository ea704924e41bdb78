//! A web app in a real browser: Debian's Chromium, headless, driven by
//! `tests/ui/ofrep-web.mjs` (playwright-core), loads the OpenFeature web SDK and its OFREP
//! provider from npm as native ES modules and evaluates flags against the real server binary
//! started with `--cors-origin`. The browser, not a test client, enforces CORS, so this proves
//! that a page on the allowed origin gets every answer the server gives (the SDK reports
//! exactly the server's own OFREP answer for the same context, and what a person expects for
//! a few, from `flagd_core::hash` where a rollout decides), that it can read the bulk answer's
//! `ETag` and revalidate with it, and that the browser refuses a page on any other origin, and
//! the admin API to every origin.

use std::path::{Path, PathBuf};

use flagd_core::hash;
use flagd_tests::{Client, Server, ServerOptions, free_port, run_with_input};
use serde_json::{Value, json};

const ENV: &str = "production";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The pilot company: on the allow list of [`PORTAL`] and [`THEME`], targeted by [`BANNER`].
const PILOT: &str = "42";
/// A boolean flag on for the pilot company only.
const PORTAL: &str = "customer_portal";
/// A boolean flag rolled out to [`ROLLOUT`] % of companies.
const CHECKOUT: &str = "new_checkout";
const ROLLOUT: f64 = 50.0;
/// A boolean flag never enabled: the kill switch's answer.
const LEGACY: &str = "legacy_export";
/// A string flag, red for the pilot company, blue for everyone else.
const BANNER: &str = "banner";
/// A number flag, the large limit for everyone.
const UPLOAD: &str = "upload_limit_mb";
/// An object flag, the fresh theme for allowed companies.
const THEME: &str = "theme";
/// No flag has this key.
const MISSING: &str = "no_such_flag";
/// Rollout weights have three decimals, so buckets run to 100 000.
const TOTAL_WEIGHT: u64 = 100_000;

fn driver_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ui")
}

/// Every flag the page reads, with its type and the default it passes: defaults unlike what
/// the server serves, so a value that never arrived cannot pass for one that did.
fn flags() -> Value {
    json!([
        {"key": PORTAL, "type": "boolean", "default": false},
        {"key": CHECKOUT, "type": "boolean", "default": false},
        {"key": LEGACY, "type": "boolean", "default": true},
        {"key": BANNER, "type": "string", "default": "none"},
        {"key": UPLOAD, "type": "number", "default": 0},
        {"key": THEME, "type": "object", "default": {}},
        {"key": MISSING, "type": "boolean", "default": true},
    ])
}

/// The pilot first and a second company after it (the ETag probe relies on that order); each
/// user has a targeting key of their own, as the provider keys its cache by it.
fn contexts() -> Vec<Value> {
    vec![
        json!({"targetingKey": "user-1", "companyId": PILOT, "plan": "pro"}),
        json!({"targetingKey": "user-2", "companyId": "77"}),
        json!({"targetingKey": "user-3", "companyId": 1234, "plan": "free"}),
    ]
}

fn create_flags(admin: &Client) {
    admin.create_flag(&json!({"key": PORTAL})).unwrap();
    admin.quick_op(PORTAL, ENV, "enable", None).unwrap();
    admin.quick_op(PORTAL, ENV, "allow", Some(&json!({"companies": [PILOT]}))).unwrap();

    admin.create_flag(&json!({"key": CHECKOUT})).unwrap();
    admin.quick_op(CHECKOUT, ENV, "enable", None).unwrap();
    admin.set_rollout(CHECKOUT, ENV, ROLLOUT).unwrap();

    admin.create_flag(&json!({"key": LEGACY})).unwrap();

    let colours = json!({"blue": "#00f", "red": "#f00"});
    admin.create_flag(&json!({"key": BANNER, "variants": colours, "offVariant": "blue"})).unwrap();
    let pilot_red = json!([{"companies": [PILOT], "serve": {"variant": "red"}}]);
    let config = json!({"state": "ENABLED", "rules": pilot_red, "fallthrough": {"variant": "blue"}});
    admin.set_config(BANNER, ENV, &config).unwrap();

    let limits = json!({"small": 10, "large": 250});
    admin.create_flag(&json!({"key": UPLOAD, "variants": limits, "offVariant": "small"})).unwrap();
    admin.set_config(UPLOAD, ENV, &json!({"state": "ENABLED", "fallthrough": {"variant": "large"}})).unwrap();

    let themes = json!({"classic": {"accent": "#333"}, "fresh": {"accent": "#0a7", "rounded": true}});
    let theme = json!({"key": THEME, "variants": themes, "offVariant": "classic", "onVariant": "fresh"});
    admin.create_flag(&theme).unwrap();
    admin.quick_op(THEME, ENV, "enable", None).unwrap();
    admin.quick_op(THEME, ENV, "allow", Some(&json!({"companies": [PILOT]}))).unwrap();
}

/// What the SDK must report for `flag` in `context`: the server's own OFREP answer, or for a
/// flag it does not know, the caller's default with the server's error code.
fn expected(app: &Client, flag: &Value, context: &Value) -> Value {
    let key = flag["key"].as_str().unwrap();
    let answer = app.ofrep(key, context).unwrap();
    let body = &answer.body;
    match answer.status {
        200 => json!({"value": body["value"], "variant": body["variant"], "reason": body["reason"], "errorCode": null}),
        404 => json!({"value": flag["default"], "variant": null, "reason": "ERROR", "errorCode": body["errorCode"]}),
        status => panic!("OFREP answered {key} for {context} with {status}: {body}"),
    }
}

/// Whether [`CHECKOUT`]'s rollout gives `company` the on variant, computed as flagd does.
fn in_rollout(company: &Value) -> bool {
    let id = company.as_str().map_or_else(|| company.to_string(), str::to_owned);
    hash::bucket(CHECKOUT, &id, TOTAL_WEIGHT) < (ROLLOUT * 1000.0) as u64
}

/// Asserts a fetch the browser must have refused for CORS, not for any other failure.
fn assert_refused_for_cors(outcome: &Value, what: &str) {
    assert_eq!(outcome["refused"], true, "{what} was not refused by the browser: {outcome}");
    let said = outcome["browserSaid"].as_str().unwrap_or_default();
    assert!(said.contains("blocked by CORS policy"), "{what}: the browser named no CORS refusal: {outcome}");
}

#[test]
fn a_browser_page_on_an_allowed_origin_evaluates_over_ofrep_and_other_origins_are_refused() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium` (.ci/run does)"
    );
    super::ofrep_clients::npm_ci(&driver_dir()).unwrap();
    let allowed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let blocked = format!("http://127.0.0.1:{}", free_port().unwrap());
    let options = ServerOptions { args: vec!["--cors-origin".into(), allowed.clone()], ..Default::default() };
    let server = Server::start_with(&options).unwrap();
    let admin = server.admin();
    create_flags(&admin);
    let token = admin.create_token("web app", "evaluate", Some(ENV)).unwrap();

    let input = json!({
        "serverUrl": server.url(), "token": token, "pageOrigins": {"allowed": allowed, "blocked": blocked},
        "flags": flags(), "contexts": contexts(),
    });
    let output = run_with_input(Path::new("node"), &["ofrep-web.mjs"], &driver_dir(), input.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("the browser driver failed: {e}\nserver log:\n{}", server.logs()));
    let report: Value = serde_json::from_str(output.trim()).unwrap_or_else(|e| panic!("{e}: {output}"));

    assert_eq!(report["sdkError"], Value::Null, "the OFREP web provider failed: {report}");
    assert_eq!(report["consoleErrors"], json!([]), "the app's page logged errors: {report}");

    // The SDK reports, for every context, what the server itself answers for it.
    let app = server.client(Some(&token));
    let evaluations = report["evaluations"].as_array().unwrap();
    assert_eq!(evaluations.len(), contexts().len(), "{report}");
    for (context, seen) in contexts().iter().zip(evaluations) {
        assert_eq!(seen["providerStatus"], "READY", "after setting {context}: {report}");
        for flag in flags().as_array().unwrap() {
            let key = flag["key"].as_str().unwrap();
            let want = expected(&app, flag, context);
            assert_eq!(seen["flags"][key], want, "{key} for {context}: the browser saw it, the server answers it");
        }
    }

    // And what a person expects, so that the server and the browser cannot be wrong alike.
    let seen = |context: usize, key: &str| evaluations[context]["flags"][key].clone();
    let served = |d: Value| (d["value"].clone(), d["reason"].clone());
    assert_eq!(served(seen(0, PORTAL)), (json!(true), json!("TARGETING_MATCH")), "the pilot company: {report}");
    assert_eq!(seen(1, PORTAL)["value"], false, "another company: {report}");
    assert_eq!(served(seen(0, BANNER)), (json!("#f00"), json!("TARGETING_MATCH")), "{report}");
    assert_eq!(seen(0, THEME)["value"], json!({"accent": "#0a7", "rounded": true}), "{report}");
    assert_eq!(seen(2, UPLOAD)["value"], 250, "{report}");
    for (n, context) in contexts().iter().enumerate() {
        assert_eq!(served(seen(n, LEGACY)), (json!(false), json!("DISABLED")), "{context}: {report}");
        let rollout = (json!(in_rollout(&context["companyId"])), json!("SPLIT"));
        assert_eq!(served(seen(n, CHECKOUT)), rollout, "{context}: {report}");
        let missing = seen(n, MISSING);
        assert_eq!((&missing["value"], &missing["errorCode"]), (&json!(true), &json!("FLAG_NOT_FOUND")), "{report}");
    }

    // The page reads the bulk answer's ETag (exposed to it) and revalidates with it; the tag
    // names one context's answer, so another context's request is answered in full.
    let etag = &report["etag"];
    assert_eq!(etag["first"]["status"], 200, "{etag}");
    assert!(etag["first"]["etag"].as_str().is_some_and(|t| !t.is_empty()), "the page cannot read the ETag: {etag}");
    assert_eq!(etag["again"]["status"], 304, "revalidating with the ETag: {etag}");
    assert_eq!(etag["otherContext"]["status"], 200, "another context with the first one's ETag: {etag}");
    assert_ne!(etag["otherContext"]["etag"], etag["first"]["etag"], "{etag}");

    assert_refused_for_cors(&report["blockedOrigin"], &format!("OFREP from {blocked}, an origin not allowed"));
    assert_refused_for_cors(&report["adminFromAllowedOrigin"], &format!("the admin API from {allowed}"));
}
