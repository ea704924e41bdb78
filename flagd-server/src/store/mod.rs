//! Durable state: one [`Store`] trait, implemented once over sqlx for SQLite, MySQL /
//! MariaDB and PostgreSQL (the dialect differences live in `dialect.rs`).
//!
//! Every write runs in one [`Tx`] opened by [`Store::begin_write`], which first advances
//! the global change sequence. That row lock serialises writers on every backend, so a
//! write may read, decide and write without racing another writer; the caller appends
//! its audit events and commits, or drops the transaction to roll everything back.

pub mod dialect;
pub mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use flagd_core::{EnvironmentConfig, FlagDefinition, Segment};
use serde::Serialize;
use serde_json::{Map, Value};

/// The most JSON one stored document (a flag definition, a configuration, a segment, and so
/// an audit event's before or after but a deleted flag's, which holds its configurations up
/// to 8 MiB) may take: the request body limit, so that whatever is read can be sent back,
/// and far below what any backend refuses (MariaDB's default packet limit of 16 MiB would
/// otherwise end the connection mid-write).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// A replica silent for this long (Unix ms; eight days) was killed or lost with its host,
/// as one that stops cleanly deletes its own row: a joining replica deletes such rows, so
/// that crash loops do not grow the table for ever. Longer than the longest
/// `--replica-memory` (a week), so that no replica forgets a row another's cluster view
/// still holds (a wait asked again with `waitedMs` may reach further back, by as long as
/// its caller has waited already).
pub const FORGET_REPLICAS_AFTER_MS: i64 = 8 * 86_400_000;

/// What the storage layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed at start.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another process held the lock on running the migrations for longer than a
    /// migration can take, or the database would not give it.
    #[error(
        "cannot take the lock on running the migrations ({0}): another flagd-server may be stuck migrating this database"
    )]
    MigrationLock(String),
    /// This process's other writes to an SQLite file held it for longer than a write
    /// waits for its turn (an import of many flags, say).
    #[error("waited {0} s for this process's earlier writes to the database file to finish")]
    WriteQueue(u32),
    /// A stored JSON document did not parse (corruption or a downgrade).
    #[error("stored {what} is unreadable: {source}")]
    Corrupt { what: &'static str, source: serde_json::Error },
    /// A document to store is over [`MAX_DOCUMENT_BYTES`].
    #[error(
        "the {what} would be {bytes} bytes of JSON, over the limit of {MAX_DOCUMENT_BYTES} bytes (1 MiB) for a stored document"
    )]
    TooLarge { what: String, bytes: usize },
    /// The database URL names no supported backend.
    #[error("unsupported database URL `{0}`: use sqlite:…, mysql://… or postgres://…")]
    UnsupportedUrl(String),
}

/// A named environment (`development`, `staging`, `production`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// Same pattern as flag keys.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A flag definition with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFlag {
    /// The definition.
    pub definition: FlagDefinition,
    /// The change sequence number of its last write (the basis of its ETag).
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// One flag's configuration in one environment, with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConfig {
    /// Flag key.
    pub flag: String,
    /// Environment name.
    pub environment: String,
    /// The configuration.
    pub config: EnvironmentConfig,
    /// The change sequence number of its last write (the basis of its ETag).
    pub version: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Actor of the last write.
    pub updated_by: String,
}

/// What [`Tx::config`] found: one flag as one environment configures it.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigLookup {
    /// There is no such environment.
    NoEnvironment,
    /// The environment exists; the flag does not.
    NoFlag,
    /// The flag, and its configuration in the environment if it has one.
    Found {
        /// The flag's definition (boxed: the variants without data stay small).
        flag: Box<StoredFlag>,
        /// Its configuration there, if any was ever stored.
        config: Option<Box<StoredConfig>>,
    },
}

impl ConfigLookup {
    /// The configuration, when both the flag and a stored configuration exist.
    pub fn into_config(self) -> Option<StoredConfig> {
        match self {
            Self::Found { config, .. } => config.map(|c| *c),
            Self::NoEnvironment | Self::NoFlag => None,
        }
    }
}

/// A segment of one environment, with its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSegment {
    /// Environment name.
    pub environment: String,
    /// The segment.
    pub segment: Segment,
    /// The change sequence number of its last write.
    pub version: i64,
}

/// One audited change.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Unique, increasing; assigned by the store.
    pub id: i64,
    /// The change sequence number of the write that made it.
    pub seq: i64,
    /// Who: a token's name, or `flagd-server` for the server's own changes.
    pub actor: String,
    /// The id of the token that made the change, as the token list shows it: names may
    /// repeat (a token rotated under the same name), ids do not. Absent for the server's
    /// own changes and for events recorded before it was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub actor_token: Option<String>,
    /// Unix milliseconds.
    pub at: i64,
    /// What, e.g. `flag.create`, `config.disable`, `segment.update`, `token.revoke`.
    pub action: String,
    /// Environment concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Flag concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Segment concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// State before (JSON), if any. For `flag.delete`, `{"definition", "environments"}`:
    /// the definition and each environment's configuration (earlier versions recorded the
    /// definition alone). Configurations that do not fit within 8 MiB with the definition,
    /// in environment-name order, are left out and their environments named in
    /// `omittedEnvironments`.
    pub before: Option<Value>,
    /// State after (JSON), if any.
    pub after: Option<Value>,
    /// Why, as the caller said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One page of the audit log, newest first (see [`Tx::audit`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// Whether older events match the query too.
    pub more: bool,
}

/// The most before and after JSON one page of the audit log carries: a page ends after the
/// event that passes it, so that a log of large documents (a list of a hundred thousand
/// companies changed every day) still comes in pages a browser can show.
pub const MAX_AUDIT_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// An audit event to append (id assigned on insert; `seq` and `at` given by the caller).
pub type NewAuditEvent = AuditEvent;

/// Filters for reading the audit log, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this flag.
    pub flag: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only events at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only events with an id below this (the paging cursor).
    pub before_id: Option<i64>,
    /// At most this many (the store caps it at 1000).
    pub limit: u32,
}

/// A server process following the change sequence, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    /// The process's id, new at every start.
    pub id: String,
    /// The address it listens on, as configured.
    pub address: String,
    /// The highest change sequence number it serves.
    pub applied_seq: i64,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// Its last heartbeat (Unix ms).
    pub last_seen: i64,
}

/// Something the changes after a sequence number touched, read off the audit log: an
/// environment (or none, for flag definitions and tokens) and the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeScope {
    /// The environment the change was made in, if it was made in one.
    pub environment: Option<String>,
    /// The audit action, e.g. `config.disable`, `flag.create`, `token.revoke`.
    pub action: String,
}

impl ChangeScope {
    /// Whether every environment's snapshot must be rebuilt: a change made outside any
    /// environment (a flag's definition, which they all share), or an import's flag
    /// definition, which is recorded under the environment imported into but reaches every
    /// one. Tokens are not in any snapshot.
    pub fn reaches_every_environment(&self) -> bool {
        match &self.environment {
            None => !self.in_no_snapshot(),
            Some(_) => self.action.starts_with("import.flag."),
        }
    }

    /// The environment whose snapshot must be rebuilt, if just one. A token is in no
    /// snapshot, though an evaluate token's creation and revocation are recorded under its
    /// environment (for the audit log's filter): rebuilding that environment for them
    /// would send every stream a change and every client a new version for nothing.
    pub fn rebuilds(&self) -> Option<&str> {
        self.environment.as_deref().filter(|_| !self.in_no_snapshot())
    }

    /// Whether the change is to a token.
    pub fn is_token_change(&self) -> bool {
        self.action.starts_with("token.")
    }

    /// Whether the change is to something no snapshot holds (a token, a replica of the
    /// cluster view), so that no environment is rebuilt for it.
    pub fn in_no_snapshot(&self) -> bool {
        self.is_token_change() || self.action.starts_with("replica.")
    }
}

/// Access levels of API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// OFREP evaluation in one environment.
    Evaluate,
    /// Admin API reads.
    Read,
    /// Admin API reads and writes.
    Admin,
}

impl Role {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Evaluate => "evaluate",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "evaluate" => Some(Self::Evaluate),
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// An API token as stored: never its value, only the SHA-256 of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// Public identifier (random, shown in lists, used to revoke).
    pub id: String,
    /// A label for people; also the audit actor.
    pub name: String,
    /// Access level.
    pub role: Role,
    /// The environment an `evaluate` token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Hex SHA-256 of the token value.
    #[serde(skip)]
    pub hash: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, once revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// A database transaction. Reads see the transaction's own writes. Dropping it without
/// [`Tx::commit`] rolls back.
#[async_trait]
pub trait Tx: Send {
    /// For a write transaction, the sequence number this write was given; for a read
    /// transaction, the sequence number of the last committed write.
    fn seq(&self) -> i64;

    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// All environments, by name.
    async fn environments(&mut self) -> Result<Vec<Environment>, StoreError>;
    /// Inserts an environment (the caller checked it does not exist), with no flag-set
    /// metadata.
    async fn insert_environment(&mut self, env: &Environment) -> Result<(), StoreError>;
    /// An environment's flag-set metadata (a flagd file's top-level `metadata`, reported
    /// with each of its flags, whose own keys win): `None` when there is no such
    /// environment, empty when it has none.
    async fn environment_metadata(&mut self, environment: &str) -> Result<Option<Map<String, Value>>, StoreError>;
    /// Replaces an environment's flag-set metadata (the caller checked it exists).
    async fn put_environment_metadata(
        &mut self,
        environment: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), StoreError>;

    /// All flag definitions, by key.
    async fn flags(&mut self) -> Result<Vec<StoredFlag>, StoreError>;
    /// One flag definition.
    async fn flag(&mut self, key: &str) -> Result<Option<StoredFlag>, StoreError>;
    /// Inserts or replaces a flag definition (version = `self.seq()`).
    async fn put_flag(&mut self, flag: &StoredFlag) -> Result<(), StoreError>;
    /// Deletes a flag definition and all its configurations.
    async fn delete_flag(&mut self, key: &str) -> Result<(), StoreError>;

    /// All configurations of one environment, by flag key.
    async fn configs(&mut self, environment: &str) -> Result<Vec<StoredConfig>, StoreError>;
    /// All configurations of one flag, by environment.
    async fn flag_configs(&mut self, flag: &str) -> Result<Vec<StoredConfig>, StoreError>;
    /// One flag and its configuration in one environment, found by one query (a quick
    /// operation's whole read), saying which of the two is missing.
    async fn config(&mut self, flag: &str, environment: &str) -> Result<ConfigLookup, StoreError>;
    /// Inserts or replaces a configuration.
    async fn put_config(&mut self, config: &StoredConfig) -> Result<(), StoreError>;

    /// All segments of one environment, by key.
    async fn segments(&mut self, environment: &str) -> Result<Vec<StoredSegment>, StoreError>;
    /// One segment.
    async fn segment(&mut self, environment: &str, key: &str) -> Result<Option<StoredSegment>, StoreError>;
    /// Inserts or replaces a segment.
    async fn put_segment(&mut self, segment: &StoredSegment) -> Result<(), StoreError>;
    /// Deletes a segment.
    async fn delete_segment(&mut self, environment: &str, key: &str) -> Result<(), StoreError>;

    /// Appends an audit event, returning its id.
    async fn append_audit(&mut self, event: &NewAuditEvent) -> Result<i64, StoreError>;
    /// Reads the audit log, newest first: at most `limit` events (and 1000), ending early
    /// after the event whose documents take the page past [`MAX_AUDIT_PAGE_BYTES`].
    async fn audit(&mut self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// All tokens, newest first.
    async fn tokens(&mut self) -> Result<Vec<Token>, StoreError>;
    /// The token whose value hashes to `hash`, revoked or not.
    async fn token_by_hash(&mut self, hash: &str) -> Result<Option<Token>, StoreError>;
    /// Inserts a token.
    async fn insert_token(&mut self, token: &Token) -> Result<(), StoreError>;
    /// Marks a token revoked at `at`; false when there is no such token.
    async fn revoke_token(&mut self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// Forgets replica `id` if its last heartbeat is before `heard_before` (Unix ms): the
    /// delete itself checks, so that one heard from meanwhile is kept. The row as it was,
    /// if it was forgotten.
    async fn forget_silent_replica(&mut self, id: &str, heard_before: i64) -> Result<Option<Replica>, StoreError>;

    /// What the changes with a sequence number above `seq` touched, without duplicates.
    async fn changes_since(&mut self, seq: i64) -> Result<Vec<ChangeScope>, StoreError>;
}

/// A database holding flagd's state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Brings the schema up to date (idempotent); needed once before first use of a
    /// store made by [`open`].
    async fn prepare(&self) -> Result<(), StoreError>;
    /// Opens a write transaction: advances the change sequence first (serialising it
    /// with every other writer) and exposes the new number as [`Tx::seq`].
    async fn begin_write(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// Opens a read transaction: one consistent view of the data.
    async fn begin_read(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// The sequence number of the last committed write (cheap: one indexed row).
    async fn current_seq(&self) -> Result<i64, StoreError>;
    /// Whether the database answers with its schema in place (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// The database's clock, in Unix milliseconds: the one time base every replica shares.
    async fn clock_ms(&self) -> Result<i64, StoreError>;

    /// Records a replica's heartbeat (inserting it the first time, which also deletes the
    /// replicas silent for more than [`FORGET_REPLICAS_AFTER_MS`]).
    async fn heartbeat(&self, replica: &Replica) -> Result<(), StoreError>;
    /// The replicas whose last heartbeat is at or after `seen_since` (Unix ms).
    async fn replicas(&self, seen_since: i64) -> Result<Vec<Replica>, StoreError>;
    /// Forgets a replica (it is shutting down).
    async fn remove_replica(&self, id: &str) -> Result<(), StoreError>;

    /// Wakes `wake` whenever another process commits a change, where the database can
    /// push that (PostgreSQL's LISTEN/NOTIFY); elsewhere it does nothing and replicas
    /// rely on polling [`Store::current_seq`].
    fn watch_commits(&self, wake: Arc<tokio::sync::Notify>) {
        let _ = wake;
    }
}

/// Connects to the database `url` names (`sqlite:path`, `mysql://…`, `postgres://…`),
/// creating a SQLite file when missing, and brings its schema up to date.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(sql::SqlStore::connect(url).await?))
}

/// A store for `url` that connects on first use, so that a server can start while its
/// database is down; [`Store::prepare`] brings the schema up to date once it answers.
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(sql::SqlStore::open(url)?))
}

#[cfg(test)]
mod tests {
    use super::ChangeScope;

    #[test]
    fn only_changes_to_what_snapshots_hold_rebuild_environments() {
        // (environment, action, rebuilds every environment, rebuilds this one)
        let cases = [
            (None, "flag.update", true, None),
            (None, "token.create", false, None),
            (Some("production"), "token.revoke", false, None),
            (None, "replica.forget", false, None),
            (Some("staging"), "config.enable", false, Some("staging")),
            (Some("staging"), "import.flag.create", true, Some("staging")),
        ];
        for (environment, action, everywhere, one) in cases {
            let scope = ChangeScope { environment: environment.map(str::to_owned), action: action.to_owned() };
            assert_eq!((scope.reaches_every_environment(), scope.rebuilds()), (everywhere, one), "{action}");
        }
    }
}
