//! The last resort behind a call's time limit.
//!
//! A call is stopped at its limit by dropping its future. That works whenever the plugin
//! is running WebAssembly (the epoch deadline makes it yield) or waiting on the host's
//! async I/O. It cannot work while the thread is inside a system call that blocks: a
//! first-party plugin's file read on a hung mount (such plugins do their file operations
//! on the calling thread; see `Runtime::store`), or an `lstat` the host serves inline.
//! Nothing in the process can take that thread back. The backstop, armed for every call,
//! ends the process as a failed run when a call is still running well past its limit,
//! so that cron, the service manager and the dead-man's switch see a failure rather than
//! a run that never ends. Under `backups daemon` this ends the daemon, and its other
//! jobs with it; its service manager restarts it, and the job lock is released with it.
//! The process exits without unwinding, so that run's directory in the tmpdir (with a
//! temporary artifact, if one was written) stays behind until the job's next run removes
//! it (run_dir.rs).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// How long past its limit a call may run before the backstop gives up on it. Dropping a
/// call's future at its limit takes milliseconds; a call still running a minute later is
/// stuck in the kernel.
pub const GRACE: Duration = Duration::from_secs(60);

/// Armed while a call runs; dropping it disarms.
pub struct Backstop {
    _disarm: Option<mpsc::Sender<()>>,
}

impl Backstop {
    /// Runs `on_stall` on a thread of its own unless dropped within `deadline`.
    pub fn arm(deadline: Duration, on_stall: impl FnOnce() + Send + 'static) -> Backstop {
        let (disarm, disarmed) = mpsc::channel::<()>();
        let watcher = std::thread::Builder::new()
            .name("call-backstop".into())
            .spawn(move || {
                // Nothing is ever sent: the sender's drop is the signal.
                if let Err(RecvTimeoutError::Timeout) = disarmed.recv_timeout(deadline) {
                    on_stall();
                }
            });
        match watcher {
            Ok(_) => Backstop {
                _disarm: Some(disarm),
            },
            Err(e) => {
                tracing::warn!("cannot start a call's backstop thread: {e}");
                Backstop { _disarm: None }
            }
        }
    }

    /// The backstop for plugin calls: reports the stuck call, kills the commands plugins
    /// started, and exits with the status of a failed run.
    pub fn for_call(label: &str, what: &str, limit: Duration) -> Backstop {
        let (label, what) = (label.to_string(), what.to_string());
        Backstop::arm(limit.saturating_add(GRACE), move || {
            tracing::error!(
                "{label}: {what} is still running {}s past its limit of {}s, blocked in a \
                 system call the host cannot interrupt (a hung mount or device?); the run \
                 ends here and has failed",
                GRACE.as_secs(),
                limit.as_secs()
            );
            crate::interrupt::kill_tracked();
            std::process::exit(1);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn fires_when_the_call_outlives_its_deadline() {
        let (fired, seen) = channel();
        let _armed = Backstop::arm(Duration::from_millis(20), move || {
            fired.send(()).unwrap();
        });
        assert!(seen.recv_timeout(Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn stays_quiet_when_dropped_in_time() {
        let (fired, seen) = channel();
        let armed = Backstop::arm(Duration::from_millis(300), move || {
            fired.send(()).unwrap();
        });
        drop(armed);
        assert!(matches!(
            seen.recv_timeout(Duration::from_secs(1)),
            Err(RecvTimeoutError::Disconnected)
        ));
    }
}
