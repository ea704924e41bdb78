//! Command-line options; each can also be set through an environment variable.

use std::net::SocketAddr;

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

    /// Ensures an admin token with this value exists. Without it, the first start prints
    /// a generated admin token once.
    #[arg(long, env = "FLAGD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Log format.
    #[arg(long, env = "FLAGD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}
