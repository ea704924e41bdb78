//! Exit codes and the one error type every command fails with.
//!
//! Scripts branch on the exit code, so each kind of failure has its own, and the codes
//! are part of the documented interface (`flagctl --help`, the README).

/// The exit-code table, shown in `flagctl --help` and kept next to the codes it documents.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    server or network error, or a token the server refused (401/403: the message
       names the token or role needed); also a kill switch that could not be set
  2    usage error: bad arguments, a write without --env, or input the server refused
       (400/413/422; 413: a body over the server's limit, such as an import file larger
       than its --max-import-mib); nothing was changed
  3    conflict or precondition failed (409/412/428), or `ramp` refusing to start:
       a disabled flag without --enable-if-disabled, a first step below the current
       percentage, a fallthrough that is no percentage
  4    not found (404): flag, environment, segment or token; for `flagctl wait SEQ`,
       a change no write has reached yet
  5    --wait (or `flagctl wait`) timed out before the change was applied, also when
       the server stopped answering meanwhile (the change is stored)
  6    `ramp`: a health check failed and the flag was disabled (kill switch)
  130  interrupted (Ctrl-C / SIGTERM); `ramp` leaves the flag at the last step it set";

/// A failed command: what to tell the user, and which exit code says it to scripts.
/// Every message ends with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The server failed, could not be reached, or refused the token.
    #[error("{0}")]
    Server(String),
    /// The command line (or input the server validated) is wrong; nothing was changed.
    #[error("{0}")]
    Usage(String),
    /// A conflict or failed precondition.
    #[error("{0}")]
    Conflict(String),
    /// Something other than flagd answered: the address is wrong (exit 1, as for a server
    /// error, but a wait does not ask it again).
    #[error("{0}")]
    NotFlagd(String),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A change was not applied before the deadline.
    #[error("{0}")]
    WaitTimeout(String),
    /// A ramp's health check failed; the flag was disabled.
    #[error("{0}")]
    CheckFailed(String),
    /// SIGINT or SIGTERM.
    #[error("{0}")]
    Interrupted(String),
}

impl Failure {
    /// The process exit code for this failure (see [`EXIT_CODES_HELP`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Server(_) | Self::NotFlagd(_) => 1,
            Self::Usage(_) => 2,
            Self::Conflict(_) => 3,
            Self::NotFound(_) => 4,
            Self::WaitTimeout(_) => 5,
            Self::CheckFailed(_) => 6,
            Self::Interrupted(_) => 130,
        }
    }
}
