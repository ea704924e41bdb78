//! Kill-switch propagation across replicas: several flagd-server processes on one
//! database; each round disables a flag on the first replica and times, from the start
//! of that request, until every replica serves the off value. Between rounds the flag is
//! enabled again (untimed) and every replica is seen serving it on; then the next round
//! waits a pause drawn uniformly from [0, sync interval). Without that pause each disable
//! would follow the replicas' last poll by the same few milliseconds (the previous round
//! ended at a poll), and every sample would measure a whole interval.
//!
//! Usage: `propagation --database-url URL [--replicas 3] [--toggles 200] [--sync-interval 200ms]`.
//! `FLAGD_SERVER_BIN` names the server binary (benches/propagation/run.sh passes the
//! release build). Prints one `RESULT` line with p50/p99/max in milliseconds.

use std::time::{Duration, Instant};

use flagd_tests::{Client, Server, ServerOptions};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const FLAG: &str = "kill_switch";
/// A round that has not propagated after this long is a failure, not a slow sample.
const ROUND_LIMIT: Duration = Duration::from_secs(10);

struct Args {
    database_url: String,
    replicas: usize,
    toggles: usize,
    sync_interval: String,
}

fn args() -> Result<Args, BoxError> {
    let mut parsed = Args { database_url: String::new(), replicas: 3, toggles: 200, sync_interval: "200ms".to_owned() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--database-url" => parsed.database_url = value()?,
            "--replicas" => parsed.replicas = value()?.parse()?,
            "--toggles" => parsed.toggles = value()?.parse()?,
            "--sync-interval" => parsed.sync_interval = value()?,
            _ => return Err(format!("unknown argument {arg}; see the module documentation").into()),
        }
    }
    if parsed.database_url.is_empty() || parsed.replicas < 2 {
        return Err("give --database-url, and at least 2 --replicas".into());
    }
    Ok(parsed)
}

fn main() -> Result<(), BoxError> {
    let args = args()?;
    let options = ServerOptions {
        database_url: Some(args.database_url.clone()),
        args: vec!["--sync-interval".into(), args.sync_interval.clone()],
        env: vec![("RUST_LOG".into(), "warn".into())],
        ..ServerOptions::default()
    };
    let replicas = (0..args.replicas).map(|_| Server::start_with(&options)).collect::<Result<Vec<_>, _>>()?;
    let admin = replicas[0].admin();
    admin.create_flag(&json!({"key": FLAG}))?;
    admin.set_config(FLAG, "production", &json!({"state": "ENABLED", "fallthrough": {"variant": "on"}}))?;
    let token = admin.create_token("propagation", "evaluate", Some("production"))?;
    let evaluators: Vec<Client> = replicas.iter().map(|r| r.client(Some(&token))).collect();
    settle(&evaluators, true)?;

    let interval = flagd_server::config::parse_interval(&args.sync_interval)?;
    let mut pauses = Pauses(0x9E37_79B9_7F4A_7C15);
    let mut samples = Vec::with_capacity(args.toggles);
    for round in 0..args.toggles {
        std::thread::sleep(pauses.next_below(interval));
        let started = Instant::now();
        admin.quick_op(FLAG, "production", "disable", Some(&json!({"reason": format!("round {round}")})))?;
        settle(&evaluators, false)?;
        samples.push(started.elapsed());
        admin.quick_op(FLAG, "production", "enable", None)?;
        settle(&evaluators, true)?;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "RESULT replicas={} toggles={} sync_interval={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} min_ms={:.1}",
        args.replicas,
        samples.len(),
        args.sync_interval,
        ms(at(0.50)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1]),
        ms(samples[0]),
    );
    Ok(())
}

/// Pauses from a fixed-seed xorshift generator: the same sequence on every run.
struct Pauses(u64);

impl Pauses {
    fn next_below(&mut self, limit: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let micros = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX).max(1);
        Duration::from_micros(self.0 % micros)
    }
}

/// Polls every replica until each serves `expected`.
fn settle(evaluators: &[Client], expected: bool) -> Result<(), BoxError> {
    let deadline = Instant::now() + ROUND_LIMIT;
    let mut pending: Vec<&Client> = evaluators.iter().collect();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("{} replica(s) did not serve {expected} within {ROUND_LIMIT:?}", pending.len()).into());
        }
        let mut still = Vec::with_capacity(pending.len());
        for client in pending {
            let reply = client.ofrep(FLAG, &json!({"companyId": 42}))?;
            if reply.body["value"] != Value::Bool(expected) {
                still.push(client);
            }
        }
        pending = still;
    }
    Ok(())
}
