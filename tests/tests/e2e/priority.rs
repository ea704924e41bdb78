//! `--control-nice`: the control plane's threads, and the SQLite threads it starts, run
//! that many nice levels (15 unless told) below the process; the threads answering
//! evaluations do not.

use std::collections::BTreeMap;
use std::process::Command;

use flagd_tests::{Result, Server, ServerOptions, server_binary};
use serde_json::json;

/// Each thread name of the process with the nice level of every thread so named.
fn nice_levels(pid: u32) -> BTreeMap<String, Vec<i64>> {
    let mut levels: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        // `pid (name) state …`: the name may hold spaces, so fields count from its `)`;
        // nice is the 19th field, the 17th after the name.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_owned();
        let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        levels.entry(name).or_default().push(nice);
    }
    levels
}

#[test]
fn the_control_plane_and_its_sqlite_threads_run_below_the_serving_threads() -> Result<()> {
    // (arguments, how many levels below the serving threads the control plane runs)
    let cases: [(&[&str], i64); 3] = [(&["--control-nice", "7"], 7), (&[], 15), (&["--control-nice", "0"], 0)];
    for (args, below) in cases {
        let server = Server::start_with(&ServerOptions {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        })?;
        // A write and an evaluation: the control plane has used its database connections,
        // the serving threads have answered.
        let admin = server.admin();
        admin.create_flag(&json!({"key": "priority_probe"}))?;
        let token = admin.create_token("probe", "evaluate", Some("production"))?;
        server.client(Some(&token)).post("/ofrep/v1/evaluate/flags/priority_probe", &json!({}))?.success("evaluate")?;

        let levels = nice_levels(server.pid());
        let base = levels["flagd-server"][0];
        assert_eq!(levels["flagd-control"], vec![base + below], "{args:?}: {levels:?}");
        let sqlite = levels.iter().filter(|(name, _)| name.starts_with("sqlx-sqlite")).flat_map(|(_, n)| n);
        assert!(sqlite.clone().count() > 0, "no SQLite thread: {levels:?}");
        assert!(sqlite.into_iter().all(|n| *n == base + below), "{args:?}: {levels:?}");
        assert!(levels["tokio-rt-worker"].iter().all(|n| *n == base), "{args:?}: {levels:?}");
    }
    Ok(())
}

#[test]
fn a_nice_level_outside_0_to_19_is_refused_at_start() {
    let out = Command::new(server_binary().unwrap()).args(["--control-nice", "20"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--control-nice") && stderr.contains("0..=19"), "{stderr}");
}
