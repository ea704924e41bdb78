//! OFREP conformance with clients nobody here wrote: the OpenFeature server SDK for
//! Node.js with `@openfeature/ofrep-provider`, and the OpenFeature Python SDK with
//! `openfeature-provider-ofrep`, each run as one process evaluating a whole batch against
//! the real server binary.
//!
//! Every case carries an expectation computed independently of the server (rollout
//! buckets come from `flagd_core::hash`, as documented in DESIGN.md). The server's raw
//! OFREP answer must match it, and each client must then report exactly that value,
//! variant and reason, or the caller's default with the right error code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use flagd_core::hash;
use flagd_tests::{Client, Server, run_checked, run_with_input};
use serde_json::{Value, json};

const ENV: &str = "production";
/// Rollout weights are percentages with three decimals, so buckets run to 100 000.
const TOTAL_WEIGHT: u64 = 100_000;

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ofrep-clients")
}

// ---------------------------------------------------------------------------------------
// Installing the clients
// ---------------------------------------------------------------------------------------

/// Whether `marker` records an install from exactly `lock_file`'s current content; an
/// interrupted or outdated install is redone rather than trusted.
fn installed(marker: &Path, lock_file: &Path) -> bool {
    match (std::fs::read(marker), std::fs::read(lock_file)) {
        (Ok(done), Ok(wanted)) => done == wanted,
        _ => false,
    }
}

fn mark_installed(marker: &Path, lock_file: &Path) -> Result<(), String> {
    std::fs::copy(lock_file, marker).map(|_| ()).map_err(|e| format!("writing {}: {e}", marker.display()))
}

/// `npm ci` in `dir` unless its `package-lock.json` is installed already.
pub(crate) fn npm_ci(dir: &Path) -> Result<(), String> {
    let lock = dir.join("package-lock.json");
    let marker = dir.join("node_modules/.flagd-e2e-installed");
    if !installed(&marker, &lock) {
        run_checked("npm", &["ci", "--no-audit", "--no-fund"], dir).map_err(|e| e.to_string())?;
        mark_installed(&marker, &lock)?;
    }
    Ok(())
}

/// `npm ci` once. A missing Node.js is a failure, not a skip: a skipped conformance test
/// would prove nothing.
fn node_client() -> &'static Result<(), String> {
    static NODE: OnceLock<Result<(), String>> = OnceLock::new();
    NODE.get_or_init(|| npm_ci(&clients_dir()))
}

/// A virtualenv with the pinned requirements, created once.
fn python_client() -> &'static Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON.get_or_init(|| python_venv(&clients_dir()))
}

/// A virtualenv in `dir/.venv` with `dir/requirements.txt` installed, unless that exact
/// file is installed already; returns its `python`.
pub(crate) fn python_venv(dir: &Path) -> Result<PathBuf, String> {
    let requirements = dir.join("requirements.txt");
    let marker = dir.join(".venv/.flagd-e2e-installed");
    let python = dir.join(".venv/bin/python");
    if !installed(&marker, &requirements) {
        if !python.is_file() {
            run_checked("python3", &["-m", "venv", ".venv"], dir).map_err(|e| e.to_string())?;
        }
        let python = python.to_str().ok_or("the virtualenv path is not UTF-8")?;
        let args = ["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", "-r"];
        run_checked(python, &[&args[..], &["requirements.txt"]].concat(), dir).map_err(|e| e.to_string())?;
        mark_installed(&marker, &requirements)?;
    }
    Ok(python)
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

/// The SDK call a case uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Object => "object",
        }
    }

    /// Whether both SDKs accept `value` for this call. (Python's float call refuses a JSON
    /// integer, so a float flag must be served with a fractional representation.)
    fn accepts(self, value: &Value) -> bool {
        match self {
            Self::Boolean => value.is_boolean(),
            Self::String => value.is_string(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Float => value.is_f64(),
            Self::Object => value.is_object() || value.is_array(),
        }
    }
}

/// What the server must answer.
#[derive(Debug, Clone)]
enum Served {
    Value { value: Value, variant: String, reason: &'static str },
    Error { status: u16, code: &'static str },
}

#[derive(Debug, Clone)]
struct Case {
    id: String,
    flag: String,
    kind: Kind,
    default: Value,
    context: Value,
    served: Served,
}

/// What a client must report for a case.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    value: Value,
    variant: Value,
    reason: Value,
    error_code: Value,
}

impl Case {
    fn expected_report(&self) -> Report {
        let failed = |code: &str| Report {
            value: self.default.clone(),
            variant: Value::Null,
            reason: json!("ERROR"),
            error_code: json!(code),
        };
        match &self.served {
            Served::Value { value, .. } if !self.kind.accepts(value) => failed("TYPE_MISMATCH"),
            Served::Value { value, variant, reason } => {
                Report { value: value.clone(), variant: json!(variant), reason: json!(reason), error_code: Value::Null }
            }
            Served::Error { code, .. } => failed(code),
        }
    }
}

#[derive(Default)]
struct Plan {
    cases: Vec<Case>,
}

impl Plan {
    fn add(&mut self, flag: &str, kind: Kind, default: Value, context: Value, served: Served) {
        let id = format!("{flag}#{}", self.cases.iter().filter(|c| c.flag == flag).count());
        self.cases.push(Case { id, flag: flag.to_owned(), kind, default, context, served });
    }
}

/// `variant` of `variants` (name → value), for `reason`.
fn serve(variants: &Value, variant: &str, reason: &'static str) -> Served {
    let value = variants.get(variant).cloned().unwrap_or_else(|| panic!("no variant {variant} in {variants}"));
    Served::Value { value, variant: variant.to_owned(), reason }
}

/// The variant a rollout over `weights` (percentages, in bucket order) gives `by`.
fn rollout_variant<'a>(flag: &str, by: &str, weights: &[(&'a str, f64)]) -> &'a str {
    let bucket = hash::bucket(flag, by, TOTAL_WEIGHT);
    let picked = hash::pick(bucket, weights.iter().map(|&(_, w)| (w * 1000.0).round() as u64));
    weights[picked.expect("the weights sum to 100")].0
}

/// Company ids from `first` on, with the variant each gets: `per_variant` of each variant
/// of the rollout (every side of the split, not a lucky one), plus the companies whose
/// buckets lie on either side of each boundary between variants, where an off-by-one or
/// a rounding slip in the server's weights would show.
fn spread<'a>(flag: &str, weights: &[(&'a str, f64)], first: u64, per_variant: usize) -> Vec<(String, &'a str)> {
    const SEARCHED: u64 = 1_000;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut picked: Vec<String> = Vec::new();
    for company in first..first + SEARCHED {
        let company = company.to_string();
        let count = counts.entry(rollout_variant(flag, &company, weights)).or_default();
        if *count < per_variant {
            *count += 1;
            picked.push(company);
        }
    }
    assert!(
        weights.iter().all(|(v, _)| counts.get(v).copied().unwrap_or(0) >= per_variant),
        "{flag}: fewer than {per_variant} companies for some variant of {weights:?}"
    );
    let mut end = 0u64;
    for &(_, weight) in &weights[..weights.len() - 1] {
        end += (weight * 1000.0).round() as u64;
        picked.extend(straddling(flag, end, first));
    }
    picked.sort();
    picked.dedup();
    picked
        .into_iter()
        .map(|company| {
            let variant = rollout_variant(flag, &company, weights);
            (company, variant)
        })
        .collect()
}

/// Companies (from `first` on) in buckets `end - 1` and `end`: the last of one variant
/// and the first of the next. About one id in 100 000 lands in a given bucket, so a
/// generous search finds both.
fn straddling(flag: &str, end: u64, first: u64) -> [String; 2] {
    let find = |bucket: u64| {
        (first..first + 10_000_000)
            .find(|c| hash::bucket(flag, &c.to_string(), TOTAL_WEIGHT) == bucket)
            .unwrap_or_else(|| panic!("{flag}: no company in bucket {bucket}"))
            .to_string()
    };
    [find(end - 1), find(end)]
}

fn create(admin: &Client, definition: Value) {
    admin.create_flag(&definition).unwrap();
}

/// Sets the flags up and returns the cases.
fn set_up(admin: &Client) -> Vec<Case> {
    let mut plan = Plan::default();
    let boolean = json!({"on": true, "off": false});

    // A boolean flag managed through the quick operations only: pilot then a rollout.
    create(admin, json!({"key": "portal"}));
    admin.quick_op("portal", ENV, "enable", None).unwrap();
    admin.quick_op("portal", ENV, "allow", Some(&json!({"companies": ["42"]}))).unwrap();
    admin.set_rollout("portal", ENV, 37.5).unwrap();
    let portal = [("on", 37.5), ("off", 62.5)];
    for ctx in [json!({"companyId": "42", "targetingKey": "u1"}), json!({"companyId": 42})] {
        plan.add("portal", Kind::Boolean, json!(false), ctx, serve(&boolean, "on", "TARGETING_MATCH"));
    }
    for (company, variant) in spread("portal", &portal, 1000, 4) {
        let ctx = json!({"companyId": company, "targetingKey": "user-1"});
        plan.add("portal", Kind::Boolean, json!(false), ctx, serve(&boolean, variant, "SPLIT"));
    }
    // Integer company ids bucket as their decimal string.
    for (company, variant) in spread("portal", &portal, 5000, 2) {
        let ctx = json!({"companyId": company.parse::<u64>().unwrap()});
        plan.add("portal", Kind::Boolean, json!(false), ctx, serve(&boolean, variant, "SPLIT"));
    }
    // Without a companyId the targeting key buckets.
    for key in ["user-a", "user-b", "user-c"] {
        let variant = rollout_variant("portal", key, &portal);
        plan.add(
            "portal",
            Kind::Boolean,
            json!(false),
            json!({"targetingKey": key}),
            serve(&boolean, variant, "SPLIT"),
        );
    }
    let missing_key = Served::Error { status: 400, code: "TARGETING_KEY_MISSING" };
    plan.add("portal", Kind::Boolean, json!(true), json!({"plan": "pro"}), missing_key);

    // A boolean flag with a whole configuration: deny beats allow beats rules.
    create(admin, json!({"key": "checkout"}));
    let config = json!({
        "state": "ENABLED",
        "allow": ["7", "13"],
        "deny": ["13"],
        "rules": [{"conditions": [{"attribute": "plan", "op": "in", "value": ["enterprise"]}], "serve": {"variant": "on"}}],
        "fallthrough": {"variant": "off"}
    });
    admin.set_config("checkout", ENV, &config).unwrap();
    let b = Kind::Boolean;
    plan.add(
        "checkout",
        b,
        json!(true),
        json!({"companyId": "13", "plan": "enterprise"}),
        serve(&boolean, "off", "TARGETING_MATCH"),
    );
    plan.add(
        "checkout",
        b,
        json!(false),
        json!({"companyId": 7, "plan": "free"}),
        serve(&boolean, "on", "TARGETING_MATCH"),
    );
    plan.add(
        "checkout",
        b,
        json!(false),
        json!({"companyId": "99", "plan": "enterprise"}),
        serve(&boolean, "on", "TARGETING_MATCH"),
    );
    plan.add("checkout", b, json!(true), json!({"companyId": "99", "plan": "free"}), serve(&boolean, "off", "DEFAULT"));

    // A string flag: an attribute rule, a rule serving a rollout, a fallthrough.
    let themes = json!({"classic": "classic", "dark": "dark", "light": "light"});
    create(admin, json!({"key": "theme", "variants": themes, "offVariant": "classic"}));
    let theme = [("dark", 33.333), ("light", 66.667)];
    let config = json!({
        "state": "ENABLED",
        "rules": [
            {"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "serve": {"variant": "dark"}},
            {"conditions": [{"attribute": "country", "op": "equals", "value": "DE"}],
             "serve": {"rollout": {"variants": [{"variant": "dark", "weight": 33.333}, {"variant": "light", "weight": 66.667}]}}}
        ],
        "fallthrough": {"variant": "classic"}
    });
    admin.set_config("theme", ENV, &config).unwrap();
    let s = Kind::String;
    plan.add(
        "theme",
        s,
        json!("none"),
        json!({"companyId": "1", "plan": "pro"}),
        serve(&themes, "dark", "TARGETING_MATCH"),
    );
    plan.add(
        "theme",
        s,
        json!("none"),
        json!({"companyId": "1", "plan": "free"}),
        serve(&themes, "classic", "DEFAULT"),
    );
    for (company, variant) in spread("theme", &theme, 200, 3) {
        let ctx = json!({"companyId": company, "country": "DE"});
        plan.add("theme", s, json!("none"), ctx, serve(&themes, variant, "SPLIT"));
    }
    // The server answers; the clients refuse a string where a boolean was asked for.
    plan.add("theme", Kind::Boolean, json!(true), json!({"plan": "pro"}), serve(&themes, "dark", "TARGETING_MATCH"));

    // An integer flag with a fixed fallthrough.
    let seats = json!({"small": 5, "large": 500});
    create(admin, json!({"key": "max_seats", "variants": seats, "offVariant": "small"}));
    admin.set_config("max_seats", ENV, &json!({"state": "ENABLED", "fallthrough": {"variant": "large"}})).unwrap();
    plan.add("max_seats", Kind::Integer, json!(1), json!({"companyId": "1"}), serve(&seats, "large", "STATIC"));
    plan.add("max_seats", Kind::Integer, json!(1), json!({}), serve(&seats, "large", "STATIC"));

    // A float flag, `1.0` included: it must stay a float on the wire for typed clients.
    let factors = json!({"discount": 0.85, "list": 1.0, "premium": 1.25});
    create(admin, json!({"key": "price_factor", "variants": factors, "offVariant": "list"}));
    let factor = [("list", 50.0), ("premium", 50.0)];
    let config = json!({
        "state": "ENABLED",
        "rules": [{"conditions": [{"attribute": "plan", "op": "in", "value": ["enterprise"]}], "serve": {"variant": "discount"}}],
        "fallthrough": {"rollout": {"variants": [{"variant": "list", "weight": 50}, {"variant": "premium", "weight": 50}]}}
    });
    admin.set_config("price_factor", ENV, &config).unwrap();
    let f = Kind::Float;
    plan.add(
        "price_factor",
        f,
        json!(0.5),
        json!({"companyId": "3", "plan": "enterprise"}),
        serve(&factors, "discount", "TARGETING_MATCH"),
    );
    for (company, variant) in spread("price_factor", &factor, 300, 3) {
        plan.add("price_factor", f, json!(0.5), json!({"companyId": company}), serve(&factors, variant, "SPLIT"));
    }

    // An object flag.
    let banners = json!({
        "none": {"show": false},
        "promo": {"show": true, "text": "Spring sale – 15 % off", "discount": 15, "ratio": 0.5,
                  "tags": ["a", "b"], "nested": {"empty": null, "list": [1, {"deep": true}]}}
    });
    create(admin, json!({"key": "banner", "variants": banners, "offVariant": "none"}));
    let config = json!({
        "state": "ENABLED",
        "rules": [{"conditions": [{"attribute": "country", "op": "in", "value": ["FR", "BE"]}], "serve": {"variant": "promo"}}],
        "fallthrough": {"variant": "none"}
    });
    admin.set_config("banner", ENV, &config).unwrap();
    let o = Kind::Object;
    let fallback = json!({"fallback": true});
    plan.add(
        "banner",
        o,
        fallback.clone(),
        json!({"companyId": "8", "country": "FR"}),
        serve(&banners, "promo", "TARGETING_MATCH"),
    );
    plan.add(
        "banner",
        o,
        fallback.clone(),
        json!({"companyId": "8", "country": "US"}),
        serve(&banners, "none", "DEFAULT"),
    );

    // The kill switch: everything that would serve `on` is overridden.
    create(admin, json!({"key": "kill_switch"}));
    admin.quick_op("kill_switch", ENV, "enable", None).unwrap();
    admin.quick_op("kill_switch", ENV, "allow", Some(&json!({"companies": ["42"]}))).unwrap();
    admin.set_rollout("kill_switch", ENV, 100.0).unwrap();
    admin.quick_op("kill_switch", ENV, "disable", Some(&json!({"reason": "e2e: bad deploy"}))).unwrap();
    for ctx in [json!({"companyId": "42"}), json!({"companyId": "1000"}), json!({})] {
        plan.add("kill_switch", Kind::Boolean, json!(true), ctx, serve(&boolean, "off", "DISABLED"));
    }

    // Flags never enabled in this environment, one of each type.
    let dormant = [
        ("dormant_theme", Kind::String, &themes, "classic", json!("none")),
        ("dormant_seats", Kind::Integer, &seats, "small", json!(1)),
        ("dormant_factor", Kind::Float, &factors, "list", json!(0.5)),
        ("dormant_banner", Kind::Object, &banners, "none", fallback.clone()),
    ];
    for (key, kind, variants, off, default) in dormant {
        create(admin, json!({"key": key, "variants": variants, "offVariant": off}));
        plan.add(key, kind, default, json!({"companyId": "42", "plan": "pro"}), serve(variants, off, "DISABLED"));
    }

    // No such flag: the caller's default, whatever the type.
    let not_found = || Served::Error { status: 404, code: "FLAG_NOT_FOUND" };
    for (kind, default) in [
        (Kind::Boolean, json!(true)),
        (Kind::String, json!("fallback")),
        (Kind::Integer, json!(7)),
        (Kind::Float, json!(0.25)),
        (Kind::Object, fallback),
    ] {
        plan.add("no_such_flag", kind, default, json!({"companyId": "42"}), not_found());
    }

    plan.cases
}

// ---------------------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------------------

/// JSON equality where numbers compare by value: JavaScript prints `1.0` as `1`.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Differences between the server's raw OFREP answer and the expectation.
fn check_server(eval: &Client, case: &Case) -> Option<String> {
    let reply = eval.ofrep(&case.flag, &case.context).unwrap();
    let body = &reply.body;
    let ok = match &case.served {
        // Exact equality here: the representation on the wire is what typed clients see.
        Served::Value { value, variant, reason } => {
            reply.status == 200
                && body["key"] == json!(case.flag)
                && &body["value"] == value
                && body["variant"] == json!(variant)
                && body["reason"] == json!(reason)
                && reply.header("content-type").is_some_and(|t| t.starts_with("application/json"))
        }
        Served::Error { status, code } => {
            reply.status == *status && body["key"] == json!(case.flag) && body["errorCode"] == json!(code)
        }
    };
    (!ok).then(|| {
        format!(
            "server, {} ({} {}): expected {:?}, got HTTP {} {body}",
            case.id, case.flag, case.context, case.served, reply.status
        )
    })
}

/// Differences between one client's reports and the expectations.
fn check_client(name: &str, output: &str, cases: &[Case]) -> Vec<String> {
    let output: Value = match serde_json::from_str(output.trim()) {
        Ok(v) => v,
        Err(e) => return vec![format!("{name}: output is not JSON ({e}):\n{output}")],
    };
    let results = output["results"].as_array().cloned().unwrap_or_default();
    let by_id: BTreeMap<&str, &Value> = results.iter().filter_map(|r| Some((r["id"].as_str()?, r))).collect();
    let mut problems = Vec::new();
    for case in cases {
        let want = case.expected_report();
        let Some(got) = by_id.get(case.id.as_str()) else {
            problems.push(format!("{name}: no result for {}", case.id));
            continue;
        };
        let matches = same_json(&got["value"], &want.value)
            && got["variant"] == want.variant
            && got["reason"] == want.reason
            && got["errorCode"] == want.error_code;
        if !matches {
            problems.push(format!(
                "{name}, {} ({} as {} with {}): expected value={} variant={} reason={} errorCode={}, \
                 got value={} variant={} reason={} errorCode={} (errorMessage: {})",
                case.id,
                case.flag,
                case.kind.name(),
                case.context,
                want.value,
                want.variant,
                want.reason,
                want.error_code,
                got["value"],
                got["variant"],
                got["reason"],
                got["errorCode"],
                got["errorMessage"]
            ));
        }
    }
    if results.len() != cases.len() {
        problems.push(format!("{name}: {} results for {} evaluations", results.len(), cases.len()));
    }
    problems
}

fn client_input(server: &Server, headers: Value, cases: &[Case]) -> Vec<u8> {
    let evaluations: Vec<Value> = cases
        .iter()
        .map(|c| json!({"id": c.id, "flag": c.flag, "type": c.kind.name(), "default": c.default, "context": c.context}))
        .collect();
    serde_json::to_vec(&json!({"url": server.url(), "headers": headers, "evaluations": evaluations})).unwrap()
}

/// Runs one client on the batch; returns its name (from its own output) and raw output.
fn run_client(program: &Path, script: &str, input: &[u8]) -> (String, String, f64) {
    let started = Instant::now();
    let output = run_with_input(program, &[script], &clients_dir(), input)
        .unwrap_or_else(|e| panic!("the {script} OFREP client failed: {e}"));
    let name = serde_json::from_str::<Value>(output.trim())
        .ok()
        .and_then(|v| v["client"].as_str().map(str::to_owned))
        .unwrap_or_else(|| script.to_owned());
    (name, output, started.elapsed().as_secs_f64())
}

#[test]
fn real_ofrep_clients_report_what_the_server_computed() {
    // Install first: a missing toolchain should fail before any server work.
    if let Err(e) = node_client() {
        panic!("the Node.js OFREP client is not available: {e}");
    }
    let python = match python_client() {
        Ok(p) => p.clone(),
        Err(e) => panic!("the Python OFREP client is not available: {e}"),
    };

    let server = Server::start().unwrap();
    let admin = server.admin();
    let cases = set_up(&admin);
    let token = admin.create_token("ofrep conformance", "evaluate", Some(ENV)).unwrap();
    let eval = server.client(Some(&token));

    let mut problems: Vec<String> = cases.iter().filter_map(|c| check_server(&eval, c)).collect();

    // One client per way of presenting the token.
    let node_input = client_input(&server, json!({"Authorization": format!("Bearer {token}")}), &cases);
    let python_input = client_input(&server, json!({"X-API-Key": token}), &cases);
    let (node, python) = std::thread::scope(|s| {
        let node = s.spawn(|| run_client(Path::new("node"), "client.mjs", &node_input));
        let python = s.spawn(|| run_client(&python, "client.py", &python_input));
        (node.join(), python.join())
    });
    for run in [node, python] {
        let (name, output, seconds) = run.unwrap_or_else(|e| std::panic::resume_unwind(e));
        let found = check_client(&name, &output, &cases);
        println!("{name}: {} evaluations in {seconds:.2} s, {} mismatches", cases.len(), found.len());
        problems.extend(found);
    }

    assert!(
        problems.is_empty(),
        "{} mismatches over {} cases:\n{}\n\nserver logs:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n"),
        server.logs()
    );
}
