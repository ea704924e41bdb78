//! OFREP: single and bulk evaluation for `evaluate` tokens, answered from the in-memory
//! snapshot of the token's environment. Bodies follow the OpenFeature Remote Evaluation
//! Protocol, so any OFREP provider works against them.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flagd_core::{ErrorCode, EvaluationContext, Reason};
use serde_json::{Map, Value};

use super::json::UnreadBody;
use super::ofrep_answer::{self, BulkAnswer};
use super::ofrep_context::context;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{OfrepBulk, OfrepFailure, OfrepRequest, OfrepSuccess};
use crate::service::Service;
use crate::snapshot::Snapshot;

/// The OFREP routes.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_one))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_all))
}

/// A request-level failure (400) in OFREP's shape.
fn failure(key: Option<&str>, code: ErrorCode, details: String) -> Response {
    let mut body = Map::new();
    if let Some(key) = key {
        body.insert("key".into(), Value::String(key.to_owned()));
    }
    body.insert("errorCode".into(), Value::String(code.as_str().into()));
    body.insert("errorDetails".into(), Value::String(details));
    (StatusCode::BAD_REQUEST, axum::Json(Value::Object(body))).into_response()
}

/// The flag key of the path. One that does not decode (not UTF-8 once percent-decoded)
/// names no flag; it is refused in OFREP's shape, not with axum's plain-text 400, as is
/// one holding NUL, which every path of the API refuses.
struct FlagKey(String);

impl<S: Send + Sync> FromRequestParts<S> for FlagKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let details = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(key)) if !key.contains('\0') => return Ok(Self(key)),
            Ok(_) => "a flag key may not contain the NUL character (`%00`)".to_owned(),
            Err(e) => e.body_text(),
        };
        // OFREP's failure names the flag: the path's segment as sent.
        let raw = parts.uri.path().rsplit('/').next().unwrap_or_default();
        Err(failure(Some(raw), ErrorCode::ParseError, details))
    }
}

/// The snapshot of the token's environment. Checked before the body is read, so a
/// token of the wrong kind is refused without reading it.
fn token_snapshot(service: &Service, principal: &Principal) -> Result<Arc<Snapshot>, ApiError> {
    service.snapshot(principal.evaluation_environment()?)
}

/// Evaluates one flag in the token's environment.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    operation_id = "evaluateFlag",
    tag = "ofrep",
    params(("key" = String, Path, description = "Flag key")),
    request_body(content = Option<OfrepRequest>, description = "The context; an empty body is an empty context"),
    responses(
        (status = 200, description = "Evaluated", body = OfrepSuccess),
        (status = 400, description = "The body, context or flag key is unusable (`PARSE_ERROR`, `INVALID_CONTEXT`), or the \
        evaluation failed (`TARGETING_KEY_MISSING`, `GENERAL`, ...)", body = OfrepFailure),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not an `evaluate` token", body = ErrorBody),
        (status = 404, description = "No such flag in the token's environment (`FLAG_NOT_FOUND`)", body = OfrepFailure),
        (status = 413, description = "Body too large", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn evaluate_one(
    State(service): State<Arc<Service>>,
    principal: Principal,
    FlagKey(key): FlagKey,
    body: UnreadBody,
) -> Result<Response, ApiError> {
    let snapshot = token_snapshot(&service, &principal)?;
    let ctx = match context(&body.read().await?) {
        Ok(ctx) => ctx,
        Err((code, details)) => return Ok(failure(Some(&key), code, details)),
    };
    let position = snapshot.ruleset.position(&key);
    let resolution = match position {
        Some(position) => snapshot.ruleset.evaluate_at(position, &ctx),
        None => snapshot.ruleset.evaluate(&key, &ctx),
    };
    if let Some(position) = position {
        snapshot.counters.record(position, resolution.variant_index, resolution.reason);
    }
    let body = snapshot.answers.single(position, &key, &resolution).map_err(serialising)?;
    Ok((ofrep_answer::status(&resolution), [JSON_CONTENT_TYPE], body).into_response())
}

/// Evaluates every flag of the token's environment. The `ETag` is a hash of the answer:
/// send it back in `If-None-Match` to get 304 while nothing changed.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags",
    operation_id = "evaluateFlagsBulk",
    tag = "ofrep",
    params(("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer, or `*`")),
    request_body(content = Option<OfrepRequest>, description = "The context; an empty body is an empty context"),
    responses(
        (status = 200, description = "Every flag's result", body = OfrepBulk,
        headers(("ETag" = String, description = "Hash of this answer"))),
        (status = 304, description = "The answer is the one `If-None-Match` names",
        headers(("ETag" = String, description = "Hash of this answer"))),
        (status = 400, description = "The body or context is unusable; no `key`", body = OfrepFailure),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not an `evaluate` token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
    ),
    security(("bearerAuth" = []), ("ApiKeyAuth" = [])),
)]
async fn evaluate_all(
    State(service): State<Arc<Service>>,
    principal: Principal,
    IfNoneMatch(if_none_match): IfNoneMatch,
    body: UnreadBody,
) -> Result<Response, ApiError> {
    let snapshot = token_snapshot(&service, &principal)?;
    let ctx = match context(&body.read().await?) {
        Ok(ctx) => ctx,
        Err((code, details)) => return Ok(failure(None, code, details)),
    };
    let mut outcomes = Vec::with_capacity(snapshot.ruleset.len());
    let mut failed = false;
    for outcome in snapshot.ruleset.outcomes(&ctx) {
        failed |= outcome.reason == Reason::Error;
        outcomes.push(ofrep_answer::encode(outcome));
    }
    // A kept answer counts this request's evaluations (see `BulkAnswers`).
    let kept = if failed { None } else { snapshot.bulk.serve(&outcomes) };
    let BulkAnswer { body, etag } = match kept {
        Some(answer) => answer,
        None => {
            ofrep_answer::count(&snapshot.counters, &outcomes, 1);
            let answer = write_bulk(&snapshot, &ctx)?;
            if !failed {
                snapshot.bulk.keep(outcomes, answer.clone());
            }
            answer
        }
    };
    if if_none_match.as_ref().is_some_and(|held| names(held, &etag)) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((StatusCode::OK, [(header::ETAG, etag), JSON_CONTENT_TYPE], body).into_response())
}

/// Whether an `If-None-Match` list names `etag`. The comparison is weak (RFC 9110
/// 13.1.2): a proxy that compresses answers marks their tags `W/`, and must still get 304.
fn names(held: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(held) = held.to_str() else { return false };
    held.split(',').map(str::trim).any(|candidate| {
        let tag = candidate.strip_prefix("W/").unwrap_or(candidate);
        candidate == "*" || tag.as_bytes() == etag.as_bytes()
    })
}

/// The `If-None-Match` header, alone (the `HeaderMap` extractor would copy them all).
#[derive(Debug)]
struct IfNoneMatch(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(header::IF_NONE_MATCH).cloned()))
    }
}

/// Writes a bulk answer item by item (evaluation is pure, so this second pass gives the
/// results the counted one did). The ETag is a hash of the answer itself, so it changes
/// exactly when the answer does (including through time-based rules, which no change
/// sequence would capture).
fn write_bulk(snapshot: &Snapshot, ctx: &EvaluationContext) -> Result<BulkAnswer, ApiError> {
    let mut body = Vec::with_capacity(16 + snapshot.ruleset.len() * 128);
    body.extend_from_slice(b"{\"flags\":[");
    for (position, (key, resolution)) in snapshot.ruleset.evaluate_all(ctx).enumerate() {
        if position > 0 {
            body.push(b',');
        }
        snapshot.answers.write(Some(position), key, &resolution, &mut body).map_err(serialising)?;
    }
    body.extend_from_slice(b"]}");
    // Made once per kept answer, so a request that finds one copies no header bytes.
    let etag = HeaderValue::from_bytes(&body_etag(&body)).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(BulkAnswer { body: Bytes::from(body), etag })
}

const JSON_CONTENT_TYPE: (header::HeaderName, HeaderValue) =
    (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));

fn serialising(e: serde_json::Error) -> ApiError {
    ApiError::Internal(format!("serialising an evaluation: {e}"))
}

/// `"<16 hex digits>"`: the answer's hash as an entity tag (written by hand: `format!`
/// cost a bulk answer as much as hashing it).
fn body_etag(body: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = answer_hash(body);
    let mut tag = [b'"'; 18];
    for (i, digit) in tag.iter_mut().skip(1).take(16).enumerate() {
        *digit = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    tag
}

/// A 64-bit hash of an answer, eight bytes a step (std's SipHash, built to resist chosen
/// keys, which an ETag does not need, takes four times as long on a bulk answer). Each step
/// is a bijection of the state for a given word, so two answers of the same length that
/// differ in one word always hash apart; the length is mixed in for the others.
fn answer_hash(bytes: &[u8]) -> u64 {
    // Odd 64-bit constants with well-spread bits (the golden ratio's and √2's fractions).
    const M1: u64 = 0x9e37_79b9_7f4a_7c15;
    const M2: u64 = 0x6a09_e667_f3bc_c909;
    let step = |h: u64, word: u64| (h ^ word).wrapping_mul(M1).rotate_left(31);
    let mut chunks = bytes.chunks_exact(8);
    let mut h = (bytes.len() as u64).wrapping_mul(M2);
    for chunk in &mut chunks {
        h = step(h, u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or_default()));
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = step(h, u64::from_le_bytes(last));
    // Spread every input bit over the whole output.
    h ^= h >> 32;
    h = h.wrapping_mul(M2);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_changes_with_any_byte_of_the_answer() {
        let body = br#"{"flags":[{"key":"portal","value":true,"variant":"on","reason":"SPLIT","metadata":{}}]}"#;
        let etag = body_etag(body);
        for i in 0..body.len() {
            let mut changed = body.to_vec();
            changed[i] ^= 1;
            assert_ne!(body_etag(&changed), etag, "byte {i}");
        }
        assert_ne!(body_etag(&[body.as_slice(), b"\0"].concat()), etag, "a trailing zero byte");
        assert_eq!(body_etag(body), etag);
        assert_eq!(etag, format!("\"{:016x}\"", answer_hash(body)).as_bytes());
    }
}
