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
    match (session.json(), found.len()) {
        (true, 1) => output::json(&found[0]),
        (true, _) => output::json(&json!({ "segments": found })),
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

async fn set(session: &Session, args: &SegmentSetArgs) -> Result<(), Failure> {
    let env = session.write_env("segment set")?;
    let body = match &args.file {
        Some(file) => segment_from_file(file, &args.key)?,
        None => segment_from_args(args)?,
    };
    let path = segment_path(env, &args.key);
    // Read first: create when absent, otherwise replace exactly the version we read.
    let existing = session.api.exchange(Request::new(Method::GET, path.clone(), target(env, &args.key))).await?;
    let (request, verb) = match existing {
        Ok(reply) => (Request::new(Method::PUT, path, target(env, &args.key)).if_match(reply.etag), "replaced"),
        Err(r) if r.code == "SEGMENT_NOT_FOUND" => {
            (Request::new(Method::POST, segments_path(env), target(env, &args.key)), "created")
        }
        Err(r) => return Err(crate::api::explain(&r, &target(env, &args.key))),
    };
    let view = session.api.send(request.json(body)).await?.body;
    if session.json() {
        output::json(&view);
    } else {
        let version = output::cell(&view["version"]);
        if view["unchanged"] == true {
            output::line(&format!("segment `{}` in {env} already was so, nothing changed (seq {version})", args.key));
        } else {
            output::line(&format!("{verb} segment `{}` in {env} (seq {version})", args.key));
        }
        describe(&view);
    }
    if args.wait {
        if let Some(seq) = view["version"].as_i64() {
            wait::report(session, seq).await?;
        }
    }
    Ok(())
}

fn segment_from_file(file: &Path, key: &str) -> Result<Value, Failure> {
    let mut body = read_json_file(file)?;
    let Some(fields) = body.as_object_mut() else {
        return Err(Failure::Usage(format!(
            "{} must hold one segment as a JSON object; nothing was changed",
            file.display()
        )));
    };
    for read_only in ["environment", "version"] {
        fields.remove(read_only);
    }
    fields.entry("key").or_insert_with(|| json!(key));
    Ok(body)
}

fn segment_from_args(args: &SegmentSetArgs) -> Result<Value, Failure> {
    let conditions: Vec<Value> = args.conditions.iter().map(|c| condition(c)).collect::<Result<_, _>>()?;
    let mut body = Map::new();
    body.insert("key".into(), json!(args.key));
    body.insert("companies".into(), json!(args.companies));
    body.insert("conditions".into(), Value::Array(conditions));
    if let Some(description) = &args.description {
        body.insert("description".into(), json!(description));
    }
    Ok(Value::Object(body))
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
