//! Collects validation problems, so a definition reports everything wrong at once, and
//! names where each one is.

use std::fmt;

use crate::error::{Problem, ValidationError};

#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
    key: Option<String>,
}

impl Problems {
    /// Problems pushed from now on belong to this flag or segment key.
    /// The key's buffer is reused, since a compile sets one per flag.
    pub(crate) fn set_key(&mut self, key: Option<&str>) {
        match (&mut self.key, key) {
            (Some(current), Some(key)) => {
                current.clear();
                current.push_str(key);
            }
            (current, key) => *current = key.map(str::to_owned),
        }
    }

    pub(crate) fn push(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.list.push(Problem { key: self.key.clone(), path: path.to_string(), message: message.into() });
    }

    /// Records a problem and yields nothing, for `return problems.fail(..)` in compilers.
    pub(crate) fn fail<T>(&mut self, path: impl fmt::Display, message: impl Into<String>) -> Option<T> {
        self.push(path, message);
        None
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ValidationError> {
        if self.list.is_empty() { Ok(value) } else { Err(ValidationError { problems: self.list }) }
    }
}

/// Where something is in a definition, e.g. `flags.beta.rules[0].serve`. Compilers pass
/// these down instead of strings and it is written out only when a problem is recorded, so
/// compiling a valid definition formats no paths at all.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    /// A top-level name such as `flags`, or `""` for paths relative to something else
    /// (a JSON Logic expression's own paths read `if[0]`, not `.if[0]`).
    Root(&'a str),
    /// A member: `parent.name`.
    Field(&'a Path<'a>, &'a str),
    /// An element: `parent[i]`.
    Index(&'a Path<'a>, usize),
    /// A path reported by a nested compiler (JSON Logic), relative to `parent`.
    Nested(&'a Path<'a>, &'a str),
}

impl<'a> Path<'a> {
    pub(crate) const fn field(&'a self, name: &'a str) -> Self {
        Self::Field(self, name)
    }

    pub(crate) const fn index(&'a self, i: usize) -> Self {
        Self::Index(self, i)
    }

    /// Appends a nested compiler's own path (`[1].var`, `if[0]` or empty).
    pub(crate) const fn nested(&'a self, inner: &'a str) -> Self {
        Self::Nested(self, inner)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root(name) | Self::Field(Self::Root(""), name) => f.write_str(name),
            Self::Field(parent, name) => write!(f, "{parent}.{name}"),
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
            Self::Nested(parent, "") => write!(f, "{parent}"),
            Self::Nested(parent, inner) if inner.starts_with('[') => write!(f, "{parent}{inner}"),
            Self::Nested(parent, inner) => write!(f, "{parent}.{inner}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Path;

    #[test]
    fn paths_read_as_written_by_hand() {
        let flags = Path::Root("flags");
        let flag = flags.field("beta");
        let rules = flag.field("rules");
        let rule = rules.index(2);
        let cases = [
            (flag.to_string(), "flags.beta"),
            (rule.field("serve").to_string(), "flags.beta.rules[2].serve"),
            (rule.nested("").to_string(), "flags.beta.rules[2]"),
            (rule.nested("[1].var").to_string(), "flags.beta.rules[2][1].var"),
            (rule.nested("if[0]").to_string(), "flags.beta.rules[2].if[0]"),
            (Path::Root("").field("if").index(0).to_string(), "if[0]"),
            (Path::Root("").index(1).field("var").to_string(), "[1].var"),
        ];
        for (written, expected) in cases {
            assert_eq!(written, expected);
        }
    }
}
