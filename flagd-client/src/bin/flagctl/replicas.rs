//! `flagctl replica list|forget`: the cluster view every `--wait` waits on.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{Request, Target, segment};
use crate::cli::ReplicaCommand;
use crate::exit::Failure;
use crate::output::{self, Table};
use crate::session::Session;

/// Runs one `replica` subcommand.
pub async fn run(session: &Session, command: &ReplicaCommand) -> Result<(), Failure> {
    session.refuse_env("replica", "a replica serves every environment")?;
    match command {
        ReplicaCommand::List => list(session).await,
        ReplicaCommand::Forget { id } => forget(session, id).await,
    }
}

async fn list(session: &Session) -> Result<(), Failure> {
    let view = session.api.send(Request::new(Method::GET, "/api/v1/cluster", Target::default())).await?.body;
    if session.json() {
        output::json(&view);
        return Ok(());
    }
    let now = view["now"].as_i64().unwrap_or_default();
    let mut table = Table::new(&["ID", "ADDRESS", "APPLIED", "LAG", "LAST SEEN", ""]);
    for r in view["replicas"].as_array().map(Vec::as_slice).unwrap_or_default() {
        table.row(vec![
            output::cell(&r["id"]),
            output::cell(&r["address"]),
            output::cell(&r["appliedSeq"]),
            output::cell(&r["lag"]),
            heard(r, now),
            if r["this"] == true { "(this server)".to_owned() } else { String::new() },
        ]);
    }
    table.print("no replicas");
    Ok(())
}

/// How long ago a replica was heard from, on the database's clock the view is stamped with.
fn heard(replica: &Value, now: i64) -> String {
    let ago = (now - replica["lastSeen"].as_i64().unwrap_or(now)).max(0);
    if ago < 3_000 { "live".to_owned() } else { format!("{} s ago (silent)", ago / 1_000) }
}

async fn forget(session: &Session, id: &str) -> Result<(), Failure> {
    let path = format!("/api/v1/cluster/replicas/{}", segment(id));
    let target = Target { replica: Some(id), ..Target::default() };
    session.api.send(Request::new(Method::DELETE, path, target)).await?;
    if session.json() {
        output::json(&json!({ "forgotten": id }));
    } else {
        output::line(&format!(
            "forgot replica {id}: waits no longer count it (its next heartbeat, if any, brings it back)"
        ));
    }
    Ok(())
}
