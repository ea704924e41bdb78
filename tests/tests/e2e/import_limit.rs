//! An environment whose export (in the server's own format, which keeps company lists as
//! lists) is larger than a request body may be (1 MiB) goes back in whole through the
//! import on a server started with `--max-import-mib`, while every other body keeps the
//! 1 MiB limit, and a server started without it refuses the file with 413 (through
//! `flagctl import`, exit 2: input the server refused).

use std::process::Command;

use flagd_tests::{Client, Run, Server, ServerOptions, TempDir, flagctl_binary};
use serde_json::json;

use crate::bad_input::companies;

const MIB: usize = 1024 * 1024;

/// Production's native export, with two flags whose allow lists each take most of the
/// 1 MiB a document may.
fn large_export(admin: &Client) -> Vec<u8> {
    for (key, from) in [("big", 0), ("bigger", 100_000)] {
        admin.create_flag(&json!({ "key": key })).unwrap();
        admin.quick_op(key, "production", "allow", Some(&companies(from))).unwrap();
    }
    let export =
        admin.get("/api/v1/environments/production/export?format=native").unwrap().success("export").unwrap().body;
    let file = serde_json::to_vec(&export).unwrap();
    assert!(file.len() > MIB, "the export is only {} bytes", file.len());
    file
}

#[test]
fn an_export_larger_than_a_body_goes_back_in_under_a_raised_import_limit() {
    let options = ServerOptions { args: vec!["--max-import-mib".into(), "4".into()], ..ServerOptions::default() };
    let server = Server::start_with(&options).unwrap();
    let admin = server.admin();
    let file = large_export(&admin);

    let imported = admin.request_raw("POST", "/api/v1/environments/staging/import?mode=replace", file.clone()).unwrap();
    assert_eq!(imported.status, 200, "{}", imported.body);
    let staging = admin.get("/api/v1/flags/big/environments/staging").unwrap().body;
    assert_eq!(staging["allow"].as_array().map(Vec::len), Some(95_000), "the allow list came across whole");
    let other = admin.request_raw("POST", "/api/v1/flags", file).unwrap();
    assert_eq!((other.status, &other.body["error"]["code"]), (413, &json!("PAYLOAD_TOO_LARGE")), "{}", other.body);

    // flagd's format writes each integer id twice (as text and as a number): lists this long pass
    // what a stored document may take, and the refusal says which format carries them.
    let flagd = admin.get("/api/v1/environments/production/export").unwrap().success("flagd export").unwrap().body;
    let flagd = serde_json::to_vec(&flagd).unwrap();
    let too_large = admin.request_raw("POST", "/api/v1/environments/development/import?dryRun=true", flagd).unwrap();
    let code = &too_large.body["error"]["code"];
    assert_eq!((too_large.status, code), (422, &json!("DOCUMENT_TOO_LARGE")), "{}", too_large.body);
    let message = too_large.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("each integer id twice") && message.contains("format=native"), "{message}");

    let plain = Server::start().unwrap();
    let file = large_export(&plain.admin());
    let refused =
        plain.admin().request_raw("POST", "/api/v1/environments/staging/import?mode=replace", file.clone()).unwrap();
    assert_eq!(
        (refused.status, &refused.body["error"]["code"]),
        (413, &json!("PAYLOAD_TOO_LARGE")),
        "{}",
        refused.body
    );
    let message = refused.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--max-import-mib"), "the refusal says how to raise the limit: {message}");

    let dir = TempDir::new("import-limit").unwrap();
    let path = dir.path().join("production.json");
    std::fs::write(&path, file).unwrap();
    let mut flagctl = Command::new(flagctl_binary().unwrap());
    flagctl.args(["import", path.to_str().unwrap(), "--env", "staging", "--replace"]);
    flagctl.env("FLAGD_URL", plain.url()).env("FLAGD_TOKEN", plain.admin_token());
    let run = Run::of("flagctl import (over the limit)", &mut flagctl, "").code(2);
    assert!(run.stderr.contains("PAYLOAD_TOO_LARGE") && run.stderr.contains("--max-import-mib"), "{}", run.stderr);
}
