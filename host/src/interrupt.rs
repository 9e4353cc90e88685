//! Stopping a run cleanly on SIGINT or SIGTERM.
//!
//! Commands that plugins start run in process groups of their own (so that a whole
//! `sh -c` pipeline can be stopped together), which also means a terminal's Ctrl-C or a
//! service manager's SIGTERM never reaches them. On the first signal the host therefore
//! kills every such group itself. The plugin call that was waiting on the command then
//! fails like any failed dump, and the plugin gets to clean up what it created — the
//! temporary database instance restored from a snapshot, a mounted volume — before it
//! returns. Work not yet started is skipped, the report says the run was interrupted, and
//! notifiers are told. A second signal exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Process groups of the commands running now (a handful at most).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static INSTALLED: Once = Once::new();
static ANNOUNCED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Exit status after a second signal, as a shell reports a SIGINT death.
const EXIT_ON_SECOND_SIGNAL: i32 = 130;

/// True once SIGINT or SIGTERM arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Why work stops, for reports and errors.
pub const REASON: &str = "the run was interrupted (SIGINT/SIGTERM)";

/// Listens for SIGINT and SIGTERM on the current tokio runtime (once per process).
pub fn install() {
    INSTALLED.call_once(|| {
        tokio::spawn(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                tracing::warn!(
                    "cannot listen for SIGINT/SIGTERM: an interrupted run will not clean up"
                );
                return;
            };
            let mut seen = 0;
            loop {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                seen += 1;
                if seen > 1 {
                    tracing::error!("interrupted again: exiting now");
                    std::process::exit(EXIT_ON_SECOND_SIGNAL);
                }
                tracing::warn!(
                    "interrupted: stopping the commands plugins started and letting plugins clean \
                     up; signal again to exit at once"
                );
                request();
            }
        });
    });
}

/// What a signal does: from now on no command starts, and every running one is killed.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
    ANNOUNCED.notify_waiters();
    kill_tracked();
}

/// Kills the process group of every command running now.
pub fn kill_tracked() {
    let groups: Vec<i32> = lock().iter().copied().collect();
    for pgid in groups {
        kill_group(pgid);
    }
}

/// Returns once the run is interrupted (at once if it is already).
pub async fn wait() {
    let announced = ANNOUNCED.notified();
    tokio::pin!(announced);
    // Registered before the flag is read, so a signal in between is not missed.
    announced.as_mut().enable();
    if requested() {
        return;
    }
    announced.await;
}

/// Records a command's process group while it runs. `false` when the run is already
/// interrupted: the command must not start (it is killed if it did).
pub fn track(pgid: i32) -> bool {
    lock().push(pgid);
    // Checked after inserting, so a signal between spawn and insert is not missed.
    if requested() {
        kill_group(pgid);
        return false;
    }
    true
}

pub fn untrack(pgid: i32) {
    lock().retain(|g| *g != pgid);
}

fn lock() -> MutexGuard<'static, Vec<i32>> {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills a process group (one that is gone already is fine).
pub fn kill_group(pgid: i32) {
    // SAFETY: killpg has no memory preconditions; a group that is gone is ESRCH.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}
