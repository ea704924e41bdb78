//! flagd-core's integration tests, in one binary so they link once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod allocation;
mod differential;
mod evaluation;
mod flagd_format;
mod properties;
mod support;
mod validation;
