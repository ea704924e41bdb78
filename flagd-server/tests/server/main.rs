//! flagd-server's integration tests, one binary: the storage contract against every
//! configured database backend, and the server's behaviour seen from outside.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod cors;
mod faults;
mod flag_set_metadata;
mod logs;
mod openapi;
mod session;
mod store_contract;
mod sync;
mod tokens;
