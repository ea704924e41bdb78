//! The release scripts of `deploy/` end to end: `rollback-feature.sh` and `promote.sh` run
//! the real `flagctl` against the real `flagd-server`; shellcheck lints every script; the
//! GitHub Actions examples must parse and call the scripts with options they accept; the
//! systemd unit and the nginx configuration are checked by systemd and nginx themselves
//! (`.ci/run` installs them; a missing tool fails the test with the package to install).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flagd_tests::{Client, Run, Server, TempDir, flagctl_binary, server_binary, workspace_root};
use serde_json::{Value, json};

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

/// `deploy/SCRIPT args…` with exactly the settings in `env` (FLAGD_URL, FLAGD_TOKEN and
/// FLAGCTL are removed from the inherited environment first).
fn script_with(script: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(deploy_dir().join(script));
    command.args(args).env_remove("FLAGD_URL").env_remove("FLAGD_TOKEN").env_remove("FLAGCTL");
    command.envs(env.iter().copied());
    Run::of(format!("deploy/{script} {}", args.join(" ")), &mut command, "")
}

/// `deploy/SCRIPT args…` against `server` with its admin token and the real flagctl.
fn script(server: &Server, name: &str, args: &[&str]) -> Run {
    let flagctl = flagctl_binary().unwrap();
    let env = [("FLAGD_URL", server.url()), ("FLAGD_TOKEN", server.admin_token()), ("FLAGCTL", path_str(&flagctl))];
    script_with(name, &env, args)
}

/// Settings that name no server: any network attempt would fail with exit 1.
fn offline_env(flagctl: &Path) -> [(&'static str, &str); 3] {
    [("FLAGD_URL", "http://127.0.0.1:1"), ("FLAGD_TOKEN", "unused"), ("FLAGCTL", path_str(flagctl))]
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn audit(admin: &Client, flag: &str) -> Vec<Value> {
    let path = format!("/api/v1/audit?flag={flag}&limit=1000");
    admin.get(&path).unwrap().success("audit").unwrap().body["events"].as_array().unwrap().clone()
}

fn state(admin: &Client, flag: &str, env: &str) -> Value {
    admin.config(flag, env).unwrap().0["state"].clone()
}

/// A bool flag enabled in production.
fn enabled_in_production(server: &Server, key: &str) -> Client {
    let admin = server.admin();
    admin.create_flag(&json!({ "key": key })).unwrap();
    admin.quick_op(key, "production", "enable", Some(&json!({"reason": "launch"}))).unwrap();
    admin
}

// ---------------------------------------------------------------------------------------
// rollback-feature.sh
// ---------------------------------------------------------------------------------------

#[test]
fn rollback_disables_the_flag_verifies_it_is_off_and_records_the_reason() {
    let server = Server::start().unwrap();
    let admin = enabled_in_production(&server, "checkout");
    let reason = "deploy 1234 rolled back: error rate 5%";

    let run = script(&server, "rollback-feature.sh", &["checkout", reason, "--company", "42"]).code(0);
    assert!(run.stdout.contains("rolled back `checkout` in production"), "{}", run.stdout);
    assert!(run.stderr.contains("verified: `checkout` is off in production (company 42 gets false"), "{}", run.stderr);
    assert_eq!(state(&admin, "checkout", "production"), "DISABLED");
    let newest = &audit(&admin, "checkout")[0];
    assert_eq!((&newest["action"], &newest["reason"]), (&json!("config.disable"), &json!(reason)));
    assert_eq!(newest["environment"], "production");

    // Run again (a retried deploy job): still succeeds, still off, but the server records
    // nothing for a disable of a disabled flag, and the script must not claim otherwise.
    let before = audit(&admin, "checkout");
    let again = script(&server, "rollback-feature.sh", &["checkout", "retry"]).code(0);
    let summary = "`checkout` was already disabled in production, verified off; nothing new was recorded for: retry";
    assert!(again.stdout.contains(summary), "{}", again.stdout);
    assert!(!again.stdout.contains("rolled back"), "{}", again.stdout);
    assert!(again.stderr.contains("nothing new was recorded, this REASON is not in the audit log"), "{}", again.stderr);
    assert_eq!(audit(&admin, "checkout"), before, "no audit event, so no record of `retry`");
    assert_eq!(state(&admin, "checkout", "production"), "DISABLED");
}

#[test]
fn rollback_verifies_the_flags_own_off_variant_and_leaves_other_environments_alone() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    let variants = json!({"classic": "old-theme", "fresh": "new-theme"});
    admin
        .create_flag(&json!({"key": "theme", "variants": variants, "offVariant": "classic", "onVariant": "fresh"}))
        .unwrap();
    for env in ["staging", "production"] {
        admin.quick_op("theme", env, "enable", None).unwrap();
    }
    let run = script(&server, "rollback-feature.sh", &["theme", "bad colours"]).code(0);
    assert!(run.stderr.contains("gets \"old-theme\", variant classic, reason DISABLED"), "{}", run.stderr);
    assert_eq!(state(&admin, "theme", "staging"), "ENABLED", "only production is rolled back");

    script(&server, "rollback-feature.sh", &["theme", "staging too", "--env", "staging"]).code(0);
    assert_eq!(state(&admin, "theme", "staging"), "DISABLED");
}

/// A flag without an off variant, disabled, serves no variant and no value (reason
/// DISABLED): that is off, whether the flag never had one or a flagd import without
/// `defaultVariant` set `noOffVariant` beside a variant named `off`.
#[test]
fn rollback_verifies_a_flag_without_an_off_variant() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "theme", "variants": {"red": "red", "blue": "blue"}})).unwrap();
    let flagd_file = json!({"flags": {"banner": {"state": "ENABLED", "variants": {"on": "shown", "off": "hidden"}}}});
    admin.post("/api/v1/environments/production/import", &flagd_file).unwrap().success("import").unwrap();
    assert_eq!(admin.get("/api/v1/flags/banner").unwrap().body["noOffVariant"], true);
    admin.quick_op("theme", "production", "enable", None).unwrap();

    for key in ["theme", "banner"] {
        let run = script(&server, "rollback-feature.sh", &[key, "bad deploy", "--verify-timeout", "2"]).code(0);
        assert!(run.stdout.contains(&format!("rolled back `{key}` in production: bad deploy")), "{}", run.stdout);
        assert!(run.stderr.contains("gets no variant and no value (the flag has no off variant"), "{}", run.stderr);
        assert_eq!(state(&admin, key, "production"), "DISABLED");
    }
}

#[test]
fn rollback_of_an_unknown_flag_exits_4_and_changes_nothing() {
    let server = Server::start().unwrap();
    let admin = enabled_in_production(&server, "checkout");
    let before = audit(&admin, "checkout");
    let run = script(&server, "rollback-feature.sh", &["chekout", "typo"]).code(4);
    assert!(run.stderr.contains("disabling `chekout` in production failed (flagctl exit 4)"), "{}", run.stderr);
    assert!(run.stderr.contains("flagctl list"), "the message says how to find the key: {}", run.stderr);
    assert_eq!(audit(&admin, "checkout"), before);
    assert_eq!(state(&admin, "checkout", "production"), "ENABLED");
}

#[test]
fn rollback_exits_10_when_the_flag_still_evaluates_on() {
    // A replica that has not applied the disable, played by a flagctl whose `eval` still
    // answers from before the kill switch.
    let server = Server::start().unwrap();
    let admin = enabled_in_production(&server, "checkout");
    let dir = TempDir::new("deploy").unwrap();
    let lagging = dir.path().join("flagctl");
    let still_on = r#"{"key":"checkout","value":true,"variant":"on","reason":"STATIC"}"#;
    std::fs::write(
        &lagging,
        format!("#!/bin/sh\nif [ \"$1\" = eval ]; then echo '{still_on}'; exit 0; fi\nexec \"$REAL_FLAGCTL\" \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&lagging, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let real = flagctl_binary().unwrap();
    let env = [
        ("FLAGD_URL", server.url()),
        ("FLAGD_TOKEN", server.admin_token()),
        ("FLAGCTL", path_str(&lagging)),
        ("REAL_FLAGCTL", path_str(&real)),
    ];
    let run = script_with("rollback-feature.sh", &env, &["checkout", "incident", "--verify-timeout", "0"]).code(10);
    assert!(run.stderr.contains("`checkout` still evaluates to true (variant on, reason STATIC)"), "{}", run.stderr);
    assert!(run.stderr.contains("run this script again"), "{}", run.stderr);
    assert_eq!(state(&admin, "checkout", "production"), "DISABLED", "the disable itself was stored");
}

// ---------------------------------------------------------------------------------------
// promote.sh
// ---------------------------------------------------------------------------------------

/// A flag validated in staging: enabled, pilot company 42, 25 % rollout.
fn validated_in_staging(server: &Server, key: &str) -> Client {
    let admin = server.admin();
    admin.create_flag(&json!({ "key": key })).unwrap();
    admin.quick_op(key, "staging", "enable", None).unwrap();
    admin.quick_op(key, "staging", "allow", Some(&json!({"companies": ["42"]}))).unwrap();
    admin.set_rollout(key, "staging", 25.0).unwrap();
    admin
}

#[test]
fn promote_copies_staging_to_production_and_keeps_it_disabled() {
    let server = Server::start().unwrap();
    let admin = validated_in_staging(&server, "portal");

    let run = script(&server, "promote.sh", &["portal", "--reason", "release 2.4"]).code(0);
    assert!(run.stdout.contains("promoted `portal` from staging to production; it stays DISABLED"), "{}", run.stdout);
    assert!(run.stdout.contains("DISABLED"), "the production configuration is shown: {}", run.stdout);
    let (staging, production) =
        (admin.config("portal", "staging").unwrap().0, admin.config("portal", "production").unwrap().0);
    assert_eq!(production["allow"], json!(["42"]));
    assert_eq!(production["fallthrough"], staging["fallthrough"], "the rollout is copied");
    assert_eq!(production["state"], "DISABLED");
    assert!(audit(&admin, "portal").iter().any(|e| e["reason"] == "release 2.4"), "the reason is audited");

    // Promoted already: said, as rollback-feature.sh says a flag was already off, since the
    // server records nothing (and so not this reason) for a change that changes nothing.
    let again = script(&server, "promote.sh", &["portal", "--reason", "release 2.4 again"]).code(0);
    assert!(
        again.stdout.contains(
            "`portal` in production already had staging's configuration, nothing was copied; it stays DISABLED"
        ),
        "{}",
        again.stdout
    );
    assert!(again.stderr.contains("this REASON is not in the audit log"), "{}", again.stderr);
    assert!(!audit(&admin, "portal").iter().any(|e| e["reason"] == "release 2.4 again"));

    let run = script(&server, "promote.sh", &["portal", "--enable"]).code(0);
    assert!(run.stdout.contains("it is ENABLED in production"), "{}", run.stdout);
    assert_eq!(state(&admin, "portal", "production"), "ENABLED");
    let pilot = admin
        .post("/api/v1/flags/portal/environments/production/evaluate", &json!({"context": {"companyId": "42"}}))
        .unwrap()
        .body;
    assert_eq!(pilot["value"], true, "pilot company 42 gets the feature in production: {pilot}");
}

#[test]
fn promote_refuses_a_flag_disabled_in_staging_and_changes_nothing() {
    let server = Server::start().unwrap();
    let admin = validated_in_staging(&server, "portal");
    admin.quick_op("portal", "staging", "disable", Some(&json!({"reason": "broken"}))).unwrap();
    let before = admin.config("portal", "production").unwrap().0;

    let run = script(&server, "promote.sh", &["portal", "--enable"]).code(3);
    assert!(run.stderr.contains("`portal` is DISABLED in staging"), "{}", run.stderr);
    assert!(run.stderr.contains("--allow-disabled-source"), "{}", run.stderr);
    assert_eq!(admin.config("portal", "production").unwrap().0, before);

    script(&server, "promote.sh", &["portal", "--allow-disabled-source"]).code(0);
    assert_eq!(admin.config("portal", "production").unwrap().0["allow"], json!(["42"]));
    script(&server, "promote.sh", &["nope"]).code(4);
}

/// Exit 3 is any conflict, not only a change made meanwhile: the script's hint defers to
/// flagctl's message, which says what conflicts.
#[test]
fn promote_passes_on_a_refused_promotion_without_guessing_its_cause() {
    let server = Server::start().unwrap();
    let admin = server.admin();
    admin.create_flag(&json!({"key": "portal"})).unwrap();
    admin.quick_op("portal", "production", "allow", Some(&json!({"companies": ["42"]}))).unwrap();
    let before = admin.config("portal", "production").unwrap().0;

    let run = script(&server, "promote.sh", &["portal", "--allow-disabled-source"]).code(3);
    assert!(run.stderr.contains("has nothing set in `staging`"), "{}", run.stderr);
    assert!(run.stderr.contains("set `portal` up in staging first"), "flagctl's advice: {}", run.stderr);
    assert!(run.stderr.contains("flagctl's message above says what conflicts"), "{}", run.stderr);
    assert!(!run.stderr.contains("changed meanwhile"), "nothing changed meanwhile: {}", run.stderr);
    assert_eq!(admin.config("portal", "production").unwrap().0, before);
}

// ---------------------------------------------------------------------------------------
// Help and usage errors: nothing is sent (the offline URL would make any request exit 1)
// ---------------------------------------------------------------------------------------

const SCRIPTS: [&str; 2] = ["rollback-feature.sh", "promote.sh"];

#[test]
fn help_documents_usage_settings_and_exit_codes() {
    for name in SCRIPTS {
        let help = script_with(name, &[], &["--help"]).code(0).stdout;
        for needle in ["Usage:", "FLAGD_URL", "FLAGD_TOKEN", "FLAGCTL", "Exit status", "\n  0 ", "\n  4 ", "\n  130 "] {
            assert!(help.contains(needle), "{name} --help lacks {needle:?}:\n{help}");
        }
    }
    let rollback = script_with("rollback-feature.sh", &[], &["-h"]).code(0).stdout;
    assert!(rollback.contains("\n  10 ") && rollback.contains("--company"), "{rollback}");
    let promote = script_with("promote.sh", &[], &["-h"]).code(0).stdout;
    assert!(promote.contains("--enable") && promote.contains("--allow-disabled-source"), "{promote}");
}

/// Environment variables for a script.
type Settings<'a> = [(&'a str, &'a str)];

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let flagctl = flagctl_binary().unwrap();
    let offline = offline_env(&flagctl);
    let cases: [(&str, &Settings, &[&str], &str); 8] = [
        ("rollback-feature.sh", &offline, &["checkout"], "expected KEY and \"REASON\""),
        ("rollback-feature.sh", &offline, &["checkout", "  "], "REASON is empty"),
        ("rollback-feature.sh", &offline, &["checkout", "r", "--force"], "unknown option --force"),
        ("rollback-feature.sh", &offline, &["checkout", "r", "--verify-timeout", "soon"], "whole seconds"),
        ("rollback-feature.sh", &offline, &["checkout", "r", "--env"], "--env needs a value"),
        ("rollback-feature.sh", &offline[1..], &["checkout", "r"], "export FLAGD_URL="),
        ("promote.sh", &offline, &["portal", "--from", "production"], "--from and --to are both production"),
        ("promote.sh", &[offline[0], offline[2]], &["portal"], "FLAGD_TOKEN is not set"),
    ];
    for (name, env, args, message) in cases {
        let run = script_with(name, env, args).code(2);
        assert!(run.stderr.contains(message), "{}: {message:?} missing from:\n{}", run.shown, run.stderr);
        assert!(run.stderr.contains("nothing was changed") && run.stderr.contains("--help"), "{}", run.stderr);
    }
    let missing = [("FLAGD_URL", "http://127.0.0.1:1"), ("FLAGD_TOKEN", "t"), ("FLAGCTL", "/nonexistent/flagctl")];
    let run = script_with("promote.sh", &missing, &["portal"]).code(127);
    assert!(run.stderr.contains("cargo build --release -p flagd-client --bin flagctl"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------
// Static checks
// ---------------------------------------------------------------------------------------

/// Every shell script under `deploy/` (by extension or shebang).
fn shell_scripts() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "sh")
                || std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with("#!/usr/bin/env bash"))
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&deploy_dir(), &mut found);
    found.sort();
    found
}

fn shellcheck(files: &[PathBuf]) -> Run {
    let shown =
        format!("shellcheck -x {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" "));
    Run::of(shown, Command::new("shellcheck").arg("-x").args(files), ": install it with `apt-get install shellcheck`")
}

#[test]
fn every_script_is_executable_and_shellcheck_clean() {
    let scripts = shell_scripts();
    let names: Vec<String> = scripts.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for expected in SCRIPTS.iter().chain(&["flagctl.sh"]) {
        assert!(names.iter().any(|n| n == expected), "{expected} not among {names:?}");
    }
    for script in scripts.iter().filter(|p| p.parent() == Some(deploy_dir().as_path())) {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(script).unwrap().permissions());
        assert!(mode & 0o111 != 0, "{} is not executable", script.display());
        let text = std::fs::read_to_string(script).unwrap();
        assert!(text.contains("set -euo pipefail"), "{} lacks set -euo pipefail", script.display());
    }
    shellcheck(&scripts).code(0);
}

/// A workflow file as JSON (through Python's yaml, every scalar a string). Missing tools
/// fail the test with the command that installs them (`.ci/run` does).
fn workflow(name: &str) -> Value {
    let path = deploy_dir().join("github-actions").join(name);
    let program = "import json, sys, yaml; json.dump(yaml.load(open(sys.argv[1]), Loader=yaml.BaseLoader), sys.stdout)";
    let has_yaml = Command::new("python3").args(["-c", "import yaml"]).stderr(Stdio::null()).status();
    if !has_yaml.is_ok_and(|s| s.success()) {
        panic!(
            "python3 with the yaml module is needed to parse {name}: pip install pyyaml (or apt-get install python3-yaml)"
        );
    }
    let run = Run::of(format!("parsing {name}"), Command::new("python3").args(["-c", program]).arg(&path), "").code(0);
    serde_json::from_str(&run.stdout).unwrap()
}

fn steps(workflow: &Value) -> Vec<Value> {
    let jobs = workflow["jobs"].as_object().unwrap();
    jobs.values().flat_map(|job| job["steps"].as_array().unwrap().clone()).collect()
}

/// The long options passed to `deploy/SCRIPT` in a shell step, per script invoked
/// (backslash continuations joined).
fn script_calls(run: &str) -> Vec<(String, Vec<String>)> {
    let joined = run.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| {
            let at = line.find("deploy/")?;
            let mut words = line[at + "deploy/".len()..].split_whitespace();
            let name = words.next()?.to_owned();
            let options = words.filter(|w| w.starts_with("--")).map(str::to_owned).collect();
            Some((name, options))
        })
        .collect()
}

#[test]
fn every_setting_a_workflow_reads_is_listed_in_its_header() {
    for name in ["deploy-staging.yml", "deploy-production.yml"] {
        let text = std::fs::read_to_string(deploy_dir().join("github-actions").join(name)).unwrap();
        let (header, body): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('#'));
        let listed: Vec<&str> =
            header.iter().filter_map(|l| l.trim_start_matches('#').split_whitespace().next()).collect();
        for line in body {
            for prefix in ["vars.", "secrets."] {
                for (at, _) in line.match_indices(prefix) {
                    let rest = &line[at..];
                    let end = rest[prefix.len()..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .map_or(rest.len(), |n| n + prefix.len());
                    let setting = &rest[..end];
                    assert!(listed.contains(&setting), "{name} reads {setting}, which its header does not list");
                }
            }
        }
    }
}

#[test]
fn workflows_parse_and_call_the_scripts_with_options_they_accept() {
    let (staging, production) = (workflow("deploy-staging.yml"), workflow("deploy-production.yml"));
    assert_eq!(staging["on"]["push"]["branches"], json!(["feature/**"]));
    assert_eq!(production["on"]["push"]["branches"], json!(["main"]));

    let mut calls = Vec::new();
    let dir = TempDir::new("deploy-workflow").unwrap();
    let mut step_scripts = Vec::new();
    for (i, step) in steps(&staging).iter().chain(&steps(&production)).enumerate() {
        let Some(run) = step["run"].as_str() else { continue };
        calls.extend(script_calls(run));
        // GitHub expressions are substituted before the shell sees the step.
        let shell = run.split("${{").map(|p| p.split_once("}}").map_or(p, |(_, rest)| rest)).collect::<Vec<_>>();
        let file = dir.path().join(format!("step-{i}.sh"));
        std::fs::write(&file, format!("#!/usr/bin/env bash\nset -eo pipefail\n{}", shell.join("EXPR"))).unwrap();
        step_scripts.push(file);
    }
    shellcheck(&step_scripts).code(0);

    let used: Vec<&str> = calls.iter().map(|(name, _)| name.as_str()).collect();
    assert!(used.contains(&"promote.sh") && used.contains(&"rollback-feature.sh"), "{used:?}");
    for (name, options) in &calls {
        assert!(deploy_dir().join(name).is_file(), "the workflows call deploy/{name}, which does not exist");
        let help = script_with(name, &[], &["--help"]).code(0).stdout;
        for option in options {
            let documented = help.split(|c: char| c.is_whitespace() || ",[]".contains(c)).any(|w| w == option);
            assert!(documented, "the workflows pass {option} to {name}, which does not take it");
        }
    }
    let rollback =
        steps(&production).into_iter().find(|s| s["run"].as_str().is_some_and(|r| r.contains("rollback-feature.sh")));
    let condition = rollback.expect("production rolls back")["if"].as_str().unwrap_or_default().to_owned();
    assert!(condition.contains("failure()"), "the production rollback runs when a check fails: {condition}");
}

#[test]
fn the_systemd_unit_verifies_and_its_environment_file_names_real_server_settings() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/flagd-server.service")).unwrap();
    for setting in
        ["User=flagd", "EnvironmentFile=/etc/flagd/flagd-server.env", "Restart=on-failure", "KillSignal=SIGTERM"]
    {
        assert!(unit.contains(setting), "the unit lacks {setting}");
    }
    let server = server_binary().unwrap();
    let help = Run::of("flagd-server --help", Command::new(&server).arg("--help"), "").code(0).stdout;
    let example = std::fs::read_to_string(deploy_dir().join("systemd/flagd-server.env.example")).unwrap();
    // Settings, and settings shown commented out (`#FLAGD_…=`) for the reader to fill in.
    let variables: Vec<&str> = example
        .lines()
        .map(|l| l.strip_prefix("#FLAGD_").map_or(l, |_| &l[1..]))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !k.starts_with('#'))
        .collect();
    for variable in ["FLAGD_LISTEN", "FLAGD_DATABASE_URL", "FLAGD_ADMIN_TOKEN"] {
        assert!(variables.contains(&variable), "the environment file lacks {variable}");
    }
    for variable in variables {
        assert!(help.contains(variable), "flagd-server does not read {variable}");
    }

    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        panic!("systemd-analyze is needed to verify the unit: apt-get install systemd");
    }
    // The unit as installed, with ExecStart pointing at the binary this build made.
    let dir = TempDir::new("deploy-systemd").unwrap();
    let installed = dir.path().join("flagd-server.service");
    std::fs::write(&installed, unit.replace("/usr/local/bin/flagd-server", path_str(&server))).unwrap();
    let run =
        Run::of("systemd-analyze verify", Command::new("systemd-analyze").arg("verify").arg(&installed), "").code(0);
    let warnings: Vec<&str> = run.stderr.lines().filter(|l| l.contains("flagd-server.service")).collect();
    assert!(warnings.is_empty(), "systemd-analyze verify warns about the unit:\n{}", warnings.join("\n"));

    // The server lowers its control-plane threads' priority at start (`--control-nice`):
    // without SystemCallErrorNumber=, a filter denying that kills it with SIGSYS.
    let allowed = allowed_system_calls(&unit);
    for call in ["setpriority", "getpriority"] {
        assert!(allowed(call), "the unit's SystemCallFilter= denies {call}, which flagd-server calls at start");
    }
    for call in ["nice", "setrlimit", "sched_setaffinity", "reboot", "mount"] {
        assert!(!allowed(call), "the unit's SystemCallFilter= lets {call} through");
    }
    assert!(
        unit.contains("\nSystemCallErrorNumber=EPERM\n"),
        "a call the filter denies must fail, not kill the server"
    );
}

/// An empty `FLAGD_ADMIN_TOKEN` (a line left blank in the environment file) stops the
/// server with exit 2 before it touches the database; the unit does not restart it for
/// that, as every restart would meet the same setting, and the example sets no token, empty
/// or a placeholder that an unedited copy would run with.
#[test]
fn an_empty_admin_token_stops_the_unit_once_and_the_example_sets_none() {
    let dir = TempDir::new("deploy-admin-token").unwrap();
    let database = format!("sqlite:{}", dir.path().join("flagd.db").display());
    let mut start = Command::new(server_binary().unwrap());
    start.env("FLAGD_ADMIN_TOKEN", "").env("FLAGD_DATABASE_URL", &database).env("FLAGD_LISTEN", "127.0.0.1:1");
    let refused = Run::of("flagd-server with FLAGD_ADMIN_TOKEN=", &mut start, "").code(2);
    assert!(refused.stderr.contains("the admin token is empty"), "{}", refused.stderr);

    let unit = std::fs::read_to_string(deploy_dir().join("systemd/flagd-server.service")).unwrap();
    let prevented: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("RestartPreventExitStatus="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(prevented.contains(&"2"), "the unit restarts a server that refused its settings (exit 2): {prevented:?}");

    let example = std::fs::read_to_string(deploy_dir().join("systemd/flagd-server.env.example")).unwrap();
    let set: Vec<&str> = example.lines().filter(|l| l.trim_start().starts_with("FLAGD_ADMIN_TOKEN=")).collect();
    assert!(set.is_empty(), "the example sets an admin token an unedited copy would run with: {set:?}");
    assert!(example.contains("#FLAGD_ADMIN_TOKEN="), "the example shows where the token goes");
}

/// Whether the unit's `SystemCallFilter=` lines let a system call through, as
/// systemd.exec(5) reads them: the first line makes an allow list (or, with `~`, a deny
/// list) and each later line adds its calls to that list or, with the other sign, takes
/// them from it, in order. `systemd-analyze syscall-filter` expands groups
/// (`@system-service`).
fn allowed_system_calls(unit: &str) -> impl Fn(&str) -> bool {
    let mut lines = unit.lines().filter_map(|l| l.strip_prefix("SystemCallFilter=")).map(|value| {
        let (deny, names) = value.strip_prefix('~').map_or((false, value), |rest| (true, rest));
        (deny, names.split_whitespace().flat_map(system_call_group).collect::<HashSet<String>>())
    });
    // No line at all: a deny list of nothing.
    let (deny_list, mut listed) = lines.next().unwrap_or((true, HashSet::new()));
    for (deny, names) in lines {
        if deny == deny_list {
            listed.extend(names);
        } else {
            listed.retain(|name| !names.contains(name));
        }
    }
    move |call: &str| listed.contains(call) != deny_list
}

/// The system calls a `SystemCallFilter=` name stands for: itself, or a group's members.
fn system_call_group(name: &str) -> Vec<String> {
    if !name.starts_with('@') {
        return vec![name.to_owned()];
    }
    let run = Run::of(
        format!("systemd-analyze syscall-filter {name}"),
        Command::new("systemd-analyze").args(["syscall-filter", "--no-pager", name]),
        "",
    )
    .code(0);
    let members = run.stdout.lines().skip(1).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    members.flat_map(system_call_group).collect()
}

/// The body of the `location = PATH { … }` block of an nginx configuration.
fn location<'a>(config: &'a str, path: &str) -> &'a str {
    let start = config.find(&format!("location = {path} {{")).unwrap_or_else(|| panic!("no location {path}"));
    let body = &config[start..];
    &body[..body.find('}').unwrap()]
}

#[test]
fn the_nginx_configuration_streams_unbuffered_and_passes_nginx_t() {
    let config = std::fs::read_to_string(deploy_dir().join("nginx/flagd.conf")).unwrap();
    let stream = location(&config, "/api/v1/stream");
    assert!(stream.contains("proxy_buffering off;"), "the change stream must not be buffered:\n{stream}");
    assert!(stream.contains("proxy_read_timeout 1h;"), "the change stream needs a long read timeout:\n{stream}");
    assert!(location(&config, "/api/v1/wait").contains("proxy_read_timeout 75s;"), "wait long-polls up to 60 s");

    let tools =
        ["nginx", "openssl"].map(|t| Command::new(t).arg("-v").stderr(Stdio::null()).stdout(Stdio::null()).status());
    if tools.iter().any(Result::is_err) {
        panic!("nginx and openssl are needed to check the configuration: apt-get install nginx-light openssl");
    }
    // nginx -t loads the certificates: a throw-away pair in place of the real paths, and
    // a main configuration that keeps every file nginx touches in the temp dir.
    let dir = TempDir::new("deploy-nginx").unwrap();
    let d = dir.path();
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    let req = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=flags.example.com"];
    let mut openssl = Command::new("openssl");
    openssl.args(req).arg("-keyout").arg(&key).arg("-out").arg(&cert);
    Run::of("openssl req", &mut openssl, "").code(0);
    let site = config
        .replace("/etc/ssl/flagd/fullchain.pem", path_str(&cert))
        .replace("/etc/ssl/flagd/privkey.pem", path_str(&key));
    std::fs::write(d.join("flagd.conf"), site).unwrap();
    let temp_paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .map(|t| format!("{t}_temp_path {};", d.join(t).display()))
        .join("\n");
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\naccess_log off;\n{temp_paths}\ninclude {d}/flagd.conf;\n}}\n",
        d = d.display()
    );
    std::fs::write(d.join("nginx.conf"), main).unwrap();
    let mut nginx = Command::new("nginx");
    nginx.args(["-t", "-e", "stderr", "-p"]).arg(d).arg("-c").arg(d.join("nginx.conf"));
    let run = Run::of("nginx -t", &mut nginx, "").code(0);
    assert!(!run.stderr.contains("[warn]"), "nginx warns about the configuration:\n{}", run.stderr);
}
