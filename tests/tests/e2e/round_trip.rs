//! An environment exported in flagd format and imported back exports as the same file,
//! round after round, on every database: importing an unchanged export lists no change and
//! writes no audit event, and every context is served as before the first export.

use flagd_tests::{Client, Server, ServerOptions, databases};
use serde_json::{Value, json};

const ROUNDS: usize = 3;
const EXPORT: &str = "/api/v1/environments/staging/export";
const IMPORT: &str = "/api/v1/environments/staging/import";

/// Staging in the server's own format: targeting behind a condition, a rollout, allow and
/// deny lists, a segment; then a flagd file's own targeting beside them.
fn set_up(admin: &Client) {
    let rollout =
        json!({"rollout": {"variants": [{"variant": "on", "weight": 25.0}, {"variant": "off", "weight": 75.0}]}});
    let native = json!({
        "segments": [{"key": "pilot", "companies": ["7", "8"]}],
        "flags": [
            {"key": "targeted", "state": "ENABLED",
             "rules": [{"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}],
                        "serve": {"targeting": {"if": [{"==": [{"var": "country"}, "de"]}, "on", null]}}}],
             "fallthrough": rollout},
            {"key": "rollout", "state": "ENABLED", "fallthrough": rollout},
            {"key": "lists", "state": "ENABLED", "allow": ["5"], "deny": ["13"], "fallthrough": {"variant": "on"}},
            {"key": "pilot", "state": "ENABLED", "rules": [{"segments": ["pilot"], "serve": {"variant": "on"}}]}
        ]
    });
    admin.post(IMPORT, &native).unwrap().success("importing the native file").unwrap();
    let flagd = json!({"flags": {"flagd_targeted": {"state": "ENABLED", "variants": {"on": true, "off": false},
        "defaultVariant": "off", "targeting": {"if": [{"starts_with": [{"var": "email"}, "admin@"]}, "on", null]}}}});
    admin.post(IMPORT, &flagd).unwrap().success("importing the flagd file").unwrap();
}

/// Every flag's variant for a spread of contexts, through OFREP.
fn served(eval: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    for company in 0..20 {
        let context = json!({
            "targetingKey": format!("user-{company}"), "companyId": company,
            "plan": if company % 2 == 0 { "pro" } else { "free" },
            "country": if company % 3 == 0 { "de" } else { "fr" },
            "email": if company % 4 == 0 { "admin@example.com" } else { "user@example.com" },
        });
        let reply = eval.ofrep_bulk(&context).unwrap().success("bulk evaluation").unwrap();
        let flags = reply.body["flags"].as_array().cloned().unwrap_or_default();
        out.extend(flags.iter().map(|f| json!([company, f["key"], f["variant"]])));
    }
    out
}

fn audit_count(admin: &Client) -> usize {
    let events = admin.get("/api/v1/audit?environment=staging&limit=1000").unwrap().success("audit").unwrap().body;
    events["events"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_flagd_export_imported_back_exports_as_the_same_file() {
    for (backend, database) in databases("round_trip").unwrap() {
        let options = ServerOptions { database_url: Some(database.url.clone()), ..ServerOptions::default() };
        let server = Server::start_with(&options).unwrap();
        let admin = server.admin();
        set_up(&admin);
        let eval = server.client(Some(&admin.create_token("eval", "evaluate", Some("staging")).unwrap()));
        let before = served(&eval);
        let export = || admin.get(EXPORT).unwrap().success("export").unwrap();

        // The first import turns lists, rollouts and rules into targeting: it changes the
        // configurations, and what flagd can say of a segment comes back inlined.
        let first = export();
        let imported = admin.request_raw("POST", IMPORT, first.text.clone().into_bytes()).unwrap();
        assert_eq!(imported.status, 200, "{backend}: {}", imported.body);
        assert!(!imported.body["changes"].as_array().is_some_and(Vec::is_empty), "{backend}: {}", imported.body);
        let mut file = export();
        for (key, flag) in first.body["flags"].as_object().unwrap() {
            if key != "pilot" {
                assert_eq!(&file.body["flags"][key], flag, "{backend}: {key} exports as it did");
            }
        }
        assert_eq!(served(&eval), before, "{backend}: served alike after the first import");

        for round in 1..=ROUNDS {
            let events = audit_count(&admin);
            let dry = admin.request_raw("POST", &format!("{IMPORT}?dryRun=true"), file.text.clone().into_bytes());
            let dry = dry.unwrap();
            assert_eq!((dry.status, &dry.body["changes"]), (200, &json!([])), "{backend}, round {round}: {}", dry.body);
            let real = admin.request_raw("POST", IMPORT, file.text.clone().into_bytes()).unwrap();
            assert_eq!(
                (real.status, &real.body["changes"]),
                (200, &json!([])),
                "{backend}, round {round}: {}",
                real.body
            );
            assert_eq!(audit_count(&admin), events, "{backend}, round {round}: no audit event");
            let again = export();
            assert_eq!(again.text, file.text, "{backend}, round {round}: the export is the same file");
            file = again;
        }
        assert_eq!(served(&eval), before, "{backend}: served alike after {ROUNDS} rounds");
    }
}
