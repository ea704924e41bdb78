//! Bad input against the real server binary over HTTP, on every configured database
//! (SQLite, MariaDB, PostgreSQL): every case gets a 4xx with the JSON error body, and the
//! stored flags and the audit log stay exactly as they were. Text at the limits every
//! backend must store (the longest reason, a token name of 150 two-byte characters) is
//! kept whole. A SIGTERM then stops the server cleanly, and its log file is plain text.

use std::process::Command;

use flagd_tests::{Client, Server, ServerOptions, databases, server_binary};
use serde_json::{Value, json};

/// Company ids enough for a configuration of most of the 1 MiB a stored document may take.
pub(crate) fn companies(from: usize) -> Value {
    json!({"companies": (from..from + 95_000).map(|n| n.to_string()).collect::<Vec<_>>()})
}

fn audit_len(admin: &Client) -> usize {
    let reply = admin.get("/api/v1/audit?limit=1000").unwrap().success("audit").unwrap();
    reply.body["events"].as_array().map_or(0, Vec::len)
}

/// One refused request: who sends it, method, path, body, expected status and code.
type Case<'a> = (&'a Client, &'a str, String, Option<Value>, u16, &'a str);

#[test]
fn bad_requests_get_4xx_json_errors_and_change_nothing() {
    for (backend, database) in databases("bad_input").unwrap() {
        eprintln!("bad input on {backend}");
        let options = ServerOptions { database_url: Some(database.url.clone()), ..ServerOptions::default() };
        refuses_bad_input(&Server::start_with(&options).unwrap());
    }
}

fn refuses_bad_input(server: &Server) {
    let admin = server.admin();
    admin.create_flag(&json!({"key": "f"})).unwrap();
    let longest_reason = "\u{1d11e}".repeat(4000);
    admin.quick_op("f", "staging", "enable", Some(&json!({"reason": longest_reason}))).unwrap();
    let events = admin.get("/api/v1/audit?flag=f&environment=staging").unwrap().body;
    assert_eq!(events["events"][0]["reason"], json!(longest_reason), "the longest reason is kept whole");
    let long_name = "\u{e9}".repeat(150);
    admin.create_token(&long_name, "read", None).unwrap();
    let tokens = admin.get("/api/v1/tokens").unwrap().body;
    assert!(tokens["tokens"].as_array().unwrap().iter().any(|t| t["name"] == json!(long_name)), "{tokens}");
    admin.create_flag(&json!({"key": "big"})).unwrap();
    admin.quick_op("big", "production", "allow", Some(&companies(0))).unwrap();
    let reader = admin
        .post("/api/v1/tokens", &json!({"name": "reader", "role": "read"}))
        .unwrap()
        .success("read token")
        .unwrap()
        .body["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let flag_before = admin.get("/api/v1/flags/f").unwrap().body;
    let audit_before = audit_len(&admin);

    let cfg = "/api/v1/flags/f/environments/production";
    let as_reader = server.client(Some(&reader));
    let anonymous = server.client(None);
    let mut cases: Vec<Case<'_>> = vec![
        (&admin, "POST", "/api/v1/flags".into(), Some(json!({"key": "Not Valid"})), 422, "INVALID_DEFINITION"),
        (&admin, "POST", "/api/v1/flags".into(), Some(json!({"key": "g", "unknown": 1})), 400, "INVALID_BODY"),
        (&admin, "POST", "/api/v1/flags".into(), Some(json!(["g"])), 400, "INVALID_BODY"),
        (&admin, "PUT", format!("{cfg}/rollout"), Some(json!({"percentage": 101})), 400, "INVALID_PERCENTAGE"),
        (&admin, "PUT", format!("{cfg}/rollout"), Some(json!({"percentage": 0.0001})), 400, "INVALID_PERCENTAGE"),
        (&admin, "POST", format!("{cfg}/allow"), Some(json!({"companies": [""]})), 400, "INVALID_COMPANY_ID"),
        (&admin, "POST", "/api/v1/flags/f/environments/qa/enable".into(), None, 404, "ENVIRONMENT_NOT_FOUND"),
        (&admin, "POST", "/api/v1/flags/zz/environments/production/enable".into(), None, 404, "FLAG_NOT_FOUND"),
        // MySQL and MariaDB compare `production ` equal to `production`: still no such thing.
        (
            &admin,
            "POST",
            "/api/v1/flags/f/environments/production%20/disable".into(),
            None,
            404,
            "ENVIRONMENT_NOT_FOUND",
        ),
        (&admin, "POST", "/api/v1/flags/f%20/environments/production/disable".into(), None, 404, "FLAG_NOT_FOUND"),
        (
            &admin,
            "POST",
            "/api/v1/flags/f/promote".into(),
            Some(json!({"from": "staging", "to": "production "})),
            404,
            "ENVIRONMENT_NOT_FOUND",
        ),
        (&admin, "PUT", cfg.into(), Some(json!({"state": "ENABLED"})), 428, "PRECONDITION_REQUIRED"),
        (&admin, "GET", "/api/v1/audit?limit=0".into(), None, 400, "INVALID_QUERY"),
        // The audit log names actors by token name: the server's own are not for the taking.
        (
            &admin,
            "POST",
            "/api/v1/tokens".into(),
            Some(json!({"name": "flagd-server", "role": "read"})),
            400,
            "INVALID_NAME",
        ),
        (
            &admin,
            "POST",
            "/api/v1/tokens".into(),
            Some(json!({"name": " admin (--admin-token) ", "role": "admin"})),
            400,
            "INVALID_NAME",
        ),
        // A key that is not UTF-8 once percent-decoded: the API's JSON 400, not axum's text.
        (&admin, "POST", "/api/v1/flags/%FF/environments/production/enable".into(), None, 400, "INVALID_PATH"),
        (&admin, "GET", "/api/v1/flags/f/environments/%C3%28".into(), None, 400, "INVALID_PATH"),
        // PostgreSQL cannot store NUL, and errs on it even in a lookup: refused everywhere.
        (&admin, "POST", format!("{cfg}/disable"), Some(json!({"reason": "a\u{0}b"})), 400, "INVALID_BODY"),
        (
            &admin,
            "POST",
            "/api/v1/flags/f/promote".into(),
            Some(json!({"from": "\u{0}", "to": "qa"})),
            400,
            "INVALID_BODY",
        ),
        (
            &admin,
            "POST",
            "/api/v1/environments/production/segments".into(),
            Some(json!({"key": "\u{0}"})),
            400,
            "INVALID_BODY",
        ),
        (&admin, "GET", "/api/v1/flags/f%00".into(), None, 400, "INVALID_PATH"),
        (&admin, "DELETE", "/api/v1/tokens/%00".into(), None, 400, "INVALID_PATH"),
        (&admin, "GET", "/api/v1/audit?actor=%00".into(), None, 400, "INVALID_QUERY"),
        (&admin, "POST", format!("{cfg}/disable"), Some(json!({"reason": "x".repeat(4001)})), 400, "INVALID_REASON"),
        // An allow list grown past the 1 MiB of JSON a stored document may take.
        (
            &admin,
            "POST",
            "/api/v1/flags/big/environments/production/allow".into(),
            Some(companies(95_000)),
            422,
            "DOCUMENT_TOO_LARGE",
        ),
        (&as_reader, "POST", format!("{cfg}/disable"), None, 403, "FORBIDDEN"),
        (&anonymous, "POST", format!("{cfg}/disable"), None, 401, "UNAUTHORIZED"),
    ];
    // Keys past the 128 characters the key rule allows: 192 no longer fits the key columns
    // (VARCHAR(191)), 129 does, and both are refused before anything is stored.
    let segments = "/api/v1/environments/production/segments";
    let import = "/api/v1/environments/production/import";
    for key in ["k".repeat(192), "k".repeat(129)] {
        cases.extend([
            (&admin, "POST", "/api/v1/flags".into(), Some(json!({"key": key})), 422, "INVALID_DEFINITION"),
            (&admin, "POST", segments.into(), Some(json!({"key": key})), 422, "INVALID_DEFINITION"),
            (&admin, "POST", import.into(), Some(json!({"flags": [{"key": key}]})), 422, "INVALID_DEFINITION"),
            (
                &admin,
                "POST",
                import.into(),
                Some(json!({"flags": {key.clone(): flagd_flag()}})),
                422,
                "INVALID_DEFINITION",
            ),
            (&admin, "POST", import.into(), Some(json!({"segments": [{"key": key}]})), 422, "INVALID_DEFINITION"),
            (&admin, "POST", "/api/v1/environments".into(), Some(json!({"name": key})), 400, "INVALID_NAME"),
        ]);
    }
    let segments_before = admin.get(segments).unwrap().body;
    for (client, method, path, body, status, code) in cases {
        let reply = client.request(method, &path, body.as_ref(), &[]).unwrap();
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], code, "{method} {path}: {}", reply.body);
    }
    let malformed = admin.request_raw("POST", "/api/v1/flags", b"{\"key\": ".to_vec()).unwrap();
    assert_eq!((malformed.status, &malformed.body["error"]["code"]), (400, &json!("INVALID_BODY")));
    // A key named twice would keep only the last; which one was meant cannot be known.
    let repeats = [
        (
            "/api/v1/flags",
            r#"{"key": "r", "variants": {"on": 1, "off": 0, "on": 2}}"#,
            "`on` is named twice in `variants`",
        ),
        (
            "/api/v1/environments/production/import",
            r#"{"flags": {"r": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"},
                          "r": {"state": "DISABLED", "variants": {"a": 1}, "defaultVariant": "a"}}}"#,
            "`r` is named twice in `flags`",
        ),
    ];
    for (path, body, message) in repeats {
        let repeated = admin.request_raw("POST", path, body.as_bytes().to_vec()).unwrap();
        assert_eq!((repeated.status, &repeated.body["error"]["code"]), (400, &json!("INVALID_BODY")), "{path}");
        let said = repeated.body["error"]["message"].as_str().unwrap_or_default();
        assert!(said.starts_with(message), "{path}: {said}");
    }
    let deep = format!("{{\"key\": \"d\", \"metadata\": {{\"x\": {}{}}}}}", "[".repeat(100), "]".repeat(100));
    let too_deep = admin.request_raw("POST", "/api/v1/flags", deep.into_bytes()).unwrap();
    assert_eq!((too_deep.status, &too_deep.body["error"]["code"]), (400, &json!("TOO_DEEP")));
    let huge = format!("{{\"key\": \"h\", \"description\": \"{}\"}}", "x".repeat(1_100_000));
    // Sent whole, as a client that does not wait for `100 Continue` does: the server reads
    // the rest before answering, so the client sees the 413, not a reset connection.
    let too_large = server.admin().request_raw("POST", "/api/v1/flags", huge.into_bytes()).unwrap();
    assert_eq!(too_large.status, 413);
    assert_eq!(status_line_before_sending(server, 1_100_000), "HTTP/1.1 413 Payload Too Large");

    let long = admin.request("POST", "/api/v1/flags", Some(&json!({"key": "k".repeat(192)})), &[]).unwrap().body;
    let problem = &long["error"]["problems"][0];
    assert_eq!(problem["path"], format!("flags.{}.key", "k".repeat(192)), "{long}");
    assert!(problem["message"].as_str().unwrap().contains("at most 128 characters"), "{long}");

    assert_eq!(admin.get("/api/v1/flags/f").unwrap().body, flag_before);
    assert_eq!(admin.get(segments).unwrap().body, segments_before);
    assert_eq!(audit_len(&admin), audit_before, "nothing refused reached the audit log");
    let flags = admin.get("/api/v1/flags").unwrap().body;
    assert_eq!(flags["flags"].as_array().map(Vec::len), Some(2), "only `f` and `big`: {flags}");
    for key in ["g", "d", "h", "r"] {
        assert_eq!(admin.get(&format!("/api/v1/flags/{key}")).unwrap().status, 404);
    }
}

/// A valid flagd flag, for files whose keys are what is wrong.
fn flagd_flag() -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"})
}

/// The first line a client declaring `len` bytes with `Expect: 100-continue` gets while
/// it holds its body back, as curl does for bodies over 1 MiB: a body too large is refused
/// without being asked for.
fn status_line_before_sending(server: &Server, len: usize) -> String {
    use std::io::{BufRead, Write};
    let addr = server.url().trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /api/v1/flags HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n",
        server.admin_token()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

#[test]
fn sigterm_stops_the_server_cleanly_and_its_log_file_is_plain_text() {
    let mut server = Server::start().unwrap();
    server.admin().create_flag(&json!({"key": "f"})).unwrap();
    let status = server.terminate(std::time::Duration::from_secs(10)).unwrap();
    let logs = server.logs();
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    // stderr is a file here, not a terminal: no colour codes around the levels.
    assert!(logs.contains(" INFO flagd_server: stopped"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "{logs}");
}

/// An empty admin token (an unset variable in a compose file or unit expands to that) would
/// make a blank credential an admin's: the server refuses it, and values no request could
/// send back, before it starts.
#[test]
fn an_admin_token_that_is_empty_or_padded_is_refused_at_start() {
    let db = std::env::temp_dir().join(format!("flagd-admin-token-{}.db", std::process::id()));
    let url = format!("sqlite:{}", db.display());
    let given: [&[&str]; 3] = [&[], &["--admin-token", ""], &["--admin-token", " secret"]];
    for args in given {
        let out = Command::new("timeout")
            .arg("20")
            .arg(server_binary().unwrap())
            .args(["--listen", "127.0.0.1:0", "--database-url", &url])
            .args(args)
            .env("FLAGD_ADMIN_TOKEN", "")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("the admin token"), "{args:?}: {stderr}");
    }
    assert!(!db.exists(), "nothing was created");
}
