//! The load harness's ceiling: a bare axum server on the same axum/tokio as flagd-server,
//! answering the two OFREP routes with fixed bodies. Whatever flagd-server loses against
//! it under the same load is the cost of authenticating, parsing the context, evaluating
//! and serialising; see benches/README.md ("Server load").
//!
//! Usage: `ofrep_ceiling [--listen ADDR] [--single-body FILE] [--bulk-body FILE]`. The
//! driver passes bodies captured from flagd-server so both answer with the same bytes;
//! without them, built-in bodies of the same shape are used.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

// The same allocator as flagd-server, so that the ratio measures flagd-server's own work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Bodies {
    single: Bytes,
    bulk: Bytes,
    etag: HeaderValue,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut listen: SocketAddr = "127.0.0.1:8014".parse()?;
    let mut single = Bytes::from(serde_json::to_vec(&default_item(0))?);
    let mut bulk = Bytes::from(serde_json::to_vec(&json!({"flags": (0..20).map(default_item).collect::<Vec<_>>()}))?);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value()?.parse()?,
            "--single-body" => single = Bytes::from(std::fs::read(value()?)?),
            "--bulk-body" => bulk = Bytes::from(std::fs::read(value()?)?),
            _ => return Err(format!("unknown argument {arg}; see the module documentation").into()),
        }
    }
    // flagd-server derives its ETag from the body; a constant stands in for that work's
    // result so the response headers match.
    let etag = HeaderValue::from_static("\"0123456789abcdef\"");
    let bodies = Arc::new(Bodies { single, bulk, etag });

    let app = Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_one))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_all))
        .with_state(bodies);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("ofrep_ceiling listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// One item shaped like flagd-server's, cycling through the reasons it returns.
fn default_item(i: usize) -> Value {
    let reason = ["TARGETING_MATCH", "SPLIT", "STATIC", "DEFAULT", "DISABLED"][i % 5];
    let variant = ["on", "off"][i % 2];
    json!({"key": format!("flag_{i:02}"), "value": variant == "on", "variant": variant, "reason": reason, "metadata": {}})
}

/// The same early refusals a real server makes, so neither side skips reading the request.
fn check(headers: &HeaderMap, body: &Bytes) -> Option<Response> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Some((StatusCode::UNAUTHORIZED, "missing token").into_response());
    }
    if body.is_empty() {
        return Some((StatusCode::BAD_REQUEST, "empty body").into_response());
    }
    None
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

async fn evaluate_one(
    State(bodies): State<Arc<Bodies>>,
    Path(_key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = check(&headers, &body) {
        return refusal;
    }
    json_response(bodies.single.clone())
}

async fn evaluate_all(State(bodies): State<Arc<Bodies>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = check(&headers, &body) {
        return refusal;
    }
    let mut response = json_response(bodies.bulk.clone());
    response.headers_mut().insert(header::ETAG, bodies.etag.clone());
    response
}
