//! The HTTP API: one router built from one module per resource (plus the console under
//! `/ui`: [`session`] and `ui`), a JSON 404 for anything else, a body limit, and one
//! tracing span per request.

// Visible to the crate so that `crate::openapi` can name the handlers' path attributes.
pub(crate) mod admin;
pub mod cors;
pub(crate) mod environments;
pub(crate) mod evaluate;
pub(crate) mod flags;
pub mod json;
pub(crate) mod observe;
pub(crate) mod ofrep;
pub(crate) mod ofrep_answer;
mod ofrep_context;
pub(crate) mod ops;
pub(crate) mod params;
pub mod session;
pub(crate) mod sync;
pub(crate) mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::Layer;

use crate::error::ApiError;
use crate::service::Service;

/// The whole API: the router inside the one observing middleware.
pub type App = observe::Observed<Router>;

/// What the HTTP layer takes beyond the service.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Browser origins allowed to call OFREP (`--cors-origin`); none: no CORS headers.
    pub cors_origins: Vec<cors::AllowedOrigin>,
}

/// The whole API for one service, with the default [`HttpOptions`].
pub fn app(service: Arc<Service>) -> App {
    app_with(service, &HttpOptions::default())
}

/// The whole API for one service. OFREP and `/healthz` are answered on the thread that
/// reads the request; every other route runs on the service's control plane (see
/// [`crate::control`]).
pub fn app_with(service: Arc<Service>, options: &HttpOptions) -> App {
    let control_plane = Router::new()
        .merge(ops::routes())
        .merge(flags::routes())
        .merge(environments::routes())
        .merge(evaluate::routes())
        .merge(sync::routes())
        .merge(admin::routes())
        .merge(crate::openapi::routes())
        .merge(session::routes())
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&service), on_control_plane));
    // Only when asked for: the layer wraps each OFREP route once more. Their 405 fallback is
    // set before it, so that the layer wraps it too and answers the preflight (`OPTIONS`);
    // the router-wide one below only replaces fallbacks still unset.
    let ofrep = match cors::layer(&options.cors_origins) {
        Some(cors) => ofrep::routes().method_not_allowed_fallback(method_not_allowed).layer(cors),
        None => ofrep::routes(),
    };
    let router = Router::new()
        .merge(ofrep)
        .merge(ops::liveness_routes())
        .merge(control_plane)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::clone(&service));
    // Around the router rather than through `Router::layer`, which wraps (and boxes) every
    // route once more and so costs a service clone and a future allocation per request.
    observe::ObserveLayer::new(service).layer(router)
}

/// Runs the rest of the request on the service's control plane. Once there it runs to its
/// end even if the client goes away, as a write that began commits or rolls back whole.
async fn on_control_plane(State(service): State<Arc<Service>>, req: Request, next: Next) -> Response {
    match service.spawn_on_control(next.run(req)).await {
        Ok(response) => response,
        Err(e) => ApiError::Internal(format!("a control-plane request did not finish: {e}")).into_response(),
    }
}

/// A response carrying the `ETag` of a stored version.
pub(crate) fn with_etag(version: i64, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&crate::service::etag(version)) {
        response.headers_mut().insert(axum::http::header::ETAG, v);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound { code: "NOT_FOUND", message: "no such endpoint; see /openapi.json".into() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
