//! `flagctl export` and `flagctl import`: an environment as a file (flagd's format or the
//! server's own), and a file merged into (or replacing) an environment, showing the
//! server's diff.

use std::io::Read;
use std::path::Path;

use reqwest::Method;
use serde_json::{Map, Value};

use crate::api::{Request, Target, explain, problems, segment};
use crate::cli::{ExportArgs, ImportArgs};
use crate::exit::Failure;
use crate::output::{self, Table};
use crate::session::Session;

/// `flagctl export --env ENV [--format native]`: the file itself, whatever `--output` says.
pub async fn export(session: &Session, args: &ExportArgs) -> Result<(), Failure> {
    let env = session.read_env("export")?;
    let path = format!("/api/v1/environments/{}/export?format={}", segment(env), args.format.as_str());
    let target = Target::env(env);
    match session.api.exchange(Request::new(Method::GET, path, target)).await? {
        Ok(reply) => {
            output::json(&reply.body);
            Ok(())
        }
        // A read, not a change: what cannot be said in flagd's format, and the way out.
        Err(r) if r.status == 422 => Err(Failure::Usage(format!(
            "{env} cannot be written in flagd's format ({}){}; export it with `--format native`, which keeps \
             everything",
            r.message,
            problems(&r.body)
        ))),
        Err(r) => Err(explain(&r, &target)),
    }
}

/// Reads a JSON file (`-` is stdin).
pub fn read_json_file(file: &Path) -> Result<Value, Failure> {
    let shown = file.display();
    let unreadable =
        |e: std::io::Error| Failure::Usage(format!("cannot read {shown}: {e}; check the path; nothing was changed"));
    let source: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).map_err(unreadable)?)
    };
    let Some(bytes) = read_at_most(source, MAX_FILE_BYTES).map_err(unreadable)? else {
        return Err(Failure::Usage(format!(
            "{shown} is larger than 256 MiB, more than any flagd-server takes (--max-import-mib is at most 256); \
             nothing was changed"
        )));
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::Usage(format!("{shown} is not UTF-8 text, so no JSON; fix the file; nothing was changed"))
    })?;
    parse_json_text(&text, &shown)
}

/// All of `source` if it holds at most `max` bytes, else `None`. It reads no further than
/// one byte past: `/dev/zero` or a wrong pipe would otherwise fill the memory.
pub fn read_at_most(source: impl Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    source.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// The largest file flagctl reads: the most a flagd-server takes (`--max-import-mib 256`).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The JSON in the file `shown`, after the byte order mark an editor on Windows may put at
/// the start of a file saved as UTF-8 (JSON parsers may ignore it, RFC 8259 8.1; serde_json
/// does not). An object that names a key twice is refused here: read, it keeps the last
/// value, and the server, which refuses it, would never see the repeat.
fn parse_json_text(text: &str, shown: &dyn std::fmt::Display) -> Result<Value, Failure> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value = serde_json::from_str(text)
        .map_err(|e| Failure::Usage(format!("{shown} is not JSON ({e}); fix the file; nothing was changed")))?;
    match flagd_core::find_repeated_key(text.as_bytes()) {
        Some(repeated) => Err(Failure::Usage(format!(
            "{shown}: {repeated}, so which of its values was meant is unknown; fix the file; nothing was changed"
        ))),
        None => Ok(value),
    }
}

/// `flagctl import FILE --env ENV [--dry-run] [--replace]`.
pub async fn import(session: &Session, args: &ImportArgs) -> Result<(), Failure> {
    let env = session.write_env("import")?;
    let file = read_json_file(&args.file)?;
    let path = format!("/api/v1/environments/{}/import", segment(env));
    let mode = if args.replace { "replace" } else { "merge" };
    let mut request = Request::new(Method::POST, path, Target::env(env))
        .query("mode", mode)
        .query("dryRun", args.dry_run.to_string())
        .json(file);
    if let Some(reason) = &args.reason {
        request = request.query("reason", reason.clone());
    }
    if args.dry_run {
        request = request.read_only();
    }
    let report = match session.api.exchange(request).await? {
        Ok(reply) => reply.body,
        // The file is what was refused, not flagctl's arguments.
        Err(r) if matches!(r.status, 400 | 413) => {
            return Err(Failure::Usage(format!(
                "the server refused {} ({}: {}); fix the file; nothing was changed",
                args.file.display(),
                r.code,
                r.message
            )));
        }
        // The server names the flag and the change, and points to its HTTP API; flagctl
        // says what that means for the file, and that flagctl has no command for the API.
        Err(r) if r.code == "SHARED_DEFINITION" => {
            // The message starts "flag `KEY`: …"; a message worded otherwise still reads.
            let key = r.message.strip_prefix("flag `").and_then(|rest| rest.split_once('`')).map_or("FLAG", |(k, _)| k);
            return Err(Failure::Conflict(format!(
                "{}; nothing was imported into {env}. Either edit {} so that the flag keeps its variants' values and \
                 its on and off variant (`flagctl get {key}` shows them), or, to change them in every environment, \
                 send that PATCH to the server (flagctl has no command for it; see the API table of flagd's README), \
                 then import again",
                r.message,
                args.file.display()
            )));
        }
        Err(r) => return Err(explain(&r, &Target::env(env))),
    };
    if session.json() {
        output::json(&report);
    } else {
        show_import(&report, env, mode, args.dry_run);
    }
    let changed = report["changes"].as_array().is_some_and(|c| !c.is_empty());
    match (args.wait && changed, report["version"].as_i64()) {
        (true, Some(seq)) => crate::wait::report(session, seq).await,
        (true, None) => Err(Failure::Server(
            "the import was made, but the server's answer has no `version` to wait for: upgrade flagd-server"
                .to_owned(),
        )),
        // Nothing changed (or no --wait): every replica serves the file already, as far as it goes.
        (false, _) => Ok(()),
    }
}

/// What an import did, as a headline and a table of its changes.
fn show_import(report: &Value, env: &str, mode: &str, dry_run: bool) {
    let changes = report["changes"].as_array().map(Vec::as_slice).unwrap_or_default();
    let headline = match (dry_run, changes.len()) {
        (true, 0) => format!("dry run: importing into {env} ({mode}) would change nothing"),
        (true, n) => format!("dry run: nothing was changed; importing into {env} ({mode}) would make {n} change(s):"),
        (false, 0) => format!("imported into {env} ({mode}): nothing to change"),
        (false, n) => format!("imported into {env} ({mode}, seq {}): {n} change(s):", output::cell(&report["version"])),
    };
    output::line(&headline);
    let mut table = Table::new(&["ACTION", "KIND", "KEY", "CHANGED"]);
    for c in changes {
        table.row(vec![
            output::cell(&c["action"]),
            output::cell(&c["kind"]),
            output::cell(&c["key"]),
            changed_fields(&c["before"], &c["after"]),
        ]);
    }
    if !changes.is_empty() {
        table.print("");
    }
}

/// The top-level fields that differ between `before` and `after`, with their values when
/// short: `state: DISABLED → ENABLED, rules`.
fn changed_fields(before: &Value, after: &Value) -> String {
    let empty = Map::new();
    let (old, new) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    let diffs: Vec<String> = names
        .into_iter()
        .filter(|name| old.get(*name) != new.get(*name))
        .map(|name| {
            let show = |v: Option<&Value>| v.map_or_else(|| "-".to_owned(), output::cell);
            let (a, b) = (show(old.get(name)), show(new.get(name)));
            if a.len() + b.len() <= 40 { format!("{name}: {a} → {b}") } else { name.clone() }
        })
        .collect();
    if diffs.is_empty() { "-".to_owned() } else { diffs.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_saved_with_a_byte_order_mark_reads_as_the_json_after_it() {
        let parse = |text: &str| parse_json_text(text, &"f.json");
        assert_eq!(parse("\u{feff}{\"flags\": []}").ok(), Some(serde_json::json!({"flags": []})));
        assert!(parse("\u{feff}\u{feff}{}").is_err(), "one mark, not two");
        assert!(parse("{} x").is_err());
    }

    #[test]
    fn a_file_naming_a_key_twice_is_refused_with_where() {
        let refused = parse_json_text("\u{feff}{\"flags\": {\"a\": {}, \"a\": {}}}", &"f.json");
        let Err(Failure::Usage(message)) = refused else { panic!("{refused:?}") };
        assert!(message.starts_with("f.json: `a` is named twice in `flags` (line 1, column 23)"), "{message}");
    }
}
