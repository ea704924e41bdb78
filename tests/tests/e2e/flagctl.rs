//! flagctl end to end: the real `flagctl` binary against the real `flagd-server`. Every
//! command, its JSON output and its exit codes, `--wait`, and `ramp` (checks, kill
//! switch, dry run, interruption).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flagd_tests::{Client, Hung, Run, Server, ServerOptions, TempDir, flagctl_binary, free_port, run_checked, signal};
use serde_json::{Value, json};

fn command(url: &str, token: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(flagctl_binary().unwrap());
    cmd.args(args).env("FLAGD_URL", url).env_remove("FLAGD_TOKEN").stdin(Stdio::null());
    if let Some(token) = token {
        cmd.env("FLAGD_TOKEN", token);
    }
    cmd
}

/// flagctl with this URL and token.
fn flagctl_as(url: &str, token: Option<&str>, args: &[&str]) -> Run {
    Run::finished(format!("flagctl {}", args.join(" ")), command(url, token, args).output().unwrap())
}

/// flagctl against `server` with its admin token.
fn flagctl(server: &Server, args: &[&str]) -> Run {
    flagctl_as(server.url(), Some(server.admin_token()), args)
}

fn audit(admin: &Client) -> Vec<Value> {
    admin.get("/api/v1/audit?limit=1000").unwrap().success("audit").unwrap().body["events"].as_array().unwrap().clone()
}

fn config(admin: &Client, flag: &str, env: &str) -> Value {
    admin.config(flag, env).unwrap().0
}

/// The fallthrough rollout as (variant, weight) pairs.
fn weights(config: &Value) -> Vec<(String, f64)> {
    config["fallthrough"]["rollout"]["variants"]
        .as_array()
        .map(|v| v.iter().map(|w| (w["variant"].as_str().unwrap().to_owned(), w["weight"].as_f64().unwrap())).collect())
        .unwrap_or_default()
}

fn on_off(on: f64) -> Vec<(String, f64)> {
    vec![("on".to_owned(), on), ("off".to_owned(), 100.0 - on)]
}

/// flagctl against `server`, started in the background with its output captured.
fn spawn_flagctl(server: &Server, args: &[&str]) -> std::process::Child {
    command(server.url(), Some(server.admin_token()), args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to 30 s) for a background flagctl to exit.
fn finish(mut child: std::process::Child, args: &[&str]) -> Run {
    wait_until("flagctl to exit", Duration::from_secs(30), || child.try_wait().unwrap().is_some());
    Run::finished(format!("flagctl {}", args.join(" ")), child.wait_with_output().unwrap())
}

/// Records, in the server's SQLite database, a replica that is live (its heartbeat is an
/// hour ahead) but has applied nothing, as a replica whose apply loop is wedged would:
/// every cluster-wide wait then blocks until [`unstick_replica`] removes it. (Python's
/// sqlite3 module writes it, as the test crate has no database driver.)
fn stick_replica(server: &Server) {
    sqlite(
        server,
        "INSERT INTO replicas (id, address, applied_seq, started_at, last_seen) VALUES ('stuck-replica', '127.0.0.1:1', 0, 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 3600000)",
    );
}

fn unstick_replica(server: &Server) {
    sqlite(server, "DELETE FROM replicas WHERE id = 'stuck-replica'");
}

/// Runs `sql` on the server's SQLite database; returns the rows it selected, one per line,
/// columns separated by tabs.
fn sqlite(server: &Server, sql: &str) -> String {
    let db = server.dir().join("flagd.db");
    let script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=10)\n\
                  rows = c.execute(sys.argv[2]).fetchall()\nc.commit()\n\
                  print('\\n'.join('\\t'.join(map(str, r)) for r in rows))";
    run_checked("python3", &["-c", script, db.to_str().unwrap(), sql], server.dir()).unwrap()
}

/// The id this server goes by in the cluster view.
fn own_id(server: &Server) -> String {
    let view = server.admin().get("/api/v1/cluster").unwrap().body;
    let me = view["replicas"].as_array().unwrap().iter().find(|r| r["this"] == json!(true)).cloned().unwrap();
    me["id"].as_str().unwrap().to_owned()
}

/// Polls `condition` until it holds, failing after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn help_documents_every_exit_code() {
    let help = flagctl_as("http://127.0.0.1:1", None, &["--help"]).ok().stdout;
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "130 "] {
        assert!(help.contains(&format!("\n  {code}")), "exit code {code}missing from --help:\n{help}");
    }
    for variable in ["FLAGD_URL", "FLAGD_TOKEN", "--env"] {
        assert!(help.contains(variable), "{variable} missing from --help");
    }
    let ramp = flagctl_as("http://127.0.0.1:1", None, &["ramp", "--help"]).ok().stdout;
    assert!(ramp.contains("--enable-if-disabled") && ramp.contains("FLAGCTL_RAMP_STEP"), "{ramp}");
}

#[test]
fn a_flag_from_creation_to_kill_switch() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let created = flagctl(
        &server,
        &["create", "checkout", "--description", "New checkout", "--owner", "payments", "--tag", "web", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!((&created["key"], &created["owner"]), (&json!("checkout"), &json!("payments")));
    for env in ["development", "staging", "production"] {
        assert_eq!(created["environments"][env]["state"], "DISABLED", "a new flag is off in {env}");
    }
    let listed = flagctl(&server, &["list", "-o", "json"]).ok().json();
    assert_eq!(listed["flags"][0]["key"], "checkout");
    let table = flagctl(&server, &["list"]).ok().stdout;
    assert!(table.contains("KEY") && table.contains("production") && table.contains("checkout"), "{table}");
    assert!(table.contains("DISABLED") && table.contains("New checkout"), "{table}");

    let enabled =
        flagctl(&server, &["enable", "checkout", "--env", "staging", "--reason", "pilot", "--wait", "-o", "json"]).ok();
    assert_eq!(enabled.json()["state"], "ENABLED");
    let seq = enabled.json()["version"].as_i64().unwrap();
    assert!(
        enabled.stderr.contains(&format!("applied by every live replica (1 replica, seq {seq})")),
        "{}",
        enabled.stderr
    );
    assert_eq!(config(&admin, "checkout", "production")["state"], "DISABLED", "only staging changed");

    let rolled =
        flagctl(&server, &["rollout", "checkout", "25", "--env", "staging", "--wait", "-o", "json"]).ok().json();
    assert_eq!(weights(&rolled), on_off(25.0));
    flagctl(&server, &["rollout", "checkout", "--weight", "on=10", "--weight", "off=90", "--env", "staging"]).ok();
    assert_eq!(weights(&config(&admin, "checkout", "staging")), on_off(10.0));

    let allowed = flagctl(&server, &["allow", "checkout", "1", "2", "--env", "staging", "-o", "json"]).ok().json();
    assert_eq!(allowed["allow"], json!(["1", "2"]));
    let again = flagctl(&server, &["allow", "checkout", "2", "2", "--env", "staging"]).ok().stdout;
    assert!(again.contains("added 2 to the allow list of `checkout` in staging: it already was"), "{again}");
    flagctl(&server, &["allow", "checkout", "1", "--remove", "--env", "staging"]).ok();
    flagctl(&server, &["deny", "checkout", "3", "--env", "staging", "--reason", "churned"]).ok();
    let staging = config(&admin, "checkout", "staging");
    assert_eq!((&staging["allow"], &staging["deny"]), (&json!(["2"]), &json!(["3"])));

    let shown = flagctl(&server, &["get", "checkout", "--env", "staging"]).ok().stdout;
    assert!(shown.contains("ENABLED") && shown.contains("rollout on 10% / off 90%"), "{shown}");
    let whole = flagctl(&server, &["get", "checkout", "-o", "json"]).ok().json();
    assert_eq!(whole["environments"]["staging"]["state"], "ENABLED");
    let whole_table = flagctl(&server, &["get", "checkout"]).ok().stdout;
    assert!(whole_table.contains("payments") && whole_table.contains("staging"), "{whole_table}");

    let promoted =
        flagctl(&server, &["promote", "checkout", "--from", "staging", "--to", "production", "--wait", "-o", "json"])
            .ok();
    let production = promoted.json();
    assert_eq!((&production["environment"], &production["allow"]), (&json!("production"), &json!(["2"])));
    assert_eq!(production["state"], "DISABLED", "promote keeps the target's state without --include-state");
    assert!(promoted.stderr.contains("applied by every live replica"), "{}", promoted.stderr);
    flagctl(&server, &["enable", "checkout", "--env", "production"]).ok();

    let disabled =
        flagctl(&server, &["disable", "checkout", "--env", "production", "--reason", "incident 42", "--wait"]).ok();
    assert!(disabled.stdout.contains("disabled `checkout` in production"), "{}", disabled.stdout);
    assert!(disabled.stderr.contains("applied by every live replica (1 replica, seq"), "{}", disabled.stderr);
    assert_eq!(config(&admin, "checkout", "production")["state"], "DISABLED");
    let again = flagctl(&server, &["disable", "checkout", "--env", "production", "--reason", "again", "--wait"]).ok();
    assert!(again.stdout.contains("it already was, nothing changed"), "{}", again.stdout);
    assert!(again.stderr.contains("applied by every live replica"), "{}", again.stderr);

    let events = flagctl(&server, &["audit", "checkout", "--env", "production", "-o", "json"]).ok().json();
    let newest = &events["events"][0];
    assert_eq!((&newest["action"], &newest["reason"]), (&json!("config.disable"), &json!("incident 42")));
    let table = flagctl(&server, &["audit", "checkout"]).ok().stdout;
    assert!(table.contains("incident 42") && table.contains("churned") && table.contains("config.deny.add"), "{table}");
    let page = flagctl(&server, &["audit", "--since", "1h", "--limit", "2", "-o", "json"]).ok().json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert!(page["nextCursor"].is_i64(), "more events remain: {page}");
    flagctl(&server, &["environments"]).ok();
}

#[test]
fn writes_without_env_are_usage_errors_and_change_nothing() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "f"})).unwrap();
    let dir = TempDir::new("flagctl").unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(&file, r#"{"flags": {}}"#).unwrap();
    let file = file.to_str().unwrap();
    let before = (audit(&admin), admin.get("/api/v1/flags/f").unwrap().body);
    let cases: &[&[&str]] = &[
        &["enable", "f"],
        &["disable", "f", "--reason", "x"],
        &["rollout", "f", "10"],
        &["allow", "f", "1"],
        &["deny", "f", "1", "--remove"],
        &["segment", "set", "pilot", "--company", "1"],
        &["segment", "delete", "pilot"],
        &["import", file],
        &["ramp", "f", "--steps", "1,100", "--every", "0s", "--check", "true"],
    ];
    for args in cases {
        let run = flagctl(&server, args).code(2);
        assert!(run.stderr.contains("--env ENV") && run.stderr.contains("nothing was changed"), "{}", run.stderr);
    }
    let refused: &[&[&str]] = &[
        &["disable", "f", "--env", "production"],
        &["rollout", "f", "101", "--env", "production"],
        &["rollout", "f", "50.0000000000001", "--env", "production"],
        &["rollout", "f", "--weight", "on", "--env", "production"],
        &["rollout", "f", "--weight", "on=12.3456", "--weight", "off=87.6544", "--env", "production"],
        &["create", "g", "--type", "number", "--variant", "a=x"],
        &["ramp", "f", "--env", "production", "--steps", "50,5", "--every", "0s", "--check", "true"],
        &["ramp", "f", "--env", "production", "--steps", "5,1e2", "--every", "0s", "--check", "true"],
        &["enable", "f", "--env", "production", "--wait-timeout", "soon"],
        &["enable", "f", "--env", "production", "--wait-timeout", "999999999999d"],
    ];
    for args in refused {
        flagctl(&server, args).code(2);
    }
    assert_eq!((audit(&admin), admin.get("/api/v1/flags/f").unwrap().body), before, "nothing was written");
}

/// `--reason` is what the audit log keeps of why: a blank one is a usage error wherever
/// flagctl takes one, and nothing is sent.
#[test]
fn a_blank_reason_is_refused_and_changes_nothing() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "f"})).unwrap();
    admin.quick_op("f", "production", "enable", None).unwrap();
    let dir = TempDir::new("flagctl").unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(
        &file,
        r#"{"flags": {"g": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let before = audit(&admin);
    for blank in ["", "   "] {
        let cases: &[&[&str]] = &[
            &["disable", "f", "--env", "production", "--reason", blank],
            &["enable", "f", "--env", "staging", "--reason", blank],
            &["rollout", "f", "10", "--env", "production", "--reason", blank],
            &["allow", "f", "1", "--env", "production", "--reason", blank],
            &["promote", "f", "--from", "production", "--to", "staging", "--reason", blank],
            &["import", file, "--env", "production", "--reason", blank],
            &[
                "ramp",
                "f",
                "--env",
                "production",
                "--steps",
                "50",
                "--every",
                "0s",
                "--check",
                "true",
                "--reason",
                blank,
            ],
        ];
        for args in cases {
            let run = flagctl(&server, args).code(2);
            assert!(run.stderr.contains("'--reason <REASON>': the reason is blank"), "{}: {}", run.shown, run.stderr);
        }
    }
    assert_eq!(audit(&admin), before, "nothing was written");
    assert_eq!(config(&admin, "f", "production")["state"], "ENABLED", "the flag was not switched off");
}

#[test]
fn errors_have_distinct_exit_codes_and_say_what_to_do() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "f"})).unwrap();
    let reader = admin.create_token("reader", "read", None).unwrap();

    // A flag exists in every environment or in none: no message may suggest another one.
    let missing_everywhere: &[&[&str]] = &[
        &["get", "nope"],
        &["disable", "nope", "--env", "production", "--reason", "x"],
        &["eval", "nope", "--company", "1"],
    ];
    for args in missing_everywhere {
        let missing = flagctl(&server, args).code(4);
        let said = "flagctl: flag `nope` does not exist; list flags with `flagctl list`\n";
        assert_eq!(missing.stderr, said, "{}", missing.shown);
    }
    let no_env = flagctl(&server, &["enable", "f", "--env", "qa"]).code(4);
    assert!(no_env.stderr.contains("`flagctl environments`"), "{}", no_env.stderr);
    flagctl(&server, &["segment", "get", "nope", "--env", "staging"]).code(4);
    flagctl(&server, &["token", "revoke", "nope"]).code(4);
    // A URL cannot carry these as a name: sent, they would reach another route.
    let unaddressable: [&[&str]; 4] = [
        &["get", ".."],
        &["enable", ".", "--env", "staging"],
        &["segment", "get", "..", "--env", "staging"],
        &["replica", "forget", ".."],
    ];
    for args in unaddressable {
        let refused = flagctl(&server, args).code(2);
        assert!(refused.stderr.contains("names nothing flagd has") && refused.stderr.contains("nothing was sent"));
    }

    let conflict = flagctl(&server, &["create", "f"]).code(3);
    let said = "flagctl: flag `f` already exists: look at it with `flagctl get f`, or choose another key\n";
    assert_eq!(conflict.stderr, said);

    let bad_token = flagctl_as(server.url(), Some("not-a-token"), &["list"]).code(1);
    assert!(bad_token.stderr.contains("FLAGD_TOKEN"), "{}", bad_token.stderr);
    let read_only = flagctl_as(server.url(), Some(&reader), &["enable", "f", "--env", "staging"]).code(1);
    assert!(read_only.stderr.contains("`admin` token"), "{}", read_only.stderr);
    flagctl_as(server.url(), Some(&reader), &["list"]).ok();
    let token_flag = flagctl_as(server.url(), Some("not-a-token"), &["--token", server.admin_token(), "list"]);
    token_flag.ok();

    let nowhere = format!("http://127.0.0.1:{}", free_port().unwrap());
    let down = flagctl_as(&nowhere, Some("t"), &["list"]).code(1);
    assert!(down.stderr.contains("cannot reach flagd") && down.stderr.contains("FLAGD_URL"), "{}", down.stderr);
    let overridden = flagctl_as(&nowhere, Some(server.admin_token()), &["--url", server.url(), "list"]);
    overridden.ok();
    assert_eq!(config(&admin, "f", "staging")["state"], "DISABLED");
}

/// A source with nothing set would clear the target's configuration: the server refuses,
/// and flagctl says how to set the source up (or clear the target) with flagctl itself.
#[test]
fn a_promotion_the_server_refuses_says_what_flagctl_can_do() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "customer_portal"})).unwrap();
    admin.quick_op("customer_portal", "production", "allow", Some(&json!({"companies": ["42"]}))).unwrap();
    let before = audit(&admin);

    let args = ["promote", "customer_portal", "--from", "development", "--to", "production"];
    let refused = flagctl(&server, &args).code(3);
    let stderr = &refused.stderr;
    assert!(stderr.contains("has nothing set in `development`"), "the server's reason is kept: {stderr}");
    assert!(stderr.contains("set `customer_portal` up in development first"), "{stderr}");
    assert!(stderr.contains("`flagctl import FILE --env production`"), "{stderr}");
    assert!(!stderr.contains("exists already"), "nothing was created: {stderr}");
    assert_eq!(audit(&admin), before, "nothing was changed");
    assert_eq!(config(&admin, "customer_portal", "production")["allow"], json!(["42"]));

    // Segments belong to one environment: rules using one staging has and production
    // lacks cannot be promoted until production has it too.
    flagctl(&server, &["segment", "set", "pilot", "--env", "staging", "--company", "7"]).ok();
    let (_, etag) = admin.config("customer_portal", "staging").unwrap();
    let rules = json!({"state": "ENABLED", "rules": [{"segments": ["pilot"], "serve": {"variant": "on"}}]});
    admin
        .request("PUT", "/api/v1/flags/customer_portal/environments/staging", Some(&rules), &[("If-Match", &etag)])
        .unwrap();
    let before = audit(&admin);
    let args = ["promote", "customer_portal", "--from", "staging", "--to", "production"];
    let missing = flagctl(&server, &args).code(2);
    assert!(missing.stderr.contains("use segment(s) `pilot` that production does not have"), "{}", missing.stderr);
    assert!(missing.stderr.contains("unknown segment `pilot`"), "the server's problems are kept: {}", missing.stderr);
    assert!(missing.stderr.contains("`flagctl segment set pilot --env production --company …`"), "{}", missing.stderr);
    assert_eq!(audit(&admin), before, "nothing was changed");
    flagctl(&server, &["segment", "set", "pilot", "--env", "production", "--company", "9"]).ok();
    flagctl(&server, &args).ok();
}

#[test]
fn a_server_that_does_not_answer_in_time_is_told_from_one_that_cannot_be_reached() {
    let server = Server::start().unwrap();
    server.admin().create_flag(&json!({"key": "f"})).unwrap();
    let zero = flagctl(&server, &["list", "--request-timeout", "0s"]).code(2);
    assert!(zero.stderr.contains("would give up before starting"), "{}", zero.stderr);

    let hung = Hung::new(&server).unwrap();
    let started = Instant::now();
    let write = flagctl(&server, &["enable", "f", "--env", "staging", "--request-timeout", "1s"]);
    let write = write.code(1);
    assert!(started.elapsed() < Duration::from_secs(10), "gave up after {:?}", started.elapsed());
    let said = "did not answer within 1s (--request-timeout); the change may have been made all the same";
    assert!(write.stderr.contains(said), "{}", write.stderr);
    assert!(!write.stderr.contains("cannot reach"), "it was reached: {}", write.stderr);
    let read = flagctl(&server, &["list", "--request-timeout", "1s"]).code(1);
    assert!(read.stderr.contains("did not answer within 1s (--request-timeout); try again later"), "{}", read.stderr);
    // A POST that only evaluates changes nothing, and says so.
    let eval = flagctl(&server, &["eval", "f", "--company", "1", "--env", "staging", "--request-timeout", "1s"]);
    assert!(eval.code(1).stderr.contains("try again later"), "an evaluation is no change");
    drop(hung);
    flagctl(&server, &["list"]).ok();
}

#[test]
fn wait_confirms_applied_changes_and_times_out_with_exit_5() {
    let server = Server::start().unwrap();
    server.admin().create_flag(&json!({"key": "f"})).unwrap();
    let seq =
        flagctl(&server, &["enable", "f", "--env", "staging", "-o", "json"]).ok().json()["version"].as_i64().unwrap();
    let applied = flagctl(&server, &["wait", &seq.to_string()]).ok();
    assert!(
        applied.stderr.contains(&format!("applied by every live replica (1 replica, seq {seq})")),
        "{}",
        applied.stderr
    );
    let answer = flagctl(&server, &["wait", &seq.to_string(), "-o", "json"]).ok();
    let answer = answer.json();
    assert_eq!((&answer["seq"], &answer["scope"]), (&json!(seq), &json!("cluster")), "{answer}");
    assert_eq!(answer["replicas"].as_array().map(Vec::len), Some(1), "{answer}");
    // A change that has not been written yet: said at once, not "stored and will apply".
    let future = (seq + 1000).to_string();
    let started = Instant::now();
    let early = flagctl(&server, &["wait", &future, "--wait-timeout", "10s"]).code(4);
    assert!(started.elapsed() < Duration::from_secs(5), "refused after {:?}", started.elapsed());
    assert!(
        early.stderr.contains(&format!("no change {future} has been written yet; the latest is {seq}")),
        "{}",
        early.stderr
    );
    assert!(!early.stderr.contains("stored"), "{}", early.stderr);
    // Writes are numbered from 1: anything else is a typo, not a change to report applied.
    for typo in ["0", "-5"] {
        let refused = flagctl(&server, &["wait", "--", typo]).code(2);
        assert!(refused.stderr.contains("a change sequence number, 1 or more"), "{}", refused.stderr);
        assert!(!refused.stderr.contains("applied"), "{}", refused.stderr);
    }

    // A written change a live replica has not applied: an honest timeout naming it.
    stick_replica(&server);
    let late = flagctl(&server, &["wait", &seq.to_string(), "--wait-timeout", "300ms"]).code(5);
    assert!(late.stderr.contains(&format!("change seq {seq} was not applied within 300ms")), "{}", late.stderr);
    assert!(
        late.stderr.contains("stuck-replica") && late.stderr.contains("applied up to 0"),
        "the message names the replica behind and how far it got: {}",
        late.stderr
    );
    assert!(late.stderr.contains(&format!("flagctl wait {seq}")), "{}", late.stderr);
}

#[test]
fn a_wait_outlives_a_server_restart_and_says_the_change_is_stored_when_it_gives_up() {
    let mut server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "f"})).unwrap();
    admin.quick_op("f", "production", "enable", None).unwrap();
    // The stuck replica holds every wait open, so the server can go away in the middle.
    stick_replica(&server);
    let disabled = |admin: &Client, reason: &str| {
        audit(admin).iter().find(|e| e["reason"] == reason).and_then(|e| e["seq"].as_i64())
    };

    // The server is killed during the wait and stays down: exit 5, and the change is stored.
    let args = ["disable", "f", "--env", "production", "--reason", "incident 1", "--wait", "--wait-timeout", "3s"];
    let child = spawn_flagctl(&server, &args);
    wait_until("the disable to be stored", Duration::from_secs(30), || disabled(&admin, "incident 1").is_some());
    let seq = disabled(&admin, "incident 1").unwrap();
    let killed = own_id(&server);
    server.kill().unwrap();
    let gave_up = finish(child, &args).code(5);
    assert!(
        gave_up
            .stderr
            .contains(&format!("change seq {seq} is stored, but flagctl could not confirm it was applied within 3s")),
        "{}",
        gave_up.stderr
    );
    assert!(gave_up.stderr.contains(&format!("flagctl wait {seq}")), "{}", gave_up.stderr);
    server.restart(&ServerOptions::default()).unwrap();
    assert_eq!(config(&admin, "f", "production")["state"], "DISABLED", "the change was stored");
    // Killed, it left its heartbeat behind, behind the change: every wait would name it
    // for --replica-memory (a stopped replica cannot be told from one cut off and serving
    // the old value). Gone for good, it is forgotten, as an operator would.
    flagctl(&server, &["replica", "forget", &killed]).ok();

    // Killed and restarted during the wait: flagctl asks again and confirms the change.
    admin.quick_op("f", "production", "enable", None).unwrap();
    let args = ["disable", "f", "--env", "production", "--reason", "incident 2", "--wait", "--wait-timeout", "60s"];
    let child = spawn_flagctl(&server, &args);
    wait_until("the disable to be stored", Duration::from_secs(30), || disabled(&admin, "incident 2").is_some());
    let seq = disabled(&admin, "incident 2").unwrap();
    // Killed once its heartbeat says it serves the change: a replica killed before it said
    // so is one the wait cannot tell from one cut off and serving the old value, and waits
    // for until its timeout.
    let own = own_id(&server);
    let recorded = || sqlite(&server, &format!("SELECT applied_seq FROM replicas WHERE id = '{own}'"));
    wait_until("the heartbeat of the change", Duration::from_secs(10), || {
        recorded().trim().parse::<i64>().is_ok_and(|applied| applied >= seq)
    });
    server.kill().unwrap();
    server.restart(&ServerOptions::default()).unwrap();
    unstick_replica(&server);
    let run = finish(child, &args).ok();
    assert!(run.stderr.contains(&format!("the server did not answer the wait for seq {seq}")), "{}", run.stderr);
    assert!(
        run.stderr.contains("applied by every live replica (") && run.stderr.contains(&format!("seq {seq})")),
        "{}",
        run.stderr
    );
}

/// A server stopping during a wait ends it with 503 `SHUTTING_DOWN`: flagctl says the
/// server is stopping (not that it did not answer), asks again, and confirms the change
/// once a server serves it.
#[test]
fn a_wait_answered_by_a_stopping_server_says_so_and_asks_again() {
    // The server logs each wait it begins, which tells when flagctl's is in progress.
    let options = ServerOptions {
        env: vec![("RUST_LOG".into(), "info,sqlx=warn,flagd_server::replication=debug".into())],
        ..ServerOptions::default()
    };
    let mut server = Server::start_with(&options).unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "f"})).unwrap();
    admin.quick_op("f", "production", "enable", None).unwrap();
    stick_replica(&server);
    let args = ["disable", "f", "--env", "production", "--reason", "incident", "--wait", "--wait-timeout", "60s"];
    let child = spawn_flagctl(&server, &args);
    let stored = || audit(&admin).iter().find(|e| e["reason"] == "incident").and_then(|e| e["seq"].as_i64());
    wait_until("the disable to be stored", Duration::from_secs(30), || stored().is_some());
    let seq = stored().unwrap();
    // flagctl's wait, which the stuck replica holds open, has reached the server.
    wait_until("flagctl's wait to begin", Duration::from_secs(30), || {
        server.logs().contains("waiting until every replica serves the change")
    });
    server.terminate(Duration::from_secs(10)).unwrap();
    server.restart(&ServerOptions::default()).unwrap();
    unstick_replica(&server);
    let run = finish(child, &args).ok();
    assert!(
        run.stderr.contains(&format!("the server answering the wait for seq {seq} is stopping"))
            && run.stderr.contains("SHUTTING_DOWN"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("did not answer"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("applied by every live replica (1 replica, seq {seq})")), "{}", run.stderr);
}

/// The stderr of a read of an environment that does not exist.
const NO_SUCH_ENV: &str = "environment `nosuchenv` not found; list environments with `flagctl environments`";

#[test]
fn list_with_env_shows_only_that_environment_in_json_too() {
    let server = Server::start().unwrap();
    server.admin().create_flag(&json!({"key": "f"})).unwrap();
    flagctl(&server, &["enable", "f", "--env", "staging"]).ok();

    let staging = flagctl(&server, &["list", "--env", "staging", "-o", "json"]).ok().json();
    let envs = staging["flags"][0]["environments"].as_object().unwrap();
    assert_eq!(envs.keys().collect::<Vec<_>>(), ["staging"], "only --env, as in the table: {staging}");
    assert_eq!(envs["staging"]["state"], "ENABLED");
    for args in [&["list", "--env", "nosuchenv", "-o", "json"][..], &["list", "--env", "nosuchenv"]] {
        let run = flagctl(&server, args).code(4);
        assert!(run.stderr.contains(NO_SUCH_ENV), "{}", run.stderr);
        assert!(run.stdout.is_empty(), "nothing that reads as an answer: {}", run.stdout);
    }
}

#[test]
fn audit_of_an_unknown_environment_is_not_found_and_a_deleted_flag_keeps_its_history() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "f"})).unwrap();
    flagctl(&server, &["enable", "f", "--env", "staging", "--reason", "pilot"]).ok();

    for args in [&["audit", "--env", "nosuchenv"][..], &["audit", "f", "--env", "nosuchenv", "-o", "json"]] {
        let run = flagctl(&server, args).code(4);
        assert!(run.stderr.contains(NO_SUCH_ENV), "{}", run.stderr);
        assert!(run.stdout.is_empty(), "nothing that reads as an answer: {}", run.stdout);
    }
    // An environment where nothing matched is not mistaken for an unknown one.
    let none = flagctl(&server, &["audit", "f", "--env", "development"]).ok().stdout;
    assert!(none.contains("no audit events match"), "{none}");

    admin.delete("/api/v1/flags/f").unwrap().success("deleting f").unwrap();
    let history = flagctl(&server, &["audit", "f", "-o", "json"]).ok().json();
    let actions: Vec<&str> =
        history["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"flag.delete") && actions.contains(&"config.enable"), "{history}");
    let table = flagctl(&server, &["audit", "f", "--env", "staging"]).ok().stdout;
    assert!(table.contains("config.enable") && table.contains("pilot"), "{table}");

    // Two tokens of one name (one rotated into the other): the table tells them apart by
    // the ids `flagctl token list` shows; a name only one token goes by stays as it is.
    admin.create_flag(&json!({"key": "g"})).unwrap();
    for op in ["enable", "disable"] {
        let value = admin.create_token("deploy", "admin", None).unwrap();
        flagctl_as(server.url(), Some(&value), &[op, "g", "--env", "staging", "--reason", "deploy"]).ok();
    }
    flagctl(&server, &["enable", "g", "--env", "production"]).ok();
    let tokens = flagctl(&server, &["token", "list", "-o", "json"]).ok().json();
    let (deploy, others): (Vec<&Value>, Vec<&Value>) =
        tokens["tokens"].as_array().unwrap().iter().partition(|t| t["name"] == "deploy");
    assert_eq!((deploy.len(), others.len()), (2, 1), "{tokens}");
    let table = flagctl(&server, &["audit", "g"]).ok().stdout;
    for token in deploy {
        assert!(table.contains(&format!("deploy ({})", token["id"].as_str().unwrap())), "{table}");
    }
    let admin_id = others[0]["id"].as_str().unwrap();
    assert!(table.contains("config.enable") && !table.contains(admin_id), "the admin's name alone: {table}");
}

#[test]
fn create_refuses_env_and_says_how_to_enable_the_new_flag() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let before = audit(&admin);
    let refused = flagctl(&server, &["create", "new1", "--env", "production"]).code(2);
    assert!(
        refused.stderr.contains("DISABLED in every environment")
            && refused.stderr.contains("flagctl enable new1 --env production")
            && refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    assert_eq!(admin.get("/api/v1/flags/new1").unwrap().status, 404, "no flag was created");
    assert_eq!(audit(&admin), before, "nothing was written");
}

#[test]
fn segments_belong_to_one_environment() {
    let server = Server::start().unwrap();
    let created = flagctl(
        &server,
        &[
            "segment",
            "set",
            "pilot",
            "--env",
            "staging",
            "--company",
            "1",
            "--company",
            "2",
            "--condition",
            "plan in pro,enterprise",
            "--description",
            "Pilot customers",
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!((&created["environment"], &created["companies"]), (&json!("staging"), &json!(["1", "2"])));
    assert_eq!(created["conditions"], json!([{"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]}]));
    let replaced = flagctl(&server, &["segment", "set", "pilot", "--env", "staging", "--company", "3", "--wait"]).ok();
    assert!(replaced.stdout.contains("updated segment `pilot` in staging"), "{}", replaced.stdout);
    let again = flagctl(&server, &["segment", "set", "pilot", "--env", "staging", "--company", "3"]).ok();
    assert!(again.stdout.contains("already was so, nothing changed"), "{}", again.stdout);

    let staging = flagctl(&server, &["segment", "list", "--env", "staging", "-o", "json"]).ok().json();
    assert_eq!(staging["segments"].as_array().unwrap().len(), 1);
    assert_eq!(staging["segments"][0]["companies"], json!(["3"]));
    let production = flagctl(&server, &["segment", "list", "--env", "production", "-o", "json"]).ok().json();
    assert_eq!(production["segments"], json!([]), "production has its own segments");
    let everywhere = flagctl(&server, &["segment", "list"]).ok().stdout;
    assert!(
        everywhere.contains("ENVIRONMENT") && everywhere.contains("staging") && everywhere.contains("pilot"),
        "{everywhere}"
    );
    // Without --env, the segments of that key in every environment, however many: one here.
    let got = flagctl(&server, &["segment", "get", "pilot", "-o", "json"]).ok().json();
    assert_eq!(
        got["segments"].as_array().map(|all| all.iter().map(|s| s["environment"].clone()).collect()),
        Some(vec![json!("staging")])
    );
    let got = flagctl(&server, &["segment", "get", "pilot", "--env", "staging", "-o", "json"]).ok().json();
    assert_eq!(got["environment"], "staging");
    flagctl(&server, &["segment", "get", "pilot", "--env", "production"]).code(4);

    let uses = json!({"state": "ENABLED", "rules": [{"segments": ["pilot"], "serve": {"variant": "on"}}]});
    server.admin().create_flag(&json!({"key": "beta"})).unwrap();
    server.admin().set_config("beta", "staging", &uses).unwrap();
    let in_use = flagctl(&server, &["segment", "delete", "pilot", "--env", "staging"]).code(3);
    assert!(in_use.stderr.contains("is used by the rules of `beta` in `staging`"), "{}", in_use.stderr);
    server.admin().set_config("beta", "staging", &json!({"state": "ENABLED"})).unwrap();
    flagctl(&server, &["segment", "delete", "pilot", "--env", "staging"]).ok();
    let gone = flagctl(&server, &["segment", "get", "pilot"]).code(4);
    assert!(gone.stderr.contains("flagctl segment list"), "{}", gone.stderr);
}

/// `segment set` on an existing segment changes only the parts its options name, so that
/// changing a description cannot empty the cohort of a flag's rule and take the feature
/// from every company in it.
#[test]
fn segment_set_changes_only_the_parts_it_names() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let set = |options: &[&str]| {
        let mut args = vec!["segment", "set", "pilot", "--env", "staging"];
        args.extend_from_slice(options);
        flagctl(&server, &args).ok()
    };
    let stored = || flagctl(&server, &["segment", "get", "pilot", "--env", "staging", "-o", "json"]).ok().json();
    // The variant `portal` serves in staging to this company with these attributes.
    let variant = |company: &str, attrs: &[&str]| {
        let mut args = vec!["eval", "portal", "--env", "staging", "--company", company, "-o", "json"];
        for attr in attrs {
            args.extend(["--attr", attr]);
        }
        flagctl(&server, &args).ok().json()["variant"].clone()
    };
    let (on, off) = (json!("on"), json!("off"));
    set(&["--company", "1", "--company", "2", "--condition", "plan in pro,enterprise", "--description", "Pilots"]);
    admin.create_flag(&json!({"key": "portal"})).unwrap();
    let uses = json!({"state": "ENABLED", "rules": [{"segments": ["pilot"], "serve": {"variant": "on"}}]});
    admin.set_config("portal", "staging", &uses).unwrap();
    assert_eq!(
        (variant("1", &[]), variant("9", &["plan=pro"]), variant("9", &[])),
        (on.clone(), on.clone(), off.clone())
    );

    let described = set(&["--description", "pilot companies"]).stdout;
    assert_eq!(variant("1", &[]), on, "a listed company still gets the feature");
    assert_eq!(variant("9", &["plan=pro"]), on, "so does a company the conditions match");
    let plan = json!([{"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]}]);
    let segment = stored();
    assert_eq!(segment["companies"], json!(["1", "2"]), "the companies are kept");
    assert_eq!(segment["conditions"], plan, "the conditions are kept");
    assert_eq!(segment["description"], "pilot companies");
    // The confirmation says what was kept, and shows the resulting segment.
    assert!(
        described.contains("updated segment `pilot` in staging")
            && described.contains("set its description; kept its companies and conditions")
            && described.contains("1, 2")
            && described.contains("plan in"),
        "{described}"
    );

    set(&["--company", "3"]);
    let segment = stored();
    assert_eq!(segment["companies"], json!(["3"]), "--company replaces the companies");
    assert_eq!((&segment["conditions"], &segment["description"]), (&plan, &json!("pilot companies")));
    assert_eq!(
        (variant("3", &[]), variant("1", &[]), variant("9", &["plan=pro"])),
        (on.clone(), off.clone(), on.clone())
    );

    let conditioned = set(&["--condition", "seats gte 10", "-o", "json"]).json();
    let seats = json!([{"attribute": "seats", "op": "gte", "value": 10}]);
    assert_eq!(conditioned["conditions"], seats, "--condition replaces the conditions");
    assert_eq!((&conditioned["companies"], &conditioned["description"]), (&json!(["3"]), &json!("pilot companies")));
    assert_eq!(stored()["conditions"], seats);
    assert_eq!((variant("3", &[]), variant("9", &["seats=20"]), variant("9", &["plan=pro"])), (on.clone(), on, off));
}

/// With no part named, `segment set` leaves an existing segment as it is and says how to
/// change it; `--file` is the whole segment, so what it leaves out is removed.
#[test]
fn segment_set_without_options_changes_nothing_and_a_file_replaces_everything() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    fn with<'a>(options: &[&'a str]) -> Vec<&'a str> {
        [["segment", "set", "pilot", "--env", "staging"].as_slice(), options].concat()
    }
    let stored = || flagctl(&server, &["segment", "get", "pilot", "--env", "staging", "-o", "json"]).ok().json();
    flagctl(&server, &with(&["--company", "1", "--condition", "seats gte 10", "--description", "Pilots"])).ok();
    let before = (audit(&admin), stored());

    let nothing = flagctl(&server, &with(&[])).ok().stdout;
    assert!(
        nothing.contains("segment `pilot` in staging unchanged: give --company, --condition, --description or --file")
            && nothing.contains("Pilots"),
        "{nothing}"
    );
    let nothing = flagctl(&server, &with(&["-o", "json"])).ok().json();
    assert_eq!((&nothing["unchanged"], &nothing["companies"]), (&json!(true), &json!(["1"])));
    assert_eq!((audit(&admin), stored()), before, "nothing was written");

    let dir = TempDir::new("flagctl").unwrap();
    let file = dir.path().join("pilot.json");
    std::fs::write(&file, r#"{"companies": ["5"]}"#).unwrap();
    let file = file.to_str().unwrap();
    flagctl(&server, &with(&["--file", file, "--company", "6"])).code(2);
    assert_eq!((audit(&admin), stored()), before, "a file with other options is refused before anything is sent");
    let replaced = flagctl(&server, &with(&["--file", file])).ok().stdout;
    assert!(replaced.contains("replaced segment `pilot` in staging"), "{replaced}");
    let segment = stored();
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();
    assert_eq!(segment["companies"], json!(["5"]));
    assert_eq!(list(&segment["conditions"]), Vec::<Value>::new(), "the file has no conditions: {segment}");
    assert_eq!(segment["description"].as_str().unwrap_or_default(), "", "nor a description: {segment}");
}

/// `get KEY --env` shows the whole configuration: every rule, in order, with what a context
/// must be and what it then gets, so that a rule using a segment can be found and read.
#[test]
fn get_with_env_shows_every_rule_in_words() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "portal"})).unwrap();
    let segment = json!({"key": "pilot", "companies": ["7"]});
    admin.post("/api/v1/environments/production/segments", &segment).unwrap().success("segment").unwrap();
    let rollout = json!({"rollout": {"variants": [{"variant": "on", "weight": 25}, {"variant": "off", "weight": 75}]}});
    let config = json!({"state": "ENABLED", "rules": [
        {"name": "pilots", "segments": ["pilot"], "serve": {"variant": "on"}},
        {"conditions": [{"attribute": "plan", "op": "in", "value": ["pro", "team"]},
                        {"attribute": "seats", "op": "gte", "value": 10}], "serve": rollout},
        {"companies": ["13"], "logic": {"==": [{"var": "country"}, "DE"]}, "serve": {"variant": "off"}}
    ]});
    admin.set_config("portal", "production", &config).unwrap();
    let shown = flagctl(&server, &["get", "portal", "--env", "production"]).ok().stdout;
    let rules: Vec<&str> = shown.lines().skip_while(|l| !l.starts_with("rules")).take(3).collect();
    assert_eq!(
        rules,
        [
            "rules        1. pilots: in segment pilot → variant on",
            "             2. plan in pro, team and seats gte 10 → rollout on 25% / off 75% (by companyId)",
            "             3. company in 13 and logic {\"==\":[{\"var\":\"country\"},\"DE\"]} → variant off",
        ],
        "{shown}"
    );
}

/// A segment of 9,000 companies and a flag with a 70,000-character description: tables
/// show them shortened (the list with its count) with every row still aligned, and
/// `-o json` has them whole.
#[test]
fn tables_shorten_long_cells_and_json_keeps_them_whole() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let companies: Vec<String> = (0..9000).map(|n| (1_000_000 + n).to_string()).collect();
    let segment = json!({"key": "everyone", "companies": companies, "description": "All of them"});
    admin.post("/api/v1/environments/staging/segments", &segment).unwrap().success("segment").unwrap();
    admin.post("/api/v1/environments/staging/segments", &json!({"key": "few", "companies": ["1"]})).unwrap();
    let description = "d".repeat(70_000);
    admin.create_flag(&json!({"key": "long", "description": description})).unwrap();
    admin.create_flag(&json!({"key": "short", "description": "brief"})).unwrap();

    let segments = flagctl(&server, &["segment", "list", "--env", "staging"]).ok().stdout;
    assert!(segments.contains("1000000, 1000001, ") && segments.contains(", … (9000 in all)"), "{segments}");
    let flags = flagctl(&server, &["list"]).ok().stdout;
    assert!(flags.contains(&format!("{}…", "d".repeat(199))), "{flags}");
    for table in [&segments, &flags] {
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines.iter().all(|l| l.chars().count() < 400), "{table}");
        // Aligned: the last column (whose cells hold no two spaces) starts at the same
        // character on every line.
        let start = |l: &str| l.chars().count() - l.rsplit("  ").next().unwrap_or_default().chars().count();
        let starts: Vec<usize> = lines.iter().map(|l| start(l)).collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{starts:?}\n{table}");
    }

    let listed = flagctl(&server, &["segment", "list", "--env", "staging", "-o", "json"]).ok().json();
    assert_eq!(listed["segments"][0]["companies"], json!(companies), "JSON keeps every company");
    let listed = flagctl(&server, &["list", "-o", "json"]).ok().json();
    assert_eq!(listed["flags"][0]["description"], json!(description), "JSON keeps the whole description");
}

#[test]
fn eval_prints_value_variant_and_reason() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "portal"})).unwrap();
    flagctl(&server, &["allow", "portal", "42", "--env", "production"]).ok();
    flagctl(&server, &["enable", "portal", "--env", "production"]).ok();

    let pilot = flagctl(
        &server,
        &["eval", "portal", "--company", "42", "--attr", "plan=pro", "--env", "production", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!((&pilot["value"], &pilot["variant"]), (&json!(true), &json!("on")));
    assert_eq!(pilot["reason"], "TARGETING_MATCH");
    let other =
        flagctl(&server, &["eval", "portal", "--company", "7", "--env", "production", "-o", "json"]).ok().json();
    assert_eq!((&other["value"], &other["variant"]), (&json!(false), &json!("off")));
    let shown = flagctl(&server, &["eval", "portal", "--company", "42", "--env", "production"]).ok().stdout;
    assert!(shown.contains("value") && shown.contains("true") && shown.contains("TARGETING_MATCH"), "{shown}");

    let everywhere = flagctl(&server, &["eval", "portal", "--company", "42", "-o", "json"]).ok().json();
    assert_eq!(everywhere["staging"]["reason"], "DISABLED");
    assert_eq!(everywhere["production"]["value"], true);
    let table = flagctl(&server, &["eval", "portal", "--company", "42"]).ok().stdout;
    assert!(
        table.contains("ENVIRONMENT") && table.contains("DISABLED") && table.contains("TARGETING_MATCH"),
        "{table}"
    );
    flagctl(&server, &["eval", "nope", "--company", "42", "--env", "production"]).code(4);
}

#[test]
fn import_shows_the_diff_and_a_dry_run_changes_nothing() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    for key in ["a", "b"] {
        admin.create_flag(&json!({ "key": key })).unwrap();
    }
    flagctl(&server, &["enable", "a", "--env", "staging"]).ok();
    flagctl(&server, &["rollout", "a", "30", "--env", "staging"]).ok();
    let exported = flagctl(&server, &["export", "--env", "staging"]).ok();
    let dir = TempDir::new("flagctl").unwrap();
    let file = dir.path().join("staging.json");
    std::fs::write(&file, &exported.stdout).unwrap();
    let file = file.to_str().unwrap();
    assert!(exported.json()["flags"]["a"].is_object(), "{}", exported.stdout);
    flagctl(&server, &["export"]).code(2);

    let before = (audit(&admin), config(&admin, "a", "production"));
    let dry = flagctl(&server, &["import", file, "--env", "production", "--dry-run", "-o", "json"]).ok().json();
    assert_eq!(dry["dryRun"], true);
    let changes = dry["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["key"] == "a" && c["action"] == "update"), "{dry}");
    let dry_table = flagctl(&server, &["import", file, "--env", "production", "--dry-run"]).ok().stdout;
    assert!(
        dry_table.contains("dry run: nothing was changed") && dry_table.contains("state: DISABLED → ENABLED"),
        "{dry_table}"
    );
    assert_eq!((audit(&admin), config(&admin, "a", "production")), before, "a dry run writes nothing");

    let real = flagctl(&server, &["import", file, "--env", "production", "--reason", "copy staging", "-o", "json"])
        .ok()
        .json();
    assert_eq!((real["dryRun"].clone(), real["changes"].clone()), (json!(false), dry["changes"].clone()));
    assert_eq!(config(&admin, "a", "production")["state"], "ENABLED");
    for company in 1..=12 {
        let both = flagctl(&server, &["eval", "a", "--company", &company.to_string(), "-o", "json"]).ok().json();
        let served = |env: &str| (both[env]["value"].clone(), both[env]["variant"].clone());
        assert_eq!(served("production"), served("staging"), "company {company}: production serves what staging does");
    }
    let again = flagctl(&server, &["import", file, "--env", "production", "--dry-run"]).ok().stdout;
    assert!(again.contains("would change nothing"), "{again}");

    flagctl(&server, &["create", "c"]).ok();
    flagctl(&server, &["enable", "c", "--env", "production"]).ok();
    let replace =
        flagctl(&server, &["import", file, "--env", "production", "--replace", "--dry-run", "-o", "json"]).ok().json();
    assert!(replace["changes"].as_array().unwrap().iter().any(|c| c["key"] == "c"), "replace resets c: {replace}");
    assert_eq!(config(&admin, "c", "production")["state"], "ENABLED");
}

/// What the server refuses on export or import is said in terms of the file: an
/// environment flagd's format cannot hold points to the native format, and a file the
/// server cannot read is the file to fix, not flagctl's arguments.
#[test]
fn export_and_import_refusals_say_what_to_do_with_the_file() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "a"})).unwrap();
    let regex = json!({"state": "ENABLED", "rules": [{"conditions": [{"attribute": "email", "op": "matches",
        "value": "@acme\\.com$"}], "serve": {"variant": "on"}}]});
    admin.set_config("a", "staging", &regex).unwrap();
    let refused = flagctl(&server, &["export", "--env", "staging"]).code(2);
    assert!(
        refused.stderr.contains("cannot be written in flagd's format")
            && refused.stderr.contains("export it with `--format native`, which keeps everything\n"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("refused the change"), "an export changes nothing: {}", refused.stderr);

    let dir = TempDir::new("flagctl").unwrap();
    let file = dir.path().join("wrong.json");
    std::fs::write(&file, r#"{"flags": [{"key": "b", "state": "enabled"}]}"#).unwrap();
    let before = audit(&admin);
    let bad = flagctl(&server, &["import", file.to_str().unwrap(), "--env", "production"]).code(2);
    assert!(bad.stderr.contains("wrong.json") && bad.stderr.contains("fix the file"), "{}", bad.stderr);
    // Read as JSON, a flag named twice would be the last of the two, and sent so the
    // server could not tell: flagctl refuses the file itself.
    let twice = dir.path().join("twice.json");
    let flag = r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#;
    std::fs::write(&twice, format!(r#"{{"flags": {{"b": {flag}, "b": {flag}}}}}"#)).unwrap();
    let repeated = flagctl(&server, &["import", twice.to_str().unwrap(), "--env", "production"]).code(2);
    let said = "twice.json: `b` is named twice in `flags` (line 1, column ";
    assert!(repeated.stderr.contains(said) && repeated.stderr.contains("fix the file"), "{}", repeated.stderr);
    assert_eq!(audit(&admin), before, "nothing imported");
}

/// A file that would change what other environments serve from a flag's shared
/// definition is refused as a conflict, and flagctl says what to do with the file, and
/// that the server's PATCH, which flagctl has no command for, is the other way.
#[test]
fn an_import_that_would_change_a_shared_definition_says_how_to_fix_the_file() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "a"})).unwrap();
    let dir = TempDir::new("flagctl").unwrap();
    let file = dir.path().join("other.json");
    let flagd = json!({"flags": {"a": {"state": "ENABLED", "variants": {"on": "yes", "off": false},
        "defaultVariant": "on"}}});
    std::fs::write(&file, flagd.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let before = (audit(&admin), config(&admin, "a", "production"));
    for dry_run in [&["--dry-run"][..], &[]] {
        let args = [&["import", file, "--env", "development"][..], dry_run].concat();
        let refused = flagctl(&server, &args).code(3);
        for said in [
            "flag `a`: the file changes variant `on`",
            "nothing was imported into development",
            "other.json",
            "`flagctl get a` shows them",
            "PATCH",
            "flagctl has no command for it",
        ] {
            assert!(refused.stderr.contains(said), "`{said}` missing: {}", refused.stderr);
        }
    }
    assert_eq!((audit(&admin), config(&admin, "a", "production")), before, "nothing imported");
}

#[test]
fn a_native_export_keeps_company_lists_and_imports_back_exactly() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "a"})).unwrap();
    flagctl(&server, &["enable", "a", "--env", "staging"]).ok();
    flagctl(&server, &["allow", "a", "1", "2", "3", "--env", "staging"]).ok();
    let flagd = flagctl(&server, &["export", "--env", "staging"]).ok().json();
    assert!(flagd["flags"]["a"]["targeting"].is_object(), "flagd's format writes the list as JSON Logic: {flagd}");

    let exported = flagctl(&server, &["export", "--env", "staging", "--format", "native"]).ok();
    assert_eq!(exported.json()["flags"][0]["allow"], json!(["1", "2", "3"]), "{}", exported.stdout);
    let dir = TempDir::new("flagctl").unwrap();
    let file = dir.path().join("staging.json");
    std::fs::write(&file, &exported.stdout).unwrap();
    let file = file.to_str().unwrap();
    flagctl(&server, &["import", file, "--env", "production"]).ok();
    let (staging, production) = (config(&admin, "a", "staging"), config(&admin, "a", "production"));
    assert_eq!((&production["state"], &production["allow"]), (&staging["state"], &staging["allow"]));
    let again = flagctl(&server, &["import", file, "--env", "staging", "--dry-run"]).ok().stdout;
    assert!(again.contains("would change nothing"), "{again}");
}

#[test]
fn tokens_are_created_listed_and_revoked() {
    let server = Server::start().unwrap();
    let created = flagctl(&server, &["token", "create", "ci-reader", "--role", "read", "-o", "json"]).ok().json();
    let (id, value) = (created["id"].as_str().unwrap(), created["value"].as_str().unwrap());
    let human = flagctl(&server, &["token", "create", "deploy", "--role", "admin"]).ok();
    assert!(human.stderr.contains("shown only now") && !human.stdout.trim().is_empty(), "{human:?}");
    flagctl(&server, &["token", "create", "ofrep", "--role", "evaluate"]).code(2);
    let bound = flagctl(&server, &["token", "create", "x", "--role", "admin", "--env", "production"]).code(2);
    let said = "only evaluate tokens are bound to an environment, admin tokens are not: drop --env production";
    assert!(bound.stderr.contains(said), "{}", bound.stderr);
    let ofrep = flagctl(&server, &["token", "create", "ofrep", "--role", "evaluate", "--env", "staging", "-o", "json"])
        .ok()
        .json();
    assert_eq!(ofrep["environment"], "staging");

    let listed = flagctl(&server, &["token", "list", "-o", "json"]).ok().json();
    assert!(listed["tokens"].as_array().unwrap().iter().any(|t| t["id"] == id && t["role"] == "read"), "{listed}");
    assert!(flagctl(&server, &["token", "list"]).ok().stdout.contains("ci-reader"));
    flagctl_as(server.url(), Some(value), &["list"]).ok();

    let scoped = flagctl(&server, &["token", "list", "--env", "staging"]).code(2);
    assert!(scoped.stderr.contains("`flagctl token list` takes no --env"), "{}", scoped.stderr);
    let scoped = flagctl(&server, &["token", "revoke", id, "--env", "staging"]).code(2);
    assert!(scoped.stderr.contains("`flagctl token revoke` takes no --env"), "{}", scoped.stderr);
    flagctl_as(server.url(), Some(value), &["list"]).ok();

    flagctl(&server, &["token", "revoke", id]).ok();
    let revoked = flagctl_as(server.url(), Some(value), &["list"]).code(1);
    assert!(revoked.stderr.contains("revoked"), "{}", revoked.stderr);
}

#[test]
fn the_last_admin_token_is_kept_and_the_refusal_says_what_to_do() {
    let server = Server::start().unwrap();
    let listed = flagctl(&server, &["token", "list", "-o", "json"]).ok().json();
    let id = listed["tokens"][0]["id"].as_str().unwrap();
    let refused = flagctl(&server, &["token", "revoke", id]).code(3);
    assert!(refused.stderr.contains("last admin token"), "{}", refused.stderr);
    assert!(refused.stderr.contains("flagctl token create NAME --role admin"), "{}", refused.stderr);
    flagctl(&server, &["list"]).ok();
}

/// A flag enabled in production, ready to ramp.
fn ramp_server(key: &str) -> Server {
    let server = Server::start().unwrap();
    server.admin().create_flag(&json!({ "key": key })).unwrap();
    server
}

#[test]
fn a_failing_check_at_the_third_step_disables_the_flag() {
    let server = ramp_server("checkout");
    let admin = server.admin();
    let run = flagctl(
        &server,
        &[
            "ramp",
            "checkout",
            "--env",
            "production",
            "--steps",
            "1,5,25,50,100",
            "--every",
            "0s",
            "--check",
            "echo checking step $FLAGCTL_RAMP_STEP; test \"$FLAGCTL_RAMP_STEP\" -lt 3",
            "--enable-if-disabled",
            "-o",
            "json",
        ],
    )
    .code(6);
    let production = config(&admin, "checkout", "production");
    assert_eq!(production["state"], "DISABLED", "the kill switch is on");
    assert_eq!(weights(&production), on_off(25.0), "the rollout stays at the third step");

    let events = audit(&admin);
    let disable = events.iter().find(|e| e["action"] == "config.disable").expect("a disable in the audit log");
    let reason = disable["reason"].as_str().unwrap();
    assert!(reason.contains("ramp step 3/5") && reason.contains("health check"), "{reason}");
    let rollouts: Vec<&str> =
        events.iter().filter(|e| e["action"] == "config.rollout").map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(rollouts, ["ramp step 3/5: 25%", "ramp step 2/5: 5%", "ramp step 1/5: 1%"]);
    assert!(events.iter().any(|e| e["action"] == "config.enable"), "--enable-if-disabled enabled it");

    let ramp_events = run.json_lines();
    let checks: Vec<(i64, bool)> = ramp_events
        .iter()
        .filter(|e| e["event"] == "check")
        .map(|e| (e["step"].as_i64().unwrap(), e["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(checks, [(1, true), (2, true), (3, false)]);
    let summary = ramp_events.last().unwrap();
    assert_eq!(
        (&summary["event"], &summary["result"], &summary["exitCode"]),
        (&json!("summary"), &json!("check-failed"), &json!(6))
    );
    assert!(run.stderr.contains("checking step 3"), "the check's output goes to stderr: {}", run.stderr);
    assert!(run.stderr.contains("health check failed at step 3/5"), "{}", run.stderr);
}

#[test]
fn a_ramp_with_passing_checks_reaches_the_last_step() {
    let server = ramp_server("portal");
    flagctl(&server, &["enable", "portal", "--env", "staging"]).ok();
    let dir = TempDir::new("flagctl-ramp").unwrap();
    let log = dir.path().join("checks.log");
    let check = format!(
        "echo \"$FLAGCTL_FLAG $FLAGCTL_ENV $FLAGCTL_RAMP_STEP/$FLAGCTL_RAMP_STEPS $FLAGCTL_RAMP_PERCENT\" >> '{}'",
        log.display()
    );
    let run = flagctl(
        &server,
        &["ramp", "portal", "--env", "staging", "--steps", "10,12.5,100", "--every", "0s", "--check", &check],
    )
    .ok();
    assert!(run.stderr.contains("ramp complete"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "portal staging 1/3 10\nportal staging 2/3 12.5\nportal staging 3/3 100\n"
    );
    let staging = config(&server.admin(), "portal", "staging");
    assert_eq!((staging["state"].clone(), weights(&staging)), (json!("ENABLED"), on_off(100.0)));
}

/// What `flagctl eval` serves user `user` of company 2 in staging.
fn served_to(server: &Server, flag: &str, user: &str) -> Value {
    let attr = format!("userId={user}");
    let args = ["eval", flag, "--env", "staging", "--company", "2", "--attr", &attr, "-o", "json"];
    flagctl(server, &args).ok().json()["variant"].clone()
}

#[test]
fn a_rollout_by_user_keeps_its_users_through_rollout_and_ramp_steps() {
    let server = ramp_server("checkout");
    flagctl(&server, &["rollout", "checkout", "10", "--env", "staging", "--bucket-by", "userId"]).ok();
    flagctl(&server, &["enable", "checkout", "--env", "staging"]).ok();
    // Users of one company, by the bucket `userId` gives them (flagd's hash): one inside
    // the first 10 %, one that only 50 % reaches.
    let user = |low: u64, high: u64| {
        (0..1000)
            .map(|u| format!("u{u}"))
            .find(|u| (low..high).contains(&flagd_core::hash::bucket("checkout", u, 100_000)))
            .unwrap()
    };
    let (early, later) = (user(0, 10_000), user(10_000, 50_000));
    assert_eq!(
        (served_to(&server, "checkout", &early), served_to(&server, "checkout", &later)),
        (json!("on"), json!("off"))
    );

    flagctl(&server, &["ramp", "checkout", "--env", "staging", "--steps", "30,50", "--every", "0s", "--check", "true"])
        .ok();
    let shown = flagctl(&server, &["get", "checkout", "--env", "staging"]).ok().stdout;
    assert!(shown.contains("rollout on 50% / off 50% (by userId)"), "{shown}");
    assert_eq!(
        (served_to(&server, "checkout", &early), served_to(&server, "checkout", &later)),
        (json!("on"), json!("on"))
    );

    let raised = flagctl(&server, &["rollout", "checkout", "60", "--env", "staging"]).ok().stdout;
    assert!(raised.contains("(by userId)"), "{raised}");
    assert_eq!(
        (served_to(&server, "checkout", &early), served_to(&server, "checkout", &later)),
        (json!("on"), json!("on"))
    );

    let by_company = flagctl(&server, &["rollout", "checkout", "60", "--env", "staging", "--bucket-by", "companyId"]);
    assert!(by_company.ok().stdout.contains("(by companyId)"), "--bucket-by companyId goes back to the default");
}

#[test]
fn a_rollout_of_a_disabled_flag_says_it_serves_the_off_variant_until_enabled() {
    let server = ramp_server("checkout");
    let disabled = flagctl(&server, &["rollout", "checkout", "10", "--env", "staging"]).ok().stdout;
    assert!(!disabled.contains("now serves"), "{disabled}");
    assert!(
        disabled.contains("`checkout` is DISABLED in staging: it serves its off variant until enabled")
            && disabled.contains("`flagctl enable checkout --env staging`), then rollout on 10% / off 90%"),
        "{disabled}"
    );
    flagctl(&server, &["enable", "checkout", "--env", "staging"]).ok();
    let enabled = flagctl(&server, &["rollout", "checkout", "20", "--env", "staging"]).ok().stdout;
    assert!(enabled.contains("`checkout` in staging now serves rollout on 20% / off 80%"), "{enabled}");
    // Rules come first: the share goes only to the contexts they leave.
    let rule =
        json!([{"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "serve": {"variant": "on"}}]);
    server.admin().set_config("checkout", "staging", &json!({"state": "ENABLED", "rules": rule})).unwrap();
    let ruled = flagctl(&server, &["rollout", "checkout", "30", "--env", "staging"]).ok().stdout;
    let said = "to the contexts left by its 1 rule(s)";
    assert!(ruled.contains("now serves rollout on 30% / off 70%") && ruled.contains(said), "{ruled}");
}

#[test]
fn a_ramp_starting_below_the_current_percentage_is_refused_and_changes_nothing() {
    let server = ramp_server("checkout");
    let admin = server.admin();
    flagctl(&server, &["rollout", "checkout", "70", "--env", "staging"]).ok();
    flagctl(&server, &["enable", "checkout", "--env", "staging"]).ok();
    let before = (audit(&admin), config(&admin, "checkout", "staging"));
    let args = ["ramp", "checkout", "--env", "staging", "--steps", "10,20", "--every", "0s", "--check", "true"];
    for extra in [&[][..], &["--dry-run"], &["--dry-run", "-o", "json"]] {
        let refused = flagctl(&server, &[&args[..], extra].concat()).code(3);
        assert!(refused.stderr.contains("serves 70% in staging now and the first step, 10%"), "{}", refused.stderr);
        assert!(!refused.stderr.contains("ramp complete"), "{}", refused.stderr);
    }
    assert_eq!((audit(&admin), config(&admin, "checkout", "staging")), before, "nothing was changed");

    // A step at the current percentage changes nothing; the ramp goes on from there.
    // It says so, as enable and disable do, rather than claim the step was set.
    let args = ["ramp", "checkout", "--env", "staging", "--steps", "70,80", "--every", "0s", "--check", "true"];
    let ramped = flagctl(&server, &args).ok().stderr;
    assert!(ramped.contains("ramp complete"), "{ramped}");
    assert!(ramped.contains("step 1/2: 70% already served, nothing changed (seq "), "{ramped}");
    assert!(ramped.contains("step 2/2: 80% set (seq "), "{ramped}");
    assert_eq!(weights(&config(&admin, "checkout", "staging")), on_off(80.0));
    let again =
        ["ramp", "checkout", "--env", "staging", "--steps", "80", "--every", "0s", "--check", "true", "-o", "json"];
    let json = flagctl(&server, &again).ok().json_lines();
    let step = json.iter().find(|e| e["event"] == "step").unwrap();
    assert_eq!((step["percentage"].as_f64(), &step["unchanged"]), (Some(80.0), &json!(true)), "{step}");

    // On after off: the on variant owns the high buckets, and no percentage continues that.
    flagctl(&server, &["rollout", "checkout", "--weight", "off=20", "--weight", "on=80", "--env", "staging"]).ok();
    let before = audit(&admin);
    let args = ["ramp", "checkout", "--env", "staging", "--steps", "90,100", "--every", "0s", "--check", "true"];
    let refused = flagctl(&server, &args).code(3);
    assert!(refused.stderr.contains("not a percentage of its on variant"), "{}", refused.stderr);
    assert!(refused.stderr.contains("rollout off 20% / on 80%"), "{}", refused.stderr);
    assert_eq!(audit(&admin), before, "nothing was changed");
}

#[test]
fn a_ramp_refuses_a_disabled_flag_and_a_dry_run_changes_nothing() {
    let server = ramp_server("search");
    let admin = server.admin();
    let before = (audit(&admin), config(&admin, "search", "production"));
    let args =
        ["ramp", "search", "--env", "production", "--steps", "1,5,25,50,100", "--every", "10m", "--check", "false"];
    let refused = flagctl(&server, &args).code(3);
    assert!(refused.stderr.contains("--enable-if-disabled"), "{}", refused.stderr);

    let dry = flagctl(&server, &[&args[..], &["--enable-if-disabled", "--dry-run"]].concat()).ok();
    assert!(
        dry.stderr.contains("1% → 5% → 25% → 50% → 100% every 10m") && dry.stderr.contains("dry run"),
        "{}",
        dry.stderr
    );
    let plan =
        flagctl(&server, &[&args[..], &["--enable-if-disabled", "--dry-run", "-o", "json"]].concat()).ok().json_lines();
    assert_eq!(
        (&plan[0]["event"], &plan[0]["steps"], &plan[0]["enable"]),
        (&json!("plan"), &json!([1.0, 5.0, 25.0, 50.0, 100.0]), &json!(true))
    );
    assert_eq!((audit(&admin), config(&admin, "search", "production")), before, "nothing was changed");
}

/// Whether process `pid` runs (a zombie, killed and waiting for a reaper, does not).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

#[test]
fn sigterm_kills_the_running_check_and_what_it_started() {
    let server = ramp_server("billing");
    flagctl(&server, &["enable", "billing", "--env", "production"]).ok();
    let dir = TempDir::new("flagctl-ramp").unwrap();
    let pid_file = dir.path().join("child.pid");
    // The check starts a shell that records its pid and becomes a long sleep: a process
    // of the check's own, not the `sh -c` flagctl started.
    // (Its output goes elsewhere, so that a surviving child does not hold flagctl's pipes.)
    let check = format!("sh -c 'echo $$ > \"{}\"; exec sleep 313' >/dev/null 2>&1; true", pid_file.display());
    let args = ["ramp", "billing", "--env", "production", "--steps", "10,100", "--every", "0s", "--check", &check];
    let child = spawn_flagctl(&server, &args);
    let mut pid = String::new();
    wait_until("the check's child to start", Duration::from_secs(30), || {
        pid = std::fs::read_to_string(&pid_file).unwrap_or_default().trim().to_owned();
        pid.parse::<u32>().is_ok()
    });
    assert!(running(&pid), "the check's child runs");
    signal(child.id(), "-TERM").unwrap();
    let run = finish(child, &args).code(130);
    assert!(run.stderr.contains("interrupted by SIGTERM") && run.stderr.contains("left at 10%"), "{}", run.stderr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = running(&pid);
    if survived {
        // Not left behind for 313 s by a failing run.
        let _ = run_checked("kill", &["-KILL", &pid], Path::new("."));
    }
    assert!(!survived, "process {pid}, started by the check, outlived flagctl ramp");
}

#[test]
fn sigterm_stops_a_ramp_at_the_last_step_set() {
    let server = ramp_server("billing");
    let admin = server.admin();
    flagctl(&server, &["enable", "billing", "--env", "production"]).ok();
    let args = ["ramp", "billing", "--env", "production", "--steps", "10,50,100", "--every", "1h", "--check", "true"];
    let mut child = command(server.url(), Some(server.admin_token()), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first ramp step", Duration::from_secs(30), || {
        audit(&admin).iter().any(|e| e["reason"] == "ramp step 1/3: 10%")
    });
    signal(child.id(), "-TERM").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "flagctl ramp did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = Run::finished(format!("flagctl {}", args.join(" ")), child.wait_with_output().unwrap()).code(130);
    assert!(run.stderr.contains("interrupted by SIGTERM") && run.stderr.contains("left at 10%"), "{}", run.stderr);
    let production = config(&admin, "billing", "production");
    assert_eq!((production["state"].clone(), weights(&production)), (json!("ENABLED"), on_off(10.0)));
}

/// A web server that is not flagd: it answers every request with `response` (status line,
/// headers and body, without `Content-Length` and `Connection`, which it adds). Returns its
/// URL; it lives as long as the test process.
fn impostor(status: &str, headers: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let response =
        format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            // The request's head (and a small body) arrive in the first read or two.
            let mut buf = [0u8; 8192];
            let mut read = Vec::new();
            while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn an_address_that_is_not_flagd_or_redirects_elsewhere_is_refused_saying_so() {
    let html = impostor("200 OK", "Content-Type: text/html\r\n", "<html>hello</html>");
    let run = flagctl_as(&html, Some("t"), &["disable", "f", "--env", "production", "--reason", "r"]).code(1);
    assert!(run.stderr.contains("something other than flagd's JSON (`<html>hello</html>…`)"), "{}", run.stderr);
    assert!(!run.stdout.contains("disabled"), "nothing was disabled: {}", run.stdout);
    // Another API's 404 says nothing about the flag: not "not found" (4), which a deploy
    // script reads as "create it".
    let other_api = impostor("404 Not Found", "Content-Type: application/json\r\n", r#"{"message":"no route"}"#);
    let run = flagctl_as(&other_api, Some("t"), &["get", "f"]).code(1);
    assert!(run.stderr.contains("check that FLAGD_URL (or --url) names flagd-server"), "{}", run.stderr);

    // A JSON answer from another API, to a write: no `version`, so no sign of a change.
    let empty = impostor("200 OK", "Content-Type: application/json\r\n", "{}");
    let run = flagctl_as(&empty, Some("t"), &["disable", "f", "--env", "production", "--reason", "r"]).code(1);
    assert!(
        run.stderr.contains("answered without the `version` every flagd-server write answer has"),
        "{}",
        run.stderr
    );
    // A wait ends at once: asking such an address again until the timeout would change nothing.
    let started = Instant::now();
    let run = flagctl_as(&html, Some("t"), &["wait", "5", "--wait-timeout", "20s"]).code(1);
    assert!(started.elapsed() < Duration::from_secs(10), "the wait took {:?}", started.elapsed());
    assert!(
        run.stderr.contains("something other than flagd's JSON") && !run.stderr.contains("stored"),
        "{}",
        run.stderr
    );

    let redirect = impostor("308 Permanent Redirect", "Location: https://flagd.example.com/\r\n", "");
    let run = flagctl_as(&redirect, Some("t"), &["enable", "f", "--env", "staging"]).code(2);
    assert!(run.stderr.contains("redirects to https://flagd.example.com/ (HTTP 308)"), "{}", run.stderr);
    assert!(!run.stderr.contains("refused the token"), "the token is not to blame: {}", run.stderr);

    for (url, said) in [
        ("127.0.0.1:8013", "is not an http:// or https:// address"),
        ("flagd:8013", "is not an http:// or https:// address"),
        ("http://", "is not a URL"),
        ("http://127.0.0.1:8013/?x=1", "has a query or fragment"),
    ] {
        let run = flagctl_as(url, Some("t"), &["list"]).code(2);
        assert!(run.stderr.contains(&format!("FLAGD_URL (or --url) `{url}` {said}")), "{url}: {}", run.stderr);
    }

    // A token read from a file with its line break still works; one broken inside is refused.
    let server = Server::start().unwrap();
    let token = format!("{}\n", server.admin_token());
    flagctl_as(server.url(), Some(&token), &["environments"]).ok();
    let broken = format!("{}\nx", server.admin_token());
    let run = flagctl_as(server.url(), Some(&broken), &["environments"]).code(2);
    assert!(run.stderr.contains("FLAGD_TOKEN (or --token) holds a control character"), "{}", run.stderr);
}

#[test]
fn a_name_given_twice_or_a_file_naming_another_segment_is_refused_and_changes_nothing() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let events = audit(&admin).len();
    let run =
        flagctl(&server, &["create", "twice", "--variant", "on=true", "--variant", "off=false", "--variant", "on=1"]);
    assert!(run.code(2).stderr.contains("--variant names `on` twice"));
    let object = ["create", "shape", "--type", "object", "--variant", r#"a={"x":1,"x":2}"#, "--variant", "b={}"];
    let run = flagctl(&server, &object).code(2);
    assert!(run.stderr.contains("variant `a`: `x` is named twice"), "{}", run.stderr);
    flagctl(&server, &["get", "twice"]).code(4);
    flagctl(&server, &["get", "shape"]).code(4);

    admin.create_flag(&json!({"key": "f"})).unwrap();
    let eval = |attrs: &[&str]| {
        let mut args = vec!["eval", "f", "--env", "staging", "--company", "42"];
        args.extend_from_slice(attrs);
        flagctl(&server, &args).code(2).stderr
    };
    assert!(eval(&["--attr", "plan=pro", "--attr", "plan=free"]).contains("--attr names `plan` twice"));
    assert!(eval(&["--attr", "companyId=13"]).contains("give the companyId with --company"));

    let dir = TempDir::new("flagctl-segment").unwrap();
    let file = dir.path().join("segment.json");
    std::fs::write(&file, r#"{"key": "other", "companies": ["5"]}"#).unwrap();
    let args = ["segment", "set", "pilot", "--env", "staging", "--file", file.to_str().unwrap()];
    let run = flagctl(&server, &args).code(2);
    assert!(run.stderr.contains(r#"names the segment "other", the command line `pilot`"#), "{}", run.stderr);
    let segments = admin.get("/api/v1/environments/staging/segments").unwrap().body;
    assert_eq!(segments["segments"], json!([]), "{segments}");
    assert_eq!(audit(&admin).len(), events + 1, "only the flag `f` was created");
}

#[test]
fn tables_show_control_characters_escaped_and_json_keeps_them() {
    let server = Server::start().unwrap();
    server.admin().create_flag(&json!({"key": "f", "description": "two\nlines \u{1b}[31mRED"})).unwrap();
    flagctl(&server, &["enable", "f", "--env", "development", "--reason", "line1\nline2\ttab"]).ok();
    let table = flagctl(&server, &["audit", "f", "--limit", "1"]).ok();
    assert!(table.stdout.contains(r"line1\nline2\ttab"), "{}", table.stdout);
    assert_eq!(table.stdout.lines().count(), 2, "one header and one row: {}", table.stdout);
    let listed = flagctl(&server, &["list"]).ok();
    assert!(listed.stdout.contains(r"two\nlines \u{1b}[31mRED"), "{}", listed.stdout);
    assert!(!listed.stdout.contains('\u{1b}'), "no escape sequence reaches the terminal");
    let shown = flagctl(&server, &["get", "f"]).ok().stdout;
    assert!(shown.contains(r"two\nlines \u{1b}[31mRED") && !shown.contains('\u{1b}'), "{shown}");
    let json = flagctl(&server, &["audit", "f", "--limit", "1", "-o", "json"]).ok().json();
    assert_eq!(json["events"][0]["reason"], "line1\nline2\ttab");
}

/// Whether process `pid` has a handler for SIGINT and SIGTERM (signals 2 and 15 in
/// `SigCgt`): flagctl installs both as its wait begins.
fn catches_sigint_and_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(str::trim).unwrap_or("0");
    let both = (1 << (2 - 1)) | (1 << (15 - 1));
    u64::from_str_radix(caught, 16).is_ok_and(|mask| mask & both == both)
}

#[test]
fn an_interrupted_wait_ends_with_130_saying_the_change_is_stored() {
    let server = Server::start().unwrap();
    server.admin().create_flag(&json!({"key": "f"})).unwrap();
    let seq =
        flagctl(&server, &["enable", "f", "--env", "staging", "-o", "json"]).ok().json()["version"].as_i64().unwrap();
    stick_replica(&server);
    for (signal_name, said) in [("-INT", "SIGINT"), ("-TERM", "SIGTERM")] {
        let args = ["wait", &seq.to_string(), "--wait-timeout", "60s"];
        let child = spawn_flagctl(&server, &args);
        wait_until("flagctl to wait", Duration::from_secs(10), || catches_sigint_and_sigterm(child.id()));
        signal(child.id(), signal_name).unwrap();
        let run = finish(child, &args).code(130);
        assert!(
            run.stderr.contains(&format!("{said} before change seq {seq} was confirmed applied")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains(&format!("check with `flagctl wait {seq}`")), "{}", run.stderr);
    }
}

#[test]
fn an_import_answers_its_version_and_is_waited_for_like_any_write() {
    let server = Server::start().unwrap();
    server.admin().create_flag(&json!({"key": "f"})).unwrap();
    let dir = TempDir::new("flagctl-import-wait").unwrap();
    let file = dir.path().join("flags.json");
    let write_file = |default: &str| {
        let doc = json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": default}}});
        std::fs::write(&file, doc.to_string()).unwrap();
    };
    let import = |extra: &[&str]| {
        let mut args = vec!["import", file.to_str().unwrap(), "--env", "production"];
        args.extend_from_slice(extra);
        flagctl(&server, &args)
    };
    write_file("on");
    let run = import(&["--wait"]).ok();
    let seq = config(&server.admin(), "f", "production")["version"].as_i64().unwrap();
    assert!(
        run.stdout.contains(&format!("imported into production (merge, seq {seq}): 1 change(s)")),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains(&format!("applied by every live replica (1 replica, seq {seq})")), "{}", run.stderr);
    // The same file again changes nothing: there is nothing to wait for.
    let again = import(&["--wait", "-o", "json"]).ok();
    assert_eq!((again.json()["changes"].clone(), again.json().get("version").cloned()), (json!([]), None));
    assert!(!again.stderr.contains("applied"), "{}", again.stderr);

    stick_replica(&server);
    write_file("off");
    let late = import(&["--wait", "--wait-timeout", "300ms"]).code(5);
    assert!(late.stderr.contains("stuck-replica"), "{}", late.stderr);
    assert_eq!(config(&server.admin(), "f", "production")["fallthrough"]["variant"], "off", "the import is stored");
}

#[test]
fn commands_that_cover_every_environment_refuse_env() {
    let server = Server::start().unwrap();
    for (args, said) in [
        (&["environments", "--env", "nosuch"][..], "`flagctl environments` takes no --env: it lists every environment"),
        (&["wait", "1", "--env", "staging"], "`flagctl wait` takes no --env: a change's sequence number is the whole"),
        (&["token", "list", "--env", "staging"], "`flagctl token list` takes no --env: tokens are listed and revoked"),
    ] {
        let run = flagctl(&server, args).code(2);
        assert!(run.stderr.contains(said), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn an_endless_or_binary_file_is_refused_without_reading_it_all() {
    let server = Server::start().unwrap();
    let endless = flagctl(&server, &["import", "/dev/zero", "--env", "staging"]).code(2);
    assert!(endless.stderr.contains("/dev/zero is larger than 256 MiB"), "{}", endless.stderr);
    let dir = TempDir::new("flagctl-binary").unwrap();
    let binary = dir.path().join("flags.json");
    std::fs::write(&binary, [0xff, 0xfe, 0x7b, 0x7d]).unwrap();
    let run = flagctl(&server, &["import", binary.to_str().unwrap(), "--env", "staging"]).code(2);
    assert!(run.stderr.contains("is not UTF-8 text"), "{}", run.stderr);
}

/// A replica killed without a goodbye stays in the cluster view, and every --wait fails
/// naming it, until the server's --replica-memory forgets it or an operator does.
#[test]
fn a_replica_gone_for_good_is_listed_named_by_waits_and_forgotten_by_hand() {
    let server = Server::start().unwrap();
    server.admin().create_flag(&json!({"key": "f"})).unwrap();
    // Last heard a minute ago: within the default ten minutes' memory.
    sqlite(
        &server,
        "INSERT INTO replicas (id, address, applied_seq, started_at, last_seen) VALUES ('killed-replica', '10.0.0.9:8013', 0, 0, CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 60000)",
    );
    let listed = flagctl(&server, &["replica", "list"]).ok().stdout;
    assert!(listed.contains("killed-replica") && listed.contains("s ago (silent)"), "{listed}");
    assert!(listed.contains("(this server)"), "{listed}");

    let args = ["disable", "f", "--env", "production", "--reason", "incident", "--wait", "--wait-timeout", "1s"];
    let unconfirmed = flagctl(&server, &args).code(5);
    assert!(unconfirmed.stderr.contains("killed-replica"), "{}", unconfirmed.stderr);
    assert!(unconfirmed.stderr.contains("flagctl replica forget"), "{}", unconfirmed.stderr);

    flagctl(&server, &["replica", "forget", &own_id(&server)]).code(3);
    flagctl(&server, &["replica", "forget", "nope"]).code(4);
    flagctl(&server, &["replica", "forget", "killed-replica", "--env", "production"]).code(2);
    let forgot = flagctl(&server, &["replica", "forget", "killed-replica"]).ok().stdout;
    assert!(forgot.contains("forgot replica killed-replica"), "{forgot}");
    assert!(!flagctl(&server, &["replica", "list"]).ok().stdout.contains("killed-replica"));
    let seq = config(&server.admin(), "f", "production")["version"].as_i64().unwrap().to_string();
    flagctl(&server, &["wait", &seq]).ok();
}
