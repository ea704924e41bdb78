//! The console: one HTML page, one stylesheet and one script, compiled into the binary
//! so that it works offline and always matches the API it talks to. It is not part of
//! the JSON API and so not in the OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::service::Service;

/// Everything the page may load comes from here; inline scripts and other origins are refused.
const POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One embedded file and its type.
struct Asset {
    content_type: &'static str,
    body: &'static str,
}

const PAGE: Asset = Asset { content_type: "text/html; charset=utf-8", body: include_str!("../../ui/index.html") };
const STYLE: Asset = Asset { content_type: "text/css; charset=utf-8", body: include_str!("../../ui/console.css") };
const SCRIPT: Asset =
    Asset { content_type: "text/javascript; charset=utf-8", body: include_str!("../../ui/console.js") };

/// The console's routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/ui", get(|| async { serve(&PAGE) }))
        .route("/ui/", get(|| async { serve(&PAGE) }))
        .route("/ui/console.css", get(|| async { serve(&STYLE) }))
        .route("/ui/console.js", get(|| async { serve(&SCRIPT) }))
}

fn serve(asset: &Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // Revalidate every time: a new binary must not run with an old script.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response()
}
