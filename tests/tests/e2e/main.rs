//! End-to-end tests: the real `flagd-server` binary, driven over HTTP by real clients
//! written by other people (see `tests/ofrep-clients/`), by flagd-client and by the real
//! `flagctl` binary, and the console in a real browser (see `tests/ui/`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_conformance;
mod bad_input;
mod browser_ofrep;
mod client;
mod deploy;
mod flagctl;
mod import_limit;
mod ofrep_clients;
mod outage;
mod priority;
mod replicas;
mod round_trip;
mod snapshot_lag;
mod stream_faults;
mod tls;
mod ui;
