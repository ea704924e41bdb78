//! Flag definitions: list, read, create (disabled everywhere), change, delete.

use std::collections::BTreeMap;

use flagd_core::{EnvironmentConfig, FlagDefinition, FlagState};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Service, Subject, etag, to_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{MAX_AUDIT_PAGE_BYTES, StoredConfig, StoredFlag, Tx};

/// A flag as the API shows it: its definition, version, and its state per environment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlagView {
    /// The definition.
    #[serde(flatten)]
    pub definition: FlagDefinition,
    /// Change sequence number of the definition's last write.
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Per environment: state and the configuration's version.
    pub environments: BTreeMap<String, EnvironmentSummary>,
    /// Present, as `true`, on the answer to a change that changed nothing (a `PATCH` of
    /// `{}` or of the values stored): no new version, no audit event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// One environment's view of a flag, in lists.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSummary {
    /// Enabled or disabled.
    pub state: FlagState,
    /// The configuration's version (its ETag without quotes).
    pub version: i64,
    /// Who changed it last.
    pub updated_by: String,
    /// When, Unix milliseconds.
    pub updated_at: i64,
}

/// A partial update of a definition, field by field: a field left out stays, a field given
/// replaces the stored one whole (`variants`, `tags` and `metadata` included: they are not
/// merged key by key), and a field given as `null` goes back to what a flag created
/// without it has (no description, no tags, boolean variants, the variant named `off` or
/// `on`, an off variant).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagPatch {
    /// What the flag is for.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<String>, nullable)]
    description: Option<Option<String>>,
    /// Who to ask about it.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<String>, nullable)]
    owner: Option<Option<String>>,
    /// Free-form labels.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    tags: Option<Option<Vec<String>>>,
    /// Variant name → value, all of one JSON type; `null` makes the flag boolean.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<IndexMap<String, Value>>, nullable)]
    variants: Option<Option<IndexMap<String, Value>>>,
    /// The variant served when disabled, denied or nothing else applies; `null` makes it
    /// the variant named `off` again (none with `noOffVariant`).
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<String>, nullable)]
    off_variant: Option<Option<String>>,
    /// Whether the flag has no off variant when `offVariant` is unset, even one named
    /// `off` (see the definition's field).
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<bool>, nullable)]
    no_off_variant: Option<Option<bool>>,
    /// The variant served to allowed companies and by percentage rollouts; `null` makes it
    /// the variant named `on` again.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<String>, nullable)]
    on_variant: Option<Option<String>>,
    /// Reported with every evaluation.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<Map<String, Value>>, nullable)]
    metadata: Option<Option<Map<String, Value>>>,
    /// Why, for the audit log.
    pub reason: Option<String>,
}

/// Reads a field that is present, `null` included, as `Some`: serde reads a present `null`
/// and a missing field alike as `None`, and a patch tells them apart.
fn given<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(de: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(de).map(Some)
}

/// Applies one field of a patch: left out keeps `field`, `null` resets it to its default.
fn merge<T: Default>(field: &mut T, patch: Option<Option<T>>) {
    if let Some(value) = patch {
        *field = value.unwrap_or_default();
    }
}

impl FlagPatch {
    fn apply(self, def: &mut FlagDefinition) {
        let FlagPatch {
            description,
            owner,
            tags,
            variants,
            off_variant,
            no_off_variant,
            on_variant,
            metadata,
            reason: _,
        } = self;
        merge(&mut def.description, description);
        merge(&mut def.owner, owner);
        merge(&mut def.tags, tags);
        merge(&mut def.variants, variants);
        if let Some(name) = off_variant {
            def.off_variant = name;
        }
        merge(&mut def.no_off_variant, no_off_variant);
        if let Some(name) = on_variant {
            def.on_variant = name;
        }
        merge(&mut def.metadata, metadata);
    }
}

fn view(flag: StoredFlag, configs: Vec<StoredConfig>) -> FlagView {
    let environments = configs
        .into_iter()
        .map(|c| {
            let summary = EnvironmentSummary {
                state: c.config.state,
                version: c.version,
                updated_by: c.updated_by,
                updated_at: c.updated_at,
            };
            (c.environment, summary)
        })
        .collect();
    FlagView {
        definition: flag.definition,
        version: flag.version,
        created_at: flag.created_at,
        updated_at: flag.updated_at,
        environments,
        unchanged: false,
    }
}

/// Whether two definitions would be stored alike. `==` is not enough: it compares the
/// variants and metadata as maps, in any order, and their order is kept and shown.
fn stored_alike(a: &FlagDefinition, b: &FlagDefinition) -> bool {
    a == b && serde_json::to_vec(a).ok() == serde_json::to_vec(b).ok()
}

async fn load_flag(tx: &mut dyn Tx, key: &str) -> Result<StoredFlag, ApiError> {
    tx.flag(key).await?.ok_or_else(|| ApiError::flag_not_found(key))
}

/// Refuses a stale `If-Match`, with `current()` (made only then) as the state to start from.
pub(crate) fn check_if_match<T: Serialize>(
    if_match: Option<i64>,
    version: i64,
    current: impl FnOnce() -> T,
) -> Result<(), ApiError> {
    match if_match {
        Some(v) if v != version => {
            let current = to_json(&current()).unwrap_or_default();
            Err(ApiError::PreconditionFailed { etag: etag(version), current })
        }
        _ => Ok(()),
    }
}

impl Service {
    /// Every flag with its per-environment states.
    pub async fn flags(&self) -> Result<Vec<FlagView>, ApiError> {
        let mut tx = self.store.begin_read().await?;
        let mut views = Vec::new();
        for flag in tx.flags().await? {
            let configs = tx.flag_configs(&flag.definition.key).await?;
            views.push(view(flag, configs));
        }
        Ok(views)
    }

    /// One flag.
    pub async fn flag(&self, key: &str) -> Result<FlagView, ApiError> {
        let mut tx = self.store.begin_read().await?;
        let flag = load_flag(tx.as_mut(), key).await?;
        let configs = tx.flag_configs(key).await?;
        Ok(view(flag, configs))
    }

    /// Creates a flag, disabled in every environment.
    pub async fn create_flag(&self, actor: &Principal, definition: FlagDefinition) -> Result<FlagView, ApiError> {
        super::check_keys([definition.key.as_str()], [], None)?;
        let mut write = self.begin(actor, None).await?;
        let key = definition.key.clone();
        if write.tx.flag(&key).await?.is_some() {
            return Err(ApiError::already_exists(format!("flag `{key}` already exists")));
        }
        let stored = StoredFlag { definition, version: write.seq(), created_at: write.now, updated_at: write.now };
        write.tx.put_flag(&stored).await?;
        for env in write.touch_all().await? {
            write.put_config(&key, &env.name, EnvironmentConfig::default()).await?;
        }
        write.audit(
            "flag.create",
            Subject { flag: Some(&key), ..Subject::default() },
            None,
            to_json(&stored.definition),
        );
        self.commit(write).await?;
        self.flag(&key).await
    }

    /// Changes a definition; every environment is revalidated (a removed variant that a
    /// rule still serves is refused).
    pub async fn update_flag(
        &self,
        actor: &Principal,
        key: &str,
        patch: FlagPatch,
        if_match: Option<i64>,
    ) -> Result<FlagView, ApiError> {
        let mut write = self.begin(actor, patch.reason.clone()).await?;
        let current = load_flag(write.tx.as_mut(), key).await?;
        check_if_match(if_match, current.version, || &current.definition)?;
        let mut definition = current.definition.clone();
        patch.apply(&mut definition);
        // As for configurations: a change to what is stored already must not fill the
        // audit log or make every replica recompile every environment; dropping the write
        // rolls it back.
        if stored_alike(&definition, &current.definition) {
            let configs = write.tx.flag_configs(key).await?;
            return Ok(FlagView { unchanged: true, ..view(current, configs) });
        }
        let before = to_json(&current.definition);
        let stored = StoredFlag { definition, version: write.seq(), updated_at: write.now, ..current };
        write.tx.put_flag(&stored).await?;
        write.touch_all().await?;
        write.audit(
            "flag.update",
            Subject { flag: Some(key), ..Subject::default() },
            before,
            to_json(&stored.definition),
        );
        self.commit(write).await?;
        self.flag(key).await
    }

    /// Deletes a flag from every environment; given `if_match`, only if the definition is
    /// still at that version.
    pub async fn delete_flag(
        &self,
        actor: &Principal,
        key: &str,
        reason: Option<String>,
        if_match: Option<i64>,
    ) -> Result<(), ApiError> {
        let mut write = self.begin(actor, reason).await?;
        let stored = load_flag(write.tx.as_mut(), key).await?;
        check_if_match(if_match, stored.version, || &stored.definition)?;
        // The audit event is the only record left of what each environment served: it keeps
        // the configurations beside the definition, so the flag can be put back as it was
        // (all of them unless they pass 8 MiB, see `DeletedFlag`).
        let configs = write.tx.flag_configs(key).await?;
        let before = DeletedFlag::new(&stored.definition, configs);
        write.tx.delete_flag(key).await?;
        write.touch_all().await?;
        write.audit("flag.delete", Subject { flag: Some(key), ..Subject::default() }, to_json(&before), None);
        self.commit(write).await?;
        Ok(())
    }
}

/// The most JSON a `flag.delete` event's `before` holds (unless its definition alone is
/// larger, as one stored before the document limit may be): what one page of the audit log
/// carries, and half of what MariaDB takes in one statement (`max_allowed_packet`, 16 MiB
/// by default) and MySQL in one `MEDIUMTEXT` column. Each configuration is at most 1 MiB,
/// but a flag may have one in any number of environments, and a delete that could not
/// record its event could not happen at all.
const MAX_DELETED_FLAG_BYTES: usize = MAX_AUDIT_PAGE_BYTES;

/// What a `flag.delete` event records as `before`: the definition, and the configuration of
/// each environment that had one, or, past [`MAX_DELETED_FLAG_BYTES`], the environment's
/// name alone.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletedFlag<'a> {
    definition: &'a FlagDefinition,
    environments: BTreeMap<String, EnvironmentConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    omitted_environments: Vec<String>,
}

impl<'a> DeletedFlag<'a> {
    /// Keeps each configuration, by environment name, that fits within
    /// [`MAX_DELETED_FLAG_BYTES`] with the definition and those kept before it; names the
    /// others. A configuration too large to fit is skipped and smaller ones after it may
    /// still be kept.
    fn new(definition: &'a FlagDefinition, mut configs: Vec<StoredConfig>) -> Self {
        configs.sort_by(|a, b| a.environment.cmp(&b.environment));
        // The room starts as what is left beside every name listed as omitted; keeping a
        // configuration takes its name out of that list again (its quotes and comma), so
        // counting the name once more with its colon errs on the safe side.
        let omitted = configs.iter().map(|c| c.environment.clone()).collect();
        let all_omitted = Self { definition, environments: BTreeMap::new(), omitted_environments: omitted };
        let mut room = MAX_DELETED_FLAG_BYTES.saturating_sub(json_length(&all_omitted));
        let mut deleted = Self { omitted_environments: Vec::new(), ..all_omitted };
        for StoredConfig { environment, config, .. } in configs {
            // A name's quotes, colon and comma.
            let length = json_length(&config).saturating_add(environment.len() + 4);
            if length <= room {
                room -= length;
                deleted.environments.insert(environment, config);
            } else {
                deleted.omitted_environments.push(environment);
            }
        }
        deleted
    }
}

/// How many bytes `value` takes as JSON.
fn json_length<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |json| json.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(environment: &str, companies: usize) -> StoredConfig {
        let allow = (0..companies).map(|n| format!("company-{n:07}")).collect();
        StoredConfig {
            flag: "portal".to_owned(),
            environment: environment.to_owned(),
            config: EnvironmentConfig { allow, ..EnvironmentConfig::default() },
            version: 1,
            updated_at: 0,
            updated_by: "alice".to_owned(),
        }
    }

    #[test]
    fn a_deleted_flag_keeps_what_fits_in_8_mib_skipping_what_does_not() {
        let definition: FlagDefinition = serde_json::from_value(serde_json::json!({"key": "portal"})).unwrap();
        // Each company id takes 18 bytes: about 3.4, 5.1 and 0.9 MiB, given out of order.
        let configs = vec![stored("c", 50_000), stored("a", 200_000), stored("b", 300_000)];
        let deleted = DeletedFlag::new(&definition, configs);
        assert_eq!(deleted.environments.keys().collect::<Vec<_>>(), ["a", "c"], "b did not fit after a; c did");
        assert_eq!(deleted.omitted_environments, ["b"]);
        assert!(json_length(&deleted) <= MAX_DELETED_FLAG_BYTES);

        // Up to the byte: as many environments of one size as the room holds, and no more.
        let one = json_length(&stored("e00", 10_000).config) + "e00".len() + 4;
        let fitting = (MAX_DELETED_FLAG_BYTES - json_length(&definition) - 200) / one;
        let configs: Vec<_> = (0..fitting + 5).map(|n| stored(&format!("e{n:02}"), 10_000)).collect();
        let deleted = DeletedFlag::new(&definition, configs);
        let length = json_length(&deleted);
        assert!(length <= MAX_DELETED_FLAG_BYTES, "{length}");
        assert!(length + one > MAX_DELETED_FLAG_BYTES, "room for one more was left: {length}");
        assert_eq!(deleted.environments.len() + deleted.omitted_environments.len(), fitting + 5);
    }
}
