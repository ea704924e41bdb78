//! The evaluation context: who is asking, and when.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use smol_str::SmolStr;

use crate::error::ContextError;

/// Context key holding the company (tenant) id.
pub const COMPANY_ID: &str = "companyId";
/// Context key holding the targeting key (usually a user id).
pub const TARGETING_KEY: &str = "targetingKey";

/// What an evaluation is about: a JSON object with `targetingKey`, `companyId` and any
/// attributes, plus the current time, which the caller supplies (the core reads no clock).
///
/// The company id and targeting key are kept apart from the other attributes, already
/// validated, so that rollouts and allow lists never search the attribute map, and so that
/// reading them from a request costs no allocation (an integer company id's decimal form
/// is kept inline).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluationContext {
    /// Every attribute but `companyId` and `targetingKey`. Names are `SmolStr`s, inline up
    /// to 23 bytes, so that reading a request's context allocates no `String` per name. (A
    /// sorted `Vec` measured no cheaper, and inserting into one is linear: a 1 MiB body of
    /// tiny attributes in reverse order would have cost seconds.)
    attributes: BTreeMap<SmolStr, Value>,
    company: Option<Company>,
    /// Always a `Value::String`.
    targeting_key: Option<Value>,
    now: Option<i64>,
}

/// A company id as given, with its compared form when that differs (integers).
#[derive(Debug, Clone, PartialEq)]
struct Company {
    json: Value,
    /// The decimal form of an integer id (inline: at most 20 bytes); `None` for a string
    /// id, compared as it is.
    digits: Option<SmolStr>,
}

impl Company {
    /// A string or an integer; anything else is not a company id.
    fn new(json: Value) -> Option<Self> {
        let digits = match &json {
            Value::String(_) => None,
            other => Some(decimal(other)?),
        };
        Some(Self { json, digits })
    }

    /// The id lists and rollouts go by. An empty string is no company: it is how callers
    /// write a missing id, and as a company it would put every such user in one bucket.
    fn key(&self) -> Option<&str> {
        self.digits.as_deref().or_else(|| self.json.as_str().filter(|s| !s.is_empty()))
    }
}

fn decimal(value: &Value) -> Option<SmolStr> {
    let mut buffer = itoa::Buffer::new();
    let digits = match (value.as_u64(), value.as_i64()) {
        (Some(n), _) => buffer.format(n),
        (None, Some(n)) => buffer.format(n),
        (None, None) => return None,
    };
    Some(SmolStr::new(digits))
}

impl EvaluationContext {
    /// An empty context (no company, no targeting key, no time).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a context from a JSON value, which must be an object. `companyId` may be a
    /// string or an integer (it is compared as a string); `targetingKey` must be a string.
    pub fn from_json(value: Value) -> Result<Self, ContextError> {
        match value {
            Value::Object(map) => Self::from_map(map),
            Value::Null => Ok(Self::new()),
            other => Err(ContextError::NotAnObject(json_type_name(&other))),
        }
    }

    /// Builds a context from a JSON object; see [`EvaluationContext::from_json`].
    pub fn from_map(attributes: Map<String, Value>) -> Result<Self, ContextError> {
        let mut ctx = Self::new();
        for (name, value) in attributes {
            ctx.set(Cow::Owned(name), value)?;
        }
        Ok(ctx)
    }

    /// Sets one attribute, as read from a JSON object member: `companyId` must be a string
    /// or an integer and `targetingKey` a string (either may be null: absent). The name is
    /// copied only for other attributes, so readers that borrow names from the request
    /// (see flagd-server's OFREP parsing) allocate nothing for those two. A refused value
    /// leaves the context unchanged.
    pub fn set(&mut self, name: Cow<'_, str>, value: Value) -> Result<(), ContextError> {
        match &*name {
            COMPANY_ID if value.is_null() => self.company = None,
            COMPANY_ID => {
                let kind = json_type_name(&value);
                self.company = Some(Company::new(value).ok_or(ContextError::CompanyId(kind))?);
            }
            TARGETING_KEY => match value {
                Value::Null => self.targeting_key = None,
                Value::String(_) => self.targeting_key = Some(value),
                other => return Err(ContextError::TargetingKey(json_type_name(&other))),
            },
            _ => {
                self.attributes.insert(SmolStr::new(&*name), value);
            }
        }
        Ok(())
    }

    /// Sets the company id.
    pub fn with_company(mut self, id: impl Into<CompanyRef>) -> Self {
        // Every `CompanyRef` holds a string or an integer.
        self.company = Company::new(id.into().json);
        self
    }

    /// Sets the targeting key.
    pub fn with_targeting_key(mut self, key: impl Into<String>) -> Self {
        self.targeting_key = Some(Value::String(key.into()));
        self
    }

    /// Sets an attribute. `companyId` and `targetingKey` go through their own setters'
    /// rules; an invalid value for them is ignored.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        // A refused value leaves the context as it was, which is what "ignored" means here.
        let _ = self.set(Cow::Owned(name.into()), value.into());
        self
    }

    /// Sets the evaluation time, in Unix seconds (`$flagd.timestamp`, date conditions).
    pub fn at(mut self, unix_seconds: i64) -> Self {
        self.now = Some(unix_seconds);
        self
    }

    /// The company id as a string, if any (`""` is none; [`Self::get`] still shows it as
    /// given, for conditions and JSON Logic).
    pub fn company_id(&self) -> Option<&str> {
        self.company.as_ref().and_then(Company::key)
    }

    /// The targeting key, if any.
    pub fn targeting_key(&self) -> Option<&str> {
        self.targeting_key.as_ref().and_then(Value::as_str)
    }

    /// The evaluation time in Unix seconds, if the caller supplied one.
    pub fn now(&self) -> Option<i64> {
        self.now
    }

    /// An attribute by name (including `companyId` and `targetingKey` as given).
    pub fn get(&self, name: &str) -> Option<&Value> {
        match name {
            COMPANY_ID => self.company.as_ref().map(|c| &c.json),
            TARGETING_KEY => self.targeting_key.as_ref(),
            _ => self.attributes.get(name),
        }
    }

    /// Every attribute (including `companyId` and `targetingKey`), by name.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &Value)> {
        let company = self.company.as_ref().map(|c| (COMPANY_ID, &c.json));
        let targeting = self.targeting_key.as_ref().map(|v| (TARGETING_KEY, v));
        company.into_iter().chain(targeting).chain(self.attributes.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

/// The attributes as one JSON object (the time is not an attribute and is left out).
impl Serialize for EvaluationContext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.attributes())
    }
}

/// A company id as given: a string or an integer (compared as its decimal string).
#[derive(Debug, Clone, PartialEq)]
pub struct CompanyRef {
    json: Value,
}

impl From<&str> for CompanyRef {
    fn from(s: &str) -> Self {
        Self { json: Value::String(s.to_owned()) }
    }
}

impl From<String> for CompanyRef {
    fn from(s: String) -> Self {
        Self { json: Value::String(s) }
    }
}

impl From<i64> for CompanyRef {
    fn from(n: i64) -> Self {
        Self { json: Value::from(n) }
    }
}

impl From<u64> for CompanyRef {
    fn from(n: u64) -> Self {
        Self { json: Value::from(n) }
    }
}

impl From<i32> for CompanyRef {
    fn from(n: i32) -> Self {
        Self::from(i64::from(n))
    }
}

/// The string form under which a company id is compared in lists: strings as they are,
/// integers in decimal. Anything else is not a company id, nor is the empty string, which a
/// list would only hold by mistake (a caller's missing id written as `""`).
pub fn company_key(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => decimal(other).map(String::from),
    }
}

/// Why `value`, which [`company_key`] refused, is no company id, for a person to act on. A
/// JSON number past 64 bits is read as the nearest float, which is shown rather than the
/// digits written, so the message says what to do instead.
pub fn not_a_company_id(value: &Value) -> String {
    match value.as_f64() {
        Some(n) if n.fract() != 0.0 => format!("company ids are strings or integers, got {value}, not an integer"),
        Some(_) => format!(
            "company ids are strings or integers from -2^63 to 2^64 - 1, got {value}; write a longer id as a string"
        ),
        None => format!("company ids are non-empty strings or integers, got {value}"),
    }
}

/// The JSON type of a value, for error messages.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integer_and_string_company_ids_compare_alike() {
        let a = EvaluationContext::from_json(json!({"companyId": 42})).unwrap();
        let b = EvaluationContext::from_json(json!({"companyId": "42"})).unwrap();
        assert_eq!(a.company_id(), Some("42"));
        assert_eq!(a.company_id(), b.company_id());
    }

    #[test]
    fn integer_company_ids_compare_as_their_decimal_form() {
        for (given, expected) in [
            (json!(0), "0"),
            (json!(-7), "-7"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(i64::MIN), "-9223372036854775808"),
        ] {
            let ctx = EvaluationContext::from_json(json!({ "companyId": given })).unwrap();
            assert_eq!(ctx.company_id(), Some(expected));
            assert_eq!(company_key(&given).as_deref(), Some(expected), "as allow lists store it");
            assert_eq!(ctx.get(COMPANY_ID), Some(&given));
        }
    }

    #[test]
    fn a_refused_attribute_leaves_the_context_as_it_was() {
        let ctx = EvaluationContext::new().with_company("acme").with_targeting_key("u1");
        let same = ctx.clone().with_attribute(COMPANY_ID, json!(1.5)).with_attribute(TARGETING_KEY, json!(3));
        assert_eq!(same, ctx);
        let mut ctx = ctx;
        assert!(ctx.set(Cow::Borrowed(COMPANY_ID), json!({})).is_err());
        assert_eq!(ctx.company_id(), Some("acme"));
    }

    #[test]
    fn attributes_serialise_as_the_object_they_came_from() {
        let given = json!({"companyId": 42, "targetingKey": "u1", "plan": "pro"});
        let ctx = EvaluationContext::from_json(given.clone()).unwrap().at(5);
        assert_eq!(serde_json::to_value(&ctx).unwrap(), given);
        assert_eq!(ctx.attributes().count(), 3);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(EvaluationContext::from_json(json!([1])).is_err());
        assert!(EvaluationContext::from_json(json!({"companyId": 1.5})).is_err());
        assert!(EvaluationContext::from_json(json!({"companyId": {}})).is_err());
        assert!(EvaluationContext::from_json(json!({"targetingKey": 3})).is_err());
    }

    proptest::proptest! {
        /// Attributes set in any order, names repeated, read back as a map that keeps the
        /// last value of each name would: by name, in name order.
        #[test]
        fn attributes_read_back_as_the_last_value_set_under_each_name(
            sets in proptest::collection::vec(("[a-e]{1,2}|[a-z]{20,30}", 0i64..4), 0..12)
        ) {
            let mut ctx = EvaluationContext::new();
            let mut expected = std::collections::BTreeMap::new();
            for (name, value) in &sets {
                ctx.set(Cow::Borrowed(name), json!(value)).unwrap();
                expected.insert(name.clone(), json!(value));
            }
            for (name, value) in &expected {
                proptest::prop_assert_eq!(ctx.get(name), Some(value));
            }
            proptest::prop_assert_eq!(ctx.get("absent"), None);
            let read: Vec<(String, Value)> = ctx.attributes().map(|(n, v)| (n.to_owned(), v.clone())).collect();
            proptest::prop_assert_eq!(read, expected.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn builders_keep_attributes_in_sync() {
        let ctx = EvaluationContext::new().with_company(7).with_targeting_key("u1").at(10);
        assert_eq!(ctx.get(COMPANY_ID), Some(&json!(7)));
        assert_eq!(ctx.get(TARGETING_KEY), Some(&json!("u1")));
        assert_eq!(ctx.now(), Some(10));
    }
}
