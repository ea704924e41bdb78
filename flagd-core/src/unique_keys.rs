//! Finding a JSON object that names a key twice. serde reads such an object as if it held
//! only the last value for the key, so `{"variants": {"on": true, "on": false}}` would be
//! stored as one variant without a word, and which of the two its writer meant cannot be
//! known: the server refuses such a body and `flagctl` such a file.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use crate::error::RepeatedKey;

/// The first object in `json` that names a key twice, if any. In text that is not JSON,
/// only a repeat before its first syntax error is found; reading the text for what it
/// should be reports that error. Recursion is bounded by serde_json's own nesting limit.
pub fn find_repeated_key(json: &[u8]) -> Option<RepeatedKey> {
    let mut walk = Walk::default();
    let mut de = serde_json::Deserializer::from_slice(json);
    let stopped = At(&mut walk).deserialize(&mut de).err()?;
    walk.found.map(|(key, object)| RepeatedKey { key, object, line: stopped.line(), column: stopped.column() })
}

/// Where the walk is, and the repeated key (with the path of its object) once found.
#[derive(Default)]
struct Walk {
    path: Vec<Segment>,
    found: Option<(String, String)>,
}

/// One step of a path into a JSON document.
enum Segment {
    Key(String),
    Index(usize),
}

impl Walk {
    /// The path as JSON text reaches it, `flags.x.variants` or `rules[2]`; empty at the
    /// top.
    fn describe(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(key) if out.is_empty() => out.push_str(key),
                Segment::Key(key) => {
                    out.push('.');
                    out.push_str(key);
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(itoa::Buffer::new().format(*i));
                    out.push(']');
                }
            }
        }
        out
    }
}

/// Reads one value of the document, at the walk's path.
struct At<'a>(&'a mut Walk);

impl At<'_> {
    /// Reads, with `read`, the value at `segment` below this one.
    fn nested<T, E>(&mut self, segment: Segment, read: impl FnOnce(At<'_>) -> Result<T, E>) -> Result<T, E> {
        self.0.path.push(segment);
        let read = read(At(&mut *self.0));
        self.0.path.pop();
        read
    }
}

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for At<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        for index in 0.. {
            if self.nested(Segment::Index(index), |step| seq.next_element_seed(step))?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                self.0.found = Some((key, self.0.describe()));
                return Err(A::Error::custom("a key named twice"));
            }
            self.nested(Segment::Key(key), |step| map.next_value_seed(step))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn repeated(json: &str) -> Option<String> {
        find_repeated_key(json.as_bytes()).map(|r| r.to_string())
    }

    #[test]
    fn a_key_named_twice_is_found_with_where_it_is() {
        let cases = [
            (r#"{"key": "a", "key": "b"}"#, "`key` is named twice in the top-level object (line 1, column 18)"),
            (r#"{"variants": {"on": 1, "off": 0, "on": 2}}"#, "`on` is named twice in `variants` (line 1, column 37)"),
            (
                "{\"rules\": [{},\n {\"serve\": {\"variant\": \"a\", \"variant\": \"b\"}}]}",
                "`variant` is named twice in `rules[1].serve` (line 2, column 37)",
            ),
            (r#"[[{"x": 1}], [{"x": 1, "x": 1}]]"#, "`x` is named twice in `[1][0]` (line 1, column 26)"),
            (r#"{"a\u0062": 1, "ab": 2}"#, "`ab` is named twice in the top-level object (line 1, column 19)"),
        ];
        for (json, expected) in cases {
            assert_eq!(repeated(json).as_deref(), Some(expected), "{json}");
        }
    }

    #[test]
    fn the_same_key_in_different_objects_is_no_repeat_and_text_is_read_to_its_first_error() {
        for json in [r#"{"a": {"k": 1}, "b": [{"k": 1}, {"k": 2}], "c": {"k": [1, 2]}, "k": 3}"#, "{\"a\": ", "", "nul"]
        {
            assert_eq!(repeated(json), None, "{json}");
        }
        // Before a syntax error a repeat is still a repeat; after one, nothing is read.
        assert_eq!(
            repeated(r#"{"a": 1, "a": 2,"#).as_deref(),
            Some("`a` is named twice in the top-level object (line 1, column 12)")
        );
        assert_eq!(repeated(r#"{"a": 1,, "a": 2}"#), None);
    }

    /// JSON as written, where an object may name a key twice (a `Value` cannot hold that).
    #[derive(Debug, Clone)]
    enum Tree {
        Number(u8),
        Array(Vec<Tree>),
        Object(Vec<(String, Tree)>),
    }

    impl Tree {
        fn render(&self) -> String {
            match self {
                Tree::Number(n) => n.to_string(),
                Tree::Array(items) => format!("[{}]", items.iter().map(Tree::render).collect::<Vec<_>>().join(",")),
                Tree::Object(entries) => {
                    let entries: Vec<_> = entries.iter().map(|(k, v)| format!("{k:?}:{}", v.render())).collect();
                    format!("{{{}}}", entries.join(","))
                }
            }
        }

        fn repeats_a_key(&self) -> bool {
            match self {
                Tree::Number(_) => false,
                Tree::Array(items) => items.iter().any(Tree::repeats_a_key),
                Tree::Object(entries) => {
                    let keys: HashSet<_> = entries.iter().map(|(k, _)| k).collect();
                    keys.len() < entries.len() || entries.iter().any(|(_, v)| v.repeats_a_key())
                }
            }
        }
    }

    /// Documents up to five levels deep, keys from a small set so that repeats are common.
    fn tree() -> impl Strategy<Value = Tree> {
        any::<u8>().prop_map(Tree::Number).prop_recursive(5, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Tree::Array),
                prop::collection::vec(("[ab\\\\]{1,2}", inner), 0..4).prop_map(Tree::Object),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_repeat_is_found_exactly_when_an_object_names_a_key_twice(tree in tree()) {
            let json = tree.render();
            prop_assert_eq!(find_repeated_key(json.as_bytes()).is_some(), tree.repeats_a_key(), "{}", json);
        }

        #[test]
        fn no_text_makes_the_search_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = find_repeated_key(&bytes);
        }
    }
}
