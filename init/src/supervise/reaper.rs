//! The one owner of `waitpid(-1)`. As PID 1 every orphan is ours to reap;
//! whoever spawns a child registers for its exit here instead of waiting on
//! it, so no exit status is lost to a second waiter.

use std::collections::HashMap;
use std::io;
use std::process::Command;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// A child spawned through the reaper.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    /// Resolves to the exit code (128 + signal when killed by one).
    pub exit: oneshot::Receiver<i32>,
}

#[derive(Debug, Default)]
pub struct Reaper {
    waiters: Mutex<HashMap<i32, oneshot::Sender<i32>>>,
}

impl Reaper {
    /// Starts reaping on every SIGCHLD. Call inside the tokio runtime,
    /// before anything is spawned.
    pub fn start() -> io::Result<Arc<Self>> {
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Arc::new(Self::default());
        let task_reaper = Arc::clone(&reaper);
        tokio::spawn(async move {
            loop {
                task_reaper.reap_all();
                if sigchld.recv().await.is_none() {
                    tracing::error!("SIGCHLD stream ended; reaping stops");
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `command` and registers for its exit. The registry is locked
    /// across the spawn, so even an instant exit finds its waiter.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Spawned> {
        let mut waiters = self.lock();
        let child = command.spawn()?;
        let (tx, exit) = oneshot::channel();
        let pid = child.id();
        waiters.insert(pid_as_i32(pid), tx);
        // The std handle is dropped without waiting: the exit is ours.
        drop(child);
        Ok(Spawned { pid, exit })
    }

    /// Collects every child that has exited. Logs errors, never stops.
    fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => self.deliver(status),
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    tracing::error!(%err, "waitpid failed");
                    return;
                }
            }
        }
    }

    fn deliver(&self, status: WaitStatus) {
        let (Some(pid), Some(code)) = (status.pid(), exit_code(status)) else {
            return;
        };
        match self.lock().remove(&pid.as_raw()) {
            Some(waiter) => {
                // The waiter may have given up; the child is reaped either way.
                let _ = waiter.send(code);
            }
            None => tracing::debug!(pid = pid.as_raw(), code, "reaped orphan"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, oneshot::Sender<i32>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn pid_as_i32(pid: u32) -> i32 {
    // Linux pids fit in i32 (pid_max is at most 2^22).
    i32::try_from(pid).unwrap_or(i32::MAX)
}

/// The shell's view of an exit: the code, or 128 + the signal that killed it.
/// `None` for stops and continues, which are not exits.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn exit_codes_follow_the_shell() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 0)), Some(0));
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            Some(143)
        );
        assert_eq!(exit_code(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
        assert_eq!(exit_code(WaitStatus::Continued(pid)), None);
    }
}
