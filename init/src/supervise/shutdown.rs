//! Shutdown as a value: signals (and `ros poweroff`/`reboot`, which send
//! them) become one `Shutdown` on a watch channel; the boot sequence waits on
//! it, stops everything in order, then syncs, unmounts and reboots.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::mount::MntFlags;
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::host::{Host, HostResult, Shutdown};

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

/// How long every process left gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long the end of PID 1 (kill, sync, unmount) may take before the
/// kernel is asked to go down anyway: a sync or an unmount that hangs
/// on a dead disk must not keep a machine from rebooting.
pub const FINISH_DEADLINE: Duration = Duration::from_secs(30);

/// The end of PID 1: [`shut_down`], with a watchdog that asks the kernel
/// to go down after [`FINISH_DEADLINE`] whatever hangs. Never returns.
pub fn finish(host: Arc<dyn Host>, how: Shutdown) -> ! {
    let watchdog = Arc::clone(&host);
    let armed = std::thread::Builder::new()
        .name("shutdown-deadline".into())
        .spawn(move || {
            std::thread::sleep(FINISH_DEADLINE);
            watchdog.console(&format!(
                "ros: shutdown did not finish in {} s; going down now ({how})",
                FINISH_DEADLINE.as_secs()
            ));
            if let Err(err) = watchdog.reboot(how) {
                tracing::error!(%err, "reboot(2) failed");
            }
        });
    if let Err(err) = armed {
        tracing::warn!(%err, "no shutdown deadline: cannot start its thread");
    }
    if let Err(err) = shut_down(&*host, how, TERM_GRACE) {
        tracing::error!(%err, "reboot(2) failed");
    }
    loop {
        std::thread::park();
    }
}

/// Every process left gets SIGTERM, then SIGKILL after `grace`; file
/// systems are synced and unmounted, innermost first; the kernel is asked
/// to go down. Returns only when that failed.
pub fn shut_down(host: &dyn Host, how: Shutdown, grace: Duration) -> HostResult<()> {
    terminate_all_processes(host, grace);
    host.sync();
    let table = host.mount_table().unwrap_or_default();
    for target in parse_mount_targets(&table).into_iter().rev() {
        // Busy file systems are detached; the sync above already flushed.
        if host.umount(&target, MntFlags::empty()).is_err() {
            let _ = host.umount(&target, MntFlags::MNT_DETACH);
        }
    }
    host.sync();
    host.reboot(how)
}

fn terminate_all_processes(host: &dyn Host, grace: Duration) {
    // kill(-1) reaches every process but ourselves; an error means none
    // is left.
    if host.signal_all(Signal::SIGTERM).is_err() {
        return;
    }
    // Up to `grace` for them to go, reaping as they do; whatever is left
    // then is killed.
    let deadline = std::time::Instant::now() + grace;
    loop {
        host.reap_exited();
        if !host.processes_left() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = host.signal_all(Signal::SIGKILL);
    host.reap_exited();
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

    fn host_with_mounts() -> crate::host::FakeHost {
        let host = crate::host::FakeHost::new();
        host.set_mount_table(
            "overlay / overlay rw 0 0\nproc /proc proc rw 0 0\n/dev/vda1 /var/lib/rancher ext4 rw 0 0\n",
        );
        host
    }

    #[test]
    fn shutdown_terms_syncs_unmounts_innermost_first_and_reboots() {
        use crate::host::HostCall;
        let host = host_with_mounts();
        host.set_processes(3, false);
        // The fake's reboot returns; the real one does not.
        shut_down(&host, Shutdown::Reboot, Duration::from_secs(2)).unwrap();
        assert_eq!(
            host.calls(),
            vec![
                HostCall::SignalAll(Signal::SIGTERM),
                HostCall::Sync,
                HostCall::MountTable,
                HostCall::Umount {
                    target: "/var/lib/rancher".into(),
                    flags: MntFlags::empty()
                },
                HostCall::Umount {
                    target: "/proc".into(),
                    flags: MntFlags::empty()
                },
                HostCall::Sync,
                HostCall::Reboot(Shutdown::Reboot),
            ]
        );
    }

    #[test]
    fn processes_that_ignore_sigterm_are_killed_after_the_grace() {
        use crate::host::HostCall;
        let host = host_with_mounts();
        host.set_processes(1, true);
        let started = std::time::Instant::now();
        shut_down(&host, Shutdown::PowerOff, Duration::from_millis(100)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(100));
        let calls = host.calls();
        assert_eq!(
            calls[..2],
            [
                HostCall::SignalAll(Signal::SIGTERM),
                HostCall::SignalAll(Signal::SIGKILL)
            ]
        );
        assert_eq!(calls.last(), Some(&HostCall::Reboot(Shutdown::PowerOff)));
    }

    #[test]
    fn a_busy_file_system_is_detached() {
        use crate::host::HostCall;
        let host = FailFirstUmount(crate::host::FakeHost::new());
        host.0.set_mount_table("tmpfs /run tmpfs rw 0 0\n");
        shut_down(&host, Shutdown::Halt, Duration::ZERO).unwrap();
        assert_eq!(
            host.0.calls()[3..],
            [
                HostCall::Umount {
                    target: "/run".into(),
                    flags: MntFlags::empty()
                },
                HostCall::Umount {
                    target: "/run".into(),
                    flags: MntFlags::MNT_DETACH
                },
                HostCall::Sync,
                HostCall::Reboot(Shutdown::Halt),
            ]
        );
    }

    /// A fake host whose first umount fails (busy).
    struct FailFirstUmount(crate::host::FakeHost);

    impl Host for FailFirstUmount {
        fn create_dir_all(&self, path: &std::path::Path) -> HostResult<()> {
            self.0.create_dir_all(path)
        }
        fn touch(&self, path: &std::path::Path) -> HostResult<()> {
            self.0.touch(path)
        }
        fn is_mountpoint(&self, path: &std::path::Path) -> HostResult<bool> {
            self.0.is_mountpoint(path)
        }
        fn mount(
            &self,
            source: &str,
            target: &std::path::Path,
            fstype: Option<&str>,
            flags: nix::mount::MsFlags,
            data: Option<&str>,
        ) -> HostResult<()> {
            self.0.mount(source, target, fstype, flags, data)
        }
        fn umount(&self, target: &std::path::Path, flags: MntFlags) -> HostResult<()> {
            if flags.is_empty() {
                self.0.fail_next(1);
            }
            self.0.umount(target, flags)
        }
        fn attach_loop(&self, file: &std::path::Path) -> HostResult<PathBuf> {
            self.0.attach_loop(file)
        }
        fn chroot_here(&self, new_root: &std::path::Path) -> HostResult<()> {
            self.0.chroot_here(new_root)
        }
        fn set_child_subreaper(&self) -> HostResult<()> {
            self.0.set_child_subreaper()
        }
        fn disable_ctrl_alt_del(&self) -> HostResult<()> {
            self.0.disable_ctrl_alt_del()
        }
        fn sethostname(&self, name: &str) -> HostResult<()> {
            self.0.sethostname(name)
        }
        fn sync(&self) {
            self.0.sync();
        }
        fn reboot(&self, how: Shutdown) -> HostResult<()> {
            self.0.reboot(how)
        }
        fn signal_all(&self, signal: Signal) -> HostResult<()> {
            self.0.signal_all(signal)
        }
        fn processes_left(&self) -> bool {
            self.0.processes_left()
        }
        fn reap_exited(&self) {}
        fn mount_table(&self) -> HostResult<String> {
            self.0.mount_table()
        }
        fn console(&self, line: &str) {
            self.0.console(line);
        }
        fn set_console_log_level(&self, level: u8) -> HostResult<()> {
            self.0.set_console_log_level(level)
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_first_request_wins() {
        let (tx, mut rx) = watch::channel(None);
        assert!(request(&tx, Shutdown::Halt));
        assert!(!request(&tx, Shutdown::Reboot));
        assert_eq!(requested(&mut rx).await, Shutdown::Halt);
    }
}
