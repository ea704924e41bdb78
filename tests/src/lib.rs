//! End-to-end tests of flagd: real processes, real clients.
