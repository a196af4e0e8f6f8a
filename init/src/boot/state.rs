//! The state partition (`rancher.state`): where the configuration
//! (`/var/lib/rancher`), `/home` and both containerd stores persist
//! across boots. It is found by `dev` (`LABEL=…`, `UUID=…` or a path); a
//! blank device listed in `autoformat` becomes one first. Without one the
//! machine runs from memory, as a live ISO does, and the containerd
//! stores get a tmpfs each ([`stores_in_memory`]).

use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::mount::MsFlags;
use os_config::datasource::BoxFuture;
use os_config::datasource::block::BlockDevices;
use os_config::datasource::label::{HEAD_LEN, ext_uuid, filesystem_label};
use os_config::schema::{DeviceKind, DeviceSpec, State};

use crate::apply::CommandError;
use crate::host::{Host, HostError};
use crate::supervise::reaper::Reaper;

/// Where the system and the user containerd keep images and container
/// snapshots, and the cluster agent its own containerd's (in k3s's data),
/// its pods' volumes and logs. Never the root's overlay: overlayfs refuses
/// an overlay as its upper layer, so no container snapshot could be
/// mounted there.
pub const CONTAINER_STORES: &[&str] = &[
    "var/lib/system-containerd",
    "var/lib/containerd",
    "var/lib/rancher/k3s",
    "var/lib/kubelet",
    "var/log/pods",
];
/// The directories that persist, below `/`: the configuration (k3s's data
/// and the cluster node's password with it), homes, the containerd
/// stores (pulled images and the user's containers survive a reboot),
/// the kubelet's directory, the system log (`/var/log`: rsyslog's files
/// and the services' logs in `ros/`) and, bound after it, the pods' logs.
pub const PERSISTENT: &[&str] = &[
    "var/lib/rancher",
    "home",
    "var/lib/system-containerd",
    "var/lib/containerd",
    "var/lib/kubelet",
    "var/log",
    "var/log/pods",
];
/// The label an autoformatted device gets when `dev` names none.
pub const DEFAULT_LABEL: &str = "RANCHER_STATE";
/// How long `wait: true` waits for the device (USB disks take a while).
pub const WAIT: Duration = Duration::from_secs(10);
/// A device is blank when this much of its start is zeros: no partition
/// table, no filesystem.
const BLANK_LEN: usize = 1 << 20;
/// The filesystem when neither the device nor `fstype` tells.
const DEFAULT_FSTYPE: &str = "ext4";

/// Where things are: `/run/ros/state` and `/` on the machine, a temporary
/// directory in tests.
#[derive(Debug, Clone)]
pub struct StatePaths {
    /// Where the partition is mounted.
    pub mount: PathBuf,
    /// The root the persistent directories are bound into.
    pub root: PathBuf,
    /// Where the partition's disk is looked up to grow it to the disk
    /// ([`super::grow`]); `None`: never grown (tests with fake devices).
    pub grow: Option<super::grow::GrowPaths>,
}

impl StatePaths {
    pub fn system() -> Self {
        Self {
            mount: PathBuf::from("/run/ros/state"),
            root: PathBuf::from("/"),
            grow: Some(super::grow::GrowPaths::system()),
        }
    }
}

/// Makes a filesystem on a device.
pub trait Formatter: Send + Sync {
    fn format<'a>(
        &'a self,
        device: &'a Path,
        label: &'a str,
    ) -> BoxFuture<'a, Result<(), CommandError>>;
}

/// `mke2fs -t ext4`, from the root image, its output in the boot log.
/// How long making the file system may take: ext4's lazy init makes it
/// seconds on any disk, so minutes mean a disk that does not answer.
pub const MKE2FS_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug)]
pub struct Mke2fs<'a> {
    pub reaper: &'a Reaper,
    pub log: &'a Path,
}

impl Formatter for Mke2fs<'_> {
    fn format<'a>(
        &'a self,
        device: &'a Path,
        label: &'a str,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        // e2fsprogs' (image-build puts it there); busybox's makes only ext2.
        let argv: Vec<String> = ["/sbin/mke2fs", "-t", "ext4", "-q", "-F", "-L", label]
            .iter()
            .map(ToString::to_string)
            .chain([device.display().to_string()])
            .collect();
        Box::pin(async move {
            crate::apply::run_command_bounded(self.reaper, &argv, self.log, MKE2FS_TIMEOUT).await
        })
    }
}

/// What came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOutcome {
    /// `rancher.state.dev` is not set.
    NotConfigured,
    /// No such device (and `required` is not set): running from memory.
    Missing { dev: DeviceSpec },
    /// Mounted, the persistent directories bound; `formatted` when it was
    /// blank and made now.
    Mounted { device: PathBuf, formatted: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "rancher.state.dev {dev}: no such device, and rancher.state.required is set{}",
        if *waited { format!(" (waited {} s)", WAIT.as_secs()) } else { String::new() }
    )]
    Required { dev: DeviceSpec, waited: bool },
    #[error("rancher.state.directory {0:?}: must stay inside the partition")]
    Directory(String),
    #[error("formatting {}: {source}", device.display())]
    Format {
        device: PathBuf,
        #[source]
        source: CommandError,
    },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The device `spec` names now, and the filesystem found on it.
fn find(spec: &DeviceKind, devices: &dyn BlockDevices) -> Option<(PathBuf, Option<&'static str>)> {
    let listed = || devices.list().unwrap_or_default();
    let fs_of = |head: &[u8]| filesystem_label(head).map(|(fs, _)| fs.mount_name());
    match spec {
        // A blank device is not a state partition yet.
        DeviceKind::Path(path) => {
            let head = devices.read_head(path, HEAD_LEN).ok()?;
            (!is_blank(&head)).then(|| (path.clone(), fs_of(&head)))
        }
        DeviceKind::Label(label) => listed().into_iter().find_map(|device| {
            let head = devices.read_head(&device, HEAD_LEN).ok()?;
            let (fs, found) = filesystem_label(&head)?;
            found
                .eq_ignore_ascii_case(label)
                .then(|| (device, Some(fs.mount_name())))
        }),
        // The schema gives the UUID in lower case, as `ext_uuid` reads it.
        DeviceKind::Uuid(uuid) => listed().into_iter().find_map(|device| {
            let head = devices.read_head(&device, HEAD_LEN).ok()?;
            (ext_uuid(&head).as_deref() == Some(uuid)).then(|| (device, fs_of(&head)))
        }),
    }
}

/// The label a formatted device gets so that `spec` finds it.
fn format_label(spec: &DeviceKind) -> &str {
    match spec {
        DeviceKind::Label(label) => label,
        DeviceKind::Path(_) | DeviceKind::Uuid(_) => DEFAULT_LABEL,
    }
}

/// The `autoformat` devices `spec` finds again once formatted: all for a
/// label (they get it), the one device a path names, none for a UUID (a
/// new filesystem has a new one).
fn formattable<'a>(spec: &DeviceKind, autoformat: &'a [String]) -> Vec<&'a str> {
    autoformat
        .iter()
        .map(String::as_str)
        .filter(|candidate| match spec {
            DeviceKind::Label(_) => true,
            DeviceKind::Path(path) => Path::new(candidate) == path,
            DeviceKind::Uuid(_) => false,
        })
        .collect()
}

/// Finds (waiting, formatting where asked), mounts and binds the state
/// partition.
pub async fn mount(
    host: &dyn Host,
    devices: &dyn BlockDevices,
    formatter: &dyn Formatter,
    state: &State,
    paths: &StatePaths,
) -> Result<StateOutcome, StateError> {
    // The schema checked the spec (and read an empty one as not set).
    let Some(dev) = &state.dev else {
        return Ok(StateOutcome::NotConfigured);
    };
    let spec = dev.kind();
    let directory = state_directory(state.directory.as_deref())?;
    let wait = if state.wait { WAIT } else { Duration::ZERO };
    let deadline = tokio::time::Instant::now() + wait;
    let mut formatted = false;
    let (device, found_fs) = loop {
        if let Some(found) = find(spec, devices) {
            break found;
        }
        // Only once the wait is over: a slow disk that is the state
        // partition must not lose to a blank one formatted meanwhile.
        let waited = tokio::time::Instant::now() >= deadline;
        if waited && let Some(blank) = first_blank(devices, &formattable(spec, &state.autoformat)) {
            tracing::info!("formatting {} as the state partition", blank.display());
            formatter
                .format(&blank, format_label(spec))
                .await
                .map_err(|source| StateError::Format {
                    device: blank.clone(),
                    source,
                })?;
            formatted = true;
            break (blank, Some(DEFAULT_FSTYPE));
        }
        if waited {
            if state.required {
                return Err(StateError::Required {
                    dev: dev.clone(),
                    waited: state.wait,
                });
            }
            return Ok(StateOutcome::Missing { dev: dev.clone() });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let fstype = match state.fstype.as_deref() {
        Some(fstype) if fstype != "auto" => fstype,
        _ => found_fs.unwrap_or(DEFAULT_FSTYPE),
    };
    // A disk larger than its table (the EC2 image on a bigger volume):
    // the partition grows first, its file system once mounted.
    if let Some(grow) = &paths.grow {
        super::grow::before_mount(grow, &device);
    }
    host.create_dir_all(&paths.mount)?;
    host.mount(
        &device.display().to_string(),
        &paths.mount,
        Some(fstype),
        MsFlags::MS_NOATIME,
        None,
    )?;
    if paths.grow.is_some() && fstype == "ext4" {
        super::grow::after_mount(&device, &paths.mount);
    }
    let state_root = paths.mount.join(directory);
    for dir in PERSISTENT {
        let persistent = state_root.join(dir);
        let live = paths.root.join(dir);
        // The first boot seeds the partition with what the image has,
        // under another name until complete, so a seed cut short is
        // made again.
        if !persistent.exists() {
            let seeding = persistent.with_extension("seeding");
            let _ = std::fs::remove_dir_all(&seeding);
            copy_tree(&live, &seeding)
                .and_then(|()| std::fs::rename(&seeding, &persistent))
                .map_err(|source| StateError::Io {
                    path: persistent.clone(),
                    source,
                })?;
        }
        host.create_dir_all(&live)?;
        host.mount(
            &persistent.display().to_string(),
            &live,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    Ok(StateOutcome::Mounted { device, formatted })
}

/// Without a state partition: a tmpfs for each containerd store below
/// `root`, a file system overlayfs takes as an upper layer.
pub fn stores_in_memory(host: &dyn Host, root: &Path) -> Result<(), HostError> {
    for dir in CONTAINER_STORES {
        let live = root.join(dir);
        host.create_dir_all(&live)?;
        host.mount(
            "tmpfs",
            &live,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0711"),
        )?;
    }
    Ok(())
}

/// `directory`, relative and inside the partition.
fn state_directory(directory: Option<&str>) -> Result<PathBuf, StateError> {
    let relative: PathBuf = Path::new(directory.unwrap_or(""))
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(StateError::Directory(
            directory.unwrap_or_default().to_owned(),
        ));
    }
    Ok(relative)
}

/// The first of `candidates` that exists and is blank.
fn first_blank(devices: &dyn BlockDevices, candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|device| {
        devices
            .read_head(device, BLANK_LEN)
            .is_ok_and(|head| is_blank(&head))
    })
}

fn is_blank(head: &[u8]) -> bool {
    !head.is_empty() && head.iter().all(|&b| b == 0)
}

/// Copies `from` (when it exists) to `to`, keeping modes, owners and links.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, lchown};
    std::fs::create_dir_all(to)?;
    let Ok(meta) = std::fs::symlink_metadata(from) else {
        return Ok(());
    };
    std::fs::set_permissions(to, meta.permissions())?;
    lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
            continue;
        }
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target)?;
        } else {
            continue;
        }
        let meta = entry.metadata()?;
        lchown(&target, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::host::{FakeHost, HostCall};

    /// Devices as byte strings; a formatter that writes an ext label.
    #[derive(Debug, Default)]
    struct FakeDisks(Mutex<BTreeMap<PathBuf, Vec<u8>>>);

    impl FakeDisks {
        fn with(disks: &[(&str, Vec<u8>)]) -> Self {
            Self(Mutex::new(
                disks
                    .iter()
                    .map(|(path, bytes)| (PathBuf::from(path), bytes.clone()))
                    .collect(),
            ))
        }
    }

    impl BlockDevices for FakeDisks {
        fn list(&self) -> io::Result<Vec<PathBuf>> {
            Ok(self.0.lock().unwrap().keys().cloned().collect())
        }

        fn read_head(&self, device: &Path, len: usize) -> io::Result<Vec<u8>> {
            let disks = self.0.lock().unwrap();
            let bytes = disks.get(device).ok_or(io::ErrorKind::NotFound)?;
            Ok(bytes[..len.min(bytes.len())].to_vec())
        }
    }

    impl Formatter for FakeDisks {
        fn format<'a>(
            &'a self,
            device: &'a Path,
            label: &'a str,
        ) -> BoxFuture<'a, Result<(), CommandError>> {
            Box::pin(async move {
                self.0
                    .lock()
                    .unwrap()
                    .insert(device.to_path_buf(), ext(label));
                Ok(())
            })
        }
    }

    fn ext(label: &str) -> Vec<u8> {
        let mut head = vec![0u8; 4096];
        head[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        head[1024 + 104] = 0xab;
        head[1024 + 120..1024 + 120 + label.len()].copy_from_slice(label.as_bytes());
        head
    }

    fn mounted(device: &str, formatted: bool) -> StateOutcome {
        StateOutcome::Mounted {
            device: device.into(),
            formatted,
        }
    }

    /// `mount` with `disks` as devices and formatter, and `rancher.state`
    /// as YAML.
    async fn mount_with(
        host: &FakeHost,
        disks: &FakeDisks,
        yaml: &str,
        paths: &StatePaths,
    ) -> Result<StateOutcome, StateError> {
        let state: State = serde_norway::from_str(yaml).unwrap();
        mount(host, disks, disks, &state, paths).await
    }

    struct Machine {
        dir: tempfile::TempDir,
        paths: StatePaths,
        host: FakeHost,
    }

    fn machine() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths {
            mount: dir.path().join("state"),
            root: dir.path().join("root"),
            grow: None,
        };
        std::fs::create_dir_all(paths.root.join("var/lib/rancher/conf")).unwrap();
        std::fs::create_dir_all(paths.root.join("home/rancher")).unwrap();
        std::fs::write(paths.root.join("home/rancher/.profile"), "PS1='$ '\n").unwrap();
        Machine {
            dir,
            paths,
            host: FakeHost::new(),
        }
    }

    fn mounts(host: &FakeHost) -> Vec<(String, PathBuf, Option<String>)> {
        host.calls()
            .into_iter()
            .filter_map(|call| match call {
                HostCall::Mount {
                    source,
                    target,
                    fstype,
                    ..
                } => Some((source, target, fstype)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn without_a_partition_each_container_store_gets_a_tmpfs() {
        let host = FakeHost::new();
        stores_in_memory(&host, Path::new("/")).unwrap();
        assert_eq!(
            mounts(&host),
            vec![
                (
                    "tmpfs".to_string(),
                    PathBuf::from("/var/lib/system-containerd"),
                    Some("tmpfs".to_string())
                ),
                (
                    "tmpfs".to_string(),
                    PathBuf::from("/var/lib/containerd"),
                    Some("tmpfs".to_string())
                ),
                (
                    "tmpfs".to_string(),
                    PathBuf::from("/var/lib/rancher/k3s"),
                    Some("tmpfs".to_string())
                ),
                (
                    "tmpfs".to_string(),
                    PathBuf::from("/var/lib/kubelet"),
                    Some("tmpfs".to_string())
                ),
                (
                    "tmpfs".to_string(),
                    PathBuf::from("/var/log/pods"),
                    Some("tmpfs".to_string())
                ),
            ]
        );
    }

    #[test]
    fn a_failed_tmpfs_mount_names_the_store() {
        let host = FakeHost::new();
        host.fail_next(1);
        let err = stores_in_memory(&host, Path::new("/")).unwrap_err();
        assert!(
            err.to_string().contains("/var/lib/system-containerd"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn found_by_label_mounted_and_seeded_then_bound() {
        let m = machine();
        let disks = FakeDisks::with(&[
            ("/dev/vda", vec![0; 8192]),
            ("/dev/vdb", ext("RANCHER_STATE")),
        ]);
        let outcome = mount_with(&m.host, &disks, "{dev: LABEL=RANCHER_STATE}", &m.paths)
            .await
            .unwrap();
        assert_eq!(outcome, mounted("/dev/vdb", false));
        let state = &m.paths.mount;
        assert_eq!(
            mounts(&m.host),
            vec![
                ("/dev/vdb".into(), state.clone(), Some("ext4".into())),
                (
                    state.join("var/lib/rancher").display().to_string(),
                    m.paths.root.join("var/lib/rancher"),
                    None
                ),
                (
                    state.join("home").display().to_string(),
                    m.paths.root.join("home"),
                    None
                ),
                (
                    state
                        .join("var/lib/system-containerd")
                        .display()
                        .to_string(),
                    m.paths.root.join("var/lib/system-containerd"),
                    None
                ),
                (
                    state.join("var/lib/containerd").display().to_string(),
                    m.paths.root.join("var/lib/containerd"),
                    None
                ),
                (
                    state.join("var/lib/kubelet").display().to_string(),
                    m.paths.root.join("var/lib/kubelet"),
                    None
                ),
                (
                    state.join("var/log").display().to_string(),
                    m.paths.root.join("var/log"),
                    None
                ),
                (
                    state.join("var/log/pods").display().to_string(),
                    m.paths.root.join("var/log/pods"),
                    None
                ),
            ]
        );
        // The first boot copied the image's directories over.
        assert!(state.join("var/lib/rancher/conf").is_dir());
        assert_eq!(
            std::fs::read_to_string(state.join("home/rancher/.profile")).unwrap(),
            "PS1='$ '\n"
        );
        // A later boot keeps what the partition has.
        std::fs::write(state.join("home/rancher/.profile"), "changed\n").unwrap();
        let host = FakeHost::new();
        mount_with(&host, &disks, "{dev: LABEL=RANCHER_STATE}", &m.paths)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(state.join("home/rancher/.profile")).unwrap(),
            "changed\n"
        );
        drop(m.dir);
    }

    #[tokio::test]
    async fn a_blank_autoformat_device_is_formatted_with_the_label() {
        let m = machine();
        // vda has a partition table (not blank); vdb is all zeros.
        let mut partitioned = vec![0u8; 8192];
        partitioned[510] = 0x55;
        partitioned[511] = 0xAA;
        let disks = FakeDisks::with(&[("/dev/vda", partitioned), ("/dev/vdb", vec![0; 8192])]);
        let outcome = mount_with(
            &m.host,
            &disks,
            "{dev: LABEL=MY_STATE, autoformat: [/dev/vda, /dev/vdb, /dev/vdc]}",
            &m.paths,
        )
        .await
        .unwrap();
        assert_eq!(outcome, mounted("/dev/vdb", true));
        let head = disks.read_head(Path::new("/dev/vdb"), HEAD_LEN).unwrap();
        assert_eq!(
            filesystem_label(&head).map(|(_, label)| label).as_deref(),
            Some("MY_STATE")
        );
        // The partitioned disk was left alone.
        let vda = disks.read_head(Path::new("/dev/vda"), 512).unwrap();
        assert_eq!(vda[510..], [0x55, 0xAA]);
    }

    /// mke2fs failing as it does on a disk that went away.
    struct FailingFormat;

    impl Formatter for FailingFormat {
        fn format<'a>(
            &'a self,
            _device: &'a Path,
            _label: &'a str,
        ) -> BoxFuture<'a, Result<(), CommandError>> {
            Box::pin(async {
                Err(CommandError::Exited {
                    code: 1,
                    log: "/var/log/boot/cloud-init.log".into(),
                })
            })
        }
    }

    #[tokio::test]
    async fn a_format_that_fails_names_the_device_and_how_mke2fs_ended() {
        let m = machine();
        let disks = FakeDisks::with(&[("/dev/vdb", vec![0; 8192])]);
        let state: State =
            serde_norway::from_str("{dev: LABEL=RANCHER_STATE, autoformat: [/dev/vdb]}").unwrap();
        let error = mount(&m.host, &disks, &FailingFormat, &state, &m.paths)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "formatting /dev/vdb: exited with 1 (output in /var/log/boot/cloud-init.log)"
        );
        assert!(m.host.calls().is_empty());
    }

    #[tokio::test]
    async fn by_uuid_or_path_with_a_directory_and_an_explicit_fstype() {
        let m = machine();
        let disks = FakeDisks::with(&[("/dev/sda1", ext("OTHER"))]);
        let uuid = "ab000000-0000-0000-0000-000000000000";
        for dev in [format!("UUID={uuid}"), "/dev/sda1".to_owned()] {
            let host = FakeHost::new();
            mount_with(
                &host,
                &disks,
                &format!("{{dev: '{dev}', fstype: ext3, directory: /ros}}"),
                &m.paths,
            )
            .await
            .unwrap();
            let mounts = mounts(&host);
            assert_eq!(mounts[0].0, "/dev/sda1");
            assert_eq!(mounts[0].2.as_deref(), Some("ext3"));
            assert_eq!(
                mounts[1].0,
                m.paths
                    .mount
                    .join("ros/var/lib/rancher")
                    .display()
                    .to_string()
            );
        }
    }

    #[tokio::test]
    async fn missing_runs_from_memory_unless_required() {
        let m = machine();
        let disks = FakeDisks::with(&[("/dev/vda", vec![1; 8192])]);
        let outcome = mount_with(&m.host, &disks, "{dev: LABEL=RANCHER_STATE}", &m.paths)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            StateOutcome::Missing {
                dev: DeviceSpec::try_from("LABEL=RANCHER_STATE".to_owned()).unwrap()
            }
        );
        assert!(m.host.calls().is_empty());
        let error = mount_with(
            &m.host,
            &disks,
            "{dev: LABEL=RANCHER_STATE, required: true}",
            &m.paths,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "rancher.state.dev LABEL=RANCHER_STATE: no such device, and rancher.state.required is set"
        );
        // Not configured at all: nothing happens.
        let outcome = mount_with(&m.host, &disks, "{}", &m.paths).await.unwrap();
        assert_eq!(outcome, StateOutcome::NotConfigured);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_gives_a_slow_device_time_to_appear() {
        let m = machine();
        // A blank disk listed for autoformat is there from the start.
        let disks = std::sync::Arc::new(FakeDisks::with(&[("/dev/sda", vec![0; 8192])]));
        let later = std::sync::Arc::clone(&disks);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            later
                .0
                .lock()
                .unwrap()
                .insert("/dev/sdb1".into(), ext("RANCHER_STATE"));
        });
        let outcome = mount_with(
            &m.host,
            &disks,
            "{dev: LABEL=RANCHER_STATE, wait: true, required: true, autoformat: [/dev/sda]}",
            &m.paths,
        )
        .await
        .unwrap();
        // The slow state partition won; the blank disk was not touched.
        assert_eq!(outcome, mounted("/dev/sdb1", false));
        let sda = disks.read_head(Path::new("/dev/sda"), 8192).unwrap();
        assert!(is_blank(&sda));
        // Never there: required fails after the wait.
        let empty = FakeDisks::default();
        let error = mount_with(
            &m.host,
            &empty,
            "{dev: LABEL=GONE, wait: true, required: true}",
            &m.paths,
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("(waited 10 s)"), "{error}");
    }

    #[tokio::test]
    async fn only_what_the_spec_finds_again_is_formatted() {
        let m = machine();
        let blank = || FakeDisks::with(&[("/dev/vda", vec![0; 8192]), ("/dev/vdb", vec![0; 8192])]);
        // A UUID names one filesystem; a new one would not have it.
        let disks = blank();
        let outcome = mount_with(
            &m.host,
            &disks,
            "{dev: UUID=ab000000-0000-0000-0000-000000000000, autoformat: [/dev/vda]}",
            &m.paths,
        )
        .await
        .unwrap();
        assert!(matches!(outcome, StateOutcome::Missing { .. }));
        assert!(is_blank(
            &disks.read_head(Path::new("/dev/vda"), 8192).unwrap()
        ));
        // A path: that device only, blank until formatted.
        let disks = blank();
        let outcome = mount_with(
            &m.host,
            &disks,
            "{dev: /dev/vdb, autoformat: [/dev/vda, /dev/vdb]}",
            &m.paths,
        )
        .await
        .unwrap();
        assert_eq!(outcome, mounted("/dev/vdb", true));
        assert!(is_blank(
            &disks.read_head(Path::new("/dev/vda"), 8192).unwrap()
        ));
    }

    #[tokio::test]
    async fn a_directory_outside_the_partition_is_refused() {
        let m = machine();
        let disks = FakeDisks::with(&[("/dev/vda", ext("RANCHER_STATE"))]);
        let error = mount_with(
            &m.host,
            &disks,
            "{dev: /dev/vda, directory: ../etc}",
            &m.paths,
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "rancher.state.directory \"../etc\": must stay inside the partition"
        );
        assert!(m.host.calls().is_empty());
    }
}
