//! A store wrapper that fails or stalls on cue, for what a real database does only now and
//! then: drop right after a commit, answer slowly while writes run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use flagd_server::store::{
    AuditPage, AuditQuery, ChangeScope, ConfigLookup, Environment, NewAuditEvent, Replica, Store, StoreError,
    StoredConfig, StoredFlag, StoredSegment, Token, Tx,
};
use serde_json::{Map, Value};

/// A store that fails or stalls on cue ([`Faults`]), and otherwise is its `inner` store.
pub(crate) struct Faulty {
    pub(crate) inner: Arc<dyn Store>,
    pub(crate) faults: Arc<Faults>,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The next write to commit makes the token read after it fail: the database dropping
    /// between a commit and the read after it.
    pub(crate) armed: AtomicBool,
    /// The next token read fails.
    pub(crate) failing: AtomicBool,
    /// How many token reads failed.
    pub(crate) failed: AtomicUsize,
    /// The next token read fails with an error that is no outage: a fault of the server's
    /// own as far as a caller can tell (500).
    pub(crate) broken: AtomicBool,
    /// Reading the change sequence takes this long (a database busy with writes).
    pub(crate) seq_read_ms: AtomicU64,
}

struct FaultyTx {
    inner: Box<dyn Tx>,
    faults: Arc<Faults>,
    writes: bool,
}

impl Faulty {
    fn wrap(&self, inner: Box<dyn Tx>, writes: bool) -> Box<dyn Tx> {
        Box::new(FaultyTx { inner, faults: Arc::clone(&self.faults), writes })
    }
}

#[async_trait]
impl Store for Faulty {
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
        let stall = self.faults.seq_read_ms.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(stall)).await;
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
        if self.faults.broken.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::Protocol("an answer no driver expects (test)".into())));
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
    async fn forget_silent_replica(&mut self, id: &str, heard_before: i64) -> Result<Option<Replica>, StoreError> {
        self.inner.forget_silent_replica(id, heard_before).await
    }
    async fn changes_since(&mut self, seq: i64) -> Result<Vec<ChangeScope>, StoreError> {
        self.inner.changes_since(seq).await
    }
}
