//! A token change is committed, and then the database drops before the tokens are read
//! back: the caller still hears that the change was made (a new token's value is shown
//! only in that answer), and the next sync applies it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use flagd_server::store::{
    AuditPage, AuditQuery, ChangeScope, ConfigLookup, Environment, NewAuditEvent, Replica, Store, StoreError,
    StoredConfig, StoredFlag, StoredSegment, Token, Tx,
};
use serde_json::{Map, Value, json};

use crate::api::Api;

/// A store whose token read fails once right after a write commits, when armed: the
/// database dropping between a commit and the read after it.
struct DropsAfterCommit {
    inner: Arc<dyn Store>,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    /// The next write to commit makes the token read after it fail.
    armed: AtomicBool,
    /// The next token read fails.
    failing: AtomicBool,
    /// How many token reads failed.
    failed: AtomicUsize,
}

struct FaultyTx {
    inner: Box<dyn Tx>,
    faults: Arc<Faults>,
    writes: bool,
}

impl DropsAfterCommit {
    fn wrap(&self, inner: Box<dyn Tx>, writes: bool) -> Box<dyn Tx> {
        Box::new(FaultyTx { inner, faults: Arc::clone(&self.faults), writes })
    }
}

#[async_trait]
impl Store for DropsAfterCommit {
    async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.prepare().await
    }
    async fn begin_write(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(self.wrap(self.inner.begin_write().await?, true))
    }
    async fn begin_read(&self) -> Result<Box<dyn Tx>, StoreError> {
        Ok(self.wrap(self.inner.begin_read().await?, false))
    }
    async fn current_seq(&self) -> Result<i64, StoreError> {
        self.inner.current_seq().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn clock_ms(&self) -> Result<i64, StoreError> {
        self.inner.clock_ms().await
    }
    async fn heartbeat(&self, replica: &Replica) -> Result<(), StoreError> {
        self.inner.heartbeat(replica).await
    }
    async fn replicas(&self, seen_since: i64) -> Result<Vec<Replica>, StoreError> {
        self.inner.replicas(seen_since).await
    }
    async fn remove_replica(&self, id: &str) -> Result<(), StoreError> {
        self.inner.remove_replica(id).await
    }
    fn watch_commits(&self, wake: Arc<tokio::sync::Notify>) {
        self.inner.watch_commits(wake);
    }
}

#[async_trait]
impl Tx for FaultyTx {
    fn seq(&self) -> i64 {
        self.inner.seq()
    }
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.inner.commit().await?;
        if self.writes && self.faults.armed.swap(false, Ordering::SeqCst) {
            self.faults.failing.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
    async fn tokens(&mut self) -> Result<Vec<Token>, StoreError> {
        if self.faults.failing.swap(false, Ordering::SeqCst) {
            self.faults.failed.fetch_add(1, Ordering::SeqCst);
            let dropped = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the database dropped (test)");
            return Err(StoreError::Database(sqlx::Error::Io(dropped)));
        }
        self.inner.tokens().await
    }

    async fn environments(&mut self) -> Result<Vec<Environment>, StoreError> {
        self.inner.environments().await
    }
    async fn insert_environment(&mut self, env: &Environment) -> Result<(), StoreError> {
        self.inner.insert_environment(env).await
    }
    async fn environment_metadata(&mut self, environment: &str) -> Result<Option<Map<String, Value>>, StoreError> {
        self.inner.environment_metadata(environment).await
    }
    async fn put_environment_metadata(
        &mut self,
        environment: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        self.inner.put_environment_metadata(environment, metadata).await
    }
    async fn flags(&mut self) -> Result<Vec<StoredFlag>, StoreError> {
        self.inner.flags().await
    }
    async fn flag(&mut self, key: &str) -> Result<Option<StoredFlag>, StoreError> {
        self.inner.flag(key).await
    }
    async fn put_flag(&mut self, flag: &StoredFlag) -> Result<(), StoreError> {
        self.inner.put_flag(flag).await
    }
    async fn delete_flag(&mut self, key: &str) -> Result<(), StoreError> {
        self.inner.delete_flag(key).await
    }
    async fn configs(&mut self, environment: &str) -> Result<Vec<StoredConfig>, StoreError> {
        self.inner.configs(environment).await
    }
    async fn flag_configs(&mut self, flag: &str) -> Result<Vec<StoredConfig>, StoreError> {
        self.inner.flag_configs(flag).await
    }
    async fn config(&mut self, flag: &str, environment: &str) -> Result<ConfigLookup, StoreError> {
        self.inner.config(flag, environment).await
    }
    async fn put_config(&mut self, config: &StoredConfig) -> Result<(), StoreError> {
        self.inner.put_config(config).await
    }
    async fn segments(&mut self, environment: &str) -> Result<Vec<StoredSegment>, StoreError> {
        self.inner.segments(environment).await
    }
    async fn segment(&mut self, environment: &str, key: &str) -> Result<Option<StoredSegment>, StoreError> {
        self.inner.segment(environment, key).await
    }
    async fn put_segment(&mut self, segment: &StoredSegment) -> Result<(), StoreError> {
        self.inner.put_segment(segment).await
    }
    async fn delete_segment(&mut self, environment: &str, key: &str) -> Result<(), StoreError> {
        self.inner.delete_segment(environment, key).await
    }
    async fn append_audit(&mut self, event: &NewAuditEvent) -> Result<i64, StoreError> {
        self.inner.append_audit(event).await
    }
    async fn audit(&mut self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.audit(query).await
    }
    async fn token_by_hash(&mut self, hash: &str) -> Result<Option<Token>, StoreError> {
        self.inner.token_by_hash(hash).await
    }
    async fn insert_token(&mut self, token: &Token) -> Result<(), StoreError> {
        self.inner.insert_token(token).await
    }
    async fn revoke_token(&mut self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.inner.revoke_token(id, at).await
    }
    async fn changes_since(&mut self, seq: i64) -> Result<Vec<ChangeScope>, StoreError> {
        self.inner.changes_since(seq).await
    }
}

/// What is logged at WARN and above on this thread (a current-thread test runtime runs
/// every task here) while the guard lives.
fn capture_warnings() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    let logged = Arc::new(Mutex::new(Vec::new()));
    let writer = Arc::clone(&logged);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || Captured(Arc::clone(&writer)))
        .finish();
    (logged, tracing::subscriber::set_default(subscriber))
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_new_tokens_value_is_shown_even_if_the_database_drops_right_after_its_commit() {
    let (logged, _capturing) = capture_warnings();
    let faults = Arc::new(Faults::default());
    let (api, service) =
        Api::over(|inner| Arc::new(DropsAfterCommit { inner, faults: Arc::clone(&faults) }) as Arc<dyn Store>).await;
    api.create_flag(json!({"key": "portal"})).await;

    faults.armed.store(true, Ordering::SeqCst);
    let body = json!({"name": "checkout", "role": "evaluate", "environment": "production"});
    let created = api.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!(faults.failed.load(Ordering::SeqCst), 1, "the token read after the commit failed");
    assert_eq!(created.status, StatusCode::CREATED, "the committed token was answered {}", created.body);
    let value = created.body["value"].as_str().expect("the new token's value is in the answer").to_owned();
    let logged = String::from_utf8(logged.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("WARN") && logged.contains("cannot reload the tokens after a write"), "{logged}");

    // The sync that replicas run every --sync-interval.
    assert!(service.catch_up().await.unwrap(), "the sync found the token change unapplied");
    let evaluated = api.ofrep(&value, "portal", json!({"companyId": "42"})).await;
    assert_eq!(evaluated.status, StatusCode::OK, "the new token evaluates after the sync: {}", evaluated.body);
}
