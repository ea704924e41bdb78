//! End-to-end tests: the real `flagd-server` binary, driven over HTTP by real clients
//! written by other people (see `tests/ofrep-clients/`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod flagctl;
mod ofrep_clients;
