//! Environments: the three defaults on first start, listing, creating more.

use flagd_core::{EnvironmentConfig, is_strict_key};

use super::{Service, Subject, to_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::Environment;

/// Created on first start, in this order.
pub const DEFAULT_ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

impl Service {
    pub(super) async fn ensure_default_environments(&self) -> Result<(), ApiError> {
        let mut tx = self.store.begin_read().await?;
        if !tx.environments().await?.is_empty() {
            return Ok(());
        }
        drop(tx);
        let system = Principal::system();
        let mut write = self.begin(&system, Some("first start".into())).await?;
        // Another replica may have won the race to create them.
        if !write.tx.environments().await?.is_empty() {
            return Ok(());
        }
        for name in DEFAULT_ENVIRONMENTS {
            let env = Environment { name: name.into(), created_at: write.now };
            write.tx.insert_environment(&env).await?;
            write.audit(
                "environment.create",
                Subject { environment: Some(name), ..Subject::default() },
                None,
                to_json(&env),
            );
        }
        self.commit(write).await?;
        Ok(())
    }

    /// All environments.
    pub async fn environments(&self) -> Result<Vec<Environment>, ApiError> {
        Ok(self.store.begin_read().await?.environments().await?)
    }

    /// Creates an environment; every existing flag starts disabled in it.
    pub async fn create_environment(&self, actor: &Principal, name: &str) -> Result<Environment, ApiError> {
        if !is_strict_key(name) {
            return Err(ApiError::bad_request(
                "INVALID_NAME",
                format!("invalid environment name `{name}`: use lowercase letters, digits, `_`, `.` and `-`"),
            ));
        }
        let mut write = self.begin(actor, None).await?;
        if write.tx.environments().await?.iter().any(|e| e.name == name) {
            return Err(ApiError::already_exists(format!("environment `{name}` already exists")));
        }
        let env = Environment { name: name.into(), created_at: write.now };
        write.tx.insert_environment(&env).await?;
        for flag in write.tx.flags().await? {
            write.put_config(&flag.definition.key, name, EnvironmentConfig::default()).await?;
        }
        write.audit(
            "environment.create",
            Subject { environment: Some(name), ..Subject::default() },
            None,
            to_json(&env),
        );
        write.touch(name);
        self.commit(write).await?;
        Ok(env)
    }
}
