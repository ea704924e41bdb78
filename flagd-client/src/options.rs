//! How to reach the server, and how patient to be.

use std::time::Duration;

/// Options shared by both client modes. [`ClientOptions::new`] fills in the defaults.
///
/// Any duration is taken: one too long for the clock to count (`Duration::MAX` for
/// "never") counts as a century.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL of flagd-server, e.g. `http://127.0.0.1:8013` (a path prefix may follow;
    /// no query or fragment). A URL that is none is refused when the client is made
    /// ([`crate::ClientError::Options`]).
    pub url: String,
    /// An `evaluate` token (it selects the environment), or a `read` token together with
    /// [`ClientOptions::environment`] for the in-process mode.
    pub token: String,
    /// The environment to follow in-process; `None` means the evaluate token's own.
    pub environment: Option<String>,
    /// Longest time any one request may take; a getter never waits longer than this. An
    /// in-process snapshot download may take longer as long as it keeps arriving: each
    /// read must come within this time, since a large environment over a slow link takes
    /// longer than an evaluation and no getter waits on it.
    pub timeout: Duration,
    /// Remote mode: how long an answer is served from the cache before it is revalidated.
    pub cache_ttl: Duration,
    /// Remote mode: how long a context's last answer is kept, counted from the last time
    /// the server answered for it, to be served while the server cannot be reached (down,
    /// hung, or held back by the circuit breaker). After that the caller's default is
    /// served until the server answers again. At least `cache_ttl`; at most a century.
    pub stale_ttl: Duration,
    /// Remote mode: how many contexts' answers the cache keeps.
    pub cache_capacity: u64,
    /// In-process mode: how long [`crate::InProcessClient::connect`] waits for the first
    /// snapshot, trying again with backoff while the server cannot be reached.
    pub connect_timeout: Duration,
    /// In-process mode: the longest pause between reconnection attempts.
    pub max_backoff: Duration,
    /// Certificates (PEM) of certificate authorities to trust besides the system's and the
    /// built-in public ones, for a server behind TLS whose certificate a private authority
    /// signed. One that holds no certificate is refused when the client is made.
    pub ca_certificates: Option<Vec<u8>>,
}

impl ClientOptions {
    /// Options for `url` and `token` with the defaults: 500 ms request timeout, 1 s cache
    /// TTL for 10,000 contexts, last answers kept for a day through an outage, 5 s to
    /// connect, reconnection backoff up to 5 s.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            environment: None,
            timeout: Duration::from_millis(500),
            cache_ttl: Duration::from_secs(1),
            // As the PHP client's `stale_ttl`: an outage of a day still serves what was on.
            stale_ttl: Duration::from_secs(24 * 60 * 60),
            cache_capacity: 10_000,
            connect_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            ca_certificates: None,
        }
    }

    /// Follows `environment` (needed with a `read` token).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Sets the request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the remote cache's time to live (zero disables caching).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Sets how long the remote client keeps serving a context's last answer after the
    /// server last answered for it (zero: only for `cache_ttl`).
    pub fn stale_ttl(mut self, stale_ttl: Duration) -> Self {
        self.stale_ttl = stale_ttl;
        self
    }

    /// Sets how long connecting waits for the first snapshot.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the longest pause between reconnection attempts.
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Trusts the certificate authorities in `pem` (one or more PEM certificates, as read
    /// from a `ca.pem` file) besides the system's and the built-in public ones.
    pub fn ca_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificates = Some(pem.into());
        self
    }
}
