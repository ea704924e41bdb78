//! flagd-client: the Rust client for flagd-server, in two modes.
//!
//! - [`RemoteClient`] evaluates on the server over OFREP. Each context's bulk answer is
//!   cached for a short TTL (moka) and then revalidated with `If-None-Match`; getters
//!   never fail and never wait past the request timeout: on error they serve the last
//!   answer for that context (for up to [`ClientOptions::stale_ttl`], a day by default,
//!   after the server last answered for it) or the caller's default. A refusal (a wrong
//!   or revoked token) is held for a TTL too, and serves the caller's default.
//! - [`InProcessClient`] fetches the environment's snapshot, compiles it with
//!   [`flagd_core`] and evaluates locally, following the server's change stream so a
//!   change (a kill switch) reaches it within milliseconds. If the stream drops it keeps
//!   serving the last snapshot and reconnects with backoff (50 ms doubling up to
//!   [`ClientOptions::max_backoff`]; an outage that ended with a reconnection leaves no
//!   longer pause behind, while streams that drop as soon as they open are reopened ever
//!   more slowly). If the server refuses the token on reconnecting (401/403: revoked), it
//!   stops serving the snapshot: getters answer the caller's default with a `GENERAL`
//!   error naming the refusal, as the remote client does, and it asks again every
//!   `max_backoff` and serves again once the token is accepted.
//!
//! Both take a [`ClientOptions`] (URL, token, timeouts), refusing a URL that is no HTTP(S)
//! address when made, and report [`Details`]: value, variant, reason and error. The
//! `flagctl` command line lives in this package too (`src/bin/flagctl`).
//!
//! # Example
//!
//! ```no_run
//! use flagd_client::{ClientOptions, InProcessClient, RemoteClient};
//! use flagd_client::flagd_core::EvaluationContext;
//!
//! # async fn demo() -> Result<(), flagd_client::ClientError> {
//! let options = ClientOptions::new("http://127.0.0.1:8013", "fdt_…evaluate token…");
//! let ctx = EvaluationContext::new().with_company(42).with_targeting_key("user-7");
//!
//! // Remote: one cached bulk request per context.
//! let remote = RemoteClient::new(&options)?;
//! let portal = remote.bool_value("customer_portal", &ctx, false).await;
//!
//! // In-process: no I/O per call; changes arrive over the stream.
//! let local = InProcessClient::connect(&options).await?;
//! let details = local.details("customer_portal", &ctx, false);
//! println!("{portal} {} {:?}", details.value, details.reason);
//! # Ok(()) }
//! ```

mod certificates;
mod clock;
mod details;
mod error;
mod http;
mod inprocess;
mod options;
mod remote;
mod sse;

pub use certificates::{BadCertificates, root_certificates};
pub use details::{Details, FlagType};
pub use error::{ClientError, with_causes};
pub use flagd_core;
pub use http::{BadUrl, base_url, segment as path_segment};
pub use inprocess::{InProcessClient, Loaded};
pub use options::ClientOptions;
pub use remote::{BulkAnswer, RemoteClient};
