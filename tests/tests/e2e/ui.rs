//! The console in a real browser: Debian's Chromium, headless, driven by
//! `tests/ui/console.mjs` (playwright-core) against the real server binary. The script
//! reports what it saw; this test decides, with the rollout's expected effect computed
//! from `flagd_core::hash` rather than taken from the server.

use std::path::{Path, PathBuf};

use flagd_core::hash;
use flagd_tests::{Server, run_with_input};
use serde_json::{Value, json};

const ENV: &str = "production";
const FLAG: &str = "checkout_v2";
const ROLLOUT: f64 = 12.5;
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
    admin.create_flag(&json!({"key": "search_beta", "tags": ["search"]})).unwrap();
    admin.quick_op(FLAG, ENV, "enable", None).unwrap();
    admin.set_rollout(FLAG, ENV, 0.0).unwrap();
    let read = admin.create_token("console reader", "read", None).unwrap();
    let evaluate = admin.create_token("checkout app", "evaluate", Some(ENV)).unwrap();
    let (inside, outside) = companies();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let reason = "INC-4711: checkout errors";
    let input = json!({
        "url": server.url(), "adminToken": server.admin_token(), "readToken": read, "evaluateToken": evaluate,
        "flag": FLAG, "searchTag": "search", "companies": [inside, outside], "reason": reason,
        "rollout": ROLLOUT, "outDir": out_dir,
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
    let (stored, _) = admin.config(FLAG, ENV).unwrap();
    assert_eq!(stored["fallthrough"]["rollout"]["variants"][0]["weight"], ROLLOUT);

    // The kill switch: cancelling and an empty reason change nothing; then the off value.
    assert_eq!(report["dialogTitle"], format!("Disable {FLAG} in {ENV}"));
    assert_eq!(off("evaluatedAfterCancel"), (json!(true), json!(false)), "{report}");
    assert_eq!(report["emptyReasonKeptDialogOpen"], true, "production needs a reason");
    assert_eq!(values(&report, "evaluatedAfterDisable", &inside), (json!(false), json!("DISABLED")), "{report}");
    assert_eq!(report["stateShown"], "State: Off");
    let audit = admin.get("/api/v1/audit?limit=100").unwrap().body;
    let disable = audit["events"].as_array().unwrap().iter().find(|e| e["action"] == "config.disable").unwrap();
    assert_eq!(disable["reason"], reason, "{disable}");
    assert_eq!(report["signedOut"], true);

    // A read session sees every environment and no control that writes.
    assert!(report["readWho"].as_str().unwrap().contains("(read)"), "{report}");
    assert_eq!(report["readSections"], 3, "{report}");
    assert_eq!(report["readWriteControls"], 0, "{report}");
    for shot in report["screenshots"].as_array().unwrap() {
        let len = std::fs::metadata(shot.as_str().unwrap()).unwrap().len();
        assert!(len > 1000, "{shot} is {len} bytes");
    }
}
