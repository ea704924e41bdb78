//! Semantic versions as flagd's `sem_ver` operator reads them.
//!
//! flagd strips one leading `v`/`V`, then parses strictly as npm `semver` does (SemVer
//! 2.0, surrounding whitespace trimmed, an optional second lowercase `v`); failing that, a
//! bare `X` or `X.Y` of digits is completed to `X.0.0` / `X.Y.0`. Ordering follows npm
//! `semver.compare`: main parts, then prerelease precedence; build metadata is ignored.

use std::cmp::Ordering;

/// npm semver refuses longer version strings outright.
const MAX_LENGTH: usize = 256;
/// npm semver refuses numeric parts above `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

/// One prerelease identifier: numeric ones order numerically and before alphanumeric ones.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Num(u64),
    Text(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Num(a), Self::Num(b)) => a.cmp(b),
            (Self::Num(_), Self::Text(_)) => Ordering::Less,
            (Self::Text(_), Self::Num(_)) => Ordering::Greater,
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A parsed semantic version (build metadata dropped: it never affects comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<Ident>,
}

impl Version {
    /// Parses as flagd's `sem_ver` does; `None` for anything it would call invalid.
    pub fn parse_lenient(raw: &str) -> Option<Self> {
        let s = raw.strip_prefix(['v', 'V']).unwrap_or(raw);
        Self::parse_plain(s).or_else(|| Self::parse_strict(s)).or_else(|| Self::coerce_partial(s))
    }

    /// The common `MAJOR.MINOR.PATCH` in one pass over the bytes, so evaluating a version
    /// condition costs a scan rather than the general parser's splits. Anything else
    /// (prerelease, build, whitespace, leading zeros) is left to [`Version::parse_strict`].
    fn parse_plain(s: &str) -> Option<Self> {
        let mut parts = [0u64; 3];
        let mut part = 0;
        let mut digits = 0;
        for &b in s.as_bytes() {
            match b {
                b'0'..=b'9' => {
                    let slot = parts.get_mut(part)?;
                    if digits == 1 && *slot == 0 {
                        return None;
                    }
                    *slot = slot.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                    digits += 1;
                }
                b'.' if digits > 0 && part < 2 => {
                    part += 1;
                    digits = 0;
                }
                _ => return None,
            }
        }
        let [major, minor, patch] = parts;
        let in_range = parts.iter().all(|&p| p <= MAX_SAFE_INTEGER);
        (part == 2 && digits > 0 && in_range).then(|| Self { major, minor, patch, pre: Vec::new() })
    }

    /// npm `semver.parse` (not loose).
    pub fn parse_strict(raw: &str) -> Option<Self> {
        if raw.len() > MAX_LENGTH {
            return None;
        }
        let s = trim_js(raw);
        let s = s.strip_prefix('v').unwrap_or(s);
        let (rest, _build) = match s.split_once('+') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        if let Some(b) = _build {
            if !b.split('.').all(|id| !id.is_empty() && id.bytes().all(is_ident_byte)) {
                return None;
            }
        }
        let (main, pre) = match rest.split_once('-') {
            Some((m, p)) => (m, Some(p)),
            None => (rest, None),
        };
        let mut parts = main.split('.');
        let major = numeric(parts.next()?)?;
        let minor = numeric(parts.next()?)?;
        let patch = numeric(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            Some(p) => p.split('.').map(prerelease_ident).collect::<Option<Vec<_>>>()?,
            None => Vec::new(),
        };
        Some(Self { major, minor, patch, pre })
    }

    /// `X` or `X.Y` of digits, completed with zeros (npm `semver.coerce` on such input).
    fn coerce_partial(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let major = numeric(parts.next()?)?;
        let minor = match parts.next() {
            Some(p) => numeric(p)?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self { major, minor, patch: 0, pre: Vec::new() })
    }

    /// The major version.
    pub fn major(&self) -> u64 {
        self.major
    }

    /// The minor version.
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// The patch version.
    pub fn patch(&self) -> u64 {
        self.patch
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A prerelease sorts before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The comparison operators `sem_ver` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemverOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `^`: same major version.
    Caret,
    /// `~`: same major and minor version.
    Tilde,
}

impl SemverOp {
    /// The operator spelled `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        const TABLE: [(&str, SemverOp); 8] = [
            ("=", SemverOp::Eq),
            ("!=", SemverOp::Ne),
            ("<", SemverOp::Lt),
            ("<=", SemverOp::Le),
            (">", SemverOp::Gt),
            (">=", SemverOp::Ge),
            ("^", SemverOp::Caret),
            ("~", SemverOp::Tilde),
        ];
        TABLE.iter().find(|(name, _)| *name == s).map(|(_, op)| *op)
    }

    /// Whether `a <op> b` holds.
    pub fn holds(self, a: &Version, b: &Version) -> bool {
        let ord = a.cmp(b);
        match self {
            Self::Eq => ord == Ordering::Equal,
            Self::Ne => ord != Ordering::Equal,
            Self::Lt => ord == Ordering::Less,
            Self::Le => ord != Ordering::Greater,
            Self::Gt => ord == Ordering::Greater,
            Self::Ge => ord != Ordering::Less,
            Self::Caret => a.major == b.major,
            Self::Tilde => a.major == b.major && a.minor == b.minor,
        }
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// A main-version part: digits without leading zeros, within JS's safe integers.
fn numeric(s: &str) -> Option<u64> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let n: u64 = if ok { s.parse().ok()? } else { return None };
    (n <= MAX_SAFE_INTEGER).then_some(n)
}

fn prerelease_ident(id: &str) -> Option<Ident> {
    if id.is_empty() || !id.bytes().all(is_ident_byte) {
        return None;
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Ident::Text(id.to_owned()));
    }
    if id.len() > 1 && id.starts_with('0') {
        return None;
    }
    // npm keeps numeric identifiers beyond the safe range as text.
    match id.parse::<u64>() {
        Ok(n) if n < MAX_SAFE_INTEGER => Some(Ident::Num(n)),
        _ => Some(Ident::Text(id.to_owned())),
    }
}

/// JavaScript's `String.prototype.trim` whitespace set.
fn trim_js(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

#[cfg(test)]
mod plain_tests {
    use super::*;

    /// The fast path agrees with the general parser wherever it answers.
    #[test]
    fn plain_parse_agrees_with_strict_parse() {
        for s in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "01.2.3",
            "1.02.3",
            "1.2",
            "1.2.3.4",
            "1..3",
            "1.2.",
            ".1.2",
            "1.2.3-a",
            " 1.2.3",
            "9007199254740992.0.0",
        ] {
            assert_eq!(
                Version::parse_plain(s).is_some_and(|v| Some(v) == Version::parse_strict(s)),
                Version::parse_plain(s).is_some(),
                "{s}"
            );
            if Version::parse_strict(s).is_some_and(|v| v.pre.is_empty()) && !s.starts_with(' ') {
                assert!(Version::parse_plain(s).is_some(), "{s} should take the fast path");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<String> {
        Version::parse_lenient(s).map(|v| format!("{}.{}.{} {:?}", v.major, v.minor, v.patch, v.pre))
    }

    #[test]
    fn parses_like_npm_semver() {
        let ok = [
            ("1.2.3", "1.2.3 []"),
            ("v1.2.3", "1.2.3 []"),
            ("V1.2.3", "1.2.3 []"),
            ("vv1.2.3", "1.2.3 []"),
            (" 1.2.3 ", "1.2.3 []"),
            ("1.2", "1.2.0 []"),
            ("1", "1.0.0 []"),
            ("1.2.3+01", "1.2.3 []"),
            ("1.2.3-0a", "1.2.3 [Text(\"0a\")]"),
            ("9007199254740991.0.0", "9007199254740991.0.0 []"),
        ];
        for (input, want) in ok {
            assert_eq!(v(input).as_deref(), Some(want), "{input}");
        }
        let bad = [
            "01",
            "1.02",
            "0001.2",
            "12345678901234567",
            "1.2.3-01",
            "1.2.3-a.01",
            "9007199254740992.0.0",
            "1.2.3-",
            "1.2.3+",
            "=1.2.3",
            "1.2.3.4",
            "vV1.2.3",
            "not-a-version",
            "",
            "1.x",
        ];
        for input in bad {
            assert_eq!(v(input), None, "{input}");
        }
    }

    #[test]
    fn compares_with_prerelease_precedence() {
        let lt = [
            ("1.2.3-alpha.1", "1.2.3-alpha.beta"),
            ("1.2.3-2", "1.2.3-10"),
            ("1.2.3-a", "1.2.3"),
            ("1.2.3-alpha", "1.2.3-alpha.0"),
            ("1.2.3", "1.10.0"),
        ];
        for (a, b) in lt {
            let (a, b) = (Version::parse_lenient(a).unwrap(), Version::parse_lenient(b).unwrap());
            assert!(SemverOp::Lt.holds(&a, &b));
            assert!(SemverOp::Gt.holds(&b, &a));
        }
        let a = Version::parse_lenient("1.2.3+build").unwrap();
        let b = Version::parse_lenient("1.2.3").unwrap();
        assert!(SemverOp::Eq.holds(&a, &b));
    }

    #[test]
    fn caret_and_tilde() {
        let p = |s| Version::parse_lenient(s).unwrap();
        assert!(SemverOp::Caret.holds(&p("1.9.0"), &p("1.2.0")));
        assert!(!SemverOp::Caret.holds(&p("2.0.0"), &p("1.2.0")));
        assert!(SemverOp::Tilde.holds(&p("1.2.9"), &p("1.2.0")));
        assert!(!SemverOp::Tilde.holds(&p("1.3.0"), &p("1.2.0")));
        assert_eq!(SemverOp::parse(">="), Some(SemverOp::Ge));
        assert_eq!(SemverOp::parse("=="), None);
    }
}
