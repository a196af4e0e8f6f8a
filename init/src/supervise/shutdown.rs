//! Shutdown as a value: signals (and `ros poweroff`/`reboot`, which send
//! them) become one `Shutdown` on a watch channel; the boot sequence waits on
//! it, stops everything in order, then syncs, unmounts and reboots.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use nix::mount::MntFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::host::{Host, Shutdown};

/// Which signal asks for which shutdown. The busybox convention, so that
/// busybox `poweroff`, `reboot` and `halt` in the console work too.
/// SIGINT is what the kernel sends for ctrl-alt-del once PID 1 has turned
/// the immediate reboot off.
pub fn shutdown_for(signal: Signal) -> Option<Shutdown> {
    match signal {
        Signal::SIGUSR2 | Signal::SIGPWR => Some(Shutdown::PowerOff),
        Signal::SIGTERM | Signal::SIGINT => Some(Shutdown::Reboot),
        Signal::SIGUSR1 => Some(Shutdown::Halt),
        _ => None,
    }
}

/// The signal `ros poweroff|reboot|halt` sends to PID 1.
pub fn signal_for(how: Shutdown) -> Signal {
    match how {
        Shutdown::PowerOff => Signal::SIGUSR2,
        Shutdown::Reboot => Signal::SIGTERM,
        Shutdown::Halt => Signal::SIGUSR1,
    }
}

/// Listens for the shutdown signals; the receiver sees `Some` once one came.
pub fn listen() -> io::Result<watch::Receiver<Option<Shutdown>>> {
    let (tx, rx) = watch::channel(None);
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
    ] {
        let mut stream = signal(SignalKind::from_raw(sig as i32))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let how = shutdown_for(sig);
                tracing::info!(signal = %sig, ?how, "shutdown requested");
                if let Some(how) = how {
                    request(&tx, how);
                }
            }
        });
    }
    Ok(rx)
}

/// Records a shutdown request. The first wins; later ones do not change
/// course midway. Returns whether this one was taken.
pub fn request(tx: &watch::Sender<Option<Shutdown>>, how: Shutdown) -> bool {
    tx.send_if_modified(|current| {
        let first = current.is_none();
        if first {
            *current = Some(how);
        }
        first
    })
}

/// Waits until a shutdown is requested.
pub async fn requested(rx: &mut watch::Receiver<Option<Shutdown>>) -> Shutdown {
    loop {
        if let Some(how) = *rx.borrow_and_update() {
            return how;
        }
        if rx.changed().await.is_err() {
            // Every sender is gone: nobody can ask anymore; power off.
            return Shutdown::PowerOff;
        }
    }
}

/// The end of PID 1: every process left gets SIGTERM then SIGKILL, file
/// systems are synced and unmounted, and the kernel is asked to go down.
/// Never returns.
pub fn finish(host: &dyn Host, how: Shutdown) -> ! {
    terminate_all_processes();
    host.sync();
    for target in mounts_innermost_first() {
        // Busy file systems are detached; the sync above already flushed.
        if host.umount(&target, MntFlags::empty()).is_err() {
            let _ = host.umount(&target, MntFlags::MNT_DETACH);
        }
    }
    host.sync();
    if let Err(err) = host.reboot(how) {
        tracing::error!(%err, "reboot(2) failed");
    }
    loop {
        std::thread::park();
    }
}

fn terminate_all_processes() {
    // kill(-1) reaches every process but ourselves.
    let all = Pid::from_raw(-1);
    if kill(all, Signal::SIGTERM).is_err() {
        return;
    }
    // Up to two seconds for them to go, reaping as they do; whatever is
    // left then is killed.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        while matches!(
            nix::sys::wait::waitpid(all, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
            Ok(status) if status != nix::sys::wait::WaitStatus::StillAlive
        ) {}
        // Signal 0 probes: ESRCH means no process is left.
        if kill(all, None) == Err(nix::errno::Errno::ESRCH) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(all, Signal::SIGKILL);
}

/// Mount points from /proc/self/mounts, the most recent (innermost) first.
fn mounts_innermost_first() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    parse_mount_targets(&text).into_iter().rev().collect()
}

fn parse_mount_targets(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|target| *target != "/")
        // /proc/mounts escapes spaces and friends as octal.
        .map(|target| PathBuf::from(target.replace("\\040", " ").replace("\\011", "\t")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_shutdowns() {
        assert_eq!(shutdown_for(Signal::SIGUSR2), Some(Shutdown::PowerOff));
        assert_eq!(shutdown_for(Signal::SIGPWR), Some(Shutdown::PowerOff));
        assert_eq!(shutdown_for(Signal::SIGTERM), Some(Shutdown::Reboot));
        assert_eq!(shutdown_for(Signal::SIGINT), Some(Shutdown::Reboot));
        assert_eq!(shutdown_for(Signal::SIGUSR1), Some(Shutdown::Halt));
        assert_eq!(shutdown_for(Signal::SIGHUP), None);
    }

    #[test]
    fn the_cli_signal_maps_back_to_its_shutdown() {
        for how in [Shutdown::PowerOff, Shutdown::Reboot, Shutdown::Halt] {
            assert_eq!(shutdown_for(signal_for(how)), Some(how));
        }
    }

    #[test]
    fn mount_targets_skip_root_and_unescape() {
        let mounts =
            "overlay / overlay rw 0 0\nproc /proc proc rw 0 0\ntmpfs /mnt/a\\040b tmpfs rw 0 0\n";
        assert_eq!(
            parse_mount_targets(mounts),
            vec![PathBuf::from("/proc"), PathBuf::from("/mnt/a b")]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_first_request_wins() {
        let (tx, mut rx) = watch::channel(None);
        assert!(request(&tx, Shutdown::Halt));
        assert!(!request(&tx, Shutdown::Reboot));
        assert_eq!(requested(&mut rx).await, Shutdown::Halt);
    }
}
