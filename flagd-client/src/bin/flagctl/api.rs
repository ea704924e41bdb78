//! The admin API over HTTP: requests with the bearer token, and server errors turned
//! into [`Failure`]s whose messages say what to do next.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::exit::Failure;

/// How long a connection may take to open; at most half the request timeout, so that a
/// server that cannot be reached is told from one that was sent a request and did not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a request is about, so that an error can name it and point at the next command.
#[derive(Debug, Default, Clone, Copy)]
pub struct Target<'a> {
    /// The flag concerned.
    pub flag: Option<&'a str>,
    /// The environment concerned.
    pub env: Option<&'a str>,
    /// The segment concerned.
    pub segment: Option<&'a str>,
    /// The token id concerned.
    pub token: Option<&'a str>,
    /// The replica id concerned.
    pub replica: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// A flag, optionally in one environment.
    pub fn flag(flag: &'a str, env: Option<&'a str>) -> Self {
        Self { flag: Some(flag), env, ..Self::default() }
    }

    /// An environment.
    pub fn env(env: &'a str) -> Self {
        Self { env: Some(env), ..Self::default() }
    }

    /// A name no URL can carry as a path segment: `..` would name the parent route (even
    /// percent-encoded), `.` the route itself. No flag, environment, segment, token or
    /// replica is named so.
    fn unaddressable(&self) -> Option<&'a str> {
        [self.flag, self.env, self.segment, self.token, self.replica]
            .into_iter()
            .flatten()
            .find(|name| matches!(*name, "." | ".."))
    }
}

/// A successful answer.
#[derive(Debug)]
pub struct Reply {
    /// The `ETag` header, if any.
    pub etag: Option<String>,
    /// The body; `null` when empty (an answer that is no JSON is an error).
    pub body: Value,
}

/// One request to send.
#[derive(Debug)]
pub struct Request<'a> {
    method: Method,
    path: String,
    body: Option<Value>,
    query: Vec<(&'static str, String)>,
    if_match: Option<String>,
    /// `None`: the session's `--request-timeout`.
    timeout: Option<Duration>,
    /// Whether the request may change something (a `POST` that only evaluates does not).
    writes: bool,
    target: Target<'a>,
}

impl<'a> Request<'a> {
    /// `method path`, about `target`.
    pub fn new(method: Method, path: impl Into<String>, target: Target<'a>) -> Self {
        let writes = method != Method::GET;
        Self { method, path: path.into(), body: None, query: Vec::new(), if_match: None, timeout: None, writes, target }
    }

    /// With a JSON body.
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// With a query parameter.
    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    /// With `If-Match`.
    pub fn if_match(mut self, etag: Option<String>) -> Self {
        self.if_match = etag;
        self
    }

    /// A request that changes nothing, whatever its method (an evaluation, a dry run).
    pub fn read_only(mut self) -> Self {
        self.writes = false;
        self
    }

    /// With another overall timeout than `--request-timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A non-2xx answer, before it becomes a [`Failure`].
#[derive(Debug)]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// The error code (`FLAG_NOT_FOUND`, `WAIT_TIMEOUT`, …), or `HTTP_{status}`.
    pub code: String,
    /// The server's message.
    pub message: String,
    /// The whole body.
    pub body: Value,
}

/// The admin API of one server, with one token.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// `--request-timeout`.
    request_timeout: Duration,
}

pub use flagd_client::path_segment as segment;

/// `FLAGD_URL` as the library checks a server URL ([`flagd_client::base_url`]), refused in
/// flagctl's words.
fn checked_base(base: &str) -> Result<String, Failure> {
    flagd_client::base_url(base).map_err(|why| {
        Failure::Usage(format!(
            "FLAGD_URL (or --url) `{}` {why}: write http://HOST[:PORT][/PREFIX] or https://…, \
             such as http://127.0.0.1:8013",
            base.trim()
        ))
    })
}

/// The token as it is sent: without surrounding whitespace (a value read from a file often
/// ends in a newline; the server reads headers trimmed), none when empty, and refused when
/// it holds a control character, which no header may carry.
fn checked_token(token: Option<String>) -> Result<Option<String>, Failure> {
    let Some(token) = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if token.chars().any(char::is_control) {
        return Err(Failure::Usage(
            "FLAGD_TOKEN (or --token) holds a control character (a line break?); set it to the token's value alone"
                .into(),
        ));
    }
    Ok(Some(token))
}

/// The certificates of `--ca-cert FILE`.
fn authorities(file: &Path) -> Result<Vec<reqwest::Certificate>, Failure> {
    let shown = file.display();
    let refused = |why: String| {
        Failure::Usage(format!(
            "--ca-cert (FLAGD_CA_CERT) {shown} {why}; give the PEM file of the certificate authority that signed \
             the certificate FLAGD_URL presents"
        ))
    };
    let unreadable = |e: std::io::Error| refused(format!("cannot be read ({e})"));
    let opened = std::fs::File::open(file).map_err(unreadable)?;
    // A bundle of every public authority is about 200 KiB; a larger file is another file.
    let Some(pem) = crate::transfer::read_at_most(opened, MAX_CA_BYTES).map_err(unreadable)? else {
        return Err(refused("is larger than 4 MiB, more than any certificate bundle".to_owned()));
    };
    flagd_client::root_certificates(&pem).map_err(|why| refused(why.to_string()))
}

const MAX_CA_BYTES: u64 = 4 * 1024 * 1024;

/// `/api/v1/flags/{key}/environments/{env}`.
pub fn config_path(key: &str, env: &str) -> String {
    format!("/api/v1/flags/{}/environments/{}", segment(key), segment(env))
}

impl Api {
    /// A client for the server at `base` (`http://host:port`) whose requests give up
    /// after `request_timeout` unless they say otherwise.
    pub fn new(
        base: &str,
        token: Option<String>,
        request_timeout: Duration,
        ca_cert: Option<&Path>,
    ) -> Result<Self, Failure> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout / 2))
            .user_agent(concat!("flagctl/", env!("CARGO_PKG_VERSION")))
            // A redirect followed would drop the token on another host or port, or replay a
            // write as a GET: it is reported instead (see `exchange`).
            .redirect(reqwest::redirect::Policy::none());
        if let Some(file) = ca_cert {
            for certificate in authorities(file)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Failure::Server(format!("cannot set up HTTP: {e}; check the TLS setup of this machine")))?;
        let base = checked_base(base)?;
        Ok(Self { http, base, token: checked_token(token)?, request_timeout })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `request`; any non-2xx answer becomes a [`Failure`] naming its target.
    pub async fn send(&self, request: Request<'_>) -> Result<Reply, Failure> {
        let target = request.target;
        self.exchange(request).await?.map_err(|refusal| explain(&refusal, &target))
    }

    /// Sends `request`; a non-2xx answer is returned for the caller to interpret.
    pub async fn exchange(&self, request: Request<'_>) -> Result<Result<Reply, Refusal>, Failure> {
        if let Some(name) = request.target.unaddressable() {
            return Err(Failure::Usage(format!(
                "`{name}` names nothing flagd has: a URL path would read it as a step to another route (keys and \
                 names are lowercase letters, digits, `_`, `.` and `-`, starting with a letter or digit); nothing \
                 was sent"
            )));
        }
        let url = format!("{}{}", self.base, request.path);
        let timeout = request.timeout.unwrap_or(self.request_timeout);
        let mut builder = self.http.request(request.method.clone(), &url).timeout(timeout);
        if !request.query.is_empty() {
            builder = builder.query(&request.query);
        }
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(etag) = &request.if_match {
            builder = builder.header(reqwest::header::IF_MATCH, etag);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let unanswered = |e: reqwest::Error| self.unanswered(&e, &request);
        let response = builder.send().await.map_err(unanswered)?;
        let status = response.status().as_u16();
        let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if (300..400).contains(&status) {
            return Err(self.redirected(status, response.headers().get(reqwest::header::LOCATION)));
        }
        let text = response.text().await.map_err(unanswered)?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(body) => body,
                Err(_) => return self.not_flagd(status, &text),
            }
        };
        if (200..300).contains(&status) {
            return Ok(Ok(Reply { etag, body }));
        }
        // flagd-server refuses in one of two shapes (its API's, OFREP's); any other refusal
        // came from something else at that address, and says nothing about the flag.
        if !body["error"].is_object() && !body["errorCode"].is_string() {
            return self.not_flagd(status, &text);
        }
        Ok(Err(refusal(status, body)))
    }

    /// A redirect, which flagctl does not follow: `FLAGD_URL` should name where it leads.
    fn redirected(&self, status: u16, location: Option<&reqwest::header::HeaderValue>) -> Failure {
        let to = location.and_then(|v| v.to_str().ok()).unwrap_or("another address");
        Failure::Usage(format!(
            "{} redirects to {to} (HTTP {status}); set FLAGD_URL (or --url) to the address it redirects to: \
             flagctl does not follow redirects, which would drop its token or turn a write into a read",
            self.base
        ))
    }

    /// An answer not in flagd's JSON: no flagd-server sent it, so the command cannot have
    /// done what it was asked. A 5xx is a refusal like flagd's own (a proxy whose flagd is
    /// restarting: a wait asks again); anything else is [`Failure::NotFlagd`].
    fn not_flagd(&self, status: u16, text: &str) -> Result<Result<Reply, Refusal>, Failure> {
        let start: String = text.trim().chars().take(60).map(|c| if c.is_control() { ' ' } else { c }).collect();
        let message = format!(
            "{} answered HTTP {status} with something other than flagd's JSON (`{start}…`); check that FLAGD_URL \
             (or --url) names flagd-server, such as http://flagd:8013 (without /api/v1), or the proxy in front of it",
            self.base
        );
        if status >= 500 {
            return Ok(Err(Refusal { status, code: format!("HTTP_{status}"), message, body: Value::Null }));
        }
        if status == 413 {
            // flagd-server answers its own 413 in JSON: this one came from a proxy's body limit.
            return Err(Failure::Usage(format!(
                "{} refused the request as too large (HTTP 413) before flagd-server saw it: the proxy in front of \
                 it limits request bodies (nginx: client_max_body_size); raise that limit to flagd-server's \
                 --max-import-mib; nothing was changed",
                self.base
            )));
        }
        Err(Failure::NotFlagd(message))
    }

    /// No answer to a request: a server that could not be reached, or one that took longer
    /// than its timeout to answer, in which case a write may have been made all the same.
    /// (The connect timeout is shorter than any request timeout, so a timeout that is not
    /// the connect's came after the request could be sent.)
    fn unanswered(&self, e: &reqwest::Error, request: &Request<'_>) -> Failure {
        if e.is_timeout() && !e.is_connect() {
            let within = match request.timeout {
                Some(timeout) => crate::duration::show(timeout),
                None => format!("{} (--request-timeout)", crate::duration::show(self.request_timeout)),
            };
            let after = if request.writes {
                "the change may have been made all the same: look before trying again (`flagctl get`, `flagctl audit`)"
            } else {
                "try again later"
            };
            return Failure::Server(format!("flagd at {} did not answer within {within}; {after}", self.base));
        }
        let detail = flagd_client::with_causes(e);
        // rustls names the case `UnknownIssuer`: a certificate a private authority signed.
        let hint = if detail.contains("UnknownIssuer") {
            "; if a private certificate authority signed its certificate, give its PEM file with --ca-cert (or \
             FLAGD_CA_CERT)"
        } else {
            ""
        };
        Failure::Server(format!(
            "cannot reach flagd at {} ({detail}); check FLAGD_URL (or --url) and that flagd-server is running{hint}",
            self.base
        ))
    }
}

/// Reads both error shapes the server uses: the admin API's `{"error": {"code",
/// "message"}}` and OFREP's `{"errorCode", "errorDetails"}`.
fn refusal(status: u16, body: Value) -> Refusal {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let (code, message) = match (&body["error"], &body["errorCode"]) {
        (Value::Object(e), _) => (e.get("code").and_then(text), e.get("message").and_then(text)),
        (_, Value::String(code)) => (Some(code.clone()), text(&body["errorDetails"])),
        _ => (None, None),
    };
    Refusal {
        status,
        code: code.unwrap_or_else(|| format!("HTTP_{status}")),
        message: message.unwrap_or_else(|| format!("HTTP {status}")),
        body,
    }
}

/// Turns a refusal into a failure whose message names what was refused and what to do.
pub fn explain(r: &Refusal, t: &Target<'_>) -> Failure {
    let in_env = t.env.map(|e| format!(" in {e}")).unwrap_or_default();
    let env = t.env.unwrap_or("?");
    let message = &r.message;
    match (r.status, r.code.as_str()) {
        (401, _) => Failure::Server(format!(
            "the server refused the token ({message}); set FLAGD_TOKEN (or --token) to a valid token: \
             reads need a `read` or `admin` token, writes an `admin` token (`flagctl token create`)"
        )),
        (403, _) => Failure::Server(format!(
            "the token is not allowed to do this ({message}); use an `admin` token for writes and token \
             management, a `read` or `admin` token for reads (set FLAGD_TOKEN or --token)"
        )),
        // A flag has a configuration in every environment, so it is missing from all of
        // them: naming the environment asked would suggest it exists in another.
        (404, "FLAG_NOT_FOUND") => Failure::NotFound(format!(
            "{}; list flags with `flagctl list`",
            t.flag.map_or_else(|| message.clone(), |flag| format!("flag `{flag}` does not exist"))
        )),
        (404, "ENVIRONMENT_NOT_FOUND") => Failure::NotFound(format!(
            "{}; list environments with `flagctl environments`",
            t.env.map_or_else(|| message.clone(), |env| format!("environment `{env}` not found"))
        )),
        (404, "SEGMENT_NOT_FOUND") => Failure::NotFound(format!(
            "segment `{}` not found in {env}; list segments with `flagctl segment list --env {env}`",
            t.segment.unwrap_or("?")
        )),
        (404, "REPLICA_NOT_FOUND") => Failure::NotFound(format!("{message}; `flagctl replica list` lists them")),
        (404, "TOKEN_NOT_FOUND") => Failure::NotFound(format!(
            "token `{}` not found; list tokens (and their ids) with `flagctl token list`",
            t.token.unwrap_or("?")
        )),
        // Waiting for it could only end in a timeout that claims the change is stored.
        (404, "CHANGE_NOT_FOUND") => Failure::NotFound(format!(
            "{message}: wait for the `version` a write answered with (`flagctl get KEY --env ENV -o json` shows a \
             configuration's)"
        )),
        (404, _) => Failure::NotFound(format!(
            "{message}; this server may be older than flagctl: check --url and upgrade flagd-server"
        )),
        (409, "SEGMENT_IN_USE") => Failure::Conflict(format!(
            "{message} (`flagctl get FLAG --env {env}` shows a flag's rules), then delete the segment again"
        )),
        (409, "LAST_ADMIN_TOKEN") => Failure::Conflict(format!(
            "{message}: create one with `flagctl token create NAME --role admin`, then revoke this one"
        )),
        (409, "ALREADY_EXISTS") => Failure::Conflict(match (t.flag, t.segment) {
            (Some(flag), _) => format!("{message}: look at it with `flagctl get {flag}`, or choose another key"),
            (None, Some(segment)) => {
                format!("{message}: look at it with `flagctl segment get {segment} --env {env}`, or choose another key")
            }
            (None, None) => format!("{message}: choose another name"),
        }),
        // A conflict this flagctl has no advice for: the server's message says what it is.
        (409, code) => Failure::Conflict(format!("{message} ({code}); nothing was changed")),
        (412, _) => Failure::Conflict(format!(
            "{message}: someone changed it meanwhile; run the command again to apply it to the current state"
        )),
        (428, _) => Failure::Conflict(format!(
            "{message}; flagctl should have sent If-Match: run the command again, and report this if it persists"
        )),
        (422, _) => Failure::Usage(format!(
            "the server refused the change{in_env} ({message}){}; nothing was changed: fix these and run again",
            problems(&r.body)
        )),
        (400 | 413, _) => Failure::Usage(format!(
            "the server refused the request ({}: {message}); nothing was changed: fix the arguments \
             (see `flagctl help`)",
            r.code
        )),
        (503, _) => Failure::Server(format!("{message} (HTTP 503); retry in a moment")),
        (status, code) => Failure::Server(format!(
            "the server failed (HTTP {status} {code}: {message}); retry, and look at the server's logs if it persists"
        )),
    }
}

/// The `problems` of a 422, one per line.
pub fn problems(body: &Value) -> String {
    let list = body["error"]["problems"].as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter()
        .map(|p| {
            let key = p["key"].as_str().map(|k| format!("[{k}] ")).unwrap_or_default();
            format!("\n  - {key}{}: {}", p["path"].as_str().unwrap_or(""), p["message"].as_str().unwrap_or(""))
        })
        .collect()
}
