//! Moving an environment in and out: export to the flagd format, import from it (or from
//! this product's own format), merging or replacing, with a dry run that shows the diff
//! and changes nothing.

use std::collections::HashSet;

use flagd_core::flagd::{export, flagd_path, import, inline_evaluators};
use flagd_core::{EnvironmentConfig, FlagDefinition, RulesetSource};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Service, Subject, Write, check_keys, environment_source, named_once, require_environment, to_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{StoredFlag, StoredSegment};

/// How an import treats what the file does not mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Leave it as it is. The file's flag-set metadata keys are written over the stored
    /// ones, the others kept.
    #[default]
    Merge,
    /// Make the environment exactly the file: other flags get a new flag's configuration
    /// here (disabled, no allow or deny list, no rules, no rollout), other segments are
    /// deleted, and the flag-set metadata is the file's (none if the file has none).
    Replace,
}

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// A flagd flag-definition file, which flagd and its tools read: company lists and
    /// segments become JSON Logic, which takes more room than a list.
    #[default]
    Flagd,
    /// This server's own format, as it keeps the environment (flags with their
    /// configuration here, and segments): lists stay lists, and the file imports back
    /// exactly as it was.
    Native,
}

/// One difference an import makes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportChange {
    /// `flag`, `config`, `segment` or `metadata` (the environment's flag-set metadata).
    pub kind: &'static str,
    /// Its key (for `metadata`, the environment's name).
    pub key: String,
    /// `create`, `update`, `reset` or `delete`.
    pub action: &'static str,
    /// Before, if it existed.
    pub before: Option<Value>,
    /// After, unless deleted.
    pub after: Option<Value>,
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Every difference: flags first, then segments, then the flag-set metadata.
    pub changes: Vec<ImportChange>,
    /// The change sequence number of the import, when it changed something: what
    /// `GET /api/v1/wait?seq=` waits for until every replica serves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// Reads a file in either format, both JSON objects: flagd's (`flags` is an object) or ours
/// (`flags` a list), and says which it was; anything else is refused.
fn parse(body: &[u8]) -> Result<(RulesetSource, ExportFormat), ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("INVALID_BODY", "the file is not UTF-8"))?;
    let probe: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request("INVALID_BODY", format!("the file is not JSON: {e}")))?;
    let not_ours = |why: &dyn std::fmt::Display| {
        ApiError::bad_request("INVALID_BODY", format!("not a flagd file nor a flagd-server file: {why}"))
    };
    // Through serde_path_to_error, so that a refusal says where in the file it is wrong: a
    // file of a hundred flags is fixed by path, not by searching.
    let native = || serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text));
    let (mut source, format) = match &probe {
        Value::Object(doc) if doc.get("flags").is_some_and(Value::is_object) => {
            let source = import(text).map_err(|e| match e {
                flagd_core::Error::Invalid(v) => ApiError::Invalid { problems: v.problems },
                other => ApiError::bad_request("INVALID_BODY", other.to_string()),
            })?;
            (source, ExportFormat::Flagd)
        }
        Value::Object(doc) if doc.get("flags").is_some_and(Value::is_array) => {
            let source = native().map_err(|e| {
                let message = format!("invalid flagd-server file at `{}`: {}", e.path(), e.inner());
                ApiError::bad_request("INVALID_BODY", message)
            })?;
            (source, ExportFormat::Native)
        }
        Value::Object(_) => (native().map_err(|e| not_ours(e.inner()))?, ExportFormat::Native),
        _ => return Err(not_ours(&"not a JSON object")),
    };
    inline_evaluators(&mut source).map_err(|e| in_terms_of(format, "", ApiError::Invalid { problems: e.problems }))?;
    // Each entry is written as it is read, so a repeated key would be written twice, the
    // last one winning, and a bad one would reach the store before the compile refuses it.
    // Paths stay the file's own, as the flagd reader's are.
    let flags = source.flags.iter().map(|f| f.definition.key.as_str());
    check_keys(flags, source.segments.iter().map(|s| s.key.as_str()), None)?;
    Ok((source, format))
}

/// A refusal of a flagd file points into the file as its author wrote it: what is wrong in
/// the environment imported into is at the file's own path (several of the model's paths
/// are one `defaultVariant` there, named once); other environments keep their prefix.
fn in_terms_of(format: ExportFormat, env: &str, e: ApiError) -> ApiError {
    match (format, e) {
        (ExportFormat::Flagd, ApiError::Invalid { problems }) => {
            let prefix = format!("environments.{env}.");
            let in_file = problems.into_iter().map(|mut p| {
                if let Some(own) = p.path.strip_prefix(&prefix) {
                    p.path = own.to_owned();
                }
                flagd_path(p)
            });
            ApiError::Invalid { problems: named_once(in_file.collect()) }
        }
        (ExportFormat::Flagd, ApiError::TooLarge(message)) => {
            ApiError::TooLarge(format!("{message}{FLAGD_LISTS_HINT}"))
        }
        (_, e) => e,
    }
}

/// Why a flagd file may not fit where the environment it was exported from did.
const FLAGD_LISTS_HINT: &str = "; if the flag lists many company ids: a flagd file writes each integer id twice (as \
    text and as a number, since flagd compares them strictly), so a list of more than about 50,000 of them imports \
    only in flagd-server's own format (export with format=native)";

impl Service {
    /// The environment as a file of `format`.
    pub async fn export(&self, env: &str, format: ExportFormat) -> Result<Value, ApiError> {
        let mut tx = self.store.begin_read().await?;
        require_environment(tx.as_mut(), env).await?;
        let source = environment_source(tx.as_mut(), env).await?;
        match format {
            ExportFormat::Flagd => export(&source).map_err(|e| ApiError::Invalid { problems: e.problems }),
            ExportFormat::Native => serde_json::to_value(&source).map_err(|e| ApiError::Internal(e.to_string())),
        }
    }

    /// Imports a file into an environment, atomically; with `dry_run`, validates and
    /// reports the differences without writing.
    pub async fn import(
        &self,
        actor: &Principal,
        env: &str,
        body: &[u8],
        mode: ImportMode,
        dry_run: bool,
        reason: Option<String>,
    ) -> Result<ImportReport, ApiError> {
        let (source, format) = parse(body)?;
        let write = self.begin(actor, reason).await?;
        let (changes, version) = self
            .import_source(write, env, (source, format), mode, dry_run)
            .await
            .map_err(|e| in_terms_of(format, env, e))?;
        Ok(ImportReport { dry_run, changes, version })
    }

    /// Writes `source` into `env` (a dry run validates and rolls back), returning what it
    /// changed and, when it committed, its version; errors are in the model's terms, for the
    /// caller to put in the file's.
    async fn import_source(
        &self,
        mut write: Write,
        env: &str,
        (source, format): (RulesetSource, ExportFormat),
        mode: ImportMode,
        dry_run: bool,
    ) -> Result<(Vec<ImportChange>, Option<i64>), ApiError> {
        write.require_environment(env).await?;
        let mut changes = Vec::new();
        let mut named = HashSet::new();
        for flag in source.flags {
            named.insert(flag.definition.key.clone());
            import_flag(&mut write, env, flag, format, &mut changes).await?;
        }
        if mode == ImportMode::Replace {
            reset_unnamed_flags(&mut write, env, &named, &mut changes).await?;
        }
        import_segments(&mut write, env, source.segments, mode, &mut changes).await?;
        import_metadata(&mut write, env, source.metadata, mode, &mut changes).await?;
        write.touch(env);
        for change in &changes {
            let flag = matches!(change.kind, "flag" | "config").then_some(change.key.as_str());
            let segment = (change.kind == "segment").then_some(change.key.as_str());
            let action = format!("import.{}.{}", change.kind, change.action);
            write.audit(
                &action,
                Subject { environment: Some(env), flag, segment },
                change.before.clone(),
                change.after.clone(),
            );
        }
        // An import that changes nothing (a deploy importing the same file again) is an
        // unchanged write like any other: dropping it rolls it back, so there is no new
        // version for replicas and clients to reload and no gap in the audit log's sequence.
        let mut version = None;
        if dry_run {
            self.validate(&mut write).await?;
        } else if !changes.is_empty() {
            version = Some(self.commit(write).await?);
        }
        Ok((changes, version))
    }
}

/// A definition with the implicit parts spelled out (boolean variants, off and on
/// variants), so that a file that spells them out compares equal to one that does not.
fn normalized(def: &FlagDefinition) -> FlagDefinition {
    let mut def = def.clone();
    def.off_variant = def.off_variant_name().map(str::to_owned);
    def.on_variant = def.on_variant_name().map(str::to_owned);
    // Spelled out, the off variant no longer depends on it.
    def.no_off_variant = false;
    def.variants = def.spelled_out_variants();
    def
}

/// What the file says, keeping from the stored definition what the file leaves out
/// (description, owner, tags, metadata; a flagd file's on variant, which the format cannot
/// carry). A new flag's off variant is the one its import chose (a flagd file's
/// `defaultVariant`, or a boolean flag's `false` variant). A flag that exists keeps what
/// every environment serves from its
/// definition (see [`shared_change`]): a flagd file's `defaultVariant` is then only this
/// environment's fallthrough, and the variants the file leaves out stay, for the
/// environments using them.
fn incoming(
    mut def: FlagDefinition,
    stored: Option<&StoredFlag>,
    format: ExportFormat,
) -> Result<FlagDefinition, ApiError> {
    let Some(old) = stored.map(|s| &s.definition) else { return Ok(def) };
    if format == ExportFormat::Flagd {
        def.on_variant.clone_from(&old.on_variant);
        def.off_variant.clone_from(&old.off_variant);
        def.no_off_variant = old.no_off_variant;
    }
    if def.description.is_empty() {
        def.description.clone_from(&old.description);
    }
    if def.owner.is_empty() {
        def.owner.clone_from(&old.owner);
    }
    if def.tags.is_empty() {
        def.tags.clone_from(&old.tags);
    }
    if def.metadata.is_empty() {
        def.metadata.clone_from(&old.metadata);
    }
    let mut variants = def.spelled_out_variants();
    for (name, value) in old.spelled_out_variants() {
        variants.entry(name).or_insert(value);
    }
    def.variants = variants;
    match shared_change(old, &def) {
        Some(change) => Err(ApiError::shared_definition(&def.key, &change)),
        None => Ok(def),
    }
}

/// How `new` changes what every environment serves from a flag's definition: the value
/// of a variant it keeps, its off variant (the kill switch's answer) or its on variant
/// (what lists and rollouts serve). An import into one environment must not, since the
/// definition is the other environments' too.
fn shared_change(old: &FlagDefinition, new: &FlagDefinition) -> Option<String> {
    let new_variants = new.spelled_out_variants();
    let value = old.spelled_out_variants().into_iter().find_map(|(name, was)| {
        let now = new_variants.get(&name).filter(|now| **now != was)?;
        Some(format!("variant `{name}` from {was} to {now}"))
    });
    let named = |what: &str, was: Option<&str>, now: Option<&str>| {
        let shown = |v: Option<&str>| v.map_or_else(|| "none".to_owned(), |v| format!("`{v}`"));
        (was != now).then(|| format!("its {what} variant from {} to {}", shown(was), shown(now)))
    };
    value
        .or_else(|| named("off", old.off_variant_name(), new.off_variant_name()))
        .or_else(|| named("on", old.on_variant_name(), new.on_variant_name()))
}

async fn import_flag(
    write: &mut Write,
    env: &str,
    mut flag: flagd_core::Flag,
    format: ExportFormat,
    changes: &mut Vec<ImportChange>,
) -> Result<(), ApiError> {
    let key = flag.definition.key.clone();
    let existing = write.tx.flag(&key).await?;
    flag.definition = incoming(flag.definition, existing.as_ref(), format)?;
    let (seq, now) = (write.seq(), write.now);
    match &existing {
        None => {
            let stored =
                StoredFlag { definition: flag.definition.clone(), version: seq, created_at: now, updated_at: now };
            write.tx.put_flag(&stored).await?;
            for other in write.touch_all().await? {
                write.put_config(&key, &other.name, EnvironmentConfig::default()).await?;
            }
            changes.push(ImportChange {
                kind: "flag",
                key: key.clone(),
                action: "create",
                before: None,
                after: to_json(&flag.definition),
            });
        }
        Some(old) if normalized(&old.definition) != normalized(&flag.definition) => {
            let stored =
                StoredFlag { definition: flag.definition.clone(), version: seq, updated_at: now, ..old.clone() };
            write.tx.put_flag(&stored).await?;
            write.touch_all().await?;
            let before = to_json(&old.definition);
            changes.push(ImportChange {
                kind: "flag",
                key: key.clone(),
                action: "update",
                before,
                after: to_json(&flag.definition),
            });
        }
        Some(_) => {}
    }
    // A flag created just now has the default configuration everywhere; here it had none.
    let old_config = match existing {
        None => None,
        Some(_) => write.tx.config(&key, env).await?.into_config().map(|c| c.config),
    };
    if existing.is_none() || old_config.as_ref() != Some(&flag.config) {
        let before = old_config.as_ref().and_then(to_json);
        let after = to_json(&flag.config);
        write.put_config(&key, env, flag.config).await?;
        let action = if existing.is_none() { "create" } else { "update" };
        changes.push(ImportChange { kind: "config", key, action, before, after });
    }
    Ok(())
}

async fn reset_unnamed_flags(
    write: &mut Write,
    env: &str,
    named: &HashSet<String>,
    changes: &mut Vec<ImportChange>,
) -> Result<(), ApiError> {
    for config in write.tx.configs(env).await? {
        if named.contains(&config.flag) || config.config == EnvironmentConfig::default() {
            continue;
        }
        let before = to_json(&config.config);
        write.put_config(&config.flag, env, EnvironmentConfig::default()).await?;
        let after = to_json(&EnvironmentConfig::default());
        changes.push(ImportChange { kind: "config", key: config.flag, action: "reset", before, after });
    }
    Ok(())
}

async fn import_segments(
    write: &mut Write,
    env: &str,
    segments: Vec<flagd_core::Segment>,
    mode: ImportMode,
    changes: &mut Vec<ImportChange>,
) -> Result<(), ApiError> {
    let existing = write.tx.segments(env).await?;
    let named: HashSet<String> = segments.iter().map(|s| s.key.clone()).collect();
    for segment in segments {
        let old = existing.iter().find(|s| s.segment.key == segment.key);
        if old.is_some_and(|o| o.segment == segment) {
            continue;
        }
        let action = if old.is_some() { "update" } else { "create" };
        let change = ImportChange {
            kind: "segment",
            key: segment.key.clone(),
            action,
            before: old.and_then(|o| to_json(&o.segment)),
            after: to_json(&segment),
        };
        write.tx.put_segment(&StoredSegment { environment: env.to_owned(), segment, version: write.seq() }).await?;
        changes.push(change);
    }
    if mode == ImportMode::Replace {
        for old in existing.into_iter().filter(|s| !named.contains(&s.segment.key)) {
            write.tx.delete_segment(env, &old.segment.key).await?;
            let before = to_json(&old.segment);
            changes.push(ImportChange { kind: "segment", key: old.segment.key, action: "delete", before, after: None });
        }
    }
    Ok(())
}

/// Stores the flag-set metadata the file gives the environment: the file's own on a
/// replace; on a merge, the stored one with the file's keys written over it, so that a file
/// of a few flags with their own metadata does not wipe what other files put there.
async fn import_metadata(
    write: &mut Write,
    env: &str,
    metadata: Map<String, Value>,
    mode: ImportMode,
    changes: &mut Vec<ImportChange>,
) -> Result<(), ApiError> {
    let stored = write.tx.environment_metadata(env).await?.unwrap_or_default();
    let imported = match mode {
        ImportMode::Replace => metadata,
        ImportMode::Merge => {
            let mut merged = stored.clone();
            merged.extend(metadata);
            merged
        }
    };
    if imported == stored {
        return Ok(());
    }
    write.tx.put_environment_metadata(env, &imported).await?;
    changes.push(ImportChange {
        kind: "metadata",
        key: env.to_owned(),
        action: "update",
        before: Some(Value::Object(stored)),
        after: Some(Value::Object(imported)),
    });
    Ok(())
}
