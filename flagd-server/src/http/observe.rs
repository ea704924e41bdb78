//! The one middleware every request runs through: a tracing span per request (at debug
//! level), the latency histogram of the request's route class, and a log line for server
//! errors (ERROR for a 500, WARN for the other 5xx, which the server answers on purpose).
//! (The body limit is applied where bodies are read: `json::UnreadBody`.)
//!
//! Hand-written rather than `TraceLayer` plus `middleware::from_fn` plus `DefaultBodyLimit`,
//! and wrapped around the router rather than given to it: axum boxes each route again for
//! every layer it is given, and `from_fn` boxes its future too, so three layers cost three
//! allocations of service and future per request, and two clock reads each. This one costs
//! a clock read at each end and no allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use tower::{Layer, Service};
use tracing::Span;

use crate::metrics::Route;
use crate::service::Service as FlagService;

/// Wraps a service (the router) in [`Observed`].
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    service: Arc<FlagService>,
}

impl ObserveLayer {
    /// Records into `service`'s metrics.
    pub fn new(service: Arc<FlagService>) -> Self {
        Self { service }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observed { inner, service: Arc::clone(&self.service) }
    }
}

/// A service (the router) with its requests traced and timed.
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
    service: Arc<FlagService>,
}

impl<S> Service<Request> for Observed<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ObservedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let route = Route::of(req.uri().path());
        // Disabled below debug level: then `span` is `Span::none()` and nothing is formatted.
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            uri = %req.uri(),
            version = ?req.version(),
        );
        let inner = span.in_scope(|| self.inner.call(req));
        ObservedFuture { inner, span, route, started, service: Arc::clone(&self.service) }
    }
}

/// The response of an [`Observed`] service, recorded when it is ready.
#[derive(Debug)]
pub struct ObservedFuture<F> {
    inner: F,
    span: Span,
    route: Route,
    started: Instant,
    service: Arc<FlagService>,
}

impl<F, E> Future for ObservedFuture<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let result = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        if let Ok(response) = &result {
            let latency = this.started.elapsed();
            let status = response.status();
            this.service.metrics().observe_request(this.route, status.as_u16(), latency);
            match status {
                // A fault of this server's own: the handler logged its detail too.
                StatusCode::INTERNAL_SERVER_ERROR => {
                    tracing::error!(status = status.as_u16(), latency_ms = latency.as_millis(), "response failed")
                }
                // A condition the answer reports and the caller can act on (a wait that ran
                // out, a database that is down, a server that is stopping): worth a warning,
                // not an alert.
                s if s.is_server_error() => {
                    tracing::warn!(status = status.as_u16(), latency_ms = latency.as_millis(), "response failed")
                }
                _ => tracing::debug!(
                    status = status.as_u16(),
                    latency_us = latency.as_micros(),
                    "finished processing request"
                ),
            }
        }
        Poll::Ready(result)
    }
}
