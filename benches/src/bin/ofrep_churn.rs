//! The load harness's writer (see benches/README.md, "Server load").
//!
//! `ofrep_churn seed --addr HOST:PORT --admin-token T` creates the 20 flags the load runs
//! evaluate (production environment) and prints a new `evaluate` token on stdout.
//!
//! `ofrep_churn churn --addr HOST:PORT --admin-token T [--rate 50] [--seconds 12]
//! [--workers 2]` applies flag changes at a fixed rate, on a schedule (change `i` starts at
//! `i / rate` seconds) rather than back to back, so a slow write shows up as lateness
//! instead of silently lowering the rate. It prints one `CHURN key=value …` line.
//!
//! Plain blocking HTTP/1.1 over std: the writer must not compete with the server and wrk
//! for the two cores more than the writes themselves require.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flagd_benches::http1::{BoxError, Reply, connect, read_reply};
use serde_json::{Value, json};

/// The flag the single-flag scenario evaluates; the churn changes it too.
const SINGLE_KEY: &str = "customer_portal";
const ENV: &str = "production";

fn main() {
    if let Err(e) = run() {
        eprintln!("ofrep_churn: {e}");
        std::process::exit(1);
    }
}

struct Options {
    command: String,
    addr: SocketAddr,
    admin_token: String,
    rate: f64,
    seconds: f64,
    workers: usize,
}

fn options() -> Result<Options, BoxError> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or("usage: ofrep_churn seed|churn --addr HOST:PORT --admin-token T …")?;
    let mut o = Options {
        command,
        addr: "127.0.0.1:8013".parse()?,
        admin_token: String::new(),
        rate: 50.0,
        seconds: 12.0,
        workers: 2,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--addr" => o.addr = value()?.parse()?,
            "--admin-token" => o.admin_token = value()?,
            "--rate" => o.rate = value()?.parse()?,
            "--seconds" => o.seconds = value()?.parse()?,
            "--workers" => o.workers = value()?.parse()?,
            _ => return Err(format!("unknown argument {arg}").into()),
        }
    }
    if o.admin_token.is_empty() {
        return Err("--admin-token is required".into());
    }
    if !(o.rate > 0.0 && o.seconds > 0.0 && o.workers > 0) {
        return Err("--rate, --seconds and --workers must be positive".into());
    }
    Ok(o)
}

fn run() -> Result<(), BoxError> {
    let o = options()?;
    match o.command.as_str() {
        "seed" => seed(&o),
        "churn" => churn(&o),
        other => Err(format!("unknown command {other}: expected seed or churn").into()),
    }
}

/// One keep-alive connection; after an I/O error the next request reconnects.
struct Client {
    addr: SocketAddr,
    token: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(addr: SocketAddr, token: &str) -> Self {
        Self { addr, token: token.to_owned(), conn: None }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, BoxError> {
        let result = self.exchange(method, path, if_match, body);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, BoxError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(connect(self.addr)?),
        };
        let payload = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            self.token,
            payload.len()
        );
        if let Some(etag) = if_match {
            head.push_str(&format!("If-Match: {etag}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(&payload);
        conn.get_mut().write_all(&request)?;
        read_reply(conn)
    }

    fn expect(
        &mut self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, BoxError> {
        let reply = self.send(method, path, if_match, body)?;
        if !(200..300).contains(&reply.status) {
            return Err(format!("{method} {path}: {} {}", reply.status, String::from_utf8_lossy(&reply.body)).into());
        }
        Ok(reply)
    }
}

/// 20 flags of the kinds a SaaS keeps: statics, kill switches, pilot lists, rollouts,
/// condition rules, and string/number/object variants.
fn flags() -> Vec<(Value, Option<Value>)> {
    let pilots = |with_42: bool| -> Vec<String> {
        (100..150).map(|i| if with_42 && i == 125 { "42".to_owned() } else { i.to_string() }).collect()
    };
    let rollout = |on: &str, off: &str, pct: f64| {
        json!({"rollout": {"variants": [
        {"variant": on, "weight": pct}, {"variant": off, "weight": 100.0 - pct}]}})
    };
    let plan_in = |plans: &[&str]| json!({"attribute": "plan", "op": "in", "value": plans});
    let mut out = vec![(
        json!({"key": SINGLE_KEY, "description": "New customer portal", "owner": "team-portal",
               "metadata": {"ticket": "PORTAL-12", "removable": false}}),
        Some(json!({"state": "ENABLED", "deny": ["13"], "allow": ["5", "7"],
                    "rules": [{"conditions": [plan_in(&["pro", "enterprise"])], "serve": rollout("on", "off", 50.0)}],
                    "fallthrough": {"variant": "off"}})),
    )];
    for i in 0..4 {
        out.push((
            json!({"key": format!("static_{i}")}),
            Some(json!({"state": "ENABLED", "fallthrough": {"variant": "on"}})),
        ));
    }
    for i in 0..2 {
        out.push((json!({"key": format!("kill_{i}")}), None));
    }
    for i in 0..4 {
        out.push((
            json!({"key": format!("pilot_{i}"), "tags": ["pilot"]}),
            Some(json!({"state": "ENABLED", "allow": pilots(i % 2 != 1)})),
        ));
    }
    for (i, pct) in [10.0, 25.0, 50.0, 90.0].into_iter().enumerate() {
        out.push((
            json!({"key": format!("rollout_{i}")}),
            Some(json!({"state": "ENABLED", "fallthrough": rollout("on", "off", pct)})),
        ));
    }
    out.push((
        json!({"key": "cond_plan"}),
        Some(json!({"state": "ENABLED", "rules": [{"conditions": [plan_in(&["pro"])], "serve": {"variant": "on"}}]})),
    ));
    out.push((
        json!({"key": "cond_country_version"}),
        Some(json!({"state": "ENABLED", "rules": [{"conditions": [
            {"attribute": "country", "op": "in", "value": ["DE", "AT", "CH"]},
            {"attribute": "appVersion", "op": "semver_gte", "value": "2.0.0"}], "serve": {"variant": "on"}}]})),
    ));
    out.push((
        json!({"key": "theme", "variants": {"classic": "classic", "dark": "dark"}, "offVariant": "classic"}),
        Some(json!({"state": "ENABLED", "rules": [{"conditions": [plan_in(&["pro", "enterprise"])],
                    "serve": {"variant": "dark"}}], "fallthrough": {"variant": "classic"}})),
    ));
    out.push((
        json!({"key": "export_limit", "variants": {"low": 10, "high": 100}, "offVariant": "low"}),
        Some(json!({"state": "ENABLED", "fallthrough": rollout("high", "low", 30.0)})),
    ));
    out.push((
        json!({"key": "banner", "variants": {"none": {}, "promo": {"text": "Spring sale", "colour": "green"}},
               "offVariant": "none"}),
        Some(json!({"state": "ENABLED", "rules": [{"companies": ["42", "43"], "serve": {"variant": "promo"}}]})),
    ));
    out
}

fn seed(o: &Options) -> Result<(), BoxError> {
    let mut admin = Client::new(o.addr, &o.admin_token);
    let flags = flags();
    for (definition, config) in &flags {
        admin.expect("POST", "/api/v1/flags", None, Some(definition))?;
        let (Some(config), Some(key)) = (config, definition["key"].as_str()) else { continue };
        let path = format!("/api/v1/flags/{key}/environments/{ENV}");
        let current = admin.expect("GET", &path, None, None)?;
        let etag = current.etag.ok_or_else(|| format!("GET {path} returned no ETag"))?;
        admin.expect("PUT", &path, Some(&etag), Some(config))?;
    }
    let token = admin.expect(
        "POST",
        "/api/v1/tokens",
        None,
        Some(&json!({"name": "load", "role": "evaluate", "environment": ENV})),
    )?;
    let token: Value = serde_json::from_slice(&token.body)?;
    let value = token["value"].as_str().ok_or("the token reply has no `value`")?;
    eprintln!("seeded {} flags in {ENV}", flags.len());
    println!("{value}");
    Ok(())
}

/// Change `i` of the cycle. Allow/disallow come in pairs so the pilot list stays bounded.
fn change(i: u64) -> (&'static str, String, Value) {
    let round = i / 5;
    let base = |key: &str| format!("/api/v1/flags/{key}/environments/{ENV}");
    match i % 5 {
        0 => ("PUT", base(&format!("rollout_{}", round % 4)) + "/rollout", json!({"percentage": (round * 7) % 101})),
        1 => {
            let op = ["enable", "disable"][usize::from(round % 2 == 1)];
            ("POST", format!("{}/{op}", base("kill_0")), json!({"reason": "load churn"}))
        }
        2 => ("POST", base("pilot_1") + "/allow", json!({"companies": [(1000 + round % 20).to_string()]})),
        3 => ("DELETE", base("pilot_1") + "/allow", json!({"companies": [(1000 + round % 20).to_string()]})),
        _ => ("PUT", base(SINGLE_KEY) + "/rollout", json!({"percentage": 40 + round % 21})),
    }
}

#[derive(Default)]
struct WorkerStats {
    ok: u64,
    failed: u64,
    late: u64,
    latencies: Vec<Duration>,
    first_failure: Option<String>,
}

fn churn(o: &Options) -> Result<(), BoxError> {
    let period = Duration::from_secs_f64(1.0 / o.rate);
    let total = (o.rate * o.seconds).round() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..o.workers)
        .map(|_| {
            let next = Arc::clone(&next);
            let mut client = Client::new(o.addr, &o.admin_token);
            std::thread::spawn(move || {
                let mut stats = WorkerStats::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + period * u32::try_from(i).unwrap_or(u32::MAX);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    } else if now - due > period {
                        stats.late += 1;
                    }
                    let (method, path, body) = change(i);
                    let began = Instant::now();
                    let outcome = client.send(method, &path, None, Some(&body));
                    stats.latencies.push(began.elapsed());
                    match outcome {
                        Ok(r) if (200..300).contains(&r.status) => stats.ok += 1,
                        Ok(r) => {
                            stats.failed += 1;
                            stats.first_failure.get_or_insert_with(|| {
                                format!("{method} {path}: {} {}", r.status, String::from_utf8_lossy(&r.body))
                            });
                        }
                        Err(e) => {
                            stats.failed += 1;
                            stats.first_failure.get_or_insert_with(|| format!("{method} {path}: {e}"));
                        }
                    }
                }
                stats
            })
        })
        .collect();
    let mut all = WorkerStats::default();
    for handle in handles {
        let stats = handle.join().map_err(|_| "a churn worker panicked")?;
        all.ok += stats.ok;
        all.failed += stats.failed;
        all.late += stats.late;
        all.latencies.extend(stats.latencies);
        if all.first_failure.is_none() {
            all.first_failure = stats.first_failure;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.latencies.sort();
    let pct = |p: f64| -> f64 {
        let n = all.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let idx = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        all.latencies[idx].as_secs_f64() * 1000.0
    };
    println!(
        "CHURN writes={} ok={} failed={} late={} rate={:.1} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        all.ok + all.failed,
        all.ok,
        all.failed,
        all.late,
        (all.ok + all.failed) as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    if let Some(failure) = all.first_failure {
        eprintln!("ofrep_churn: first failed write: {failure}");
    }
    Ok(())
}
