//! Per-environment configurations: whole reads and `If-Match` writes, and the quick
//! operations (enable, disable, rollout, allow and deny lists), each atomic.

use std::collections::HashSet;

use flagd_core::{EnvironmentConfig, FlagDefinition, FlagState, Rollout, Serve, WeightedVariant};
use indexmap::IndexSet;
use serde::{Deserialize, Serialize};

use super::flags::check_if_match;
use super::{Service, Subject, Write, to_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{ConfigLookup, StoredConfig, Tx};

/// A configuration as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
    /// Flag key.
    pub flag: String,
    /// Environment name.
    pub environment: String,
    /// The configuration.
    #[serde(flatten)]
    pub config: EnvironmentConfig,
    /// Change sequence number of its last write (the ETag without quotes).
    pub version: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Who changed it last.
    pub updated_by: String,
    /// Present, as `true`, on the answer to a write that changed nothing (an enable of an
    /// enabled flag, a company already listed): no new version, no audit event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

impl ConfigView {
    /// The fields a view adds to the configuration: a `PUT` ignores them, so that what a
    /// `GET` or a write answered may be sent back as is.
    pub const READ_ONLY: [&'static str; 6] = ["flag", "environment", "version", "updatedAt", "updatedBy", "unchanged"];
}

impl From<StoredConfig> for ConfigView {
    fn from(c: StoredConfig) -> Self {
        Self {
            flag: c.flag,
            environment: c.environment,
            config: c.config,
            version: c.version,
            updated_at: c.updated_at,
            updated_by: c.updated_by,
            unchanged: false,
        }
    }
}

/// `PUT …/rollout`: a percentage of the on variant, or explicit weights.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutRequest {
    /// Percent of companies that get the on variant (the rest get the off variant): 0 to
    /// 100, at most three decimals.
    pub percentage: Option<f64>,
    /// Explicit weights, in bucket order.
    pub variants: Option<Vec<WeightedVariant>>,
    /// Attribute to bucket by. Without it the rollout keeps the bucketing of the rollout
    /// it replaces (`companyId` where the fallthrough is no rollout), so that a raised
    /// percentage keeps everyone who had the on variant; `companyId` goes back to the
    /// default.
    pub bucket_by: Option<String>,
    /// Why, for the audit log.
    pub reason: Option<String>,
}

/// The quick operations.
#[derive(Debug, Clone)]
pub enum QuickOp {
    /// Serve rules again.
    Enable,
    /// The kill switch.
    Disable,
    /// Set the fallthrough rollout.
    Rollout(RolloutRequest),
    /// Add companies to the allow list.
    Allow(Vec<String>),
    /// Remove companies from the allow list.
    Disallow(Vec<String>),
    /// Add companies to the deny list.
    Deny(Vec<String>),
    /// Remove companies from the deny list.
    Undeny(Vec<String>),
}

impl QuickOp {
    fn action(&self) -> &'static str {
        match self {
            Self::Enable => "config.enable",
            Self::Disable => "config.disable",
            Self::Rollout(_) => "config.rollout",
            Self::Allow(_) => "config.allow.add",
            Self::Disallow(_) => "config.allow.remove",
            Self::Deny(_) => "config.deny.add",
            Self::Undeny(_) => "config.deny.remove",
        }
    }

    fn apply(self, config: &mut EnvironmentConfig, def: &FlagDefinition) -> Result<(), ApiError> {
        match self {
            Self::Enable => config.state = FlagState::Enabled,
            Self::Disable => config.state = FlagState::Disabled,
            Self::Rollout(r) => {
                config.fallthrough = Some(Serve::Rollout(rollout(r, def, config.fallthrough.as_ref())?));
            }
            Self::Allow(ids) => add_companies(&mut config.allow, ids),
            Self::Disallow(ids) => remove_companies(&mut config.allow, &ids),
            Self::Deny(ids) => add_companies(&mut config.deny, ids),
            Self::Undeny(ids) => remove_companies(&mut config.deny, &ids),
        }
        Ok(())
    }
}

/// Appends the `ids` not yet on `list`, in their order. Through a hash set: lists of a
/// hundred thousand companies are real, and a scan of the list per id took seconds.
fn add_companies(list: &mut Vec<String>, ids: Vec<String>) {
    let mut all: IndexSet<String> = std::mem::take(list).into_iter().collect();
    all.extend(ids);
    *list = all.into_iter().collect();
}

/// Drops every one of `ids` from `list`, keeping the rest in order.
fn remove_companies(list: &mut Vec<String>, ids: &[String]) {
    let gone: HashSet<&String> = ids.iter().collect();
    list.retain(|c| !gone.contains(c));
}

/// The rollout `r` asks for, in place of the fallthrough `replaced`.
fn rollout(r: RolloutRequest, def: &FlagDefinition, replaced: Option<&Serve>) -> Result<Rollout, ApiError> {
    let mut rollout = match (r.percentage, r.variants) {
        (Some(p), None) => {
            let (Some(on), Some(off)) = (def.on_variant_name(), def.off_variant_name()) else {
                return Err(ApiError::bad_request(
                    "NO_ON_OFF_VARIANTS",
                    format!("flag `{}` has no on/off variants: send explicit `variants` weights", def.key),
                ));
            };
            Rollout::percentage(on, off, p)
                .map_err(|e| ApiError::bad_request("INVALID_PERCENTAGE", format!("percentage {p} {e}")))?
        }
        (None, Some(variants)) => Rollout { variants, bucket_by: None },
        _ => {
            return Err(ApiError::bad_request(
                "INVALID_ROLLOUT",
                "send either `percentage` or `variants` (a list of {variant, weight})",
            ));
        }
    };
    // Bucketed otherwise, the same share lands on other contexts: a raise from 10 % to
    // 50 % would take the feature from some who had it. So only an explicit `bucketBy`
    // changes the bucketing.
    rollout.bucket_by = match (r.bucket_by, replaced) {
        (Some(attribute), _) => Rollout::bucket_by(attribute),
        (None, Some(Serve::Rollout(old))) => old.bucket_by.clone(),
        (None, _) => None,
    };
    Ok(rollout)
}

/// A flag's definition and its configuration in `env`, if one was stored; 404 when the
/// environment or the flag does not exist.
async fn find_config(
    tx: &mut dyn Tx,
    key: &str,
    env: &str,
) -> Result<(FlagDefinition, Option<StoredConfig>), ApiError> {
    match tx.config(key, env).await? {
        ConfigLookup::NoEnvironment => Err(ApiError::environment_not_found(env)),
        ConfigLookup::NoFlag => Err(ApiError::flag_not_found(key)),
        ConfigLookup::Found { flag, config } => Ok((flag.definition, config.map(|c| *c))),
    }
}

/// For a write: the flag's definition and its configuration, the default one (version 0)
/// if none was stored yet.
async fn load_config(write: &mut Write, key: &str, env: &str) -> Result<(FlagDefinition, StoredConfig), ApiError> {
    let (definition, config) = find_config(write.tx.as_mut(), key, env).await?;
    let config = config.unwrap_or_else(|| StoredConfig {
        flag: key.to_owned(),
        environment: env.to_owned(),
        config: EnvironmentConfig::default(),
        version: 0,
        updated_at: 0,
        updated_by: String::new(),
    });
    Ok((definition, config))
}

impl Service {
    /// One flag's configuration in one environment.
    pub async fn config(&self, key: &str, env: &str) -> Result<ConfigView, ApiError> {
        let mut tx = self.store.begin_read().await?;
        let (_, config) = find_config(tx.as_mut(), key, env).await?;
        Ok(config.ok_or_else(|| ApiError::flag_not_found(key))?.into())
    }

    /// Replaces a configuration; `if_match` must be the version the caller read.
    pub async fn put_config(
        &self,
        actor: &Principal,
        key: &str,
        env: &str,
        config: EnvironmentConfig,
        if_match: i64,
        reason: Option<String>,
    ) -> Result<ConfigView, ApiError> {
        let mut write = self.begin(actor, reason).await?;
        let (_, current) = load_config(&mut write, key, env).await?;
        check_if_match(Some(if_match), current.version, || ConfigView::from(current.clone()))?;
        self.finish_config(write, "config.update", current, config).await
    }

    /// Applies a quick operation atomically. `If-Match` is optional (the operation never
    /// overwrites more than it changes); given, the operation applies only if the
    /// configuration is still at that version, as a console showing it expects.
    pub async fn quick(
        &self,
        actor: &Principal,
        (key, env): (&str, &str),
        op: QuickOp,
        reason: Option<String>,
        if_match: Option<i64>,
    ) -> Result<ConfigView, ApiError> {
        let mut write = self.begin(actor, reason).await?;
        let (definition, current) = load_config(&mut write, key, env).await?;
        check_if_match(if_match, current.version, || ConfigView::from(current.clone()))?;
        let action = op.action();
        let mut next = current.config.clone();
        op.apply(&mut next, &definition)?;
        self.finish_config(write, action, current, next).await
    }

    async fn finish_config(
        &self,
        mut write: Write,
        action: &str,
        current: StoredConfig,
        config: EnvironmentConfig,
    ) -> Result<ConfigView, ApiError> {
        // A repeated kill switch, or a script enabling what is on, must not fill the audit
        // log or send every replica a change; dropping the write rolls it back. Version 0
        // has nothing stored yet, so its write goes through.
        if current.version > 0 && config == current.config {
            return Ok(ConfigView { unchanged: true, ..current.into() });
        }
        let before = to_json(&current.config);
        let stored = StoredConfig {
            config,
            version: write.seq(),
            updated_at: write.now,
            updated_by: write.actor().to_owned(),
            ..current
        };
        write.tx.put_config(&stored).await?;
        let subject = Subject { environment: Some(&stored.environment), flag: Some(&stored.flag), segment: None };
        write.audit(action, subject, before, to_json(&stored.config));
        write.touch_config(&stored);
        self.commit(write).await?;
        Ok(stored.into())
    }

    /// Copies a configuration from one environment to another, keeping the target's
    /// state unless `include_state`. `if_match`, if given, is the target's version the
    /// caller saw: the copy replaces the target's rules and lists whole.
    pub async fn promote(
        &self,
        actor: &Principal,
        key: &str,
        (from, to): (&str, &str),
        include_state: bool,
        reason: Option<String>,
        if_match: Option<i64>,
    ) -> Result<ConfigView, ApiError> {
        if from == to {
            return Err(ApiError::bad_request("INVALID_PROMOTION", "`from` and `to` must differ"));
        }
        let mut write = self.begin(actor, reason).await?;
        let (_, source) = load_config(&mut write, key, from).await?;
        let (_, target) = load_config(&mut write, key, to).await?;
        check_if_match(if_match, target.version, || ConfigView::from(target.clone()))?;
        // An untouched source is almost always the wrong environment named: copying it
        // would silently take the target's pilot companies and rollout away.
        let empty = EnvironmentConfig::default();
        if source.config == empty && target.config != empty {
            return Err(ApiError::nothing_to_promote(key, from, to));
        }
        let mut next = source.config;
        if !include_state {
            next.state = target.config.state;
        }
        self.finish_config(write, "config.promote", target, next).await
    }
}
