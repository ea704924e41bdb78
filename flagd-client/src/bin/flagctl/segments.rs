//! `flagctl segment list|get|set|delete`: cohorts of companies, per environment.

use std::path::Path;

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::api::{Request, Target, segment};
use crate::cli::{SegmentCommand, SegmentSetArgs};
use crate::exit::Failure;
use crate::flags::{attribute_value, environment_names};
use crate::output::{self, Table};
use crate::session::Session;
use crate::transfer::read_json_file;
use crate::wait;

/// Runs one `segment` subcommand.
pub async fn run(session: &Session, command: &SegmentCommand) -> Result<(), Failure> {
    match command {
        SegmentCommand::List => list(session).await,
        SegmentCommand::Get { key } => get(session, key).await,
        SegmentCommand::Set(args) => set(session, args).await,
        SegmentCommand::Delete { key } => delete(session, key).await,
    }
}

fn segments_path(env: &str) -> String {
    format!("/api/v1/environments/{}/segments", segment(env))
}

fn segment_path(env: &str, key: &str) -> String {
    format!("{}/{}", segments_path(env), segment(key))
}

fn target<'a>(env: &'a str, key: &'a str) -> Target<'a> {
    Target { env: Some(env), segment: Some(key), ..Target::default() }
}

/// `--env`, or every environment for reads without it.
async fn read_envs(session: &Session) -> Result<Vec<String>, Failure> {
    match &session.env {
        Some(env) => Ok(vec![env.clone()]),
        None => environment_names(session).await,
    }
}

async fn list(session: &Session) -> Result<(), Failure> {
    let mut segments = Vec::new();
    for env in read_envs(session).await? {
        let reply = session.api.send(Request::new(Method::GET, segments_path(&env), Target::env(&env))).await?;
        segments.extend(reply.body["segments"].as_array().cloned().unwrap_or_default());
    }
    if session.json() {
        output::json(&json!({ "segments": segments }));
        return Ok(());
    }
    let mut table = Table::new(&["ENVIRONMENT", "KEY", "COMPANIES", "CONDITIONS", "DESCRIPTION"]);
    for s in &segments {
        table.row(vec![
            output::cell(&s["environment"]),
            output::cell(&s["key"]),
            output::list_summary(&s["companies"]),
            conditions_text(&s["conditions"]),
            output::cell(&s["description"]),
        ]);
    }
    table.print("no segments; create one with `flagctl segment set KEY --env ENV --company ID`");
    Ok(())
}

fn conditions_text(conditions: &Value) -> String {
    let list = conditions.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "-".to_owned();
    }
    let texts: Vec<String> = list
        .iter()
        .map(|c| format!("{} {} {}", output::cell(&c["attribute"]), output::cell(&c["op"]), c["value"]))
        .collect();
    texts.join(" and ")
}

async fn get(session: &Session, key: &str) -> Result<(), Failure> {
    let mut found = Vec::new();
    for env in read_envs(session).await? {
        let request = Request::new(Method::GET, segment_path(&env, key), target(&env, key));
        match session.api.exchange(request).await? {
            Ok(reply) => found.push(reply.body),
            // Looking in every environment: absent from one is not an error.
            Err(r) if session.env.is_none() && r.code == "SEGMENT_NOT_FOUND" => {}
            Err(r) => return Err(crate::api::explain(&r, &target(&env, key))),
        }
    }
    if found.is_empty() {
        return Err(Failure::NotFound(format!(
            "segment `{key}` not found in any environment; list segments with `flagctl segment list`"
        )));
    }
    // Without --env the shape must not depend on how many environments hold the segment
    // today: a script reading it would break when another one gets a segment of that name.
    match (session.json(), &session.env) {
        (true, Some(_)) => output::json(&found[0]),
        (true, None) => output::json(&json!({ "segments": found })),
        (false, _) => found.iter().for_each(describe),
    }
    Ok(())
}

fn describe(s: &Value) {
    output::fields(&[
        ("segment", output::cell(&s["key"])),
        ("environment", output::cell(&s["environment"])),
        ("description", output::cell(&s["description"])),
        ("companies", output::list_cell(&s["companies"])),
        ("conditions", conditions_text(&s["conditions"])),
        ("version", output::cell(&s["version"])),
    ]);
}

/// What `segment set` writes over a stored segment.
enum Change {
    /// `--file`: the whole segment.
    Whole(Value),
    /// The parts the options name (`companies`, `conditions`, `description`); the stored
    /// segment keeps the others.
    Parts(Map<String, Value>),
}

/// The parts `segment set` can name, in the order messages list them.
const PARTS: [&str; 3] = ["companies", "conditions", "description"];

/// The fields a segment's view adds; sent back they would be ignored, so they are left out.
const READ_ONLY: [&str; 3] = ["environment", "version", "unchanged"];

async fn set(session: &Session, args: &SegmentSetArgs) -> Result<(), Failure> {
    let env = session.write_env("segment set")?;
    // Read and checked before anything is sent, so that a mistake changes nothing.
    let change = match &args.file {
        Some(file) => Change::Whole(segment_from_file(file, &args.key)?),
        None => Change::Parts(named_parts(args)?),
    };
    let path = segment_path(env, &args.key);
    let key = &args.key;
    // Read first: create when absent, otherwise write over exactly the version we read, so
    // that a change made meanwhile is refused (412) rather than lost.
    let existing = session.api.exchange(Request::new(Method::GET, path.clone(), target(env, key))).await?;
    // What the confirmation says, around the new version: `{done} (seq N){detail}`.
    let (request, done, detail) = match existing {
        Ok(reply) => {
            let (body, done, detail) = match change {
                Change::Whole(body) => (body, "replaced", " with the file's".to_owned()),
                Change::Parts(named) if named.is_empty() => return unchanged(session, env, args, reply.body).await,
                Change::Parts(named) => {
                    let detail = format!(": {}", parts_summary(&named));
                    (merged(reply.body, named)?, "updated", detail)
                }
            };
            (Request::new(Method::PUT, path, target(env, key)).if_match(reply.etag).json(body), done, detail)
        }
        Err(r) if r.code == "SEGMENT_NOT_FOUND" => {
            let body = match change {
                Change::Whole(body) => body,
                Change::Parts(named) => new_segment(key, named),
            };
            (Request::new(Method::POST, segments_path(env), target(env, key)).json(body), "created", String::new())
        }
        Err(r) => return Err(crate::api::explain(&r, &target(env, key))),
    };
    let view = session.api.send(request).await?.body;
    if session.json() {
        output::json(&view);
    } else {
        let version = output::cell(&view["version"]);
        if view["unchanged"] == true {
            output::line(&format!("segment `{key}` in {env} already was so, nothing changed (seq {version})"));
        } else {
            output::line(&format!("{done} segment `{key}` in {env} (seq {version}){detail}"));
        }
        describe(&view);
    }
    wait_if_asked(session, args, &view).await
}

/// An existing segment and no option to change it: a no-op, as setting what already is,
/// rather than a usage error, since the same command line creates the segment when absent.
async fn unchanged(session: &Session, env: &str, args: &SegmentSetArgs, mut view: Value) -> Result<(), Failure> {
    if session.json() {
        // The shape of the server's answer to a write that changed nothing.
        view["unchanged"] = json!(true);
        output::json(&view);
    } else {
        output::line(&format!(
            "segment `{}` in {env} unchanged: give --company, --condition, --description or --file to change it",
            args.key
        ));
        describe(&view);
    }
    wait_if_asked(session, args, &view).await
}

async fn wait_if_asked(session: &Session, args: &SegmentSetArgs, view: &Value) -> Result<(), Failure> {
    if args.wait {
        if let Some(seq) = view["version"].as_i64() {
            wait::report(session, seq).await?;
        }
    }
    Ok(())
}

/// `set its description; kept its companies and conditions`.
fn parts_summary(named: &Map<String, Value>) -> String {
    let (set, kept): (Vec<&str>, Vec<&str>) = PARTS.into_iter().partition(|part| named.contains_key(*part));
    match kept.as_slice() {
        [] => format!("set its {}", words(&set)),
        _ => format!("set its {}; kept its {}", words(&set), words(&kept)),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn words(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The stored segment with the named parts written over it. Built from what the server
/// sent rather than from the parts flagctl knows, so that a field of a newer server
/// survives too.
fn merged(stored: Value, named: Map<String, Value>) -> Result<Value, Failure> {
    let Value::Object(mut fields) = stored else {
        return Err(Failure::Server(format!(
            "the server's answer for the segment is not a JSON object ({stored}); nothing was changed: upgrade flagctl \
             or report this"
        )));
    };
    for read_only in READ_ONLY {
        fields.remove(read_only);
    }
    fields.extend(named);
    Ok(Value::Object(fields))
}

fn new_segment(key: &str, named: Map<String, Value>) -> Value {
    let mut body = Map::new();
    body.insert("key".into(), json!(key));
    body.insert("companies".into(), json!([]));
    body.insert("conditions".into(), json!([]));
    body.extend(named);
    Value::Object(body)
}

fn segment_from_file(file: &Path, key: &str) -> Result<Value, Failure> {
    let mut body = read_json_file(file)?;
    let Some(fields) = body.as_object_mut() else {
        return Err(Failure::Usage(format!(
            "{} must hold one segment as a JSON object; nothing was changed",
            file.display()
        )));
    };
    for read_only in READ_ONLY {
        fields.remove(read_only);
    }
    // The server refuses a mismatch on update but, creating, takes the body's key: the
    // segment would be made under another name than the one the command line gave.
    match fields.entry("key").or_insert_with(|| json!(key)) {
        Value::String(named) if named == key => Ok(body),
        named => Err(Failure::Usage(format!(
            "{} names the segment {named}, the command line `{key}`: make them agree (or leave `key` out of \
             the file); nothing was changed",
            file.display()
        ))),
    }
}

/// The parts named on the command line; an option not given names nothing (it cannot
/// empty a list: that takes --file).
fn named_parts(args: &SegmentSetArgs) -> Result<Map<String, Value>, Failure> {
    let mut named = Map::new();
    if !args.companies.is_empty() {
        named.insert("companies".into(), json!(args.companies));
    }
    if !args.conditions.is_empty() {
        let conditions: Vec<Value> = args.conditions.iter().map(|c| condition(c)).collect::<Result<_, _>>()?;
        named.insert("conditions".into(), Value::Array(conditions));
    }
    if let Some(description) = &args.description {
        named.insert("description".into(), json!(description));
    }
    Ok(named)
}

/// Operators whose value is a list (comma-separated on the command line).
const LIST_OPERATORS: &[&str] = &["in", "not_in"];

/// `ATTRIBUTE OP VALUE` → a condition object.
fn condition(text: &str) -> Result<Value, Failure> {
    let mut parts = text.trim().splitn(3, char::is_whitespace);
    let (Some(attribute), Some(op), Some(raw)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::Usage(format!(
            "--condition `{text}`: write it as 'ATTRIBUTE OP VALUE', e.g. 'plan in pro,enterprise'; nothing was changed"
        )));
    };
    let raw = raw.trim();
    let value = if LIST_OPERATORS.contains(&op) {
        Value::Array(raw.split(',').map(|item| attribute_value(item.trim())).collect())
    } else {
        attribute_value(raw)
    };
    Ok(json!({ "attribute": attribute, "op": op, "value": value }))
}

async fn delete(session: &Session, key: &str) -> Result<(), Failure> {
    let env = session.write_env("segment delete")?;
    session.api.send(Request::new(Method::DELETE, segment_path(env, key), target(env, key))).await?;
    if session.json() {
        output::json(&json!({ "deleted": key, "environment": env }));
    } else {
        output::line(&format!("deleted segment `{key}` from {env}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_read_lists_and_typed_values() {
        assert_eq!(
            condition("plan in pro, enterprise").unwrap(),
            json!({"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]})
        );
        assert_eq!(condition("seats gte 10").unwrap(), json!({"attribute": "seats", "op": "gte", "value": 10}));
        assert!(condition("plan").is_err());
    }
}
