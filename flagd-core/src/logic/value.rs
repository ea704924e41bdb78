//! Values during evaluation, and the JavaScript coercions json-logic-engine relies on.
//!
//! [`Val`] borrows from the context or the compiled expression wherever it can, so that
//! `var` lookups and comparisons do not allocate. Numbers are `f64` like JavaScript's, so
//! `NaN`, `Infinity` and `-0` exist here even though JSON cannot hold them.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::{self, Write};

use serde_json::Value;

/// A JavaScript value as json-logic-engine sees it.
#[derive(Debug, Clone, Default)]
pub(crate) enum Val<'a> {
    #[default]
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    /// A JSON array or object borrowed from the context or the expression.
    Json(&'a Value),
    /// An array borrowed from a computed value (a folded constant, say).
    List(&'a [Val<'a>]),
    /// An array built during evaluation.
    Arr(Vec<Val<'a>>),
    /// An object borrowed from a computed value.
    Fields(&'a [(Cow<'a, str>, Val<'a>)]),
    /// An object built during evaluation (`$flagd`, reduce's `{accumulator, current}`).
    Obj(Vec<(Cow<'a, str>, Val<'a>)>),
    /// The evaluation's top-level data: the context attributes plus `$flagd`.
    Root,
}

/// An array, however it is held.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ArrView<'b> {
    Json(&'b [Value]),
    Vals(&'b [Val<'b>]),
}

impl<'b> ArrView<'b> {
    pub(crate) fn len(self) -> usize {
        match self {
            Self::Json(a) => a.len(),
            Self::Vals(a) => a.len(),
        }
    }

    pub(crate) fn get(self, i: usize) -> Option<Val<'b>> {
        match self {
            Self::Json(a) => a.get(i).map(Val::from_json),
            Self::Vals(a) => a.get(i).map(Val::reborrow),
        }
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Val<'b>> {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

impl<'a> Val<'a> {
    /// Scalars become their own variants so callers never look inside `Json` for them.
    pub(crate) fn from_json(v: &'a Value) -> Self {
        match v {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Self::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Self::Json(v),
        }
    }

    /// The same value, borrowed from `self` (no allocation).
    pub(crate) fn reborrow(&self) -> Val<'_> {
        match self {
            Self::Null => Val::Null,
            Self::Bool(b) => Val::Bool(*b),
            Self::Num(n) => Val::Num(*n),
            Self::Str(s) => Val::Str(Cow::Borrowed(s)),
            Self::Json(v) => Val::Json(v),
            Self::List(a) => Val::List(a),
            Self::Arr(a) => Val::List(a),
            Self::Fields(f) => Val::Fields(f),
            Self::Obj(f) => Val::Fields(f),
            Self::Root => Val::Root,
        }
    }

    /// Detaches the value from what it borrows (used for folded constants).
    pub(crate) fn into_owned(self) -> Val<'static> {
        let fields = |f: &[(Cow<'_, str>, Val<'_>)]| {
            f.iter().map(|(k, v)| (Cow::Owned(k.to_string()), v.clone().into_owned())).collect()
        };
        match self {
            Self::Null | Self::Root => Val::Null,
            Self::Bool(b) => Val::Bool(b),
            Self::Num(n) => Val::Num(n),
            Self::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Self::Json(v) => owned_json(v),
            Self::List(a) => Val::Arr(a.iter().map(|v| v.clone().into_owned()).collect()),
            Self::Arr(a) => Val::Arr(a.into_iter().map(Val::into_owned).collect()),
            Self::Fields(f) => Val::Obj(fields(f)),
            Self::Obj(f) => Val::Obj(fields(&f)),
        }
    }

    pub(crate) fn as_array(&self) -> Option<ArrView<'_>> {
        match self {
            Self::Json(Value::Array(a)) => Some(ArrView::Json(a)),
            Self::List(a) => Some(ArrView::Vals(a)),
            Self::Arr(a) => Some(ArrView::Vals(a)),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    pub(crate) fn is_object_like(&self) -> bool {
        matches!(self, Self::Json(_) | Self::List(_) | Self::Arr(_) | Self::Fields(_) | Self::Obj(_) | Self::Root)
    }

    /// JavaScript's `!value` being false (raw JS truthiness: `[]` and `{}` are truthy).
    pub(crate) fn js_truthy(&self) -> bool {
        match self {
            Self::Null => false,
            Self::Bool(b) => *b,
            Self::Num(n) => *n != 0.0 && !n.is_nan(),
            Self::Str(s) => !s.is_empty(),
            _ => true,
        }
    }

    /// json-logic-engine's `engine.truthy`: like JavaScript, except that empty arrays and
    /// empty plain objects are falsy.
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Self::Json(Value::Array(a)) => !a.is_empty(),
            Self::Json(Value::Object(o)) => !o.is_empty(),
            Self::List(a) => !a.is_empty(),
            Self::Arr(a) => !a.is_empty(),
            Self::Fields(f) => !f.is_empty(),
            Self::Obj(f) => !f.is_empty(),
            other => other.js_truthy(),
        }
    }

    /// JavaScript's unary `+`.
    pub(crate) fn to_number(&self) -> f64 {
        match self {
            Self::Null => 0.0,
            Self::Bool(b) => f64::from(u8::from(*b)),
            Self::Num(n) => *n,
            Self::Str(s) => str_to_number(s),
            _ if self.as_array().is_some() => str_to_number(&self.to_js_string()),
            _ => f64::NAN,
        }
    }

    /// JavaScript's `String(value)`.
    pub(crate) fn to_js_string(&self) -> Cow<'_, str> {
        match self {
            Self::Str(s) => Cow::Borrowed(s),
            other => {
                let mut out = String::new();
                // Writing into a String cannot fail.
                let _ = other.write_js(&mut out);
                Cow::Owned(out)
            }
        }
    }

    /// Writes `String(value)`; arrays join their items with `,`, null items as empty.
    pub(crate) fn write_js<W: Write>(&self, out: &mut W) -> fmt::Result {
        match self {
            Self::Null => out.write_str("null"),
            Self::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
            Self::Num(n) => write_number(*n, out),
            Self::Str(s) => out.write_str(s),
            _ => match self.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.write_char(',')?;
                        }
                        if !item.is_null() {
                            item.write_js(out)?;
                        }
                    }
                    Ok(())
                }
                None => out.write_str("[object Object]"),
            },
        }
    }
}

fn owned_json(v: &Value) -> Val<'static> {
    match v {
        Value::Array(a) => Val::Arr(a.iter().map(owned_json).collect()),
        Value::Object(o) => Val::Obj(o.iter().map(|(k, v)| (Cow::Owned(k.clone()), owned_json(v))).collect()),
        scalar => Val::from_json(scalar).into_owned(),
    }
}

/// `Number.prototype.toString()`: shortest round-trip digits, exponent form outside
/// `[1e-7, 1e21)`.
pub(crate) fn write_number<W: Write>(n: f64, out: &mut W) -> fmt::Result {
    if n.is_nan() {
        return out.write_str("NaN");
    }
    if n.is_infinite() {
        return out.write_str(if n > 0.0 { "Infinity" } else { "-Infinity" });
    }
    if n == 0.0 {
        return out.write_char('0');
    }
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        return write_integer(n as i64, out);
    }
    let mut buf = StackBuf::default();
    write!(buf, "{:e}", n.abs())?;
    let text = buf.as_str();
    let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits = StackBuf::default();
    for c in mantissa.chars().filter(char::is_ascii_digit) {
        digits.write_char(c)?;
    }
    if n < 0.0 {
        out.write_char('-')?;
    }
    write_digits(digits.as_str(), exp + 1, out)
}

/// Decimal digits of an integer, without going through `core::fmt` (bucketing by an
/// integer company id does this on every evaluation).
fn write_integer<W: Write>(n: i64, out: &mut W) -> fmt::Result {
    out.write_str(itoa::Buffer::new().format(n))
}

/// Lays out digits `d1 d2 … dk` with decimal exponent `point` (value = 0.d1…dk × 10^point).
fn write_digits<W: Write>(digits: &str, point: i32, out: &mut W) -> fmt::Result {
    let k = digits.len() as i32;
    if k <= point && point <= 21 {
        out.write_str(digits)?;
        (0..point - k).try_for_each(|_| out.write_char('0'))
    } else if 0 < point && point <= 21 {
        let (int, frac) = digits.split_at(point as usize);
        write!(out, "{int}.{frac}")
    } else if -6 < point && point <= 0 {
        out.write_str("0.")?;
        (0..-point).try_for_each(|_| out.write_char('0'))?;
        out.write_str(digits)
    } else {
        let (first, rest) = digits.split_at(1);
        out.write_str(first)?;
        if !rest.is_empty() {
            write!(out, ".{rest}")?;
        }
        let e = point - 1;
        write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs())
    }
}

/// A small fixed buffer for formatting numbers without allocating.
#[derive(Default)]
struct StackBuf {
    buf: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// JavaScript's `Number(string)`.
pub(crate) fn str_to_number(s: &str) -> f64 {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return radix_number(digits, radix);
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return if t.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    if is_decimal_literal(unsigned) { t.parse().unwrap_or(f64::NAN) } else { f64::NAN }
}

fn radix_number(digits: &str, radix: u32) -> f64 {
    if digits.is_empty() {
        return f64::NAN;
    }
    digits
        .chars()
        .try_fold(0.0f64, |acc, c| c.to_digit(radix).map(|d| acc * f64::from(radix) + f64::from(d)))
        .unwrap_or(f64::NAN)
}

/// `digits [. digits] [e [+-] digits]` with at least one digit in the mantissa.
fn is_decimal_literal(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty());
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exp_ok
}

/// JavaScript's abstract relational comparison on primitives; `None` when NaN is involved.
pub(crate) fn js_compare(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    if let (Val::Str(x), Val::Str(y)) = (a, b) {
        return Some(x.encode_utf16().cmp(y.encode_utf16()));
    }
    if a.is_object_like() || b.is_object_like() {
        let (x, y) = (prim(a), prim(b));
        return js_compare(&x, &y);
    }
    a.to_number().partial_cmp(&b.to_number())
}

/// ToPrimitive for comparisons: objects compare by their string form.
fn prim<'b>(v: &'b Val<'_>) -> Val<'b> {
    if v.is_object_like() { Val::Str(v.to_js_string()) } else { v.reborrow() }
}

/// JavaScript's `==`.
pub(crate) fn loose_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Null, _) | (_, Val::Null) => false,
        (Val::Str(x), Val::Str(y)) => x == y,
        _ if a.is_object_like() && b.is_object_like() => strict_eq(a, b),
        _ if a.is_object_like() || b.is_object_like() => loose_eq(&prim(a), &prim(b)),
        _ => a.to_number() == b.to_number(),
    }
}

/// JavaScript's `===`; objects are equal only when they are the same object.
pub(crate) fn strict_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Json(x), Val::Json(y)) => std::ptr::eq(*x, *y),
        (Val::Root, Val::Root) => true,
        _ => false,
    }
}

/// `Array.prototype.includes` equality (SameValueZero).
pub(crate) fn same_value_zero(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) if x.is_nan() && y.is_nan() => true,
        _ => strict_eq(a, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: f64) -> String {
        let mut s = String::new();
        write_number(n, &mut s).unwrap();
        s
    }

    #[test]
    fn numbers_print_like_javascript() {
        let cases = [
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (2f64.powi(60), "1152921504606847000"),
            (-123.456, "-123.456"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (n, want) in cases {
            assert_eq!(num(n), want, "{n}");
        }
    }

    #[test]
    fn strings_convert_like_javascript() {
        let cases = [
            ("", 0.0),
            (" 12 ", 12.0),
            ("1e3", 1000.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("0x1F", 31.0),
            ("-Infinity", f64::NEG_INFINITY),
            ("+3", 3.0),
        ];
        for (s, want) in cases {
            assert_eq!(str_to_number(s), want, "{s}");
        }
        for s in ["abc", "inf", "NaN", "1e", ".", "-0x1", "1_000", "infinity"] {
            assert!(str_to_number(s).is_nan(), "{s}");
        }
    }

    #[test]
    fn equality_and_order() {
        let s = |x: &'static str| Val::Str(Cow::Borrowed(x));
        assert!(loose_eq(&Val::Num(1.0), &s("1")));
        assert!(loose_eq(&Val::Bool(true), &s("1")));
        assert!(!loose_eq(&Val::Null, &Val::Num(0.0)));
        assert!(!strict_eq(&Val::Num(1.0), &s("1")));
        assert_eq!(js_compare(&s("10"), &s("9")), Some(Ordering::Less));
        assert_eq!(js_compare(&Val::Num(10.0), &s("9")), Some(Ordering::Greater));
        assert_eq!(js_compare(&Val::Null, &Val::Bool(true)), Some(Ordering::Less));
        assert_eq!(js_compare(&s("a"), &Val::Num(1.0)), None);
    }

    #[test]
    fn truthiness_differs_from_javascript_for_empty_containers() {
        let empty = Value::Array(vec![]);
        assert!(Val::Json(&empty).js_truthy());
        assert!(!Val::Json(&empty).truthy());
        assert!(!Val::Num(f64::NAN).truthy());
    }
}
