//! cloud-config applied to the machine: `rancher.sysctl`, `write_files`,
//! `mounts`, `bootcmd`, and `runcmd` with the user-data script. Every
//! entry is tried; each failure is reported naming the entry, and the rest
//! go on — a typo in one file must not cost the machine its console.
//!
//! A `write_files` entry that says `container: <service>` (RancherOS's way
//! to give a service its files) is written below
//! [`CONTAINER_FILES_DIR`]`/<service>`; resolving the service binds each
//! file there read-only over its path in the service's root
//! (`system_services::definition`), so it is there before the service
//! starts, for shipped and registry images alike.
//!
//! The console sees the machine as RancherOS's console did, where these
//! were applied: an entry without `container:` and each mount point are
//! shared with it by a link below `<CONTAINER_FILES_DIR>/console`, which
//! resolving the console turns into a read-write bind of the machine's
//! path ([`share_with_console`]); it also gets this system's
//! `/etc/os-release` there ([`console_os_release`]).
//!
//! `mounts` entries are mounted as fstab reads them: `swap` turns swap on,
//! `LABEL=`/`UUID=` sources are found by reading the block devices' first
//! bytes, an empty or `auto` type is probed (magic numbers, else the
//! kernel's block file systems in turn), `bind` binds a file or directory.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::mount::MsFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use os_config::datasource::block::{BlockDevices, SysBlockDevices};
use os_config::datasource::label::{HEAD_LEN, ext_uuid, filesystem_label};
use os_config::schema::{Mount, MountSource, StringOrList, Syslog, WriteFile};

pub use system_services::definition::CONTAINER_FILES_DIR;

use crate::host::Host;
use crate::supervise::reaper::Reaper;

/// Where the syslog service listens, in a directory it shares with the
/// host; the host's `/dev/log` links here (the console, with the host's
/// `/dev` and `/run`, logs through the same link).
pub const SYSLOG_SOCKET: &str = "/run/ros/syslog/log";

/// One entry that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("rancher.sysctl.{key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("write_files {path}: {source}")]
    WriteFile {
        path: String,
        #[source]
        source: WriteFileError,
    },
    #[error("write_files[{index}].container: `{service}` is not a defined service")]
    UnknownContainer { index: usize, service: String },
    #[error("rancher.syslog.forward: writing {path}: {source}")]
    SyslogForward {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounts {mount_point}: {source}")]
    Mount {
        mount_point: String,
        #[source]
        source: MountError,
    },
    #[error("{stage} `{command}`: {source}")]
    Command {
        stage: &'static str,
        command: String,
        #[source]
        source: CommandError,
    },
}

/// A file operation that failed, and on which path.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct FileError {
    /// What was being done (`creating`, `writing`...).
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    fn new(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self {
            action,
            path,
            source,
        }
    }
}

/// Why one `write_files` entry was not written (or not shared).
#[derive(Debug, thiserror::Error)]
pub enum WriteFileError {
    #[error(transparent)]
    Content(#[from] os_config::schema::files::DecodeError),
    #[error("{}: no parent directory", path.display())]
    NoDirectory { path: PathBuf },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("written, but not shared with the console: {0}")]
    NotShared(#[source] std::io::Error),
}

/// Why one `mounts` entry was not mounted (or swap not turned on).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Device(#[from] ResolveError),
    #[error("swap on {}: this kernel has no swap support", device.display())]
    NoSwapSupport { device: PathBuf },
    #[error("swap on {}: {source}", device.display())]
    Swap {
        device: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error("the file system type of {device} is not known; give one")]
    UnknownType { device: String },
    #[error("mounting {device} as {fstype}: {source}")]
    Type {
        device: String,
        fstype: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting {device}: no type worked ({})", tried(.tries))]
    NoTypeWorked {
        device: String,
        /// Each type tried, with the kernel's answer.
        tries: Vec<(String, std::io::Error)>,
    },
    #[error("the mount thread failed: {0}")]
    Thread(#[source] tokio::task::JoinError),
    #[error("no answer in {} s; left behind, the boot goes on", timeout.as_secs())]
    TimedOut { timeout: Duration },
}

/// `as ext4: …; as vfat: …`.
fn tried(tries: &[(String, std::io::Error)]) -> String {
    tries
        .iter()
        .map(|(fstype, error)| format!("as {fstype}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A `mounts` source no block device has.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("listing block devices for {shown}: {source}")]
    List {
        /// `LABEL=…` or `UUID=…`.
        shown: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no block device has {shown}")]
    NotFound { shown: String },
}

/// Why a command (`bootcmd`, `runcmd`, mke2fs) did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the command is empty")]
    Empty,
    #[error("its log: {0}")]
    Log(#[source] FileError),
    #[error("starting {program}: {source}")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("still running after {timeout:?}; killed (output in {})", log.display())]
    TimedOut { timeout: Duration, log: PathBuf },
    #[error("exited with {code} (output in {})", log.display())]
    Exited { code: i32, log: PathBuf },
    #[error("its exit was lost")]
    ExitLost,
}

/// Sets each `key: value` by writing `/proc/sys/<key with dots as slashes>`.
pub fn sysctl<'a>(
    proc_sys: &Path,
    settings: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<ApplyError> {
    settings
        .into_iter()
        .filter_map(|(key, value)| {
            // The dots of a key are its path; a key never climbs out.
            let relative: PathBuf = key
                .split('.')
                .filter(|part| !part.is_empty() && *part != "..")
                .collect();
            std::fs::write(proc_sys.join(relative), value)
                .err()
                .map(|source| ApplyError::Sysctl {
                    key: key.clone(),
                    source,
                })
        })
        .collect()
}

/// Where `write_files` entries go.
#[derive(Debug)]
pub struct FileTargets<'a> {
    /// The machine's `/`, for entries without `container:`.
    pub root: &'a Path,
    /// [`CONTAINER_FILES_DIR`]: one directory per service below it.
    pub container_files: &'a Path,
    /// The defined services (enabled or not).
    pub services: &'a BTreeSet<String>,
}

/// Writes every entry, each given with its index in `write_files`: into
/// the machine's root, or, with `container:`, into that service's
/// directory below `container_files`.
pub fn write_files(targets: &FileTargets, files: &[(usize, WriteFile)]) -> Vec<ApplyError> {
    // Here because write_files runs at every boot before any service
    // starts: the console's os-release is there when it first starts.
    if let Err(error) = console_os_release(targets.container_files) {
        tracing::warn!("the console's /etc/os-release: {error}");
    }
    files
        .iter()
        .filter_map(|(index, file)| {
            let root = match file.container.as_deref() {
                None => targets.root.to_path_buf(),
                // A defined service's name is a plain file name: it cannot
                // climb out of the directory.
                Some(service) if targets.services.contains(service) => {
                    targets.container_files.join(service)
                }
                Some(service) => {
                    return Some(ApplyError::UnknownContainer {
                        index: *index,
                        service: service.to_string(),
                    });
                }
            };
            if let Err(source) = write_file(&root, file) {
                return Some(ApplyError::WriteFile {
                    path: file.path.as_str().to_string(),
                    source,
                });
            }
            if file.container.is_none() {
                // RancherOS wrote these in the console: there they are.
                let path = Path::new(file.path.as_str());
                let on_machine = targets.root.join(path.strip_prefix("/").unwrap_or(path));
                if let Err(error) = share_with_console(targets.container_files, path, &on_machine) {
                    return Some(ApplyError::WriteFile {
                        path: file.path.as_str().to_string(),
                        source: WriteFileError::NotShared(error),
                    });
                }
            }
            None
        })
        .collect()
}

/// The operating system's name and version, as `/etc/os-release` gives
/// them (os-release(5)); the version is this binary's.
pub fn os_release() -> String {
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "NAME=\"ros\"\nID=ros\nVERSION=\"{version}\"\nVERSION_ID={version}\n\
         PRETTY_NAME=\"ros {version}\"\n"
    )
}

/// Gives the console [`os_release`] as its `/etc/os-release`, among its
/// files below `container_files`, whatever its image ships.
pub fn console_os_release(container_files: &Path) -> Result<(), FileError> {
    let dir = container_files.join(CONSOLE).join("etc");
    let path = dir.join("os-release");
    if std::fs::read_to_string(&path).is_ok_and(|text| text == os_release()) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(FileError::new("creating", &dir))?;
    // A link left by a write_files entry for this path gives way.
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        std::fs::remove_file(&path).map_err(FileError::new("removing the link", &path))?;
    }
    std::fs::write(&path, os_release()).map_err(FileError::new("writing", &path))
}

/// The rsyslog drop-in `rancher.syslog.forward` becomes, in the syslog
/// service's root.
pub const SYSLOG_FORWARD_FILE: &str = "etc/rsyslog.d/50-forward.conf";

/// Gives the syslog service the drop-in that forwards to
/// `rancher.syslog.forward`'s targets, as its own file below
/// `container_files`, or removes it when there are none.
pub fn syslog_forward(container_files: &Path, syslog: &Syslog) -> Result<(), ApplyError> {
    let path = container_files.join("syslog").join(SYSLOG_FORWARD_FILE);
    let fail = |source| ApplyError::SyslogForward {
        path: path.clone(),
        source,
    };
    match syslog.rsyslog_conf() {
        Some(conf) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(fail)?;
            }
            std::fs::write(&path, conf).map_err(fail)
        }
        None => match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(fail(error)),
            _ => Ok(()),
        },
    }
}

/// Makes `dev_log` a link to `socket` (replacing what was there), so
/// `logger` and syslog(3) on the host reach the syslog service.
pub fn link_dev_log(dev_log: &Path, socket: &Path) -> std::io::Result<()> {
    if std::fs::read_link(dev_log).is_ok_and(|target| target == socket) {
        return Ok(());
    }
    match std::fs::remove_file(dev_log) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    std::os::unix::fs::symlink(socket, dev_log)
}

fn write_file(root: &Path, file: &WriteFile) -> Result<(), WriteFileError> {
    let content = file.decoded_content()?;
    // The schema resolved the owner to ids (and refused unknown names).
    let (uid, gid) = file
        .owner
        .as_ref()
        .map_or((0, 0), |owner| (owner.uid(), owner.gid()));
    let mode = file.permissions.map_or(0o644, |mode| mode.bits());
    let path = root.join(file.path.as_str().trim_start_matches('/'));
    let dir = path
        .parent()
        .ok_or_else(|| WriteFileError::NoDirectory { path: path.clone() })?;
    std::fs::create_dir_all(dir).map_err(FileError::new("creating", dir))?;
    // Written beside and renamed over: a reader sees the old file or the new.
    let temp = dir.join(format!(
        ".{}.ros-new",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        std::io::Write::write_all(&mut out, &content)?;
        out.sync_all()?;
        // The umask may have narrowed the mode; the file gets what was asked.
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::chown(&temp, Some(uid), Some(gid))?;
        std::fs::rename(&temp, &path)
    })();
    written.map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        WriteFileError::File(FileError {
            action: "writing",
            path,
            source,
        })
    })
}

/// `user[:group]`, numeric or `root`: the host root has no other users.
/// Turns a swap device on: the kernel's `swapon(2)`, behind a seam so
/// the mount logic is tested without root.
pub trait SwapOn {
    fn swapon(&self, device: &Path) -> std::io::Result<()>;
}

/// The real `swapon(2)`.
#[derive(Debug, Default)]
pub struct KernelSwap;

impl SwapOn for KernelSwap {
    fn swapon(&self, device: &Path) -> std::io::Result<()> {
        let path = std::ffi::CString::new(device.as_os_str().as_encoded_bytes())?;
        // SAFETY: `path` is a NUL-terminated string that lives across the
        // call; swapon(2) only reads it.
        let rc = unsafe { libc::swapon(path.as_ptr(), 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// What mounting needs besides the host.
pub struct MountContext<'a> {
    /// Where `LABEL=`/`UUID=` sources are looked for and types probed.
    pub devices: &'a dyn BlockDevices,
    pub swap: &'a dyn SwapOn,
    /// `/proc/filesystems`, as [`KernelFilesystems::parse`] reads it.
    pub filesystems: KernelFilesystems,
    /// [`CONTAINER_FILES_DIR`]: each mount point is shared with the
    /// console from below `<dir>/console` ([`share_with_console`]).
    pub container_files: &'a Path,
}

impl std::fmt::Debug for MountContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountContext")
            .field("devices", &self.devices)
            .field("filesystems", &self.filesystems)
            .field("container_files", &self.container_files)
            .finish_non_exhaustive()
    }
}

/// The file systems the kernel knows, from `/proc/filesystems`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFilesystems {
    /// Those that live on a device (no `nodev`), in the kernel's order:
    /// what `auto` tries when probing finds nothing.
    pub block: Vec<String>,
    /// Every one, `tmpfs` and `proc` included.
    pub all: Vec<String>,
}

impl KernelFilesystems {
    /// Reads lines like `nodev\ttmpfs` and `\text4`.
    pub fn parse(text: &str) -> Self {
        let mut found = Self::default();
        for line in text.lines() {
            let (nodev, name) = match line.split_once('\t') {
                Some((flag, name)) => (flag.trim() == "nodev", name.trim()),
                None => (false, line.trim()),
            };
            if name.is_empty() {
                continue;
            }
            if !nodev {
                found.block.push(name.to_owned());
            }
            found.all.push(name.to_owned());
        }
        found
    }

    /// The running kernel's (none when /proc cannot be read).
    pub fn running() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/filesystems").unwrap_or_default())
    }
}

/// Mounts each entry, swap included, on the running machine; mount
/// points are created and shared with the console.
pub fn mounts(host: &dyn Host, entries: &[Mount]) -> Vec<ApplyError> {
    let devices = SysBlockDevices::default();
    let context = MountContext {
        devices: &devices,
        swap: &KernelSwap,
        filesystems: KernelFilesystems::running(),
        container_files: Path::new(CONTAINER_FILES_DIR),
    };
    mounts_with(host, &context, entries)
}

/// [`mounts`], each entry given at most `timeout`. A mount is a system
/// call that cannot be interrupted: one that hangs is left to its thread,
/// reported, and the boot goes on.
pub async fn mounts_bounded(
    host: &Arc<dyn Host>,
    entries: &[Mount],
    timeout: Duration,
) -> Vec<ApplyError> {
    let mut errors = Vec::new();
    for entry in entries {
        let host = Arc::clone(host);
        let one = entry.clone();
        let mounted = tokio::task::spawn_blocking(move || mounts(&*host, &[one]));
        match tokio::time::timeout(timeout, mounted).await {
            Ok(Ok(failed)) => errors.extend(failed),
            Ok(Err(join)) => errors.push(ApplyError::Mount {
                mount_point: entry.mount_point.clone(),
                source: MountError::Thread(join),
            }),
            Err(_) => errors.push(ApplyError::Mount {
                mount_point: entry.mount_point.clone(),
                source: MountError::TimedOut { timeout },
            }),
        }
    }
    errors
}

/// [`mounts`] with its devices, swap and file systems given.
pub fn mounts_with(host: &dyn Host, context: &MountContext, entries: &[Mount]) -> Vec<ApplyError> {
    entries
        .iter()
        .filter_map(|entry| {
            mount(host, context, entry)
                .err()
                .map(|source| ApplyError::Mount {
                    mount_point: if entry.mount_point.is_empty() {
                        entry.device.clone()
                    } else {
                        entry.mount_point.clone()
                    },
                    source,
                })
        })
        .collect()
}

/// What one `mounts` entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MountKind {
    /// `swap` as the type: the mount point does not matter.
    Swap,
    /// No mount point (`""` or `none`): nothing to do (the checker warns).
    Nothing,
    /// `bind`/`rbind` among the options: the source is a path.
    Bind,
    /// A file system on a device or a virtual one.
    Filesystem,
}

fn kind(entry: &Mount) -> MountKind {
    let options: Vec<&str> = entry.options.split(',').collect();
    if entry.is_swap() {
        MountKind::Swap
    } else if entry.skipped() {
        MountKind::Nothing
    } else if options.contains(&"bind") || options.contains(&"rbind") {
        MountKind::Bind
    } else {
        MountKind::Filesystem
    }
}

fn mount(host: &dyn Host, context: &MountContext, entry: &Mount) -> Result<(), MountError> {
    let kind = kind(entry);
    if kind == MountKind::Nothing {
        return Ok(());
    }
    let target = Path::new(&entry.mount_point);
    let (flags, data) = mount_options(&entry.options);
    let data = (!data.is_empty()).then_some(data.as_str());
    match kind {
        MountKind::Nothing => return Ok(()),
        MountKind::Swap => {
            let device = resolve_device(context.devices, &entry.source())?;
            return match context.swap.swapon(&device) {
                // Already on (a second apply): what was asked.
                Err(error) if error.raw_os_error() == Some(libc::EBUSY) => Ok(()),
                Err(error) if error.raw_os_error() == Some(libc::ENOSYS) => {
                    Err(MountError::NoSwapSupport { device })
                }
                Err(source) => Err(MountError::Swap { device, source }),
                Ok(()) => Ok(()),
            };
        }
        MountKind::Bind => {
            // A file is bound over a file: the target must be one too.
            if Path::new(&entry.device).is_file() {
                if let Some(dir) = target.parent() {
                    host.create_dir_all(dir)?;
                }
                host.touch(target)?;
            } else {
                host.create_dir_all(target)?;
            }
            host.mount(&entry.device, target, None, flags, None)?;
            // The kernel ignores ro and the like on the bind itself.
            let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
            if !extra.is_empty() {
                host.mount(
                    &entry.device,
                    target,
                    None,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra,
                    None,
                )?;
            }
        }
        MountKind::Filesystem => {
            host.create_dir_all(target)?;
            let source = resolve_device(context.devices, &entry.source())?
                .display()
                .to_string();
            let candidates = fstype_candidates(context, &source, entry);
            let mut tries = Vec::new();
            let mounted = candidates.iter().any(|fstype| {
                match host.mount(&source, target, Some(fstype), flags, data) {
                    Ok(()) => true,
                    Err(error) => {
                        tries.push((fstype.clone(), error.source));
                        false
                    }
                }
            });
            if !mounted {
                return Err(match tries.len() {
                    0 => MountError::UnknownType { device: source },
                    1 => {
                        let (fstype, source_error) = tries.remove(0);
                        MountError::Type {
                            device: source,
                            fstype,
                            source: source_error,
                        }
                    }
                    _ => MountError::NoTypeWorked {
                        device: source,
                        tries,
                    },
                });
            }
        }
    }
    if let Err(error) = share_with_console(context.container_files, target, target) {
        tracing::warn!(
            "mounts {}: not shared with the console: {error}",
            target.display()
        );
    }
    Ok(())
}

/// The types to try for `source`: the one given; for `auto` or none, the
/// one its first bytes show, a virtual file system it names (`tmpfs`),
/// else every block file system of the kernel in turn.
fn fstype_candidates(context: &MountContext, source: &str, entry: &Mount) -> Vec<String> {
    if !entry.probes_fstype() {
        return vec![entry.fstype.clone()];
    }
    if context.filesystems.all.iter().any(|known| known == source) {
        return vec![source.to_owned()];
    }
    let head = context
        .devices
        .read_head(Path::new(source), HEAD_LEN)
        .unwrap_or_default();
    match probe_fstype(&head) {
        Some(found) => vec![found.to_owned()],
        None => context.filesystems.block.clone(),
    }
}

/// The file system a device's first bytes show, by its magic number.
pub fn probe_fstype(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| {
        head.get(offset..offset + magic.len())
            .is_some_and(|found| found == magic)
    };
    if at(1024 + 56, &[0x53, 0xEF]) {
        // ext2, ext3 and ext4 all mount with the ext4 driver.
        Some("ext4")
    } else if at(0, b"XFSB") {
        Some("xfs")
    } else if at(0x8001, b"CD001") {
        Some("iso9660")
    } else if at(510, &[0x55, 0xAA]) && (at(0x36, b"FAT") || at(0x52, b"FAT")) {
        Some("vfat")
    } else if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
        Some("swap")
    } else {
        None
    }
}

/// The device a `mounts` source names: a path as it is, `LABEL=` and
/// `UUID=` found among the block devices by their file system.
pub fn resolve_device(
    devices: &dyn BlockDevices,
    source: &MountSource,
) -> Result<PathBuf, ResolveError> {
    let shown = match source {
        MountSource::Path(path) => return Ok(PathBuf::from(path)),
        MountSource::Label(label) => format!("LABEL={label}"),
        MountSource::Uuid(uuid) => format!("UUID={uuid}"),
    };
    let listed = match devices.list() {
        Ok(listed) => listed,
        Err(source) => return Err(ResolveError::List { shown, source }),
    };
    listed
        .into_iter()
        .find(|device| {
            devices
                .read_head(device, HEAD_LEN)
                .is_ok_and(|head| has_source(&head, source))
        })
        .ok_or(ResolveError::NotFound { shown })
}

/// Whether a device's first bytes show the file system `source` names.
fn has_source(head: &[u8], source: &MountSource) -> bool {
    match source {
        MountSource::Path(_) => false,
        MountSource::Label(label) => {
            filesystem_label(head).is_some_and(|(_, found)| found.eq_ignore_ascii_case(label))
        }
        MountSource::Uuid(uuid) => {
            ext_uuid(head).is_some_and(|found| found.eq_ignore_ascii_case(uuid))
        }
    }
}

/// The console's own name, whose files below [`CONTAINER_FILES_DIR`]
/// follow the machine's.
pub const CONSOLE: &str = "console";

/// Shares `host_path` of the machine with the console at `path`: a link
/// `<container_files>/console/<path>` to it, which resolving the console
/// turns into a read-write bind (RancherOS wrote these files and made
/// these mounts in the console itself). Replaces what was there.
pub fn share_with_console(
    container_files: &Path,
    path: &Path,
    host_path: &Path,
) -> std::io::Result<()> {
    let link = container_files
        .join(CONSOLE)
        .join(path.strip_prefix("/").unwrap_or(path));
    if std::fs::read_link(&link).is_ok_and(|target| target == host_path) {
        return Ok(());
    }
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&link)?,
        Ok(_) => std::fs::remove_file(&link)?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(host_path, &link)
}

/// fstab options: the ones the kernel takes as flags, the rest as data.
pub fn mount_options(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "defaults" | "rw" | "auto" | "noauto" | "nofail" | "_netdev" => {}
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// The program and arguments of a command: a string runs through
/// `sh -c`, a list is the argv itself.
pub fn argv(command: &StringOrList) -> Vec<String> {
    match command {
        StringOrList::String(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        StringOrList::List(argv) => argv.clone(),
    }
}

/// How long one `bootcmd` command may run. bootcmd holds up every
/// service and the console, so a hung one must not hold them for ever; a
/// minute is plenty for what bootcmd is for (a setting, a module, a
/// partition), and a hung command costs one minute per boot.
pub const BOOTCMD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `runcmd` command (or the user-data script) may run. It
/// holds up nothing but the commands after it, so it gets longer: a
/// download or an image pull fits.
pub const RUNCMD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long one `mounts` entry may take: a disk that does not answer
/// must not keep the boot from the console.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `commands` one after another (a later one may depend on an
/// earlier), their output appended to `log`; one that runs longer than
/// `timeout` is killed (its whole process group) and reported.
pub async fn run_commands(
    reaper: &Reaper,
    stage: &'static str,
    commands: &[Vec<String>],
    log: &Path,
    timeout: Duration,
) -> Vec<ApplyError> {
    let mut errors = Vec::new();
    for argv in commands {
        let shown = argv.join(" ");
        if let Err(source) = run_command_bounded(reaper, argv, log, timeout).await {
            errors.push(ApplyError::Command {
                stage,
                command: shown,
                source,
            });
        }
    }
    errors
}

/// Runs one command, its output appended to `log`; says why it failed.
/// Past `timeout` its process group is killed: it runs in a group of its
/// own, so a `sh -c` line takes its children with it.
pub async fn run_command_bounded(
    reaper: &Reaper,
    argv: &[String],
    log: &Path,
    timeout: Duration,
) -> Result<(), CommandError> {
    let (program, args) = argv.split_first().ok_or(CommandError::Empty)?;
    let log_error = |action| move |source| CommandError::Log(FileError::new(action, log)(source));
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(log_error("creating the directory of"))?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(log_error("opening"))?;
    let err = out.try_clone().map_err(log_error("sharing"))?;
    let spawned = reaper
        .spawn(
            Command::new(program)
                .args(args)
                .env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
                .env("HOME", "/root")
                .current_dir("/")
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        )
        .map_err(|source| CommandError::Start {
            program: program.clone(),
            source,
        })?;
    let mut exit = spawned.exit;
    let status = match tokio::time::timeout(timeout, &mut exit).await {
        Ok(status) => status,
        Err(_) => {
            let group = Pid::from_raw(-i32::try_from(spawned.pid).unwrap_or(i32::MAX));
            // The group may be gone already: then there is nothing to kill.
            let _ = kill(group, Signal::SIGKILL);
            let _ = exit.await;
            return Err(CommandError::TimedOut {
                timeout,
                log: log.to_owned(),
            });
        }
    };
    match status {
        Ok(0) => Ok(()),
        Ok(code) => Err(CommandError::Exited {
            code,
            log: log.to_owned(),
        }),
        Err(_) => Err(CommandError::ExitLost),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::host::{FakeHost, HostCall};

    fn files(yaml: &str) -> Vec<(usize, WriteFile)> {
        serde_norway::from_str::<Vec<WriteFile>>(yaml)
            .unwrap()
            .into_iter()
            .enumerate()
            .collect()
    }

    /// The machine's root at `root`, services' files below `root/run/files`,
    /// `syslog` and `ntp` defined.
    fn write_files(root: &Path, files: &[(usize, WriteFile)]) -> Vec<ApplyError> {
        let container_files = root.join("run/files");
        super::write_files(
            &FileTargets {
                root,
                container_files: &container_files,
                services: &["syslog", "ntp"].map(String::from).into(),
            },
            files,
        )
    }

    #[test]
    fn files_are_written_with_their_mode_and_content() {
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /etc/motd\n  content: hello\n  permissions: '0600'\n- path: /opt/x/y.sh\n  encoding: b64\n  content: ZWNobyBoaQo=\n  permissions: '0755'\n  owner: root:root\n",
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let motd = root.path().join("etc/motd");
        assert_eq!(std::fs::read_to_string(&motd).unwrap(), "hello");
        assert_eq!(
            std::fs::metadata(&motd).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let script = root.path().join("opt/x/y.sh");
        assert_eq!(std::fs::read_to_string(&script).unwrap(), "echo hi\n");
        assert_eq!(
            std::fs::metadata(&script).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    #[test]
    fn a_bad_entry_is_named_and_the_others_are_written() {
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /etc/a\n  content: x\n  owner: root\n- path: /etc/b\n  content: '!!'\n  encoding: b64\n- path: /etc/c\n  content: ok\n",
            ),
        );
        // (An unknown owner no longer gets this far: the schema refuses it
        // with its key path, see os-config's schema::owner.)
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("write_files /etc/b: content is not valid base64"),
            "{}",
            shown[0]
        );
        assert!(!root.path().join("etc/b").exists());
        for (file, content) in [("etc/a", "x"), ("etc/c", "ok")] {
            assert_eq!(
                std::fs::read_to_string(root.path().join(file)).unwrap(),
                content
            );
        }
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(root.path().join("etc")).unwrap().count(),
            2
        );
    }

    #[test]
    fn a_container_entry_lands_in_that_services_directory_with_its_mode_and_owner() {
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /etc/openntpd/ntpd.conf\n  container: ntp\n  content: 'server 10.0.2.2'\n  permissions: '0640'\n  owner: '0:101'\n",
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let written = root.path().join("run/files/ntp/etc/openntpd/ntpd.conf");
        assert_eq!(
            std::fs::read_to_string(&written).unwrap(),
            "server 10.0.2.2"
        );
        let meta = std::fs::metadata(&written).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 101);
        // Not on the machine's own root.
        assert!(!root.path().join("etc/openntpd").exists());
    }

    #[test]
    fn a_file_without_container_is_shared_with_the_console_and_a_console_one_is_its_own() {
        // RancherOS's write_files test: /test for the machine (and so the
        // console), /test2 for the console alone, /test for ntp.
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /test\n  content: console content\n- path: /test2\n  container: console\n  content: console content\n- path: /test\n  container: ntp\n  content: ntp content\n",
            ),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        // `console` is not among the fixture's services: named, not written.
        assert_eq!(
            errors[0].to_string(),
            "write_files[1].container: `console` is not a defined service"
        );
        let console = root.path().join("run/files/console");
        assert_eq!(
            std::fs::read_link(console.join("test")).unwrap(),
            root.path().join("test")
        );
        assert_eq!(
            std::fs::read_to_string(console.join("test")).unwrap(),
            "console content"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("run/files/ntp/test")).unwrap(),
            "ntp content"
        );
        // Written again (user-data from the network): the same link.
        assert!(
            write_files(
                root.path(),
                &files("- path: /test\n  content: new content\n")
            )
            .is_empty()
        );
        assert_eq!(
            std::fs::read_to_string(console.join("test")).unwrap(),
            "new content"
        );
    }

    #[test]
    fn the_console_gets_an_os_release_naming_the_system_and_its_version() {
        let root = tempfile::tempdir().unwrap();
        assert!(write_files(root.path(), &[]).is_empty());
        let text =
            std::fs::read_to_string(root.path().join("run/files/console/etc/os-release")).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        for line in [
            "NAME=\"ros\"".to_string(),
            "ID=ros".to_string(),
            format!("VERSION=\"{version}\""),
            format!("VERSION_ID={version}"),
            format!("PRETTY_NAME=\"ros {version}\""),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Resolving the console binds it over the image's own.
        let binds =
            system_services::definition::container_files(&root.path().join("run/files/console"))
                .unwrap();
        assert_eq!(binds[0].destination, Path::new("/etc/os-release"));
        assert!(binds[0].read_only);
    }

    #[test]
    fn a_container_entry_naming_no_service_is_an_error_naming_its_key() {
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /etc/a\n  content: a\n- path: /etc/x.conf\n  container: nosuch\n  content: x\n- path: /etc/rsyslog.d/a.conf\n  container: syslog\n  content: y\n",
            ),
        );
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["write_files[1].container: `nosuch` is not a defined service"]
        );
        assert!(!root.path().join("run/files/nosuch").exists());
        assert!(!root.path().join("etc/x.conf").exists());
        assert!(
            root.path()
                .join("run/files/syslog/etc/rsyslog.d/a.conf")
                .is_file()
        );
        assert!(root.path().join("etc/a").is_file());
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_named_with_the_entry() {
        let root = tempfile::tempdir().unwrap();
        // /etc is a file here: nothing can be written below it.
        std::fs::write(root.path().join("etc"), "").unwrap();
        let errors = write_files(root.path(), &files("- path: /etc/x/y.conf\n  content: x\n"));
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        let expected = format!(
            "write_files /etc/x/y.conf: creating {}: ",
            root.path().join("etc/x").display()
        );
        assert!(shown[0].starts_with(&expected), "{}", shown[0]);
        assert!(matches!(
            &errors[0],
            ApplyError::WriteFile {
                source: WriteFileError::File(FileError {
                    action: "creating",
                    ..
                }),
                ..
            }
        ));
    }

    #[test]
    fn the_console_s_os_release_names_the_directory_it_cannot_make() {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        std::fs::write(&files, "").unwrap();
        let error = console_os_release(&files).unwrap_err();
        assert_eq!(error.path, files.join("console/etc"));
        assert!(
            error.to_string().starts_with(&format!(
                "creating {}: ",
                files.join("console/etc").display()
            )),
            "{error}"
        );
    }

    #[test]
    fn syslog_forwarding_is_a_drop_in_in_the_syslog_services_files() {
        let dir = tempfile::tempdir().unwrap();
        let syslog: Syslog =
            serde_norway::from_str("forward: [udp://10.0.2.2:5514, tcp://10.0.2.2:5601]").unwrap();
        syslog_forward(dir.path(), &syslog).unwrap();
        let written = dir.path().join("syslog").join(SYSLOG_FORWARD_FILE);
        let conf = std::fs::read_to_string(&written).unwrap();
        assert!(
            conf.contains("target=\"10.0.2.2\" port=\"5514\" protocol=\"udp\""),
            "{conf}"
        );
        assert!(
            conf.contains("target=\"10.0.2.2\" port=\"5601\" protocol=\"tcp\""),
            "{conf}"
        );
        // Resolving the service binds it where rsyslog includes drop-ins.
        let binds =
            system_services::definition::container_files(&dir.path().join("syslog")).unwrap();
        assert_eq!(binds.len(), 1);
        assert_eq!(
            binds[0].destination,
            Path::new("/etc/rsyslog.d/50-forward.conf")
        );
        // No targets: no drop-in.
        syslog_forward(dir.path(), &Syslog::default()).unwrap();
        assert!(!written.exists());
    }

    #[test]
    fn dev_log_becomes_a_link_to_the_syslog_socket_replacing_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let dev_log = dir.path().join("log");
        let socket = Path::new(SYSLOG_SOCKET);
        std::fs::write(&dev_log, "old").unwrap();
        link_dev_log(&dev_log, socket).unwrap();
        assert_eq!(std::fs::read_link(&dev_log).unwrap(), socket);
        // Twice is the same.
        link_dev_log(&dev_log, socket).unwrap();
        assert_eq!(std::fs::read_link(&dev_log).unwrap(), socket);
    }

    #[test]
    fn sysctl_keys_are_paths_under_proc_sys() {
        let proc_sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(proc_sys.path().join("net/ipv4")).unwrap();
        let settings: BTreeMap<String, String> = [
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("no.such.key".to_string(), "1".to_string()),
        ]
        .into();
        let errors = sysctl(proc_sys.path(), &settings);
        assert_eq!(
            std::fs::read_to_string(proc_sys.path().join("net/ipv4/ip_forward")).unwrap(),
            "1"
        );
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("rancher.sysctl.no.such.key: "),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        assert_eq!(mount_options("defaults"), (MsFlags::empty(), String::new()));
        assert_eq!(
            mount_options("ro,noatime,size=10m,mode=755"),
            (
                MsFlags::MS_RDONLY | MsFlags::MS_NOATIME,
                "size=10m,mode=755".into()
            )
        );
    }

    /// Block devices from memory: path → first bytes.
    #[derive(Debug, Default)]
    struct Disks(BTreeMap<PathBuf, Vec<u8>>);

    impl BlockDevices for Disks {
        fn list(&self) -> std::io::Result<Vec<PathBuf>> {
            Ok(self.0.keys().cloned().collect())
        }

        fn read_head(&self, device: &Path, len: usize) -> std::io::Result<Vec<u8>> {
            let bytes = self.0.get(device).ok_or(std::io::ErrorKind::NotFound)?;
            Ok(bytes[..len.min(bytes.len())].to_vec())
        }
    }

    /// An ext4 head with `label` and a UUID starting ab12.
    fn ext4(label: &str) -> Vec<u8> {
        let mut head = vec![0u8; 4096];
        head[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        head[1024 + 104] = 0xab;
        head[1024 + 105] = 0x12;
        head[1024 + 120..1024 + 120 + label.len()].copy_from_slice(label.as_bytes());
        head
    }

    fn swap_head() -> Vec<u8> {
        let mut head = vec![0u8; 4096];
        head[4086..4096].copy_from_slice(b"SWAPSPACE2");
        head
    }

    /// Records the devices turned on; fails with `errno` when given.
    #[derive(Debug, Default)]
    struct Swaps {
        on: std::sync::Mutex<Vec<PathBuf>>,
        errno: Option<i32>,
    }

    impl SwapOn for Swaps {
        fn swapon(&self, device: &Path) -> std::io::Result<()> {
            self.on.lock().unwrap().push(device.to_path_buf());
            self.errno.map_or(Ok(()), |errno| {
                Err(std::io::Error::from_raw_os_error(errno))
            })
        }
    }

    const PROC_FILESYSTEMS: &str =
        "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n\text4\n\tvfat\n\tiso9660\n";

    fn entries(yaml: &str) -> Vec<Mount> {
        serde_norway::from_str(yaml).unwrap()
    }

    fn mount_call(source: &str, target: &str, fstype: Option<&str>, flags: MsFlags) -> HostCall {
        HostCall::Mount {
            source: source.into(),
            target: target.into(),
            fstype: fstype.map(Into::into),
            flags,
            data: None,
        }
    }

    fn with_context<T>(
        disks: &Disks,
        swaps: &Swaps,
        body: impl FnOnce(&MountContext, &Path) -> T,
    ) -> T {
        let files = tempfile::tempdir().unwrap();
        let context = MountContext {
            devices: disks,
            swap: swaps,
            filesystems: KernelFilesystems::parse(PROC_FILESYSTEMS),
            container_files: files.path(),
        };
        body(&context, files.path())
    }

    #[test]
    fn proc_filesystems_splits_block_from_virtual() {
        let found = KernelFilesystems::parse(PROC_FILESYSTEMS);
        assert_eq!(found.block, ["ext4", "vfat", "iso9660"]);
        assert_eq!(found.all.len(), 6);
        assert!(found.all.contains(&"tmpfs".to_string()));
    }

    #[test]
    fn mounts_create_the_target_and_report_failures() {
        let host = FakeHost::new();
        let disks = Disks::default();
        let list =
            entries("- [/dev/vdb, /mnt/data, ext4, 'noatime']\n- [tmpfs, /mnt/t, auto, 'size=1m']");
        with_context(&disks, &Swaps::default(), |context, files| {
            assert!(mounts_with(&host, context, &list).is_empty());
            let calls = host.calls();
            assert!(calls.contains(&mount_call(
                "/dev/vdb",
                "/mnt/data",
                Some("ext4"),
                MsFlags::MS_NOATIME
            )));
            // A source named like a virtual file system is one.
            assert!(calls.contains(&HostCall::Mount {
                source: "tmpfs".into(),
                target: "/mnt/t".into(),
                fstype: Some("tmpfs".into()),
                flags: MsFlags::empty(),
                data: Some("size=1m".into()),
            }));
            // The console sees both.
            assert_eq!(
                std::fs::read_link(files.join("console/mnt/data")).unwrap(),
                Path::new("/mnt/data")
            );
            assert_eq!(
                std::fs::read_link(files.join("console/mnt/t")).unwrap(),
                Path::new("/mnt/t")
            );
            host.fail_next(1);
            let errors = mounts_with(&host, context, &list[..1]);
            assert_eq!(errors.len(), 1);
            assert!(
                errors[0].to_string().starts_with("mounts /mnt/data: "),
                "{}",
                errors[0]
            );
        });
    }

    #[test]
    fn auto_and_empty_types_are_probed_from_the_device() {
        let host = FakeHost::new();
        let disks = Disks([("/dev/vdb".into(), ext4("DATA"))].into());
        // RancherOS's own mounts test: an empty type, auto, and auto with defaults.
        let list = entries(
            "- [/dev/vdb, /home/rancher/b, '', '']\n- [/dev/vdb, /home/rancher/c, auto, defaults]",
        );
        with_context(&disks, &Swaps::default(), |context, _| {
            assert!(mounts_with(&host, context, &list).is_empty());
        });
        for target in ["/home/rancher/b", "/home/rancher/c"] {
            assert!(
                host.calls().contains(&mount_call(
                    "/dev/vdb",
                    target,
                    Some("ext4"),
                    MsFlags::empty()
                )),
                "{target}: {:?}",
                host.calls()
            );
        }
    }

    #[test]
    fn a_type_probing_cannot_tell_falls_back_to_the_kernels_block_file_systems() {
        let disks = Disks([("/dev/vdc".into(), vec![0u8; 4096])].into());
        with_context(&disks, &Swaps::default(), |context, _| {
            let entry = |fstype: &str| Mount {
                device: "/dev/vdc".into(),
                mount_point: "/mnt/x".into(),
                fstype: fstype.into(),
                options: String::new(),
            };
            assert_eq!(
                fstype_candidates(context, "/dev/vdc", &entry("auto")),
                ["ext4", "vfat", "iso9660"]
            );
            assert_eq!(
                fstype_candidates(context, "/dev/vdc", &entry("xfs")),
                ["xfs"]
            );
        });
        // Every one failing is one error naming each try.
        let list = entries("- [/dev/vdc, /mnt/x, '', '']");
        let errors = with_context(&disks, &Swaps::default(), |context, files| {
            let errors = mounts_with(&FailingMounts(FakeHost::new()), context, &list);
            // Nothing mounted: nothing shared with the console.
            assert!(!files.join("console/mnt/x").exists());
            errors
        });
        assert_eq!(errors.len(), 1);
        let shown = errors[0].to_string();
        assert!(
            shown.starts_with("mounts /mnt/x: mounting /dev/vdc: no type worked (as ext4: "),
            "{shown}"
        );
        assert!(shown.contains("; as iso9660: "), "{shown}");
    }

    #[test]
    fn a_given_type_that_does_not_mount_names_the_device_and_the_type() {
        let disks = Disks::default();
        let list = entries("- [/dev/vdb, /mnt/data, ext4, '']");
        let errors = with_context(&disks, &Swaps::default(), |context, _| {
            mounts_with(&FailingMounts(FakeHost::new()), context, &list)
        });
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [format!(
                "mounts /mnt/data: mounting /dev/vdb as ext4: {}",
                std::io::Error::from_raw_os_error(libc::EINVAL)
            )]
        );
    }

    /// A host whose every mount fails (the file system is not any type).
    struct FailingMounts(FakeHost);

    impl Host for FailingMounts {
        fn create_dir_all(&self, path: &Path) -> crate::host::HostResult<()> {
            self.0.create_dir_all(path)
        }
        fn touch(&self, path: &Path) -> crate::host::HostResult<()> {
            self.0.touch(path)
        }
        fn is_mountpoint(&self, path: &Path) -> crate::host::HostResult<bool> {
            self.0.is_mountpoint(path)
        }
        fn mount(
            &self,
            source: &str,
            target: &Path,
            _: Option<&str>,
            _: MsFlags,
            _: Option<&str>,
        ) -> crate::host::HostResult<()> {
            Err(crate::host::HostError {
                op: "mount",
                target: format!("{source} on {}", target.display()),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            })
        }
        fn umount(
            &self,
            target: &Path,
            flags: nix::mount::MntFlags,
        ) -> crate::host::HostResult<()> {
            self.0.umount(target, flags)
        }
        fn attach_loop(&self, file: &Path) -> crate::host::HostResult<PathBuf> {
            self.0.attach_loop(file)
        }
        fn chroot_here(&self, new_root: &Path) -> crate::host::HostResult<()> {
            self.0.chroot_here(new_root)
        }
        fn set_child_subreaper(&self) -> crate::host::HostResult<()> {
            self.0.set_child_subreaper()
        }
        fn disable_ctrl_alt_del(&self) -> crate::host::HostResult<()> {
            self.0.disable_ctrl_alt_del()
        }
        fn sethostname(&self, name: &str) -> crate::host::HostResult<()> {
            self.0.sethostname(name)
        }
        fn sync(&self) {}
        fn reboot(&self, how: crate::host::Shutdown) -> crate::host::HostResult<()> {
            self.0.reboot(how)
        }
        fn signal_all(&self, signal: Signal) -> crate::host::HostResult<()> {
            self.0.signal_all(signal)
        }
        fn processes_left(&self) -> bool {
            self.0.processes_left()
        }
        fn reap_exited(&self) {}
        fn mount_table(&self) -> crate::host::HostResult<String> {
            self.0.mount_table()
        }
        fn console(&self, line: &str) {
            self.0.console(line);
        }
        fn set_console_log_level(&self, level: u8) -> crate::host::HostResult<()> {
            self.0.set_console_log_level(level)
        }
    }

    #[test]
    fn label_and_uuid_sources_are_found_among_the_block_devices() {
        let host = FakeHost::new();
        let disks = Disks(
            [
                ("/dev/vda".into(), vec![0u8; 4096]),
                ("/dev/vdb".into(), ext4("DATA")),
            ]
            .into(),
        );
        let list = entries(
            "- [LABEL=data, /mnt/a, auto, '']\n- ['UUID=AB120000-0000-0000-0000-000000000000', /mnt/b, ext4, '']\n- [LABEL=NOPE, /mnt/c, ext4, '']",
        );
        let errors = with_context(&disks, &Swaps::default(), |context, _| {
            mounts_with(&host, context, &list)
        });
        assert!(host.calls().contains(&mount_call(
            "/dev/vdb",
            "/mnt/a",
            Some("ext4"),
            MsFlags::empty()
        )));
        assert!(host.calls().contains(&mount_call(
            "/dev/vdb",
            "/mnt/b",
            Some("ext4"),
            MsFlags::empty()
        )));
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["mounts /mnt/c: no block device has LABEL=NOPE"]);
    }

    #[test]
    fn swap_entries_turn_swap_on_whatever_their_mount_point() {
        let disks = Disks([("/dev/vdb".into(), swap_head())].into());
        let swaps = Swaps::default();
        let host = FakeHost::new();
        // RancherOS wrote "" as the mount point; none and swap are seen too.
        let list = entries("- [/dev/vdb, '', swap, '']\n- [/dev/vdc, none, swap, sw]");
        let errors = with_context(&disks, &swaps, |context, _| {
            mounts_with(&host, context, &list)
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            *swaps.on.lock().unwrap(),
            [PathBuf::from("/dev/vdb"), PathBuf::from("/dev/vdc")]
        );
        assert!(host.calls().is_empty(), "{:?}", host.calls());
        // Already on is fine; a kernel without swap says so.
        for (errno, expected) in [
            (libc::EBUSY, None),
            (
                libc::ENOSYS,
                Some("mounts /dev/vdb: swap on /dev/vdb: this kernel has no swap support"),
            ),
        ] {
            let swaps = Swaps {
                errno: Some(errno),
                ..Swaps::default()
            };
            let errors = with_context(&disks, &swaps, |context, _| {
                mounts_with(&host, context, &list[..1])
            });
            let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(shown, expected.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_entry_without_a_mount_point_is_left_alone() {
        let host = FakeHost::new();
        let list = entries("- [/dev/vdb, none, ext4, '']\n- [/dev/vdb, '', auto, '']");
        let errors = with_context(&Disks::default(), &Swaps::default(), |context, _| {
            mounts_with(&host, context, &list)
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert!(host.calls().is_empty());
    }

    #[test]
    fn a_file_bound_over_a_path_gets_a_file_to_bind_over_and_read_only_is_a_remount() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("test");
        std::fs::write(&source, "test").unwrap();
        let host = FakeHost::new();
        let list = entries(&format!(
            "- [{0}, /home/rancher/test, '', bind]\n- [{1}, /srv/ro, '', 'bind,ro']",
            source.display(),
            dir.path().display()
        ));
        let errors = with_context(&Disks::default(), &Swaps::default(), |context, files| {
            let errors = mounts_with(&host, context, &list);
            assert_eq!(
                std::fs::read_link(files.join("console/home/rancher/test")).unwrap(),
                Path::new("/home/rancher/test")
            );
            errors
        });
        assert!(errors.is_empty(), "{errors:?}");
        let source = source.display().to_string();
        let calls = host.calls();
        assert!(
            calls.contains(&HostCall::Touch("/home/rancher/test".into())),
            "{calls:?}"
        );
        assert!(calls.contains(&mount_call(
            &source,
            "/home/rancher/test",
            None,
            MsFlags::MS_BIND
        )));
        let dir = dir.path().display().to_string();
        assert!(calls.contains(&mount_call(
            &dir,
            "/srv/ro",
            None,
            MsFlags::MS_BIND | MsFlags::MS_RDONLY
        )));
        assert!(calls.contains(&mount_call(
            &dir,
            "/srv/ro",
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY
        )));
    }

    #[test]
    fn probing_knows_the_common_file_systems_by_their_magic() {
        assert_eq!(probe_fstype(&ext4("")), Some("ext4"));
        assert_eq!(probe_fstype(&swap_head()), Some("swap"));
        let mut xfs = vec![0u8; 4096];
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(probe_fstype(&xfs), Some("xfs"));
        let mut fat = vec![0u8; 512];
        fat[510] = 0x55;
        fat[511] = 0xAA;
        fat[0x52..0x55].copy_from_slice(b"FAT");
        assert_eq!(probe_fstype(&fat), Some("vfat"));
        assert_eq!(probe_fstype(&[0u8; 4096]), None);
        assert_eq!(probe_fstype(&[]), None);
    }

    #[test]
    fn strings_run_through_the_shell_and_lists_as_argv() {
        assert_eq!(
            argv(&StringOrList::String("echo $HOME".into())),
            ["/bin/sh", "-c", "echo $HOME"]
        );
        assert_eq!(
            argv(&StringOrList::List(vec!["touch".into(), "/x".into()])),
            ["touch", "/x"]
        );
    }
}
