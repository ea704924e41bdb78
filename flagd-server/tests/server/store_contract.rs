//! The storage contract, written once and run against every backend: SQLite always,
//! MariaDB / MySQL when `FLAGD_TEST_MYSQL_URL` is set, PostgreSQL when
//! `FLAGD_TEST_POSTGRES_URL` is set. Each test gets a database of its own (a temporary
//! file, or a `flagd_t_<random>` database created through the given URL and dropped
//! afterwards). A configured backend that cannot be reached fails the test.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Once};

use flagd_core::{EnvironmentConfig, FlagDefinition, FlagState, Segment, Serve};
use flagd_server::auth::hash_token;
use flagd_server::service::Service;
use flagd_server::store::{
    self, AuditEvent, AuditQuery, ChangeScope, ConfigLookup, Environment, Replica, Role, Store, StoreError,
    StoredConfig, StoredFlag, StoredSegment, Token,
};
use serde_json::{Map, Value, json};
use sqlx::{AnyConnection, Connection, Executor};

/// A backend the contract runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    MySql,
    Postgres,
}

impl Backend {
    /// The variable naming the server to use, for the server backends.
    fn url_variable(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::MySql => Some("FLAGD_TEST_MYSQL_URL"),
            Self::Postgres => Some("FLAGD_TEST_POSTGRES_URL"),
        }
    }

    /// Once per test binary, not once per test.
    fn say_not_configured(self, variable: &str) {
        static MYSQL: Once = Once::new();
        static POSTGRES: Once = Once::new();
        let once = if self == Self::MySql { &MYSQL } else { &POSTGRES };
        once.call_once(|| println!("{self:?} is not configured (set {variable} to run the store contract against it)"));
    }
}

/// A database made for one test, removed by [`Scratch::remove`].
enum Scratch {
    File { url: String, path: PathBuf },
    Server { url: String, admin_url: String, name: String, backend: Backend },
}

impl Scratch {
    /// A fresh database, or `None` when the backend is not configured.
    async fn create(backend: Backend) -> Option<Self> {
        let suffix = format!("{:016x}", rand::random::<u64>());
        let Some(variable) = backend.url_variable() else {
            let path =
                std::env::temp_dir().join(format!("flagd-store-{}-{suffix}", std::process::id())).join("flagd.db");
            return Some(Self::File { url: format!("sqlite:{}", path.display()), path });
        };
        let Ok(admin_url) = std::env::var(variable) else {
            backend.say_not_configured(variable);
            return None;
        };
        let name = format!("flagd_t_{suffix}");
        let mut admin = connect_raw(&admin_url).await;
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        admin.close().await.unwrap();
        Some(Self::Server { url: with_database(&admin_url, &name), admin_url, name, backend })
    }

    fn url(&self) -> &str {
        match self {
            Self::File { url, .. } | Self::Server { url, .. } => url,
        }
    }

    /// Best effort: a leftover database must not fail a test that passed.
    async fn remove(self) {
        match self {
            Self::File { path, .. } => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Self::Server { admin_url, name, backend, .. } => {
                // FORCE: connections of the finished test's pool may still be closing.
                let force = if backend == Backend::Postgres { " WITH (FORCE)" } else { "" };
                if let Ok(mut admin) = AnyConnection::connect(&admin_url).await {
                    let _ = admin.execute(format!("DROP DATABASE IF EXISTS {name}{force}").as_str()).await;
                    let _ = admin.close().await;
                }
            }
        }
    }
}

async fn connect_raw(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redact(url)))
}

/// `scheme://user@host:port/db?params` with `db` replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, params) = url.split_once('?').map_or((url, None), |(b, p)| (b, Some(p)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[authority_end..];
    let root = host_and_path.find('/').map_or(base.len(), |i| authority_end + i);
    let mut out = format!("{}/{name}", &base[..root]);
    if let Some(params) = params {
        out.push('?');
        out.push_str(params);
    }
    out
}

/// Runs one contract case against one backend on a fresh database.
async fn run<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(Arc<dyn Store>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(scratch) = Scratch::create(backend).await else { return };
    let url = scratch.url().to_owned();
    let connected = store::connect(&url).await;
    let outcome = match connected {
        Ok(store) => tokio::spawn(case(store, url)).await,
        Err(e) => {
            scratch.remove().await;
            panic!("{backend:?}: cannot open the store at {}: {e}", redact(&url));
        }
    };
    scratch.remove().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn redact(url: &str) -> String {
    url.split_once('@').map_or_else(|| url.to_owned(), |(_, host)| format!("…@{host}"))
}

macro_rules! backend_tests {
    ($module:ident, $backend:expr, [$($case:ident),*]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run($backend, super::$case).await;
                }
            )*
        }
    };
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        backend_tests!(sqlite, super::Backend::Sqlite, [$($case),*]);
        backend_tests!(mysql, super::Backend::MySql, [$($case),*]);
        backend_tests!(postgres, super::Backend::Postgres, [$($case),*]);
    };
}

contract!(
    migrations_are_idempotent,
    sequence_advances_once_per_committed_write,
    writes_see_their_own_changes_and_others_do_not,
    a_dropped_write_leaves_nothing_behind,
    reads_keep_one_snapshot,
    environments_are_listed_by_name,
    an_environments_flag_set_metadata_starts_empty_and_round_trips,
    flags_are_put_listed_and_deleted_with_their_configs,
    configs_are_put_and_listed_both_ways,
    lookups_match_keys_exactly_trailing_spaces_included,
    segments_are_put_listed_and_deleted,
    documents_round_trip_exactly,
    documents_up_to_the_limit_fit_and_larger_ones_are_refused,
    an_audit_document_as_large_as_a_page_fits,
    a_document_over_the_limit_may_change_without_growing,
    corrupt_documents_are_reported,
    audit_is_filtered_and_paged_newest_first,
    audit_limit_is_capped,
    audit_pages_end_once_their_documents_pass_the_page_size,
    tokens_are_found_revoked_and_listed_newest_first,
    concurrent_writes_serialise,
    a_write_waits_its_turn_for_at_most_the_lock_wait,
    ping_and_current_seq,
    the_database_clock_reads_in_unix_milliseconds,
    heartbeats_are_recorded_updated_and_forgotten,
    changes_since_name_what_later_writes_touched,
    replicas_starting_together_with_a_new_admin_token_store_it_once,
    replicas_first_starting_together_without_an_admin_token_generate_one,
);

// SQLite has no table or row locks: a lock there is on the whole file, writes included.
backend_tests!(
    mysql_table_locks,
    super::Backend::MySql,
    [
        a_lock_on_the_replicas_table_fails_bookkeeping_not_writes,
        a_lock_held_elsewhere_fails_a_request_after_the_lock_wait
    ]
);
backend_tests!(
    postgres_table_locks,
    super::Backend::Postgres,
    [
        a_lock_on_the_replicas_table_fails_bookkeeping_not_writes,
        a_lock_held_elsewhere_fails_a_request_after_the_lock_wait
    ]
);

/// Tests that need a database of their own per round instead of the one [`run`] prepares.
macro_rules! fresh_database_tests {
    ($($case:ident),* $(,)?) => {
        mod fresh {
            $(
                mod $case {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn sqlite() {
                        super::super::$case(super::super::Backend::Sqlite).await;
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn mysql() {
                        super::super::$case(super::super::Backend::MySql).await;
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn postgres() {
                        super::super::$case(super::super::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

fresh_database_tests!(
    stores_opened_together_on_a_fresh_database_all_migrate_it,
    environments_from_before_flag_set_metadata_have_none_after_the_upgrade,
);

const T0: i64 = 1_700_000_000_000;

fn flag(key: &str, description: &str, at: i64) -> StoredFlag {
    let mut definition = FlagDefinition::boolean(key);
    definition.description = description.to_owned();
    StoredFlag { definition, version: 0, created_at: at, updated_at: at }
}

fn config(flag: &str, environment: &str, state: FlagState, by: &str) -> StoredConfig {
    StoredConfig {
        flag: flag.to_owned(),
        environment: environment.to_owned(),
        config: EnvironmentConfig { state, ..EnvironmentConfig::default() },
        version: 0,
        updated_at: T0,
        updated_by: by.to_owned(),
    }
}

fn segment(environment: &str, key: &str, companies: &[&str]) -> StoredSegment {
    let segment = serde_json::from_value(json!({"key": key, "companies": companies})).unwrap();
    StoredSegment { environment: environment.to_owned(), segment, version: 0 }
}

fn env(name: &str) -> Environment {
    Environment { name: name.to_owned(), created_at: T0 }
}

fn event(seq: i64, actor: &str, at: i64, environment: Option<&str>, flag: Option<&str>) -> AuditEvent {
    AuditEvent {
        id: 0,
        seq,
        actor: actor.to_owned(),
        actor_token: None,
        at,
        action: "config.update".to_owned(),
        environment: environment.map(str::to_owned),
        flag: flag.map(str::to_owned),
        segment: None,
        before: None,
        after: Some(json!({"state": "ENABLED"})),
        reason: None,
    }
}

fn token(id: &str, role: Role, environment: Option<&str>, created_at: i64) -> Token {
    Token {
        id: id.to_owned(),
        name: format!("{id} token"),
        role,
        environment: environment.map(str::to_owned),
        hash: format!("{:0>64}", id),
        created_at,
        revoked_at: None,
    }
}

fn keys(flags: &[StoredFlag]) -> Vec<&str> {
    flags.iter().map(|f| f.definition.key.as_str()).collect()
}

async fn migrations_are_idempotent(store: Arc<dyn Store>, url: String) {
    let mut tx = store.begin_write().await.unwrap();
    tx.put_flag(&flag("kept", "", T0)).await.unwrap();
    tx.commit().await.unwrap();
    let seq = store.current_seq().await.unwrap();

    let again = store::connect(&url).await.unwrap();
    assert_eq!(again.current_seq().await.unwrap(), seq);
    let mut tx = again.begin_read().await.unwrap();
    assert_eq!(keys(&tx.flags().await.unwrap()), ["kept"]);
}

async fn sequence_advances_once_per_committed_write(store: Arc<dyn Store>, _url: String) {
    let start = store.current_seq().await.unwrap();
    let tx = store.begin_write().await.unwrap();
    assert_eq!(tx.seq(), start + 1);
    tx.commit().await.unwrap();
    assert_eq!(store.current_seq().await.unwrap(), start + 1);

    let dropped = store.begin_write().await.unwrap();
    assert_eq!(dropped.seq(), start + 2);
    drop(dropped);
    assert_eq!(store.current_seq().await.unwrap(), start + 1);

    let read = store.begin_read().await.unwrap();
    assert_eq!(read.seq(), start + 1);
    drop(read);
    let tx = store.begin_write().await.unwrap();
    assert_eq!(tx.seq(), start + 2, "a rolled-back write does not use up a number");
    tx.commit().await.unwrap();
    assert_eq!(store.current_seq().await.unwrap(), start + 2);
}

async fn writes_see_their_own_changes_and_others_do_not(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_environment(&env("dev")).await.unwrap();
    tx.put_flag(&flag("f", "mine", T0)).await.unwrap();
    tx.put_config(&config("f", "dev", FlagState::Enabled, "alice")).await.unwrap();
    tx.put_segment(&segment("dev", "pilot", &["1"])).await.unwrap();

    assert_eq!(tx.environments().await.unwrap(), [env("dev")]);
    assert_eq!(tx.flag("f").await.unwrap().unwrap().definition.description, "mine");
    assert_eq!(tx.config("f", "dev").await.unwrap().into_config().unwrap().config.state, FlagState::Enabled);
    assert_eq!(tx.segments("dev").await.unwrap().len(), 1);

    let mut other = store.begin_read().await.unwrap();
    assert!(other.flags().await.unwrap().is_empty(), "uncommitted writes are invisible to others");
    assert!(other.environments().await.unwrap().is_empty());
    drop(other);
    tx.commit().await.unwrap();

    let mut after = store.begin_read().await.unwrap();
    assert_eq!(keys(&after.flags().await.unwrap()), ["f"]);
}

async fn a_dropped_write_leaves_nothing_behind(store: Arc<dyn Store>, _url: String) {
    let start = store.current_seq().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_environment(&env("dev")).await.unwrap();
    tx.put_flag(&flag("f", "", T0)).await.unwrap();
    tx.put_config(&config("f", "dev", FlagState::Enabled, "alice")).await.unwrap();
    tx.put_segment(&segment("dev", "pilot", &["1"])).await.unwrap();
    tx.append_audit(&event(tx.seq(), "alice", T0, Some("dev"), Some("f"))).await.unwrap();
    tx.insert_token(&token("t1", Role::Admin, None, T0)).await.unwrap();
    drop(tx);

    assert_eq!(store.current_seq().await.unwrap(), start);
    let mut read = store.begin_read().await.unwrap();
    assert!(read.environments().await.unwrap().is_empty());
    assert!(read.flags().await.unwrap().is_empty());
    assert!(read.flag_configs("f").await.unwrap().is_empty());
    assert!(read.segments("dev").await.unwrap().is_empty());
    assert!(read.audit(&AuditQuery { limit: 100, ..AuditQuery::default() }).await.unwrap().events.is_empty());
    assert!(read.tokens().await.unwrap().is_empty());
}

async fn reads_keep_one_snapshot(store: Arc<dyn Store>, _url: String) {
    let mut read = store.begin_read().await.unwrap();
    let seq = read.seq();
    assert!(read.flags().await.unwrap().is_empty());

    let mut tx = store.begin_write().await.unwrap();
    tx.put_flag(&flag("late", "", T0)).await.unwrap();
    tx.commit().await.unwrap();

    assert!(read.flags().await.unwrap().is_empty(), "a read transaction keeps its snapshot");
    assert!(read.flag("late").await.unwrap().is_none());
    assert_eq!(read.seq(), seq);
    drop(read);
    let mut fresh = store.begin_read().await.unwrap();
    assert_eq!(fresh.seq(), seq + 1);
    assert_eq!(keys(&fresh.flags().await.unwrap()), ["late"]);
}

async fn an_environments_flag_set_metadata_starts_empty_and_round_trips(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_environment(&env("prod")).await.unwrap();
    assert_eq!(tx.environment_metadata("prod").await.unwrap(), Some(Map::new()), "a new environment has none");
    assert_eq!(tx.environment_metadata("nowhere").await.unwrap(), None);
    tx.commit().await.unwrap();

    let metadata = object(json!({"team": "portal", "release": 3, "beta": true, "nested": {"zeta": [1, "é"]}}));
    let mut tx = store.begin_write().await.unwrap();
    tx.put_environment_metadata("prod", &metadata).await.unwrap();
    assert_eq!(tx.environment_metadata("prod").await.unwrap().as_ref(), Some(&metadata), "the write sees it");
    let mut other = store.begin_read().await.unwrap();
    assert_eq!(other.environment_metadata("prod").await.unwrap(), Some(Map::new()), "others do not, yet");
    drop(other);
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.environment_metadata("prod").await.unwrap(), Some(metadata.clone()));
    drop(read);

    let huge = object(json!({"pad": "x".repeat(store::MAX_DOCUMENT_BYTES)}));
    let mut tx = store.begin_write().await.unwrap();
    let refused = tx.put_environment_metadata("prod", &huge).await;
    assert!(
        matches!(&refused, Err(StoreError::TooLarge { what, .. }) if what == "flag-set metadata of `prod`"),
        "{refused:?}"
    );
    tx.put_environment_metadata("prod", &Map::new()).await.unwrap();
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.environment_metadata("prod").await.unwrap(), Some(Map::new()));
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

async fn environments_are_listed_by_name(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    for name in ["staging", "production", "development", "Zulu", "dev_2", "dev-2"] {
        tx.insert_environment(&Environment { name: name.to_owned(), created_at: T0 + 1 }).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    let names: Vec<String> = read.environments().await.unwrap().into_iter().map(|e| e.name).collect();
    // Byte order on every backend, whatever the server's locale.
    assert_eq!(names, ["Zulu", "dev-2", "dev_2", "development", "production", "staging"]);
    assert!(read.environments().await.unwrap().iter().all(|e| e.created_at == T0 + 1));
    drop(read);

    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.insert_environment(&env("staging")).await.is_err(), "a duplicate environment is refused");
}

async fn flags_are_put_listed_and_deleted_with_their_configs(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    let first_seq = tx.seq();
    for key in ["beta", "alpha", "gamma"] {
        tx.put_flag(&flag(key, "v1", T0)).await.unwrap();
    }
    tx.insert_environment(&env("dev")).await.unwrap();
    tx.insert_environment(&env("prod")).await.unwrap();
    for (f, e) in [("alpha", "dev"), ("alpha", "prod"), ("beta", "dev")] {
        tx.put_config(&config(f, e, FlagState::Disabled, "alice")).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin_write().await.unwrap();
    let stored = tx.flag("alpha").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.created_at, stored.updated_at), (first_seq, T0, T0));
    let replaced = StoredFlag { updated_at: T0 + 5, ..flag("alpha", "v2", T0) };
    tx.put_flag(&replaced).await.unwrap();
    // Writing the same values twice must still count as an update (MySQL reports
    // changed rows unless asked for matched rows).
    tx.put_flag(&replaced).await.unwrap();
    let stored = tx.flag("alpha").await.unwrap().unwrap();
    assert_eq!(stored, StoredFlag { version: tx.seq(), ..replaced });
    tx.delete_flag("alpha").await.unwrap();
    tx.delete_flag("missing").await.unwrap();
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    assert_eq!(keys(&read.flags().await.unwrap()), ["beta", "gamma"]);
    assert!(read.flag("alpha").await.unwrap().is_none());
    assert!(read.flag_configs("alpha").await.unwrap().is_empty(), "deleting a flag deletes its configs");
    assert_eq!(read.config("alpha", "prod").await.unwrap(), ConfigLookup::NoFlag);
    assert_eq!(read.configs("dev").await.unwrap().len(), 1, "other flags' configs stay");
    assert_eq!(read.flag("beta").await.unwrap().unwrap().version, first_seq);
}

/// MySQL and MariaDB compare text padded with spaces (`'prod ' = 'prod'`): a lookup by a
/// key with a trailing space must still find nothing, as on SQLite and PostgreSQL, or a
/// kill switch sent to `prod ` would be stored for `prod` without reaching evaluation.
async fn lookups_match_keys_exactly_trailing_spaces_included(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_environment(&env("prod")).await.unwrap();
    tx.put_flag(&flag("pm", "", T0)).await.unwrap();
    tx.put_config(&config("pm", "prod", FlagState::Disabled, "alice")).await.unwrap();
    tx.put_segment(&segment("prod", "pilot", &["42"])).await.unwrap();
    tx.put_environment_metadata("prod", &object(json!({"team": "core"}))).await.unwrap();
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    assert!(matches!(read.config("pm", "prod").await.unwrap(), ConfigLookup::Found { config: Some(_), .. }));
    for (flag, env, missing) in [("pm", "prod ", ConfigLookup::NoEnvironment), ("pm ", "prod", ConfigLookup::NoFlag)] {
        assert_eq!(read.config(flag, env).await.unwrap(), missing, "{flag:?} in {env:?}");
    }
    assert!(read.flag("pm ").await.unwrap().is_none());
    assert!(read.flag_configs("pm ").await.unwrap().is_empty());
    assert!(read.configs("prod ").await.unwrap().is_empty());
    assert!(read.segment("prod", "pilot ").await.unwrap().is_none());
    assert!(read.segment("prod ", "pilot").await.unwrap().is_none());
    assert!(read.segments("prod ").await.unwrap().is_empty());
    assert_eq!(read.environment_metadata("prod ").await.unwrap(), None);
}

async fn configs_are_put_and_listed_both_ways(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    let seq = tx.seq();
    for name in ["prod", "dev"] {
        tx.insert_environment(&env(name)).await.unwrap();
    }
    for key in ["a", "b", "c", "unconfigured"] {
        tx.put_flag(&flag(key, "", T0)).await.unwrap();
    }
    for (f, e) in [("b", "prod"), ("a", "prod"), ("a", "dev"), ("c", "dev")] {
        tx.put_config(&config(f, e, FlagState::Disabled, "alice")).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin_write().await.unwrap();
    let flags_of = |configs: &[StoredConfig]| configs.iter().map(|c| c.flag.clone()).collect::<Vec<_>>();
    assert_eq!(flags_of(&tx.configs("prod").await.unwrap()), ["a", "b"]);
    assert_eq!(flags_of(&tx.configs("dev").await.unwrap()), ["a", "c"]);
    let envs: Vec<String> = tx.flag_configs("a").await.unwrap().into_iter().map(|c| c.environment).collect();
    assert_eq!(envs, ["dev", "prod"]);
    assert_eq!(tx.config("a", "staging").await.unwrap(), ConfigLookup::NoEnvironment);
    assert_eq!(tx.config("missing", "prod").await.unwrap(), ConfigLookup::NoFlag);
    assert_eq!(
        tx.config("unconfigured", "prod").await.unwrap(),
        ConfigLookup::Found {
            flag: Box::new(StoredFlag { version: seq, ..flag("unconfigured", "", T0) }),
            config: None
        }
    );
    assert_eq!(
        tx.config("a", "prod").await.unwrap(),
        ConfigLookup::Found {
            flag: Box::new(StoredFlag { version: seq, ..flag("a", "", T0) }),
            config: Some(Box::new(StoredConfig { version: seq, ..config("a", "prod", FlagState::Disabled, "alice") })),
        }
    );

    let enabled = StoredConfig { updated_at: T0 + 9, ..config("a", "prod", FlagState::Enabled, "bob") };
    tx.put_config(&enabled).await.unwrap();
    tx.put_config(&enabled).await.unwrap();
    let next = tx.seq();
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.config("a", "prod").await.unwrap().into_config(), Some(StoredConfig { version: next, ..enabled }));
    assert_eq!(
        read.config("a", "dev").await.unwrap().into_config().unwrap().version,
        seq,
        "other environments untouched"
    );
    assert_eq!(read.configs("prod").await.unwrap().len(), 2);
}

async fn segments_are_put_listed_and_deleted(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    let seq = tx.seq();
    tx.put_segment(&segment("prod", "pilot", &["1", "2"])).await.unwrap();
    tx.put_segment(&segment("prod", "beta-testers", &["3"])).await.unwrap();
    tx.put_segment(&segment("dev", "pilot", &["9"])).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_write().await.unwrap();
    let listed: Vec<String> = tx.segments("prod").await.unwrap().into_iter().map(|s| s.segment.key).collect();
    assert_eq!(listed, ["beta-testers", "pilot"]);
    assert_eq!(
        tx.segment("prod", "pilot").await.unwrap().unwrap(),
        StoredSegment { version: seq, ..segment("prod", "pilot", &["1", "2"]) }
    );
    assert!(tx.segment("staging", "pilot").await.unwrap().is_none());
    tx.put_segment(&segment("prod", "pilot", &["4"])).await.unwrap();
    tx.delete_segment("prod", "beta-testers").await.unwrap();
    tx.delete_segment("prod", "missing").await.unwrap();
    let next = tx.seq();
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    assert_eq!(
        read.segments("prod").await.unwrap(),
        [StoredSegment { version: next, ..segment("prod", "pilot", &["4"]) }]
    );
    assert_eq!(read.segment("dev", "pilot").await.unwrap().unwrap().segment.companies, ["9"]);
}

fn rich_definition(key: &str) -> FlagDefinition {
    // Parsed from text, not `json!`, whose map would sort the variants.
    let text = r#"{
        "key": "KEY",
        "description": "Größe, 价格 and 🚀 — \"quoted\" 'single' \\ back\\slash\nnew line",
        "owner": "team-ünïcode",
        "tags": ["portal", "çà", "🙂"],
        "variants": {
            "zeta": {"layout": "grid", "columns": 3, "ratio": 0.75, "nested": [1, "two", null, true]},
            "alpha": {"layout": "list", "columns": 1, "ratio": 1.5e-3, "nested": []},
            "off": {"layout": "none", "columns": 0, "ratio": -2.25, "nested": [{"deep": {"er": "x"}}]}
        },
        "offVariant": "off",
        "onVariant": "zeta",
        "metadata": {"jira": "FLAG-1", "weight": 12.345, "big": 9007199254740993, "emoji": "🎌"}
    }"#;
    serde_json::from_str(&text.replace("KEY", key)).unwrap()
}

fn rich_config() -> EnvironmentConfig {
    serde_json::from_value(json!({
        "state": "ENABLED",
        "allow": ["42", 7],
        "deny": ["13"],
        "rules": [
            {"name": "pilots", "segments": ["pilot", "beta-testers"], "serve": {"variant": "zeta"}},
            {"companies": ["1", 2, "3"], "serve": {"variant": "alpha"}},
            {"name": "pro plans in Zürich",
             "conditions": [
                {"attribute": "plan", "op": "in", "value": ["pro", "enterprise"]},
                {"attribute": "city", "op": "equals", "value": "Zürich"},
                {"attribute": "seats", "op": ">=", "value": 10},
                {"attribute": "version", "op": "semver_gte", "value": "1.2.3-rc.1"},
                {"attribute": "$now", "op": "after", "value": "2024-01-01T00:00:00Z"},
                {"attribute": "email", "op": "matches", "value": "^[^@]+@example\\.(com|org)$"}
             ],
             "serve": {"rollout": {"variants": [{"variant": "zeta", "weight": 12.5},
                                                 {"variant": "alpha", "weight": 33.333},
                                                 {"variant": "off", "weight": 54.167}],
                                    "bucketBy": "userId"}}},
            {"logic": {"and": [{"==": [{"var": "country"}, "日本"]}, {"<": [{"var": "age"}, 30]}]},
             "serve": {"targeting": {"if": [{"in": ["@", {"var": "email"}]}, "zeta", null]}}}
        ],
        "fallthrough": {"rollout": {"variants": [{"variant": "zeta", "weight": 0.001},
                                                  {"variant": "off", "weight": 99.999}]}}
    }))
    .unwrap()
}

fn rich_segment() -> Segment {
    serde_json::from_value(json!({
        "key": "pilot",
        "description": "Kunden in der Pilotphase — 試験",
        "companies": ["42", 77, "🚀-co"],
        "conditions": [{"attribute": "region", "op": "not_in", "value": ["eu-west", "ap-south"]},
                       {"attribute": "name", "op": "starts_with", "value": ["Ä", "Ö"]}]
    }))
    .unwrap()
}

async fn documents_round_trip_exactly(store: Arc<dyn Store>, _url: String) {
    // Keys outside the flag-key pattern too: the store must not care, and MySQL must
    // keep four-byte characters (utf8mb4).
    let key = "ключ-🚀";
    let mut tx = store.begin_write().await.unwrap();
    let seq = tx.seq();
    let stored = StoredFlag { definition: rich_definition(key), version: seq, created_at: T0, updated_at: T0 + 1 };
    tx.put_flag(&stored).await.unwrap();
    tx.insert_environment(&env("prödüction")).await.unwrap();
    let config = StoredConfig {
        flag: key.to_owned(),
        environment: "prödüction".to_owned(),
        config: rich_config(),
        version: seq,
        updated_at: T0 + 2,
        updated_by: "Zoë 👩‍💻".to_owned(),
    };
    tx.put_config(&config).await.unwrap();
    let segment = StoredSegment { environment: "prödüction".to_owned(), segment: rich_segment(), version: seq };
    tx.put_segment(&segment).await.unwrap();
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    let back = read.flag(key).await.unwrap().unwrap();
    assert_eq!(back, stored);
    let variant_order: Vec<&str> = back.definition.variants.keys().map(String::as_str).collect();
    assert_eq!(variant_order, ["zeta", "alpha", "off"], "variant order is kept");
    assert_eq!(read.config(key, "prödüction").await.unwrap().into_config(), Some(config.clone()));
    assert_eq!(read.segment("prödüction", "pilot").await.unwrap().unwrap(), segment);
    assert!(matches!(config.config.fallthrough, Some(Serve::Rollout(_))));
}

/// The largest audit document the service writes (a deleted flag's configurations, capped
/// at one page of the audit log) is stored and read back whole: on MySQL within one
/// statement (`max_allowed_packet`) and a `MEDIUMTEXT` column.
async fn an_audit_document_as_large_as_a_page_fits(store: Arc<dyn Store>, _url: String) {
    let padding = "x".repeat(store::MAX_AUDIT_PAGE_BYTES - r#"{"definition":""}"#.len());
    let before = json!({"definition": padding});
    assert_eq!(serde_json::to_vec(&before).unwrap().len(), store::MAX_AUDIT_PAGE_BYTES);
    let mut tx = store.begin_write().await.unwrap();
    let mut event = event(tx.seq(), "alice", T0, None, Some("big"));
    (event.action, event.before, event.after) = ("flag.delete".to_owned(), Some(before), None);
    tx.append_audit(&event).await.unwrap();
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    let audit = read.audit(&AuditQuery { limit: 1, ..AuditQuery::default() }).await.unwrap();
    assert_eq!((&audit.events[0].before, &audit.events[0].after), (&event.before, &None));
}

async fn documents_up_to_the_limit_fit_and_larger_ones_are_refused(store: Arc<dyn Store>, _url: String) {
    // Far past MySQL's 64 KiB TEXT; before and after together past 1 MiB in one statement.
    let mut config = config("big", "prod", FlagState::Enabled, "alice");
    let empty = serde_json::to_vec(&config.config).unwrap().len() + r#""allow":[],"#.len();
    // Each id takes its 14 characters, two quotes and a comma: as many as fit.
    let fit = (store::MAX_DOCUMENT_BYTES - empty + 1) / 17;
    config.config.allow = (0..fit).map(|n| format!("company-{n:06}")).collect();
    let len = serde_json::to_vec(&config.config).unwrap().len();
    assert!(store::MAX_DOCUMENT_BYTES - 17 < len && len <= store::MAX_DOCUMENT_BYTES, "{len}");
    let mut tx = store.begin_write().await.unwrap();
    config.version = tx.seq();
    tx.insert_environment(&env("prod")).await.unwrap();
    tx.put_flag(&flag("big", "", T0)).await.unwrap();
    tx.put_config(&config).await.unwrap();
    let mut event = event(tx.seq(), "alice", T0, Some("prod"), Some("big"));
    event.before = Some(serde_json::to_value(&config.config).unwrap());
    event.after = event.before.clone();
    tx.append_audit(&event).await.unwrap();
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    let stored = read.config("big", "prod").await.unwrap().into_config().unwrap();
    assert_eq!(stored.config.allow, config.config.allow);
    let audit = read.audit(&AuditQuery { limit: 1, ..AuditQuery::default() }).await.unwrap();
    assert_eq!((&audit.events[0].before, &audit.events[0].after), (&event.before, &event.after));
    drop(read);

    let mut over = config.clone();
    over.config.allow.push("one-company-too-many".into());
    let mut tx = store.begin_write().await.unwrap();
    let refused = tx.put_config(&over).await;
    assert!(
        matches!(&refused, Err(StoreError::TooLarge { what, .. }) if what == "configuration of flag `big` in `prod`"),
        "{refused:?}"
    );
    let mut segment = segment("prod", "all", &[]);
    segment.segment.companies = over.config.allow.clone();
    let refused = tx.put_segment(&segment).await;
    assert!(
        matches!(&refused, Err(StoreError::TooLarge { what, .. }) if what == "segment `all` in `prod`"),
        "{refused:?}"
    );
    drop(tx);
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.config("big", "prod").await.unwrap().into_config().unwrap().config, config.config);
    assert!(read.segment("prod", "all").await.unwrap().is_none());
}

async fn a_document_over_the_limit_may_change_without_growing(store: Arc<dyn Store>, url: String) {
    // Stored before the limit existed: the kill switch must still work, the list not grow.
    let mut config = config("big", "prod", FlagState::Enabled, "alice");
    let mut tx = store.begin_write().await.unwrap();
    config.version = tx.seq();
    tx.insert_environment(&env("prod")).await.unwrap();
    tx.put_flag(&flag("big", "", T0)).await.unwrap();
    tx.put_config(&config).await.unwrap();
    tx.commit().await.unwrap();
    config.config.allow = (0..100_000).map(|n| format!("company-{n:06}")).collect();
    let oversized = serde_json::to_string(&config.config).unwrap();
    assert!(oversized.len() > store::MAX_DOCUMENT_BYTES);
    let mut raw = connect_raw(&url).await;
    raw.execute(format!("UPDATE configs SET config = '{oversized}' WHERE flag = 'big'").as_str()).await.unwrap();
    raw.close().await.unwrap();

    let mut disabled = config.clone();
    disabled.config.state = FlagState::Disabled;
    let mut tx = store.begin_write().await.unwrap();
    tx.put_config(&disabled).await.unwrap();
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.config("big", "prod").await.unwrap().into_config().unwrap().config, disabled.config);
    drop(read);

    let mut grown = disabled.clone();
    grown.config.deny = (0..100).map(|n| format!("company-{n:06}")).collect();
    let mut tx = store.begin_write().await.unwrap();
    let refused = tx.put_config(&grown).await;
    assert!(
        matches!(&refused, Err(StoreError::TooLarge { what, .. }) if what == "configuration of flag `big` in `prod`"),
        "{refused:?}"
    );
}

async fn corrupt_documents_are_reported(store: Arc<dyn Store>, url: String) {
    let mut raw = connect_raw(&url).await;
    for statement in [
        "INSERT INTO flags VALUES ('broken', '{\"key\": \"broken\", \"unknownField\": 1}', 1, 0, 0)",
        "INSERT INTO environments (name, created_at, metadata) VALUES ('prod', 0, '[\"not an object\"]')",
        "INSERT INTO configs VALUES ('broken', 'prod', '{not json', 1, 0, 'x')",
        "INSERT INTO segments VALUES ('prod', 'broken', '[]', 1)",
        "INSERT INTO tokens VALUES ('t', 'n', 'superuser', NULL, 'h', 0, NULL)",
    ] {
        raw.execute(statement).await.unwrap();
    }
    raw.close().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    let corrupt = |r: Result<(), StoreError>| match r {
        Err(StoreError::Corrupt { what, .. }) => what,
        other => panic!("expected a corrupt-document error, got {other:?}"),
    };
    assert_eq!(corrupt(read.flag("broken").await.map(drop)), "flag definition");
    assert_eq!(corrupt(read.flags().await.map(drop)), "flag definition");
    assert_eq!(corrupt(read.config("broken", "prod").await.map(drop)), "environment configuration");
    assert_eq!(corrupt(read.segments("prod").await.map(drop)), "segment");
    assert_eq!(corrupt(read.environment_metadata("prod").await.map(drop)), "flag-set metadata");
    assert_eq!(corrupt(read.token_by_hash("h").await.map(drop)), "token role");
    drop(read);

    // A server starting on such a database tells its operator what is wrong with it.
    let refused = Service::start(store, Some("adm")).await.err().map(|e| e.for_operator());
    assert!(refused.as_deref().is_some_and(|m| m.contains("unreadable")), "{refused:?}");
}

async fn audit_is_filtered_and_paged_newest_first(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    let seq = tx.seq();
    let events = [
        event(seq, "alice", T0, Some("prod"), Some("f1")),
        event(seq, "bob", T0 + 10, Some("dev"), Some("f1")),
        AuditEvent {
            action: "segment.update".to_owned(),
            segment: Some("pilot".to_owned()),
            before: Some(json!({"companies": ["1"]})),
            after: None,
            reason: Some("pilot grows — ✓".to_owned()),
            actor_token: Some("5f0c9e2a7b3d1e84".to_owned()),
            ..event(seq, "alice", T0 + 20, Some("prod"), None)
        },
        AuditEvent { action: "token.create".to_owned(), after: None, ..event(seq, "carol", T0 + 30, None, None) },
        event(seq, "bob", T0 + 40, Some("prod"), Some("f2")),
    ];
    let mut ids = Vec::new();
    for e in &events {
        ids.push(tx.append_audit(e).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    let query = |q: AuditQuery| AuditQuery { limit: q.limit.max(100), ..q };
    let mut ids_of = async |q: AuditQuery| -> Vec<i64> {
        read.audit(&query(q)).await.unwrap().events.into_iter().map(|e| e.id).collect()
    };
    let [a, b, c, d, e] = ids[..] else { panic!("five ids") };
    assert_eq!(ids_of(AuditQuery::default()).await, [e, d, c, b, a]);
    assert_eq!(ids_of(AuditQuery { flag: Some("f1".into()), ..AuditQuery::default() }).await, [b, a]);
    assert_eq!(ids_of(AuditQuery { environment: Some("prod".into()), ..AuditQuery::default() }).await, [e, c, a]);
    assert_eq!(ids_of(AuditQuery { actor: Some("alice".into()), ..AuditQuery::default() }).await, [c, a]);
    assert_eq!(ids_of(AuditQuery { since: Some(T0 + 20), ..AuditQuery::default() }).await, [e, d, c]);
    assert_eq!(ids_of(AuditQuery { before_id: Some(d), ..AuditQuery::default() }).await, [c, b, a]);
    let combined = AuditQuery {
        environment: Some("prod".into()),
        actor: Some("bob".into()),
        since: Some(T0),
        before_id: Some(e + 1),
        flag: Some("f2".into()),
        limit: 100,
    };
    assert_eq!(ids_of(combined).await, [e]);
    assert!(ids_of(AuditQuery { flag: Some("nope".into()), ..AuditQuery::default() }).await.is_empty());
    // MySQL and MariaDB compare `f1 ` equal to `f1`: still no such flag, actor or environment.
    assert!(ids_of(AuditQuery { flag: Some("f1 ".into()), ..AuditQuery::default() }).await.is_empty());
    assert!(ids_of(AuditQuery { actor: Some("alice ".into()), ..AuditQuery::default() }).await.is_empty());
    assert!(ids_of(AuditQuery { environment: Some("prod ".into()), ..AuditQuery::default() }).await.is_empty());

    // Paging: two at a time, each page continuing below the last id seen, as long as it
    // says there are more.
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = read.audit(&AuditQuery { before_id: cursor, limit: 2, ..AuditQuery::default() }).await.unwrap();
        pages.push(page.events.iter().map(|e| e.id).collect::<Vec<_>>());
        cursor = page.events.last().map(|e| e.id);
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, [vec![e, d], vec![c, b], vec![a]]);
    let exact = read.audit(&AuditQuery { before_id: Some(c), limit: 2, ..AuditQuery::default() }).await.unwrap();
    assert!(!exact.more, "the last two events fill the page and nothing is older");

    let all = read.audit(&AuditQuery { limit: 10, ..AuditQuery::default() }).await.unwrap();
    let expected: Vec<AuditEvent> =
        events.iter().zip(&ids).rev().map(|(event, id)| AuditEvent { id: *id, ..event.clone() }).collect();
    assert_eq!(all.events, expected, "every field round-trips, NULLs included");
    assert!(!all.more);
    assert!(read.audit(&AuditQuery { limit: 0, ..AuditQuery::default() }).await.unwrap().events.is_empty());
}

async fn audit_limit_is_capped(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    for i in 0..1005 {
        tx.append_audit(&event(tx.seq(), "bulk", T0 + i, None, None)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    let page = read.audit(&AuditQuery { limit: u32::MAX, ..AuditQuery::default() }).await.unwrap();
    assert_eq!((page.events.len(), page.more), (1000, true));
    assert_eq!(page.events[0].at, T0 + 1004);
}

async fn audit_pages_end_once_their_documents_pass_the_page_size(store: Arc<dyn Store>, _url: String) {
    // Each event carries 1,000,000 bytes of before and after: a page takes events until
    // it is past 8 MiB, nine of them.
    let doc = json!({"x": "a".repeat(500_000 - r#"{"x":""}"#.len())});
    assert_eq!(serde_json::to_string(&doc).unwrap().len(), 500_000);
    let mut tx = store.begin_write().await.unwrap();
    for i in 0..15 {
        let event = event(tx.seq(), "bulk", T0 + i, None, None);
        tx.append_audit(&AuditEvent { before: Some(doc.clone()), after: Some(doc.clone()), ..event }).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    let first = read.audit(&AuditQuery { limit: 100, ..AuditQuery::default() }).await.unwrap();
    assert_eq!((first.events.len(), first.more), (9, true));
    let rest = AuditQuery { limit: 100, before_id: first.events.last().map(|e| e.id), ..AuditQuery::default() };
    let rest = read.audit(&rest).await.unwrap();
    assert_eq!((rest.events.len(), rest.more), (6, false));
    assert_eq!(rest.events[0].before.as_ref(), Some(&doc));
}

async fn tokens_are_found_revoked_and_listed_newest_first(store: Arc<dyn Store>, _url: String) {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_token(&token("t-old", Role::Admin, None, T0)).await.unwrap();
    tx.insert_token(&token("t-new", Role::Evaluate, Some("prod"), T0 + 2)).await.unwrap();
    tx.insert_token(&token("t-mid", Role::Read, None, T0 + 1)).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_write().await.unwrap();
    let ids: Vec<String> = tx.tokens().await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["t-new", "t-mid", "t-old"]);
    let found = tx.token_by_hash(&token("t-new", Role::Evaluate, None, 0).hash).await.unwrap().unwrap();
    assert_eq!(found, token("t-new", Role::Evaluate, Some("prod"), T0 + 2));
    assert!(tx.token_by_hash("no-such-hash").await.unwrap().is_none());
    assert!(tx.revoke_token("t-old", T0 + 100).await.unwrap());
    assert!(!tx.revoke_token("t-missing", T0 + 100).await.unwrap());
    tx.commit().await.unwrap();

    let mut read = store.begin_read().await.unwrap();
    let old = read.token_by_hash(&token("t-old", Role::Admin, None, 0).hash).await.unwrap().unwrap();
    assert_eq!(old.revoked_at, Some(T0 + 100), "a revoked token is still found, marked");
    assert_eq!(read.tokens().await.unwrap()[2], old);
    drop(read);

    let mut tx = store.begin_write().await.unwrap();
    let clash = Token { id: "t-other".into(), ..token("t-old", Role::Read, None, T0) };
    assert!(tx.insert_token(&clash).await.is_err(), "hashes are unique");
}

async fn concurrent_writes_serialise(store: Arc<dyn Store>, url: String) {
    const TASKS: usize = 8;
    const WRITES: usize = 25;
    let mut tx = store.begin_write().await.unwrap();
    tx.put_flag(&flag("counter", "0", T0)).await.unwrap();
    tx.commit().await.unwrap();
    let start = store.current_seq().await.unwrap();

    // Half the writers go through a second store, as another process would: the
    // database itself must serialise them, not only an in-process lock.
    let second = store::connect(&url).await.unwrap();
    let handles: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = if task % 2 == 0 { Arc::clone(&store) } else { Arc::clone(&second) };
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for _ in 0..WRITES {
                    seqs.push(increment(&*store, &format!("task-{task}")).await);
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for handle in handles {
        seqs.extend(handle.await.unwrap());
    }

    let total = (TASKS * WRITES) as i64;
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.flag("counter").await.unwrap().unwrap().definition.description, total.to_string());
    assert_eq!(store.current_seq().await.unwrap(), start + total);
    seqs.sort_unstable();
    assert_eq!(seqs, (start + 1..=start + total).collect::<Vec<_>>(), "every write got its own number");
    let audit = read.audit(&AuditQuery { limit: 1000, ..AuditQuery::default() }).await.unwrap();
    assert_eq!(audit.events.len() as i64, total);
}

/// One read-modify-write of the counter flag, returning the write's sequence number.
async fn increment(store: &dyn Store, actor: &str) -> i64 {
    let mut tx = store.begin_write().await.unwrap();
    let mut counter = tx.flag("counter").await.unwrap().unwrap();
    let value: i64 = counter.definition.description.parse().unwrap();
    counter.definition.description = (value + 1).to_string();
    tx.put_flag(&counter).await.unwrap();
    let seq = tx.seq();
    tx.append_audit(&AuditEvent { before: Some(Value::from(value)), ..event(seq, actor, T0, None, Some("counter")) })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    seq
}

async fn ping_and_current_seq(store: Arc<dyn Store>, _url: String) {
    store.ping().await.unwrap();
    let seq = store.current_seq().await.unwrap();
    assert_eq!(seq, store.begin_read().await.unwrap().seq());
    store.begin_write().await.unwrap().commit().await.unwrap();
    assert_eq!(store.current_seq().await.unwrap(), seq + 1);
}

async fn the_database_clock_reads_in_unix_milliseconds(store: Arc<dyn Store>, _url: String) {
    // The test databases run on this host, so their clock is this host's.
    let local = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let before = i64::try_from(local()).unwrap();
    let database = store.clock_ms().await.unwrap();
    let after = i64::try_from(local()).unwrap();
    assert!((before - 1_000..=after + 1_000).contains(&database), "{before} ≤ {database} ≤ {after}, ±1 s");
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["redis://localhost", "flagd.db", "sqlite::memory:", "sqlite://?mode=memory", "http://x/y"] {
        match store::connect(url).await {
            Err(StoreError::UnsupportedUrl(u)) => assert_eq!(u, url),
            Err(e) => panic!("{url}: expected UnsupportedUrl, got {e}"),
            Ok(_) => panic!("{url}: expected UnsupportedUrl, got a store"),
        }
    }
}

#[tokio::test]
async fn sqlite_creates_its_directory_and_uses_wal() {
    let dir = std::env::temp_dir().join(format!("flagd-store-dirs-{:016x}", rand::random::<u64>()));
    let path = dir.join("nested").join("deeper").join("flagd.db");
    for url in [format!("sqlite:{}", path.display()), format!("sqlite://{}", path.display())] {
        let store = store::connect(&url).await.unwrap();
        assert!(path.exists(), "{url} created the file");
        let mut raw = connect_raw(&url).await;
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&mut raw).await.unwrap();
        assert_eq!(mode, "wal");
        raw.close().await.unwrap();
        drop(store);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn heartbeats_are_recorded_updated_and_forgotten(store: Arc<dyn Store>, _url: String) {
    let beat = |id: &str, applied_seq: i64, last_seen: i64| Replica {
        id: id.to_owned(),
        address: format!("10.0.0.1:{}", 8000 + applied_seq),
        applied_seq,
        started_at: T0,
        last_seen,
    };
    store.heartbeat(&beat("a", 1, T0)).await.unwrap();
    store.heartbeat(&beat("b", 1, T0 + 10)).await.unwrap();
    // The same heartbeat twice (MySQL reports an unchanged row as not updated) is fine.
    store.heartbeat(&beat("b", 1, T0 + 10)).await.unwrap();
    store.heartbeat(&beat("a", 7, T0 + 20)).await.unwrap();
    assert_eq!(store.replicas(T0).await.unwrap(), vec![beat("a", 7, T0 + 20), beat("b", 1, T0 + 10)]);
    assert_eq!(store.replicas(T0 + 15).await.unwrap(), vec![beat("a", 7, T0 + 20)], "stale replicas are left out");
    store.remove_replica("a").await.unwrap();
    assert_eq!(store.replicas(T0).await.unwrap(), vec![beat("b", 1, T0 + 10)]);
    // Forgetting by hand, in a write, keeps a replica heard from at or after the cut-off.
    store.heartbeat(&beat("z", 2, T0 + 10)).await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.forget_silent_replica("z", T0 + 10).await.unwrap(), None, "heard from at the cut-off");
    assert_eq!(tx.forget_silent_replica("nope", T0 + 99).await.unwrap(), None);
    assert_eq!(tx.forget_silent_replica("z", T0 + 11).await.unwrap(), Some(beat("z", 2, T0 + 10)));
    assert_eq!(tx.forget_silent_replica("z", T0 + 11).await.unwrap(), None, "forgotten once");
    tx.commit().await.unwrap();
    assert_eq!(store.replicas(T0).await.unwrap(), vec![beat("b", 1, T0 + 10)]);

    // A replica killed without a goodbye is deleted once silent for longer than the store
    // remembers, when another joins: crash loops do not grow the table.
    let later = T0 + 10 + store::FORGET_REPLICAS_AFTER_MS + 1;
    store.heartbeat(&beat("c", 9, later)).await.unwrap();
    assert_eq!(store.replicas(0).await.unwrap(), vec![beat("c", 9, later)]);
}

/// The statements with which a session locks `table` against every other, as a schema
/// change does, on MariaDB/MySQL or PostgreSQL.
fn table_lock(url: &str, table: &str) -> Vec<String> {
    if url.starts_with("postgres") {
        vec!["BEGIN".to_owned(), format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")]
    } else {
        vec![format!("LOCK TABLES {table} WRITE")]
    }
}

/// A session of its own that has run `statements`, holding their locks until closed.
async fn hold(url: &str, statements: &[String]) -> AnyConnection {
    let mut holder = connect_raw(url).await;
    for statement in statements {
        holder.execute(statement.as_str()).await.unwrap();
    }
    holder
}

/// Fails unless `e` is what the API answers 503 `DATABASE_BUSY`: a wait that ran out.
fn assert_busy(e: StoreError, what: &str) {
    let shown = e.to_string();
    assert!(
        matches!(flagd_server::error::ApiError::from(e), flagd_server::error::ApiError::Busy(_)),
        "{what}: not a lock wait that ran out: {shown}"
    );
}

/// With the `replicas` table locked by another session (`LOCK TABLES`, an `ALTER TABLE`
/// in life), heartbeats and cluster-view reads fail within seconds, as busy, instead of
/// waiting for as long as the lock lasts; and many such reads at once leave writes their
/// connections. Once the lock lifts, heartbeats are recorded again.
async fn a_lock_on_the_replicas_table_fails_bookkeeping_not_writes(store: Arc<dyn Store>, url: String) {
    use flagd_server::error::ApiError;
    use std::time::Duration;
    let beat =
        |id: &str| Replica { id: id.to_owned(), address: String::new(), applied_seq: 1, started_at: T0, last_seen: T0 };
    store.heartbeat(&beat("a")).await.unwrap();
    let holder = hold(&url, &table_lock(&url, "replicas")).await;
    let waiting = if url.starts_with("postgres") {
        "SELECT count(*) FROM pg_locks WHERE relation = 'replicas'::regclass AND NOT granted"
    } else {
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE DB = DATABASE() AND STATE = 'Waiting for table metadata lock'"
    };
    let bounded = Duration::from_secs(10);
    fn busy<T>(outcome: Result<Result<T, StoreError>, tokio::time::error::Elapsed>, what: &str) {
        match outcome {
            Ok(Err(e)) => assert_busy(e, what),
            Ok(Ok(_)) => panic!("{what} went through a locked table"),
            Err(_) => panic!("{what} still waits on the lock after 10 s"),
        }
    }
    busy(tokio::time::timeout(bounded, store.heartbeat(&beat("b"))).await, "a heartbeat");
    busy(tokio::time::timeout(bounded, store.replicas(0)).await, "a cluster-view read");

    // More readers than the pool has connections, as console polls could be.
    let readers: Vec<_> = (0..24)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { tokio::time::timeout(bounded, store.replicas(0)).await })
        })
        .collect();
    let mut watcher = connect_raw(&url).await;
    let until = tokio::time::Instant::now() + bounded;
    while sqlx::query_scalar::<_, i64>(waiting).fetch_one(&mut watcher).await.unwrap() < 4 {
        assert!(tokio::time::Instant::now() < until, "the readers never waited on the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seq = store.current_seq().await.unwrap();
    store.begin_write().await.unwrap().commit().await.unwrap();
    assert_eq!(store.current_seq().await.unwrap(), seq + 1, "a write went through beside the waiting readers");
    for reader in readers {
        match reader.await.unwrap() {
            // Busy, or no connection free for it while the others waited.
            Ok(Err(e)) => assert!(matches!(ApiError::from(e), ApiError::Busy(_) | ApiError::Unavailable(_))),
            Ok(Ok(_)) => panic!("a read went through a locked table"),
            Err(_) => panic!("a read still waits on the lock after {bounded:?}"),
        }
    }
    watcher.close().await.unwrap();

    holder.close().await.unwrap();
    store.heartbeat(&beat("b")).await.unwrap();
    let ids: Vec<String> = store.replicas(0).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["a", "b"]);
}

/// A lock held elsewhere, on a table (a schema change, `LOCK TABLES`) or on the
/// change-sequence row every write takes its turn at (a transaction left open by hand),
/// fails a request as busy once its lock wait (25 s) has passed, instead of holding it and
/// its connection for as long as the lock lasts; the failed write leaves nothing behind.
async fn a_lock_held_elsewhere_fails_a_request_after_the_lock_wait(store: Arc<dyn Store>, url: String) {
    use std::time::Duration;
    use tokio::time::Instant;
    let on_the_row = ["BEGIN".to_owned(), "UPDATE change_seq SET seq = seq WHERE id = 1".to_owned()];
    let holders = [hold(&url, &table_lock(&url, "flags")).await, hold(&url, &on_the_row).await];
    let seq = store.current_seq().await.unwrap();
    // The read needs the locked table; the write first needs its turn at the locked row.
    let read = async {
        let started = Instant::now();
        let outcome = async { store.begin_read().await?.flag("blocked").await.map(drop) }.await;
        (outcome, started.elapsed())
    };
    let write = async {
        let started = Instant::now();
        let outcome = async {
            let mut tx = store.begin_write().await?;
            tx.put_flag(&flag("blocked", "", T0)).await?;
            tx.commit().await
        }
        .await;
        (outcome, started.elapsed())
    };
    let bound = Duration::from_secs(40);
    let outcomes = tokio::time::timeout(bound, async { tokio::join!(read, write) }).await;
    for holder in holders {
        holder.close().await.unwrap();
    }
    let Ok((read, write)) = outcomes else { panic!("a request still waits on a lock held elsewhere after {bound:?}") };
    for (what, (outcome, waited)) in [("a read under a table lock", read), ("a write under a row lock", write)] {
        match outcome {
            Err(e) => assert_busy(e, what),
            Ok(()) => panic!("{what} went through"),
        }
        assert!(waited >= Duration::from_secs(20), "{what} gave up after {waited:?}, before the 25 s lock wait");
    }
    assert_eq!(store.current_seq().await.unwrap(), seq, "the failed write advanced the sequence");
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.flag("blocked").await.unwrap(), None, "the failed write left its flag");
    drop(read);
    // Once the locks are gone the same write goes through.
    let mut tx = store.begin_write().await.unwrap();
    tx.put_flag(&flag("blocked", "", T0)).await.unwrap();
    tx.commit().await.unwrap();
}

/// A write waits its turn behind another still open (an import of many flags holds the
/// turn until it commits) for as long as a request waits for a lock (25 s), then fails as
/// busy rather than leave its caller without an answer; the turn is free again after.
async fn a_write_waits_its_turn_for_at_most_the_lock_wait(store: Arc<dyn Store>, _url: String) {
    use std::time::Duration;
    use tokio::time::Instant;
    let seq = store.current_seq().await.unwrap();
    let held = store.begin_write().await.unwrap();
    let started = Instant::now();
    let bound = Duration::from_secs(40);
    let outcome = tokio::time::timeout(bound, store.begin_write()).await;
    let waited = started.elapsed();
    drop(held);
    match outcome {
        Ok(Err(e)) => assert_busy(e, "a write behind one still open"),
        Ok(Ok(_)) => panic!("a second write began beside one still open"),
        Err(_) => panic!("a write still waits its turn after {bound:?}"),
    }
    assert!(waited >= Duration::from_secs(20), "gave up after {waited:?}, before the 25 s wait");
    store.begin_write().await.unwrap().commit().await.unwrap();
    assert_eq!(store.current_seq().await.unwrap(), seq + 1, "only the last write committed");
}

async fn changes_since_name_what_later_writes_touched(store: Arc<dyn Store>, _url: String) {
    let mut seqs = Vec::new();
    for environment in [Some("staging"), Some("production"), None, Some("production")] {
        let mut tx = store.begin_write().await.unwrap();
        tx.append_audit(&event(tx.seq(), "alice", T0, environment, Some("portal"))).await.unwrap();
        seqs.push(tx.seq());
        tx.commit().await.unwrap();
    }
    let mut read = store.begin_read().await.unwrap();
    let scope = |environment: Option<&str>| ChangeScope {
        environment: environment.map(str::to_owned),
        action: "config.update".to_owned(),
    };
    let mut since_first = read.changes_since(seqs[0]).await.unwrap();
    since_first.sort_by(|a, b| a.environment.cmp(&b.environment));
    assert_eq!(since_first, vec![scope(None), scope(Some("production"))], "distinct, later writes only");
    assert_eq!(read.changes_since(seqs[3]).await.unwrap(), vec![]);
}

/// Replicas of one deployment start at the same moment, each running the migrations. On
/// MariaDB sqlx's own migration lock is no lock at all, and MySQL's DDL is not
/// transactional: replicas racing there died, and could leave a migration marked
/// half-applied, which failed every later start.
async fn stores_opened_together_on_a_fresh_database_all_migrate_it(backend: Backend) {
    const ROUNDS: usize = 5;
    const STORES: usize = 6;
    for round in 0..ROUNDS {
        let Some(scratch) = Scratch::create(backend).await else { return };
        let url = scratch.url().to_owned();
        let opening: Vec<_> = (0..STORES)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { store::connect(&url).await.map(drop) })
            })
            .collect();
        let mut failures = Vec::new();
        for opened in opening {
            if let Err(e) = opened.await.unwrap() {
                failures.push(e.to_string());
            }
        }
        // A later start must find the schema whole, not half-applied.
        let later = match store::connect(&url).await {
            Ok(store) => store.current_seq().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        scratch.remove().await;
        assert!(
            failures.is_empty(),
            "{backend:?}, round {round}: {} of {STORES} failed: {failures:#?}",
            failures.len()
        );
        assert_eq!(later, Ok(0), "{backend:?}, round {round}: a start after them");
    }
}

/// The migrations of `backend` older than `version`, as a migrator of their own.
async fn migrations_before(backend: Backend, version: i64) -> (sqlx::migrate::Migrator, TempDir) {
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::MySql => "mysql",
        Backend::Postgres => "postgres",
    };
    let all = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations").join(name);
    let older = TempDir::new("flagd-migrations");
    for entry in std::fs::read_dir(&all).unwrap() {
        let file = entry.unwrap().path();
        let stem = file.file_name().unwrap().to_str().unwrap().to_owned();
        if stem.split('_').next().unwrap().parse::<i64>().unwrap() < version {
            std::fs::copy(&file, older.0.join(&stem)).unwrap();
        }
    }
    let mut migrator = sqlx::migrate::Migrator::new(older.0.clone()).await.unwrap();
    migrator.set_locking(false);
    (migrator, older)
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{:016x}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database whose environments were written before flag-set metadata existed: after the
/// upgrade each reads as having none, and can be given some.
async fn environments_from_before_flag_set_metadata_have_none_after_the_upgrade(backend: Backend) {
    const METADATA_MIGRATION: i64 = 20261206000000;
    let Some(scratch) = Scratch::create(backend).await else { return };
    let url = scratch.url().to_owned();
    let older_url = match &scratch {
        Scratch::File { path, .. } => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            format!("{url}?mode=rwc")
        }
        Scratch::Server { .. } => url.clone(),
    };
    let outcome = tokio::spawn(async move {
        let (older, _files) = migrations_before(backend, METADATA_MIGRATION).await;
        let mut conn = connect_raw(&older_url).await;
        older.run_direct(&mut conn).await.unwrap();
        conn.execute("INSERT INTO environments (name, created_at) VALUES ('production', 1)").await.unwrap();
        conn.close().await.unwrap();

        let upgraded = store::connect(&url).await.unwrap();
        let mut tx = upgraded.begin_write().await.unwrap();
        assert_eq!(tx.environment_metadata("production").await.unwrap(), Some(Map::new()));
        let metadata = object(json!({"team": "portal"}));
        tx.put_environment_metadata("production", &metadata).await.unwrap();
        tx.commit().await.unwrap();
        let mut read = upgraded.begin_read().await.unwrap();
        assert_eq!(read.environment_metadata("production").await.unwrap(), Some(metadata));
    })
    .await;
    scratch.remove().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Starts a replica on each of `stores` at once, all given `admin_token`; returns each
/// start's generated admin token, or its error.
async fn start_together(stores: &[Arc<dyn Store>], admin_token: Option<&str>) -> Vec<Result<Option<String>, String>> {
    let starts: Vec<_> = stores
        .iter()
        .map(|store| {
            let (store, given) = (Arc::clone(store), admin_token.map(str::to_owned));
            tokio::spawn(async move {
                let started = Service::start(store, given.as_deref()).await;
                started.map(|(_, startup)| startup.generated_admin_token).map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for start in starts {
        outcomes.push(start.await.unwrap());
    }
    outcomes
}

/// `store` and further stores on `url`, as many as `replicas`: processes of their own.
async fn replicas_of(store: Arc<dyn Store>, url: &str, replicas: usize) -> Vec<Arc<dyn Store>> {
    let mut stores = vec![store];
    while stores.len() < replicas {
        stores.push(store::connect(url).await.unwrap());
    }
    stores
}

async fn admin_tokens(store: &dyn Store) -> Vec<Token> {
    let tokens = store.begin_read().await.unwrap().tokens().await.unwrap();
    tokens.into_iter().filter(|t| t.role == Role::Admin).collect()
}

/// Every replica of a deployment starts with the same `--admin-token`, a new one at the
/// first deploy and at each rotation: however many start at once, the token is stored
/// once, and none fails.
async fn replicas_starting_together_with_a_new_admin_token_store_it_once(store: Arc<dyn Store>, url: String) {
    let stores = replicas_of(store, &url, 6).await;
    for round in 0..3 {
        let value = format!("rotated-admin-token-{round}-{:016x}", rand::random::<u64>());
        let outcomes = start_together(&stores, Some(&value)).await;
        assert!(outcomes.iter().all(|o| o == &Ok(None)), "round {round}: {outcomes:?}");
        let stored = admin_tokens(&*stores[0]).await;
        assert_eq!(stored.iter().filter(|t| t.hash == hash_token(&value)).count(), 1, "round {round}");
        assert_eq!(stored.len(), round + 1, "round {round}: one new token per round");
    }
}

/// Replicas starting together for the first time without an admin token: one makes one
/// up and shows it, the others start with that one.
async fn replicas_first_starting_together_without_an_admin_token_generate_one(store: Arc<dyn Store>, url: String) {
    let stores = replicas_of(store, &url, 6).await;
    let outcomes = start_together(&stores, None).await;
    let generated: Vec<String> = outcomes.into_iter().filter_map(|outcome| outcome.unwrap()).collect();
    assert_eq!(generated.len(), 1, "one replica generates the admin token: {generated:?}");
    let stored = admin_tokens(&*stores[0]).await;
    assert_eq!(stored.iter().map(|t| t.hash.clone()).collect::<Vec<_>>(), [hash_token(&generated[0])]);
}
