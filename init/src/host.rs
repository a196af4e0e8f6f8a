//! Everything PID 1 asks of the kernel that needs root or a kernel feature,
//! behind one trait: the real implementation is one syscall per method, the
//! recording fake lets the boot steps be unit tested without root.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How the machine goes down: a value, so the decision and the act are apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    PowerOff,
    Reboot,
    Halt,
}

impl std::fmt::Display for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PowerOff => "power off",
            Self::Reboot => "reboot",
            Self::Halt => "halt",
        })
    }
}

/// A failed host operation, naming what was attempted.
#[derive(Debug, thiserror::Error)]
#[error("{op} {target}: {source}")]
pub struct HostError {
    pub op: &'static str,
    pub target: String,
    #[source]
    pub source: io::Error,
}

impl HostError {
    fn new(op: &'static str, target: impl AsRef<Path>, source: impl Into<io::Error>) -> Self {
        Self {
            op,
            target: target.as_ref().display().to_string(),
            source: source.into(),
        }
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// The privileged operations of PID 1.
pub trait Host: Send + Sync {
    fn create_dir_all(&self, path: &Path) -> HostResult<()>;
    /// Creates an empty file (a bind-mount target), keeping one that exists.
    fn touch(&self, path: &Path) -> HostResult<()>;
    fn is_mountpoint(&self, path: &Path) -> HostResult<bool>;
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> HostResult<()>;
    fn umount(&self, target: &Path, flags: MntFlags) -> HostResult<()>;
    /// Backs a read-only loop device with `file`; returns the device path.
    fn attach_loop(&self, file: &Path) -> HostResult<PathBuf>;
    /// Makes `new_root` (already a mount point, current directory) the root.
    fn chroot_here(&self, new_root: &Path) -> HostResult<()>;
    fn set_child_subreaper(&self) -> HostResult<()>;
    /// ctrl-alt-del then sends SIGINT to PID 1 instead of rebooting at once.
    fn disable_ctrl_alt_del(&self) -> HostResult<()>;
    fn sethostname(&self, name: &str) -> HostResult<()>;
    fn sync(&self);
    /// Does not return on success.
    fn reboot(&self, how: Shutdown) -> HostResult<()>;
    /// Sends `signal` to every process but PID 1 (`kill(-1)`).
    fn signal_all(&self, signal: Signal) -> HostResult<()>;
    /// Whether any process but PID 1 is left: kernel threads and
    /// zombies do not count.
    fn processes_left(&self) -> bool;
    /// Reaps every child that has exited, without waiting.
    fn reap_exited(&self);
    /// The mount table, as `/proc/self/mounts` lists it.
    fn mount_table(&self) -> HostResult<String>;
    /// One line on the console, for people and tests.
    fn console(&self, line: &str);
    /// The kernel prints to the console only messages more urgent than
    /// `level` (`/proc/sys/kernel/printk`'s first field).
    fn set_console_log_level(&self, level: u8) -> HostResult<()>;
}

/// The real host: one nix call per method.
#[derive(Debug, Default)]
pub struct RealHost;

impl Host for RealHost {
    fn create_dir_all(&self, path: &Path) -> HostResult<()> {
        std::fs::create_dir_all(path).map_err(|e| HostError::new("mkdir", path, e))
    }

    fn touch(&self, path: &Path) -> HostResult<()> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| HostError::new("create", path, e))
    }

    fn is_mountpoint(&self, path: &Path) -> HostResult<bool> {
        use std::os::unix::fs::MetadataExt;
        let parent = path.parent().unwrap_or(Path::new("/"));
        let here = std::fs::metadata(path).map_err(|e| HostError::new("stat", path, e))?;
        let above = std::fs::metadata(parent).map_err(|e| HostError::new("stat", parent, e))?;
        // A different device, or the root itself (same inode as its parent).
        Ok(here.dev() != above.dev() || here.ino() == above.ino())
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> HostResult<()> {
        nix::mount::mount(Some(source), target, fstype, flags, data)
            .map_err(|e| HostError::new("mount", target, e))
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> HostResult<()> {
        nix::mount::umount2(target, flags).map_err(|e| HostError::new("umount", target, e))
    }

    fn attach_loop(&self, file: &Path) -> HostResult<PathBuf> {
        crate::boot::loopdev::attach_read_only(file).map_err(|e| HostError::new("loop", file, e))
    }

    fn chroot_here(&self, new_root: &Path) -> HostResult<()> {
        nix::unistd::chdir(new_root).map_err(|e| HostError::new("chdir", new_root, e))?;
        nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(|e| HostError::new("move mount to /", new_root, e))?;
        nix::unistd::chroot(".").map_err(|e| HostError::new("chroot", new_root, e))?;
        nix::unistd::chdir("/").map_err(|e| HostError::new("chdir", "/", e))
    }

    fn set_child_subreaper(&self) -> HostResult<()> {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| HostError::new("prctl", "PR_SET_CHILD_SUBREAPER", e))
    }

    fn disable_ctrl_alt_del(&self) -> HostResult<()> {
        nix::sys::reboot::set_cad_enabled(false).map_err(|e| HostError::new("reboot", "CAD_OFF", e))
    }

    fn sethostname(&self, name: &str) -> HostResult<()> {
        nix::unistd::sethostname(name).map_err(|e| HostError::new("sethostname", name, e))
    }

    fn sync(&self) {
        nix::unistd::sync();
    }

    fn reboot(&self, how: Shutdown) -> HostResult<()> {
        use nix::sys::reboot::RebootMode;
        let mode = match how {
            Shutdown::PowerOff => RebootMode::RB_POWER_OFF,
            Shutdown::Reboot => RebootMode::RB_AUTOBOOT,
            Shutdown::Halt => RebootMode::RB_HALT_SYSTEM,
        };
        let err = nix::sys::reboot::reboot(mode).unwrap_err();
        Err(HostError::new("reboot", format!("{how:?}"), err))
    }

    fn signal_all(&self, signal: Signal) -> HostResult<()> {
        nix::sys::signal::kill(Pid::from_raw(-1), signal)
            .map_err(|e| HostError::new("kill -1", signal.as_str(), e))
    }

    fn processes_left(&self) -> bool {
        // kill(-1, 0) would answer yes while kernel threads exist, that
        // is always, and so every shutdown would wait out the grace.
        match std::fs::read_dir("/proc") {
            Ok(entries) => entries.flatten().any(|entry| {
                let pid = entry.file_name();
                let pid = pid.to_string_lossy();
                pid != "1"
                    && pid.bytes().all(|b| b.is_ascii_digit())
                    && std::fs::read_to_string(entry.path().join("stat"))
                        .is_ok_and(|stat| is_user_process(&stat))
            }),
            // Without /proc, signal 0 probes: ESRCH means none is left.
            Err(_) => {
                nix::sys::signal::kill(Pid::from_raw(-1), None) != Err(nix::errno::Errno::ESRCH)
            }
        }
    }

    fn reap_exited(&self) {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        while matches!(
            waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)),
            Ok(status) if status != WaitStatus::StillAlive
        ) {}
    }

    fn mount_table(&self) -> HostResult<String> {
        std::fs::read_to_string("/proc/self/mounts")
            .map_err(|e| HostError::new("read", "/proc/self/mounts", e))
    }

    fn console(&self, line: &str) {
        crate::console::line(line);
    }

    fn set_console_log_level(&self, level: u8) -> HostResult<()> {
        // The other three fields are kept when only the first is written.
        std::fs::write(PRINTK, format!("{level}\n")).map_err(|e| HostError::new("write", PRINTK, e))
    }
}

const PRINTK: &str = "/proc/sys/kernel/printk";

/// One recorded call on the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    CreateDirAll(PathBuf),
    Touch(PathBuf),
    Mount {
        source: String,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount {
        target: PathBuf,
        flags: MntFlags,
    },
    AttachLoop(PathBuf),
    ChrootHere(PathBuf),
    SetChildSubreaper,
    DisableCtrlAltDel,
    Sethostname(String),
    Sync,
    Reboot(Shutdown),
    SignalAll(Signal),
    MountTable,
    Console(String),
    ConsoleLogLevel(u8),
}

/// A host that records every call and can be told to fail.
#[derive(Debug, Default)]
pub struct FakeHost {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<HostCall>,
    fail_next: usize,
    mountpoints: Vec<PathBuf>,
    /// What [`Host::mount_table`] returns when set; else [`Self::mounted`].
    mount_table: Option<String>,
    /// What the calls mounted, in order: source, target, fstype.
    mounted: Vec<(String, PathBuf, String)>,
    /// Processes other than PID 1 that are running.
    processes: usize,
    /// Whether they ignore SIGTERM.
    stubborn: bool,
}

impl FakeState {
    /// Keeps the mount table as the kernel would: a move carries what is
    /// mounted below its source along.
    fn track_mount(
        &mut self,
        source: String,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
    ) {
        if flags.contains(MsFlags::MS_MOVE) {
            let from = PathBuf::from(source);
            for (_, mounted, _) in &mut self.mounted {
                if let Ok(below) = mounted.strip_prefix(&from) {
                    *mounted = target.join(below);
                }
            }
            return;
        }
        let fstype = fstype.unwrap_or_else(|| "none".to_owned());
        self.mounted.push((source, target, fstype));
    }

    /// After a chroot, what is below the new root is seen from it; the
    /// rest is out of sight.
    fn track_chroot(&mut self, new_root: &Path) {
        self.mounted = std::mem::take(&mut self.mounted)
            .into_iter()
            .filter_map(|(source, target, fstype)| {
                let below = target.strip_prefix(new_root).ok()?;
                Some((source, Path::new("/").join(below), fstype))
            })
            .collect();
    }

    fn table(&self) -> String {
        if let Some(table) = &self.mount_table {
            return table.clone();
        }
        self.mounted
            .iter()
            .map(|(source, target, fstype)| {
                format!("{source} {} {fstype} rw 0 0\n", target.display())
            })
            .collect()
    }
}

impl FakeHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<HostCall> {
        self.lock().calls.clone()
    }

    /// The next `n` calls that can fail return an error.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    /// Pretends `path` is already a mount point.
    pub fn add_mountpoint(&self, path: impl Into<PathBuf>) {
        self.lock().mountpoints.push(path.into());
    }

    /// What [`Host::mount_table`] returns, instead of what was mounted
    /// through this host.
    pub fn set_mount_table(&self, table: &str) {
        self.lock().mount_table = Some(table.to_owned());
    }

    /// Pretends `count` processes run; `stubborn` ones ignore SIGTERM.
    pub fn set_processes(&self, count: usize, stubborn: bool) {
        let mut state = self.lock();
        state.processes = count;
        state.stubborn = stubborn;
    }

    /// The lines written to the console so far.
    pub fn console_lines(&self) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter_map(|call| match call {
                HostCall::Console(line) => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, call: HostCall) -> HostResult<()> {
        let mut state = self.lock();
        let target = format!("{call:?}");
        state.calls.push(call.clone());
        if state.fail_next > 0 {
            state.fail_next -= 1;
            return Err(HostError::new(
                "fake",
                target,
                io::Error::other("injected failure"),
            ));
        }
        match call {
            HostCall::Mount {
                source,
                target,
                fstype,
                flags,
                ..
            } => {
                state.mountpoints.push(target.clone());
                state.track_mount(source, target, fstype, flags);
            }
            HostCall::Umount { target, .. } => {
                if let Some(at) = state.mounted.iter().rposition(|(_, t, _)| *t == target) {
                    state.mounted.remove(at);
                }
            }
            HostCall::ChrootHere(new_root) => state.track_chroot(&new_root),
            _ => {}
        }
        Ok(())
    }
}

impl Host for FakeHost {
    fn create_dir_all(&self, path: &Path) -> HostResult<()> {
        self.record(HostCall::CreateDirAll(path.to_path_buf()))
    }

    fn touch(&self, path: &Path) -> HostResult<()> {
        self.record(HostCall::Touch(path.to_path_buf()))
    }

    fn is_mountpoint(&self, path: &Path) -> HostResult<bool> {
        Ok(self.lock().mountpoints.iter().any(|m| m == path))
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> HostResult<()> {
        self.record(HostCall::Mount {
            source: source.to_string(),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> HostResult<()> {
        self.record(HostCall::Umount {
            target: target.to_path_buf(),
            flags,
        })
    }

    fn attach_loop(&self, file: &Path) -> HostResult<PathBuf> {
        self.record(HostCall::AttachLoop(file.to_path_buf()))?;
        Ok(PathBuf::from("/dev/loop0"))
    }

    fn chroot_here(&self, new_root: &Path) -> HostResult<()> {
        self.record(HostCall::ChrootHere(new_root.to_path_buf()))
    }

    fn set_child_subreaper(&self) -> HostResult<()> {
        self.record(HostCall::SetChildSubreaper)
    }

    fn disable_ctrl_alt_del(&self) -> HostResult<()> {
        self.record(HostCall::DisableCtrlAltDel)
    }

    fn sethostname(&self, name: &str) -> HostResult<()> {
        self.record(HostCall::Sethostname(name.to_string()))
    }

    fn sync(&self) {
        // Sync cannot fail; record it and ignore any injected failure.
        let _ = self.record(HostCall::Sync);
    }

    fn reboot(&self, how: Shutdown) -> HostResult<()> {
        self.record(HostCall::Reboot(how))
    }

    fn signal_all(&self, signal: Signal) -> HostResult<()> {
        self.record(HostCall::SignalAll(signal))?;
        let mut state = self.lock();
        if signal == Signal::SIGKILL || !state.stubborn {
            state.processes = 0;
        }
        Ok(())
    }

    fn processes_left(&self) -> bool {
        self.lock().processes > 0
    }

    fn reap_exited(&self) {}

    fn mount_table(&self) -> HostResult<String> {
        self.record(HostCall::MountTable)?;
        Ok(self.lock().table())
    }

    fn console(&self, line: &str) {
        // The console cannot fail; any injected failure is ignored.
        let _ = self.record(HostCall::Console(line.to_owned()));
    }

    fn set_console_log_level(&self, level: u8) -> HostResult<()> {
        self.record(HostCall::ConsoleLogLevel(level))
    }
}

/// Whether a `/proc/PID/stat` line is of a live user-space process: not
/// a kernel thread (`PF_KTHREAD` in its flags), not a zombie.
fn is_user_process(stat: &str) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    // The name, in parentheses, may hold spaces and `)`: fields are
    // counted after its last `)`. Then: state, ppid, pgrp, session,
    // tty_nr, tpgid, flags.
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = fields.split_whitespace();
    let state = fields.next();
    let flags = fields.nth(5).and_then(|f| f.parse::<u64>().ok());
    match (state, flags) {
        (Some(state), Some(flags)) => state != "Z" && state != "X" && flags & PF_KTHREAD == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_threads_and_zombies_are_not_processes_left_to_stop() {
        let sh = "42 (sh) S 1 42 42 34816 42 4194560 154 0 0 0 0 0 0 0 20 0 1 0 300 2240512";
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0";
        let worker = "7 (kworker/0:0H-events_highpri) I 2 0 0 0 -1 69238880 0 0 0 0";
        let zombie = "43 (sleep) Z 42 42 42 34816 42 4227084 0 0 0 0 0 0 0 0 20 0 1 0";
        let odd_name = "44 (a) b S c) R 1 44 44 0 -1 4194304 0 0 0 0";
        assert!(is_user_process(sh));
        assert!(!is_user_process(kthread));
        assert!(!is_user_process(worker));
        assert!(!is_user_process(zombie));
        assert!(is_user_process(odd_name));
        assert!(!is_user_process("garbage"));
        // This test's own process is one.
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(is_user_process(&own));
    }

    #[test]
    fn fake_records_calls_in_order() {
        let host = FakeHost::new();
        host.create_dir_all(Path::new("/a")).unwrap();
        host.sethostname("box").unwrap();
        assert_eq!(
            host.calls(),
            vec![
                HostCall::CreateDirAll("/a".into()),
                HostCall::Sethostname("box".into())
            ]
        );
    }

    #[test]
    fn fake_fails_exactly_the_next_n_calls() {
        let host = FakeHost::new();
        host.fail_next(2);
        let first = host.touch(Path::new("/x")).unwrap_err();
        assert_eq!(first.op, "fake");
        assert!(
            host.touch(Path::new("/x"))
                .is_err_and(|e| e.source.to_string() == "injected failure")
        );
        host.touch(Path::new("/x")).unwrap();
        assert_eq!(host.calls().len(), 3);
    }

    #[test]
    fn the_fake_mount_table_follows_mounts_moves_chroot_and_unmounts() {
        let host = FakeHost::new();
        let mount = |source: &str, target: &str, fstype: Option<&str>, flags| {
            host.mount(source, Path::new(target), fstype, flags, None)
                .unwrap();
        };
        mount("proc", "/proc", Some("proc"), MsFlags::empty());
        mount("tmpfs", "/run", Some("tmpfs"), MsFlags::empty());
        mount(
            "/dev/loop0",
            "/run/lower",
            Some("squashfs"),
            MsFlags::MS_RDONLY,
        );
        mount("overlay", "/sysroot", Some("overlay"), MsFlags::empty());
        mount("/run", "/sysroot/run", None, MsFlags::MS_MOVE);
        host.chroot_here(Path::new("/sysroot")).unwrap();
        mount("tmpfs", "/tmp", Some("tmpfs"), MsFlags::empty());
        host.umount(Path::new("/tmp"), MntFlags::empty()).unwrap();
        assert_eq!(
            host.mount_table().unwrap(),
            "tmpfs /run tmpfs rw 0 0\n\
             /dev/loop0 /run/lower squashfs rw 0 0\n\
             overlay / overlay rw 0 0\n"
        );
    }

    #[test]
    fn fake_remembers_mounts_as_mountpoints() {
        let host = FakeHost::new();
        assert!(!host.is_mountpoint(Path::new("/proc")).unwrap());
        host.mount(
            "proc",
            Path::new("/proc"),
            Some("proc"),
            MsFlags::empty(),
            None,
        )
        .unwrap();
        assert!(host.is_mountpoint(Path::new("/proc")).unwrap());
    }
}
