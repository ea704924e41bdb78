//! flagd-client: the Rust client for flagd (remote and in-process evaluation arrive with
//! the client issue). It re-exports [`flagd_core`] for in-process evaluation.

pub use flagd_core;
