//! [`SqlStore`]: the [`Store`] over sqlx's `Any` driver, one implementation for SQLite,
//! MySQL / MariaDB and PostgreSQL. Queries are written once in portable SQL and passed
//! through [`SqlDialect::sql`]; everything else that differs lives in `dialect.rs`.
//!
//! Pitfalls of the `Any` driver that shape this file: MySQL reports `TEXT` columns as
//! blobs, which `String` refuses to decode (see `text`); `Any` has no JSON or time
//! types, so documents travel as text and times as `i64` milliseconds.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::dialect::{MigrationTurns, REQUEST_LOCK_WAIT_S, SqlDialect};
use super::{
    AuditEvent, AuditPage, AuditQuery, ChangeScope, ConfigLookup, Environment, FORGET_REPLICAS_AFTER_MS,
    MAX_AUDIT_PAGE_BYTES, MAX_DOCUMENT_BYTES, NewAuditEvent, Replica, Role, Store, StoreError, StoredConfig,
    StoredFlag, StoredSegment, Token, Tx,
};

/// What a change may add to a document already over [`MAX_DOCUMENT_BYTES`]: room for
/// a new state or rollout, not for more companies.
const GROWTH_OVER_LIMIT: usize = 1024;

/// How long a request waits for a database connection before reporting the database
/// as unavailable.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a starting server waits for another to finish migrating a MySQL or PostgreSQL
/// database, and its migrations for any lock (see [`SqlStore::migrate_apart`]): far
/// longer than the migrations take, but not forever. (On SQLite the busy timeout applies.)
const MIGRATION_TURN_WAIT_S: u32 = 600;

/// How many connections the replica bookkeeping keeps (see `SqlStore::bookkeeping`):
/// a heartbeat, a look at who else is live, and the cluster view's readers and waits.
const BOOKKEEPING_CONNECTIONS: u32 = 4;

/// The most audit events one query returns.
const AUDIT_LIMIT_CAP: u32 = 1000;

/// A [`Store`] in an SQL database.
pub struct SqlStore {
    /// Connections for reads, and for writes where the database serves many writers.
    pool: AnyPool,
    /// Where writes go: `pool`, or on SQLite a pool of one connection of its own (see
    /// [`SqlDialect::queues_writers_in_process`]).
    writer: AnyPool,
    dialect: SqlDialect,
    /// The URL as given, for PostgreSQL's LISTEN connection (which `Any` cannot open).
    url: String,
    /// Queues this process's writers on SQLite (see [`SqlDialect::queues_writers_in_process`]).
    write_gate: Option<Arc<Mutex<()>>>,
    /// Connections of their own for the `replicas` table, with short lock waits (see
    /// [`SqlDialect::bookkeeping_setup`]), where the backend takes table locks: a lock on
    /// that table then holds up no write, and console polls under it cannot take every
    /// connection writes need. `None` on SQLite, where it shares `pool` and `writer`.
    bookkeeping: Option<AnyPool>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore").field("dialect", &self.dialect).field("pool_size", &self.pool.size()).finish()
    }
}

impl SqlStore {
    /// Connects to `url` (`sqlite:…`, `mysql://…`, `postgres://…`), runs the embedded
    /// migrations and makes sure the change-sequence row exists.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::open(url)?;
        store.prepare_schema().await?;
        Ok(store)
    }

    /// A store for `url` that connects on first use: nothing is sent until a query runs,
    /// so a server can start while its database is down. Call [`Store::prepare`] before
    /// relying on the schema.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = SqlDialect::from_url(url)?;
        let given = url.to_owned();
        let url = dialect.prepare_url(url)?;
        let pool = lazy_pool(&url, dialect, dialect.max_connections(), dialect.session_setup())?;
        let (writer, write_gate) = if dialect.queues_writers_in_process() {
            (lazy_pool(&url, dialect, 1, dialect.session_setup())?, Some(Arc::new(Mutex::new(()))))
        } else {
            (pool.clone(), None)
        };
        let bookkeeping = match dialect.bookkeeping_setup() {
            Some(setup) => Some(lazy_pool(&url, dialect, BOOKKEEPING_CONNECTIONS, setup)?),
            None => None,
        };
        Ok(Self { pool, writer, dialect, url: given, write_gate, bookkeeping })
    }

    /// Where the replica bookkeeping reads.
    fn bookkeeping_reads(&self) -> &AnyPool {
        self.bookkeeping.as_ref().unwrap_or(&self.pool)
    }

    /// Where the replica bookkeeping writes.
    fn bookkeeping_writes(&self) -> &AnyPool {
        self.bookkeeping.as_ref().unwrap_or(&self.writer)
    }

    async fn prepare_schema(&self) -> Result<(), StoreError> {
        match self.dialect.migration_turns() {
            MigrationTurns::Sqlx => self.migrate_apart(None).await?,
            MigrationTurns::SessionLock { take, release } => self.migrate_apart(Some((take, release))).await?,
            MigrationTurns::WriteTransaction(begin) => {
                let _queued = self.queue_writer().await?;
                let mut tx = self.writer.begin_with(begin).await?;
                // `run_direct`, not `run`: sqlx's own way around rustc failing to prove
                // `run(&mut *tx)`'s future `Send` ("`Acquire` is not general enough").
                self.dialect.migrator().run_direct(&mut *tx).await?;
                tx.commit().await?;
            }
        }
        self.ensure_sequence_row().await
    }

    /// Runs the migrations on a connection of their own, holding the session lock that
    /// `session_lock`'s first query takes and its second releases (see
    /// [`MigrationTurns::SessionLock`]) or else sqlx's. The connection is taken out of the
    /// pool and closed afterwards, which releases a lock even if the query releasing it
    /// failed, rather than returned to the pool still holding it; and its lock waits are
    /// a migration's turn, not a request's.
    async fn migrate_apart(&self, session_lock: Option<(&str, &str)>) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?.detach();
        let migrated = self.migrate_on(&mut conn, session_lock).await;
        // Once the migrations are in, a failed goodbye matters to no one: the connection is
        // gone either way, and with it any lock it held.
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "closing the migrations' connection failed");
        }
        migrated
    }

    /// See [`Self::migrate_apart`].
    async fn migrate_on(&self, conn: &mut AnyConnection, session_lock: Option<(&str, &str)>) -> Result<(), StoreError> {
        if let Some(waits) = self.dialect.lock_waits(MIGRATION_TURN_WAIT_S) {
            conn.execute(waits.as_str()).await?;
        }
        let migrator = self.dialect.migrator();
        let Some((take, release)) = session_lock else {
            // `run_direct`: see `prepare_schema`.
            return Ok(migrator.run_direct(conn).await?);
        };
        let locked: Option<i64> =
            sqlx::query(take).bind(i64::from(MIGRATION_TURN_WAIT_S)).fetch_one(&mut *conn).await?.try_get("locked")?;
        let migrated = match locked {
            Some(1) => migrator.run_direct(&mut *conn).await.map_err(StoreError::from),
            Some(_) => Err(StoreError::MigrationLock(format!("no turn within {MIGRATION_TURN_WAIT_S} s"))),
            None => Err(StoreError::MigrationLock("the database refused it".to_owned())),
        };
        let released = sqlx::query(release).execute(&mut *conn).await;
        migrated?;
        released?;
        Ok(())
    }

    /// The migration creates the row; this restores it if someone deleted it. Two
    /// processes may race here, so a failed insert is fine if the row is there after.
    async fn ensure_sequence_row(&self) -> Result<(), StoreError> {
        let count_sql = "SELECT COUNT(*) AS n FROM change_seq WHERE id = 1";
        let count: i64 = sqlx::query(count_sql).fetch_one(&self.pool).await?.try_get("n")?;
        if count > 0 {
            return Ok(());
        }
        let inserted = sqlx::query("INSERT INTO change_seq (id, seq) VALUES (1, 0)").execute(&self.pool).await;
        let count: i64 = sqlx::query(count_sql).fetch_one(&self.pool).await?.try_get("n")?;
        match inserted {
            Err(e) if count == 0 => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// A place in this process's queue of SQLite writers, held until dropped (`None` where
    /// writers do not queue). Every local write takes one, transactions and the replica
    /// bookkeeping alike: a writer outside the queue would meet the others only in SQLite's
    /// busy handler, and under a steady stream of changes it could wait there for seconds.
    /// A writer waits its turn there as long as it would for a lock on the other backends,
    /// and is then refused as busy.
    async fn queue_writer(&self) -> Result<Option<OwnedMutexGuard<()>>, StoreError> {
        let Some(gate) = &self.write_gate else { return Ok(None) };
        let wait = std::time::Duration::from_secs(REQUEST_LOCK_WAIT_S.into());
        match tokio::time::timeout(wait, Arc::clone(gate).lock_owned()).await {
            Ok(turn) => Ok(Some(turn)),
            Err(_) => Err(StoreError::WriteQueue(REQUEST_LOCK_WAIT_S)),
        }
    }

    /// Opens a transaction on `pool` with `begin` and wraps it.
    async fn begin(
        &self,
        pool: &AnyPool,
        begin: &'static str,
        gate: Option<OwnedMutexGuard<()>>,
    ) -> Result<SqlTx, StoreError> {
        let tx = pool.begin_with(begin).await?;
        Ok(SqlTx { tx, dialect: self.dialect, seq: 0, writes: false, _gate: gate })
    }
}

/// A pool of at most `max` connections to `url`, each set up for `dialect` with the
/// statements of `setup`, connecting on first use.
fn lazy_pool(url: &str, dialect: SqlDialect, max: u32, setup: Vec<String>) -> Result<AnyPool, StoreError> {
    let setup = Arc::new(setup);
    let pool = AnyPoolOptions::new()
        .max_connections(max)
        .test_before_acquire(dialect.tests_connections_before_use())
        // While the database is down a write must fail fast (503), not queue for the
        // default 30 s.
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A transaction the database ended on its own (SQLite rolls back on a full disk)
        // leaves the driver's rollback failing and the connection counted as inside a
        // transaction, where every later `BEGIN` would fail until a restart: drop it.
        .before_acquire(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
        .after_connect(move |conn, _meta| {
            let setup = Arc::clone(&setup);
            Box::pin(async move {
                for statement in setup.iter() {
                    conn.execute(statement.as_str()).await?;
                }
                Ok(())
            })
        })
        .connect_lazy(url)?;
    Ok(pool)
}

#[async_trait]
impl Store for SqlStore {
    async fn prepare(&self) -> Result<(), StoreError> {
        self.prepare_schema().await
    }

    async fn begin_write(&self) -> Result<Box<dyn Tx>, StoreError> {
        let gate = self.queue_writer().await?;
        let mut tx = self.begin(&self.writer, self.dialect.begin_write(), gate).await?;
        tx.seq = tx.bump_seq().await?;
        tx.writes = true;
        Ok(Box::new(tx))
    }

    async fn begin_read(&self) -> Result<Box<dyn Tx>, StoreError> {
        let mut tx = self.begin(&self.pool, self.dialect.begin_read(), None).await?;
        tx.seq = tx.read_seq().await?;
        Ok(Box::new(tx))
    }

    async fn current_seq(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT seq FROM change_seq WHERE id = 1").fetch_one(&self.pool).await?.try_get("seq")?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A row of the schema, not `SELECT 1`: a database dropped or emptied under a running
        // server still answers that, while every request would fail.
        self.current_seq().await.map(drop)
    }

    async fn clock_ms(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(self.dialect.clock_query()).fetch_one(&self.pool).await?;
        Ok(row.try_get("now_ms")?)
    }

    async fn heartbeat(&self, r: &Replica) -> Result<(), StoreError> {
        let _queued = self.queue_writer().await?;
        let update = self.dialect.sql("UPDATE replicas SET address = ?, applied_seq = ?, last_seen = ? WHERE id = ?");
        let updated = sqlx::query(&update)
            .bind(r.address.as_str())
            .bind(r.applied_seq)
            .bind(r.last_seen)
            .bind(r.id.as_str())
            .execute(self.bookkeeping_writes())
            .await?;
        if updated.rows_affected() > 0 {
            return Ok(());
        }
        let insert = self
            .dialect
            .sql("INSERT INTO replicas (id, address, applied_seq, started_at, last_seen) VALUES (?, ?, ?, ?, ?)");
        let inserted = sqlx::query(&insert)
            .bind(r.id.as_str())
            .bind(r.address.as_str())
            .bind(r.applied_seq)
            .bind(r.started_at)
            .bind(r.last_seen)
            .execute(self.bookkeeping_writes())
            .await;
        // MySQL counts only changed rows, so an UPDATE that changed nothing reads as
        // "no such row" and the INSERT then finds it: the heartbeat is recorded either way.
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(()),
            other => other.map(drop)?,
        }
        let forget = self.dialect.sql("DELETE FROM replicas WHERE last_seen < ?");
        sqlx::query(&forget).bind(r.last_seen - FORGET_REPLICAS_AFTER_MS).execute(self.bookkeeping_writes()).await?;
        Ok(())
    }

    async fn replicas(&self, seen_since: i64) -> Result<Vec<Replica>, StoreError> {
        let sql = self.dialect.sql(
            "SELECT id, address, applied_seq, started_at, last_seen FROM replicas WHERE last_seen >= ? ORDER BY started_at, id",
        );
        let rows = sqlx::query(&sql).bind(seen_since).fetch_all(self.bookkeeping_reads()).await?;
        rows.iter().map(decode_replica).collect()
    }

    async fn remove_replica(&self, id: &str) -> Result<(), StoreError> {
        let _queued = self.queue_writer().await?;
        let sql = self.dialect.sql("DELETE FROM replicas WHERE id = ?");
        sqlx::query(&sql).bind(id).execute(self.bookkeeping_writes()).await?;
        Ok(())
    }

    fn watch_commits(&self, wake: Arc<tokio::sync::Notify>) {
        if self.dialect == SqlDialect::Postgres {
            tokio::spawn(listen_for_commits(self.url.clone(), wake));
        }
    }
}

/// The channel committing writers notify on PostgreSQL.
const COMMIT_CHANNEL: &str = "flagd_commits";

/// Follows PostgreSQL's notifications of commits for as long as the process runs,
/// reconnecting after a second when the connection drops (polling covers the gap).
async fn listen_for_commits(url: String, wake: Arc<tokio::sync::Notify>) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(COMMIT_CHANNEL).await {
                    tracing::warn!(error = %e, "cannot LISTEN for commits; polling only");
                }
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => wake.notify_one(),
                        // The connection was lost; the listener reconnects on the next call.
                        Ok(None) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the LISTEN connection; polling until it is back");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot open the LISTEN connection"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// One open transaction of a [`SqlStore`].
pub struct SqlTx {
    /// Declared before the gate so the rollback is under way before the next local
    /// writer may start.
    tx: Transaction<'static, Any>,
    dialect: SqlDialect,
    seq: i64,
    /// A write transaction (it advanced the change sequence).
    writes: bool,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl fmt::Debug for SqlTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTx").field("dialect", &self.dialect).field("seq", &self.seq).finish()
    }
}

/// Column lists, shared by the single and list queries.
const FLAG_COLUMNS: &str = "SELECT \"key\", definition, version, created_at, updated_at FROM flags";
const CONFIG_COLUMNS: &str = "SELECT flag, environment, config, version, updated_at, updated_by FROM configs";
const SEGMENT_COLUMNS: &str = "SELECT environment, \"key\", definition, version FROM segments";
const AUDIT_COLUMNS: &str = "SELECT id, seq, actor, actor_token, at, action, environment, flag, segment, before_doc, after_doc, reason \
     FROM audit";
const TOKEN_COLUMNS: &str = "SELECT id, name, role, environment, hash, created_at, revoked_at FROM tokens";

impl SqlTx {
    /// The audit query for `query`'s filters, newest first, reading `columns`; `between`
    /// narrows it to a range of ids. [`bind_audit`] binds its parameters.
    fn audit_sql(&self, columns: &str, query: &AuditQuery, between: bool) -> String {
        let exact = |column| self.dialect.exact_text_filter(column);
        let filters = [
            (query.flag.is_some(), exact("flag")),
            (query.environment.is_some(), exact("environment")),
            (query.actor.is_some(), exact("actor")),
            (query.since.is_some(), " AND at >= ?".to_owned()),
            (query.before_id.is_some(), " AND id < ?".to_owned()),
            (between, " AND id >= ? AND id <= ?".to_owned()),
        ];
        let mut sql = format!("{columns} WHERE 1 = 1");
        for (_, clause) in filters.iter().filter(|(on, _)| *on) {
            sql.push_str(clause);
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        self.dialect.sql(&sql).into_owned()
    }

    async fn read_seq(&mut self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT seq FROM change_seq WHERE id = 1").fetch_one(&mut *self.tx).await?;
        Ok(row.try_get("seq")?)
    }

    /// Advances the change sequence, which also locks its row until the transaction ends,
    /// and returns the new number: one statement where `RETURNING` is available, since
    /// every statement is a round trip (on SQLite, to the connection's thread and back).
    async fn bump_seq(&mut self) -> Result<i64, StoreError> {
        const BUMP: &str = "UPDATE change_seq SET seq = seq + 1 WHERE id = 1";
        if self.dialect.has_returning() {
            let row = sqlx::query(&format!("{BUMP} RETURNING seq")).fetch_optional(&mut *self.tx).await?;
            return Ok(row.ok_or(sqlx::Error::RowNotFound)?.try_get("seq")?);
        }
        if self.execute(BUMP).await? != 1 {
            return Err(sqlx::Error::RowNotFound.into());
        }
        self.read_seq().await
    }

    /// Runs a statement without parameters, returning the rows it affected.
    async fn execute(&mut self, sql: &str) -> Result<u64, StoreError> {
        let sql = self.dialect.sql(sql);
        Ok(sqlx::query(&sql).execute(&mut *self.tx).await?.rows_affected())
    }

    /// Runs a query with one text parameter and decodes every row.
    async fn rows_by<T>(
        &mut self,
        sql: &str,
        arg: &str,
        decode: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let sql = self.dialect.sql(sql);
        let rows = sqlx::query(&sql).bind(arg).fetch_all(&mut *self.tx).await?;
        rows.iter().map(decode).collect()
    }

    /// Runs a query with two text parameters and decodes the row, if any.
    async fn row_by<T>(
        &mut self,
        sql: &str,
        args: [&str; 2],
        decode: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let sql = self.dialect.sql(sql);
        let [a, b] = args;
        let row = sqlx::query(&sql).bind(a).bind(b).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(decode).transpose()
    }

    async fn all<T>(&mut self, sql: &str, decode: fn(&AnyRow) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
        let sql = self.dialect.sql(sql);
        let rows = sqlx::query(&sql).fetch_all(&mut *self.tx).await?;
        rows.iter().map(decode).collect()
    }

    /// `value` as the JSON text to store in place of the document `stored` selects (as
    /// `doc`, by `keys`). Over [`MAX_DOCUMENT_BYTES`] it is refused, unless the stored one
    /// is over it too (kept from before the limit) and the change adds at most
    /// [`GROWTH_OVER_LIMIT`]: such a document may shrink, and its kill switch works
    /// (`DISABLED` is a byte longer than `ENABLED`). Only then is the stored one read.
    async fn document<T: Serialize + ?Sized>(
        &mut self,
        what: impl FnOnce() -> String,
        value: &T,
        stored: &str,
        keys: &[&str],
    ) -> Result<String, StoreError> {
        let json = to_json(value)?;
        if json.len() <= MAX_DOCUMENT_BYTES {
            return Ok(json);
        }
        let sql = self.dialect.sql(stored);
        let query = keys.iter().fold(sqlx::query(&sql), |query, key| query.bind(*key));
        let row = query.fetch_optional(&mut *self.tx).await?;
        let before = row.map(|row| text(&row, "doc").map(|doc| doc.len())).transpose()?.unwrap_or(0);
        if before <= MAX_DOCUMENT_BYTES || json.len() > before + GROWTH_OVER_LIMIT {
            return Err(StoreError::TooLarge { what: what(), bytes: json.len() });
        }
        Ok(json)
    }

    /// Inserts an audit row and returns its generated id.
    async fn insert_audit(&mut self, event: &NewAuditEvent) -> Result<i64, StoreError> {
        let mut sql = "INSERT INTO audit (seq, actor, actor_token, at, action, environment, flag, segment, \
                       before_doc, after_doc, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            .to_owned();
        if self.dialect.has_returning() {
            sql.push_str(" RETURNING id");
        }
        let sql = self.dialect.sql(&sql);
        let query = sqlx::query(&sql)
            .bind(event.seq)
            .bind(event.actor.as_str())
            .bind(event.actor_token.as_deref())
            .bind(event.at)
            .bind(event.action.as_str())
            .bind(event.environment.as_deref())
            .bind(event.flag.as_deref())
            .bind(event.segment.as_deref())
            .bind(event.before.as_ref().map(to_json).transpose()?)
            .bind(event.after.as_ref().map(to_json).transpose()?)
            .bind(event.reason.as_deref());
        if self.dialect.has_returning() {
            return Ok(query.fetch_one(&mut *self.tx).await?.try_get("id")?);
        }
        let done = query.execute(&mut *self.tx).await?;
        done.last_insert_id().ok_or_else(|| sqlx::Error::Protocol("the database returned no audit id".into()).into())
    }
}

#[async_trait]
impl Tx for SqlTx {
    fn seq(&self) -> i64 {
        self.seq
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if self.writes && self.dialect == SqlDialect::Postgres {
            // Delivered to listeners when (and only if) the transaction commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(COMMIT_CHANNEL)
                .bind(self.seq.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        let Self { tx, _gate, .. } = *self;
        tx.commit().await?;
        Ok(())
    }

    async fn environments(&mut self) -> Result<Vec<Environment>, StoreError> {
        self.all("SELECT name, created_at FROM environments ORDER BY name", decode_environment).await
    }

    async fn insert_environment(&mut self, env: &Environment) -> Result<(), StoreError> {
        let sql = self.dialect.sql("INSERT INTO environments (name, created_at) VALUES (?, ?)");
        sqlx::query(&sql).bind(env.name.as_str()).bind(env.created_at).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn environment_metadata(&mut self, environment: &str) -> Result<Option<Map<String, Value>>, StoreError> {
        let sql = "SELECT name, metadata FROM environments WHERE name = ?";
        let rows = self.rows_by(sql, environment, |row| Ok((text(row, "name")?, text(row, "metadata")?))).await?;
        let found = exactly(rows, |(name, _)| name == environment).pop();
        found.map(|(_, metadata)| from_json("flag-set metadata", &metadata)).transpose()
    }

    async fn put_environment_metadata(
        &mut self,
        environment: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        let stored = "SELECT metadata AS doc FROM environments WHERE name = ?";
        let what = || format!("flag-set metadata of `{environment}`");
        let document = self.document(what, metadata, stored, &[environment]).await?;
        let sql = self.dialect.sql("UPDATE environments SET metadata = ? WHERE name = ?");
        sqlx::query(&sql).bind(document.as_str()).bind(environment).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn flags(&mut self) -> Result<Vec<StoredFlag>, StoreError> {
        self.all(&format!("{FLAG_COLUMNS} ORDER BY \"key\""), decode_flag).await
    }

    async fn flag(&mut self, key: &str) -> Result<Option<StoredFlag>, StoreError> {
        let rows = self.rows_by(&format!("{FLAG_COLUMNS} WHERE \"key\" = ?"), key, decode_flag).await?;
        Ok(exactly(rows, |f| f.definition.key == key).pop())
    }

    async fn put_flag(&mut self, flag: &StoredFlag) -> Result<(), StoreError> {
        let stored = "SELECT definition AS doc FROM flags WHERE \"key\" = ?";
        let definition = self
            .document(
                || format!("definition of flag `{}`", flag.definition.key),
                &flag.definition,
                stored,
                &[&flag.definition.key],
            )
            .await?;
        let statements = [
            "UPDATE flags SET definition = ?, version = ?, created_at = ?, updated_at = ? WHERE \"key\" = ?",
            "INSERT INTO flags (definition, version, created_at, updated_at, \"key\") VALUES (?, ?, ?, ?, ?)",
        ];
        for sql in statements {
            let sql = self.dialect.sql(sql);
            let done = sqlx::query(&sql)
                .bind(definition.as_str())
                .bind(self.seq)
                .bind(flag.created_at)
                .bind(flag.updated_at)
                .bind(flag.definition.key.as_str())
                .execute(&mut *self.tx)
                .await?;
            if done.rows_affected() > 0 {
                break;
            }
        }
        Ok(())
    }

    async fn delete_flag(&mut self, key: &str) -> Result<(), StoreError> {
        for sql in ["DELETE FROM configs WHERE flag = ?", "DELETE FROM flags WHERE \"key\" = ?"] {
            let sql = self.dialect.sql(sql);
            sqlx::query(&sql).bind(key).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn configs(&mut self, environment: &str) -> Result<Vec<StoredConfig>, StoreError> {
        let sql = format!("{CONFIG_COLUMNS} WHERE environment = ? ORDER BY flag");
        Ok(exactly(self.rows_by(&sql, environment, decode_config).await?, |c| c.environment == environment))
    }

    async fn flag_configs(&mut self, flag: &str) -> Result<Vec<StoredConfig>, StoreError> {
        let sql = format!("{CONFIG_COLUMNS} WHERE flag = ? ORDER BY environment");
        Ok(exactly(self.rows_by(&sql, flag, decode_config).await?, |c| c.flag == flag))
    }

    async fn config(&mut self, flag: &str, environment: &str) -> Result<ConfigLookup, StoreError> {
        // The environment's row always comes back when it exists; the flag's and the
        // configuration's columns are NULL when those do not.
        let sql = "SELECT e.name, f.\"key\", f.definition, f.version, f.created_at, f.updated_at, c.config, \
                   c.version AS config_version, c.updated_at AS config_updated_at, c.updated_by \
                   FROM environments e LEFT JOIN flags f ON f.\"key\" = ? \
                   LEFT JOIN configs c ON c.flag = f.\"key\" AND c.environment = e.name WHERE e.name = ?";
        let sql = self.dialect.sql(sql);
        let row = sqlx::query(&sql).bind(flag).bind(environment).fetch_optional(&mut *self.tx).await?;
        row.map_or(Ok(ConfigLookup::NoEnvironment), |row| decode_lookup(&row, flag, environment))
    }

    async fn put_config(&mut self, config: &StoredConfig) -> Result<(), StoreError> {
        let stored = "SELECT config AS doc FROM configs WHERE flag = ? AND environment = ?";
        let keys = [config.flag.as_str(), config.environment.as_str()];
        let what = || format!("configuration of flag `{}` in `{}`", config.flag, config.environment);
        let document = self.document(what, &config.config, stored, &keys).await?;
        let statements = [
            "UPDATE configs SET config = ?, version = ?, updated_at = ?, updated_by = ? \
             WHERE flag = ? AND environment = ?",
            "INSERT INTO configs (config, version, updated_at, updated_by, flag, environment) \
             VALUES (?, ?, ?, ?, ?, ?)",
        ];
        for sql in statements {
            let sql = self.dialect.sql(sql);
            let done = sqlx::query(&sql)
                .bind(document.as_str())
                .bind(self.seq)
                .bind(config.updated_at)
                .bind(config.updated_by.as_str())
                .bind(config.flag.as_str())
                .bind(config.environment.as_str())
                .execute(&mut *self.tx)
                .await?;
            if done.rows_affected() > 0 {
                break;
            }
        }
        Ok(())
    }

    async fn segments(&mut self, environment: &str) -> Result<Vec<StoredSegment>, StoreError> {
        let sql = format!("{SEGMENT_COLUMNS} WHERE environment = ? ORDER BY \"key\"");
        Ok(exactly(self.rows_by(&sql, environment, decode_segment).await?, |s| s.environment == environment))
    }

    async fn segment(&mut self, environment: &str, key: &str) -> Result<Option<StoredSegment>, StoreError> {
        let sql = format!("{SEGMENT_COLUMNS} WHERE environment = ? AND \"key\" = ?");
        let found = self.row_by(&sql, [environment, key], decode_segment).await?;
        Ok(found.filter(|s| s.environment == environment && s.segment.key == key))
    }

    async fn put_segment(&mut self, segment: &StoredSegment) -> Result<(), StoreError> {
        let stored = "SELECT definition AS doc FROM segments WHERE environment = ? AND \"key\" = ?";
        let keys = [segment.environment.as_str(), segment.segment.key.as_str()];
        let what = || format!("segment `{}` in `{}`", segment.segment.key, segment.environment);
        let document = self.document(what, &segment.segment, stored, &keys).await?;
        let statements = [
            "UPDATE segments SET definition = ?, version = ? WHERE environment = ? AND \"key\" = ?",
            "INSERT INTO segments (definition, version, environment, \"key\") VALUES (?, ?, ?, ?)",
        ];
        for sql in statements {
            let sql = self.dialect.sql(sql);
            let done = sqlx::query(&sql)
                .bind(document.as_str())
                .bind(self.seq)
                .bind(segment.environment.as_str())
                .bind(segment.segment.key.as_str())
                .execute(&mut *self.tx)
                .await?;
            if done.rows_affected() > 0 {
                break;
            }
        }
        Ok(())
    }

    async fn delete_segment(&mut self, environment: &str, key: &str) -> Result<(), StoreError> {
        let sql = self.dialect.sql("DELETE FROM segments WHERE environment = ? AND \"key\" = ?");
        sqlx::query(&sql).bind(environment).bind(key).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn append_audit(&mut self, event: &NewAuditEvent) -> Result<i64, StoreError> {
        self.insert_audit(event).await
    }

    async fn audit(&mut self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        // First each row's id and the size of its documents, one row past the limit to say
        // whether more follow; then the rows the page keeps. A page cut short by its size
        // thus never has the database send the documents of the rows left out.
        let limit = query.limit.min(AUDIT_LIMIT_CAP) as usize;
        let size = |column| format!("COALESCE({}, 0)", self.dialect.byte_length(column));
        let columns = format!("SELECT id, {} + {} AS size FROM audit", size("before_doc"), size("after_doc"));
        let sql = self.audit_sql(&columns, query, false);
        let sized = bind_audit(&sql, self.dialect, query, None, limit + 1).fetch_all(&mut *self.tx).await?;
        let sizes = sized.iter().map(decode_size).collect::<Result<Vec<_>, _>>()?;
        let kept = page_length(&sizes, limit);
        let more = sizes.len() > kept;
        let (Some((newest, _)), Some((oldest, _))) = (sizes.first(), kept.checked_sub(1).and_then(|i| sizes.get(i)))
        else {
            return Ok(AuditPage { events: Vec::new(), more });
        };
        let sql = self.audit_sql(AUDIT_COLUMNS, query, true);
        let rows =
            bind_audit(&sql, self.dialect, query, Some((*oldest, *newest)), kept).fetch_all(&mut *self.tx).await?;
        let events = rows.iter().map(decode_audit).collect::<Result<Vec<_>, _>>()?;
        Ok(AuditPage { events, more })
    }

    async fn tokens(&mut self) -> Result<Vec<Token>, StoreError> {
        self.all(&format!("{TOKEN_COLUMNS} ORDER BY created_at DESC, id DESC"), decode_token).await
    }

    async fn token_by_hash(&mut self, hash: &str) -> Result<Option<Token>, StoreError> {
        Ok(self.rows_by(&format!("{TOKEN_COLUMNS} WHERE hash = ?"), hash, decode_token).await?.pop())
    }

    async fn insert_token(&mut self, token: &Token) -> Result<(), StoreError> {
        let sql = self.dialect.sql(
            "INSERT INTO tokens (id, name, role, environment, hash, created_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        );
        sqlx::query(&sql)
            .bind(token.id.as_str())
            .bind(token.name.as_str())
            .bind(token.role.as_str())
            .bind(token.environment.as_deref())
            .bind(token.hash.as_str())
            .bind(token.created_at)
            .bind(token.revoked_at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn revoke_token(&mut self, id: &str, at: i64) -> Result<bool, StoreError> {
        let sql = self.dialect.sql("UPDATE tokens SET revoked_at = ? WHERE id = ?");
        let done = sqlx::query(&sql).bind(at).bind(id).execute(&mut *self.tx).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn forget_silent_replica(&mut self, id: &str, heard_before: i64) -> Result<Option<Replica>, StoreError> {
        let select =
            self.dialect.sql("SELECT id, address, applied_seq, started_at, last_seen FROM replicas WHERE id = ?");
        let Some(row) = sqlx::query(&select).bind(id).fetch_optional(&mut *self.tx).await? else {
            return Ok(None);
        };
        let delete = self.dialect.sql("DELETE FROM replicas WHERE id = ? AND last_seen < ?");
        let deleted = sqlx::query(&delete).bind(id).bind(heard_before).execute(&mut *self.tx).await?;
        Ok(if deleted.rows_affected() > 0 { Some(decode_replica(&row)?) } else { None })
    }

    async fn changes_since(&mut self, seq: i64) -> Result<Vec<ChangeScope>, StoreError> {
        let sql = self.dialect.sql("SELECT DISTINCT environment, action FROM audit WHERE seq > ?");
        let rows = sqlx::query(&sql).bind(seq).fetch_all(&mut *self.tx).await?;
        let decode = |row: &AnyRow| {
            Ok(ChangeScope { environment: optional_text(row, "environment")?, action: text(row, "action")? })
        };
        rows.iter().map(decode).collect()
    }
}

fn decode_replica(row: &AnyRow) -> Result<Replica, StoreError> {
    Ok(Replica {
        id: text(row, "id")?,
        address: text(row, "address")?,
        applied_seq: row.try_get("applied_seq")?,
        started_at: row.try_get("started_at")?,
        last_seen: row.try_get("last_seen")?,
    })
}

fn decode_environment(row: &AnyRow) -> Result<Environment, StoreError> {
    Ok(Environment { name: text(row, "name")?, created_at: row.try_get("created_at")? })
}

/// The rows whose keys are exactly the ones asked for. MySQL and MariaDB compare text
/// padded with spaces (`'prod ' = 'prod'`), so a lookup by `prod ` would find `prod` and a
/// write meant for no environment would land on it; SQLite and PostgreSQL need no filter.
fn exactly<T>(mut rows: Vec<T>, asked: impl Fn(&T) -> bool) -> Vec<T> {
    rows.retain(asked);
    rows
}

fn decode_flag(row: &AnyRow) -> Result<StoredFlag, StoreError> {
    Ok(StoredFlag {
        definition: from_json("flag definition", &text(row, "definition")?)?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn decode_config(row: &AnyRow) -> Result<StoredConfig, StoreError> {
    Ok(StoredConfig {
        flag: text(row, "flag")?,
        environment: text(row, "environment")?,
        config: from_json("environment configuration", &text(row, "config")?)?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: text(row, "updated_by")?,
    })
}

/// A row of [`Tx::config`]'s query.
fn decode_lookup(row: &AnyRow, flag: &str, environment: &str) -> Result<ConfigLookup, StoreError> {
    if text(row, "name")? != environment {
        return Ok(ConfigLookup::NoEnvironment);
    }
    if optional_text(row, "key")?.is_none_or(|key| key != flag) {
        return Ok(ConfigLookup::NoFlag);
    }
    let config = match optional_text(row, "config")? {
        None => None,
        Some(document) => Some(Box::new(StoredConfig {
            flag: flag.to_owned(),
            environment: environment.to_owned(),
            config: from_json("environment configuration", &document)?,
            version: row.try_get("config_version")?,
            updated_at: row.try_get("config_updated_at")?,
            updated_by: text(row, "updated_by")?,
        })),
    };
    Ok(ConfigLookup::Found { flag: Box::new(decode_flag(row)?), config })
}

fn decode_segment(row: &AnyRow) -> Result<StoredSegment, StoreError> {
    Ok(StoredSegment {
        environment: text(row, "environment")?,
        segment: from_json("segment", &text(row, "definition")?)?,
        version: row.try_get("version")?,
    })
}

/// An audit row, with the length of its before and after documents.
/// Binds the parameters of [`SqlTx::audit_sql`], in its order.
fn bind_audit<'q>(
    sql: &'q str,
    dialect: SqlDialect,
    query: &'q AuditQuery,
    between: Option<(i64, i64)>,
    limit: usize,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    let binds = dialect.exact_text_binds();
    for text in [&query.flag, &query.environment, &query.actor].into_iter().flatten() {
        for _ in 0..binds {
            q = q.bind(text.as_str());
        }
    }
    let range = between.map_or([None, None], |(from, to)| [Some(from), Some(to)]);
    for number in [query.since, query.before_id].into_iter().chain(range).flatten() {
        q = q.bind(number);
    }
    q.bind(i64::try_from(limit).unwrap_or(i64::MAX))
}

/// How many of `sizes` (id and document size, newest first) a page holds: at most
/// `limit`, ending with the event that takes it past [`MAX_AUDIT_PAGE_BYTES`].
fn page_length(sizes: &[(i64, usize)], limit: usize) -> usize {
    let mut bytes = 0;
    for (kept, (_, size)) in sizes.iter().take(limit).enumerate() {
        if bytes > MAX_AUDIT_PAGE_BYTES {
            return kept;
        }
        bytes += size;
    }
    sizes.len().min(limit)
}

fn decode_size(row: &AnyRow) -> Result<(i64, usize), StoreError> {
    let size: i64 = row.try_get("size")?;
    Ok((row.try_get("id")?, usize::try_from(size).unwrap_or(0)))
}

fn decode_audit(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let document = |column| -> Result<_, StoreError> {
        optional_text(row, column)?.map(|doc| from_json("audit document", &doc)).transpose()
    };
    let (before, after) = (document("before_doc")?, document("after_doc")?);
    Ok(AuditEvent {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        actor: text(row, "actor")?,
        actor_token: optional_text(row, "actor_token")?,
        at: row.try_get("at")?,
        action: text(row, "action")?,
        environment: optional_text(row, "environment")?,
        flag: optional_text(row, "flag")?,
        segment: optional_text(row, "segment")?,
        before,
        after,
        reason: optional_text(row, "reason")?,
    })
}

fn decode_token(row: &AnyRow) -> Result<Token, StoreError> {
    let role: Role = serde_json::from_value(serde_json::Value::String(text(row, "role")?))
        .map_err(|source| StoreError::Corrupt { what: "token role", source })?;
    Ok(Token {
        id: text(row, "id")?,
        name: text(row, "name")?,
        role,
        environment: optional_text(row, "environment")?,
        hash: text(row, "hash")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// A text column. MySQL's TEXT types reach `Any` as blobs, so those are accepted too
/// when they hold UTF-8.
fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    match row.try_get::<String, _>(column) {
        Ok(value) => Ok(value),
        Err(sqlx::Error::ColumnDecode { .. }) => utf8(column, row.try_get::<Vec<u8>, _>(column)?),
        Err(e) => Err(e.into()),
    }
}

/// A nullable text column (see [`text`]).
fn optional_text(row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    match row.try_get::<Option<String>, _>(column) {
        Ok(value) => Ok(value),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            row.try_get::<Option<Vec<u8>>, _>(column)?.map(|bytes| utf8(column, bytes)).transpose()
        }
        Err(e) => Err(e.into()),
    }
}

fn utf8(column: &str, bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes)
        .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e.utf8_error()) }.into())
}

fn from_json<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { what, source })
}

/// Serialising these types cannot fail in practice (string keys only); should it, the
/// error is reported like an unreadable document rather than a panic.
fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt { what: "document to store", source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The database ends a write transaction by itself (as SQLite does on a full disk), so
    /// the driver's rollback when it is dropped fails: the next writes must still work.
    #[tokio::test]
    async fn writes_work_again_after_the_database_ended_a_transaction_by_itself() {
        let dir = std::env::temp_dir().join(format!("flagd-sql-ended-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqlStore::connect(&format!("sqlite:{}", dir.join("flagd.db").display())).await.unwrap();
        let mut ended = store.begin(&store.writer, store.dialect.begin_write(), None).await.unwrap();
        ended.execute("ROLLBACK").await.unwrap();
        drop(ended);
        for attempt in 0..3 {
            let tx = store.begin_write().await;
            assert!(tx.is_ok(), "write {attempt}: {:?}", tx.as_ref().err());
            tx.unwrap().commit().await.unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Readiness asks the schema, not only the server: a database emptied under a running
    /// server (a dropped database, a restore gone wrong) is down for writes.
    #[tokio::test]
    async fn a_database_without_the_schema_does_not_answer_a_ping() {
        let dir = std::env::temp_dir().join(format!("flagd-sql-ping-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqlStore::connect(&format!("sqlite:{}", dir.join("flagd.db").display())).await.unwrap();
        store.ping().await.unwrap();
        let mut tx = store.begin(&store.writer, store.dialect.begin_write(), None).await.unwrap();
        tx.execute("DROP TABLE change_seq").await.unwrap();
        Box::new(tx).commit().await.unwrap();
        assert!(store.ping().await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_page_ends_with_the_event_that_takes_it_past_its_size_or_at_the_limit() {
        const HALF: usize = MAX_AUDIT_PAGE_BYTES / 2;
        // (document sizes, newest first; limit; events kept)
        let cases: [(&[usize], usize, usize); 7] = [
            (&[], 10, 0),
            (&[1, 1, 1], 10, 3),
            (&[1, 1, 1], 2, 2),
            (&[HALF, HALF, 1, 1], 10, 3),
            (&[HALF, HALF + 1, 1], 10, 2),
            (&[MAX_AUDIT_PAGE_BYTES * 3, 1], 10, 1),
            (&[1, 1], 0, 0),
        ];
        for (sizes, limit, kept) in cases {
            let rows: Vec<(i64, usize)> = sizes.iter().enumerate().map(|(i, s)| (i as i64, *s)).collect();
            assert_eq!(page_length(&rows, limit), kept, "{sizes:?} with limit {limit}");
        }
    }
}
