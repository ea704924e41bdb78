//! The flag model as written by people and stored by the server: plain serde types.
//!
//! JSON shape (camelCase), one environment's view:
//!
//! ```json
//! {
//!   "flags": [{
//!     "key": "customer_portal",
//!     "description": "New customer portal", "owner": "team-portal", "tags": ["portal"],
//!     "variants": {"on": true, "off": false},
//!     "offVariant": "off", "onVariant": "on",
//!     "state": "ENABLED",
//!     "deny": ["13"], "allow": ["42", 7],
//!     "rules": [
//!       {"name": "pilots", "segments": ["pilot"], "serve": {"variant": "on"}},
//!       {"conditions": [{"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]}],
//!        "serve": {"rollout": {"variants": [{"variant": "on", "weight": 12.5},
//!                                            {"variant": "off", "weight": 87.5}]}}}
//!     ],
//!     "fallthrough": {"variant": "off"}
//!   }],
//!   "segments": [{"key": "pilot", "companies": ["42", "77"]}]
//! }
//! ```
//!
//! Omitted `variants` make a boolean flag with `on: true` / `off: false`. A flag starts
//! `DISABLED`. Without a `fallthrough` the off variant is served.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::context::{company_key, not_a_company_id};
use crate::error::PercentError;
use crate::ruleset::TOTAL_WEIGHT;

/// Everything one environment's ruleset is compiled from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesetSource {
    /// The flags, in the order bulk evaluation reports them.
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// The environment's segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    /// Named JSON Logic expressions that rules may use through `{"$ref": name}` (flagd's
    /// `$evaluators`).
    #[serde(default, rename = "$evaluators", skip_serializing_if = "Map::is_empty")]
    pub evaluators: Map<String, Value>,
    /// Metadata reported with every flag (a flag's own metadata wins).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl RulesetSource {
    /// Whether an evaluation may depend on the time it is made: a `$now` condition, or any
    /// JSON Logic (which can read `$flagd.timestamp`, also through computed `var` names).
    /// Callers that evaluate without a time supply one only when this says so.
    pub fn reads_clock(&self) -> bool {
        let now = |c: &Condition| c.attribute == crate::condition::NOW_ATTRIBUTE;
        let rule =
            |r: &Rule| r.conditions.iter().any(now) || r.logic.is_some() || matches!(r.serve, Serve::Targeting(_));
        let flag =
            |f: &Flag| f.config.rules.iter().any(rule) || matches!(f.config.fallthrough, Some(Serve::Targeting(_)));
        !self.evaluators.is_empty()
            || self.flags.iter().any(flag)
            || self.segments.iter().any(|s| s.conditions.iter().any(now))
    }
}

/// One environment's ruleset source as of a change sequence number: what the server hands
/// to in-process clients, which compile it with [`crate::Ruleset::compile`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSnapshot {
    /// Environment name.
    pub environment: String,
    /// The change sequence number of the last change to this environment's rulesets.
    pub seq: i64,
    /// The flags and segments.
    pub ruleset: RulesetSource,
}

/// A flag as one environment sees it: its definition plus that environment's
/// configuration, written as one flat JSON object.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    /// What the flag is, the same in every environment.
    #[serde(flatten)]
    pub definition: FlagDefinition,
    /// How it is served in this environment.
    #[serde(flatten)]
    pub config: EnvironmentConfig,
}

impl Flag {
    /// A new boolean flag: variants `on`/`off`, disabled, no rules.
    pub fn boolean(key: impl Into<String>) -> Self {
        Self { definition: FlagDefinition::boolean(key), config: EnvironmentConfig::default() }
    }

    /// The flag's key.
    pub fn key(&self) -> &str {
        &self.definition.key
    }
}

/// Reads the flat object, sending the configuration's fields to [`EnvironmentConfig`] and
/// the rest to [`FlagDefinition`], so an unknown field is still refused.
impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut definition = Map::<String, Value>::deserialize(de)?;
        let config: Map<String, Value> =
            EnvironmentConfig::FIELDS.iter().filter_map(|f| definition.remove_entry(*f)).collect();
        Ok(Self {
            definition: FlagDefinition::deserialize(Value::Object(definition)).map_err(D::Error::custom)?,
            config: EnvironmentConfig::deserialize(Value::Object(config)).map_err(D::Error::custom)?,
        })
    }
}

/// What a flag is, in every environment: key, description, variants.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagDefinition {
    /// `[a-z0-9][a-z0-9_.-]{0,127}`.
    pub key: String,
    /// What the flag is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Who to ask about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// Free-form labels for filtering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Variant name → value, all of one JSON type. Empty means boolean `on`/`off`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub variants: IndexMap<String, Value>,
    /// Served when the flag is disabled, denied, or nothing else applies. Defaults to the
    /// variant named `off` when there is one (unless `noOffVariant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_variant: Option<String>,
    /// Without `offVariant`, the flag has no off variant even if one is named `off`: what
    /// nothing serves is the caller's default. Set for flags imported from flagd without
    /// a `defaultVariant`, because flagd gives a variant's name no meaning.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_off_variant: bool,
    /// Served to allowed companies and by percentage rollouts. Defaults to `on` when there
    /// is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_variant: Option<String>,
    /// Reported with every evaluation of the flag.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl FlagDefinition {
    /// A boolean flag definition (variants `on`/`off`).
    pub fn boolean(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            description: String::new(),
            owner: String::new(),
            tags: Vec::new(),
            variants: IndexMap::new(),
            off_variant: None,
            no_off_variant: false,
            on_variant: None,
            metadata: Map::new(),
        }
    }

    /// The off variant's name: `offVariant`, else a variant named `off` (unless
    /// `noOffVariant`). Not checked against the variants: compiling does that.
    pub fn off_variant_name(&self) -> Option<&str> {
        match &self.off_variant {
            Some(name) => Some(name),
            None if self.no_off_variant => None,
            None => self.implicit_variant("off"),
        }
    }

    /// The on variant's name: `onVariant`, else a variant named `on`. Not checked against
    /// the variants: compiling does that.
    pub fn on_variant_name(&self) -> Option<&str> {
        self.on_variant.as_deref().or_else(|| self.implicit_variant("on"))
    }

    /// The percentage of contexts that `fallthrough` serves the on variant, where a
    /// percentage rollout ([`Rollout::percentage`]) of at least that much would keep every
    /// one of them on: 0 for no fallthrough or the off variant, 100 for the on variant, the
    /// on variant's weight for a rollout over only the on and off variants in which the on
    /// variant owns the lowest buckets. `None` for anything else (weights over other
    /// variants, the on variant after the off one, targeting), which no percentage
    /// continues.
    pub fn on_percentage(&self, fallthrough: Option<&Serve>) -> Option<f64> {
        let on = self.on_variant_name()?;
        let off = self.off_variant_name();
        match fallthrough {
            None => Some(0.0),
            Some(Serve::Variant(name)) if name == on => Some(100.0),
            Some(Serve::Variant(name)) => (Some(name.as_str()) == off).then_some(0.0),
            Some(Serve::Rollout(rollout)) => {
                let mut share = 0.0;
                let mut buckets_before = false;
                for weighted in &rollout.variants {
                    if weighted.variant == on {
                        // Behind buckets of the off variant, the on variant's buckets are
                        // not the ones a percentage rollout gives it.
                        if buckets_before && weighted.weight > 0.0 {
                            return None;
                        }
                        share = weighted.weight;
                    } else if Some(weighted.variant.as_str()) != off {
                        return None;
                    }
                    buckets_before |= weighted.weight > 0.0;
                }
                Some(share)
            }
            Some(Serve::Targeting(_)) => None,
        }
    }

    /// `name` if the flag has a variant so called (boolean flags have `on` and `off`).
    fn implicit_variant<'a>(&self, name: &'a str) -> Option<&'a str> {
        let boolean = self.variants.is_empty() && (name == "on" || name == "off");
        (boolean || self.variants.contains_key(name)).then_some(name)
    }

    /// The variants, spelled out: a flag without any is boolean, `on: true` and
    /// `off: false`.
    pub fn spelled_out_variants(&self) -> IndexMap<String, Value> {
        if self.variants.is_empty() {
            [("on".to_owned(), Value::Bool(true)), ("off".to_owned(), Value::Bool(false))].into_iter().collect()
        } else {
            self.variants.clone()
        }
    }
}

/// How a flag is served in one environment. The default is the safe one: disabled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// `ENABLED` or `DISABLED` (the kill switch).
    #[serde(default)]
    pub state: FlagState,
    /// Companies that always get the on variant (after `deny`).
    #[serde(default, deserialize_with = "company_ids", skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<CompanyId>))]
    pub allow: Vec<String>,
    /// Companies that always get the off variant, whatever else says.
    #[serde(default, deserialize_with = "company_ids", skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<CompanyId>))]
    pub deny: Vec<String>,
    /// Ordered rules; the first that matches decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// What contexts no rule matched get. `None` serves the off variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Serve>,
}

impl EnvironmentConfig {
    /// The JSON field names of a configuration (how [`Flag`] splits its object).
    pub const FIELDS: &'static [&'static str] = &["state", "allow", "deny", "rules", "fallthrough"];
}

/// The kill switch.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlagState {
    /// Rules apply.
    Enabled,
    /// The off variant is served with reason `DISABLED`, whatever the rules say.
    #[default]
    Disabled,
}

/// One targeting rule: every clause given must hold; a rule with no clauses matches all.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// A label for people and audit diffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The context's company is one of these.
    #[serde(default, deserialize_with = "company_ids", skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<CompanyId>))]
    pub companies: Vec<String>,
    /// The context belongs to at least one of these segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
    /// Attribute conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// A JSON Logic expression that must be truthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logic: Option<Value>,
    /// What a matching context gets.
    pub serve: Serve,
}

/// What a rule or the fallthrough serves.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Serve {
    /// One variant, by name.
    Variant(String),
    /// A weighted split, bucketed by company.
    Rollout(Rollout),
    /// flagd targeting: a JSON Logic expression whose result names the variant; a null
    /// result means the rule does not match.
    Targeting(Value),
}

/// A weighted split over variants. Weights are percentages with up to three decimals
/// and sum to 100; the first variant owns the lowest buckets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// Variants and their percentages, in bucket order.
    pub variants: Vec<WeightedVariant>,
    /// Attribute to bucket by; default `companyId`, falling back to `targetingKey`. The
    /// default is kept as no `bucketBy`, and `"bucketBy": "companyId"` reads as that: one
    /// rollout spelled both ways must compare, export and promote as the same.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "bucket_attribute")]
    pub bucket_by: Option<String>,
}

impl Rollout {
    /// `percentage` % of `on`, the rest `off`; the percentage must be a share
    /// ([`percent_milli`]). Both weights are whole thousandths, so they add up to exactly 100.
    pub fn percentage(on: &str, off: &str, percentage: f64) -> Result<Self, PercentError> {
        let on_milli = percent_milli(percentage)?;
        let weight = |milli: u64| milli as f64 / 1000.0;
        Ok(Self {
            variants: vec![
                WeightedVariant { variant: on.to_owned(), weight: weight(on_milli) },
                WeightedVariant { variant: off.to_owned(), weight: weight(TOTAL_WEIGHT - on_milli) },
            ],
            bucket_by: None,
        })
    }

    /// `attribute` as a rollout keeps it in `bucket_by`: `None` for the default,
    /// `companyId`.
    pub fn bucket_by(attribute: String) -> Option<String> {
        (attribute != crate::context::COMPANY_ID).then_some(attribute)
    }
}

/// Reads `bucketBy`, the default spelled out as none ([`Rollout::bucket_by`]).
fn bucket_attribute<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.and_then(Rollout::bucket_by))
}

/// A share in percent as whole thousandths of a percent, the unit rollouts bucket in: 0 to
/// 100 with at most three decimals, or why not.
pub fn percent_milli(percent: f64) -> Result<u64, PercentError> {
    if !(0.0..=100.0).contains(&percent) {
        return Err(PercentError::OutOfRange);
    }
    let milli = percent * 1000.0;
    // Decimal fractions are inexact in binary: a share of three decimals times 1000 (or
    // a client's 100 - 12.345) lands up to about 1e-11 off a whole number. More than that
    // is more decimals (99.9999999999 is not 100).
    if (milli - milli.round()).abs() > 1e-8 {
        return Err(PercentError::TooPrecise);
    }
    Ok(milli.round() as u64)
}

/// A variant and its share of a rollout, in percent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedVariant {
    /// Variant name.
    pub variant: String,
    /// Percent, 0 to 100, at most three decimals.
    pub weight: f64,
}

/// A test of one context attribute.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Attribute name; `$now` is the evaluation time (for `before`/`after`).
    pub attribute: String,
    /// The comparison.
    pub op: Operator,
    /// The operand: a list for `in`/`not_in` (and optionally for the string operators,
    /// meaning "any of"), a single value otherwise.
    pub value: Value,
}

/// Condition operators. A missing attribute never satisfies a condition, negated or not.
// The API schema is written by hand below, as utoipa's derive leaves out the aliases; a
// test checks that it names exactly what serde accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equal to one of a list.
    In,
    /// Equal to none of a list.
    NotIn,
    /// Equal (numbers by value, other JSON exactly).
    Equals,
    /// Not equal.
    NotEquals,
    /// String starts with (any of) the operand.
    StartsWith,
    /// String ends with (any of) the operand.
    EndsWith,
    /// String contains (any of) the operand, or array attribute contains the value.
    Contains,
    /// Number less than.
    #[serde(alias = "<")]
    Lt,
    /// Number at most.
    #[serde(alias = "<=")]
    Lte,
    /// Number greater than.
    #[serde(alias = ">")]
    Gt,
    /// Number at least.
    #[serde(alias = ">=")]
    Gte,
    /// Semantic version equal.
    SemverEq,
    /// Semantic version lower.
    SemverLt,
    /// Semantic version lower or equal.
    SemverLte,
    /// Semantic version higher.
    SemverGt,
    /// Semantic version higher or equal.
    SemverGte,
    /// Date (RFC 3339 string or Unix seconds) earlier than the operand.
    Before,
    /// Date later than the operand.
    After,
    /// String matches a regular expression.
    Matches,
}

impl Operator {
    /// Each operator's name, as stored and answered.
    #[cfg(any(test, feature = "openapi"))]
    const NAMES: &[&str] = &[
        "in",
        "not_in",
        "equals",
        "not_equals",
        "starts_with",
        "ends_with",
        "contains",
        "lt",
        "lte",
        "gt",
        "gte",
        "semver_eq",
        "semver_lt",
        "semver_lte",
        "semver_gt",
        "semver_gte",
        "before",
        "after",
        "matches",
    ];
    /// The symbols also accepted, for `lt`, `lte`, `gt` and `gte`.
    #[cfg(any(test, feature = "openapi"))]
    const ALIASES: &[&str] = &["<", "<=", ">", ">="];
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Operator {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Condition operators. A missing attribute never satisfies a condition, negated or not. \
                `<`, `<=`, `>` and `>=` are accepted for `lt`, `lte`, `gt` and `gte`, and stored (and answered) as those.",
            ))
            .enum_values(Some(Self::NAMES.iter().chain(Self::ALIASES).copied()))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Operator {}

/// A named, reusable cohort of one environment. A context belongs to it when its company
/// is listed, or when it has conditions and all of them hold.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Segment {
    /// Same pattern as flag keys.
    pub key: String,
    /// What the cohort is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Member companies.
    #[serde(default, deserialize_with = "company_ids", skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<CompanyId>))]
    pub companies: Vec<String>,
    /// Attribute conditions that make a context a member when all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A company id: written as a string or an integer, kept and shown as a string.
// Only for the API's documentation: ids are held as `String`.
#[cfg(feature = "openapi")]
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CompanyId {
    /// As a string, not empty.
    Text(String),
    /// As an integer, from -2^63 to 2^64 - 1.
    Number(i128),
}

/// Company ids may be written as strings or integers; they are kept as strings.
fn company_ids<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    let raw = Vec::<Value>::deserialize(de)?;
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    let mut ids = Vec::with_capacity(raw.len());
    for v in &raw {
        let id = company_key(v).ok_or_else(|| serde::de::Error::custom(not_a_company_id(v)))?;
        // A list of companies is a set: one listed twice (`"7"` and `7`, say) is kept once,
        // where it first appears, as adding it through the allow and deny operations does.
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The names serde's derived `Deserialize` accepts for `T`, aliases included: what it
    /// hands `deserialize_enum`.
    fn names_serde_accepts<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
        use serde::de::{Error, Visitor, value::Error as Refusal};
        struct Names(&'static [&'static str]);
        impl<'de> serde::Deserializer<'de> for &mut Names {
            type Error = Refusal;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Refusal> {
                Err(Refusal::custom("not an enum"))
            }
            fn deserialize_enum<V: Visitor<'de>>(
                self,
                _: &'static str,
                variants: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Refusal> {
                self.0 = variants;
                Err(Refusal::custom("only the names are read"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
                ignored_any
            }
        }
        let mut names = Names(&[]);
        let _ = T::deserialize(&mut names);
        names.0
    }

    #[test]
    fn the_operator_names_documented_are_exactly_those_accepted() {
        let mut accepted = names_serde_accepts::<Operator>().to_vec();
        let mut documented = [Operator::NAMES, Operator::ALIASES].concat();
        accepted.sort_unstable();
        documented.sort_unstable();
        assert_eq!(documented, accepted, "the API schema lists what serde accepts");
        for name in Operator::NAMES {
            let op: Operator = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(serde_json::to_value(op).unwrap(), json!(name), "an operator is stored by its name");
        }
        for (alias, name) in Operator::ALIASES.iter().zip(["lt", "lte", "gt", "gte"]) {
            let op: Operator = serde_json::from_value(json!(alias)).unwrap();
            assert_eq!(serde_json::to_value(op).unwrap(), json!(name), "{alias} is stored as {name}");
        }
    }

    #[test]
    fn only_time_conditions_and_json_logic_read_the_clock() {
        let source = |flag: Value, segments: Value| -> RulesetSource {
            serde_json::from_value(json!({"flags": [flag], "segments": segments})).unwrap()
        };
        let cases = [
            (
                json!({"key": "a", "allow": ["1"], "rules": [{"conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "serve": {"variant": "on"}}]}),
                json!([]),
                false,
            ),
            (
                json!({"key": "a", "rules": [{"conditions": [{"attribute": "$now", "op": "after", "value": "2026-01-01T00:00:00Z"}], "serve": {"variant": "on"}}]}),
                json!([]),
                true,
            ),
            (json!({"key": "a", "rules": [{"logic": {"==": [1, 1]}, "serve": {"variant": "on"}}]}), json!([]), true),
            (
                json!({"key": "a", "rules": [{"segments": ["s"], "serve": {"variant": "on"}}]}),
                json!([{"key": "s", "conditions": [{"attribute": "$now", "op": "before", "value": "2030-01-01T00:00:00Z"}]}]),
                true,
            ),
        ];
        for (flag, segments, expected) in cases {
            assert_eq!(source(flag.clone(), segments).reads_clock(), expected, "{flag}");
        }
    }

    #[test]
    fn percentages_are_whole_thousandths_from_0_to_100() {
        let cases = [
            (0.0, Ok(0)),
            (12.5, Ok(12_500)),
            (12.345, Ok(12_345)),
            (0.001, Ok(1)),
            (100.0, Ok(100_000)),
            (12.3456, Err(PercentError::TooPrecise)),
            (0.0001, Err(PercentError::TooPrecise)),
            (99.9999999999, Err(PercentError::TooPrecise)),
            (0.000_000_1, Err(PercentError::TooPrecise)),
            (100.0 - 12.345, Ok(87_655)),
            (0.1 + 0.2, Ok(300)),
            (-0.001, Err(PercentError::OutOfRange)),
            (100.001, Err(PercentError::OutOfRange)),
            (f64::NAN, Err(PercentError::OutOfRange)),
        ];
        for (percent, expected) in cases {
            assert_eq!(percent_milli(percent), expected, "{percent}");
        }
    }

    #[test]
    fn a_percentage_rollout_splits_100_exactly_or_is_refused() {
        let rollout = Rollout::percentage("on", "off", 12.345).unwrap();
        let weights: Vec<f64> = rollout.variants.iter().map(|v| v.weight).collect();
        assert_eq!(weights, [12.345, 87.655]);
        assert_eq!(weights.iter().sum::<f64>(), 100.0);
        assert_eq!(Rollout::percentage("on", "off", 12.3456).unwrap_err(), PercentError::TooPrecise);
        assert_eq!(Rollout::percentage("on", "off", 101.0).unwrap_err(), PercentError::OutOfRange);
    }

    #[test]
    fn bucketing_by_company_reads_as_the_default_whichever_way_it_is_spelled() {
        let rollout = |by: Value| -> Rollout {
            serde_json::from_value(json!({"variants": [{"variant": "on", "weight": 100}], "bucketBy": by})).unwrap()
        };
        assert_eq!(rollout(json!("companyId")), rollout(Value::Null));
        assert_eq!(rollout(json!("companyId")).bucket_by, None);
        assert_eq!(rollout(json!("userId")).bucket_by.as_deref(), Some("userId"));
        assert!(serde_json::to_value(rollout(json!("companyId"))).unwrap().get("bucketBy").is_none());
    }

    #[test]
    fn the_on_percentage_of_what_a_fallthrough_serves() {
        let def: FlagDefinition = serde_json::from_value(json!({"key": "f"})).unwrap();
        let serve = |serve: Value| -> Serve { serde_json::from_value(serve).unwrap() };
        let rollout = |weights: Value| serve(json!({"rollout": {"variants": weights, "bucketBy": "userId"}}));
        let cases = [
            (None, Some(0.0)),
            (Some(serve(json!({"variant": "off"}))), Some(0.0)),
            (Some(serve(json!({"variant": "on"}))), Some(100.0)),
            (Some(Serve::Rollout(Rollout::percentage("on", "off", 12.5).unwrap())), Some(12.5)),
            (Some(rollout(json!([{"variant": "on", "weight": 100}]))), Some(100.0)),
            (Some(rollout(json!([{"variant": "off", "weight": 100}, {"variant": "on", "weight": 0}]))), Some(0.0)),
            // The on variant owns the high buckets: 80 % would turn 30..70 off.
            (Some(rollout(json!([{"variant": "off", "weight": 30}, {"variant": "on", "weight": 70}]))), None),
            (Some(serve(json!({"targeting": {"if": [true, "on", "off"]}}))), None),
        ];
        for (fallthrough, expected) in cases {
            assert_eq!(def.on_percentage(fallthrough.as_ref()), expected, "{fallthrough:?}");
        }
        let colours: FlagDefinition =
            serde_json::from_value(json!({"key": "c", "variants": {"on": "green", "off": "grey", "red": "red"}}))
                .unwrap();
        let split = json!([{"variant": "on", "weight": 50}, {"variant": "red", "weight": 25}, {"variant": "off", "weight": 25}]);
        assert_eq!(colours.on_percentage(Some(&rollout(split))), None);
        assert_eq!(colours.on_percentage(Some(&serve(json!({"variant": "red"})))), None);
        let no_on: FlagDefinition = serde_json::from_value(json!({"key": "n", "variants": {"a": 1, "b": 2}})).unwrap();
        assert_eq!(no_on.on_percentage(None), None);
    }

    #[test]
    fn a_company_listed_twice_is_kept_once_where_it_first_appears() {
        let config: EnvironmentConfig =
            serde_json::from_value(json!({"allow": ["2", "1", 2, "1"], "deny": [7, "7"]})).unwrap();
        assert_eq!((config.allow, config.deny), (vec!["2".to_owned(), "1".to_owned()], vec!["7".to_owned()]));
        let segment: Segment = serde_json::from_value(json!({"key": "pilot", "companies": ["5", 5, "6"]})).unwrap();
        assert_eq!(segment.companies, ["5", "6"]);
    }

    #[test]
    fn a_company_id_that_is_no_id_says_why() {
        let range = "company ids are strings or integers from -2^63 to 2^64 - 1";
        let cases = [
            ("[18446744073709551616]", format!("{range}, got 1.8446744073709552e+19; write a longer id as a string")),
            ("[-9223372036854775809]", format!("{range}, got -9.223372036854776e+18; write a longer id as a string")),
            ("[1.5]", "company ids are strings or integers, got 1.5, not an integer".to_owned()),
            ("[\"\"]", "company ids are non-empty strings or integers, got \"\"".to_owned()),
        ];
        for (allow, expected) in cases {
            let read = serde_json::from_str::<EnvironmentConfig>(&format!("{{\"allow\": {allow}}}"));
            let message = read.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.starts_with(&expected), "{allow}: {message}");
        }
        let largest: EnvironmentConfig = serde_json::from_str(r#"{"allow": [18446744073709551615]}"#).unwrap();
        assert_eq!(largest.allow, ["18446744073709551615"]);
    }

    proptest::proptest! {
        /// Every share a person can write with three decimals is taken, as itself.
        #[test]
        fn every_thousandth_of_a_percent_is_a_share(milli in 0u64..=100_000) {
            let percent: f64 = format!("{}.{:03}", milli / 1000, milli % 1000).parse()?;
            proptest::prop_assert_eq!(percent_milli(percent), Ok(milli));
        }
    }

    /// `FIELDS` must name every field a configuration serialises, or `Flag` would
    /// misroute it.
    #[test]
    fn config_fields_are_listed() {
        let config = EnvironmentConfig {
            state: FlagState::Enabled,
            allow: vec!["1".into()],
            deny: vec!["2".into()],
            rules: vec![Rule {
                name: None,
                companies: Vec::new(),
                segments: Vec::new(),
                conditions: Vec::new(),
                logic: None,
                serve: Serve::Variant("on".into()),
            }],
            fallthrough: Some(Serve::Variant("off".into())),
        };
        let Value::Object(map) = serde_json::to_value(&config).unwrap() else { panic!("an object") };
        let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut fields = EnvironmentConfig::FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    #[test]
    fn a_flat_flag_round_trips_and_refuses_unknown_fields() {
        let text = json!({"key": "f", "variants": {"on": true, "off": false}, "state": "ENABLED",
                          "deny": ["1"], "fallthrough": {"variant": "on"}});
        let flag: Flag = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(flag.config.state, FlagState::Enabled);
        assert_eq!(serde_json::to_value(&flag).unwrap(), text);
        let err = serde_json::from_value::<Flag>(json!({"key": "f", "rulez": []})).unwrap_err();
        assert!(err.to_string().contains("rulez"), "{err}");
    }

    #[test]
    fn every_company_list_refuses_an_empty_id() {
        for list in ["allow", "deny"] {
            let ok = serde_json::from_value::<EnvironmentConfig>(json!({ list: ["42", 7] }));
            assert!(ok.is_ok(), "{list}: {ok:?}");
            let err = serde_json::from_value::<EnvironmentConfig>(json!({ list: ["42", ""] })).unwrap_err();
            assert!(err.to_string().contains("non-empty"), "{list}: {err}");
        }
        let err = serde_json::from_value::<Segment>(json!({"key": "pilot", "companies": [""]})).unwrap_err();
        assert!(err.to_string().contains("non-empty"), "{err}");
    }
}
