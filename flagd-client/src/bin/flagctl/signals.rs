//! SIGINT and SIGTERM, which end a command with exit code 130 and a sentence saying where
//! it stopped, rather than kill it without a word.

use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::exit::Failure;

/// SIGINT and SIGTERM, listened to while they are installed.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Listens from now on.
    pub fn install() -> Result<Self, Failure> {
        let listen =
            |kind| signal(kind).map_err(|e| Failure::Server(format!("cannot listen for SIGINT and SIGTERM ({e})")));
        Ok(Self { interrupt: listen(SignalKind::interrupt())?, terminate: listen(SignalKind::terminate())? })
    }

    /// The name of the next signal received.
    pub async fn received(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    /// Runs `work` unless a signal arrives first (then `work` is dropped: a running
    /// check is killed, a request abandoned).
    pub async fn guard<T>(&mut self, work: impl Future<Output = T>) -> Result<T, &'static str> {
        tokio::select! {
            value = work => Ok(value),
            name = self.received() => Err(name),
        }
    }
}
