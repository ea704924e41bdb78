//! Attribute conditions, compiled: operands parsed once (numbers, versions, dates,
//! regexes), so evaluation only compares.

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::context::EvaluationContext;
use crate::model::{Condition, Operator};
use crate::problems::{Path, Problems};
use crate::semver::Version;

/// Longest regex pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Compiled size limit of one regex, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// The attribute name that reads the evaluation time.
pub const NOW_ATTRIBUTE: &str = "$now";

#[derive(Debug, Clone)]
pub(crate) struct CompiledCondition {
    attribute: Attribute,
    test: Test,
}

#[derive(Debug, Clone)]
enum Attribute {
    Now,
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextOp {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Lte,
    Gt,
    Gte,
    Eq,
}

impl Cmp {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        matches!(
            (self, ord),
            (Self::Lt, Less)
                | (Self::Lte, Less | Equal)
                | (Self::Gt, Greater)
                | (Self::Gte, Greater | Equal)
                | (Self::Eq, Equal)
        )
    }
}

#[derive(Debug, Clone)]
enum Test {
    OneOf { values: Vec<Value>, negate: bool },
    Text { op: TextOp, needles: Vec<String> },
    Number { cmp: Cmp, rhs: f64 },
    Semver { cmp: Cmp, rhs: Version },
    Date { cmp: Cmp, rhs_millis: i64 },
    Regex(Regex),
    HasElement(Value),
}

/// The problem of an empty attribute name, wherever one is named.
pub(crate) const EMPTY_ATTRIBUTE: &str = "attribute name must not be empty";

impl CompiledCondition {
    /// Compiles a condition, reporting problems under `path` (e.g. `...conditions[0]`).
    pub(crate) fn compile(c: &Condition, path: Path<'_>, problems: &mut Problems) -> Option<Self> {
        if c.attribute.is_empty() {
            problems.push(path.field("attribute"), EMPTY_ATTRIBUTE);
        }
        let attribute = match c.attribute.as_str() {
            NOW_ATTRIBUTE => Attribute::Now,
            name => Attribute::Named(name.to_owned()),
        };
        let test = compile_test(c.op, &c.value, path.field("value"), problems)?;
        if matches!(attribute, Attribute::Now) && !matches!(test, Test::Date { .. } | Test::Number { .. }) {
            problems
                .push(path.field("attribute"), "`$now` can only be compared with before/after or a number operator");
        }
        Some(Self { attribute, test })
    }

    /// Whether the context satisfies the condition. A missing attribute never does.
    pub(crate) fn holds(&self, ctx: &EvaluationContext) -> bool {
        match &self.attribute {
            Attribute::Now => ctx.now().is_some_and(|now| self.test_now(now)),
            Attribute::Named(name) => ctx.get(name).is_some_and(|v| !v.is_null() && self.test_value(v)),
        }
    }

    fn test_now(&self, now_secs: i64) -> bool {
        match &self.test {
            Test::Date { cmp, rhs_millis } => cmp.holds(now_secs.saturating_mul(1000).cmp(rhs_millis)),
            Test::Number { cmp, rhs } => compare_f64(now_secs as f64, *rhs).is_some_and(|o| cmp.holds(o)),
            _ => false,
        }
    }

    fn test_value(&self, v: &Value) -> bool {
        match &self.test {
            Test::OneOf { values, negate } => values.iter().any(|x| json_eq(v, x)) != *negate,
            Test::Text { op, needles } => text_holds(*op, v, needles),
            Test::Number { cmp, rhs } => as_number(v).and_then(|n| compare_f64(n, *rhs)).is_some_and(|o| cmp.holds(o)),
            Test::Semver { cmp, rhs } => version_of(v).is_some_and(|ver| cmp.holds(ver.cmp(rhs))),
            Test::Date { cmp, rhs_millis } => date_millis(v).is_some_and(|d| cmp.holds(d.cmp(rhs_millis))),
            Test::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
            Test::HasElement(x) => v.as_array().is_some_and(|items| items.iter().any(|i| json_eq(i, x))),
        }
    }
}

fn compile_test(op: Operator, value: &Value, path: Path<'_>, problems: &mut Problems) -> Option<Test> {
    use Operator as O;
    match op {
        O::In | O::NotIn => match value {
            Value::Array(items) => Some(Test::OneOf { values: items.clone(), negate: op == O::NotIn }),
            _ => problems.fail(path, "`in`/`not_in` take a list of values"),
        },
        O::Equals | O::NotEquals => Some(Test::OneOf { values: vec![value.clone()], negate: op == O::NotEquals }),
        O::StartsWith => text_test(TextOp::StartsWith, value, path, problems),
        O::EndsWith => text_test(TextOp::EndsWith, value, path, problems),
        O::Contains => text_test(TextOp::Contains, value, path, problems),
        O::Lt => number_test(Cmp::Lt, value, path, problems),
        O::Lte => number_test(Cmp::Lte, value, path, problems),
        O::Gt => number_test(Cmp::Gt, value, path, problems),
        O::Gte => number_test(Cmp::Gte, value, path, problems),
        O::SemverEq => semver_test(Cmp::Eq, value, path, problems),
        O::SemverLt => semver_test(Cmp::Lt, value, path, problems),
        O::SemverLte => semver_test(Cmp::Lte, value, path, problems),
        O::SemverGt => semver_test(Cmp::Gt, value, path, problems),
        O::SemverGte => semver_test(Cmp::Gte, value, path, problems),
        O::Before => date_test(Cmp::Lt, value, path, problems),
        O::After => date_test(Cmp::Gt, value, path, problems),
        O::Matches => regex_test(value, path, problems),
    }
}

fn text_test(op: TextOp, value: &Value, path: Path<'_>, problems: &mut Problems) -> Option<Test> {
    let needles = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        _ if op == TextOp::Contains => return Some(Test::HasElement(value.clone())),
        _ => return problems.fail(path, "expected a string or a list of strings"),
    };
    Some(Test::Text { op, needles })
}

fn text_holds(op: TextOp, v: &Value, needles: &[String]) -> bool {
    match (op, v) {
        (TextOp::StartsWith, Value::String(s)) => needles.iter().any(|n| s.starts_with(n.as_str())),
        (TextOp::EndsWith, Value::String(s)) => needles.iter().any(|n| s.ends_with(n.as_str())),
        (TextOp::Contains, Value::String(s)) => needles.iter().any(|n| s.contains(n.as_str())),
        (TextOp::Contains, Value::Array(items)) => {
            items.iter().any(|item| item.as_str().is_some_and(|s| needles.iter().any(|n| n == s)))
        }
        _ => false,
    }
}

fn number_test(cmp: Cmp, value: &Value, path: Path<'_>, problems: &mut Problems) -> Option<Test> {
    match value.as_f64() {
        Some(rhs) => Some(Test::Number { cmp, rhs }),
        None => problems.fail(path, "expected a number"),
    }
}

fn semver_test(cmp: Cmp, value: &Value, path: Path<'_>, problems: &mut Problems) -> Option<Test> {
    match version_of(value) {
        Some(rhs) => Some(Test::Semver { cmp, rhs }),
        None => problems.fail(path, format!("{value} is not a semantic version")),
    }
}

fn date_test(cmp: Cmp, value: &Value, path: Path<'_>, problems: &mut Problems) -> Option<Test> {
    match date_millis(value) {
        Some(rhs_millis) => Some(Test::Date { cmp, rhs_millis }),
        None => problems.fail(path, "expected an RFC 3339 date-time or Unix seconds"),
    }
}

fn regex_test(value: &Value, path: Path<'_>, problems: &mut Problems) -> Option<Test> {
    let Some(pattern) = value.as_str() else {
        return problems.fail(path, "expected a regular expression string");
    };
    if pattern.len() > MAX_PATTERN_LEN {
        return problems.fail(path, format!("regular expression longer than {MAX_PATTERN_LEN} bytes"));
    }
    match RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build() {
        Ok(re) => Some(Test::Regex(re)),
        Err(e) => problems.fail(path, format!("invalid regular expression: {e}")),
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compare_f64(a: f64, b: f64) -> Option<std::cmp::Ordering> {
    a.partial_cmp(&b)
}

fn version_of(v: &Value) -> Option<Version> {
    match v {
        Value::String(s) => Version::parse_lenient(s),
        Value::Number(n) => Version::parse_lenient(&n.to_string()),
        _ => None,
    }
}

/// Milliseconds since the epoch of an RFC 3339 string or a number of Unix seconds.
fn date_millis(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis()),
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()).map(|f| (f * 1000.0) as i64),
        _ => None,
    }
}
