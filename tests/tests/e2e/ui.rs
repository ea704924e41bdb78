//! The console in a real browser: Debian's Chromium, headless, driven by
//! `tests/ui/console.mjs` (playwright-core) against the real server binary. The script
//! reports what it saw; this test decides, with the rollout's expected effect computed
//! from `flagd_core::hash` rather than taken from the server.

use std::path::{Path, PathBuf};

use flagd_core::hash;
use flagd_tests::{Server, run_with_input};
use serde_json::{Value, json};

const ENV: &str = "production";
const STAGING: &str = "staging";
/// The pilot company put on the allow list from the console.
const PILOT: &str = "4242";
const FLAG: &str = "checkout_v2";
const ROLLOUT: f64 = 12.5;
/// A second flag, with rules in production.
const OTHER_FLAG: &str = "search_beta";
/// The segment created in staging from the Segments page.
const SEGMENT: &str = "pilot";
const SEGMENT_COMPANIES: [&str; 2] = ["301", "302"];
/// Rollout weights have three decimals, so buckets run to 100 000.
const TOTAL_WEIGHT: u64 = 100_000;
const CHROMIUM: &str = "/usr/bin/chromium";

fn driver_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ui")
}

/// The first company whose bucket for [`FLAG`] is inside the rollout, and the first outside.
fn companies() -> (String, String) {
    let limit = (ROLLOUT * 1000.0) as u64;
    let inside = |id: &String| hash::bucket(FLAG, id, TOTAL_WEIGHT) < limit;
    let ids = || (0..).map(|n| format!("company-{n}"));
    (ids().find(inside).unwrap(), ids().find(|id| !inside(id)).unwrap())
}

fn values(report: &Value, step: &str, company: &str) -> (Value, Value) {
    let seen = &report[step][company];
    (seen["value"].clone(), seen["reason"].clone())
}

#[test]
fn the_console_kills_a_flag_and_rolls_it_out_as_evaluation_then_serves() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium` (.ci/run does)"
    );
    super::ofrep_clients::npm_ci(&driver_dir()).unwrap();
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": FLAG, "tags": ["payments"]})).unwrap();
    admin.create_flag(&json!({"key": OTHER_FLAG, "tags": ["search"]})).unwrap();
    admin.quick_op(FLAG, ENV, "enable", None).unwrap();
    admin.set_rollout(FLAG, ENV, 0.0).unwrap();
    // Staging differs from production in its lists, its rollout and its state, for the promotion.
    admin.quick_op(FLAG, STAGING, "enable", None).unwrap();
    admin.set_rollout(FLAG, STAGING, 50.0).unwrap();
    admin.quick_op(FLAG, STAGING, "allow", Some(&json!({"companies": ["7"]}))).unwrap();
    // The other flag's production config has two rules, whose order the Flag page must keep.
    let rules = json!([
        {"companies": ["101", "102"], "conditions": [{"attribute": "plan", "op": "in", "value": ["pro", "team"]}],
         "serve": {"variant": "on"}},
        {"name": "eu rollout", "conditions": [{"attribute": "region", "op": "equals", "value": "eu"}],
         "serve": {"rollout": {"variants": [{"variant": "on", "weight": 25}, {"variant": "off", "weight": 75}]}}},
    ]);
    admin.set_config(OTHER_FLAG, ENV, &json!({"state": "ENABLED", "rules": rules})).unwrap();
    let read = admin.create_token("console reader", "read", None).unwrap();
    let evaluate = admin.create_token("checkout app", "evaluate", Some(ENV)).unwrap();
    let (inside, outside) = companies();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let reason = "INC-4711: checkout errors";
    let input = json!({
        "url": server.url(), "adminToken": server.admin_token(), "readToken": read, "evaluateToken": evaluate,
        "flag": FLAG, "searchTag": "search", "companies": [inside, outside], "pilot": PILOT, "reason": reason,
        "rollout": ROLLOUT, "outDir": out_dir, "otherFlag": OTHER_FLAG,
        "segment": {"key": SEGMENT, "companies": SEGMENT_COMPANIES, "description": "Early adopters"},
    });
    let output = run_with_input(Path::new("node"), &["console.mjs"], &driver_dir(), input.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("the browser driver failed: {e}\nserver log:\n{}", server.logs()));
    let report: Value = serde_json::from_str(output.trim()).unwrap_or_else(|e| panic!("{e}: {output}"));

    assert_eq!(report["consoleErrors"], json!([]), "the console logged errors");
    assert_eq!(report["flagsListed"], 2, "{report}");
    assert_eq!(report["searchShows"], json!(["search_beta"]), "searching by tag");
    assert!(report["productionCell"].as_str().unwrap().contains("On · 0 %"), "{report}");

    // Before: 0 %, both off. After 12.5 %: exactly the company whose bucket is inside flips.
    let off = |step| (values(&report, step, &inside).0, values(&report, step, &outside).0);
    assert_eq!(off("evaluatedBeforeRollout"), (json!(false), json!(false)), "{report}");
    assert_eq!(off("evaluatedAfterRollout"), (json!(true), json!(false)), "{report}");
    assert_eq!(report["rolloutShown"], "Rollout: 12.5 % get on", "{report}");
    assert_eq!(report["storedAfterRollout"]["fallthrough"]["rollout"]["variants"][0]["weight"], ROLLOUT);

    // The pilot: on the allow list, so OFREP serves it the on value by targeting; the console's
    // own evaluation says the same.
    assert_eq!(report["allowShown"], json!([PILOT]), "{report}");
    let pilot = &report["pilotOfrep"];
    assert_eq!((&pilot["value"], &pilot["reason"]), (&json!(true), &json!("TARGETING_MATCH")), "{report}");
    let shown = &report["pilotConsole"];
    assert_eq!(shown["value"], pilot["value"].to_string(), "{report}");
    assert_eq!(shown["variant"], pilot["variant"], "{report}");
    assert_eq!(shown["reason"], pilot["reason"], "{report}");

    // A change behind the page's back: the kill switch reports it and does nothing.
    let conflict = report["conflictMessage"].as_str().unwrap();
    assert!(conflict.contains(&format!("{FLAG} in {ENV} was changed by")), "{conflict}");
    assert_eq!(report["conflictDialogOpened"], false, "{report}");
    assert_eq!(report["stateAfterConflict"], "ENABLED", "{report}");

    // The kill switch: cancelling and an empty reason change nothing; then the off value.
    assert_eq!(report["dialogTitle"], format!("Disable {FLAG} in {ENV}"));
    assert_eq!(off("evaluatedAfterCancel"), (json!(true), json!(false)), "{report}");
    assert_eq!(report["emptyReasonKeptDialogOpen"], true, "production needs a reason");
    assert_eq!(report["blankReasonKeptDialogOpen"], true, "spaces are no reason");
    assert_eq!(values(&report, "evaluatedAfterDisable", &inside), (json!(false), json!("DISABLED")), "{report}");
    assert_eq!(report["stateShown"], "State: Off");
    let audit = admin.get("/api/v1/audit?limit=100").unwrap().body;
    let disable = audit["events"].as_array().unwrap().iter().find(|e| e["action"] == "config.disable").unwrap();
    assert_eq!(disable["reason"], reason, "{disable}");
    assert_eq!(report["signedOut"], true);

    // Promotion: the diff named what changes, then production got staging's rules and kept its state.
    assert_eq!(report["promoteChanged"], json!(["allow", "fallthrough"]), "{report}");
    let (staging, _) = admin.config(FLAG, STAGING).unwrap();
    let (production, _) = admin.config(FLAG, ENV).unwrap();
    for key in ["allow", "deny", "rules", "fallthrough"] {
        assert_eq!(production[key], staging[key], "{key} after promotion: {production}");
    }
    assert_eq!(production["state"], "DISABLED", "{production}");
    // The Flags page counts production's lists (staging's one company, after the promotion) and names
    // the admin session that changed it last.
    assert_eq!(production["allow"].as_array().unwrap().len(), 1, "{production}");
    assert_eq!(report["productionLists"], "1 allowed · 0 denied", "{report}");
    let admin_name = report["adminWho"].as_str().unwrap().trim_end_matches(" (admin)").to_owned();
    assert_eq!(production["updatedBy"], admin_name.as_str(), "{production}");
    assert!(report["productionChanged"].as_str().unwrap().starts_with(&format!("{admin_name} · ")), "{report}");

    // The Flag page lists the other flag's rules in their order, each with its match and what it serves.
    assert_eq!(
        report["rulesShown"],
        json!([
            "companies 101, 102 and plan in pro, team → variant on",
            "eu rollout: region equals eu → rollout on 25 % / off 75 %",
        ]),
        "{report}"
    );

    // The segment created from the page is stored as typed, and listed; a read session cannot write it.
    assert_eq!(report["segmentCompaniesShown"], "2", "{report}");
    assert!(report["segmentRowShown"].as_str().unwrap().contains("Early adopters"), "{report}");
    let segment = admin.get(&format!("/api/v1/environments/{STAGING}/segments/{SEGMENT}")).unwrap().body;
    assert_eq!(segment["companies"], json!(SEGMENT_COMPANIES), "{segment}");
    assert_eq!(segment["description"], "Early adopters", "{segment}");
    assert_eq!(report["replacedCompaniesShown"], "3", "replacing a segment from the page: {report}");
    let stale = report["staleSegmentDelete"].as_str().unwrap_or_default();
    assert!(stale.contains("changed since you read it"), "a segment changed behind the page is not deleted: {report}");
    assert_eq!(report["segmentsAfterDelete"], json!([SEGMENT]), "{report}");
    let deleted = admin.get(&format!("/api/v1/environments/{STAGING}/segments/trial")).unwrap();
    assert_eq!(deleted.status, 404, "{}", deleted.body);
    assert_eq!(report["readSegmentWriteControls"], 0, "{report}");
    assert!(report["narrowOverflow"].as_i64().unwrap() <= 0, "the phone-width Flag page scrolls sideways: {report}");

    // The audit page, filtered to the flag in production, shows the kill switch with its before/after.
    let flags = report["auditFlags"].as_array().unwrap();
    assert!(!flags.is_empty() && flags.iter().all(|f| f == FLAG), "{report}");
    assert_eq!(report["auditReason"], reason, "{report}");
    let before_after = report["auditBeforeAfter"].as_array().unwrap();
    assert!(before_after[0].as_str().unwrap().contains("ENABLED"), "{report}");
    assert!(before_after[1].as_str().unwrap().contains("DISABLED"), "{report}");
    assert_eq!(report["clusterReplicas"], 1, "{report}");
    assert_eq!(report["clusterLag"], json!(["0"]), "{report}");
    let last_seen = report["clusterLastSeen"][0].as_str().unwrap();
    let seconds: u64 = last_seen.trim_end_matches(" s ago").parse().unwrap_or_else(|_| panic!("{report}"));
    assert!(seconds < 5, "last seen counted from the browser's clock, an hour ahead: {report}");

    // A read session sees every environment and no control that writes.
    assert!(report["readWho"].as_str().unwrap().contains("(read)"), "{report}");
    assert_eq!(report["readSections"], 3, "{report}");
    assert_eq!(report["readWriteControls"], 0, "{report}");
    // A forged write with the read session's own CSRF token is refused and changes nothing.
    assert_eq!(report["forgedStatus"], json!({"role": "read", "status": 403}), "{report}");
    let (after, _) = admin.config(FLAG, ENV).unwrap();
    assert_eq!(after["state"], "DISABLED", "{after}");
    assert_eq!(after["version"], production["version"], "{after}");
    for shot in report["screenshots"].as_array().unwrap() {
        let len = std::fs::metadata(shot.as_str().unwrap()).unwrap().len();
        assert!(len > 1000, "{shot} is {len} bytes");
    }
}
