//! Cross-origin access to OFREP for browser apps (`--cors-origin`). Only the evaluation
//! routes answer preflights and name an allowed origin: the admin API never does, so a page
//! on another origin cannot drive it, whatever token it got hold of.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// A browser origin allowed to call OFREP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    /// `*`: every origin. OFREP needs no cookies, so a page anywhere can send its token.
    Any,
    /// One origin exactly as a browser sends it: `scheme://host[:port]`, lower case.
    Exact(HeaderValue),
}

impl std::fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            // Parsed from text that was checked to be ASCII.
            Self::Exact(value) => f.write_str(value.to_str().unwrap_or("?")),
        }
    }
}

/// How long a browser may keep a preflight's answer: an hour (Chromium keeps one at most
/// two, Firefox a day), so a page's first evaluation after it waits for one more round trip.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The layer for the OFREP routes, or none when no origin is allowed (no CORS headers).
pub fn layer(origins: &[AllowedOrigin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.contains(&AllowedOrigin::Any) {
        AllowOrigin::any()
    } else {
        let exact = origins.iter().filter_map(|o| match o {
            AllowedOrigin::Exact(value) => Some(value.clone()),
            AllowedOrigin::Any => None,
        });
        AllowOrigin::list(exact.collect::<Vec<_>>())
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-api-key"),
        ])
        // The bulk answer's version, which a browser client sends back in `If-None-Match`.
        .expose_headers([header::ETAG])
        .max_age(PREFLIGHT_MAX_AGE);
    Some(layer)
}

/// The origins of one `--cors-origin` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginList(pub Vec<AllowedOrigin>);

/// Reads one `--cors-origin` value: origins separated by commas. An empty one is none, as
/// from a variable left empty in a unit or compose file, or a trailing comma.
pub fn parse_origins(text: &str) -> Result<OriginList, String> {
    text.split(',').filter(|o| !o.trim().is_empty()).map(parse_origin).collect::<Result<_, _>>().map(OriginList)
}

/// Reads one origin. Browsers send an origin without path and without the
/// scheme's default port, so a value that differs from that would never match: it is
/// refused at start, saying what to write instead.
pub fn parse_origin(text: &str) -> Result<AllowedOrigin, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(AllowedOrigin::Any);
    }
    let lower = text.to_ascii_lowercase();
    let not_origin = |why: String| format!("`{text}` is not a browser origin: {why}");
    let (scheme, rest) = lower
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
        .ok_or_else(|| not_origin("write `*` or `http://HOST[:PORT]` or `https://HOST[:PORT]`".into()))?;
    if let Some(host_port) = rest.strip_suffix('/').filter(|h| !h.contains('/')) {
        return Err(not_origin(format!("an origin has no path, not even `/`; write `{scheme}://{host_port}`")));
    }
    let host_port = rest;
    if let Some(c) = host_port.chars().find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace()) {
        return Err(not_origin(format!("an origin is a scheme, a host and a port only, and has no `{c}`")));
    }
    let (host, port) = split_port(host_port);
    if host.is_empty() {
        return Err(not_origin("the host is missing".into()));
    }
    // As a browser writes it: digits only, no leading zero (`+8443` and `08443` would parse);
    // 0 stands for anything else.
    let number = |p: &str| {
        let written = p.bytes().all(|b| b.is_ascii_digit()) && !p.starts_with('0');
        if written { p.parse::<u16>().unwrap_or(0) } else { 0 }
    };
    match (port.map(number), scheme) {
        (Some(0), _) => Err(not_origin("the port is not a number from 1 to 65535 as written in full".into())),
        (Some(80), "http") | (Some(443), "https") => {
            Err(not_origin(format!("a browser leaves out the scheme's default port; write `{scheme}://{host}`")))
        }
        _ if !lower.is_ascii() => Err(not_origin("write the host in ASCII (punycode for other scripts)".into())),
        _ => HeaderValue::from_str(&lower)
            .map(AllowedOrigin::Exact)
            .map_err(|_| not_origin("it holds a control character".into())),
    }
}

/// `host` and its port, if it has one; an IPv6 host (`[::1]:8080`) keeps its colons.
fn split_port(host_port: &str) -> (&str, Option<&str>) {
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host_port.ends_with(']') => (host, Some(port)),
        _ => (host_port, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_as_browsers_send_them_or_refused_saying_what_to_write() {
        let exact = |s: &str| Ok(AllowedOrigin::Exact(HeaderValue::from_str(s).unwrap()));
        let cases = [
            ("*", Ok(AllowedOrigin::Any)),
            ("https://app.example.com", exact("https://app.example.com")),
            (" HTTPS://App.Example.com ", exact("https://app.example.com")),
            ("http://127.0.0.1:5173", exact("http://127.0.0.1:5173")),
            ("http://[::1]:8080", exact("http://[::1]:8080")),
            ("http://[::1]", exact("http://[::1]")),
            ("https://app.example.com/", Err("has no path, not even `/`; write `https://app.example.com`")),
            ("https://app.example.com/portal", Err("has no `/`")),
            ("https://app.example.com//", Err("has no `/`")),
            ("app.example.com", Err("write `*` or `http://HOST[:PORT]`")),
            ("ftp://app.example.com", Err("write `*` or `http://HOST[:PORT]`")),
            ("https://app.example.com:443", Err("default port; write `https://app.example.com`")),
            ("http://localhost:80", Err("default port; write `http://localhost`")),
            ("https://app.example.com:8443x", Err("the port is not a number")),
            ("https://app.example.com:0", Err("the port is not a number")),
            ("https://app.example.com:08443", Err("the port is not a number")),
            ("https://app.example.com:+8443", Err("the port is not a number")),
            ("https://app.example.com:", Err("the port is not a number")),
            ("https://", Err("the host is missing")),
            ("https://user@app.example.com", Err("has no `@`")),
            ("https://bücher.example", Err("punycode")),
        ];
        for (given, expected) in cases {
            let got = parse_origin(given);
            match (&got, &expected) {
                (Ok(origin), Ok(want)) => assert_eq!(origin, want, "{given}"),
                (Err(message), Err(part)) => assert!(message.contains(part), "{given}: {message}"),
                _ => panic!("{given}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_list_skips_empty_entries_and_refuses_a_wrong_one() {
        let read = |s: &str| parse_origins(s).map(|list| list.0.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(read(""), Ok(vec![]));
        assert_eq!(
            read("https://a.example, http://localhost:3000,"),
            Ok(vec!["https://a.example".to_owned(), "http://localhost:3000".to_owned()])
        );
        assert!(read("https://a.example,https://b.example/").unwrap_err().contains("`https://b.example/`"));
    }

    #[test]
    fn no_origin_means_no_cors_layer() {
        assert!(layer(&[]).is_none());
        assert!(layer(&[AllowedOrigin::Any]).is_some());
    }
}
