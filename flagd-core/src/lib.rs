//! flagd-core (being written).

pub mod context;
pub mod error;
pub mod hash;
pub mod logic;
pub mod semver;
