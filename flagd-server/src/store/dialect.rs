//! Everything that differs between the SQL backends, so that `sql.rs` can hold one set
//! of queries: URL preparation, per-connection settings, how transactions begin, how an
//! inserted id comes back, the embedded migrations, and the rewriting of portable SQL
//! (`?` placeholders, `"quoted"` identifiers) into each backend's syntax.

use std::borrow::Cow;
use std::path::Path;
use std::sync::LazyLock;

use sqlx::migrate::Migrator;

use super::StoreError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
/// Without sqlx's lock, which is none on MariaDB: `SqlStore` takes one of its own.
static MYSQL_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations/mysql");
    migrator.set_locking(false);
    migrator
});
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request's statement waits for a lock on MySQL / MariaDB and PostgreSQL
/// before failing (503 `DATABASE_BUSY`), and on SQLite a writer for its turn in this
/// process's queue. The databases' own defaults are 50 s for InnoDB's row locks, a day
/// (MariaDB) or a year (MySQL) for metadata locks (`LOCK TABLES`, a schema change) and no
/// bound on PostgreSQL: a request and its pooled connection waited as long as such a lock
/// lasted. The wait covers a write's turn at the change-sequence row too, behind other
/// writes (an import holds it throughout), so it is not short; two such waits in one write
/// still end within flagctl's 60 s request timeout, so a write held up is answered, saying why.
pub const REQUEST_LOCK_WAIT_S: u32 = 25;

/// SQLite's busy timeout: a writer from another process waits this long for the write
/// lock before failing. Writers of one process queue in-process instead (see
/// [`SqlDialect::queues_writers_in_process`]).
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// How long the replica bookkeeping (heartbeats, the cluster view) waits for a lock on
/// MySQL / MariaDB and PostgreSQL before failing: long enough for any ordinary write to
/// the `replicas` table, short beside the 3 s after which a replica counts as silent.
const BOOKKEEPING_LOCK_WAIT_S: u32 = 2;

/// See [`SqlDialect::migration_turns`].
#[derive(Debug, Clone, Copy)]
pub enum MigrationTurns {
    /// sqlx's own migration lock.
    Sqlx,
    /// A lock of the session holding it, taken and released by a query each; sqlx's
    /// lock is left out (see [`SqlDialect::migrator`]).
    SessionLock {
        /// Binds the longest wait in seconds; answers `locked`: 1 when taken, 0 when the
        /// wait ran out, NULL on an error.
        take: &'static str,
        /// Answers `released`.
        release: &'static str,
    },
    /// One transaction, opened with this statement, around the whole run.
    WriteTransaction(&'static str),
}

/// The SQL backend behind a database URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    /// SQLite, a file.
    Sqlite,
    /// MySQL or MariaDB.
    MySql,
    /// PostgreSQL.
    Postgres,
}

impl SqlDialect {
    /// The backend a URL names, from its scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme).to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "mysql" | "mariadb" if url.contains("://") => Ok(Self::MySql),
            "postgres" | "postgresql" if url.contains("://") => Ok(Self::Postgres),
            _ => Err(StoreError::UnsupportedUrl(url.to_owned())),
        }
    }

    /// The URL to hand to sqlx. For SQLite: the file and its directory are created when
    /// missing, and an in-memory database is refused, because every pooled connection
    /// would get a database of its own.
    pub fn prepare_url(self, url: &str) -> Result<String, StoreError> {
        match self {
            Self::Sqlite => sqlite_url(url),
            // sqlx's Any driver knows MariaDB only by the `mysql` scheme.
            Self::MySql => {
                Ok(url.split_once("://").map_or_else(|| url.to_owned(), |(_, rest)| format!("mysql://{rest}")))
            }
            Self::Postgres => Ok(url.to_owned()),
        }
    }

    /// Statements run on every new connection of the request pools: lock waits end after
    /// [`REQUEST_LOCK_WAIT_S`] (on SQLite after its busy timeout; there the constant bounds
    /// a writer's wait in the process's queue instead).
    pub fn session_setup(self) -> Vec<String> {
        self.setup_waiting(REQUEST_LOCK_WAIT_S)
    }

    /// Statements run on every new connection kept for the replica bookkeeping, or `None`
    /// where it shares the other connections (SQLite, whose writers already queue on one).
    /// Its lock waits are short: a lock held on the `replicas` table (`LOCK TABLES`, an
    /// `ALTER TABLE`) then fails a heartbeat or a cluster-view read in seconds, which the
    /// log tells, instead of holding its connection for as long as the lock lasts.
    pub fn bookkeeping_setup(self) -> Option<Vec<String>> {
        match self {
            Self::Sqlite => None,
            Self::MySql | Self::Postgres => Some(self.setup_waiting(BOOKKEEPING_LOCK_WAIT_S)),
        }
    }

    /// The statement that makes a session's lock waits end after `seconds`, where the
    /// backend has waits of its own to bound: not SQLite, whose one lock is the file's and
    /// whose busy timeout is set with the other pragmas.
    pub fn lock_waits(self, seconds: u32) -> Option<String> {
        match self {
            Self::Sqlite => None,
            // Metadata locks (`LOCK TABLES`, DDL) and InnoDB's row locks have a wait each.
            Self::MySql => {
                Some(format!("SET SESSION lock_wait_timeout = {seconds}, innodb_lock_wait_timeout = {seconds}"))
            }
            Self::Postgres => Some(format!("SET lock_timeout = '{seconds}s'")),
        }
    }

    /// A new connection's settings, its lock waits ending after `seconds`.
    fn setup_waiting(self, seconds: u32) -> Vec<String> {
        let mut setup = match self {
            // WAL lets readers proceed while one writer writes.
            Self::Sqlite => {
                vec![format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"), "PRAGMA journal_mode = WAL".to_owned()]
            }
            // Read transactions rely on REPEATABLE READ for their snapshot, whatever the
            // server's default; strict mode turns an over-long value into an error rather
            // than a silent truncation (which would read back as a corrupt document).
            Self::MySql => vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ".to_owned(),
                "SET SESSION sql_mode = IF(FIND_IN_SET('STRICT_TRANS_TABLES', @@sql_mode) > 0, @@sql_mode, \
                 CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_TRANS_TABLES'))"
                    .to_owned(),
            ],
            Self::Postgres => Vec::new(),
        };
        setup.extend(self.lock_waits(seconds));
        setup
    }

    /// The statement opening a write transaction; its first statement then locks the
    /// change-sequence row.
    pub const fn begin_write(self) -> &'static str {
        match self {
            // IMMEDIATE takes the write lock at once instead of at the first write.
            Self::Sqlite => "BEGIN IMMEDIATE",
            // REPEATABLE READ would be fine too, since the snapshot starts at the first
            // read, after the lock; READ WRITE just says what it is.
            Self::MySql => "START TRANSACTION READ WRITE",
            // Not REPEATABLE READ: its snapshot would predate the wait for the sequence
            // row and the update would fail with a serialisation error. READ COMMITTED
            // reads what the previous writer committed.
            Self::Postgres => "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE",
        }
    }

    /// The statement opening a read transaction: one consistent snapshot, and no writes,
    /// since a write that bypassed the change sequence would never reach replicas.
    pub const fn begin_read(self) -> &'static str {
        match self {
            // A deferred transaction's snapshot starts at its first read (WAL).
            Self::Sqlite => "BEGIN DEFERRED",
            Self::MySql => "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            Self::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        }
    }

    /// Whether an INSERT can return the generated id and an UPDATE the new value
    /// (`RETURNING`); otherwise the driver's last-insert id is used, and a second query
    /// reads the value back. MariaDB has RETURNING on INSERT only, MySQL not at all.
    pub const fn has_returning(self) -> bool {
        !matches!(self, Self::MySql)
    }

    /// A query answering the database's clock in Unix milliseconds (`now_ms`). SQLite's is
    /// the process's own, which is the host's: its replicas share one file, so one host.
    pub const fn clock_query(self) -> &'static str {
        match self {
            Self::Sqlite => "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) AS now_ms",
            Self::MySql => "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS now_ms",
            Self::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS now_ms",
        }
    }

    /// A filter on a text column that matches exactly; its value is bound
    /// [`SqlDialect::exact_text_binds`] times. MySQL and MariaDB compare text padded with
    /// spaces (`'a ' = 'a'`), so there the indexed comparison is narrowed by a binary one.
    pub fn exact_text_filter(self, column: &str) -> String {
        match self {
            Self::MySql => format!(" AND {column} = ? AND {column} = CAST(? AS BINARY)"),
            Self::Sqlite | Self::Postgres => format!(" AND {column} = ?"),
        }
    }

    /// How many parameters [`SqlDialect::exact_text_filter`] takes: its placeholders,
    /// counted, so that the two cannot disagree.
    pub fn exact_text_binds(self) -> usize {
        self.exact_text_filter("c").matches('?').count()
    }

    /// SQL for the length in bytes of a text column (`LENGTH` counts characters on SQLite
    /// and PostgreSQL).
    pub fn byte_length(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("LENGTH(CAST({column} AS BLOB))"),
            Self::MySql => format!("LENGTH({column})"),
            Self::Postgres => format!("OCTET_LENGTH({column})"),
        }
    }

    /// Whether this process's writers take turns: queued on an in-process lock before
    /// opening a transaction, each on the one connection kept for writes. SQLite's busy
    /// handler polls with growing sleeps, so many local writers racing for the lock waste
    /// time and can starve, while a fair queue does not; and SQLite drops a connection's
    /// page cache whenever another connection wrote since its last transaction, so writes
    /// spread over pooled connections would each read every page they touch back from the
    /// file (about twenty reads per quick operation).
    pub const fn queues_writers_in_process(self) -> bool {
        matches!(self, Self::Sqlite)
    }

    /// Whether the pool pings a connection before handing it out. A server connection can
    /// have been dropped while idle; a SQLite connection is a file handle that cannot,
    /// and its ping would be one more round trip to its thread on every transaction.
    pub const fn tests_connections_before_use(self) -> bool {
        !matches!(self, Self::Sqlite)
    }

    /// How many pooled connections to keep at most.
    pub const fn max_connections(self) -> u32 {
        match self {
            Self::Sqlite => 8,
            Self::MySql | Self::Postgres => 16,
        }
    }

    /// The embedded migrations. On MySQL they take no lock: the caller holds the one of
    /// [`SqlDialect::migration_turns`] on the connection they run on.
    pub fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATIONS,
            Self::MySql => LazyLock::force(&MYSQL_MIGRATIONS),
            Self::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// How processes starting together take turns to run the migrations: the first
    /// applies them, the others then find them applied.
    pub const fn migration_turns(self) -> MigrationTurns {
        match self {
            // sqlx's MySQL lock is `GET_LOCK(name, -1)` with its answer ignored: MariaDB
            // refuses a negative timeout (NULL, warning 1411), so there was no lock, and
            // MySQL's DDL commits as it goes. MySQL's locks belong to the whole server,
            // hence the database's name in the lock's; hashed, since a lock name is at most
            // 64 characters.
            Self::MySql => MigrationTurns::SessionLock {
                take: "SELECT GET_LOCK(CONCAT('flagd-migrations-', SHA1(COALESCE(DATABASE(), ''))), ?) AS locked",
                release: "SELECT RELEASE_LOCK(CONCAT('flagd-migrations-', SHA1(COALESCE(DATABASE(), '')))) AS released",
            },
            // sqlx takes no lock on SQLite: each process found nothing applied, and all
            // but the first then failed on a table that already existed. The write lock,
            // taken before sqlx reads what is applied and held until everything is,
            // queues them (sqlx's own transactions become savepoints inside it).
            Self::Sqlite => MigrationTurns::WriteTransaction("BEGIN IMMEDIATE"),
            // A real advisory lock, and the migrations are transactions.
            Self::Postgres => MigrationTurns::Sqlx,
        }
    }

    /// Rewrites portable SQL: `?` placeholders become `$1`, `$2`, … on PostgreSQL, and
    /// `"quoted"` identifiers (needed for the reserved word `key`) become `` `quoted` ``
    /// on MySQL. Text inside single-quoted literals is left alone.
    pub fn sql(self, portable: &str) -> Cow<'_, str> {
        match self {
            Self::Sqlite => Cow::Borrowed(portable),
            Self::MySql => Cow::Owned(rewrite(portable, |out, c, _| out.push(if c == '"' { '`' } else { c }))),
            Self::Postgres => Cow::Owned(rewrite(portable, |out, c, n| {
                if c == '?' {
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(c);
                }
            })),
        }
    }
}

/// Copies `sql`, passing each character outside string literals to `map` with the
/// number of `?` seen so far including this one.
fn rewrite(sql: &str, mut map: impl FnMut(&mut String, char, usize)) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut in_literal = false;
    let mut placeholders = 0;
    for c in sql.chars() {
        if c == '\'' {
            in_literal = !in_literal;
        }
        if in_literal || c == '\'' {
            out.push(c);
            continue;
        }
        if c == '?' {
            placeholders += 1;
        }
        map(&mut out, c, placeholders);
    }
    out
}

/// `sqlite:path` or `sqlite://path` → `sqlite://path?mode=rwc`, creating the directory.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || params.contains("mode=memory") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    if let Some(dir) = Path::new(path).parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
    }
    let mode = if params.contains("mode=") { "" } else { "mode=rwc" };
    let params = [params, mode].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("&");
    Ok(format!("sqlite://{path}?{params}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let sql = "SELECT \"key\" FROM t WHERE a = ? AND b = '?' AND c = ?";
        assert_eq!(SqlDialect::Postgres.sql(sql), "SELECT \"key\" FROM t WHERE a = $1 AND b = '?' AND c = $2");
        assert_eq!(SqlDialect::MySql.sql(sql), "SELECT `key` FROM t WHERE a = ? AND b = '?' AND c = ?");
        assert_eq!(SqlDialect::Sqlite.sql(sql), sql);
    }

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(SqlDialect::from_url("sqlite:data/x.db").ok(), Some(SqlDialect::Sqlite));
        assert_eq!(SqlDialect::from_url("mysql://root@h/db").ok(), Some(SqlDialect::MySql));
        assert_eq!(SqlDialect::from_url("postgresql://u@h/db").ok(), Some(SqlDialect::Postgres));
        assert!(SqlDialect::from_url("redis://h").is_err());
        assert!(SqlDialect::from_url("data.db").is_err());
        assert!(SqlDialect::Sqlite.prepare_url("sqlite::memory:").is_err());
    }
}
