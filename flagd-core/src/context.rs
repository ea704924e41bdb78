//! The evaluation context: who is asking, and when.

use serde_json::{Map, Value};

use crate::error::ContextError;

/// Context key holding the company (tenant) id.
pub const COMPANY_ID: &str = "companyId";
/// Context key holding the targeting key (usually a user id).
pub const TARGETING_KEY: &str = "targetingKey";

/// What an evaluation is about: a JSON object with `targetingKey`, `companyId` and any
/// attributes, plus the current time, which the caller supplies (the core reads no clock).
///
/// The company id and targeting key are extracted once at construction so that rollouts
/// and allow lists never search the attribute map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluationContext {
    attributes: Map<String, Value>,
    company_id: Option<String>,
    targeting_key: Option<String>,
    now: Option<i64>,
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
        let company_id = match attributes.get(COMPANY_ID) {
            None | Some(Value::Null) => None,
            Some(v) => Some(company_key(v).ok_or(ContextError::CompanyId(json_type_name(v)))?),
        };
        let targeting_key = match attributes.get(TARGETING_KEY) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => return Err(ContextError::TargetingKey(json_type_name(v))),
        };
        Ok(Self { attributes, company_id, targeting_key, now: None })
    }

    /// Sets the company id.
    pub fn with_company(mut self, id: impl Into<CompanyRef>) -> Self {
        let id = id.into();
        self.attributes.insert(COMPANY_ID.to_owned(), id.json);
        self.company_id = Some(id.key);
        self
    }

    /// Sets the targeting key.
    pub fn with_targeting_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.attributes.insert(TARGETING_KEY.to_owned(), Value::String(key.clone()));
        self.targeting_key = Some(key);
        self
    }

    /// Sets an attribute. `companyId` and `targetingKey` go through their own setters'
    /// rules; an invalid value for them is ignored.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        let value = value.into();
        match name.as_str() {
            COMPANY_ID => {
                if let Some(key) = company_key(&value) {
                    self.company_id = Some(key);
                    self.attributes.insert(name, value);
                }
            }
            TARGETING_KEY => {
                if let Value::String(s) = &value {
                    self.targeting_key = Some(s.clone());
                    self.attributes.insert(name, value);
                }
            }
            _ => {
                self.attributes.insert(name, value);
            }
        }
        self
    }

    /// Sets the evaluation time, in Unix seconds (`$flagd.timestamp`, date conditions).
    pub fn at(mut self, unix_seconds: i64) -> Self {
        self.now = Some(unix_seconds);
        self
    }

    /// The company id as a string, if any.
    pub fn company_id(&self) -> Option<&str> {
        self.company_id.as_deref()
    }

    /// The targeting key, if any.
    pub fn targeting_key(&self) -> Option<&str> {
        self.targeting_key.as_deref()
    }

    /// The evaluation time in Unix seconds, if the caller supplied one.
    pub fn now(&self) -> Option<i64> {
        self.now
    }

    /// An attribute by name (including `companyId` and `targetingKey` as given).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }

    /// All attributes, as the JSON object they came from.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attributes
    }
}

/// A company id as given (string or integer) and as compared (string).
#[derive(Debug, Clone, PartialEq)]
pub struct CompanyRef {
    json: Value,
    key: String,
}

impl From<&str> for CompanyRef {
    fn from(s: &str) -> Self {
        Self { json: Value::String(s.to_owned()), key: s.to_owned() }
    }
}

impl From<String> for CompanyRef {
    fn from(s: String) -> Self {
        Self { json: Value::String(s.clone()), key: s }
    }
}

impl From<i64> for CompanyRef {
    fn from(n: i64) -> Self {
        Self { json: Value::from(n), key: n.to_string() }
    }
}

impl From<u64> for CompanyRef {
    fn from(n: u64) -> Self {
        Self { json: Value::from(n), key: n.to_string() }
    }
}

impl From<i32> for CompanyRef {
    fn from(n: i32) -> Self {
        Self::from(i64::from(n))
    }
}

/// The string form under which a company id is compared: strings as they are, integers
/// in decimal. Anything else is not a company id.
pub fn company_key(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
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
    fn rejects_bad_shapes() {
        assert!(EvaluationContext::from_json(json!([1])).is_err());
        assert!(EvaluationContext::from_json(json!({"companyId": 1.5})).is_err());
        assert!(EvaluationContext::from_json(json!({"companyId": {}})).is_err());
        assert!(EvaluationContext::from_json(json!({"targetingKey": 3})).is_err());
    }

    #[test]
    fn builders_keep_attributes_in_sync() {
        let ctx = EvaluationContext::new().with_company(7).with_targeting_key("u1").at(10);
        assert_eq!(ctx.get(COMPANY_ID), Some(&json!(7)));
        assert_eq!(ctx.get(TARGETING_KEY), Some(&json!("u1")));
        assert_eq!(ctx.now(), Some(10));
    }
}
