//! Command-line options; each can also be set through an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The flagd feature-flag service.
#[derive(Debug, Clone, Parser)]
#[command(name = "flagd-server", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "FLAGD_LISTEN", default_value = "127.0.0.1:8013")]
    pub listen: SocketAddr,

    /// Database: `sqlite:PATH` (created if missing), `mysql://USER:PASS@HOST/DB` or
    /// `postgres://USER:PASS@HOST/DB`.
    #[arg(long, env = "FLAGD_DATABASE_URL", default_value = "sqlite:./data/flagd.db")]
    pub database_url: String,

    /// Ensures an admin token with this value exists (not empty, no surrounding
    /// whitespace). Without it, the first start prints a generated admin token once.
    #[arg(long, env = "FLAGD_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_admin_token)]
    pub admin_token: Option<String>,

    /// How often to poll the database for changes made by other replicas (`200ms`, `1s`;
    /// on PostgreSQL a NOTIFY wakes replicas at once and polling is the safety net).
    #[arg(long, env = "FLAGD_SYNC_INTERVAL", default_value = "200ms", value_parser = parse_interval)]
    pub sync_interval: Duration,

    /// How long a replica that fell silent (killed, stopped, or cut off from the database
    /// while still serving what it had) stays in the cluster view, so that `--wait` fails
    /// naming it rather than confirm a change it may not serve (`30s` to `7d`; a replica
    /// that stops cleanly leaves at once). Shorter lets waits pass a killed replica by
    /// sooner, and a cut-off one too. Give every replica the same value: a wait follows
    /// that of the replica it reaches.
    #[arg(long, env = "FLAGD_REPLICA_MEMORY", default_value = "10m", value_parser = parse_replica_memory)]
    pub replica_memory: Duration,

    /// Keep a copy of every environment's snapshot (and the token hashes) in this file,
    /// rewritten atomically after each change. If the database is down at start, the
    /// server serves evaluations from it, read-only, until the database answers.
    #[arg(long, env = "FLAGD_SNAPSHOT_CACHE")]
    pub snapshot_cache: Option<std::path::PathBuf>,

    /// How many nice levels below the threads answering evaluations everything else runs
    /// (admin API, database, replication), 0 to 19. On a saturated server, flag changes
    /// then wait for the serving threads' time slices instead of delaying evaluations (and
    /// take tens of milliseconds instead of a few); 0 treats both alike. The level also
    /// ranks the control plane below other busy processes sharing the CPU.
    #[arg(long, env = "FLAGD_CONTROL_NICE", default_value_t = crate::control::DEFAULT_NICE,
        value_parser = clap::value_parser!(u8).range(0..=19))]
    pub control_nice: u8,

    /// The largest import file taken, in MiB (1 to 256). Every other request body is
    /// limited to 1 MiB; an import holds a whole environment, and the export of a large one
    /// (big company lists) can be more.
    #[arg(long, env = "FLAGD_MAX_IMPORT_MIB", default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=256))]
    pub max_import_mib: u16,

    /// A browser origin allowed to call the OFREP endpoints from a page
    /// (`https://app.example.com`, exactly as the browser sends it: no path, no default
    /// port), or `*` for any; repeat the option or separate origins with commas. Without it
    /// no cross-origin request is allowed. The admin API never allows one.
    #[arg(long = "cors-origin", value_name = "ORIGIN", env = "FLAGD_CORS_ORIGIN",
        value_parser = crate::http::cors::parse_origins)]
    cors_origins: Vec<crate::http::cors::OriginList>,

    /// Log format.
    #[arg(long, env = "FLAGD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

impl Config {
    /// Every origin of every `--cors-origin`.
    pub fn cors_origins(&self) -> Vec<crate::http::cors::AllowedOrigin> {
        self.cors_origins.iter().flat_map(|list| list.0.iter().cloned()).collect()
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// An admin token value as given. An empty one (an unset variable in a compose file or a
/// unit expands to that) would make a blank credential an admin's, and surrounding
/// whitespace could never be presented, since headers are read trimmed.
pub fn parse_admin_token(text: &str) -> Result<String, String> {
    let problem = if text.is_empty() {
        "is empty: give a secret value, or leave the option out to have one generated"
    } else if text.trim() != text {
        "starts or ends with whitespace, which no request can send back"
    } else if text.chars().any(char::is_control) {
        "holds a control character, which no request header can carry"
    } else {
        return Ok(text.to_owned());
    };
    Err(format!("the admin token {problem}"))
}

/// Reads `250ms`, `2s` or `1m` (a bare number is milliseconds), between 10 ms and 1 min.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    bounded_duration(text, 10..=60_000, "the sync interval must be between 10ms and 1m")
}

/// `--replica-memory`: from 30 s, ten times the 3 s after which a replica no longer counts
/// as live, to a week.
pub fn parse_replica_memory(text: &str) -> Result<Duration, String> {
    bounded_duration(text, 30_000..=7 * 86_400_000, "the replica memory must be between 30s and 7d")
}

/// A number and a unit (`ms`, `s`, `m`, `h`, `d`; milliseconds without one) within
/// `range` milliseconds.
fn bounded_duration(text: &str, range: std::ops::RangeInclusive<u64>, rule: &str) -> Result<Duration, String> {
    const UNITS: [(&str, u64); 5] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];
    let text = text.trim();
    let (number, per_unit) =
        UNITS.iter().find_map(|(suffix, ms)| text.strip_suffix(suffix).map(|n| (n, *ms))).unwrap_or((text, 1));
    let ms = number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
        .ok_or_else(|| format!("`{text}` is not a duration; write a number and a unit (ms, s, m, h, d): {rule}"))?;
    if !range.contains(&ms) {
        return Err(format!("`{text}` is out of range: {rule}"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_with_units_and_refuse_nonsense() {
        let cases = [("200ms", Some(200)), ("2s", Some(2_000)), ("1m", Some(60_000)), ("50", Some(50))];
        for (text, ms) in cases {
            assert_eq!(parse_interval(text).ok(), ms.map(Duration::from_millis), "{text}");
        }
        for text in ["", "fast", "5ms", "2h", "-1s", "1.5s"] {
            assert!(parse_interval(text).is_err(), "{text}");
        }
    }

    #[test]
    fn replica_memory_reads_minutes_to_days_and_refuses_what_would_pass_a_live_replica_by() {
        let cases = [("30s", 30_000), ("10m", 600_000), ("2h", 7_200_000), ("7d", 604_800_000)];
        for (text, ms) in cases {
            assert_eq!(parse_replica_memory(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for text in ["", "5s", "29999ms", "8d", "forever", "-1m"] {
            assert!(parse_replica_memory(text).is_err(), "{text}");
        }
    }

    #[test]
    fn admin_tokens_that_no_request_could_present_are_refused() {
        assert_eq!(parse_admin_token("dev-admin-token").as_deref(), Ok("dev-admin-token"));
        for text in ["", " ", "secret ", "\tsecret", "sec\nret"] {
            assert!(parse_admin_token(text).is_err(), "{text:?}");
        }
    }
}
