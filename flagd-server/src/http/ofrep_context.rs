//! The evaluation context of an OFREP request body, `{"context": {...}}`. Nearly every
//! body is a flat object of strings, integers and booleans: [`flat`] reads those in one
//! pass over the bytes, without serde's machinery (which was most of the cost of reading
//! a context). Every other body, and every invalid one, goes through serde_json
//! ([`parsed`]), which names the error; a property test holds the two paths to the same
//! context wherever the flat one answers.

use std::borrow::Cow;
use std::marker::PhantomData;

use flagd_core::context::{COMPANY_ID, TARGETING_KEY};
use flagd_core::{ContextError, ErrorCode, EvaluationContext};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::json::check_depth;

/// Reads `{"context": {...}}` (an absent body or context is an empty context) and stamps
/// it with the current time.
pub(super) fn context(bytes: &[u8]) -> Result<EvaluationContext, (ErrorCode, String)> {
    let context = match flat(bytes) {
        Some(context) => context,
        None => parsed(bytes)?,
    };
    Ok(context.at(now_seconds()))
}

/// Any body, through serde_json: the general path, and the one that names every error.
fn parsed(bytes: &[u8]) -> Result<EvaluationContext, (ErrorCode, String)> {
    check_depth(bytes).map_err(|e| (ErrorCode::InvalidContext, e.to_string()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(EvaluationContext::new());
    }
    // The body's shape is recorded rather than refused while parsing, so every serde
    // error is a syntax error and a malformed body is PARSE_ERROR whatever its shape.
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let body = Shape::<RequestBody>(PhantomData)
        .deserialize(&mut deserializer)
        .and_then(|body| deserializer.end().map(|()| body))
        .map_err(|e| (ErrorCode::ParseError, format!("the request body is not JSON: {e}")))?;
    let context = match body {
        RequestBody::NotAnObject => {
            return Err((ErrorCode::InvalidContext, "the request body must be an object with a `context`".into()));
        }
        RequestBody::Object(ContextMember::Absent) => Ok(EvaluationContext::new()),
        RequestBody::Object(ContextMember::Object(context)) => context,
        RequestBody::Object(ContextMember::Other(kind)) => Err(ContextError::NotAnObject(kind)),
    };
    // Read, a name given twice keeps its last value: which one the caller meant cannot be
    // known (`{"companyId": 42, "companyId": 13}` would be evaluated for 13).
    if let Some(repeated) = flagd_core::find_repeated_key(bytes) {
        return Err((ErrorCode::InvalidContext, format!("the request body is ambiguous: {repeated}")));
    }
    context.map_err(|e| (ErrorCode::InvalidContext, e.to_string()))
}

/// The context of a body that is exactly `{"context":{…}}` with every attribute a string
/// without escapes, an integer of at most 18 digits, a boolean or null (whitespace
/// anywhere JSON allows it), read in one pass over the bytes. `None` for any other body,
/// valid or not, for one whose attribute the context refuses, and for one that names an
/// attribute twice or sets `companyId` or `targetingKey` to null: [`parsed`] reads those
/// (and parses a body a second time, to find a repeated name), and gives the same context
/// for every body read here.
fn flat(bytes: &[u8]) -> Option<EvaluationContext> {
    let mut cursor = Cursor { text: std::str::from_utf8(bytes).ok()?, at: 0 };
    // Providers send the opening without spaces: one comparison instead of four tokens.
    if bytes.starts_with(COMPACT_OPENING) {
        cursor.at = COMPACT_OPENING.len();
    } else {
        cursor.expect(b'{')?;
        (cursor.string()? == "context").then_some(())?;
        cursor.expect(b':')?;
        cursor.expect(b'{')?;
    }
    let mut context = EvaluationContext::new();
    let mut names = 0;
    while !cursor.eat(b'}') {
        if names > 0 {
            cursor.expect(b',')?;
        }
        names += 1;
        let name = cursor.name()?;
        cursor.expect(b':')?;
        context.set(Cow::Borrowed(name), cursor.scalar()?).ok()?;
    }
    cursor.expect(b'}')?;
    cursor.skip_space();
    // A context that holds fewer attributes than were named named one twice (or set the
    // company or targeting key to null, which unsets it): [`parsed`] tells which.
    (cursor.at == cursor.text.len() && context.attributes().count() == names).then_some(context)
}

/// How nearly every body begins.
const COMPACT_OPENING: &[u8] = br#"{"context":{"#;

/// The names nearly every context holds, quoted as they appear in a body.
const KNOWN_NAMES: [(&[u8], &str); 2] = [(br#""companyId""#, COMPANY_ID), (br#""targetingKey""#, TARGETING_KEY)];

/// The bytes a string without escapes ends at (`"`) or that [`Cursor::string`] leaves
/// to serde_json (a backslash, control characters), as a table: one load per byte.
static STRING_STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        stops[byte] = true;
        byte += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

/// A position in a body known to be UTF-8. Every token [`flat`] stops at is ASCII, so
/// every position it slices the text at is a character boundary.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Skips whitespace, then takes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// A string without escapes or control characters, borrowed. Never inlined: inlined
    /// into [`flat`]'s loop, the scan kept a dozen counters per byte (callgrind).
    #[inline(never)]
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let rest = self.text.as_bytes().get(start..)?;
        let len = rest.iter().position(|&b| STRING_STOPS[usize::from(b)])?;
        (rest.get(len) == Some(&b'"')).then_some(())?;
        self.at += len + 1;
        self.text.get(start..start + len)
    }

    /// A member name: [`Cursor::string`], but the context's own two names are taken whole
    /// (nearly every body holds both, and they need no scan).
    fn name(&mut self) -> Option<&'a str> {
        self.skip_space();
        let rest = self.text.as_bytes().get(self.at..)?;
        if let Some((quoted, name)) = KNOWN_NAMES.iter().find(|(quoted, _)| rest.starts_with(quoted)) {
            self.at += quoted.len();
            return Some(name);
        }
        self.string()
    }

    fn scalar(&mut self) -> Option<Value> {
        self.skip_space();
        match self.peek()? {
            b'"' => self.string().map(|s| Value::String(s.to_owned())),
            b't' => self.word(b"true", Value::Bool(true)),
            b'f' => self.word(b"false", Value::Bool(false)),
            b'n' => self.word(b"null", Value::Null),
            _ => self.integer(),
        }
    }

    fn word(&mut self, word: &[u8], value: Value) -> Option<Value> {
        self.text.as_bytes().get(self.at..)?.starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    /// An integer as serde_json reads it. Left to serde_json: `-0` (a float there), a
    /// leading zero (an error), and 19 digits or more (they may not fit an `i64`). A
    /// fraction or exponent stops the integer here, and then the body (nothing may follow
    /// a value but `,` or `}`).
    fn integer(&mut self) -> Option<Value> {
        let negative = self.peek() == Some(b'-');
        let digits = self.text.as_bytes().get(self.at + usize::from(negative)..)?;
        let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=18).contains(&len) || (digits.first() == Some(&b'0') && (len > 1 || negative)) {
            return None;
        }
        let magnitude = digits.iter().take(len).fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        self.at += usize::from(negative) + len;
        Some(Value::from(if negative { -magnitude } else { magnitude }))
    }
}

/// An OFREP request body, read in one pass straight into the context's attributes
/// (no intermediate `Value` for the body, no key copied but the context's own).
enum RequestBody {
    Object(ContextMember),
    NotAnObject,
}

/// The body's `context` member: absent or null, an object (read into a context, or the
/// first attribute the context refused), or a value of another JSON type.
enum ContextMember {
    Absent,
    Object(Result<EvaluationContext, ContextError>),
    Other(&'static str),
}

/// How a [`Shape`] visitor turns what it finds into its result: an object is read, any
/// other JSON value is only named (null apart: an absent context).
trait FromShape: Sized {
    fn object<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
    fn other(kind: &'static str) -> Self;
    fn null() -> Self;
}

impl FromShape for RequestBody {
    fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut context = ContextMember::Absent;
        while let Some(member) = map.next_key::<Member>()? {
            match member {
                Member::Context => context = map.next_value_seed(Shape(PhantomData))?,
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Self::Object(context))
    }

    fn other(_: &'static str) -> Self {
        Self::NotAnObject
    }

    fn null() -> Self {
        Self::NotAnObject
    }
}

impl FromShape for ContextMember {
    fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut context = Ok(EvaluationContext::new());
        while let Some(Name(name)) = map.next_key()? {
            let value = map.next_value::<Value>()?;
            // After a refused attribute the rest is still read: a syntax error further on
            // makes the body PARSE_ERROR, whatever its context holds.
            if let Ok(ctx) = &mut context
                && let Err(refused) = ctx.set(name, value)
            {
                context = Err(refused);
            }
        }
        Ok(Self::Object(context))
    }

    fn other(kind: &'static str) -> Self {
        Self::Other(kind)
    }

    fn null() -> Self {
        Self::Absent
    }
}

/// Reads any JSON value into a `T`.
struct Shape<T>(PhantomData<T>);

impl<'de, T: FromShape> DeserializeSeed<'de> for Shape<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: FromShape> Visitor<'de> for Shape<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::null())
    }

    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::other("boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::other("number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<T, E> {
        Ok(T::other("number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::other("number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<T, E> {
        Ok(T::other("string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(T::other("array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::object(map)
    }
}

/// A member name of the body: `context` or anything else, read without allocating.
enum Member {
    Context,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(MemberName)
    }
}

struct MemberName;

/// An attribute name, borrowed from the body unless it holds escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Name<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an attribute name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Borrowed(name)))
    }

    fn visit_str<E>(self, name: &str) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Owned(name.to_owned())))
    }

    fn visit_string<E>(self, name: String) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Owned(name)))
    }
}

impl Visitor<'_> for MemberName {
    type Value = Member;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Member, E> {
        Ok(if name == "context" { Member::Context } else { Member::Other })
    }
}

/// The evaluation time in Unix seconds. Rules compare whole seconds, so the kernel's
/// coarse clock (the time at the last tick, a few milliseconds old at most) is precise
/// enough, and reading it costs no timer read (a request made three, at about 25 ns each).
#[cfg(target_os = "linux")]
fn now_seconds() -> i64 {
    rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec
}

#[cfg(not(target_os = "linux"))]
fn now_seconds() -> i64 {
    crate::service::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn usual_bodies_take_the_flat_path_to_the_same_context() {
        for body in [
            r#"{"context":{"companyId":42,"targetingKey":"u1","plan":"pro"}}"#,
            r#"{"context":{}}"#,
            " {\n \"context\" : { \"companyId\" : \"acme\" ,\t\"beta\":true, \"n\": -3, \"x\": null, \"é\": \"ü\" }\r\n} ",
        ] {
            let flat = flat(body.as_bytes());
            assert!(flat.is_some(), "{body}");
            assert_eq!(flat.map(Ok), Some(parsed(body.as_bytes())), "{body}");
        }
    }

    #[test]
    fn a_context_is_stamped_with_the_current_second() {
        let before = crate::service::now_ms() / 1000;
        let now = context(br#"{"context":{}}"#).unwrap().now().unwrap();
        let after = crate::service::now_ms() / 1000;
        // The coarse clock may be a tick behind the precise one across a second boundary.
        assert!((before - 1..=after).contains(&now), "{before} <= {now} <= {after}");
    }

    #[test]
    fn bodies_serde_json_reads_differently_or_refuses_are_left_to_it() {
        for body in [
            r#"{"context":{"n":-0}}"#,
            r#"{"context":{"n":01}}"#,
            r#"{"context":{"n":1.5}}"#,
            r#"{"context":{"n":1e3}}"#,
            r#"{"context":{"n":1234567890123456789}}"#,
            r#"{"context":{"s":"a\"b"}}"#,
            r#"{"context":{"s":[1]}}"#,
            r#"{"context":{"companyId":true}}"#,
            r#"{"context":{"a":1,}}"#,
            r#"{"context":{"a":1}, "other": 2}"#,
            r#"{"context":{"a":1}}}"#,
            "{\"context\":{\"a\":1}}\u{c}",
            "",
        ] {
            assert_eq!(flat(body.as_bytes()), None, "{body}");
        }
    }

    #[test]
    fn a_name_given_twice_anywhere_is_an_invalid_context() {
        let cases = [
            (r#"{"context":{"companyId":42,"companyId":13}}"#, "`companyId` is named twice in `context`"),
            (r#"{"context":{"plan":"pro","beta":true,"plan":"free"}}"#, "`plan` is named twice in `context`"),
            (r#"{"context":{"user":{"id":1,"id":2}}}"#, "`id` is named twice in `context.user`"),
            (r#"{"context":{"companyId":42},"context":{"companyId":13}}"#, "`context` is named twice in the top"),
        ];
        for (body, expected) in cases {
            let refused = context(body.as_bytes());
            let Err((ErrorCode::InvalidContext, details)) = &refused else { panic!("{body}: {refused:?}") };
            assert!(details.starts_with(&format!("the request body is ambiguous: {expected}")), "{body}: {details}");
        }
        // A company or targeting key set to null is unset, which the flat path leaves to
        // serde_json, and no repeat.
        let unset = context(br#"{"context":{"companyId":null,"targetingKey":null,"plan":"pro"}}"#).unwrap();
        assert_eq!((unset.company_id(), unset.attributes().count()), (None, 1));
    }

    /// A JSON scalar, or something near one: each of serde_json's special cases and a few
    /// malformed values.
    fn scalar() -> impl Strategy<Value = String> {
        let edge = r#"-0 0 01 -01 1.5 1e3 - true false null tru nul [] {} {"a":1} 123456789012345678
            -123456789012345678 1234567890123456789 99999999999999999999 "\u0041""#;
        let mut edge: Vec<String> = edge.split_whitespace().map(String::from).collect();
        edge.extend(["\"\u{1}\"".to_owned(), "\"\u{7f}\"".to_owned()]);
        prop_oneof![
            4 => "[a-z0-9 é]{0,6}".prop_map(|s| format!("\"{s}\"")),
            1 => "[a-z\"\\\\]{0,3}".prop_map(|s| format!("\"{s}\"")),
            2 => any::<i64>().prop_map(|n| n.to_string()),
            2 => (0..1_000_000i64).prop_map(|n| n.to_string()),
            3 => prop::sample::select(edge),
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        let usual = ["companyId", "targetingKey", "plan", "context", ""];
        prop_oneof![
            4 => prop::sample::select(usual.to_vec()).prop_map(String::from),
            4 => "[a-z]{0,4}",
            1 => "[a-z\"\\\\]{0,3}",
        ]
        .prop_map(|s| format!("\"{s}\""))
    }

    /// A body shaped like an OFREP request, spaced with JSON's whitespace (and form feed,
    /// which JSON does not allow), then perhaps with one byte removed or inserted.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let members = prop::collection::vec((name(), scalar()), 0..5);
        let top =
            prop_oneof![8 => Just(r#""context""#), 1 => Just(r#""contexts""#), 1 => Just(r#""extra":1,"context""#)];
        let space = prop_oneof![40 => prop::sample::select(vec!["", "", "", " ", "\n", "\t\r"]), 1 => Just("\u{c}")];
        let spaces = prop::collection::vec(space, 64);
        let edit = prop::option::weighted(0.2, (any::<prop::sample::Index>(), prop::option::of(any::<u8>())));
        (top, members, spaces, edit).prop_map(|(top, members, spaces, edit)| {
            let mut tokens = vec!["{".to_owned(), top.to_owned(), ":".to_owned(), "{".to_owned()];
            for (i, (name, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    tokens.push(",".to_owned());
                }
                tokens.extend([name, ":".to_owned(), value]);
            }
            tokens.extend(["}".to_owned(), "}".to_owned()]);
            let mut body = Vec::new();
            for (token, space) in tokens.iter().zip(spaces.iter().cycle()) {
                body.extend_from_slice(space.as_bytes());
                body.extend_from_slice(token.as_bytes());
            }
            if let Some((at, byte)) = edit {
                let at = at.index(body.len() + 1);
                match byte {
                    Some(byte) => body.insert(at, byte),
                    None if at < body.len() => drop(body.remove(at)),
                    None => {}
                }
            }
            body
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn the_flat_path_gives_what_serde_json_gives(body in body()) {
            if let Some(context) = flat(&body) {
                prop_assert_eq!(parsed(&body), Ok(context), "{}", String::from_utf8_lossy(&body));
            }
        }

        #[test]
        fn the_flat_path_takes_every_plain_body(
            members in prop::collection::vec(("[a-zA-Z_]{1,8}", prop_oneof![
                "[a-z0-9 ]{0,8}".prop_map(Value::String),
                (-99_999_999i64..99_999_999).prop_map(Value::from),
                any::<bool>().prop_map(Value::Bool),
            ]), 0..6),
        ) {
            // What serde_json writes for a flat context, with names not claimed by the
            // context's own fields (those refuse some values).
            let context: serde_json::Map<String, Value> =
                members.into_iter().map(|(name, value)| (format!("a{name}"), value)).collect();
            let body = serde_json::to_vec(&serde_json::json!({ "context": context }))?;
            prop_assert!(flat(&body).is_some(), "{}", String::from_utf8_lossy(&body));
        }
    }
}
