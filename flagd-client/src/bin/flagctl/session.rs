//! What every command gets: the API client and the global options.

use std::time::Duration;

use crate::api::Api;
use crate::cli::Cli;
use crate::exit::Failure;
use crate::output::Format;

/// The global options, resolved.
#[derive(Debug)]
pub struct Session {
    /// The server.
    pub api: Api,
    /// `--output`.
    pub format: Format,
    /// `--env`.
    pub env: Option<String>,
    /// `--wait-timeout`.
    pub wait_timeout: Duration,
}

impl Session {
    /// From the parsed command line.
    pub fn new(cli: &Cli) -> Result<Self, Failure> {
        Ok(Self {
            // An empty FLAGD_URL, as from a variable left empty in CI, is no address.
            api: Api::new(
                if cli.url.trim().is_empty() { crate::cli::DEFAULT_URL } else { &cli.url },
                cli.token.clone(),
                cli.request_timeout,
                cli.ca_cert.as_deref().filter(|path| !path.as_os_str().is_empty()),
            )?,
            format: cli.output,
            env: cli.env.clone(),
            wait_timeout: cli.wait_timeout,
        })
    }

    /// The environment a write goes to. A write without `--env` is refused before anything
    /// is sent: a forgotten `--env` must never mean production.
    pub fn write_env(&self, command: &str) -> Result<&str, Failure> {
        self.env.as_deref().ok_or_else(|| {
            Failure::Usage(format!(
                "`flagctl {command}` changes what an environment serves: say which with --env ENV \
                 (e.g. --env staging); nothing was changed"
            ))
        })
    }

    /// The environment a read needs when it cannot show all of them.
    pub fn read_env(&self, command: &str) -> Result<&str, Failure> {
        self.env.as_deref().ok_or_else(|| {
            Failure::Usage(format!(
                "`flagctl {command}` works on one environment: say which with --env ENV \
                 (`flagctl environments` lists them)"
            ))
        })
    }

    /// Refuses --env (a global option) for `command`, which it would mean nothing to:
    /// silently ignored, it would read as if only that environment had been shown or
    /// touched. `why` says what the command covers instead.
    pub fn refuse_env(&self, command: &str, why: &str) -> Result<(), Failure> {
        match &self.env {
            Some(env) => Err(Failure::Usage(format!("`flagctl {command}` takes no --env: {why}; drop --env {env}"))),
            None => Ok(()),
        }
    }

    /// Whether output is JSON.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }
}
