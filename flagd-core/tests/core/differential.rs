//! Differential test: our flagd evaluator against the reference `@openfeature/flagd-core`
//! (npm, run by `tests/differential/evaluate.cjs`) on generated (document, context) pairs.
//!
//! Deliberate differences, asserted as such (see `tests/differential/README.md`):
//! - DISABLED: the reference serves the caller's default with no variant; we serve the
//!   flag's off variant and its value (a boolean flag's `false` variant, another flag's
//!   default variant).
//! - On ERROR the reference fills in the caller's default value; we serve no value.
//! - Documents the flagd schema rejects: the reference loads them leniently, our loader
//!   may refuse them; if it accepts one, the results must still agree.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use flagd_core::{ErrorCode, EvaluationContext, Ruleset};
use serde_json::{Map, Value, json};

const SEED: u64 = 0x5eed_f1a9_d1ff_2024;
const DOCUMENTS: usize = 800;
const CONTEXTS_PER_FLAG: usize = 7;
const MIN_CASES: usize = 10_000;
const BATCHES: usize = 4;
const SHOWN_MISMATCHES: usize = 20;
/// Schema-invalid documents may be refused by our loader, so too many of them would
/// quietly shrink what is compared.
const MIN_SCHEMA_VALID_SHARE: f64 = 0.85;

// ---------------------------------------------------------------------------------------
// The reference evaluator (node)
// ---------------------------------------------------------------------------------------

fn differential_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/differential")
}

/// Installs the pinned npm packages once per test process. A missing node/npm is a
/// failure, not a skip: a skipped differential test would prove nothing.
fn reference_dir() -> &'static PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = differential_dir();
        if dir.join("node_modules/@openfeature/flagd-core").is_dir() {
            return Ok(dir);
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("cannot run `npm` (is Node.js installed?): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`npm ci` in {} failed ({}):\n{}{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    match dir {
        Ok(dir) => dir,
        Err(e) => panic!("the reference evaluator is not available: {e}"),
    }
}

/// What the reference answered for one case.
#[derive(Debug, Clone)]
struct Theirs {
    value: Value,
    variant: Option<String>,
    reason: String,
    error_code: Option<String>,
    /// Only shown, through `Debug`, in mismatch reports.
    #[allow(dead_code)]
    error_message: Option<String>,
    metadata: Value,
    schema_valid: bool,
    load_error: Option<String>,
}

impl Theirs {
    fn from_json(v: &Value) -> Self {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Self {
            value: v.get("value").cloned().unwrap_or(Value::Null),
            variant: text("variant"),
            reason: text("reason").unwrap_or_default(),
            error_code: text("errorCode"),
            error_message: text("errorMessage"),
            metadata: v.get("metadata").cloned().unwrap_or(Value::Null),
            schema_valid: v.get("schemaValid").and_then(Value::as_bool).unwrap_or(false),
            load_error: text("loadError"),
        }
    }
}

/// Spawns every batch before waiting on any, so the two cores work in parallel.
fn run_reference(batches: Vec<Value>) -> Vec<Theirs> {
    let dir = reference_dir();
    let children: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let mut child = Command::new("node")
                .arg("evaluate.cjs")
                .current_dir(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run `node` (is Node.js installed?): {e}"));
            let mut stdin = child.stdin.take().unwrap();
            let input = batch.to_string();
            let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
            (child, writer)
        })
        .collect();
    let mut out = Vec::new();
    for (child, writer) in children {
        let result = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            result.status.success(),
            "evaluate.cjs failed ({}):\n{}",
            result.status,
            String::from_utf8_lossy(&result.stderr)
        );
        let answers: Value = serde_json::from_slice(&result.stdout).unwrap();
        out.extend(answers.as_array().unwrap().iter().map(Theirs::from_json));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Deterministic generation
// ---------------------------------------------------------------------------------------

/// SplitMix64: tiny, fast and good enough to spread cases; fixed seed for replayability.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Boolean,
    String,
    Number,
    Object,
}

impl Ty {
    const ALL: [Ty; 4] = [Ty::Boolean, Ty::String, Ty::Number, Ty::Object];

    fn name(self) -> &'static str {
        match self {
            Ty::Boolean => "boolean",
            Ty::String => "string",
            Ty::Number => "number",
            Ty::Object => "object",
        }
    }

    /// The default evaluate.cjs passes, i.e. what the reference serves on fallback.
    fn caller_default(self) -> Value {
        match self {
            Ty::Boolean => json!(false),
            Ty::String => json!(""),
            Ty::Number => json!(0),
            Ty::Object => json!({}),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Ty::Boolean => "type:boolean",
            Ty::String => "type:string",
            Ty::Number => "type:number",
            Ty::Object => "type:object",
        }
    }
}

/// Variant name sets per type. Names like "true", "1" and "0" let non-string targeting
/// results (booleans, numbers) land on a variant.
const BOOL_VARIANTS: &[&[(&str, bool)]] = &[
    &[("on", true), ("off", false)],
    &[("true", true), ("false", false)],
    &[("yes", true), ("no", false), ("true", true)],
];
const STRING_NAMES: &[&str] = &["a", "b", "c", "pro", "free", "enterprise", "true", "false", "1", "0"];
const NUMBER_NAMES: &[&str] = &["1", "0", "2", "low", "high", "a", "b", "true"];
const NUMBER_VALUES: &[f64] = &[0.0, 1.0, 2.5, -3.0, 100.0, 1000.0, 0.25];
const OBJECT_NAMES: &[&str] = &["a", "b", "pro", "free", "true", "1"];
const UNKNOWN_VARIANT: &str = "ghost";

/// Attributes of generated contexts, with the values they take: the first `normal`
/// values are the expected type, the rest are type edge cases.
struct Attr {
    name: &'static str,
    normal: usize,
    values: fn() -> Vec<Value>,
}

const ATTRS: &[Attr] = &[
    Attr {
        name: "plan",
        normal: 4,
        values: || {
            vec![
                json!("free"),
                json!("pro"),
                json!("enterprise"),
                json!("a"),
                json!(""),
                json!("PRO"),
                Value::Null,
                json!(1),
                json!(true),
            ]
        },
    },
    Attr {
        name: "country",
        normal: 3,
        values: || vec![json!("US"), json!("DE"), json!("FR"), json!("us"), json!(""), Value::Null],
    },
    Attr {
        name: "appVersion",
        normal: 6,
        values: || {
            vec![
                json!("1.2.3"),
                json!("2.0.0"),
                json!("1.2.3-beta.1"),
                json!("0.9.12"),
                json!("1.10.0"),
                json!("2.0.0-rc.1"),
                json!("v1.2.3"),
                json!("V2.0.0"),
                json!("1"),
                json!("1.2"),
                json!("v1.2"),
                json!("1.2.3-alpha.10"),
                json!("1.2.3+build.7"),
                json!("1.2.3.4"),
                json!("not-a-version"),
                json!(""),
                json!(1),
                json!(1.2),
                Value::Null,
                json!("01.2.3"),
                json!("1.2.x"),
                json!(" 1.2.3"),
            ]
        },
    },
    Attr {
        name: "age",
        normal: 5,
        values: || {
            vec![
                json!(17),
                json!(18),
                json!(30),
                json!(65),
                json!(42),
                json!("30"),
                json!("abc"),
                json!(30.5),
                json!(-1),
                json!(0),
                Value::Null,
                json!(true),
                json!(""),
            ]
        },
    },
    Attr {
        name: "email",
        normal: 3,
        values: || {
            vec![
                json!("bob@example.com"),
                json!("alice@corp.io"),
                json!("carol@example.org"),
                json!(""),
                json!("bob"),
                json!("x@example.com.evil"),
                json!(5),
                Value::Null,
            ]
        },
    },
    Attr {
        name: "beta",
        normal: 2,
        values: || {
            vec![json!(true), json!(false), json!("true"), json!("false"), json!(0), json!(1), Value::Null, json!("")]
        },
    },
    Attr {
        name: "tags",
        normal: 3,
        values: || vec![json!(["beta", "early"]), json!(["x"]), json!([]), json!("beta"), Value::Null, json!([1, 2])],
    },
    Attr {
        name: "scores",
        normal: 3,
        values: || vec![json!([1, 2, 3]), json!([5]), json!([0.5, 10]), json!([]), Value::Null, json!("12")],
    },
    Attr {
        name: "companyId",
        normal: 4,
        values: || vec![json!("acme"), json!("42"), json!(42), json!(7), json!(""), json!("0")],
    },
    Attr {
        name: "user",
        normal: 2,
        values: || {
            vec![json!({"tier": "gold"}), json!({"tier": "silver"}), json!({"tier": null}), json!({}), json!("gold")]
        },
    },
];

/// A name and a JSON value built on demand (`json!` is not const).
type Named = (&'static str, fn() -> Value);

/// Named `$evaluators`: conditions usable wherever a condition is, and one that yields a
/// variant name.
const EVALUATOR_CONDITIONS: &[Named] = &[
    ("isPro", || json!({"==": [{"var": "plan"}, "pro"]})),
    ("adult", || json!({">=": [{"var": "age"}, 18]})),
    ("inEurope", || json!({"in": [{"var": "country"}, ["DE", "FR"]]})),
    ("modernApp", || json!({"sem_ver": [{"var": "appVersion"}, ">=", "1.2.0"]})),
    ("corpEmail", || json!({"ends_with": [{"var": "email"}, "@corp.io"]})),
];
const EVALUATOR_RESULT: Named = ("planVariant", || json!({"if": [{"var": "beta"}, "a", {"var": "plan"}]}));

struct Gen {
    rng: Rng,
    tags: Vec<&'static str>,
    /// Variant names of the flag being built (targeting mostly returns these).
    names: Vec<String>,
    /// Condition evaluators the current document defines.
    refs: Vec<&'static str>,
    result_ref: bool,
}

type Make = fn(&mut Gen, usize) -> Value;

impl Gen {
    fn tag(&mut self, tag: &'static str) {
        self.tags.push(tag);
    }

    fn var(&mut self) -> Value {
        json!({"var": self.rng.pick(ATTRS).name})
    }

    fn edge_literal(&mut self) -> Value {
        const LITS: &[fn() -> Value] = &[
            || Value::Null,
            || json!(true),
            || json!(false),
            || json!(0),
            || json!(1),
            || json!("1"),
            || json!("0"),
            || json!(""),
            || json!("pro"),
            || json!(30),
            || json!("30"),
            || json!(30.5),
            || json!("US"),
            || json!("true"),
        ];
        (self.rng.pick(LITS))()
    }

    fn variant_name(&mut self) -> String {
        self.rng.pick(&self.names).clone()
    }

    /// A targeting result: mostly one of the flag's variants, sometimes null, an unknown
    /// variant, a non-string or a nested rule.
    fn leaf(&mut self, depth: usize) -> Value {
        match self.rng.below(100) {
            0..=64 => json!(self.variant_name()),
            65..=74 => Value::Null,
            75..=79 => {
                self.tag("variant:unknown");
                json!(UNKNOWN_VARIANT)
            }
            80..=87 => self.non_string_leaf(),
            _ if depth < 2 => self.result(depth + 1),
            _ => json!(self.variant_name()),
        }
    }

    fn non_string_leaf(&mut self) -> Value {
        self.tag("result:non_string");
        const LITS: &[fn() -> Value] = &[|| json!(true), || json!(false), || json!(1), || json!(0), || json!(2)];
        (self.rng.pick(LITS))()
    }

    fn condition(&mut self, depth: usize) -> Value {
        let (tag, make) = *self.rng.pick(CONDITIONS);
        self.tag(tag);
        make(self, depth)
    }

    fn result(&mut self, depth: usize) -> Value {
        let (tag, make) = *self.rng.pick(RESULTS);
        self.tag(tag);
        make(self, depth)
    }
}

const CONDITIONS: &[(&str, Make)] = &[
    ("logic:equality", cond_equality),
    ("logic:equality", cond_equality),
    ("logic:compare", cond_compare),
    ("logic:between", cond_between),
    ("logic:in_array", cond_in_array),
    ("logic:in_string", cond_in_string),
    ("string_cmp", cond_string_cmp),
    ("string_cmp", cond_string_cmp),
    ("sem_ver", cond_sem_ver),
    ("sem_ver", cond_sem_ver),
    ("sem_ver", cond_sem_ver),
    ("logic:missing", cond_missing),
    ("logic:missing_some", cond_missing_some),
    ("logic:and_or", cond_and_or),
    ("logic:not", cond_not),
    ("logic:arith", cond_arith),
    ("logic:min_max", cond_min_max),
    ("logic:cat_substr", cond_cat_substr),
    ("logic:merge", cond_merge),
    ("logic:array_ops", cond_array_ops),
    ("logic:array_ops", cond_array_ops),
    ("flagd:timestamp", cond_timestamp),
    ("flagd:flag_key", cond_flag_key),
    ("ref", cond_ref),
    ("ref", cond_ref),
    ("logic:var_path", cond_var_path),
    ("logic:truthy_var", |g, _| g.var()),
];

fn cond_equality(g: &mut Gen, _: usize) -> Value {
    let op = *g.rng.pick(&["==", "===", "!=", "!=="]);
    let (a, b) = (g.var(), g.edge_literal());
    if g.rng.chance(50) { json!({op: [a, b]}) } else { json!({op: [b, a]}) }
}

fn cond_compare(g: &mut Gen, _: usize) -> Value {
    let op = *g.rng.pick(&["<", "<=", ">", ">="]);
    let attr = *g.rng.pick(&["age", "age", "plan", "companyId", "appVersion", "beta"]);
    let lit = match g.rng.below(4) {
        0 => json!("30"),
        1 => json!("m"),
        _ => json!(g.rng.range(-1, 70)),
    };
    json!({op: [{"var": attr}, lit]})
}

fn cond_between(g: &mut Gen, _: usize) -> Value {
    let op = *g.rng.pick(&["<", "<="]);
    let lo = g.rng.range(0, 30);
    json!({op: [lo, {"var": "age"}, lo + g.rng.range(0, 40)]})
}

fn cond_in_array(g: &mut Gen, _: usize) -> Value {
    const LISTS: &[Named] = &[
        ("country", || json!(["US", "DE"])),
        ("plan", || json!(["pro", "enterprise"])),
        ("companyId", || json!(["acme", "42", 7])),
        ("age", || json!([18, "30", 65])),
    ];
    let (attr, list) = *g.rng.pick(LISTS);
    json!({"in": [{"var": attr}, list()]})
}

fn cond_in_string(g: &mut Gen, _: usize) -> Value {
    let (needle, attr) =
        *g.rng.pick(&[("@example", "email"), ("corp", "email"), ("ro", "plan"), ("3", "age"), ("", "plan")]);
    json!({"in": [needle, {"var": attr}]})
}

/// `starts_with`/`ends_with`, also on attributes that are not always strings.
fn cond_string_cmp(g: &mut Gen, _: usize) -> Value {
    let op = if g.rng.chance(50) { "starts_with" } else { "ends_with" };
    g.tag(if op == "starts_with" { "starts_with" } else { "ends_with" });
    let (attr, arg) = *g.rng.pick(&[
        ("email", "bob"),
        ("email", "@example.com"),
        ("email", "@corp.io"),
        ("plan", "pr"),
        ("plan", ""),
        ("age", "3"),
        ("companyId", "4"),
        ("appVersion", "1."),
        ("tags", "beta"),
    ]);
    if !matches!(attr, "email" | "plan") {
        g.tag("string_cmp:non_string_arg");
    }
    json!({op: [{"var": attr}, arg]})
}

const SEMVER_OPS: &[(&str, &str)] = &[
    ("=", "sem_ver:="),
    ("!=", "sem_ver:!="),
    ("<", "sem_ver:<"),
    ("<=", "sem_ver:<="),
    (">", "sem_ver:>"),
    (">=", "sem_ver:>="),
    ("^", "sem_ver:^"),
    ("~", "sem_ver:~"),
];
/// Literal versions must be strict semver for the flagd schema; the lenient forms
/// (v-prefix, partial, invalid) come from the context's `appVersion`.
const SEMVER_LITERALS: &[&str] =
    &["1.2.3", "1.2.0", "2.0.0", "1.0.0", "2.0.0-beta.1", "1.2.3-alpha", "0.9.12", "1.2.3+build.5", "1.10.0"];

fn cond_sem_ver(g: &mut Gen, _: usize) -> Value {
    let (op, tag) = *g.rng.pick(SEMVER_OPS);
    g.tag(tag);
    let lit = *g.rng.pick(SEMVER_LITERALS);
    let var = json!({"var": "appVersion"});
    if g.rng.chance(70) { json!({"sem_ver": [var, op, lit]}) } else { json!({"sem_ver": [lit, op, var]}) }
}

fn cond_missing(g: &mut Gen, _: usize) -> Value {
    let keys = *g.rng.pick(&[&["plan"][..], &["plan", "age"], &["email", "companyId", "user.tier"]]);
    if g.rng.chance(50) { json!({"!": [{"missing": keys}]}) } else { json!({"missing": keys}) }
}

fn cond_missing_some(g: &mut Gen, _: usize) -> Value {
    let need = g.rng.range(1, 2);
    let missing = json!({"missing_some": [need, ["email", "companyId", "plan"]]});
    if g.rng.chance(50) { json!({"!": [missing]}) } else { missing }
}

fn cond_and_or(g: &mut Gen, depth: usize) -> Value {
    let op = if g.rng.chance(50) { "and" } else { "or" };
    let n = g.rng.range(1, 3) as usize;
    let args: Vec<Value> = (0..n).map(|_| g.sub_condition(depth)).collect();
    json!({op: args})
}

fn cond_not(g: &mut Gen, depth: usize) -> Value {
    let op = if g.rng.chance(50) { "!" } else { "!!" };
    let arg = if g.rng.chance(50) { g.var() } else { g.sub_condition(depth) };
    json!({op: [arg]})
}

fn cond_arith(g: &mut Gen, _: usize) -> Value {
    let op = *g.rng.pick(&["+", "-", "*", "/", "%"]);
    let attr = *g.rng.pick(&["age", "age", "companyId", "plan", "beta"]);
    let operand = g.rng.range(1, 7);
    let cmp = *g.rng.pick(&["==", ">", "<=", "!="]);
    let rhs = match op {
        "%" => g.rng.range(0, 3),
        "/" => g.rng.range(0, 20),
        _ => g.rng.range(0, 80),
    };
    json!({cmp: [{op: [{"var": attr}, operand]}, rhs]})
}

fn cond_min_max(g: &mut Gen, _: usize) -> Value {
    let op = if g.rng.chance(50) { "min" } else { "max" };
    let bound = g.rng.range(10, 50);
    json!({">": [{op: [{"var": "age"}, bound, 25]}, g.rng.range(15, 40)]})
}

fn cond_cat_substr(g: &mut Gen, _: usize) -> Value {
    match g.rng.below(3) {
        0 => {
            json!({"==": [{"cat": [{"var": "plan"}, "-", {"var": "country"}]}, *g.rng.pick(&["pro-US", "free-DE", "-", "pro-"])]})
        }
        1 => {
            let (start, len, want) = *g.rng.pick(&[(0, 3, "bob"), (-8, 100, "@corp.io"), (1, 2, "li"), (-3, -1, "co")]);
            json!({"==": [{"substr": [{"var": "email"}, start, len]}, want]})
        }
        _ => json!({"==": [{"substr": [{"var": "plan"}, g.rng.range(0, 2)]}, "ro"]}),
    }
}

fn cond_merge(g: &mut Gen, _: usize) -> Value {
    let needle = g.edge_literal();
    json!({"in": [needle, {"merge": [["pro", 30], {"var": "tags"}, [{"var": "country"}]]}]})
}

fn cond_array_ops(g: &mut Gen, _: usize) -> Value {
    let threshold = g.rng.range(0, 6);
    match g.rng.below(6) {
        0 => json!({"some": [{"var": "tags"}, {"==": [{"var": ""}, "beta"]}]}),
        1 => json!({"all": [{"var": "scores"}, {">": [{"var": ""}, threshold]}]}),
        2 => json!({"none": [{"var": "scores"}, {">=": [{"var": ""}, threshold]}]}),
        3 => {
            json!({">": [{"reduce": [{"var": "scores"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}, threshold]})
        }
        4 => json!({"in": ["beta!", {"map": [{"var": "tags"}, {"cat": [{"var": ""}, "!"]}]}]}),
        _ => json!({"!!": [{"filter": [{"var": "scores"}, {">": [{"var": ""}, threshold]}]}]}),
    }
}

/// `$flagd.timestamp` is the reference's real clock, so only bounds far from now.
fn cond_timestamp(g: &mut Gen, _: usize) -> Value {
    let ts = json!({"var": "$flagd.timestamp"});
    match g.rng.below(3) {
        0 => json!({">": [ts, 1_600_000_000]}),
        1 => json!({"<": [ts, 4_000_000_000_u64]}),
        _ => json!({"<": [1_600_000_000, ts, 4_000_000_000_u64]}),
    }
}

fn cond_flag_key(g: &mut Gen, _: usize) -> Value {
    let key = json!({"var": "$flagd.flagKey"});
    match g.rng.below(3) {
        0 => json!({"==": [key, "flag-1"]}),
        1 => json!({"starts_with": [key, "flag-"]}),
        _ => json!({"ends_with": [key, "0"]}),
    }
}

fn cond_ref(g: &mut Gen, depth: usize) -> Value {
    if g.refs.is_empty() {
        return cond_equality(g, depth);
    }
    let name = *g.rng.pick(&g.refs.clone());
    json!({"$ref": name})
}

fn cond_var_path(g: &mut Gen, _: usize) -> Value {
    match g.rng.below(3) {
        0 => json!({"==": [{"var": "user.tier"}, "gold"]}),
        1 => json!({"==": [{"var": ["user.tier", "none"]}, "none"]}),
        _ => json!({"==": [{"var": ["plan", "free"]}, "free"]}),
    }
}

impl Gen {
    fn sub_condition(&mut self, depth: usize) -> Value {
        if depth >= 2 { cond_equality(self, depth) } else { self.condition(depth + 1) }
    }
}

const RESULTS: &[(&str, Make)] = &[
    ("logic:if", result_if),
    ("logic:if", result_if),
    ("logic:if", result_if),
    ("fractional", result_fractional),
    ("fractional", result_fractional),
    ("fractional", result_fractional),
    ("result:var", result_var),
    ("result:non_string", result_condition),
    ("result:non_string", result_number),
    ("logic:and_or_value", result_and_or),
    ("ref", result_ref),
];

fn result_if(g: &mut Gen, depth: usize) -> Value {
    let branches = g.rng.range(1, 3);
    let mut args = Vec::new();
    for _ in 0..branches {
        args.push(g.condition(depth));
        args.push(g.leaf(depth));
    }
    if g.rng.chance(70) {
        args.push(g.leaf(depth));
    }
    json!({"if": args})
}

fn result_var(g: &mut Gen, _: usize) -> Value {
    match g.rng.below(3) {
        0 => json!({"var": "plan"}),
        1 => json!({"var": ["plan", g.variant_name()]}),
        _ => json!({"var": "user.tier"}),
    }
}

impl Gen {
    fn has_variant(&self, names: &[&str]) -> bool {
        self.names.iter().any(|n| names.contains(&n.as_str()))
    }
}

/// A bare condition: the boolean result names the variant "true" or "false" (used only
/// where one exists, so that most cases do not end in "variant not found").
fn result_condition(g: &mut Gen, depth: usize) -> Value {
    if g.has_variant(&["true", "false"]) { g.condition(depth) } else { result_if(g, depth) }
}

fn result_number(g: &mut Gen, depth: usize) -> Value {
    if !g.has_variant(&["0", "1", "2"]) {
        return result_if(g, depth);
    }
    match g.rng.below(3) {
        0 => json!({"%": [{"var": "age"}, 3]}),
        1 => json!({"/": [{"var": "age"}, 30]}),
        _ => json!({"-": [{"var": "age"}, 29]}),
    }
}

fn result_and_or(g: &mut Gen, depth: usize) -> Value {
    let name = g.variant_name();
    if g.rng.chance(50) { json!({"or": [{"var": "plan"}, name]}) } else { json!({"and": [g.condition(depth), name]}) }
}

fn result_ref(g: &mut Gen, depth: usize) -> Value {
    if g.result_ref { json!({"$ref": EVALUATOR_RESULT.0}) } else { result_if(g, depth) }
}

/// Bucketing weights; the tag says which edge a weight exercises.
const WEIGHTS: &[(u64, Option<&str>)] = &[
    (52, None),
    (12, Some("fractional:weight_zero")),
    (13, Some("fractional:default_weight")),
    (8, Some("fractional:negative_weight")),
    (1, Some("fractional:negative_literal")),
    (4, Some("fractional:computed_weight")),
    (10, Some("fractional:equal_weights")),
];
const BUCKET_COUNT_TAGS: &[&str] = &[
    "fractional:buckets_1",
    "fractional:buckets_2",
    "fractional:buckets_3",
    "fractional:buckets_4",
    "fractional:buckets_5",
];

fn result_fractional(g: &mut Gen, _: usize) -> Value {
    let mut args = Vec::new();
    match g.rng.below(4) {
        0 => g.tag("fractional:targeting_key"),
        1 => {
            g.tag("fractional:explicit");
            let by = *g.rng.pick(&["static-bucket", "user-7", "", "acme/flag-1"]);
            // The flagd schema wants an expression here; a bare string is schema-invalid
            // but the reference evaluates it the same way.
            if g.rng.chance(25) {
                g.tag("fractional:explicit_literal");
                args.push(json!(by));
            } else {
                args.push(json!({"cat": [by]}));
            }
        }
        2 => {
            g.tag("fractional:cat_flag_key");
            let by = *g.rng.pick(&["email", "companyId", "targetingKey"]);
            args.push(json!({"cat": [{"var": "$flagd.flagKey"}, {"var": by}]}));
        }
        _ => {
            g.tag("fractional:var");
            args.push(json!({"var": *g.rng.pick(&["email", "companyId"])}));
        }
    }
    let n = g.rng.range(1, 5) as usize;
    g.tag(BUCKET_COUNT_TAGS[n - 1]);
    for _ in 0..n {
        let name = if g.rng.chance(5) { UNKNOWN_VARIANT.to_owned() } else { g.variant_name() };
        args.push(g.bucket(name));
    }
    if g.rng.chance(3) {
        g.tag("fractional:overflow");
        args.push(json!([g.variant_name(), 2_147_483_647]));
    }
    json!({"fractional": args})
}

impl Gen {
    fn bucket(&mut self, name: String) -> Value {
        let roll = self.rng.below(100) as u64;
        let mut acc = 0;
        let (_, tag) = *WEIGHTS
            .iter()
            .find(|(p, _)| {
                acc += p;
                roll < acc
            })
            .unwrap_or(&WEIGHTS[0]);
        if let Some(tag) = tag {
            self.tag(tag);
        }
        match tag {
            Some("fractional:weight_zero") => json!([name, 0]),
            Some("fractional:default_weight") => json!([name]),
            // Negative weights (clamped to 0) come from computations; a negative literal
            // is schema-invalid.
            Some("fractional:negative_weight") => json!([name, {"-": [0, self.rng.range(1, 50)]}]),
            Some("fractional:negative_literal") => json!([name, -self.rng.range(1, 50)]),
            Some("fractional:computed_weight") => json!([name, {"var": "age"}]),
            Some(_) => json!([name, 25]),
            None => json!([name, self.rng.range(1, 100)]),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Documents, flags, contexts, cases
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct FlagSpec {
    key: String,
    ty: Ty,
    default_variant: Option<String>,
    variants: Map<String, Value>,
    tags: Vec<&'static str>,
}

impl FlagSpec {
    /// What a DISABLED flag serves here: nothing without a default variant; for a boolean
    /// flag its `false` variant (the kill switch's answer whatever the default); otherwise
    /// the default variant.
    fn off_variant(&self) -> Option<&str> {
        let default = self.default_variant.as_deref()?;
        let boolean = self.variants.values().all(Value::is_boolean);
        let off = self.variants.iter().find(|(_, v)| **v == Value::Bool(false)).map(|(name, _)| name.as_str());
        Some(off.filter(|_| boolean).unwrap_or(default))
    }
}

#[derive(Debug)]
struct Doc {
    json: Value,
    flags: Vec<FlagSpec>,
}

#[derive(Debug, Clone)]
struct Case {
    doc: usize,
    flag: Option<usize>,
    flag_key: String,
    ty: Ty,
    context: Value,
    tags: Vec<&'static str>,
}

fn variants(g: &mut Gen, ty: Ty) -> Map<String, Value> {
    let mut names: Vec<&str> = match ty {
        Ty::Boolean => {
            return g.rng.pick(BOOL_VARIANTS).iter().map(|(n, v)| ((*n).to_owned(), json!(v))).collect();
        }
        Ty::String => STRING_NAMES.to_vec(),
        Ty::Number => NUMBER_NAMES.to_vec(),
        Ty::Object => OBJECT_NAMES.to_vec(),
    };
    let keep = g.rng.range(2, 5) as usize;
    while names.len() > keep {
        names.remove(g.rng.below(names.len()));
    }
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let value = match ty {
                Ty::String => json!(format!("value-{n}")),
                Ty::Number => json!(*g.rng.pick(NUMBER_VALUES)),
                _ => json!({"name": n, "limits": {"max": i * 10}, "list": [i, "x"], "on": i % 2 == 0}),
            };
            (n.to_owned(), value)
        })
        .collect()
}

/// The flagd schema wants the flag set's `version` to be a string; a flag's may be a
/// number, and then overrides the set's in the merged metadata.
fn metadata(g: &mut Gen, prefix: &str) -> Value {
    let mut m = Map::new();
    let version = g.rng.range(1, 3);
    m.insert("version".into(), if prefix == "set" { json!(format!("v{version}")) } else { json!(version) });
    m.insert(format!("{prefix}Owner"), json!(*g.rng.pick(&["core", "growth"])));
    if g.rng.chance(50) {
        m.insert("experimental".into(), json!(g.rng.chance(50)));
    }
    Value::Object(m)
}

fn flag(g: &mut Gen, key: String) -> (Value, FlagSpec) {
    g.tags.clear();
    let ty = *g.rng.pick(&Ty::ALL);
    g.tag(ty.tag());
    let variants = variants(g, ty);
    g.names = variants.keys().cloned().collect();
    let mut flag = Map::new();
    let disabled = g.rng.chance(10);
    g.tag(if disabled { "state:disabled" } else { "state:enabled" });
    flag.insert("state".into(), json!(if disabled { "DISABLED" } else { "ENABLED" }));
    flag.insert("variants".into(), Value::Object(variants.clone()));
    let default_variant = if g.rng.chance(12) {
        g.tag("default_variant:none");
        if g.rng.chance(50) {
            flag.insert("defaultVariant".into(), Value::Null);
        }
        None
    } else {
        let name = g.variant_name();
        flag.insert("defaultVariant".into(), json!(name));
        Some(name)
    };
    match g.rng.below(100) {
        0..=11 => g.tag("targeting:absent"),
        12..=19 => {
            g.tag("targeting:empty");
            flag.insert("targeting".into(), json!({}));
        }
        _ => {
            g.tag("targeting:rules");
            let rules = g.result(0);
            flag.insert("targeting".into(), rules);
        }
    }
    if g.rng.chance(40) {
        g.tag("metadata:flag");
        flag.insert("metadata".into(), metadata(g, "flag"));
    }
    let spec = FlagSpec { key, ty, default_variant, variants, tags: std::mem::take(&mut g.tags) };
    (Value::Object(flag), spec)
}

fn document(g: &mut Gen, index: usize) -> Doc {
    let mut doc = Map::new();
    let mut evaluators = Map::new();
    g.refs.clear();
    g.result_ref = false;
    if g.rng.chance(40) {
        for (name, body) in EVALUATOR_CONDITIONS {
            if g.rng.chance(60) {
                g.refs.push(name);
                evaluators.insert((*name).to_owned(), body());
            }
        }
        if g.rng.chance(50) {
            g.result_ref = true;
            evaluators.insert(EVALUATOR_RESULT.0.to_owned(), (EVALUATOR_RESULT.1)());
        }
    }
    let set_metadata = g.rng.chance(40);
    let mut flags = Map::new();
    let mut specs = Vec::new();
    for i in 0..g.rng.range(1, 3) {
        let (json, mut spec) = flag(g, format!("flag-{}", index * 3 + i as usize));
        if set_metadata {
            spec.tags.push("metadata:set");
            if json.get("metadata").is_some() {
                spec.tags.push("metadata:merged");
            }
        }
        flags.insert(spec.key.clone(), json);
        specs.push(spec);
    }
    doc.insert("flags".into(), Value::Object(flags));
    if !evaluators.is_empty() {
        doc.insert("$evaluators".into(), Value::Object(evaluators));
    }
    if set_metadata {
        doc.insert("metadata".into(), metadata(g, "set"));
    }
    Doc { json: Value::Object(doc), flags: specs }
}

/// Bucketing values stay ASCII: the reference hashes UTF-16 code units, flagd hashes
/// UTF-8 bytes (a documented, deliberate difference).
fn targeting_key(g: &mut Gen) -> Option<String> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_@.:/ ";
    match g.rng.below(100) {
        0..=11 => None,
        12..=14 => Some(String::new()),
        15..=40 => Some(format!("user-{}", g.rng.range(0, 5000))),
        _ => {
            let len = g.rng.range(1, 24) as usize;
            Some((0..len).map(|_| *g.rng.pick(CHARS) as char).collect())
        }
    }
}

fn context(g: &mut Gen) -> (Value, Vec<&'static str>) {
    let mut ctx = Map::new();
    let mut tags = Vec::new();
    match targeting_key(g) {
        Some(key) => {
            ctx.insert("targetingKey".into(), json!(key));
        }
        None => tags.push("context:no_targeting_key"),
    }
    for attr in ATTRS {
        if g.rng.chance(25) {
            tags.push("context:missing_attribute");
            continue;
        }
        let values = (attr.values)();
        let i = g.rng.below(values.len());
        if i >= attr.normal {
            tags.push("context:type_edge");
        }
        ctx.insert(attr.name.to_owned(), values[i].clone());
    }
    tags.sort_unstable();
    tags.dedup();
    (Value::Object(ctx), tags)
}

fn generate() -> (Vec<Doc>, Vec<Case>) {
    let mut g = Gen { rng: Rng(SEED), tags: Vec::new(), names: Vec::new(), refs: Vec::new(), result_ref: false };
    let mut docs = Vec::new();
    let mut cases = Vec::new();
    for d in 0..DOCUMENTS {
        let doc = document(&mut g, d);
        for (f, spec) in doc.flags.iter().enumerate() {
            for _ in 0..CONTEXTS_PER_FLAG {
                let (context, mut tags) = context(&mut g);
                tags.extend(spec.tags.iter().copied());
                cases.push(Case { doc: d, flag: Some(f), flag_key: spec.key.clone(), ty: spec.ty, context, tags });
            }
        }
        if d % 10 == 0 {
            let (context, _) = context(&mut g);
            let ty = *g.rng.pick(&Ty::ALL);
            cases.push(Case {
                doc: d,
                flag: None,
                flag_key: "no-such-flag".into(),
                ty,
                context,
                tags: vec!["flag_not_found"],
            });
        }
        docs.push(doc);
    }
    (docs, cases)
}

fn batches(docs: &[Doc], cases: &[Case]) -> Vec<Value> {
    let per_batch = cases.len().div_ceil(BATCHES);
    cases
        .chunks(per_batch)
        .enumerate()
        .map(|(b, chunk)| {
            let items: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"id": b * per_batch + i, "config": docs[c.doc].json, "flagKey": c.flag_key,
                           "type": c.ty.name(), "context": c.context})
                })
                .collect();
            json!({"cases": items})
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Our evaluator, and the comparison
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum Ours {
    /// Our loader refused the whole document.
    Rejected(String),
    Resolved {
        value: Option<Value>,
        variant: Option<String>,
        reason: &'static str,
        error_code: Option<&'static str>,
        metadata: Map<String, Value>,
    },
}

fn now_unix_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn load(doc: &Doc) -> Result<Ruleset, String> {
    Ruleset::from_flagd_str(&doc.json.to_string()).map_err(|e| e.to_string())
}

/// The document as the server keeps an imported one and its in-process clients get it:
/// read, `$ref`s inlined, written as this product's own JSON and read back, compiled as a
/// native source. It must still evaluate as flagd does, so every flag carries its flagd
/// meaning itself.
fn load_stored(doc: &Doc) -> Result<Ruleset, String> {
    let mut source = flagd_core::flagd::import(&doc.json.to_string()).map_err(|e| e.to_string())?;
    flagd_core::flagd::inline_evaluators(&mut source).map_err(|e| e.to_string())?;
    let stored = serde_json::to_value(&source).map_err(|e| e.to_string())?;
    let source = serde_json::from_value(stored).map_err(|e| e.to_string())?;
    Ruleset::compile(&source).map_err(|e| e.to_string())
}

fn evaluate_ours(ruleset: &Result<Ruleset, String>, case: &Case, now: i64) -> Ours {
    let ruleset = match ruleset {
        Ok(r) => r,
        Err(e) => return Ours::Rejected(e.clone()),
    };
    let ctx = match EvaluationContext::from_json(case.context.clone()) {
        Ok(ctx) => ctx.at(now),
        Err(e) => return Ours::Rejected(format!("context refused: {e}")),
    };
    let r = ruleset.evaluate(&case.flag_key, &ctx);
    Ours::Resolved {
        value: r.value.cloned(),
        variant: r.variant.map(str::to_owned),
        reason: r.reason.as_str(),
        error_code: r.error.as_ref().map(|e| e.code.as_str()),
        metadata: r.metadata.clone(),
    }
}

/// JSON equality with numbers compared by value, as JavaScript sees them (`1 == 1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Differences found in one case, as "field: ours … theirs …" lines.
#[derive(Default)]
struct Diff(Vec<String>);

impl Diff {
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, field: &str, ours: T, expected: T) {
        if ours != expected {
            self.0.push(format!("{field}: ours {ours:?}, expected {expected:?}"));
        }
    }

    fn check_json(&mut self, field: &str, ours: Option<&Value>, expected: Option<&Value>) {
        let same = match (ours, expected) {
            (Some(a), Some(b)) => json_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            self.0.push(format!("{field}: ours {ours:?}, expected {expected:?}"));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Agreed,
    /// A document the flagd schema rejects, which our loader refused as well.
    RejectedInvalid,
}

fn compare(case: &Case, spec: Option<&FlagSpec>, theirs: &Theirs, ours: &Ours) -> Result<Outcome, String> {
    let (value, variant, reason, error_code, metadata) = match ours {
        Ours::Rejected(_) if !theirs.schema_valid || theirs.load_error.is_some() => {
            return Ok(Outcome::RejectedInvalid);
        }
        Ours::Rejected(e) => {
            return Err(format!("we rejected a document the flagd schema accepts: {e}"));
        }
        Ours::Resolved { value, variant, reason, error_code, metadata } => {
            (value, variant, *reason, *error_code, metadata)
        }
    };
    if let Some(e) = &theirs.load_error {
        return Err(format!("the reference could not load the document ({e}) but we did"));
    }
    let caller_default = case.ty.caller_default();
    let mut d = Diff::default();
    d.check("reason", reason, theirs.reason.as_str());
    match theirs.reason.as_str() {
        "ERROR" => {
            d.check("errorCode", error_code, theirs.error_code.as_deref());
            d.check_json("value", value.as_ref(), None);
            d.check("variant", variant.as_deref(), None);
            d.check_json("reference value", Some(&theirs.value), Some(&caller_default));
        }
        "DISABLED" => {
            // Deliberate difference: we serve the flag's off variant, the reference serves
            // the caller's default.
            let spec = spec.ok_or("DISABLED for a flag the generator did not make")?;
            let off = spec.off_variant();
            d.check("variant", variant.as_deref(), off);
            d.check_json("value", value.as_ref(), off.and_then(|v| spec.variants.get(v)));
            d.check_json("reference value", Some(&theirs.value), Some(&caller_default));
            d.check("reference variant", theirs.variant.as_deref(), None);
        }
        _ => {
            d.check("errorCode", error_code, None);
            d.check("variant", variant.as_deref(), theirs.variant.as_deref());
            // No variant: the reference fills in the caller's default, we serve nothing.
            let expected = theirs.variant.as_ref().map(|_| &theirs.value);
            d.check_json("value", value.as_ref(), expected);
        }
    }
    if theirs.error_code.as_deref() != Some("FLAG_NOT_FOUND") {
        d.check_json("metadata", Some(&Value::Object(metadata.clone())), Some(&theirs.metadata));
    }
    if d.0.is_empty() { Ok(Outcome::Agreed) } else { Err(d.0.join("\n    ")) }
}

fn describe(id: usize, case: &Case, doc: &Doc, theirs: &Theirs, ours: &Ours, diff: &str) -> String {
    format!(
        "case {id} [{}]\n  flag {:?} as {}\n  config:  {}\n  context: {}\n  theirs:  {theirs:?}\n  ours:    {ours:?}\n  diff:\n    {diff}\n",
        case.tags.join(","),
        case.flag_key,
        case.ty.name(),
        doc.json,
        case.context,
    )
}

// ---------------------------------------------------------------------------------------
// Coverage
// ---------------------------------------------------------------------------------------

/// Every category the generator must keep producing, with a floor on its case count, so
/// that a change to the generator cannot silently stop testing something.
const REQUIRED_TAGS: &[(&str, usize)] = &[
    ("type:boolean", 1500),
    ("type:string", 1500),
    ("type:number", 1500),
    ("type:object", 1500),
    ("state:disabled", 500),
    ("default_variant:none", 500),
    ("targeting:absent", 500),
    ("targeting:empty", 400),
    ("targeting:rules", 5000),
    ("metadata:flag", 2000),
    ("metadata:set", 2000),
    ("metadata:merged", 500),
    ("fractional", 1500),
    ("fractional:targeting_key", 300),
    ("fractional:explicit", 300),
    ("fractional:cat_flag_key", 300),
    ("fractional:var", 300),
    ("fractional:weight_zero", 300),
    ("fractional:default_weight", 300),
    ("fractional:negative_weight", 200),
    ("fractional:equal_weights", 200),
    ("fractional:overflow", 20),
    ("fractional:explicit_literal", 50),
    ("fractional:negative_literal", 20),
    ("fractional:computed_weight", 100),
    ("fractional:buckets_1", 150),
    ("fractional:buckets_2", 150),
    ("fractional:buckets_3", 150),
    ("fractional:buckets_4", 150),
    ("fractional:buckets_5", 150),
    ("sem_ver", 700),
    ("sem_ver:=", 40),
    ("sem_ver:!=", 40),
    ("sem_ver:<", 40),
    ("sem_ver:<=", 40),
    ("sem_ver:>", 40),
    ("sem_ver:>=", 40),
    ("sem_ver:^", 40),
    ("sem_ver:~", 40),
    ("starts_with", 300),
    ("ends_with", 300),
    ("string_cmp:non_string_arg", 200),
    ("ref", 500),
    ("logic:if", 1800),
    ("logic:and_or", 180),
    ("logic:not", 150),
    ("logic:equality", 350),
    ("logic:compare", 150),
    ("logic:between", 200),
    ("logic:in_array", 200),
    ("logic:in_string", 200),
    ("logic:cat_substr", 200),
    ("logic:arith", 200),
    ("logic:min_max", 200),
    ("logic:merge", 200),
    ("logic:array_ops", 400),
    ("logic:missing", 200),
    ("logic:missing_some", 200),
    ("logic:var_path", 200),
    ("logic:and_or_value", 200),
    ("flagd:timestamp", 200),
    ("flagd:flag_key", 200),
    ("result:var", 300),
    ("result:non_string", 1000),
    ("variant:unknown", 250),
    ("context:missing_attribute", 5000),
    ("context:type_edge", 5000),
    ("context:no_targeting_key", 800),
    ("flag_not_found", 50),
];

fn tag_counts(cases: &[Case]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for case in cases {
        let mut tags = case.tags.clone();
        tags.sort_unstable();
        tags.dedup();
        for tag in tags {
            *counts.entry(tag).or_insert(0) += 1;
        }
    }
    counts
}

fn assert_coverage(cases: &[Case]) {
    assert!(cases.len() >= MIN_CASES, "only {} cases generated, need {MIN_CASES}", cases.len());
    let counts = tag_counts(cases);
    let short: Vec<String> = REQUIRED_TAGS
        .iter()
        .filter(|(tag, min)| counts.get(tag).copied().unwrap_or(0) < *min)
        .map(|(tag, min)| format!("{tag}: {} < {min}", counts.get(tag).copied().unwrap_or(0)))
        .collect();
    assert!(short.is_empty(), "generator under-covers categories:\n  {}\nall counts: {counts:#?}", short.join("\n  "));
}

/// The reference's own answers must be spread over every outcome, or the comparison
/// would mostly compare errors with errors.
const REQUIRED_OUTCOMES: &[(&str, usize)] = &[
    ("STATIC", 500),
    ("TARGETING_MATCH", 2500),
    ("DEFAULT", 1000),
    ("DISABLED", 500),
    ("ERROR/GENERAL", 200),
    ("ERROR/FLAG_NOT_FOUND", 50),
];

fn outcome_counts(answers: &[Theirs]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        let key = match &a.error_code {
            Some(code) => format!("{}/{code}", a.reason),
            None => a.reason.clone(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn assert_outcomes(answers: &[Theirs]) {
    let counts = outcome_counts(answers);
    for (outcome, min) in REQUIRED_OUTCOMES {
        let n = counts.get(*outcome).copied().unwrap_or(0);
        assert!(n >= *min, "the reference answered {outcome} only {n} times (< {min}): {counts:#?}");
    }
    let valid = answers.iter().filter(|a| a.schema_valid).count();
    let share = valid as f64 / answers.len() as f64;
    assert!(share >= MIN_SCHEMA_VALID_SHARE, "only {valid} of {} cases are schema-valid", answers.len());
    eprintln!("reference outcomes: {counts:?}; schema-valid cases: {valid}/{}", answers.len());
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn generator_covers_every_category() {
    let (_, cases) = generate();
    assert_coverage(&cases);
}

#[test]
fn evaluator_matches_reference_on_generated_cases() {
    let (docs, cases) = generate();
    assert_coverage(&cases);
    let theirs = run_reference(batches(&docs, &cases));
    assert_eq!(theirs.len(), cases.len(), "the reference answered a different number of cases");
    assert_outcomes(&theirs);

    let now = now_unix_seconds();
    let rulesets: Vec<_> = docs.iter().map(load).collect();
    let stored: Vec<_> = docs.iter().map(load_stored).collect();
    let mut mismatches = Vec::new();
    let mut rejected_invalid = 0;
    for (id, (case, theirs)) in cases.iter().zip(&theirs).enumerate() {
        let spec = case.flag.map(|f| &docs[case.doc].flags[f]);
        let ours = evaluate_ours(&rulesets[case.doc], case, now);
        match compare(case, spec, theirs, &ours) {
            Ok(Outcome::Agreed) => {}
            Ok(Outcome::RejectedInvalid) => rejected_invalid += 1,
            Err(diff) => mismatches.push((id, describe(id, case, &docs[case.doc], theirs, &ours, &diff))),
        }
        // Like the direct path, the stored one may refuse only what the flagd schema rejects.
        let ours = evaluate_ours(&stored[case.doc], case, now);
        match compare(case, spec, theirs, &ours) {
            Ok(_) => {}
            Err(diff) => {
                let diff = format!("as stored: {diff}");
                mismatches.push((id, describe(id, case, &docs[case.doc], theirs, &ours, &diff)));
            }
        }
    }
    eprintln!("{} cases; {rejected_invalid} in schema-invalid documents our loader refused", cases.len());
    let compared = cases.len() - rejected_invalid;
    assert!(compared >= MIN_CASES, "only {compared} cases were compared (need {MIN_CASES})");
    assert!(mismatches.is_empty(), "{}", mismatch_report(&cases, &mismatches));
}

/// The shown mismatches come from distinct flags first (each flag is evaluated with
/// several contexts, and one bug tends to fail all of them), then a count per category.
fn mismatch_report(cases: &[Case], mismatches: &[(usize, String)]) -> String {
    let mut seen = std::collections::HashSet::new();
    let (first, repeats): (Vec<_>, Vec<_>) =
        mismatches.iter().partition(|(id, _)| seen.insert((cases[*id].doc, cases[*id].flag_key.as_str())));
    let shown: Vec<&str> = first.iter().chain(&repeats).take(SHOWN_MISMATCHES).map(|(_, text)| text.as_str()).collect();
    let failed: Vec<Case> =
        mismatches.iter().map(|(id, _)| Case { tags: cases[*id].tags.clone(), ..cases[*id].clone() }).collect();
    let mut by_tag: Vec<_> = tag_counts(&failed).into_iter().collect();
    by_tag.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    format!(
        "{} of {} cases differ from the reference ({} distinct flags); {} shown:\n\n{}\nmismatches per category: {by_tag:?}",
        mismatches.len(),
        cases.len(),
        first.len(),
        shown.len(),
        shown.join("\n"),
    )
}

/// Documents our loader must refuse; the reference loads them but answers PARSE_ERROR
/// (for the flag, or for the whole document).
const INVALID_DOCUMENTS: &[Named] = &[
    (
        "unknown operator",
        || json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"no_such_op": [1, 2]}}}}),
    ),
    (
        "nested unknown operator",
        || json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"bogus": [{"var": "x"}]}, "on", "off"]}}}}),
    ),
    (
        "$ref to an undefined evaluator",
        || json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"$ref": "nope"}, "on", "off"]}}}, "$evaluators": {"other": {"==": [1, 1]}}}),
    ),
    (
        "defaultVariant not among the variants",
        || json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "maybe"}}}),
    ),
    (
        "unknown state",
        || json!({"flags": {"f": {"state": "ON", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}),
    ),
];

#[test]
fn invalid_documents_are_rejected_here_and_parse_errors_in_reference() {
    let items: Vec<Value> = INVALID_DOCUMENTS
        .iter()
        .enumerate()
        .map(
            |(id, (_, doc))| json!({"id": id, "config": doc(), "flagKey": "f", "type": "boolean", "context": {"x": 1}}),
        )
        .collect();
    let theirs = run_reference(vec![json!({"cases": items})]);
    for ((name, doc), theirs) in INVALID_DOCUMENTS.iter().zip(&theirs) {
        assert_eq!(
            (theirs.reason.as_str(), theirs.error_code.as_deref()),
            ("ERROR", Some("PARSE_ERROR")),
            "{name}: the reference should answer PARSE_ERROR: {theirs:?}"
        );
        let ours = Ruleset::from_flagd_str(&doc().to_string());
        assert!(ours.is_err(), "{name}: our loader accepted {}", doc());
    }
}

/// An exported environment, evaluated by the reference, serves every context the variant we
/// serve: company rollouts become `fractional`, lists become `in`, and a context with no
/// company, a null one or `""` is bucketed by its targeting key on both sides. A context a
/// rollout cannot bucket, which we answer with `TARGETING_KEY_MISSING`, gets the off variant
/// with reason `DEFAULT` there, not one bucket for all such contexts.
#[test]
fn the_reference_serves_an_exported_environment_as_we_do() {
    let rollout = |on: f64| json!({"rollout": {"variants": [{"variant": "on", "weight": on}, {"variant": "off", "weight": 100.0 - on}]}});
    let by_user = json!({"rollout": {"bucketBy": "userId", "variants": [{"variant": "on", "weight": 50.0}, {"variant": "off", "weight": 50.0}]}});
    let source_json = json!({"flags": [
        {"key": "portal", "state": "ENABLED", "deny": ["0", "13", "-9223372036854775808"],
         "allow": ["5", "acme", "18446744073709551615"],
         "rules": [{"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "serve": rollout(33.333)}],
         "fallthrough": rollout(12.5)},
        {"key": "half", "state": "ENABLED", "fallthrough": rollout(50.0)},
        {"key": "by_user", "state": "ENABLED", "fallthrough": by_user}
    ]});
    let native = Ruleset::compile(&serde_json::from_value(source_json.clone()).unwrap()).unwrap();
    let exported = flagd_core::flagd::export(&serde_json::from_value(source_json).unwrap()).unwrap();
    let companies = (0..40).map(|n| json!(n)).chain((0..40).map(|n| json!(format!("c{n}")))).chain([
        json!("acme"),
        json!("13"),
        json!(""),
        Value::Null,
        // As strings: JavaScript's numbers lose integers past 2^53, in the reference as in
        // any flagd evaluator that reads contexts into doubles.
        json!("18446744073709551615"),
        json!("-9223372036854775808"),
    ]);
    let mut contexts: Vec<Value> = companies
        .enumerate()
        .map(|(i, company)| {
            let plan = if i % 2 == 0 { "pro" } else { "free" };
            json!({"companyId": company, "targetingKey": format!("user-{i}"), "plan": plan})
        })
        .collect();
    contexts.extend((0..40).map(|i| json!({"companyId": "", "targetingKey": format!("anon-{i}")})));
    contexts.extend((0..40).map(|i| json!({"targetingKey": format!("anon-{i}")})));
    contexts.extend((0..40).map(|i| json!({"companyId": i, "userId": format!("u{i}")})));
    contexts.extend([
        json!({}),
        json!({"plan": "pro"}),
        json!({"companyId": "", "plan": "pro"}),
        json!({"companyId": null}),
    ]);
    let cases: Vec<(&str, &Value)> =
        ["portal", "half", "by_user"].iter().flat_map(|k| contexts.iter().map(move |c| (*k, c))).collect();
    let items: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(id, (key, c))| json!({"id": id, "config": exported, "flagKey": key, "type": "boolean", "context": c}))
        .collect();
    let theirs = run_reference(vec![json!({"cases": items})]);
    assert_eq!(theirs.len(), cases.len());
    let mut served = std::collections::HashSet::new();
    for ((key, c), theirs) in cases.iter().zip(&theirs) {
        let ours = native.evaluate(key, &EvaluationContext::from_json((*c).clone()).unwrap());
        let unbucketable = ours.error.as_ref().is_some_and(|e| e.code == ErrorCode::TargetingKeyMissing);
        let expected = if unbucketable { (Some("off"), "DEFAULT") } else { (ours.variant, theirs.reason.as_str()) };
        assert_eq!(
            (theirs.variant.as_deref(), theirs.reason.as_str()),
            expected,
            "{key} for {c}: reference {theirs:?}, ours {ours:?}"
        );
        served.insert((*key, ours.variant));
    }
    let expected = [("portal", Some("on")), ("portal", Some("off")), ("portal", None)];
    let every_flag = ["half", "by_user"].iter().flat_map(|k| [Some("on"), Some("off"), None].map(|v| (*k, v)));
    let expected: std::collections::HashSet<_> = expected.into_iter().chain(every_flag).collect();
    assert_eq!(served, expected, "every flag serves both variants to some context and cannot bucket another");
}

/// A rule whose targeting yields null does not match: the next rule, and then the
/// fallthrough, decide. The exported file says so to the reference, and any other result
/// (`false`, `0`, `""`, an array, an object) names a variant there as it does here.
#[test]
fn exported_rule_targeting_that_yields_null_falls_through_in_the_reference() {
    let plan_is = |plan: &str| json!({"if": [{"==": [{"var": "plan"}, plan]}, "on", null]});
    let source_json = json!({"flags": [
        // The review's case: pro plans get `on` from targeting, others go on to `country`.
        {"key": "t1", "state": "ENABLED",
         "rules": [{"serve": {"targeting": plan_is("pro")}},
                   {"conditions": [{"attribute": "country", "op": "equals", "value": "de"}], "serve": {"variant": "on"}}],
         "fallthrough": {"variant": "off"}},
        // A company rule whose targeting yields null gives way to a 100 % rollout.
        {"key": "t2", "state": "ENABLED",
         "rules": [{"companies": ["7"], "serve": {"targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "off", null]}}}],
         "fallthrough": {"rollout": {"variants": [{"variant": "on", "weight": 100.0}, {"variant": "off", "weight": 0.0}]}}},
        // Whatever `result` holds is the variant's name, in JavaScript's spelling.
        {"key": "t3", "state": "ENABLED",
         "variants": {"false": "F", "0": "Z", "1": "O", "1.5": "X", "a,b": "AB", "[object Object]": "OBJ", "on": "ON", "off": "OFF"},
         "rules": [{"serve": {"targeting": {"var": "result"}}},
                   {"conditions": [{"attribute": "country", "op": "equals", "value": "de"}], "serve": {"variant": "1"}}],
         "fallthrough": {"variant": "on"}},
        // `false` from a rule with clauses is the variant "false", not a fall through to "true".
        {"key": "t4", "state": "ENABLED", "variants": {"true": true, "false": false}, "offVariant": "false",
         "rules": [{"conditions": [{"attribute": "plan", "op": "equals", "value": "pro"}],
                    "serve": {"targeting": {"==": [{"var": "country"}, "de"]}}}],
         "fallthrough": {"variant": "true"}},
        // Without an off variant, a fallthrough's null serves nothing on both sides.
        {"key": "t5", "state": "ENABLED", "noOffVariant": true,
         "rules": [{"conditions": [{"attribute": "country", "op": "equals", "value": "de"}], "serve": {"targeting": plan_is("free")}}],
         "fallthrough": {"targeting": plan_is("pro")}}
    ]});
    let native = Ruleset::compile(&serde_json::from_value(source_json.clone()).unwrap()).unwrap();
    let exported = flagd_core::flagd::export(&serde_json::from_value(source_json).unwrap()).unwrap();
    let reimported = Ruleset::from_flagd_str(&exported.to_string()).unwrap();
    let results = [
        json!(false),
        json!(0),
        json!(1),
        json!(1.5),
        json!(""),
        Value::Null,
        json!(["a", "b"]),
        json!({"x": 1}),
        json!("off"),
        json!("nope"),
        json!(true),
    ];
    let mut contexts = Vec::new();
    for plan in [Some("pro"), Some("free"), None] {
        for country in [Some("de"), Some("fr"), None] {
            for company in [Some(json!("7")), Some(json!(7)), Some(json!("8")), None] {
                for result in results.iter().map(Some).chain([None]) {
                    let mut c = Map::new();
                    c.insert("targetingKey".into(), json!(format!("user-{}", contexts.len())));
                    c.extend(plan.map(|p| ("plan".to_owned(), json!(p))));
                    c.extend(country.map(|p| ("country".to_owned(), json!(p))));
                    c.extend(company.clone().map(|id| ("companyId".to_owned(), id)));
                    c.extend(result.map(|r| ("result".to_owned(), r.clone())));
                    contexts.push(Value::Object(c));
                }
            }
        }
    }
    contexts.push(json!({"country": "de", "plan": "free"}));
    contexts.push(json!({"companyId": "7"}));
    let flags = [("t1", "boolean"), ("t2", "boolean"), ("t3", "string"), ("t4", "boolean"), ("t5", "boolean")];
    let cases: Vec<(&str, &str, &Value)> =
        flags.iter().flat_map(|(k, ty)| contexts.iter().map(move |c| (*k, *ty, c))).collect();
    let items: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(id, (key, ty, c))| json!({"id": id, "config": exported, "flagKey": key, "type": ty, "context": c}))
        .collect();
    let theirs = run_reference(vec![json!({"cases": items})]);
    assert_eq!(theirs.len(), cases.len());
    let mut seen = std::collections::HashSet::new();
    for ((key, _, c), theirs) in cases.iter().zip(&theirs) {
        let ctx = EvaluationContext::from_json((*c).clone()).unwrap();
        let ours = native.evaluate(key, &ctx);
        let error = ours.error.as_ref().map(|e| e.code.as_str());
        let shown = format!("{key} for {c}: reference {theirs:?}, ours {ours:?}");
        // A documented difference: what a rollout cannot bucket, flagd serves the off variant.
        let in_flagd = if error == Some("TARGETING_KEY_MISSING") { (Some("off"), None) } else { (ours.variant, error) };
        assert_eq!((theirs.variant.as_deref(), theirs.error_code.as_deref()), in_flagd, "{shown}");
        assert_eq!(theirs.reason == "ERROR", in_flagd.1.is_some(), "{shown}");
        if in_flagd == (None, None) {
            assert_eq!(theirs.reason, "DEFAULT", "{shown}");
        }
        let again = reimported.evaluate(key, &ctx);
        assert_eq!((again.variant, again.error.as_ref().map(|e| e.code.as_str())), in_flagd, "{shown}");
        seen.insert((*key, ours.variant, error));
    }
    let review = |key: &str, c: Value| native.evaluate(key, &EvaluationContext::from_json(c).unwrap()).variant;
    assert_eq!(review("t1", json!({"country": "de", "plan": "free"})), Some("on"));
    assert_eq!(review("t2", json!({"companyId": "7"})), Some("on"));
    for (key, variant, error) in [
        ("t1", Some("on"), None),
        ("t1", Some("off"), None),
        ("t2", Some("on"), None),
        ("t2", Some("off"), None),
        ("t3", Some("false"), None),
        ("t3", Some("0"), None),
        ("t3", Some("1"), None),
        ("t3", Some("1.5"), None),
        ("t3", Some("a,b"), None),
        ("t3", Some("[object Object]"), None),
        ("t3", Some("off"), None),
        ("t3", Some("on"), None),
        ("t3", None, Some("GENERAL")),
        ("t4", Some("true"), None),
        ("t4", Some("false"), None),
        ("t5", Some("on"), None),
        ("t5", None, None),
    ] {
        assert!(seen.contains(&(key, variant, error)), "no case where {key} serves {variant:?} ({error:?})");
    }
}
