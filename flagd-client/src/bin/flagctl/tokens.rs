//! `flagctl token create|list|revoke`.

use reqwest::Method;
use serde_json::json;

use crate::api::{Request, Target, segment};
use crate::cli::{Role, TokenCommand};
use crate::exit::Failure;
use crate::output::{self, Table};
use crate::session::Session;

/// Runs one `token` subcommand.
pub async fn run(session: &Session, command: &TokenCommand) -> Result<(), Failure> {
    match command {
        TokenCommand::Create { name, role } => create(session, name, *role).await,
        TokenCommand::List => {
            session.refuse_env("token list", ACROSS_ENVIRONMENTS)?;
            list(session).await
        }
        TokenCommand::Revoke { id } => {
            session.refuse_env("token revoke", ACROSS_ENVIRONMENTS)?;
            revoke(session, id).await
        }
    }
}

/// What `token list` and `token revoke` cover instead of one environment.
const ACROSS_ENVIRONMENTS: &str = "tokens are listed and revoked across environments (the ENVIRONMENT column \
     names an evaluate token's); nothing was changed";

async fn create(session: &Session, name: &str, role: Role) -> Result<(), Failure> {
    let env = match (role, session.env.as_deref()) {
        (Role::Evaluate, None) => {
            return Err(Failure::Usage(
                "an evaluate token is bound to one environment: add --env ENV; nothing was changed".to_owned(),
            ));
        }
        (Role::Evaluate, env) => env,
        // --env is global: say so rather than silently ignoring it on other roles.
        (_, Some(env)) => {
            return Err(Failure::Usage(format!(
                "only evaluate tokens are bound to an environment, {} tokens are not: drop --env {env}; nothing was \
                 changed",
                role.as_str()
            )));
        }
        (_, None) => None,
    };
    let body = json!({ "name": name, "role": role.as_str(), "environment": env });
    let target = Target { env, ..Target::default() };
    let token = session.api.send(Request::new(Method::POST, "/api/v1/tokens", target).json(body)).await?.body;
    if session.json() {
        output::json(&token);
        return Ok(());
    }
    output::note(&format!(
        "created {} token `{name}` (id {}); its value is shown only now, store it:",
        role.as_str(),
        output::cell(&token["id"])
    ));
    output::line(&output::cell(&token["value"]));
    Ok(())
}

async fn list(session: &Session) -> Result<(), Failure> {
    let reply = session.api.send(Request::new(Method::GET, "/api/v1/tokens", Target::default())).await?;
    if session.json() {
        output::json(&reply.body);
        return Ok(());
    }
    let mut table = Table::new(&["ID", "NAME", "ROLE", "ENVIRONMENT", "CREATED", "REVOKED"]);
    for t in reply.body["tokens"].as_array().map(Vec::as_slice).unwrap_or_default() {
        table.row(vec![
            output::cell(&t["id"]),
            output::cell(&t["name"]),
            output::cell(&t["role"]),
            output::cell(&t["environment"]),
            output::time_cell(&t["createdAt"]),
            output::time_cell(&t["revokedAt"]),
        ]);
    }
    table.print("no tokens");
    Ok(())
}

async fn revoke(session: &Session, id: &str) -> Result<(), Failure> {
    let target = Target { token: Some(id), ..Target::default() };
    session.api.send(Request::new(Method::DELETE, format!("/api/v1/tokens/{}", segment(id)), target)).await?;
    if session.json() {
        output::json(&json!({ "revoked": id }));
    } else {
        output::line(&format!("revoked token {id}: it no longer opens the API"));
    }
    Ok(())
}
