//! Several flagd-server processes on one database. Each follows the global change
//! sequence (polling it every `--sync-interval`, and woken at once by PostgreSQL's
//! NOTIFY), applies what others committed, and records a heartbeat with the sequence
//! number it serves. The cluster view and the cluster-wide wait read those heartbeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::service::{Service, Subject, now_ms, to_json};
use crate::store::Replica;

/// How often a replica records a heartbeat when nothing changes (it also records one as
/// soon as it applies a change, when other replicas are live to wait on it).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A replica whose last heartbeat is older than this is not live: it has stopped, or it
/// cannot reach the database.
pub const LIVE_WITHIN: Duration = Duration::from_secs(3);
/// How long the cluster view (and so a wait) keeps a replica that fell silent, unless
/// `--replica-memory` says otherwise. One cut off from the database goes on serving what it
/// had, so until then a wait counts it, as behind, and fails naming it rather than confirm
/// a change it may not serve; a replica that stops cleanly leaves at once, one killed
/// leaves after this. Long enough for a network partition or a database failover, and for
/// a saturated replica whose heartbeats stall, to be waited out rather than passed by.
pub const DEFAULT_REPLICA_MEMORY: Duration = Duration::from_secs(10 * 60);
/// How often a replica measures the database's clock against its own (clocks drift).
const CLOCK_MEASURED_EVERY: Duration = Duration::from_secs(60);
/// Who a wait names as behind when the heartbeats could not be read before its timeout.
const HEARTBEATS_UNREAD: &str = "the replicas whose heartbeats the database did not return in time";
/// How long a wait may take past its own timeout for each database read it needs to answer
/// (whether the change exists, the heartbeats): a short timeout is the time to wait for the
/// replicas, not for the database to answer at all.
const READ_AT_LEAST: Duration = Duration::from_secs(1);
/// How often a cluster-wide wait rereads the heartbeats.
const WAIT_POLL: Duration = Duration::from_millis(10);

/// How this process takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// How often to poll the change sequence.
    pub sync_interval: Duration,
    /// The address to report (what `--listen` was given).
    pub address: String,
    /// Where to keep a copy of what is served (`--snapshot-cache`), if anywhere.
    pub snapshot_cache: Option<std::path::PathBuf>,
    /// How long a silent replica stays in the cluster view (`--replica-memory`).
    pub memory: Duration,
}

/// Starts following the other replicas, on the service's control plane; stops when the
/// service closes, removing this replica from the cluster view.
pub fn spawn(service: Arc<Service>, options: ReplicaOptions) -> tokio::task::JoinHandle<()> {
    service.enable_cluster(options.memory);
    service.spawn_on_control(follow(Arc::clone(&service), options))
}

/// Three loops side by side in one task, so that none waits on another's database
/// statements: applying what others committed (a kill switch) must not queue behind a
/// heartbeat stuck on a locked `replicas` table or a stalled disk.
async fn follow(service: Arc<Service>, options: ReplicaOptions) {
    let beat_now = Notify::new();
    let cache = async {
        if let Some(path) = &options.snapshot_cache {
            keep_cache(&service, path).await;
        }
    };
    tokio::join!(
        apply_changes(&service, options.sync_interval, &beat_now),
        keep_heartbeat(&service, &options.address, &beat_now),
        cache
    );
    if let Err(e) = service.store().remove_replica(service.id()).await {
        tracing::warn!(error = %e, "cannot remove this replica from the cluster view");
    }
}

/// Polls the change sequence every `sync_interval` (and whenever PostgreSQL announces a
/// commit) and applies what other replicas committed; asks for a heartbeat after each
/// change applied, so cluster-wide waits elsewhere see it at once.
async fn apply_changes(service: &Service, sync_interval: Duration, beat_now: &Notify) {
    let wake = Arc::new(Notify::new());
    service.store().watch_commits(Arc::clone(&wake));
    let mut failing = false;
    loop {
        match service.catch_up().await {
            Ok(applied) => {
                failing = false;
                if applied {
                    beat_now.notify_one();
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot follow the change sequence; serving the last rulesets");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(sync_interval) => {}
            () = wake.notified() => {}
            () = service.closed() => return,
        }
    }
}

/// Records this replica's heartbeat every [`HEARTBEAT_EVERY`], whatever `--sync-interval`
/// is (a replica that polls once a minute must still count as live, and so as behind in a
/// wait until it polls, rather than drop out of the cluster view and let the wait pass it
/// by), and at once when asked or when a local write was applied.
async fn keep_heartbeat(service: &Service, address: &str, beat_now: &Notify) {
    let mut applied = service.snapshots().subscribe();
    let started_at = now_ms();
    let mut clock_measured: Option<Instant> = None;
    let mut failing = false;
    // Until the first look says otherwise, assume replicas that wait on this one's heartbeat.
    let mut others_live = true;
    let mut looked_at: Option<Instant> = None;
    loop {
        // Not while the database is away (`failing`): each attempt would wait out the pool's
        // timeout and slow the heartbeat that tells when it is back.
        let clock_due = clock_measured.is_none_or(|at| at.elapsed() >= CLOCK_MEASURED_EVERY);
        if clock_due && !failing && service.measure_clock().await.is_ok() {
            clock_measured = Some(Instant::now());
        }
        let me = Replica {
            id: service.id().to_owned(),
            address: address.to_owned(),
            applied_seq: service.snapshots().applied_seq(),
            started_at,
            last_seen: service.cluster_now_ms(),
        };
        let reported = me.applied_seq;
        let began = tokio::time::Instant::now();
        let mut waited_out_a_lock = false;
        match service.store().heartbeat(&me).await {
            Ok(()) => {
                failing = false;
                if looked_at.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
                    others_live = service.others_live().await.unwrap_or(true);
                    looked_at = Some(Instant::now());
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot record this replica's heartbeat");
                }
                failing = true;
                waited_out_a_lock = matches!(ApiError::from(e), ApiError::Busy(_));
            }
        }
        // A beat that waited out a lock elsewhere is retried at once (it began over a
        // second ago), stamped anew, so the heartbeat ages no more than the lock wait while
        // a lock comes and goes; after any other outcome the database gets a second's rest.
        let due = if waited_out_a_lock { began } else { tokio::time::Instant::now() } + HEARTBEAT_EVERY;
        loop {
            // A change applied wakes this loop twice (the follower asks, and the applied
            // sequence moves): only a wake that finds a change not yet reported beats.
            let news = || service.snapshots().applied_seq() > reported;
            let beat = tokio::select! {
                () = tokio::time::sleep_until(due) => true,
                () = beat_now.notified() => news(),
                // A local write was applied: report it at once when other replicas are live
                // to wait on it. A replica alone (the usual single server) saves that
                // transaction per write; one that starts later sees the next periodic beat.
                Ok(()) = applied.changed() => others_live && news(),
                () = service.closed() => return,
            };
            if beat {
                break;
            }
        }
    }
}

/// Rewrites the snapshot cache after every change applied, and once the database answers
/// after a start from the cache.
async fn keep_cache(service: &Arc<Service>, path: &std::path::Path) {
    let mut applied = service.snapshots().subscribe();
    let mut cached = None;
    loop {
        cached = write_cache(service, path, cached).await;
        tokio::select! {
            // A change applied as the server closes is still written.
            biased;
            Ok(()) = applied.changed() => {}
            // Serving from the cache ends without a change when the database, once back,
            // holds what the cache did.
            () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            () = service.closed() => return,
        }
    }
}

/// Writes the snapshot cache once more, after the last requests have drained (unless what
/// is served came from the cache).
pub async fn write_cache_at_exit(service: &Arc<Service>, path: &std::path::Path) {
    write_cache(service, path, None).await;
}

/// How long a replica has been silent, if longer than a live one ever is; `now` on the
/// database's clock, as heartbeats are.
fn silence(r: &ReplicaView, now: i64) -> Option<Duration> {
    Some(Duration::from_millis(u64::try_from(now - r.last_seen).unwrap_or(0))).filter(|silent| *silent > LIVE_WITHIN)
}

/// A replica behind, in words.
fn laggard(r: &ReplicaView, now: i64) -> String {
    let at = if r.address.is_empty() { String::new() } else { format!(" at {}", r.address) };
    let heard = silence(r, now).map(|s| format!(", silent for {} s", s.as_secs())).unwrap_or_default();
    format!("replica {}{at} (applied up to {}{heard})", r.id, r.applied_seq)
}

/// What a wait's timeout adds when it names silent replicas (`ids`): what silence means,
/// and how one gone for good stops holding waits up.
fn silence_explained(ids: &[&str]) -> String {
    let id = match ids {
        [one] => (*one).to_owned(),
        _ => "ID".to_owned(),
    };
    format!(
        "; a silent replica has stopped, was killed, or is cut off from the database and still serves what it \
         had: waits count it until it is heard again or --replica-memory after it was last heard; one gone for \
         good can be forgotten at once (`flagctl replica forget {id}`)"
    )
}

/// Rewrites the snapshot cache if a change was applied since it was last written;
/// returns the sequence number the cache now holds.
async fn write_cache(service: &Arc<Service>, path: &std::path::Path, cached: Option<i64>) -> Option<i64> {
    let applied = service.snapshots().applied_seq();
    if service.serving_cache() || cached == Some(applied) {
        return cached;
    }
    let file = service.cache_file();
    let path = path.to_owned();
    match tokio::task::spawn_blocking(move || file.write(&path)).await {
        Ok(Ok(())) => Some(applied),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot write the snapshot cache");
            cached
        }
        Err(e) => {
            tracing::warn!(error = %e, "the snapshot cache writer stopped");
            cached
        }
    }
}

/// One replica in the cluster view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaView {
    /// The process's id, new at every start.
    pub id: String,
    /// The address it listens on.
    pub address: String,
    /// The highest change sequence number it serves.
    pub applied_seq: i64,
    /// How many changes it is behind the database.
    pub lag: i64,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// Its last heartbeat (Unix ms, on the database's clock, as the view's `now` is).
    pub last_seen: i64,
    /// Whether this is the replica that answered.
    pub this: bool,
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// The sequence number of the last committed change.
    pub current_seq: i64,
    /// The replicas heard from within the server's `--replica-memory` (ten minutes by
    /// default; one that stops cleanly leaves at once), oldest first: `lastSeen` over 3 s ago means it has stopped or is cut off from
    /// the database, and may still be serving what it had.
    pub replicas: Vec<ReplicaView>,
    /// The time of this answer (Unix ms) on the clock `lastSeen` is stamped with, the
    /// database's: how long ago a replica was heard from is `now - lastSeen`, whatever
    /// the clock of the machine reading it says.
    pub now: i64,
}

impl Service {
    /// The replicas heard from within `--replica-memory` and how far each has applied the
    /// change sequence. Without cluster mode (no heartbeats), this server alone.
    pub async fn cluster(&self) -> Result<ClusterView, ApiError> {
        self.cluster_heard_since(self.heard_since(self.replica_memory())).await
    }

    /// The cluster-clock time (Unix ms) `window` ago.
    fn heard_since(&self, window: Duration) -> i64 {
        self.cluster_now_ms().saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
    }

    /// [`Self::cluster`] with the replicas heard from since `since` (cluster-clock Unix ms).
    async fn cluster_heard_since(&self, since: i64) -> Result<ClusterView, ApiError> {
        let current_seq = self.store().current_seq().await?;
        let mut replicas = self.replicas_heard_since(since).await?;
        // This server's own progress is known here more recently than its last heartbeat.
        let own = self.snapshots().applied_seq();
        match replicas.iter_mut().find(|r| r.id == self.id()) {
            Some(me) => me.applied_seq = me.applied_seq.max(own),
            None => replicas.push(Replica {
                id: self.id().to_owned(),
                address: String::new(),
                applied_seq: own,
                started_at: 0,
                last_seen: self.cluster_now_ms(),
            }),
        }
        let view = |r: Replica| ReplicaView {
            this: r.id == self.id(),
            lag: (current_seq - r.applied_seq).max(0),
            id: r.id,
            address: r.address,
            applied_seq: r.applied_seq,
            started_at: r.started_at,
            last_seen: r.last_seen,
        };
        let replicas = replicas.into_iter().map(view).collect();
        Ok(ClusterView { current_seq, replicas, now: self.cluster_now_ms() })
    }

    /// Refuses `seq` if no write has reached it. The database decides, not this server's
    /// progress: a write committed on another replica is there before this one applies it.
    /// It gets [`READ_AT_LEAST`] to answer, however short the wait: a change that does not
    /// exist must not time out as one the replicas are behind on. When it cannot answer,
    /// the change may well be written, so the wait goes on and ends as the database allows.
    async fn require_written(&self, seq: i64, deadline: tokio::time::Instant) -> Result<(), ApiError> {
        let read_by = deadline.max(tokio::time::Instant::now() + READ_AT_LEAST);
        match tokio::time::timeout_at(read_by, self.store().current_seq()).await {
            Ok(Ok(latest)) if seq > latest => Err(ApiError::change_not_found(seq, latest)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, seq, "cannot read the change sequence; waiting regardless");
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// Takes replica `id` out of the cluster view, so that waits no longer count it: for one
    /// an operator knows is gone for good (killed, its host lost) before `--replica-memory`
    /// forgets it. One heard from within [`LIVE_WITHIN`] is running and stays (409
    /// `REPLICA_LIVE`); forgetting one only cut off from the database lets waits pass it by
    /// until its next heartbeat brings it back.
    pub async fn forget_replica(&self, p: &crate::auth::Principal, id: &str) -> Result<(), ApiError> {
        let mut write = self.begin(p, None).await?;
        if let Some(forgotten) = write.tx.forget_silent_replica(id, self.heard_since(LIVE_WITHIN)).await? {
            write.audit("replica.forget", Subject::default(), to_json(&forgotten), None);
            self.commit(write).await?;
            tracing::warn!(replica = id, by = p.name(), "replica forgotten by hand: waits no longer count it");
            return Ok(());
        }
        drop(write);
        let known = self.store().replicas(self.heard_since(self.replica_memory())).await?;
        match known.iter().find(|r| r.id == id) {
            Some(r) => Err(ApiError::Conflict {
                code: "REPLICA_LIVE",
                message: format!(
                    "replica `{id}` was heard from {} ms ago: it is running, and waits count it until it stops \
                     (a clean stop takes it out of the cluster view)",
                    (self.cluster_now_ms() - r.last_seen).max(0)
                ),
            }),
            None => Err(ApiError::replica_not_found(id)),
        }
    }

    /// Whether another replica has recorded a heartbeat recently.
    async fn others_live(&self) -> Result<bool, ApiError> {
        Ok(self.replicas_heard_within(LIVE_WITHIN).await?.iter().any(|r| r.id != self.id()))
    }

    async fn replicas_heard_within(&self, window: Duration) -> Result<Vec<Replica>, ApiError> {
        self.replicas_heard_since(self.heard_since(window)).await
    }

    async fn replicas_heard_since(&self, since: i64) -> Result<Vec<Replica>, ApiError> {
        if !self.cluster_enabled() {
            return Ok(Vec::new());
        }
        Ok(self.store().replicas(since).await?)
    }

    /// The error of a wait that ran out of time, naming the replicas `view` shows behind
    /// (or, with no view read, saying that the heartbeats could not be).
    fn wait_timeout(&self, seq: i64, view: Option<&ClusterView>) -> ApiError {
        let Some(view) = view else {
            return ApiError::WaitTimeout { seq, laggards: vec![HEARTBEATS_UNREAD.to_owned()], hint: String::new() };
        };
        let now = self.cluster_now_ms();
        let behind: Vec<&ReplicaView> = view.replicas.iter().filter(|r| r.applied_seq < seq).collect();
        let silent: Vec<&str> = behind.iter().filter(|r| silence(r, now).is_some()).map(|r| r.id.as_str()).collect();
        let hint = if silent.is_empty() { String::new() } else { silence_explained(&silent) };
        ApiError::WaitTimeout { seq, laggards: behind.iter().map(|r| laggard(r, now)).collect(), hint }
    }

    /// Waits until every replica in the cluster view serves change `seq`; on timeout, the
    /// error names the replicas behind. A change no write has reached is refused at once.
    /// The view is the one of the wait's start, `waited` earlier when the caller has been
    /// waiting that long already (asking again): a replica that falls silent while the wait
    /// runs stays in it, behind, rather than leave it `--replica-memory` after it was last
    /// heard and so let a wait as long as that pass it by (one that stops cleanly leaves).
    pub async fn wait_for_cluster(
        &self,
        seq: i64,
        timeout: Duration,
        waited: Duration,
    ) -> Result<ClusterView, ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let since = self.heard_since(self.replica_memory().saturating_add(waited));
        tracing::debug!(seq, timeout_ms = timeout.as_millis(), "waiting until every replica serves the change");
        // This server's own progress is a watch channel: wait on it without touching the
        // database, and read the other replicas' heartbeats only once it is there.
        let mut applied = self.snapshots().subscribe();
        if seq > *applied.borrow() {
            self.require_written(seq, deadline).await?;
        }
        let _ = tokio::time::timeout_at(deadline, applied.wait_for(|applied| *applied >= seq)).await;
        let mut last: Option<ClusterView> = None;
        loop {
            // At least a moment to read the heartbeats, however short the timeout: a wait
            // with nothing behind answers yes, and one that runs out names who is behind.
            let read_by = deadline.max(tokio::time::Instant::now() + READ_AT_LEAST);
            let view = match tokio::time::timeout_at(read_by, self.cluster_heard_since(since)).await {
                Ok(Ok(view)) => view,
                // The change is committed; a database blip only delays the answer. Keep
                // asking until the deadline rather than fail a wait that may yet succeed.
                Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, seq, "cannot read the replicas' heartbeats; retrying");
                    tokio::time::sleep(WAIT_POLL).await;
                    continue;
                }
                // Out of time with the database away, or failing: say so.
                Ok(Err(e)) if !matches!(e, ApiError::Busy(_)) => return Err(e),
                // Out of time with the heartbeats' table locked, whether the last read gave
                // up on the lock or did not come back: the wait ends, late by no more than
                // its reads were given (a second each, and at most two of them run past
                // the deadline: this one and the check that the change exists), naming
                // whom it last saw behind.
                Ok(Err(_)) | Err(_) => return Err(self.wait_timeout(seq, last.as_ref())),
            };
            if view.replicas.iter().all(|r| r.applied_seq >= seq) {
                return Ok(view);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.wait_timeout(seq, Some(&view)));
            }
            last = Some(view);
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}
