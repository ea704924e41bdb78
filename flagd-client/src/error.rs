//! The client's error type.

/// What can go wrong talking to the server. Getters never return these: they serve the
/// last known value or the caller's default and report the error in [`crate::Details`].
///
/// Each message is whole: it names the causes under it (the HTTP library's reason, the
/// last attempt's failure), because logs and [`crate::Details`] carry one line. So no
/// variant also gives them as [`std::error::Error::source`], where a printer of error
/// chains would print each twice; the fields keep them for code that looks closer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, or did not answer in time.
    #[error("cannot reach flagd-server at {url}: {}", with_causes(error))]
    Unreachable {
        /// The URL requested.
        url: String,
        /// What the HTTP layer reported.
        error: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("flagd-server answered {status} for {url}: {message}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error code the server gave (`UNAUTHORIZED`, `FLAG_NOT_FOUND`, ...), if any.
        code: Option<String>,
        /// The server's message, or the body.
        message: String,
    },
    /// The answer was not what the protocol promises.
    #[error("unexpected answer from {url}: {message}")]
    Protocol {
        /// The URL requested.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// The snapshot the server sent does not compile (a server and client of different
    /// versions may disagree on the flag model).
    #[error("the snapshot of environment `{environment}` does not compile: {problems}")]
    Compile {
        /// Environment name.
        environment: String,
        /// The validation problems.
        problems: flagd_core::ValidationError,
    },
    /// The options are unusable.
    #[error("invalid client options: {0}")]
    Options(String),
    /// The remote client's circuit breaker is open: the server's last requests failed,
    /// so none is sent until a cool-down has passed (then one probe).
    #[error("not asking flagd-server at {url}: its last {failures} requests failed; retrying after a cool-down")]
    CircuitOpen {
        /// The URL that would have been requested.
        url: String,
        /// Consecutive failed requests so far.
        failures: u32,
    },
    /// A request made once for several concurrent callers failed on the network; each of
    /// them gets this.
    #[error(transparent)]
    Shared(std::sync::Arc<ClientError>),
    /// No snapshot arrived within the connect timeout, though connecting was retried.
    #[error("no snapshot within {timeout:?}{}", last_attempt(.cause.as_deref()))]
    NotReady {
        /// The connect timeout.
        timeout: std::time::Duration,
        /// Why the last finished attempt failed; `None` if none finished in time.
        cause: Option<Box<ClientError>>,
    },
}

/// `error` and the causes under it, as one line, each said once: the HTTP library's own
/// message leaves out why (a refused connection, a failed name lookup, a timeout), which is
/// what a person reading the log or a [`crate::Details`] message needs. flagctl words
/// its own failures with it too.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

/// How a [`ClientError::NotReady`] message ends: the last attempt's failure, if any.
fn last_attempt(cause: Option<&ClientError>) -> String {
    cause.map_or_else(|| "; the server did not answer".to_owned(), |e| format!("; the last attempt: {e}"))
}

impl ClientError {
    /// Whether retrying later may help (network trouble, 5xx) rather than a caller's mistake.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::NotReady { .. } | Self::CircuitOpen { .. } => true,
            Self::Shared(e) => e.is_transient(),
            Self::Status { status, .. } => *status >= 500,
            Self::Protocol { .. } | Self::Compile { .. } | Self::Options(_) => false,
        }
    }

    /// Whether the server refused the request (a 4xx: a wrong or revoked token, an unknown
    /// environment, a context it cannot evaluate): asked again, it answers the same.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Shared(e) => e.is_refusal(),
            Self::Status { status, .. } => (400..500).contains(status),
            _ => false,
        }
    }

    /// Whether the server refused the token itself (401/403) rather than this one request:
    /// then nothing it said before may be served, as a revoked token must stop serving flags.
    pub(crate) fn refuses_token(&self) -> bool {
        match self {
            Self::Shared(e) => e.refuses_token(),
            Self::Status { status, .. } => matches!(status, 401 | 403),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_is_reported_with_the_reason() {
        // Nothing listens on port 1 of the loopback: the connection is refused at once.
        let url = "http://127.0.0.1:1/";
        let source = reqwest::get(url).await.unwrap_err();
        let error = ClientError::Unreachable { url: url.to_owned(), error: source };
        let message = error.to_string();
        assert!(message.to_lowercase().contains("connection refused"), "{message}");
        let not_ready = ClientError::NotReady { timeout: Duration::from_secs(1), cause: Some(Box::new(error)) };
        assert!(not_ready.to_string().to_lowercase().contains("connection refused"), "{not_ready}");
    }

    /// A chain printer (`anyhow`'s `{:#}`, a logger walking `source()`) prints each cause once.
    #[tokio::test]
    async fn no_cause_is_printed_twice_in_a_chain() {
        let source = reqwest::get("http://127.0.0.1:1/").await.unwrap_err();
        let unreachable = ClientError::Unreachable { url: "http://127.0.0.1:1/".to_owned(), error: source };
        let not_ready = ClientError::NotReady { timeout: Duration::from_secs(1), cause: Some(Box::new(unreachable)) };
        let problem =
            flagd_core::Problem { key: None, path: "flags[0].key".to_owned(), message: "invalid key".to_owned() };
        let problems = flagd_core::ValidationError { problems: vec![problem] };
        let compile = ClientError::Compile { environment: "staging".to_owned(), problems };
        for error in [not_ready, compile] {
            let mut chain = error.to_string();
            let mut cause = std::error::Error::source(&error);
            while let Some(c) = cause {
                chain.push_str(&format!(": {c}"));
                cause = c.source();
            }
            assert_eq!(chain, error.to_string(), "the message already names every cause");
        }
    }
}
