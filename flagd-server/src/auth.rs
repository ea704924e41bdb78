//! Bearer tokens: random values shown once, stored only as SHA-256 hashes, cached in
//! memory so that authenticating a request never touches the database.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::service::Service;
use crate::store::{Role, Token};

/// Prefix of every token value, so leaked tokens are recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "fdt_";

/// A new random token value (192 bits).
pub fn generate_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// A new random public token id.
pub fn generate_id() -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a token value.
pub fn hash_token(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Live tokens by the SHA-256 of their value, replaced whole whenever tokens change.
/// Keyed by the raw digest and shared by `Arc`, so authenticating a request costs one
/// hash and no allocation, or less for a value this thread saw recently (see [`Memo`]).
#[derive(Debug)]
pub struct TokenCache {
    by_digest: ArcSwap<DigestMap>,
    /// Which contents `by_digest` holds: a number no other cache or replacement has used,
    /// so that a thread's memo is used only with the contents it was filled from.
    generation: AtomicU64,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self { by_digest: ArcSwap::default(), generation: AtomicU64::new(next_generation()) }
    }
}

/// The keys are SHA-256 digests, already spread evenly whatever the token values, so the
/// map needs no collision-resistant hash of its own (SipHash cost as much as the lookup).
type DigestMap = HashMap<[u8; 32], Arc<Token>, rustc_hash::FxBuildHasher>;

/// A generation number unique in the process (see [`TokenCache::generation`]).
fn next_generation() -> u64 {
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

impl TokenCache {
    /// Replaces the cache with these tokens. A request that starts after this returns
    /// sees only these (a revoked token is refused from then on).
    pub fn replace(&self, tokens: Vec<Token>) {
        let entries = tokens.into_iter().filter_map(|t| Some((digest_of_hex(&t.hash)?, Arc::new(t))));
        self.by_digest.store(Arc::new(entries.collect()));
        // After the map: a reader that sees the new number reads the new map.
        self.generation.store(next_generation(), Ordering::Release);
    }

    /// Every token.
    pub fn all(&self) -> Vec<Arc<Token>> {
        self.by_digest.load().values().cloned().collect()
    }

    /// The token with this value, if it exists.
    pub fn find(&self, value: &str) -> Option<Arc<Token>> {
        let generation = self.generation.load(Ordering::Acquire);
        MEMO.with_borrow_mut(|memo| memo.find(generation, value.as_bytes(), || self.look_up(value)))
    }

    fn look_up(&self, value: &str) -> Option<Arc<Token>> {
        let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        self.by_digest.load().get(&digest).cloned()
    }
}

/// How many token values each thread remembers.
const MEMO_SLOTS: usize = 4;

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::default();
}

/// The last few token values a thread found live, with their tokens, for one generation
/// of one [`TokenCache`]. Clients send the same token on every request, and hashing it
/// and looking the digest up was about a sixth of what flagd-server adds to an HTTP
/// request's cost per evaluation (benches/README.md, "Where flagd-server's time goes").
/// Values are compared in a time that depends on their lengths only ([`same_bytes`]), so
/// response times tell nothing about how much of a remembered value a guess got right;
/// unknown values are never remembered.
#[derive(Default)]
struct Memo {
    generation: u64,
    slots: [Option<Remembered>; MEMO_SLOTS],
    /// The slot the next value found replaces.
    next: usize,
}

struct Remembered {
    value: Box<[u8]>,
    token: Arc<Token>,
}

impl Memo {
    fn find(
        &mut self,
        generation: u64,
        value: &[u8],
        look_up: impl FnOnce() -> Option<Arc<Token>>,
    ) -> Option<Arc<Token>> {
        if self.generation != generation {
            *self = Self { generation, ..Self::default() };
        }
        if let Some(known) = self.slots.iter().flatten().find(|r| same_bytes(&r.value, value)) {
            return Some(Arc::clone(&known.token));
        }
        let token = look_up()?;
        self.slots[self.next] = Some(Remembered { value: value.into(), token: Arc::clone(&token) });
        self.next = (self.next + 1) % MEMO_SLOTS;
        Some(token)
    }
}

/// Whether `a` and `b` hold the same bytes, comparing every byte whatever the first
/// difference. Not `subtle`: its barrier after every byte cost more than the SHA-256 the
/// memo saves.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y))) == 0
}

fn digest_of_hex(hash: &str) -> Option<[u8; 32]> {
    hex::decode(hash).ok()?.try_into().ok()
}

/// Who is calling: the token that authenticated the request.
#[derive(Debug, Clone)]
pub struct Principal {
    token: Arc<Token>,
}

/// The actor the audit log names for what the server does by itself.
pub(crate) const SYSTEM_ACTOR: &str = "flagd-server";

impl Principal {
    /// The server itself, for changes it makes on its own (first start).
    pub fn system() -> Self {
        let token = Token {
            id: String::new(),
            name: SYSTEM_ACTOR.into(),
            role: Role::Admin,
            environment: None,
            hash: String::new(),
            created_at: 0,
            revoked_at: None,
        };
        Self { token: Arc::new(token) }
    }

    /// The token's name: the actor in the audit log.
    pub fn name(&self) -> &str {
        &self.token.name
    }

    /// The token's id, which the audit log keeps beside its name; empty for the server.
    pub fn token_id(&self) -> &str {
        &self.token.id
    }

    /// What it may do.
    pub fn role(&self) -> Role {
        self.token.role
    }

    /// The environment an `evaluate` token is bound to.
    pub fn environment(&self) -> Option<&str> {
        self.token.environment.as_deref()
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Admin API reads: `read` or `admin`.
    Read,
    /// Admin API writes: `admin`.
    Write,
}

impl Principal {
    /// Refuses with 403 unless the token's role grants `access`.
    pub fn require(&self, access: Access) -> Result<(), ApiError> {
        let allowed = match access {
            Access::Read => matches!(self.role(), Role::Read | Role::Admin),
            Access::Write => self.role() == Role::Admin,
        };
        if allowed {
            return Ok(());
        }
        let need = match access {
            Access::Read => "a `read` or `admin` token",
            Access::Write => "an `admin` token",
        };
        Err(ApiError::Forbidden(format!("this token has role `{}`; this endpoint needs {need}", self.role().as_str())))
    }

    /// Reads of one environment's rulesets (snapshots, change streams): an `evaluate` token
    /// bound to that environment, or a `read` or `admin` token.
    pub fn require_rulesets_of(&self, env: &str) -> Result<(), ApiError> {
        match (self.role(), self.environment()) {
            (Role::Evaluate, Some(bound)) if bound == env => Ok(()),
            (Role::Evaluate, bound) => Err(ApiError::Forbidden(format!(
                "this `evaluate` token is bound to environment `{}`, not `{env}`",
                bound.unwrap_or("(none)")
            ))),
            _ => self.require(Access::Read),
        }
    }

    /// The environment an `evaluate` token selects, or 403 for other roles.
    pub fn evaluation_environment(&self) -> Result<&str, ApiError> {
        match (self.role(), self.environment()) {
            (Role::Evaluate, Some(env)) => Ok(env),
            _ => Err(ApiError::Forbidden(format!(
                "OFREP evaluation needs an `evaluate` token bound to an environment; this token has role `{}`",
                self.role().as_str()
            ))),
        }
    }
}

/// The token value a request carries: `Authorization: Bearer …` or `X-API-Key: …`.
/// Read as bytes (a header value holds no control character but tab), then as UTF-8: a
/// value that is not can name no token.
fn presented_token(parts: &Parts) -> Option<&str> {
    let header = |name| parts.headers.get(name).map(axum::http::HeaderValue::as_bytes);
    let bearer = header(axum::http::header::AUTHORIZATION).and_then(bearer_credentials).and_then(token_text);
    bearer.or_else(|| header(axum::http::HeaderName::from_static("x-api-key")).and_then(token_text))
}

/// The credentials of a `Bearer` header; the scheme's name is case-insensitive (RFC 9110
/// 11.1), `BEARER` as good as `Bearer`.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, credentials) = value.split_at_checked(b"Bearer ".len())?;
    scheme.eq_ignore_ascii_case(b"Bearer ").then_some(credentials)
}

fn token_text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value.trim_ascii()).ok()
}

impl Principal {
    /// The live token with this value, or 401.
    pub(crate) fn from_value(service: &Service, value: &str) -> Result<Self, ApiError> {
        // A blank value names no token, even one an earlier start stored with an empty value.
        if value.is_empty() {
            return Err(ApiError::Unauthorized("the token is blank".into()));
        }
        let token = service.tokens().find(value).ok_or_else(|| ApiError::Unauthorized("unknown token".into()))?;
        if token.revoked_at.is_some() {
            return Err(ApiError::Unauthorized("this token has been revoked".into()));
        }
        Ok(Self { token })
    }

    /// Whether the token still exists unrevoked, for sessions opened with it earlier.
    pub(crate) fn is_live(&self, service: &Service) -> bool {
        service.tokens().all().iter().any(|t| t.id == self.token.id && t.revoked_at.is_none())
    }
}

impl FromRequestParts<Arc<Service>> for Principal {
    type Rejection = ApiError;

    /// A token in the headers wins; without one, a console session cookie (see
    /// [`crate::http::session`]) stands in for it.
    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self, Self::Rejection> {
        if let Some(value) = presented_token(parts) {
            return Self::from_value(service, value);
        }
        service.sessions().authenticate(parts, service).unwrap_or_else(|| Err(no_token(parts)))
    }
}

/// The principal of a write: an `admin` token (or a console session of one), checked as the
/// request's head is read and so before its body: a token that may not write is told so
/// (403), not what is wrong with a body it may not send.
#[derive(Debug)]
pub struct Writer(pub Principal);

impl FromRequestParts<Arc<Service>> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, service).await?;
        principal.require(Access::Write)?;
        Ok(Self(principal))
    }
}

/// The 401 for a request without a usable token, naming what it sent instead: an
/// `Authorization` header of another scheme (`Basic …`) is a token in the wrong place.
fn no_token(parts: &Parts) -> ApiError {
    let what = if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
        "the `Authorization` header holds no bearer token"
    } else {
        "missing token"
    };
    ApiError::Unauthorized(format!("{what}: send `Authorization: Bearer <token>` or `X-API-Key: <token>`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, value: &str, revoked: bool) -> Token {
        Token {
            id: name.to_owned(),
            name: name.to_owned(),
            role: Role::Evaluate,
            environment: Some("production".into()),
            hash: hash_token(value),
            created_at: 0,
            revoked_at: revoked.then_some(1),
        }
    }

    fn found(cache: &TokenCache, value: &str) -> Option<(String, bool)> {
        cache.find(value).map(|t| (t.name.clone(), t.revoked_at.is_some()))
    }

    #[test]
    fn a_value_seen_before_finds_its_token_and_an_unknown_one_never_does() {
        let cache = TokenCache::default();
        cache.replace(vec![token("app", "fdt_app", false)]);
        for _ in 0..3 {
            assert_eq!(found(&cache, "fdt_app"), Some(("app".into(), false)));
            assert_eq!(found(&cache, "fdt_ap"), None);
            assert_eq!(found(&cache, "fdt_app "), None);
        }
    }

    #[test]
    fn a_revoked_or_deleted_token_is_seen_as_such_by_the_next_request() {
        let cache = TokenCache::default();
        cache.replace(vec![token("app", "fdt_app", false), token("ci", "fdt_ci", false)]);
        assert_eq!(found(&cache, "fdt_app"), Some(("app".into(), false)));
        assert_eq!(found(&cache, "fdt_ci"), Some(("ci".into(), false)));
        cache.replace(vec![token("app", "fdt_app", true)]);
        assert_eq!(found(&cache, "fdt_app"), Some(("app".into(), true)));
        assert_eq!(found(&cache, "fdt_ci"), None);
    }

    #[test]
    fn more_live_values_than_the_memo_holds_are_all_still_found() {
        let cache = TokenCache::default();
        let names: Vec<String> = (0..MEMO_SLOTS * 2 + 1).map(|i| format!("t{i}")).collect();
        cache.replace(names.iter().map(|n| token(n, &format!("fdt_{n}"), false)).collect());
        for _ in 0..3 {
            for name in &names {
                assert_eq!(found(&cache, &format!("fdt_{name}")), Some((name.clone(), false)));
            }
        }
    }

    #[test]
    fn two_caches_on_one_thread_each_answer_from_their_own_tokens() {
        let (one, two) = (TokenCache::default(), TokenCache::default());
        one.replace(vec![token("first", "fdt_same", false)]);
        two.replace(vec![token("second", "fdt_same", false)]);
        for _ in 0..2 {
            assert_eq!(found(&one, "fdt_same"), Some(("first".into(), false)));
            assert_eq!(found(&two, "fdt_same"), Some(("second".into(), false)));
        }
        assert_eq!(found(&TokenCache::default(), "fdt_same"), None);
    }
}
