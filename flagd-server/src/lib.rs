//! flagd-server: the flag service. It keeps flags in a database (SQLite by default,
//! MySQL/MariaDB or PostgreSQL), serves evaluations from compiled in-memory rulesets
//! over OFREP, and offers an admin API for flags, environments, segments, tokens and the
//! audit log.
//!
//! # Modules
//!
//! - [`config`]: command-line options and environment variables.
//! - [`control`]: the runtime everything but evaluation runs on, optionally at a lower CPU
//!   priority (`--control-nice`).
//! - [`store`]: the [`store::Store`] trait and its SQL implementation.
//! - [`service`]: the domain operations; every write is one transaction that validates,
//!   audits, commits and swaps the compiled rulesets.
//! - [`snapshot`]: the per-environment compiled rulesets behind `ArcSwap`.
//! - [`metrics`]: Prometheus counters and latency histograms, lock-free where evaluation counts.
//! - [`auth`]: tokens and roles.
//! - [`http`]: the axum router ([`app`], [`app_with`] for [`HttpOptions`] such as the
//!   browser origins allowed to call OFREP), OFREP and admin handlers.
//! - [`error`]: the API error type and its JSON form.
//! - [`openapi`]: the OpenAPI document ([`openapi::ApiDoc`]), served at `/openapi.json`.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = flagd_server::store::connect("sqlite:./data/flagd.db").await?;
//! let (service, _startup) = flagd_server::service::Service::start(store, Some("secret-admin-token")).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8013").await?;
//! let options = flagd_server::HttpOptions::default();
//! flagd_server::run(listener, service, &options, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod control;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod replication;
pub mod service;
pub mod snapshot;
pub mod snapshot_cache;
pub mod store;

use std::future::Future;
use std::sync::Arc;

pub use http::{App, HttpOptions, app, app_with};

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    service: Arc<service::Service>,
    options: &HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = Arc::clone(&service);
    let shutdown = async move {
        shutdown.await;
        closing.close();
    };
    let app = app_with(service, options);
    axum::serve(listener, axum::ServiceExt::<axum::extract::Request>::into_make_service(app))
        .with_graceful_shutdown(shutdown)
        .await
}
