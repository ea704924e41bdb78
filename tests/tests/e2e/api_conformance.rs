//! The real server against its own OpenAPI document, on every configured database.
//! schemathesis (from PyPI, pinned in `tests/api-conformance/`) reads `/openapi.json`,
//! generates requests from it, valid and invalid, and fails on any 5xx, on any status,
//! header or body the document does not describe, and on any request the document calls
//! invalid that the server accepts. The admin API runs with an admin token, OFREP with
//! an `evaluate` token.

use std::path::{Path, PathBuf};

use flagd_tests::{Server, ServerOptions, databases, run_checked};
use serde_json::json;

use crate::ofrep_clients::python_venv;

/// Fixed, so that a failure reproduces: the report names the seed and each failing request.
const SEED: &str = "1";
/// Requests generated per operation and phase.
const EXAMPLES: &str = "30";

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("api-conformance")
}

#[test]
fn every_answer_matches_the_openapi_document() {
    let dir = conformance_dir();
    python_venv(&dir).unwrap();
    let schemathesis = dir.join(".venv/bin/schemathesis");
    for (backend, database) in databases("api_conformance").unwrap() {
        eprintln!("API conformance on {backend}");
        let options = ServerOptions { database_url: Some(database.url.clone()), ..ServerOptions::default() };
        let server = Server::start_with(&options).unwrap();
        let admin = server.admin();
        // The things `schemathesis.toml` names in every path.
        admin.create_flag(&json!({"key": "probe", "description": "for the conformance run"})).unwrap();
        let segment = json!({"key": "probe", "companies": ["1"]});
        admin.post("/api/v1/environments/staging/segments", &segment).unwrap().success("segment").unwrap();
        let evaluate = admin.create_token("conformance", "evaluate", Some("staging")).unwrap();
        for (token, operations) in [(server.admin_token(), "--exclude-path-regex"), (&evaluate, "--include-path-regex")]
        {
            if let Err(e) = conform(&schemathesis, &dir, &server, token, operations) {
                panic!("{backend}: {e}\n--- server log ---\n{}", server.logs());
            }
        }
    }
}

/// One schemathesis run against `server` with `token`, on the OFREP operations or on all
/// the others (`operations` is the option that includes or excludes them).
fn conform(
    schemathesis: &Path,
    dir: &Path,
    server: &Server,
    token: &str,
    operations: &str,
) -> flagd_tests::Result<String> {
    let document = format!("{}/openapi.json", server.url());
    let (bearer, key) = (format!("Authorization: Bearer {token}"), format!("X-API-Key: {token}"));
    let program = schemathesis.to_str().ok_or_else(|| flagd_tests::Error::new("the virtualenv path is not UTF-8"))?;
    let args = [
        "--config-file",
        "schemathesis.toml",
        "run",
        &document,
        "-H",
        &bearer,
        "-H",
        &key,
        operations,
        "^/ofrep/",
        "--seed",
        SEED,
        "--max-examples",
        EXAMPLES,
        "--no-color",
    ];
    run_checked(program, &args, dir)
}
