//! The flagd flag-definition format: reading it into this crate's model, and writing an
//! environment back out so that flagd-compatible tools evaluate it as we do.
//!
//! A flagd flag becomes a [`Flag`] whose fallthrough is flagd's `defaultVariant`, and so
//! is its off variant, except that a boolean flag's is its `false` variant (without a
//! `defaultVariant` it has no off variant, whatever its variants are called); its
//! targeting (if any, and not `{}`) becomes a single rule serving [`Serve::Targeting`].
//! Reasons then come out as flagd's: `STATIC` without targeting, `TARGETING_MATCH` when
//! targeting names a variant, `DEFAULT` when it yields null. One deliberate difference: a
//! `DISABLED` flag serves its off variant (flagd serves the caller's default and no
//! variant), because OFREP clients treat a missing value as an error.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Problem, ValidationError};
use crate::model::{Flag, FlagState, Rule, RulesetSource, Serve};
use crate::problems::Problems;
use crate::ruleset::{CompileOptions, Dialect, Ruleset};
use crate::unique_keys::find_repeated_key;

/// A flagd document as written.
#[derive(Debug, Deserialize)]
struct Document {
    flags: Option<IndexMap<String, Value>>,
    #[serde(rename = "$evaluators", default)]
    evaluators: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(rename = "$schema", default)]
    _schema: Option<Value>,
}

/// Reads a flagd document into a [`RulesetSource`] (flagd dialect), reporting every
/// problem in it with its path.
pub fn import(text: &str) -> Result<RulesetSource, Error> {
    let (source, problems) = read(text)?;
    problems.into_result(source).map_err(Error::from)
}

/// Reads what can be read, keeping the problems, so that a caller who compiles next can
/// report the document's problems and the compiler's together.
fn read(text: &str) -> Result<(RulesetSource, Problems), Error> {
    let doc: Document = serde_json::from_str(text)?;
    let mut problems = Problems::default();
    // Read, a name given twice (a flag, a variant, …) keeps its last value, and which one
    // the author meant cannot be known: the first such repeat is one more problem.
    if let Some(repeated) = find_repeated_key(text.as_bytes()) {
        let path = match repeated.object.as_str() {
            "" => repeated.key.clone(),
            object => format!("{object}.{}", repeated.key),
        };
        problems.push(path, repeated.to_string());
    }
    let evaluators = object_field(doc.evaluators, "$evaluators", &mut problems);
    let metadata = object_field(doc.metadata, "metadata", &mut problems);
    let entries = doc.flags.unwrap_or_else(|| {
        problems.push("flags", "a flagd document needs a `flags` object");
        IndexMap::new()
    });
    let mut flags = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        problems.set_key(Some(&key));
        if let Some(flag) = import_flag(key, value, &mut problems) {
            flags.push(flag);
        }
    }
    problems.set_key(None);
    Ok((RulesetSource { flags, segments: Vec::new(), evaluators, metadata }, problems))
}

fn object_field(value: Option<Value>, path: &str, problems: &mut Problems) -> Map<String, Value> {
    match value {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            problems.push(path, "must be an object");
            Map::new()
        }
    }
}

/// One flagd flag as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FlagdFlag {
    state: Option<String>,
    variants: Option<Value>,
    default_variant: Option<Value>,
    targeting: Option<Value>,
    metadata: Option<Value>,
}

fn import_flag(key: String, value: Value, problems: &mut Problems) -> Option<Flag> {
    let path = format!("flags.{key}");
    let raw: FlagdFlag = match serde_json::from_value(value) {
        Ok(raw) => raw,
        Err(e) => return problems.fail(path, e.to_string()),
    };
    let state = match raw.state.as_deref() {
        Some("ENABLED") => FlagState::Enabled,
        Some("DISABLED") => FlagState::Disabled,
        Some(other) => {
            return problems.fail(format!("{path}.state"), format!("state must be ENABLED or DISABLED, got `{other}`"));
        }
        None => return problems.fail(format!("{path}.state"), "state is missing: ENABLED or DISABLED"),
    };
    let variants: IndexMap<String, Value> = match raw.variants {
        Some(Value::Object(map)) if !map.is_empty() => map.into_iter().collect(),
        _ => return problems.fail(format!("{path}.variants"), "variants must be a non-empty object"),
    };
    let default_variant = match raw.default_variant {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return problems.fail(format!("{path}.defaultVariant"), "defaultVariant must be a string or null"),
    };
    let metadata = object_field(raw.metadata, &format!("{path}.metadata"), problems);
    let rules = match raw.targeting {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(t)) if t.is_empty() => Vec::new(),
        Some(t @ Value::Object(_)) => vec![Rule {
            name: None,
            companies: Vec::new(),
            segments: Vec::new(),
            conditions: Vec::new(),
            logic: None,
            serve: Serve::Targeting(t),
        }],
        Some(_) => return problems.fail(format!("{path}.targeting"), "targeting must be a JSON Logic object"),
    };
    let mut flag = Flag::boolean(key);
    flag.definition.variants = variants;
    flag.config.state = state;
    flag.definition.metadata = metadata;
    flag.config.rules = rules;
    flag.config.fallthrough = default_variant.clone().map(Serve::Variant);
    // Without `defaultVariant`, flagd serves the caller's default even if a variant is
    // called `off`; the flag says so itself, so that it evaluates as flagd's wherever it
    // is stored and compiled.
    flag.definition.no_off_variant = default_variant.is_none();
    flag.definition.off_variant =
        default_variant.map(|default| kill_switch_variant(&flag.definition.variants, default));
    Some(flag)
}

/// The off variant of an imported flag: what its kill switch serves here, and in every
/// environment that has not enabled it. A boolean flag's is its `false` variant, whatever
/// the file's author made the default (a file that turns a flag on in development must not
/// make production's disabled flag serve `true`); any other flag's is its default.
fn kill_switch_variant(variants: &IndexMap<String, Value>, default: String) -> String {
    let boolean = variants.values().all(Value::is_boolean);
    let off = variants.iter().find(|(_, value)| **value == Value::Bool(false)).map(|(name, _)| name);
    match off {
        Some(name) if boolean => name.clone(),
        _ => default,
    }
}

/// Where an imported flag's targeting sits in the model, and where it sits in the flagd
/// file: problems are reported with the path the author wrote.
const MODEL_TARGETING: &str = ".rules[0].serve.targeting";

/// A problem of an imported flag with the path its author wrote in the flagd file
/// (`…targeting`, `…defaultVariant`) instead of the model's: for callers that compile
/// imported flags themselves, as a server storing them does.
pub fn flagd_path(mut p: Problem) -> Problem {
    for (model, flagd) in [
        (MODEL_TARGETING, ".targeting"),
        (".fallthrough.variant", ".defaultVariant"),
        (".offVariant", ".defaultVariant"),
    ] {
        p.path = p.path.replacen(model, flagd, 1);
    }
    p
}

impl Ruleset {
    /// Imports and compiles a flagd document (flagd dialect).
    pub fn from_flagd_str(text: &str) -> Result<Self, Error> {
        let (source, read_problems) = read(text)?;
        let options = CompileOptions { dialect: Dialect::Flagd, ..CompileOptions::default() };
        let compiled = Self::compile_with(&source, &options);
        let mut problems = read_problems.into_result(()).err().map(|e| e.problems).unwrap_or_default();
        match compiled {
            Ok(ruleset) if problems.is_empty() => return Ok(ruleset),
            Ok(_) => {}
            Err(e) => problems.extend(e.problems.into_iter().map(flagd_path)),
        }
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        Err(Error::Invalid(ValidationError { problems }))
    }
}

/// Prefix of the `$evaluators` entries that export segments.
const SEGMENT_EVALUATOR: &str = "segment:";

/// Writes an environment in flagd format, so that flagd-compatible evaluators serve the
/// same variants as we do: lists and rules become an `if` chain in `targeting` (a rule
/// whose targeting yields null gives way to the rules after it, as here), rollouts
/// become `fractional` over `cat` of the flag key and `companyId` (or `targetingKey` when
/// there is no company; a context with neither gets `defaultVariant`), segments become
/// `$evaluators` used through `$ref`. A rule without clauses is written as its serve
/// alone, so that a file this writes imports as targeting that writes the same file.
///
/// flagd reports `TARGETING_MATCH` where we say `STATIC`, `SPLIT` or `DEFAULT`, and it cannot express
/// regular expressions or dates read from attributes, nor serving no variant where a
/// fallthrough's targeting yields null on a flag that has an off variant: such conditions
/// and fallthroughs are refused with their paths.
pub fn export(source: &RulesetSource) -> Result<Value, crate::error::ValidationError> {
    let mut problems = Problems::default();
    let mut evaluators = source.evaluators.clone();
    for segment in &source.segments {
        problems.set_key(Some(&segment.key));
        let path = format!("segments.{}", segment.key);
        let expr = segment_expr(segment, &path, &mut problems);
        evaluators.insert(format!("{SEGMENT_EVALUATOR}{}", segment.key), expr);
    }
    let mut flags = Map::new();
    for flag in &source.flags {
        problems.set_key(Some(&flag.definition.key));
        flags.insert(flag.definition.key.clone(), export_flag(flag, &mut problems));
    }
    let mut doc = Map::new();
    doc.insert("flags".to_owned(), Value::Object(flags));
    if !evaluators.is_empty() {
        doc.insert("$evaluators".to_owned(), Value::Object(evaluators));
    }
    if !source.metadata.is_empty() {
        doc.insert("metadata".to_owned(), Value::Object(source.metadata.clone()));
    }
    problems.into_result(Value::Object(doc))
}

fn export_flag(flag: &Flag, problems: &mut Problems) -> Value {
    let path = format!("flags.{}", flag.definition.key);
    let variants: Map<String, Value> = flag.definition.spelled_out_variants().into_iter().collect();
    let off = flag.definition.off_variant_name().map(str::to_owned);
    let on = flag.definition.on_variant_name().map(str::to_owned);
    let name_or_null = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    // flagd serves `defaultVariant` both when targeting yields null and (in our import)
    // when disabled, so it must be the off variant; anything else goes into targeting.
    let default_variant = name_or_null(&off);

    let mut steps: Vec<Step> = Vec::new();
    if !flag.config.deny.is_empty() {
        steps.push(Step::decides(vec![company_in(&flag.config.deny)], name_or_null(&off)));
    }
    if !flag.config.allow.is_empty() {
        steps.push(Step::decides(vec![company_in(&flag.config.allow)], name_or_null(&on)));
    }
    for (i, rule) in flag.config.rules.iter().enumerate() {
        let clauses = rule_clauses(rule, &format!("{path}.rules[{i}]"), problems);
        steps.push(match &rule.serve {
            Serve::Targeting(expr) => Step { clauses, serve: expr.clone(), null_falls_through: true },
            other => Step::decides(clauses, serve_expr(other)),
        });
    }
    let fallthrough = match &flag.config.fallthrough {
        None => Value::Null,
        // We serve nothing where a fallthrough's targeting yields null, and flagd would
        // serve `defaultVariant`: only a flag without an off variant can say it.
        Some(Serve::Targeting(_)) if off.is_some() => {
            problems.push(
                format!("{path}.fallthrough.targeting"),
                "flagd serves `defaultVariant` where this targeting yields null, and we serve no variant: \
                 serve the targeting from a rule (whose null falls through to the fallthrough) instead",
            );
            Value::Null
        }
        Some(serve) => serve_expr(serve),
    };
    let last = if fallthrough == default_variant { Value::Null } else { fallthrough };

    let mut out = Map::new();
    out.insert("state".to_owned(), serde_json::to_value(flag.config.state).unwrap_or(Value::Null));
    out.insert("variants".to_owned(), Value::Object(variants));
    out.insert("defaultVariant".to_owned(), default_variant);
    if let Some(t) = targeting(steps, last) {
        out.insert("targeting".to_owned(), t);
    }
    if !flag.definition.metadata.is_empty() {
        out.insert("metadata".to_owned(), Value::Object(flag.definition.metadata.clone()));
    }
    Value::Object(out)
}

/// One step of a flag's evaluation, in order: when its clauses hold, it serves `serve`,
/// unless that yields null and `null_falls_through`, when the next step decides.
struct Step {
    /// JSON Logic that must all be truthy; none means always.
    clauses: Vec<Value>,
    serve: Value,
    /// Rule targeting: null is no match, and the steps after it decide (in flagd an
    /// `if` branch's null would be `defaultVariant`).
    null_falls_through: bool,
}

impl Step {
    fn decides(clauses: Vec<Value>, serve: Value) -> Self {
        Self { clauses, serve, null_falls_through: false }
    }
}

/// The steps as one `if` chain ending in `last` (null: `defaultVariant`), or no targeting
/// when that is all there is. A step that always decides ends the chain, and one with no
/// clauses whose targeting is followed only by `defaultVariant` is that targeting itself:
/// so a file this exports imports as one targeting rule that exports as the same file.
fn targeting(steps: Vec<Step>, last: Value) -> Option<Value> {
    // `if` arguments, built from the end: condition, result, …, else.
    let mut chain = vec![last];
    for step in steps.into_iter().rev() {
        let always = step.clauses.is_empty();
        match (always, step.null_falls_through) {
            (true, false) => chain = vec![step.serve],
            (true, true) if chain == [Value::Null] => chain = vec![step.serve],
            (_, falls_through) => {
                let mut clauses = step.clauses;
                if falls_through {
                    // Any result but null names a variant (flagd turns `false`, `0` or `""`
                    // into one), so the branch is taken for exactly those: strict `!==`
                    // compares with null without the coercions loose `!=` leaves to each
                    // evaluator.
                    clauses.push(serde_json::json!({ "!==": [step.serve.clone(), null] }));
                }
                chain.splice(0..0, [all_of(clauses), step.serve]);
            }
        }
    }
    if chain.len() > 1 {
        return Some(serde_json::json!({ "if": chain }));
    }
    match chain.pop()? {
        Value::Null => None,
        // flagd's targeting is an object: a variant name served to everyone is written as
        // the one branch of an `if`.
        name @ Value::String(_) => Some(serde_json::json!({ "if": [true, name, null] })),
        only => Some(only),
    }
}

/// `companyId` in a list, matching integer and string forms alike (flagd's `in` is strict).
fn company_in(ids: &[String]) -> Value {
    let mut forms: Vec<Value> = Vec::with_capacity(ids.len() * 2);
    for id in ids {
        forms.push(Value::String(id.clone()));
        // Company ids run from -2^63 to 2^64 - 1: an integer form for every canonical one.
        let number = match (id.parse::<i64>(), id.parse::<u64>()) {
            (Ok(n), _) if n.to_string() == *id => Some(Value::from(n)),
            (_, Ok(n)) if n.to_string() == *id => Some(Value::from(n)),
            _ => None,
        };
        forms.extend(number);
    }
    serde_json::json!({ "in": [{ "var": crate::context::COMPANY_ID }, forms] })
}

fn all_of(mut parts: Vec<Value>) -> Value {
    match parts.len() {
        0 => Value::Bool(true),
        1 => parts.pop().unwrap_or(Value::Bool(true)),
        _ => serde_json::json!({ "and": parts }),
    }
}

/// What must hold for a rule to match, as JSON Logic (none for a rule without clauses).
fn rule_clauses(rule: &Rule, path: &str, problems: &mut Problems) -> Vec<Value> {
    let mut parts = Vec::new();
    if !rule.companies.is_empty() {
        parts.push(company_in(&rule.companies));
    }
    if !rule.segments.is_empty() {
        let refs: Vec<Value> =
            rule.segments.iter().map(|s| serde_json::json!({ "$ref": format!("{SEGMENT_EVALUATOR}{s}") })).collect();
        parts.push(serde_json::json!({ "or": refs }));
    }
    parts.extend(conditions_expr(&rule.conditions, path, problems));
    if let Some(logic) = &rule.logic {
        parts.push(logic.clone());
    }
    parts
}

fn segment_expr(segment: &crate::model::Segment, path: &str, problems: &mut Problems) -> Value {
    let listed = company_in(&segment.companies);
    if segment.conditions.is_empty() {
        return listed;
    }
    let conditions = all_of(conditions_expr(&segment.conditions, path, problems));
    serde_json::json!({ "or": [listed, conditions] })
}

fn conditions_expr(conditions: &[crate::model::Condition], path: &str, problems: &mut Problems) -> Vec<Value> {
    conditions
        .iter()
        .enumerate()
        .filter_map(|(i, c)| condition_expr(c, &format!("{path}.conditions[{i}]"), problems))
        .collect()
}

/// One condition in JSON Logic. Every test is guarded by the attribute being present,
/// because ours never match a missing attribute while JavaScript coerces `null`.
fn condition_expr(c: &crate::model::Condition, path: &str, problems: &mut Problems) -> Option<Value> {
    use crate::model::Operator as O;
    use serde_json::json;
    let now = c.attribute == crate::condition::NOW_ATTRIBUTE;
    let attr = if now { json!({"var": "$flagd.timestamp"}) } else { json!({"var": c.attribute}) };
    let any_of = |op: &str| {
        let needles: Vec<Value> = match &c.value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        let tests: Vec<Value> = needles.into_iter().map(|n| json!({ op: [attr.clone(), n] })).collect();
        json!({ "or": tests })
    };
    let seconds = |v: &Value| match v {
        Value::String(s) => {
            chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| Value::from(d.timestamp_millis() as f64 / 1000.0))
        }
        Value::Number(_) => Some(v.clone()),
        _ => None,
    };
    let test = match c.op {
        O::In => json!({"in": [attr, c.value]}),
        O::NotIn => json!({"!": {"in": [attr, c.value]}}),
        O::Equals => json!({"===": [attr, c.value]}),
        O::NotEquals => json!({"!==": [attr, c.value]}),
        O::StartsWith => any_of("starts_with"),
        O::EndsWith => any_of("ends_with"),
        // `in` tests substrings of strings and elements of arrays, as `contains` does.
        O::Contains => json!({"in": [c.value, attr]}),
        O::Lt => json!({"<": [attr, c.value]}),
        O::Lte => json!({"<=": [attr, c.value]}),
        O::Gt => json!({">": [attr, c.value]}),
        O::Gte => json!({">=": [attr, c.value]}),
        O::SemverEq => json!({"sem_ver": [attr, "=", c.value]}),
        O::SemverLt => json!({"sem_ver": [attr, "<", c.value]}),
        O::SemverLte => json!({"sem_ver": [attr, "<=", c.value]}),
        O::SemverGt => json!({"sem_ver": [attr, ">", c.value]}),
        O::SemverGte => json!({"sem_ver": [attr, ">=", c.value]}),
        O::Before | O::After if now => {
            let op = if c.op == O::Before { "<" } else { ">" };
            json!({ op: [attr, seconds(&c.value)?] })
        }
        O::Before | O::After | O::Matches => {
            return problems
                .fail(path, "flagd cannot express this condition (regular expressions and attribute dates)");
        }
    };
    let guard =
        if now { json!({"!!": [{"var": "$flagd.timestamp"}]}) } else { json!({"!": {"missing": [c.attribute]}}) };
    Some(json!({"and": [guard, test]}))
}

fn serve_expr(serve: &Serve) -> Value {
    match serve {
        Serve::Variant(name) => Value::String(name.clone()),
        Serve::Targeting(expr) => expr.clone(),
        Serve::Rollout(r) => {
            use crate::context::{COMPANY_ID, TARGETING_KEY};
            use serde_json::json;
            let var = |name: &str| json!({"var": name});
            let given = |name: &str| json!({"!==": [var(name), null]});
            // No company, or `""`, which is none to us (`missing` would see a company in
            // `""`, and JavaScript truthiness would lose company 0).
            let no_company = json!({"in": [var(COMPANY_ID), [null, ""]]});
            let (bucket_value, bucketable) = match r.bucket_by.as_deref() {
                None | Some(COMPANY_ID) => (
                    json!({"if": [no_company.clone(), var(TARGETING_KEY), var(COMPANY_ID)]}),
                    json!({"or": [{"!": no_company}, given(TARGETING_KEY)]}),
                ),
                Some(attr) => (var(attr), given(attr)),
            };
            let mut args = vec![json!({"cat": [var("$flagd.flagKey"), bucket_value]})];
            args.extend(r.variants.iter().map(|w| json!([w.variant, (w.weight * 1000.0).round() as u64])));
            // Without a value to bucket by we answer TARGETING_KEY_MISSING; `fractional`
            // would put every such context in one bucket. `null` gives flagd's default
            // variant instead, the nearest it can say.
            json!({"if": [bucketable, {"fractional": args}, null]})
        }
    }
}

/// Replaces every `{"$ref": name}` in the flags' JSON Logic with the named `$evaluators`
/// entry (recursively) and empties `$evaluators`, so that each flag stands on its own,
/// as a store that keeps flags one by one needs.
pub fn inline_evaluators(source: &mut RulesetSource) -> Result<(), ValidationError> {
    let evaluators = std::mem::take(&mut source.evaluators);
    let mut problems = Problems::default();
    for flag in &mut source.flags {
        problems.set_key(Some(&flag.definition.key));
        let path = format!("flags.{}", flag.definition.key);
        for (i, rule) in flag.config.rules.iter_mut().enumerate() {
            let rule_path = format!("{path}.rules[{i}]");
            if let Some(logic) = &mut rule.logic {
                inline(logic, &evaluators, &mut Vec::new(), &format!("{rule_path}.logic"), &mut problems);
            }
            if let Serve::Targeting(t) = &mut rule.serve {
                inline(t, &evaluators, &mut Vec::new(), &format!("{rule_path}.serve.targeting"), &mut problems);
            }
        }
        if let Some(Serve::Targeting(t)) = &mut flag.config.fallthrough {
            inline(t, &evaluators, &mut Vec::new(), &format!("{path}.fallthrough.targeting"), &mut problems);
        }
    }
    problems.into_result(())
}

fn inline(
    value: &mut Value,
    evaluators: &Map<String, Value>,
    stack: &mut Vec<String>,
    path: &str,
    problems: &mut Problems,
) {
    let reference = match value {
        Value::Object(map) if map.len() == 1 => map.get("$ref").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    if let Some(name) = reference {
        match evaluators.get(&name) {
            _ if stack.contains(&name) => problems.push(path, format!("`$ref` cycle through `{name}`")),
            None => problems.push(path, format!("unknown evaluator `{name}` in $ref")),
            Some(body) => {
                *value = body.clone();
                stack.push(name);
                inline(value, evaluators, stack, path, problems);
                stack.pop();
            }
        }
        return;
    }
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| inline(v, evaluators, stack, path, problems)),
        Value::Object(map) => map.values_mut().for_each(|v| inline(v, evaluators, stack, path, problems)),
        _ => {}
    }
}
