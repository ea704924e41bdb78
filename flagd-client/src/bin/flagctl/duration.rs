//! Durations on the command line: `30s`, `10m`, `1h30m`, `250ms`, `2d`, `0s`.

use std::num::IntErrorKind;
use std::time::Duration;

/// Unit suffixes and their length in milliseconds. `ms` precedes `m` so the longer
/// suffix wins.
const UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];

/// Parses a duration such as `10m` or `1h30m` (clap value parser).
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("`{text}` is not a duration: write a number and a unit (ms, s, m, h, d), e.g. 30s, 10m, 1h30m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: u64 = match rest[..digits].parse() {
            Ok(number) => number,
            Err(e) if *e.kind() == IntErrorKind::PosOverflow => return Err(too_long(text)),
            Err(_) => return Err(invalid()),
        };
        rest = &rest[digits..];
        let (unit, millis) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit)).ok_or_else(invalid)?;
        rest = &rest[unit.len()..];
        total = number.checked_mul(*millis).and_then(|m| total.checked_add(m)).ok_or_else(|| too_long(text))?;
    }
    if total > LONGEST {
        return Err(too_long(text));
    }
    Ok(Duration::from_millis(total))
}

/// The longest duration taken: a century, past which no timer or `--since` means anything,
/// and well inside what a clock's arithmetic holds.
const LONGEST: u64 = 36_500 * 86_400_000;

fn too_long(text: &str) -> String {
    format!("`{text}` is too long a duration: give at most 36500d (a century)")
}

/// [`parse`], refusing `0s`: for a time limit that would give up before starting.
pub fn positive(text: &str) -> Result<Duration, String> {
    match parse(text)? {
        Duration::ZERO => Err(format!("`{text}` would give up before starting: give a duration above zero, e.g. 60s")),
        duration => Ok(duration),
    }
}

/// A duration the way [`parse`] reads it: `1h30m`, `45s`, `0s`.
pub fn show(duration: Duration) -> String {
    let mut millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, size) in UNITS.iter().rev() {
        if millis >= *size {
            text.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        let cases =
            [("0s", 0), ("30s", 30_000), ("10m", 600_000), ("1h30m", 5_400_000), ("250ms", 250), ("2d", 172_800_000)];
        for (text, millis) in cases {
            assert_eq!(parse(text), Ok(Duration::from_millis(millis)), "{text}");
            assert_eq!(parse(&show(Duration::from_millis(millis))), Ok(Duration::from_millis(millis)), "{text}");
        }
        for bad in ["", "10", "m", "1x", "-5s", "1.5h"] {
            assert!(parse(bad).is_err(), "{bad}");
            assert!(positive(bad).is_err(), "{bad}");
        }
        for huge in ["36501d", "36500d1ms", "213503982335d", "99999999999999999999s", "213503982334d1d"] {
            assert!(parse(huge).is_err_and(|e| e.contains("too long")), "{huge}");
        }
        assert_eq!(parse("36500d"), Ok(Duration::from_millis(LONGEST)));
        assert_eq!(positive("1ms"), Ok(Duration::from_millis(1)));
        assert!(positive("0s").is_err() && positive("0ms").is_err());
    }
}
