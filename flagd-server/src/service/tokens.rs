//! API tokens: created with their value shown once, listed without it, revoked.

use serde::{Deserialize, Serialize};

use super::{Service, Subject, to_json};
use crate::auth::{Principal, generate_id, generate_token, hash_token};
use crate::error::ApiError;
use crate::store::{Role, Token};

/// `POST /tokens`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewToken {
    /// A label for people, 1 to 150 printable characters; the audit log names writers by it.
    #[schema(min_length = 1, max_length = 150)]
    pub name: String,
    /// `evaluate`, `read` or `admin`.
    pub role: Role,
    /// Required for `evaluate` tokens (it selects the environment OFREP serves).
    pub environment: Option<String>,
}

/// A created token: the only time its value is shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// The stored token (without its value).
    #[serde(flatten)]
    pub token: Token,
    /// The secret value: store it now, it cannot be shown again.
    pub value: String,
}

/// The longest token name.
const MAX_NAME: usize = 150;

impl Service {
    /// Every token (without values), newest first.
    pub async fn list_tokens(&self) -> Result<Vec<Token>, ApiError> {
        Ok(self.store.begin_read().await?.tokens().await?)
    }

    /// Creates a token.
    pub async fn create_token(&self, actor: &Principal, new: NewToken) -> Result<CreatedToken, ApiError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "INVALID_NAME",
                format!("a token name is 1 to {MAX_NAME} printable characters"),
            ));
        }
        if RESERVED_NAMES.contains(&name) {
            return Err(ApiError::bad_request(
                "INVALID_NAME",
                format!("`{name}` names the server's own actions in the audit log: choose another name"),
            ));
        }
        let mut write = self.begin(actor, None).await?;
        match (new.role, &new.environment) {
            (Role::Evaluate, Some(env)) => write.require_environment(env).await?,
            (Role::Evaluate, None) => {
                return Err(ApiError::bad_request(
                    "ENVIRONMENT_REQUIRED",
                    "an `evaluate` token needs an `environment`",
                ));
            }
            (_, Some(_)) => {
                return Err(ApiError::bad_request(
                    "UNEXPECTED_ENVIRONMENT",
                    "only `evaluate` tokens are bound to an environment",
                ));
            }
            (_, None) => {}
        }
        let value = generate_token();
        let token = Token {
            id: generate_id(),
            name: name.to_owned(),
            role: new.role,
            environment: new.environment,
            hash: hash_token(&value),
            created_at: write.now,
            revoked_at: None,
        };
        write.tx.insert_token(&token).await?;
        write.audit(
            "token.create",
            Subject { environment: token.environment.as_deref(), ..Subject::default() },
            None,
            to_json(&token),
        );
        self.commit(write).await?;
        Ok(CreatedToken { token, value })
    }

    /// Revokes a token; it stops working before this returns. Revoking a revoked token
    /// changes nothing. The last live admin token cannot be revoked: nobody could then
    /// manage the server until a restart with a new `--admin-token`.
    pub async fn revoke_token(&self, actor: &Principal, id: &str) -> Result<(), ApiError> {
        let mut write = self.begin(actor, None).await?;
        // The write holds the change-sequence lock, so no other revocation can slip in
        // between this count and the update.
        let tokens = write.tx.tokens().await?;
        let live_admin = |t: &&Token| t.role == Role::Admin && t.revoked_at.is_none();
        let Some(token) = tokens.iter().find(|t| t.id == id) else {
            return Err(ApiError::NotFound { code: "TOKEN_NOT_FOUND", message: format!("no token with id `{id}`") });
        };
        if token.revoked_at.is_some() {
            return Ok(());
        }
        if live_admin(&token) && tokens.iter().filter(live_admin).count() == 1 {
            return Err(ApiError::Conflict {
                code: "LAST_ADMIN_TOKEN",
                message: format!("`{}` is the last admin token; create another admin token first", token.name),
            });
        }
        let at = write.now;
        write.tx.revoke_token(id, at).await?;
        // The whole token, as `token.create` records it, so that the log says whose token
        // went and, for an evaluate token, is found by its environment.
        let revoked = Token { revoked_at: Some(at), ..token.clone() };
        let environment = token.environment.as_deref();
        write.audit("token.revoke", Subject { environment, ..Subject::default() }, to_json(token), to_json(&revoked));
        self.commit(write).await?;
        Ok(())
    }

    /// Makes sure an admin token exists: the given value (created if missing), or a new
    /// one, returned so that it can be printed once, when there is no admin token at all.
    ///
    /// Replicas of one deployment start together with the same `--admin-token`, so the
    /// decision is taken again inside the write, which holds the change-sequence lock: a
    /// replica that lost the race finds the winner's token there and writes nothing.
    pub(super) async fn ensure_admin_token(&self, given: Option<&str>) -> Result<Option<String>, ApiError> {
        // Every start but the first finds the token already there, without taking the
        // write lock.
        let existing = self.store.begin_read().await?.tokens().await?;
        if let Some(unusable) = given.and_then(|value| unusable_admin_token(&existing, value)) {
            tracing::warn!("the --admin-token value names {unusable}: it grants nothing; give a new value");
        }
        if !admin_token_missing(&existing, given) {
            return Ok(None);
        }
        let system = Principal::system();
        let mut write = self.begin(&system, None).await?;
        if !admin_token_missing(&write.tx.tokens().await?, given) {
            return Ok(None);
        }
        let (value, name) = match given {
            Some(v) => (v.to_owned(), GIVEN_ADMIN),
            None => (generate_token(), GENERATED_ADMIN),
        };
        let token = Token {
            id: generate_id(),
            name: name.to_owned(),
            role: Role::Admin,
            environment: None,
            hash: hash_token(&value),
            created_at: write.now,
            revoked_at: None,
        };
        write.tx.insert_token(&token).await?;
        write.audit("token.create", Subject::default(), None, to_json(&token));
        self.commit(write).await?;
        Ok(given.is_none().then_some(value))
    }
}

/// The names of the tokens the server makes itself.
const GIVEN_ADMIN: &str = "admin (--admin-token)";
const GENERATED_ADMIN: &str = "admin (generated at first start)";

/// Names no token created through the API may take: the audit log names an action's actor
/// by its token's name, and these are the server's own and its bootstrap tokens'.
const RESERVED_NAMES: [&str; 3] = [crate::auth::SYSTEM_ACTOR, GIVEN_ADMIN, GENERATED_ADMIN];

/// What the token with `value` is when it cannot be used as an admin's (revoked, or of
/// another role): a start given it says so rather than leaving its operator locked out
/// without a word.
fn unusable_admin_token(existing: &[Token], value: &str) -> Option<String> {
    let hash = hash_token(value);
    let token = existing.iter().find(|t| t.hash == hash)?;
    match (token.revoked_at, token.role) {
        (Some(_), _) => Some(format!("token `{}`, which was revoked", token.name)),
        (None, Role::Admin) => None,
        (None, role) => Some(format!("token `{}`, whose role is {}", token.name, role.as_str())),
    }
}

/// Whether [`Service::ensure_admin_token`] has a token to create among `existing`: the
/// given value when no token has its hash (whatever its role or state: a revoked token
/// stays revoked), or a generated one when there is no live admin token.
fn admin_token_missing(existing: &[Token], given: Option<&str>) -> bool {
    match given {
        Some(value) => {
            let hash = hash_token(value);
            !existing.iter().any(|t| t.hash == hash)
        }
        None => !existing.iter().any(|t| t.role == Role::Admin && t.revoked_at.is_none()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(name: &str, value: &str, role: Role, revoked_at: Option<i64>) -> Token {
        let hash = hash_token(value);
        Token { id: name.into(), name: name.into(), role, environment: None, hash, created_at: 0, revoked_at }
    }

    #[test]
    fn an_admin_token_value_that_grants_nothing_is_named_with_why() {
        let existing = [
            stored("boot", "live", Role::Admin, None),
            stored("old", "gone", Role::Admin, Some(5)),
            stored("ci", "reader", Role::Read, None),
        ];
        let cases = [
            ("live", None),
            ("new", None),
            ("gone", Some("token `old`, which was revoked")),
            ("reader", Some("token `ci`, whose role is read")),
        ];
        for (value, expected) in cases {
            assert_eq!(unusable_admin_token(&existing, value).as_deref(), expected, "{value}");
        }
    }
}
