//! Request bodies: size-limited, nesting-limited JSON with errors a caller can act on.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, Request};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The deepest JSON nesting accepted (400 past it), far above any real definition.
pub const MAX_DEPTH: usize = 64;
/// How much of a refused body is still read, and dropped, before the 413 goes out. hyper
/// closes a connection whose request body was left unread, and a socket closed with
/// unread data resets the connection, which can reach a client still sending before it
/// reads the answer: it would see a broken pipe instead of the 413. Bodies declared
/// larger than this, and those of clients waiting for `100 Continue` (which have sent
/// nothing yet), are refused at once.
const DRAIN_LIMIT: u64 = 8 * 1024 * 1024;

/// A JSON object body of type `T`, which the request must carry: an empty body is
/// refused rather than read as `{}`, which would reset whatever a `PUT` replaces.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        read_object(req, true).await.map(JsonBody)
    }
}

/// A JSON object body of type `T` that may be left out: an empty body reads as `{}`, so
/// operations whose fields are all optional (enable, disable) need none.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        read_object(req, false).await.map(OptionalJsonBody)
    }
}

/// Reads a JSON object body; an empty one is refused when `needed`, else read as `{}`.
async fn read_object<T: DeserializeOwned>(req: Request, needed: bool) -> Result<T, ApiError> {
    let bytes = UnreadBody::from(req).read().await?;
    // A byte order mark alone (an emptied file saved by an editor on Windows) is no body
    // either: read as `{}`, it would reset what a `PUT` was meant to replace.
    if needed && without_bom(&bytes).iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("INVALID_BODY", "this request needs a JSON object body"));
    }
    parse(&bytes)
}

/// The whole body as bytes, limited like every body (for bodies that are not JSON).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        UnreadBody::from(req).read().await.map(RawBody)
    }
}

/// A request's body, not yet read, with what reading it needs from the request's head.
/// Handlers take this instead of the whole `Request`: an async function keeps its
/// arguments for its whole life, so a `Request` passed down two or three calls is kept two
/// or three times (240 bytes each) in the future axum boxes for every request, where this
/// costs 24.
#[derive(Debug)]
pub struct UnreadBody {
    body: Body,
    waits_for_continue: bool,
}

impl From<Request> for UnreadBody {
    fn from(req: Request) -> Self {
        let waits_for_continue = waits_for_continue(req.headers());
        Self { body: req.into_body(), waits_for_continue }
    }
}

impl<S: Send + Sync> FromRequest<S> for UnreadBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(req.into())
    }
}

impl UnreadBody {
    /// Reads the whole body, refusing more than [`MAX_BODY_BYTES`]. Every handler reads its
    /// body through here, so the limit needs no per-request extension (axum's
    /// `DefaultBodyLimit` costs a map insertion on every request, bodies or not). A body
    /// that arrives as one piece, as small ones do, is returned as that piece: no queue of
    /// pieces and no copy. A body over the limit is read on and dropped before the 413 (see
    /// [`DRAIN_LIMIT`] for why and how far).
    pub async fn read(self) -> Result<Bytes, ApiError> {
        self.read_up_to(MAX_BODY_BYTES, "").await
    }

    /// [`UnreadBody::read`] with another limit, for the one body that may be larger (an
    /// import file: a whole environment, see `--max-import-mib`), and the `hint` its 413
    /// gives (see [`ApiError::PayloadTooLarge`]).
    pub async fn read_up_to(self, limit: usize, hint: &'static str) -> Result<Bytes, ApiError> {
        let Self { mut body, waits_for_continue } = self;
        if usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX) > limit {
            return Err(refuse(body, waits_for_continue, limit, hint).await);
        }
        let mut whole = Pieces { limit, ..Pieces::default() };
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("could not read the request body: {e}")))?;
            // Trailers are not part of the body.
            if let Ok(data) = frame.into_data()
                && !whole.push(data)
            {
                return Err(refuse(body, false, limit, hint).await);
            }
        }
        Ok(whole.into_bytes())
    }
}

/// Whether the client sent `Expect: 100-continue` and holds its body until asked for it
/// (curl does for bodies over 1 MiB). hyper asks only once the body is read.
fn waits_for_continue(headers: &axum::http::HeaderMap) -> bool {
    headers.get(axum::http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The 413 for a body over `limit`, after reading the rest of it up to [`DRAIN_LIMIT`]
/// unless the client is `waiting` for `100 Continue`.
async fn refuse(mut body: Body, waiting: bool, limit: usize, hint: &'static str) -> ApiError {
    let mut left = if waiting || body.size_hint().lower() > DRAIN_LIMIT { 0 } else { DRAIN_LIMIT };
    while left > 0 {
        match body.frame().await {
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                left = left.saturating_sub(u64::try_from(len).unwrap_or(u64::MAX));
            }
            _ => break,
        }
    }
    ApiError::PayloadTooLarge { limit, hint }
}

/// A body as it arrives: its first piece as given, the rest joined to it, up to `limit`
/// bytes in all.
#[derive(Default)]
struct Pieces {
    first: Bytes,
    joined: Option<Vec<u8>>,
    limit: usize,
}

impl Pieces {
    /// Adds `data`, or returns false, unchanged, when the body would pass the limit.
    fn push(&mut self, data: Bytes) -> bool {
        let len = self.joined.as_ref().map_or(self.first.len(), Vec::len);
        if len.saturating_add(data.len()) > self.limit {
            return false;
        }
        match &mut self.joined {
            Some(joined) => joined.extend_from_slice(&data),
            None if self.first.is_empty() => self.first = data,
            None => {
                let mut joined = Vec::with_capacity(len + data.len());
                joined.extend_from_slice(&self.first);
                joined.extend_from_slice(&data);
                self.joined = Some(joined);
            }
        }
        true
    }

    fn into_bytes(self) -> Bytes {
        self.joined.map_or(self.first, Bytes::from)
    }
}

/// Parses a body into `T` after checking its depth. Every body of this API is an object:
/// anything else is refused here, because serde would read a struct from an array of its
/// fields in order (`["k"]` as a flag keyed `k`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = without_bom(bytes);
    check_body(bytes)?;
    let bytes: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => b"{}",
        Some(b'{') => bytes,
        Some(_) => return Err(ApiError::bad_request("INVALID_BODY", "the body must be a JSON object")),
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("INVALID_BODY", format!("invalid JSON body: {e}")))
}

/// `bytes` without a leading UTF-8 byte order mark, which editors on Windows write at the
/// start of a file saved as UTF-8. JSON parsers may ignore it (RFC 8259, 8.1); serde_json
/// does not, and a file or body that is otherwise fine was refused as "not JSON".
pub fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Checks an admin body before it is parsed: its depth ([`check_depth`]), that no object
/// in it names a key twice (serde would keep the last), and that no string in it holds
/// the NUL character. PostgreSQL cannot store NUL in text and answers an error for any
/// text that holds it, even in a lookup, so it is refused on every backend alike, before
/// anything is read or written.
pub fn check_body(bytes: &[u8]) -> Result<(), ApiError> {
    check_depth(bytes)?;
    if holds_nul(bytes) {
        return Err(ApiError::bad_request("INVALID_BODY", "text may not contain the NUL character (`\\u0000`)"));
    }
    match flagd_core::find_repeated_key(bytes) {
        Some(repeated) => Err(ApiError::bad_request("INVALID_BODY", repeated.to_string())),
        None => Ok(()),
    }
}

/// Whether JSON text holds the escape `\u0000`, the only way it can carry a NUL. After an
/// odd run of backslashes the `\` is itself escaped: `\\u0000` is the text `\u0000`.
fn holds_nul(bytes: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"\\u0000";
    let escaped =
        |at: usize| bytes.get(..at).unwrap_or_default().iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1;
    bytes.windows(ESCAPE.len()).enumerate().any(|(at, window)| window == ESCAPE && !escaped(at))
}

/// Refuses JSON nested deeper than [`MAX_DEPTH`] before parsing it, so a hostile body
/// costs a scan and not a deep recursion.
pub fn check_depth(bytes: &[u8]) -> Result<(), ApiError> {
    // Nesting can go no deeper than the body has opening brackets, and counting them is a
    // fraction of the scan below: most bodies (every OFREP context) stop here.
    let openers = bytes.iter().fold(0usize, |n, &b| n + usize::from(b == b'[' || b == b'{'));
    if openers <= MAX_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ApiError::bad_request(
                        "TOO_DEEP",
                        format!("JSON nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            (false, _, _) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_body(req: Request) -> Result<Bytes, ApiError> {
        UnreadBody::from(req).read().await
    }

    #[test]
    fn depth_counts_only_structure_outside_strings() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert!(check_depth(deep.as_bytes()).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check_depth(ok.as_bytes()).is_ok());
        let in_string = format!("{{\"a\": \"{}\\\"\"}}", "[".repeat(500));
        assert!(check_depth(in_string.as_bytes()).is_ok());
    }

    /// A request whose body arrives in these pieces, with no declared length.
    fn streamed(pieces: Vec<Vec<u8>>) -> Request {
        let stream = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
        Request::new(Body::from_stream(stream))
    }

    #[tokio::test]
    async fn a_body_in_pieces_is_read_whole_and_refused_past_the_limit() {
        let body = read_body(streamed(vec![b"{\"a\":".to_vec(), b"".to_vec(), b"1}".to_vec()])).await.unwrap();
        assert_eq!(&body[..], b"{\"a\":1}");
        let one = read_body(streamed(vec![b"{}".to_vec()])).await.unwrap();
        assert_eq!(&one[..], b"{}");
        let at_limit = read_body(streamed(vec![vec![b' '; MAX_BODY_BYTES / 2]; 2])).await.unwrap();
        assert_eq!(at_limit.len(), MAX_BODY_BYTES);
        let over = read_body(streamed(vec![vec![b' '; MAX_BODY_BYTES / 2], vec![b' '; MAX_BODY_BYTES / 2 + 1]])).await;
        assert!(matches!(over, Err(ApiError::PayloadTooLarge { .. })), "{over:?}");
        let declared = Request::new(Body::from(vec![b' '; MAX_BODY_BYTES + 1]));
        assert!(matches!(read_body(declared).await, Err(ApiError::PayloadTooLarge { .. })));
    }

    /// A body that declares its `.0` bytes and never sends any: reading it waits for ever.
    struct Withheld(u64);

    impl HttpBody for Withheld {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }

        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.0)
        }
    }

    fn withheld(len: usize, expect: Option<&'static str>) -> Request {
        let mut req = Request::new(Body::new(Withheld(len as u64)));
        if let Some(value) = expect {
            req.headers_mut().insert(axum::http::header::EXPECT, axum::http::HeaderValue::from_static(value));
        }
        req
    }

    #[tokio::test]
    async fn a_refused_body_is_read_to_its_end_unless_nothing_was_sent_or_it_is_huge() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let taken = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&taken);
        let pieces = vec![vec![b' '; MAX_BODY_BYTES / 2 + 1]; 3];
        let stream = futures_util::StreamExt::inspect(
            futures_util::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>)),
            move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            },
        );
        let over = read_body(Request::new(Body::from_stream(stream))).await;
        assert!(matches!(over, Err(ApiError::PayloadTooLarge { .. })), "{over:?}");
        assert_eq!(taken.load(Ordering::Relaxed), 3, "the pieces past the limit were read too");

        let at_once = std::time::Duration::from_secs(5);
        for (len, expect) in [(MAX_BODY_BYTES + 1, Some("100-continue")), (DRAIN_LIMIT as usize + 1, None)] {
            let refused = tokio::time::timeout(at_once, read_body(withheld(len, expect))).await;
            assert!(matches!(refused, Ok(Err(ApiError::PayloadTooLarge { .. }))), "{len} {expect:?}: {refused:?}");
        }
        // Declared over the limit, within the drain limit, nothing waiting: it is read.
        let read_on =
            tokio::time::timeout(std::time::Duration::from_millis(50), read_body(withheld(MAX_BODY_BYTES + 1, None)));
        assert!(read_on.await.is_err(), "the body was not read before the 413");
    }

    #[test]
    fn empty_bodies_read_as_empty_objects() {
        let v: serde_json::Value = parse(b"  ").unwrap();
        assert_eq!(v, serde_json::json!({}));
    }

    #[test]
    fn nul_is_refused_in_any_string_and_only_nul() {
        let refused = [r#"{"reason": "a\u0000b"}"#, r#"{"\u0000": 1}"#, r#"{"a": ["\\\u0000"]}"#];
        for body in refused {
            let read = parse::<serde_json::Value>(body.as_bytes());
            assert!(matches!(read, Err(ApiError::BadRequest { code: "INVALID_BODY", .. })), "{body}: {read:?}");
        }
        // An escaped backslash then `u0000` is text, not NUL.
        for body in [r#"{"reason": "\\u0000"}"#, r#"{"a": "\u0001 \\\\u0000"}"#] {
            assert!(parse::<serde_json::Value>(body.as_bytes()).is_ok(), "{body}");
        }
    }

    #[test]
    fn a_key_named_twice_is_refused_with_where_it_is() {
        let refused = parse::<serde_json::Value>(br#"{"key": "a", "variants": {"on": 1, "on": 2}}"#);
        let Err(ApiError::BadRequest { code: "INVALID_BODY", message }) = refused else {
            panic!("{refused:?}");
        };
        assert_eq!(message, "`on` is named twice in `variants` (line 1, column 39)");
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::parse;
        use crate::error::ApiError;

        /// A body type serde would also read from an array of its fields, `[a, b]`. Only
        /// whether it parses matters, so its fields are never read.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Probe {
            a: Option<Value>,
            b: Option<Value>,
        }

        /// A scalar, or an array or object of scalars: what matters is the outer kind.
        fn json_value() -> impl Strategy<Value = Value> {
            let scalar = || {
                prop_oneof![
                    Just(Value::Null),
                    any::<bool>().prop_map(Value::Bool),
                    any::<i64>().prop_map(Value::from),
                    "[a-z]{0,4}".prop_map(Value::String),
                ]
            };
            prop_oneof![
                scalar(),
                prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[ab]", scalar(), 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        }

        /// Text made of the pieces that matter to finding NUL in JSON: NUL itself, other
        /// control characters, backslashes, quotes, and the text of the escape `\u0000`.
        fn tricky_text() -> impl Strategy<Value = String> {
            let piece = prop::sample::select(vec!["a", "\\", "\"", "\0", "\u{1}", "u0000", "\\u0000"]);
            prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
        }

        proptest! {
            #[test]
            fn a_body_is_read_only_when_it_is_an_object(value in json_value(), pad in "[ \t\n\r]{0,3}") {
                let body = format!("{pad}{value}");
                let read = parse::<Probe>(body.as_bytes());
                if value.is_object() {
                    prop_assert!(read.is_ok(), "{}: {:?}", body, read);
                } else {
                    let refused = matches!(read, Err(ApiError::BadRequest { code: "INVALID_BODY", .. }));
                    prop_assert!(refused, "{}: {:?}", body, read);
                }
            }

            #[test]
            fn a_body_is_refused_exactly_when_a_string_in_it_holds_nul(key in tricky_text(), text in tricky_text()) {
                let body = serde_json::to_vec(&serde_json::json!({"k": [{ key.as_str(): text.as_str() }]}))
                    .unwrap_or_default();
                let holds_nul = key.contains('\0') || text.contains('\0');
                prop_assert_eq!(parse::<Value>(&body).is_err(), holds_nul, "{}", String::from_utf8_lossy(&body));
            }

            #[test]
            fn no_body_makes_parsing_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
                let _ = parse::<Probe>(&bytes);
            }
        }
    }
}
