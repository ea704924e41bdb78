//! Deadlines from the options' durations, which may be as long as `Duration::MAX`.

use std::time::{Duration, Instant};

/// Stands in for a wait too long for an [`Instant`] to hold: far beyond any process's life,
/// and within what every platform's clock can represent.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `wait` after `start`. A wait longer than a century (`Duration::MAX` for "never", say)
/// counts as a century: `start + wait` would panic, and a getter must not.
pub(crate) fn later(start: Instant, wait: Duration) -> Instant {
    start.checked_add(wait.min(FOREVER)).unwrap_or(start)
}

/// [`later`] on Tokio's clock, which a paused test runtime may have moved.
pub(crate) fn later_tokio(start: tokio::time::Instant, wait: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(later(start.into_std(), wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_waits_end_a_century_later_rather_than_panic() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), later(now, FOREVER));
        assert!(later(now, Duration::MAX) > now);
        assert_eq!(later(now, Duration::from_millis(5)), now + Duration::from_millis(5));
        let tokio_now = tokio::time::Instant::now();
        assert!(later_tokio(tokio_now, Duration::MAX) > tokio_now);
    }
}
