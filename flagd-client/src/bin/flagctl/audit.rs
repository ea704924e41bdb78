//! `flagctl audit [KEY]`: the audit log, newest first, across as many pages as asked.

use std::collections::{HashMap, HashSet};

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{Request, Target};
use crate::cli::AuditArgs;
use crate::exit::Failure;
use crate::output::{self, Table};
use crate::session::Session;

/// The largest page the server serves.
const MAX_PAGE: u32 = 1000;

/// Runs `audit`.
pub async fn run(session: &Session, args: &AuditArgs) -> Result<(), Failure> {
    let since = args.since.as_deref().map(since_param).transpose()?;
    let mut events: Vec<Value> = Vec::new();
    let mut cursor: Option<i64> = None;
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    // Names the environment in the not-found failure of one that does not exist.
    let target = Target { env: session.env.as_deref(), ..Target::default() };
    let next_cursor = loop {
        let remaining = u32::try_from(limit - events.len()).unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let mut request = Request::new(Method::GET, "/api/v1/audit", target).query("limit", remaining.to_string());
        let filters = [("flag", &args.key), ("environment", &session.env), ("actor", &args.actor), ("since", &since)];
        for (name, value) in filters {
            if let Some(value) = value {
                request = request.query(name, value.clone());
            }
        }
        if let Some(cursor) = cursor {
            request = request.query("cursor", cursor.to_string());
        }
        let page = session.api.send(request).await?.body;
        events.extend(page["events"].as_array().cloned().unwrap_or_default());
        cursor = page["nextCursor"].as_i64();
        if cursor.is_none() || events.len() >= limit {
            break cursor;
        }
    };
    if session.json() {
        output::json(&json!({ "events": events, "nextCursor": next_cursor }));
        return Ok(());
    }
    let shared = names_of_several_tokens(&events);
    let mut table = Table::new(&["TIME", "SEQ", "ACTOR", "ACTION", "ENVIRONMENT", "SUBJECT", "REASON"]);
    for e in &events {
        let subject = if e["flag"].is_string() { &e["flag"] } else { &e["segment"] };
        let actor = match (e["actor"].as_str(), e["actorToken"].as_str()) {
            (Some(name), Some(token)) if shared.contains(name) => format!("{name} ({token})"),
            _ => output::cell(&e["actor"]),
        };
        table.row(vec![
            output::time_cell(&e["at"]),
            output::cell(&e["seq"]),
            actor,
            output::cell(&e["action"]),
            output::cell(&e["environment"]),
            output::cell(subject),
            output::cell(&e["reason"]),
        ]);
    }
    table.print("no audit events match");
    Ok(())
}

/// The actor names that more than one token among `events` goes by (a token rotated under
/// the same name): those actors are shown with their token's id, as `flagctl token list`
/// lists it.
fn names_of_several_tokens(events: &[Value]) -> HashSet<&str> {
    let mut tokens: HashMap<&str, HashSet<&str>> = HashMap::new();
    for e in events {
        if let (Some(name), Some(token)) = (e["actor"].as_str(), e["actorToken"].as_str()) {
            tokens.entry(name).or_default().insert(token);
        }
    }
    tokens.into_iter().filter(|(_, ids)| ids.len() > 1).map(|(name, _)| name).collect()
}

/// `--since`: a duration ago (`1h`) becomes Unix milliseconds; times are passed on as
/// written for the server to read (RFC 3339 or Unix milliseconds).
fn since_param(since: &str) -> Result<String, Failure> {
    if since.parse::<i64>().is_ok() || since.contains('T') {
        return Ok(since.to_owned());
    }
    let ago = crate::duration::parse(since).map_err(|e| {
        Failure::Usage(format!("--since {e}; or give an RFC 3339 time (2024-05-01T00:00:00Z) or Unix milliseconds"))
    })?;
    let ago_ms = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
    Ok(output::now_ms().saturating_sub(ago_ms).to_string())
}
