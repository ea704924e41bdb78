//! Collects validation problems, so a definition reports everything wrong at once.

use crate::error::{Problem, ValidationError};

#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
    key: Option<String>,
}

impl Problems {
    /// Problems pushed from now on belong to this flag or segment key.
    pub(crate) fn set_key(&mut self, key: Option<&str>) {
        self.key = key.map(str::to_owned);
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem { key: self.key.clone(), path: path.into(), message: message.into() });
    }

    /// Records a problem and yields nothing, for `return problems.fail(..)` in compilers.
    pub(crate) fn fail<T>(&mut self, path: impl Into<String>, message: impl Into<String>) -> Option<T> {
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

/// Appends a JSON Logic error's own path to the path of the expression.
pub(crate) fn join_path(base: &str, inner: &str) -> String {
    match inner {
        "" => base.to_owned(),
        _ if inner.starts_with('[') => format!("{base}{inner}"),
        _ => format!("{base}.{inner}"),
    }
}
