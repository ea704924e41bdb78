//! The domain operations behind the HTTP API. Every write is one `Write`: a store
//! transaction that holds the change-sequence lock, validates each environment it touched
//! by compiling that environment's ruleset, appends its audit events, commits, and then
//! swaps the compiled rulesets in, so the change is served before the request returns.

mod configs;
mod environments;
mod flags;
mod segments;
mod tokens;
mod transfer;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flagd_core::{
    Dialect, EnvironmentConfig, EnvironmentSnapshot, Flag, Problem, Ruleset, RulesetSource, ValidationError,
};
use serde_json::{Map, Value};

pub use configs::{ConfigView, QuickOp, RolloutRequest};
pub use environments::DEFAULT_ENVIRONMENTS;
pub use flags::{EnvironmentSummary, FlagPatch, FlagView};
pub use segments::SegmentView;
pub use tokens::{CreatedToken, NewToken};
pub use transfer::{ExportFormat, ImportChange, ImportMode, ImportReport};

use crate::auth::{Principal, TokenCache};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::snapshot::{Snapshot, Snapshots};
use crate::snapshot_cache::CacheFile;
use crate::store::{AuditEvent, AuditPage, AuditQuery, ChangeScope, Environment, Store, StoreError, StoredConfig, Tx};

/// The longest `reason` a change may carry: a note for the audit log, not a document. In
/// any script it takes at most 16 KB, well within the 64 KiB of MariaDB's `TEXT` column.
pub const MAX_REASON: usize = 4000;

/// The service state shared by every request.
pub struct Service {
    store: Arc<dyn Store>,
    snapshots: Snapshots,
    tokens: TokenCache,
    sessions: crate::http::session::Sessions,
    metrics: Metrics,
    id: String,
    /// Whether this process records heartbeats (see [`crate::replication`]), so that
    /// the cluster view and waits read them.
    cluster: std::sync::atomic::AtomicBool,
    /// How long a silent replica stays in the cluster view, in ms (`--replica-memory`).
    replica_memory_ms: std::sync::atomic::AtomicU64,
    /// Started from the snapshot cache and not yet from the database.
    serving_cache: std::sync::atomic::AtomicBool,
    /// Set when the server begins to shut down, so that endless responses (change
    /// streams) end and graceful shutdown does not wait for them forever.
    closing: tokio::sync::watch::Sender<bool>,
    /// The runtime the service was started on: its control plane (see [`crate::control`]).
    control: Option<tokio::runtime::Handle>,
    /// The largest import file taken, in bytes (`--max-import-mib`).
    import_limit: std::sync::atomic::AtomicUsize,
    /// The database's clock minus this host's, in ms (see [`Service::cluster_now_ms`]).
    clock_offset_ms: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("snapshots", &self.snapshots).finish_non_exhaustive()
    }
}

/// What start-up did that the operator must see.
#[derive(Debug, Default)]
pub struct Startup {
    /// An admin token generated because none existed: printed once, never stored.
    pub generated_admin_token: Option<String>,
}

/// Unix milliseconds now (the server, unlike the core, may read the clock).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The ETag of a stored version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Parses an ETag this API gave out (`"12"`, also `W/"12"` or a bare `12`) into its
/// version; `None` for anything else. [`crate::openapi`] documents the same shape as
/// [`ETAG_PATTERN`].
pub fn parse_etag(value: &str) -> Option<i64> {
    let tag = value.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let digits = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What [`parse_etag`] takes, as a regular expression.
pub const ETAG_PATTERN: &str = r#"^(W/)?("[0-9]+"|[0-9]+)$"#;

impl Service {
    /// Connects the pieces: creates the default environments and the admin token when
    /// missing, loads tokens and compiles every environment.
    ///
    /// The runtime this runs on becomes the service's control plane: every request but an
    /// evaluation that reaches [`crate::app`] runs there (see [`crate::control`]).
    pub async fn start(store: Arc<dyn Store>, admin_token: Option<&str>) -> Result<(Arc<Self>, Startup), ApiError> {
        let service = Arc::new(Self::new(store));
        let startup = service.finish_start(admin_token).await?;
        Ok((service, startup))
    }

    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            snapshots: Snapshots::default(),
            tokens: TokenCache::default(),
            sessions: crate::http::session::Sessions::default(),
            metrics: Metrics::default(),
            id: crate::auth::generate_id(),
            cluster: std::sync::atomic::AtomicBool::new(false),
            replica_memory_ms: std::sync::atomic::AtomicU64::new(millis(crate::replication::DEFAULT_REPLICA_MEMORY)),
            serving_cache: std::sync::atomic::AtomicBool::new(false),
            closing: tokio::sync::watch::Sender::new(false),
            control: tokio::runtime::Handle::try_current().ok(),
            import_limit: std::sync::atomic::AtomicUsize::new(crate::http::json::MAX_BODY_BYTES),
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The database part of starting: default environments, the admin token, tokens and
    /// every environment's ruleset. After a start from the snapshot cache, this is what
    /// runs once the database answers.
    pub async fn finish_start(&self, admin_token: Option<&str>) -> Result<Startup, ApiError> {
        self.ensure_default_environments().await?;
        let startup = Startup { generated_admin_token: self.ensure_admin_token(admin_token).await? };
        self.reload_tokens().await?;
        self.reload_all().await?;
        self.serving_cache.store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(startup)
    }

    /// Starts without the database, serving what a snapshot cache holds: evaluation
    /// works, writes fail with 503 until [`Service::finish_start`] succeeds. Like
    /// [`Service::start`], it makes the runtime it is called on the control plane.
    pub fn start_from_cache(store: Arc<dyn Store>, cache: CacheFile) -> Result<Arc<Self>, ApiError> {
        let service = Self::new(store);
        for document in cache.environments {
            let ruleset = Ruleset::compile(&document.ruleset).map_err(|e| {
                ApiError::Internal(format!("the snapshot cache's `{}` does not compile: {e}", document.environment))
            })?;
            service.install(Compiled { document, ruleset, revises: None });
        }
        service.tokens.replace(cache.tokens.into_iter().map(Into::into).collect());
        service.snapshots.mark_applied(cache.seq);
        service.snapshots.confirmed_at(cache.written_at);
        service.serving_cache.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Arc::new(service))
    }

    /// Whether what is served comes from the snapshot cache (the database has not been
    /// reached since start).
    pub fn serving_cache(&self) -> bool {
        self.serving_cache.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What a snapshot cache written now holds.
    pub fn cache_file(&self) -> CacheFile {
        let environments = self.snapshots.all().iter().map(|s| s.document.clone()).collect();
        let tokens: Vec<_> = self.tokens.all().iter().map(|t| t.as_ref().clone()).collect();
        CacheFile::new(self.snapshots.applied_seq(), now_ms(), environments, &tokens)
    }

    /// This server process's id, new at every start.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Unix milliseconds on the database's clock, as last measured: heartbeats are stamped
    /// and read with it, so that a replica on a host whose clock is off is still judged
    /// live (or silent) by the time every replica shares.
    pub fn cluster_now_ms(&self) -> i64 {
        now_ms().saturating_add(self.clock_offset_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Measures how far the database's clock is from this host's (against the middle of
    /// the round trip).
    pub async fn measure_clock(&self) -> Result<(), ApiError> {
        let before = now_ms();
        let database = self.store.clock_ms().await?;
        let middle = before + (now_ms() - before) / 2;
        self.clock_offset_ms.store(database - middle, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The largest import file taken, in bytes: every other body is limited to 1 MiB, but
    /// an import holds a whole environment, whose export may be larger.
    pub fn import_limit(&self) -> usize {
        self.import_limit.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets [`Service::import_limit`]; it is never below the limit of other bodies.
    pub fn set_import_limit(&self, bytes: usize) {
        let bytes = bytes.max(crate::http::json::MAX_BODY_BYTES);
        self.import_limit.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Turns on cluster mode: heartbeats are recorded and read.
    pub(crate) fn enable_cluster(&self, memory: std::time::Duration) {
        self.replica_memory_ms.store(millis(memory), std::sync::atomic::Ordering::Relaxed);
        self.cluster.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long a silent replica stays in the cluster view (`--replica-memory`).
    pub fn replica_memory(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.replica_memory_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether cluster mode is on.
    pub fn cluster_enabled(&self) -> bool {
        self.cluster.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells endless responses to finish: the server is shutting down.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Service::close`] has been called.
    pub async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        // An error means the sender is gone, which also means the service is going away.
        let _ = closing.wait_for(|closing| *closing).await;
    }

    /// Runs `task` on the control plane: the runtime the service was started on, or the
    /// current one for a service built outside any runtime.
    pub fn spawn_on_control<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.control {
            Some(control) => control.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// An environment's current snapshot, or 404.
    pub fn snapshot(&self, env: &str) -> Result<Arc<Snapshot>, ApiError> {
        self.snapshots.get(env).ok_or_else(|| ApiError::environment_not_found(env))
    }

    /// The compiled rulesets.
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn install(&self, Compiled { document, ruleset, revises }: Compiled) {
        let snapshot = match revises {
            Some(previous) => Snapshot::revised(&previous, document, ruleset),
            None => Snapshot::new(document, ruleset, &self.metrics),
        };
        self.snapshots.install(snapshot);
        self.metrics.record_reload();
    }

    /// The token cache.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// The console's signed-in sessions.
    pub fn sessions(&self) -> &crate::http::session::Sessions {
        &self.sessions
    }

    /// The store (for readiness checks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Recompiles every environment from the database.
    pub async fn reload_all(&self) -> Result<(), ApiError> {
        let mut tx = self.store.begin_read().await?;
        let seq = tx.seq();
        for env in tx.environments().await? {
            self.install(compile_environment(tx.as_mut(), &env.name, seq).await?);
        }
        self.snapshots.mark_applied(seq);
        Ok(())
    }

    /// Applies what other processes committed since the last change applied here: only
    /// the environments their audit events name (every environment for a change to a flag's
    /// definition: [`ChangeScope::reaches_every_environment`]), and the tokens if they
    /// changed. Returns whether anything was applied.
    pub async fn catch_up(&self) -> Result<bool, ApiError> {
        let applied = self.snapshots.applied_seq();
        if self.store.current_seq().await? <= applied {
            self.snapshots.confirm_current();
            return Ok(false);
        }
        let mut tx = self.store.begin_read().await?;
        let seq = tx.seq();
        let changes = tx.changes_since(applied).await?;
        let everywhere = changes.iter().any(ChangeScope::reaches_every_environment);
        let environments: BTreeSet<String> = if everywhere {
            tx.environments().await?.into_iter().map(|e| e.name).collect()
        } else {
            changes.iter().filter_map(|c| c.rebuilds().map(str::to_owned)).collect()
        };
        for env in &environments {
            self.install(compile_environment(tx.as_mut(), env, seq).await?);
        }
        if changes.iter().any(ChangeScope::is_token_change) {
            self.tokens.replace(tx.tokens().await?);
        }
        self.snapshots.mark_applied(seq);
        tracing::debug!(from = applied, to = seq, environments = ?environments, "applied changes from other replicas");
        Ok(true)
    }

    async fn reload_tokens(&self) -> Result<(), ApiError> {
        let mut tx = self.store.begin_read().await?;
        self.tokens.replace(tx.tokens().await?);
        Ok(())
    }

    /// Reads the audit log; 404 for an environment that does not exist.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, ApiError> {
        let mut tx = self.store.begin_read().await?;
        // Environments are never deleted, so an unknown one is a typo, not an empty history.
        // A flag is not checked: a deleted one keeps its events.
        if let Some(env) = &query.environment {
            require_environment(tx.as_mut(), env).await?;
        }
        Ok(tx.audit(query).await?)
    }

    /// Opens a write on behalf of `actor`, refusing a `reason` over [`MAX_REASON`].
    pub(crate) async fn begin(&self, actor: &Principal, reason: Option<String>) -> Result<Write, ApiError> {
        if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON) {
            return Err(ApiError::bad_request(
                "INVALID_REASON",
                format!("a reason is at most {MAX_REASON} characters"),
            ));
        }
        let tx = self.store.begin_write().await?;
        Ok(Write {
            tx,
            actor: actor.clone(),
            reason,
            events: Vec::new(),
            touched: BTreeSet::new(),
            touches: 0,
            patch: None,
            now: now_ms(),
        })
    }

    /// Validates every touched environment without committing (a dry run); dropping the
    /// write afterwards rolls it back.
    pub(crate) async fn validate(&self, write: &mut Write) -> Result<(), ApiError> {
        compile_touched(write, &self.snapshots).await.map(drop)
    }

    /// Validates every touched environment, records the audit events, commits and serves
    /// the new rulesets. Returns the write's sequence number.
    pub(crate) async fn commit(&self, mut write: Write) -> Result<i64, ApiError> {
        let seq = write.tx.seq();
        let compiled = compile_touched(&mut write, &self.snapshots).await?;
        for event in &write.events {
            write.tx.append_audit(event).await?;
        }
        let tokens_changed = write.events.iter().any(|e| e.action.starts_with("token."));
        let applied_before = self.snapshots.applied_seq();
        write.tx.commit().await?;
        for compiled in compiled {
            self.install(compiled);
        }
        if tokens_changed {
            if let Err(e) = self.reload_tokens().await {
                // Committed all the same, and the caller must hear so: a new token's value
                // is shown only in this answer. Left unapplied, the write is applied again,
                // tokens included, by the next sync.
                tracing::warn!(error = %e.for_operator(), seq, "cannot reload the tokens after a write; the next sync will");
                return Ok(seq);
            }
        }
        if applied_before >= seq - 1 {
            self.snapshots.mark_applied(seq);
        } else if let Err(e) = self.catch_up().await {
            // Other replicas committed changes this one has not applied yet: marking this
            // write applied would skip them, so they are applied first. Should that fail,
            // the write is served all the same and the next sync applies the rest.
            tracing::warn!(error = %e, seq, "could not apply other replicas' earlier changes after a write");
        }
        Ok(seq)
    }
}

/// A write in progress; dropping it rolls everything back.
pub(crate) struct Write {
    pub(crate) tx: Box<dyn Tx>,
    actor: Principal,
    reason: Option<String>,
    events: Vec<AuditEvent>,
    touched: BTreeSet<String>,
    /// How many times an environment was marked touched (one change of one configuration
    /// is one touch).
    touches: usize,
    /// The configuration [`Write::touch_config`] stored, for [`Write::patched`].
    patch: Option<StoredConfig>,
    pub(crate) now: i64,
}

/// What an audit event is about.
#[derive(Debug, Default)]
pub(crate) struct Subject<'a> {
    pub(crate) environment: Option<&'a str>,
    pub(crate) flag: Option<&'a str>,
    pub(crate) segment: Option<&'a str>,
}

impl Write {
    /// This write's sequence number (the version it gives what it writes).
    pub(crate) fn seq(&self) -> i64 {
        self.tx.seq()
    }

    /// The actor's name.
    pub(crate) fn actor(&self) -> &str {
        self.actor.name()
    }

    /// Records an audit event (appended at commit).
    pub(crate) fn audit(&mut self, action: &str, subject: Subject<'_>, before: Option<Value>, after: Option<Value>) {
        self.events.push(AuditEvent {
            id: 0,
            seq: self.tx.seq(),
            actor: self.actor.name().to_owned(),
            // The server's own changes have no token (its principal's id is empty).
            actor_token: Some(self.actor.token_id()).filter(|id| !id.is_empty()).map(str::to_owned),
            at: self.now,
            action: action.to_owned(),
            environment: subject.environment.map(str::to_owned),
            flag: subject.flag.map(str::to_owned),
            segment: subject.segment.map(str::to_owned),
            before,
            after,
            reason: self.reason.clone(),
        });
    }

    /// Marks an environment whose ruleset this write changes.
    pub(crate) fn touch(&mut self, environment: &str) {
        self.touched.insert(environment.to_owned());
        self.touches += 1;
    }

    /// Marks the environment of a configuration this write stored (see [`Write::patched`]).
    pub(crate) fn touch_config(&mut self, stored: &StoredConfig) {
        self.touch(&stored.environment);
        self.patch = Some(stored.clone());
    }

    /// When all this write changed is one flag's configuration in one environment, and this
    /// replica had applied every change before it, that environment compiled from the
    /// snapshot it serves with the new configuration swapped in. That is exactly what
    /// reading the environment back would give (the transaction holds the change sequence,
    /// so nothing else committed in between) without reading every flag and configuration
    /// back from the database: most of what a quick operation cost, 50 times a second
    /// under churn.
    fn patched(&self, snapshots: &Snapshots) -> Option<Result<Compiled, ApiError>> {
        let stored = self.patch.as_ref().filter(|_| self.touches == 1)?;
        if snapshots.applied_seq() != self.seq() - 1 {
            return None;
        }
        let previous = snapshots.get(&stored.environment)?;
        let mut source = previous.document.ruleset.clone();
        let flag = source.flags.iter_mut().find(|f| f.definition.key == stored.flag)?;
        flag.config = stored.config.clone();
        Some(compile_source(&stored.environment, source, self.seq()).map(|c| Compiled { revises: Some(previous), ..c }))
    }

    /// Marks every environment.
    pub(crate) async fn touch_all(&mut self) -> Result<Vec<Environment>, ApiError> {
        let envs = self.tx.environments().await?;
        for env in &envs {
            self.touch(&env.name);
        }
        Ok(envs)
    }

    /// Stores a flag's configuration in one environment as this write's version.
    pub(crate) async fn put_config(
        &mut self,
        flag: &str,
        env: &str,
        config: EnvironmentConfig,
    ) -> Result<(), ApiError> {
        let stored = StoredConfig {
            flag: flag.to_owned(),
            environment: env.to_owned(),
            config,
            version: self.seq(),
            updated_at: self.now,
            updated_by: self.actor.name().to_owned(),
        };
        Ok(self.tx.put_config(&stored).await?)
    }

    /// 404 unless the environment exists.
    pub(crate) async fn require_environment(&mut self, name: &str) -> Result<(), ApiError> {
        require_environment(self.tx.as_mut(), name).await
    }
}

/// Compiles every environment the write touched, as the transaction sees it. Any invalid
/// one refuses the write, with the problems of every environment: a change to a flag's
/// definition touches them all, and naming only the first would hide the rest. A problem
/// of a definition, which every environment shares, is named once, at its own path.
async fn compile_touched(write: &mut Write, snapshots: &Snapshots) -> Result<Vec<Compiled>, ApiError> {
    if let Some(compiled) = write.patched(snapshots) {
        return compiled.map(|c| vec![c]);
    }
    let mut compiled = Vec::with_capacity(write.touched.len());
    let mut problems = Vec::new();
    let seq = write.seq();
    for env in &write.touched {
        match compile_environment(write.tx.as_mut(), env, seq).await {
            Ok(c) => compiled.push(c),
            Err(ApiError::Invalid { problems: found }) => problems.extend(found),
            Err(other) => return Err(other),
        }
    }
    // A definition's problem comes from every environment alike: it is named once.
    if problems.is_empty() { Ok(compiled) } else { Err(ApiError::Invalid { problems: named_once(problems) }) }
}

/// `problems` without repeats, in their order.
pub(crate) fn named_once(problems: Vec<Problem>) -> Vec<Problem> {
    let mut once: Vec<Problem> = Vec::with_capacity(problems.len());
    for p in problems {
        if !once.contains(&p) {
            once.push(p);
        }
    }
    once
}

/// Whether a problem lies in a flag's definition (its variants, off and on variants,
/// metadata…), the same in every environment, rather than in one environment's
/// configuration.
fn in_definition(p: &Problem) -> bool {
    const DEFINITION: [&str; 9] =
        ["key", "description", "owner", "tags", "variants", "offVariant", "noOffVariant", "onVariant", "metadata"];
    let field = p
        .key
        .as_deref()
        .and_then(|key| p.path.strip_prefix("flags.")?.strip_prefix(key)?.strip_prefix('.'))
        .and_then(|rest| rest.split(['.', '[']).next());
    field.is_some_and(|f| DEFINITION.contains(&f))
}

pub(crate) async fn require_environment(tx: &mut dyn Tx, name: &str) -> Result<(), ApiError> {
    if tx.environments().await?.iter().any(|e| e.name == name) {
        Ok(())
    } else {
        Err(ApiError::environment_not_found(name))
    }
}

/// Everything one environment's ruleset is compiled from, as the transaction sees it.
pub(crate) async fn environment_source(tx: &mut dyn Tx, env: &str) -> Result<RulesetSource, StoreError> {
    let mut configs: HashMap<String, _> =
        tx.configs(env).await?.into_iter().map(|c| (c.flag.clone(), c.config)).collect();
    let flags = tx
        .flags()
        .await?
        .into_iter()
        .map(|f| {
            let config = configs.remove(&f.definition.key).unwrap_or_default();
            Flag { definition: f.definition, config }
        })
        .collect();
    let segments = tx.segments(env).await?.into_iter().map(|s| s.segment).collect();
    let metadata = tx.environment_metadata(env).await?.unwrap_or_default();
    Ok(RulesetSource { flags, segments, evaluators: Map::new(), metadata })
}

/// An environment's source, as of a sequence number, and its compiled ruleset.
struct Compiled {
    document: EnvironmentSnapshot,
    ruleset: Ruleset,
    /// The snapshot this one changes only flag configurations of (see [`Snapshot::revised`]).
    revises: Option<Arc<Snapshot>>,
}

async fn compile_environment(tx: &mut dyn Tx, env: &str, seq: i64) -> Result<Compiled, ApiError> {
    compile_source(env, environment_source(tx, env).await?, seq)
}

fn compile_source(env: &str, source: RulesetSource, seq: i64) -> Result<Compiled, ApiError> {
    let ruleset = Ruleset::compile(&source).map_err(|e| invalid_in(env, e))?;
    Ok(Compiled {
        document: EnvironmentSnapshot { environment: env.to_owned(), seq, ruleset: source },
        ruleset,
        revises: None,
    })
}

/// The 422 for an environment's problems: paths in its configurations start at the
/// environment, those in a flag's definition (shared by every environment) stay its own.
fn invalid_in(env: &str, e: ValidationError) -> ApiError {
    let problems = e
        .problems
        .into_iter()
        .map(|mut p| {
            if !in_definition(&p) {
                p.path = format!("environments.{env}.{}", p.path);
            }
            p
        })
        .collect();
    ApiError::Invalid { problems }
}

/// Refuses flag and segment keys that break the key rule or repeat, with the problems
/// compiling would report, but before the write: every table is keyed by them, and a key
/// longer than its column (191 characters) would fail the write itself on MariaDB and
/// PostgreSQL. `env` starts the paths for what belongs to one environment.
pub(crate) fn check_keys<'a>(
    flags: impl IntoIterator<Item = &'a str>,
    segments: impl IntoIterator<Item = &'a str>,
    env: Option<&str>,
) -> Result<(), ApiError> {
    flagd_core::check_keys(flags, segments, Dialect::Native).map_err(|e| match env {
        Some(env) => invalid_in(env, e),
        None => ApiError::Invalid { problems: e.problems },
    })
}

/// A JSON value of something serialisable, for audit before/after.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
