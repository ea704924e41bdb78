//! The control plane's runtime. `flagd-server` runs everything but evaluation (the admin
//! API, the console, database transactions, compiling rulesets, replication) on one
//! thread of its own, which `--control-nice` can put below the threads that serve OFREP.
//!
//! Why: a flag change costs the CPU as much as a few hundred evaluations (a transaction
//! with a synchronous commit, its audit event, compiling the environment). At the same
//! priority, on a saturated server each change holds the CPU while the evaluations in
//! flight wait, and a stream of changes shows as a stream of latency spikes. At the lowest
//! priority (19) the scheduler runs changes in the gaps evaluations leave: in most load
//! rounds evaluation latency then stays at its level without changes, in some a single
//! stall of 10–30 ms appears instead (likely the serving thread waiting on something a
//! preempted control thread holds), and a change takes up to a few hundred milliseconds on
//! a saturated server instead of a few (benches/README.md, "Server load"). The default is
//! 0 (no difference), also because a nice level counts against every process on the host:
//! on a busy shared host a niced control plane would wait behind unrelated work.
//!
//! Threads take the priority of the thread that starts them, so SQLite's per-connection
//! worker threads, opened from the control thread, run at its priority too. The runtime
//! a [`crate::service::Service`] is started on becomes its control plane (see
//! [`crate::service::Service::start`]).

use tokio::runtime::{Builder, Runtime};

/// How much lower the control plane's priority is by default, in nice levels.
pub const DEFAULT_NICE: u8 = 0;

/// The highest nice level Linux has.
const MAX_NICE: i32 = 19;

/// A runtime of one worker thread whose threads (the worker and any blocking-pool
/// thread) run `nice` levels below the calling thread's priority.
pub fn runtime(nice: u8) -> std::io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flagd-control")
        .on_thread_start(move || lower_priority(nice))
        .enable_all()
        .build()
}

/// Lowers the calling thread's priority by `nice` levels. On Linux the nice value belongs
/// to the thread, not the process: the serving threads keep theirs.
#[cfg(target_os = "linux")]
fn lower_priority(nice: u8) {
    use rustix::process::{getpriority_process, setpriority_process};
    if nice == 0 {
        return;
    }
    let lowered = getpriority_process(None)
        .and_then(|current| setpriority_process(None, current.saturating_add(i32::from(nice)).min(MAX_NICE)));
    if let Err(e) = lowered {
        tracing::warn!(error = %e, "could not lower the control plane's priority: flag changes compete with evaluations");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: u8) {}

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
}
