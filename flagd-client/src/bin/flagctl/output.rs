//! What flagctl prints: aligned tables for people, the server's JSON for scripts, and
//! UTC timestamps.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and sentences for people.
    Table,
    /// The server's JSON, for scripts.
    Json,
}

/// Writes `text` and a newline to stdout. A closed pipe (`flagctl list | head`) is not
/// an error worth reporting: the reader has what it wanted.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Prints a JSON value, pretty, to stdout.
pub fn json(value: &Value) {
    line(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// A progress or confirmation note for people: stderr, so stdout stays parseable.
pub fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// The most characters a table cell shows. A table is read across its rows, and one long
/// cell (a description pasted from a document, thousands of company ids) would push every
/// row of its column that far: longer cells end in `…`, and `-o json` or the single-item
/// views (`get`, `segment get`) have them whole. Names are never cut: a key or an
/// environment name is at most 128 characters, a token name 150.
pub const MAX_CELL: usize = 200;

/// A table printed with aligned columns.
#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self { headers: headers.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row, each cell [`printable`] and cut to [`MAX_CELL`] characters.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|c| shorten(printable(&c))).collect());
    }

    /// Prints it; an empty table prints `empty` instead, so silence never means "no rows".
    pub fn print(&self, empty: &str) {
        if self.rows.is_empty() {
            line(empty);
            return;
        }
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        // Padded by hand: `format!`'s width stops at 65,535 and panics past it.
        let render = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        line(&render(&self.headers));
        for row in &self.rows {
            line(&render(row));
        }
    }
}

/// Key-value lines (`state   ENABLED`), aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        // A value may span lines on purpose (a flag's rules, one per line).
        let v: Vec<String> = v.split('\n').map(printable).collect();
        line(&format!("{k:<width$}  {}", v.join("\n")));
    }
}

/// `text` with its control characters escaped (`\n`, `\t`, `\u{1b}`): a reason, a
/// description or a company id may hold them, and printed raw a line break would pass for
/// another row and an escape sequence would reach the terminal. `-o json` has them as sent.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A JSON value as a table cell: strings bare but [`printable`], `-` for nothing, anything
/// else as JSON (whose strings escape control characters already).
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => printable(s),
        other => other.to_string(),
    }
}

/// A number as people write it: `10`, `12.5` (not `10.0`); anything else as [`cell`].
pub fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{n:.0}"),
        Some(n) => n.to_string(),
        None => cell(value),
    }
}

/// A list of strings as one cell: `1, 2, 3`, or `-`.
pub fn list_cell(value: &Value) -> String {
    let items = list_items(value);
    if items.is_empty() { "-".to_owned() } else { items.join(", ") }
}

/// A list of strings as one table cell: [`list_cell`] when that fits in [`MAX_CELL`],
/// else the first items that fit and how many there are in all (`1, 2, … (9000 in all)`),
/// which says more than a list cut anywhere.
pub fn list_summary(value: &Value) -> String {
    let whole = list_cell(value);
    if whole.chars().count() <= MAX_CELL {
        return whole;
    }
    let items = list_items(value);
    let total = format!("… ({} in all)", items.len());
    let mut shown = String::new();
    for item in &items {
        let used = shown.chars().count() + item.chars().count() + 2;
        if used + total.chars().count() > MAX_CELL {
            break;
        }
        shown.push_str(item);
        shown.push_str(", ");
    }
    shorten(shown + &total)
}

fn list_items(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().map(cell).collect()).unwrap_or_default()
}

/// `text` cut to [`MAX_CELL`] characters, the last one `…` when anything was cut.
fn shorten(text: String) -> String {
    if text.chars().count() <= MAX_CELL {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_CELL - 1).collect();
    cut.push('…');
    cut
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `2024-05-01T12:34:56Z` for Unix milliseconds (UTC, proleptic Gregorian calendar).
pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_date(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// The calendar date `days` after 1970-01-01. Works in 400-year eras (146 097 days) with
/// years starting in March, so that the leap day falls at the end of a year.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix milliseconds in a JSON field as a timestamp cell.
pub fn time_cell(value: &Value) -> String {
    value.as_i64().map_or_else(|| "-".to_owned(), timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped_and_other_text_as_it_is() {
        assert_eq!(printable("line1\nline2\ttab \u{1b}[31mRED"), "line1\\nline2\\ttab \\u{1b}[31mRED");
        assert_eq!(printable("Zürich · 42"), "Zürich · 42");
    }

    #[test]
    fn long_cells_are_cut_and_long_lists_counted() {
        let long = "x".repeat(70_000);
        assert_eq!(shorten(long.clone()).chars().count(), MAX_CELL);
        assert!(shorten(long).ends_with("x…"));
        assert_eq!(shorten("short".into()), "short");
        let ids = Value::from((0..9000).map(|n| n.to_string()).collect::<Vec<_>>());
        let summary = list_summary(&ids);
        assert!(summary.starts_with("0, 1, 2, ") && summary.ends_with(", … (9000 in all)"), "{summary}");
        assert!(summary.chars().count() <= MAX_CELL, "{summary}");
        assert_eq!(list_summary(&serde_json::json!(["1", "2"])), "1, 2");
        let huge = Value::from(vec!["y".repeat(MAX_CELL + 1)]);
        assert_eq!(list_summary(&huge), "… (1 in all)");
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(1_714_566_896_789), "2024-05-01T12:34:56Z");
        assert_eq!(timestamp(-1000), "1969-12-31T23:59:59Z");
    }
}
