//! The flagd flag-definition format: reading it into this crate's model, and writing an
//! environment back out so that flagd-compatible tools evaluate it as we do.
//!
//! A flagd flag becomes a [`Flag`] whose off variant and fallthrough are flagd's
//! `defaultVariant` and whose targeting (if any, and not `{}`) becomes a single rule
//! serving [`Serve::Targeting`]. Reasons then come out as flagd's: `STATIC` without
//! targeting, `TARGETING_MATCH` when targeting names a variant, `DEFAULT` when it yields
//! null. One deliberate difference: a `DISABLED` flag serves its `defaultVariant` (flagd
//! serves the caller's default and no variant), because OFREP clients treat a missing
//! value as an error.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::model::{Flag, FlagState, Rule, RulesetSource, Serve};
use crate::problems::Problems;
use crate::ruleset::{CompileOptions, Dialect, Ruleset};

/// A flagd document as written: `flags` kept as an ordered list so duplicate keys are seen.
#[derive(Debug, Deserialize)]
struct Document {
    flags: Option<Entries>,
    #[serde(rename = "$evaluators", default)]
    evaluators: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(rename = "$schema", default)]
    _schema: Option<Value>,
}

/// A JSON object read as its entries in order, duplicates included.
#[derive(Debug, Default)]
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of flags")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        de.deserialize_map(EntriesVisitor)
    }
}

/// Reads a flagd document into a [`RulesetSource`] (flagd dialect), reporting every
/// problem in it with its path.
pub fn import(text: &str) -> Result<RulesetSource, Error> {
    let doc: Document = serde_json::from_str(text)?;
    let mut problems = Problems::default();
    let evaluators = object_field(doc.evaluators, "$evaluators", &mut problems);
    let metadata = object_field(doc.metadata, "metadata", &mut problems);
    let entries = doc.flags.unwrap_or_else(|| {
        problems.push("flags", "a flagd document needs a `flags` object");
        Entries::default()
    });
    let mut flags = Vec::with_capacity(entries.0.len());
    let mut seen = std::collections::HashSet::new();
    for (key, value) in entries.0 {
        problems.set_key(Some(&key));
        if !seen.insert(key.clone()) {
            problems.push(format!("flags.{key}"), format!("duplicate flag key `{key}`"));
            continue;
        }
        if let Some(flag) = import_flag(key, value, &mut problems) {
            flags.push(flag);
        }
    }
    problems.into_result(RulesetSource { flags, segments: Vec::new(), evaluators, metadata }).map_err(Error::from)
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
        other => return problems.fail(format!("{path}.state"), format!("state must be ENABLED or DISABLED, got {other:?}")),
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
    flag.variants = variants;
    flag.state = state;
    flag.metadata = metadata;
    flag.rules = rules;
    flag.fallthrough = default_variant.clone().map(Serve::Variant);
    flag.off_variant = default_variant;
    Some(flag)
}

/// Where an imported flag's targeting sits in the model, and where it sits in the flagd
/// file: problems are reported with the path the author wrote.
const MODEL_TARGETING: &str = ".rules[0].serve.targeting";

impl Ruleset {
    /// Imports and compiles a flagd document (flagd dialect).
    pub fn from_flagd_str(text: &str) -> Result<Self, Error> {
        let source = import(text)?;
        let options = CompileOptions { dialect: Dialect::Flagd, ..CompileOptions::default() };
        Self::compile_with(&source, &options).map_err(|mut e| {
            for p in &mut e.problems {
                p.path = p.path.replacen(MODEL_TARGETING, ".targeting", 1);
                p.path = p.path.replacen(".fallthrough.variant", ".defaultVariant", 1);
                p.path = p.path.replacen(".offVariant", ".defaultVariant", 1);
            }
            Error::from(e)
        })
    }
}
