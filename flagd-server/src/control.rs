//! The control plane's runtime. `flagd-server` runs everything but evaluation (the admin
//! API, the console, database transactions, compiling rulesets, replication) on one
//! thread of its own, `--control-nice` levels (15 by default) below the threads that serve
//! OFREP.
//!
//! Why: a flag change costs the CPU as much as some 70 evaluation requests (a transaction
//! with a synchronous commit, its audit event, compiling the environment), spread over a dozen
//! hand-offs between the control thread and SQLite's. At the same priority, on a saturated
//! server each of those wakes preempts the serving thread while the evaluations in flight
//! wait, and a stream of changes shows as a stream of latency spikes: at 50 changes a
//! second, the evaluation p99 rose by a third to three quarters. Fifteen nice levels down (the
//! default) the control thread still gets about 3 % of a saturated core (the weights of
//! nice 0 and 15 are 1024 and 36), enough for 35–60 changes a second (a change costs
//! 0.6–0.9 ms of CPU, depending on the host), but it waits for
//! the serving thread's time slice instead of cutting into it: in most rounds measured the
//! p99 under that churn stayed near its level without changes (some rounds still show a
//! single stall of 20–30 ms), and a change takes 10–100 ms on a saturated core instead of
//! 1–10 ms. At 19 (weight 15) changes fall behind a 50-a-second stream; at 10
//! to 13 the gain is partial (benches/README.md, "Server load"). On a server with idle CPU
//! the level changes nothing: the control thread runs at once.
//!
//! The level ranks the control plane below every other task competing for the same CPU,
//! not only the serving threads: on a host shared with busy processes in the same CPU
//! group, flag changes slow down with them. `--control-nice 0` treats everything alike.
//!
//! Threads take the priority of the thread that starts them, so SQLite's per-connection
//! worker threads, opened from the control thread, run at its priority too. The runtime
//! a [`crate::service::Service`] is started on becomes its control plane (see
//! [`crate::service::Service::start`]).

use tokio::runtime::{Builder, Runtime};

/// How much lower the control plane's priority is by default, in nice levels.
pub const DEFAULT_NICE: u8 = 15;

/// The highest nice level Linux has.
const MAX_NICE: i32 = 19;

/// A runtime of one worker thread whose threads (the worker and any blocking-pool
/// thread) run `nice` levels below the calling thread's priority.
///
/// The level is worked out once, here, and every thread of the runtime is set to exactly
/// it: a blocking-pool thread started from the worker (or from another of these threads)
/// inherits the lowered priority, and lowering it again by `nice` would put it twice as
/// far down.
pub fn runtime(nice: u8) -> std::io::Result<Runtime> {
    let level = control_level(nice);
    Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flagd-control")
        .on_thread_start(move || set_priority(level))
        .enable_all()
        .build()
}

/// The nice level of the control plane: `nice` levels below the calling thread's,
/// at most [`MAX_NICE`]. `None` leaves the priority alone (`nice` 0, or not Linux).
#[cfg(target_os = "linux")]
fn control_level(nice: u8) -> Option<i32> {
    if nice == 0 {
        return None;
    }
    match rustix::process::getpriority_process(None) {
        Ok(current) => Some(current.saturating_add(i32::from(nice)).min(MAX_NICE)),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the serving threads' priority: flag changes compete with evaluations");
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn control_level(_nice: u8) -> Option<i32> {
    None
}

/// Sets the calling thread's nice level to `level`. On Linux the nice value belongs to the
/// thread, not the process: the serving threads keep theirs.
#[cfg(target_os = "linux")]
fn set_priority(level: Option<i32>) {
    let Some(level) = level else { return };
    if let Err(e) = rustix::process::setpriority_process(None, level) {
        tracing::warn!(error = %e, "could not lower the control plane's priority: flag changes compete with evaluations");
    }
}

#[cfg(not(target_os = "linux"))]
fn set_priority(_level: Option<i32>) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> rustix::io::Result<i32> {
        rustix::process::getpriority_process(None)
    }

    #[test]
    fn control_threads_and_the_threads_they_start_run_below_the_caller() {
        let own = nice_of_this_thread().unwrap();
        let control = runtime(5).unwrap();
        let worker = control.block_on(control.spawn(async { nice_of_this_thread() })).unwrap().unwrap();
        let blocking = control.block_on(control.spawn_blocking(nice_of_this_thread)).unwrap().unwrap();
        // As SQLite's connection threads are started.
        let started = control
            .block_on(control.spawn(async { std::thread::spawn(nice_of_this_thread).join() }))
            .unwrap()
            .unwrap()
            .unwrap();
        let expected = (own + 5).min(MAX_NICE);
        assert_eq!((worker, blocking, started), (expected, expected, expected));
        assert_eq!(nice_of_this_thread().unwrap(), own, "the caller keeps its priority");
        control.shutdown_background();
    }

    #[test]
    fn a_blocking_thread_the_control_worker_starts_runs_at_the_same_level_not_lower() {
        let own = nice_of_this_thread().unwrap();
        // Small enough that twice the step stays within Linux's range and would show.
        let step = (MAX_NICE - own) / 2;
        if step == 0 {
            eprintln!("skipped: at nice {own} no lower level is left to tell once from twice");
            return;
        }
        // A fresh runtime, so that no idle blocking thread started elsewhere is reused:
        // this one is started by the worker (as sqlx's and tokio's blocking calls are) and
        // inherits the worker's lowered priority before `on_thread_start` runs.
        let control = runtime(u8::try_from(step).unwrap()).unwrap();
        let from_worker = control
            .block_on(control.spawn(async { tokio::task::spawn_blocking(nice_of_this_thread).await }))
            .unwrap()
            .unwrap()
            .unwrap();
        // A thread started by that one.
        let from_blocking =
            control
                .block_on(control.spawn(async {
                    tokio::task::spawn_blocking(|| std::thread::spawn(nice_of_this_thread).join()).await
                }))
                .unwrap()
                .unwrap()
                .unwrap()
                .unwrap();
        let expected = own + step;
        assert_eq!((from_worker, from_blocking), (expected, expected), "{step} levels below {own}, not twice that");
        control.shutdown_background();
    }
}
