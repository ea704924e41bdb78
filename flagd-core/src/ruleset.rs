//! `Ruleset`: one environment's flags and segments, validated and compiled once, then
//! shared read-only by every evaluation.

use std::collections::HashSet;

use rustc_hash::{FxBuildHasher, FxHashMap};
use serde_json::{Map, Value};

use crate::condition::CompiledCondition;
use crate::error::ValidationError;
use crate::hash::Murmur3;
use crate::logic::{CompileEnv, Limits, Logic};
use crate::model::{Flag, FlagState, Rollout, Rule, RulesetSource, Segment, Serve, percent_milli};
use crate::problems::{Path, Problems};

/// Rollout weights are kept in thousandths of a percent: 100 % is this many.
pub const TOTAL_WEIGHT: u64 = 100_000;
/// Longest flag or segment key.
pub const MAX_KEY_LEN: usize = 128;

pub(crate) type CompanySet = HashSet<Box<str>, FxBuildHasher>;

/// Which conventions a source follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// This product's own: keys match `[a-z0-9][a-z0-9_.-]{0,127}`.
    #[default]
    Native,
    /// Imported from flagd: any non-empty key of at most 128 characters without control
    /// characters (flagd files use keys like `myBoolFlag`). Which variants are off / on is
    /// not the dialect's business but each flag's (see `FlagDefinition::no_off_variant`),
    /// so that an imported flag keeps flagd's meaning wherever it is compiled.
    Flagd,
}

/// Options for [`Ruleset::compile_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// JSON Logic size limits.
    pub limits: Limits,
    /// Key rule.
    pub dialect: Dialect,
}

/// One environment's compiled flags and segments. Immutable, `Send + Sync`, cheap to
/// evaluate against: build it once per change, share it behind an `Arc`.
#[derive(Debug)]
pub struct Ruleset {
    pub(crate) flags: Vec<CompiledFlag>,
    pub(crate) index: FxHashMap<Box<str>, usize>,
    pub(crate) segments: Vec<CompiledSegment>,
    pub(crate) metadata: Map<String, Value>,
}

#[derive(Debug)]
pub(crate) struct CompiledFlag {
    pub(crate) key: String,
    /// MurmurHash3 fed the key: rollouts continue from it with the bucketing value.
    pub(crate) key_hash: Murmur3,
    pub(crate) variants: Vec<(String, Value)>,
    pub(crate) off: Option<usize>,
    pub(crate) on: Option<usize>,
    pub(crate) enabled: bool,
    pub(crate) deny: CompanySet,
    pub(crate) allow: CompanySet,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) fallthrough: Option<CompiledServe>,
    /// No rules and no lists: the fallthrough is served with reason `STATIC`.
    pub(crate) is_static: bool,
    pub(crate) metadata: Map<String, Value>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) companies: CompanySet,
    pub(crate) segments: Vec<usize>,
    pub(crate) conditions: Vec<CompiledCondition>,
    pub(crate) logic: Option<Logic>,
    pub(crate) serve: CompiledServe,
}

#[derive(Debug)]
pub(crate) enum CompiledServe {
    Variant(usize),
    Rollout(CompiledRollout),
    Targeting(Logic),
}

#[derive(Debug)]
pub(crate) struct CompiledRollout {
    /// Variant index and weight in thousandths of a percent, in bucket order.
    pub(crate) weights: Vec<(usize, u64)>,
    pub(crate) bucket_by: BucketBy,
}

#[derive(Debug)]
pub(crate) enum BucketBy {
    /// `companyId`, else `targetingKey`.
    Company,
    Attribute(String),
}

#[derive(Debug)]
pub(crate) struct CompiledSegment {
    pub(crate) key: String,
    pub(crate) companies: CompanySet,
    pub(crate) conditions: Vec<CompiledCondition>,
}

impl Ruleset {
    /// Validates and compiles with the default options (strict keys).
    pub fn compile(source: &RulesetSource) -> Result<Self, ValidationError> {
        Self::compile_with(source, &CompileOptions::default())
    }

    /// Validates and compiles; on failure, every problem is reported.
    pub fn compile_with(source: &RulesetSource, options: &CompileOptions) -> Result<Self, ValidationError> {
        let mut problems = Problems::default();
        let env = CompileEnv { limits: options.limits, evaluators: Some(&source.evaluators) };
        let segments = compile_segments(&source.segments, options.dialect, &mut problems);
        let segment_index: FxHashMap<&str, usize> =
            segments.iter().enumerate().map(|(i, s)| (s.key.as_str(), i)).collect();
        let mut index = FxHashMap::default();
        let mut keys = Keys::flags();
        let mut flags = Vec::with_capacity(source.flags.len());
        let root = Path::Root("flags");
        for flag in &source.flags {
            problems.set_key(Some(&flag.definition.key));
            if !keys.admit(&flag.definition.key, options.dialect, &mut problems) {
                continue;
            }
            let path = root.field(&flag.definition.key);
            let cx = FlagCx { path, env: &env, segments: &segment_index };
            if let Some(compiled) = cx.flag(flag, &source.metadata, &mut problems) {
                index.insert(flag.definition.key.clone().into_boxed_str(), flags.len());
                flags.push(compiled);
            }
        }
        problems.into_result(Self { flags, index, segments, metadata: source.metadata.clone() })
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether there are no flags.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Flag keys, in definition order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.iter().map(|f| f.key.as_str())
    }

    /// Whether a flag with this key exists.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The position of a flag in [`Ruleset::keys`] order (what bulk evaluation follows).
    pub fn position(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The variant names of the flag at `position`, in definition order.
    pub fn variant_names(&self, position: usize) -> impl Iterator<Item = &str> {
        self.flags.get(position).into_iter().flat_map(|f| f.variants.iter().map(|(n, _)| n.as_str()))
    }

    /// The ruleset-wide metadata.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// A flag's metadata (the ruleset-wide entries under its own), as every evaluation of it
    /// reports; `None` if there is no such flag.
    pub fn flag_metadata(&self, key: &str) -> Option<&Map<String, Value>> {
        self.position(key).and_then(|i| self.flags.get(i)).map(|f| &f.metadata)
    }
}

/// Checks the keys alone: every flag and segment key follows the dialect's rule, and none
/// is given twice. [`Ruleset::compile_with`] reports the same problems (this is the code it
/// checks keys with); this is for a part of an environment that cannot be compiled on its
/// own, such as one new flag or a file merged into what is stored, whose keys must be known
/// good before anything is stored under them.
pub fn check_keys<'a>(
    flags: impl IntoIterator<Item = &'a str>,
    segments: impl IntoIterator<Item = &'a str>,
    dialect: Dialect,
) -> Result<(), ValidationError> {
    let mut problems = Problems::default();
    let mut flag_keys = Keys::flags();
    for key in flags {
        problems.set_key(Some(key));
        flag_keys.admit(key, dialect, &mut problems);
    }
    let mut segment_keys = Keys::segments();
    for key in segments {
        problems.set_key(Some(key));
        segment_keys.admit(key, dialect, &mut problems);
    }
    problems.set_key(None);
    problems.into_result(())
}

/// The keys of one list (flags or segments) seen so far.
struct Keys<'a> {
    root: &'static str,
    kind: &'static str,
    seen: HashSet<&'a str>,
}

impl<'a> Keys<'a> {
    fn flags() -> Self {
        Self { root: "flags", kind: "flag", seen: HashSet::new() }
    }

    fn segments() -> Self {
        Self { root: "segments", kind: "segment", seen: HashSet::new() }
    }

    /// Checks `key` against the dialect's rule and reports it if given before; `false`
    /// for a repeat, whose definition the caller skips.
    fn admit(&mut self, key: &'a str, dialect: Dialect, problems: &mut Problems) -> bool {
        let root = Path::Root(self.root);
        let path = root.field(key);
        check_key(key, dialect, path.field("key"), problems);
        if self.seen.insert(key) {
            return true;
        }
        problems.push(path, format!("duplicate {} key `{key}`", self.kind));
        false
    }
}

fn check_key(key: &str, dialect: Dialect, path: Path<'_>, problems: &mut Problems) {
    let ok = match dialect {
        Dialect::Native => is_strict_key(key),
        Dialect::Flagd => !key.is_empty() && key.chars().count() <= MAX_KEY_LEN && !key.chars().any(char::is_control),
    };
    if !ok {
        let rule = match dialect {
            Dialect::Native => "lowercase letters, digits, `_`, `.` and `-`, starting with a letter or digit",
            Dialect::Flagd => "a non-empty string without control characters",
        };
        problems.push(path, format!("invalid key `{key}`: use {rule}, at most {MAX_KEY_LEN} characters"));
    }
}

/// `[a-z0-9][a-z0-9_.-]{0,127}`.
pub fn is_strict_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let head_ok = bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let tail_ok = bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b));
    head_ok && tail_ok && bytes.len() <= MAX_KEY_LEN
}

fn compile_segments(segments: &[Segment], dialect: Dialect, problems: &mut Problems) -> Vec<CompiledSegment> {
    let mut out: Vec<CompiledSegment> = Vec::with_capacity(segments.len());
    let mut keys = Keys::segments();
    let root = Path::Root("segments");
    for segment in segments {
        problems.set_key(Some(&segment.key));
        if !keys.admit(&segment.key, dialect, problems) {
            continue;
        }
        let path = root.field(&segment.key);
        let conditions = compile_conditions(&segment.conditions, path, problems);
        out.push(CompiledSegment { key: segment.key.clone(), companies: company_set(&segment.companies), conditions });
    }
    problems.set_key(None);
    out
}

fn compile_conditions(
    conditions: &[crate::model::Condition],
    path: Path<'_>,
    problems: &mut Problems,
) -> Vec<CompiledCondition> {
    let list = path.field("conditions");
    conditions.iter().enumerate().filter_map(|(i, c)| CompiledCondition::compile(c, list.index(i), problems)).collect()
}

fn company_set(ids: &[String]) -> CompanySet {
    ids.iter().map(|id| id.clone().into_boxed_str()).collect()
}

/// What compiling one flag needs to know.
struct FlagCx<'a> {
    path: Path<'a>,
    env: &'a CompileEnv<'a>,
    segments: &'a FxHashMap<&'a str, usize>,
}

/// The JSON type of a variant value, which all of a flag's variants share.
fn value_kind(v: &Value) -> Option<&'static str> {
    match v {
        Value::Bool(_) => Some("boolean"),
        Value::String(_) => Some("string"),
        Value::Number(_) => Some("number"),
        Value::Object(_) => Some("object"),
        Value::Null | Value::Array(_) => None,
    }
}

impl FlagCx<'_> {
    fn flag(&self, flag: &Flag, shared_metadata: &Map<String, Value>, problems: &mut Problems) -> Option<CompiledFlag> {
        let before = problems.len();
        let variants = self.variants(flag, problems);
        let def = &flag.definition;
        let named = |explicit: &Option<String>, name: Option<&str>, field: &str, problems: &mut Problems| match explicit
        {
            Some(explicit) => self.variant_index(&variants, explicit, self.path.field(field), problems),
            None => name.and_then(|name| variants.iter().position(|(n, _)| n == name)),
        };
        let off = named(&def.off_variant, def.off_variant_name(), "offVariant", problems);
        let on = named(&def.on_variant, def.on_variant_name(), "onVariant", problems);
        if !flag.config.allow.is_empty() && on.is_none() {
            problems.push(self.path.field("allow"), "an allow list needs an on variant: set `onVariant`");
        }
        let rule_list = self.path.field("rules");
        let rules = flag
            .config
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.rule(r, &variants, rule_list.index(i), problems))
            .collect::<Vec<_>>();
        let fallthrough = match &flag.config.fallthrough {
            Some(s) => Some(self.serve(s, &variants, self.path.field("fallthrough"), problems)?),
            None => off.map(CompiledServe::Variant),
        };
        if problems.len() != before {
            return None;
        }
        let mut metadata = shared_metadata.clone();
        metadata.extend(flag.definition.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
        Some(CompiledFlag {
            key: flag.definition.key.clone(),
            key_hash: Murmur3::of(flag.definition.key.as_bytes()),
            off,
            on,
            enabled: flag.config.state == FlagState::Enabled,
            deny: company_set(&flag.config.deny),
            allow: company_set(&flag.config.allow),
            is_static: rules.is_empty() && flag.config.allow.is_empty() && flag.config.deny.is_empty(),
            rules,
            fallthrough,
            metadata,
            variants,
        })
    }

    fn variants(&self, flag: &Flag, problems: &mut Problems) -> Vec<(String, Value)> {
        if flag.definition.variants.is_empty() {
            return flag.definition.spelled_out_variants().into_iter().collect();
        }
        let mut kind = None;
        let list = self.path.field("variants");
        for (name, value) in &flag.definition.variants {
            let path = list.field(name);
            if name.is_empty() {
                problems.push(list, "variant names must not be empty");
            }
            match (value_kind(value), kind) {
                (None, _) => problems.push(path, "a variant value must be a boolean, string, number or object"),
                (Some(k), None) => kind = Some(k),
                (Some(k), Some(first)) if k != first => {
                    problems.push(path, format!("mixed variant types: this one is {k}, earlier ones are {first}"))
                }
                _ => {}
            }
        }
        flag.definition.variants.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn variant_index(
        &self,
        variants: &[(String, Value)],
        name: &str,
        path: Path<'_>,
        problems: &mut Problems,
    ) -> Option<usize> {
        let found = variants.iter().position(|(n, _)| n == name);
        if found.is_none() {
            let known: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();
            problems.push(path, format!("unknown variant `{name}` (variants: {})", known.join(", ")));
        }
        found
    }

    fn rule(
        &self,
        rule: &Rule,
        variants: &[(String, Value)],
        path: Path<'_>,
        problems: &mut Problems,
    ) -> Option<CompiledRule> {
        let segment_list = path.field("segments");
        let segments: Vec<usize> = rule
            .segments
            .iter()
            .enumerate()
            .filter_map(|(i, key)| match self.segments.get(key.as_str()) {
                Some(&idx) => Some(idx),
                None => problems.fail(segment_list.index(i), format!("unknown segment `{key}`")),
            })
            .collect();
        let conditions = compile_conditions(&rule.conditions, path, problems);
        let logic = match &rule.logic {
            Some(expr) => Some(self.logic(expr, path.field("logic"), problems)?),
            None => None,
        };
        let serve = self.serve(&rule.serve, variants, path.field("serve"), problems)?;
        if segments.len() != rule.segments.len() || conditions.len() != rule.conditions.len() {
            return None;
        }
        Some(CompiledRule { companies: company_set(&rule.companies), segments, conditions, logic, serve })
    }

    fn logic(&self, expr: &Value, path: Path<'_>, problems: &mut Problems) -> Option<Logic> {
        Logic::compile(expr, self.env).map_err(|e| problems.push(path.nested(e.path()), e.to_string())).ok()
    }

    fn serve(
        &self,
        serve: &Serve,
        variants: &[(String, Value)],
        path: Path<'_>,
        problems: &mut Problems,
    ) -> Option<CompiledServe> {
        match serve {
            Serve::Variant(name) => {
                self.variant_index(variants, name, path.field("variant"), problems).map(CompiledServe::Variant)
            }
            Serve::Rollout(r) => self.rollout(r, variants, path.field("rollout"), problems).map(CompiledServe::Rollout),
            Serve::Targeting(expr) => self.logic(expr, path.field("targeting"), problems).map(CompiledServe::Targeting),
        }
    }

    fn rollout(
        &self,
        rollout: &Rollout,
        variants: &[(String, Value)],
        path: Path<'_>,
        problems: &mut Problems,
    ) -> Option<CompiledRollout> {
        if rollout.variants.is_empty() {
            return problems.fail(path, "a rollout needs at least one variant");
        }
        let before = problems.len();
        let mut weights = Vec::with_capacity(rollout.variants.len());
        let list = path.field("variants");
        for (i, wv) in rollout.variants.iter().enumerate() {
            let item = list.index(i);
            let idx = self.variant_index(variants, &wv.variant, item.field("variant"), problems);
            if rollout.variants[..i].iter().any(|earlier| earlier.variant == wv.variant) {
                problems.push(item.field("variant"), format!("variant `{}` listed twice", wv.variant));
            }
            let milli = percent_to_milli(wv.weight, item.field("weight"), problems);
            if let (Some(idx), Some(milli)) = (idx, milli) {
                weights.push((idx, milli));
            }
        }
        let sum: u64 = weights.iter().map(|(_, w)| w).sum();
        if weights.len() == rollout.variants.len() && sum != TOTAL_WEIGHT {
            problems.push(path, format!("weights sum to {}%, they must sum to 100%", sum as f64 / 1000.0));
        }
        if rollout.bucket_by.as_deref() == Some("") {
            problems.push(path.field("bucketBy"), crate::condition::EMPTY_ATTRIBUTE);
        }
        if problems.len() != before {
            return None;
        }
        let bucket_by = match rollout.bucket_by.as_deref() {
            None | Some(crate::context::COMPANY_ID) => BucketBy::Company,
            Some(attr) => BucketBy::Attribute(attr.to_owned()),
        };
        Some(CompiledRollout { weights, bucket_by })
    }
}

/// A weight as thousandths of a percent, or a problem at `path`.
fn percent_to_milli(weight: f64, path: Path<'_>, problems: &mut Problems) -> Option<u64> {
    match percent_milli(weight) {
        Ok(milli) => Some(milli),
        Err(e) => problems.fail(path, format!("weight {weight} {e}")),
    }
}
