//! Benchmarks of flagd (see README.md).
