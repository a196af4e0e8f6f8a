//! The OCI runtime spec of a service. Nothing is left to oci-spec's
//! defaults, which are not minimal: every capability set, every namespace,
//! every mount is written here.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::root::{PreparedRoot, Root};
use crate::service::{Device, Service, User};

/// Why a service could not become a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("nothing to run: no command or entrypoint in the definition or the image")]
    NoCommand,
    #[error("device {}: {source}", path.display())]
    Device {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("device {}: not a character or block device", path.display())]
    NotADevice { path: PathBuf },
    #[error(
        "the image's user {0:?} is a name; registry images need a numeric `user: UID[:GID]` in the definition"
    )]
    ImageUser(String),
    #[error("ulimits.{0}: not a resource limit")]
    Rlimit(String),
    #[error(transparent)]
    Oci(#[from] OciSpecError),
}

/// The cgroup parent of every system service (relative to /sys/fs/cgroup).
pub const CGROUP_PARENT: &str = "/ros";

/// Paths hidden from unprivileged services: kernel internals and host
/// details no service needs (Docker's list).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths unprivileged services may read but not change.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Character devices every container may use: null, zero, full, tty,
/// random, urandom, the pty multiplexer and its slaves.
const DEFAULT_DEVICES: &[(i64, Option<i64>)] = &[
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (5, Some(0)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(2)),
    (136, None),
];

/// Where the shim mounts a task's root file system, relative to its bundle.
const BUNDLE_ROOTFS: &str = "rootfs";

/// Builds the spec containerd gets for `service`, its root prepared as
/// `prepared` (which carries the image's defaults for a registry image).
pub fn build(service: &Service, prepared: &PreparedRoot) -> Result<Spec, SpecError> {
    let image = prepared.image.as_ref();
    let args = service.argv(image);
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let user = match (service.user, image.and_then(|i| i.user.as_deref())) {
        (Some(user), _) => user,
        (None, Some(text)) => {
            numeric_user(text).ok_or_else(|| SpecError::ImageUser(text.into()))?
        }
        (None, None) => User::default(),
    };
    let cwd = service
        .working_dir
        .clone()
        .or_else(|| image.and_then(|i| i.working_dir.clone()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut devices = Vec::new();
    for device in &service.devices {
        devices.extend(host_devices(device)?);
    }
    let capabilities = if service.privileged {
        all_capabilities()
    } else {
        service.capabilities.clone()
    };
    let capabilities_held = capabilities.clone();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(capabilities.clone())
        .effective(capabilities.clone())
        .permitted(capabilities)
        // Inherited and ambient sets stay empty: capabilities do not pass
        // through exec to unprivileged programs.
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(user.uid).gid(user.gid).build()?)
        .args(args)
        .env(service.environment(image))
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(!service.privileged)
        // Only those the service sets (`ulimits`): the rest are inherited
        // from PID 1 through containerd, not raised here beyond what the
        // machine allows.
        .rlimits(rlimits(service)?)
        .build()?;

    // Every list is written, empty ones too: the builders' defaults are
    // not minimal (they carry Docker's masks, a hostname, namespaces).
    let (masked, readonly): (Vec<String>, Vec<String>) = if service.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|p| (*p).to_string()).collect(),
            READONLY_PATHS.iter().map(|p| (*p).to_string()).collect(),
        )
    };
    let mut resources =
        LinuxResourcesBuilder::default().devices(device_rules(service.privileged, &devices)?);
    if let Some(limit) = service.limits.memory {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(shares) = service.limits.cpu_shares {
        resources = resources.cpu(LinuxCpuBuilder::default().shares(shares).build()?);
    }
    let mut linux = LinuxBuilder::default();
    if !service.privileged {
        linux = linux.seccomp(crate::seccomp::profile(&capabilities_held)?);
    }
    if let Some(propagation) = rootfs_propagation(service) {
        linux = linux.rootfs_propagation(propagation);
    }
    let linux = linux
        .namespaces(namespaces(service)?)
        .cgroups_path(PathBuf::from(CGROUP_PARENT).join(service.name.as_str()))
        .resources(resources.build()?)
        .devices(
            devices
                .into_iter()
                .map(|(device, _)| device)
                .collect::<Vec<_>>(),
        )
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()?;

    let root_path = match &service.root {
        Root::Dir(path) => path.clone(),
        // The shim mounts the snapshot there from the task's rootfs mounts.
        Root::Image(_) => PathBuf::from(BUNDLE_ROOTFS),
    };
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(root_path)
                .readonly(service.read_only_root)
                .build()?,
        )
        .process(process)
        .mounts(mounts(service)?)
        .linux(linux)
        .build()?;
    // A service with its own UTS namespace is named after itself; one that
    // shares the host's keeps the host's name.
    spec.set_hostname((!service.host.uts).then(|| {
        service
            .hostname
            .clone()
            .unwrap_or_else(|| service.name.to_string())
    }));
    // One containerd-shim for every service (the runc shim groups the
    // containers whose specs carry the same group, as CRI does for a pod):
    // each shim is a Go process of about 11 MB resident, the services
    // together need one. A shim that dies takes its tasks along; their
    // supervisors start them again.
    spec.set_annotations(Some(
        [(SHIM_GROUP_ANNOTATION.to_string(), SHIM_GROUP.to_string())].into(),
    ));
    Ok(spec)
}

/// The runc shim's grouping annotation, and the one group of ours.
pub const SHIM_GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";
pub const SHIM_GROUP: &str = "ros-services";

/// Every capability the kernel knows: what privileged services get.
pub fn all_capabilities() -> HashSet<Capability> {
    use Capability::*;
    [
        AuditControl,
        AuditRead,
        AuditWrite,
        BlockSuspend,
        Bpf,
        CheckpointRestore,
        Chown,
        DacOverride,
        DacReadSearch,
        Fowner,
        Fsetid,
        IpcLock,
        IpcOwner,
        Kill,
        Lease,
        LinuxImmutable,
        MacAdmin,
        MacOverride,
        Mknod,
        NetAdmin,
        NetBindService,
        NetBroadcast,
        NetRaw,
        Perfmon,
        Setfcap,
        Setgid,
        Setpcap,
        Setuid,
        SysAdmin,
        SysBoot,
        SysChroot,
        SysModule,
        SysNice,
        SysPacct,
        SysPtrace,
        SysRawio,
        SysResource,
        SysTime,
        SysTtyConfig,
        Syslog,
        WakeAlarm,
    ]
    .into_iter()
    .collect()
}

/// The service's `ulimits` as OCI rlimits.
fn rlimits(service: &Service) -> Result<Vec<PosixRlimit>, SpecError> {
    service
        .rlimits
        .iter()
        .map(|limit| {
            let typ: PosixRlimitType = format!("RLIMIT_{}", limit.name.to_ascii_uppercase())
                .parse()
                .map_err(|_| SpecError::Rlimit(limit.name.clone()))?;
            Ok(PosixRlimitBuilder::default()
                .typ(typ)
                .soft(limit.soft)
                .hard(limit.hard)
                .build()?)
        })
        .collect()
}

/// The namespaces the service owns; the ones it shares with the host are
/// the ones left out.
fn namespaces(service: &Service) -> Result<Vec<LinuxNamespace>, OciSpecError> {
    let host = service.host;
    [
        (LinuxNamespaceType::Mount, false),
        (LinuxNamespaceType::Cgroup, host.cgroup),
        (LinuxNamespaceType::Network, host.net),
        (LinuxNamespaceType::Pid, host.pid),
        (LinuxNamespaceType::Ipc, host.ipc),
        (LinuxNamespaceType::Uts, host.uts),
    ]
    .into_iter()
    .filter(|(_, shared)| !shared)
    .map(|(typ, _)| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect()
}

/// `uid` or `uid:gid`; a name cannot be resolved without the image's
/// /etc/passwd.
fn numeric_user(text: &str) -> Option<User> {
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (uid.parse().ok()?, gid.parse().ok()?),
        None => (text.parse().ok()?, 0),
    };
    Some(User { uid, gid })
}

/// The device nodes to create in the container, from the host's, each
/// with the access its cgroup rule allows. A directory (`/dev/input`)
/// gives every device below it, as Docker's `--device` does.
fn host_devices(device: &Device) -> Result<Vec<(LinuxDevice, String)>, SpecError> {
    let path = &device.host;
    let meta = std::fs::metadata(path).map_err(|source| SpecError::Device {
        path: path.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![node(path, &device.container, &meta, &device.access)?]);
    }
    let mut nodes = Vec::new();
    let mut pending = vec![path.clone()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| SpecError::Device {
            path: dir.clone(),
            source,
        })?;
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for entry in entries {
            let Ok(meta) = std::fs::symlink_metadata(&entry) else {
                continue;
            };
            let inside = device
                .container
                .join(entry.strip_prefix(path).unwrap_or(&entry));
            let kind = meta.file_type();
            if kind.is_dir() {
                pending.push(entry);
            } else if kind.is_char_device() || kind.is_block_device() {
                nodes.push(node(&entry, &inside, &meta, &device.access)?);
            }
        }
    }
    Ok(nodes)
}

fn node(
    host: &Path,
    container: &Path,
    meta: &std::fs::Metadata,
    access: &str,
) -> Result<(LinuxDevice, String), SpecError> {
    let typ = if meta.file_type().is_char_device() {
        LinuxDeviceType::C
    } else if meta.file_type().is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(SpecError::NotADevice {
            path: host.to_path_buf(),
        });
    };
    let (major, minor) = split_dev(meta.rdev());
    let node = LinuxDeviceBuilder::default()
        .path(container.to_path_buf())
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(meta.mode() & 0o777)
        .uid(0u32)
        .gid(0u32)
        .build()?;
    Ok((node, access.to_string()))
}

/// The major and minor number of a Linux `dev_t` (glibc's encoding).
fn split_dev(dev: u64) -> (i64, i64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (
        i64::try_from(major).unwrap_or(i64::MAX),
        i64::try_from(minor).unwrap_or(i64::MAX),
    )
}

fn device_rules(
    privileged: bool,
    devices: &[(LinuxDevice, String)],
) -> Result<Vec<LinuxDeviceCgroup>, OciSpecError> {
    if privileged {
        return Ok(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()?,
        ]);
    }
    let mut rules = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
    ];
    for (major, minor) in DEFAULT_DEVICES {
        let mut rule = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(*major)
            .access("rwm");
        if let Some(minor) = minor {
            rule = rule.minor(*minor);
        }
        rules.push(rule.build()?);
    }
    for (device, access) in devices {
        rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(device.typ())
                .major(device.major())
                .minor(device.minor())
                .access(access.clone())
                .build()?,
        );
    }
    Ok(rules)
}

fn mount(
    destination: &str,
    typ: &str,
    source: &str,
    options: &[&str],
) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_string()).collect::<Vec<_>>())
        .build()
}

fn bind(
    source: &Path,
    destination: &Path,
    read_only: bool,
    propagation: Option<&str>,
) -> Result<Mount, OciSpecError> {
    let mut options = vec![
        "rbind".to_string(),
        propagation.unwrap_or("rprivate").to_string(),
    ];
    if read_only {
        options.push("ro".to_string());
    }
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
}

/// The root's propagation when a bind asks for shared or slave
/// propagation: the runtime makes the whole tree private otherwise, which
/// would undo the bind's (Docker sets it the same way).
fn rootfs_propagation(service: &Service) -> Option<String> {
    let asked: Vec<&str> = service
        .mounts
        .iter()
        .filter_map(|m| m.propagation.as_deref())
        .collect();
    if asked.iter().any(|p| p.ends_with("shared")) {
        Some("rshared".to_owned())
    } else if asked.iter().any(|p| p.ends_with("slave")) {
        Some("rslave".to_owned())
    } else {
        None
    }
}

fn mounts(service: &Service) -> Result<Vec<Mount>, OciSpecError> {
    let mut mounts = vec![mount(
        "/proc",
        "proc",
        "proc",
        &["nosuid", "noexec", "nodev"],
    )?];
    if service.privileged {
        // The machine's own devices, including those that appear later.
        mounts.push(bind(Path::new("/dev"), Path::new("/dev"), false, None)?);
        mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "rw"],
        )?);
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "rw"],
        )?);
    } else {
        mounts.push(mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?);
        mounts.push(mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?);
        mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?);
        if !service.host.ipc {
            mounts.push(mount(
                "/dev/mqueue",
                "mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            )?);
        }
        mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?);
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?);
    }
    // Scratch space of its own, also when the root is read-only.
    mounts.push(mount(
        "/run",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "mode=755"],
    )?);
    mounts.push(mount(
        "/tmp",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "mode=1777"],
    )?);
    for m in &service.mounts {
        mounts.push(bind(
            &m.source,
            &m.destination,
            m.read_only,
            m.propagation.as_deref(),
        )?);
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::ImageDefaults;
    use crate::service::{BindMount, Limits, ServiceName, default_capabilities};

    fn service() -> Service {
        Service::new(
            ServiceName::new("ntp").unwrap(),
            "/usr/lib/ros/images/ntp",
            vec!["ntpd".into()],
        )
    }

    fn namespace_types(spec: &Spec) -> Vec<LinuxNamespaceType> {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    #[test]
    fn a_shared_bind_makes_the_root_shared_so_the_runtime_keeps_it() {
        let mut s = service();
        assert_eq!(
            build(&s, &PreparedRoot::dir())
                .unwrap()
                .linux()
                .as_ref()
                .unwrap()
                .rootfs_propagation(),
            &None
        );
        s.mounts.push(BindMount {
            source: "/var/lib/kubelet".into(),
            destination: "/var/lib/kubelet".into(),
            read_only: false,
            propagation: Some("rshared".into()),
        });
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .rootfs_propagation()
                .as_deref(),
            Some("rshared")
        );
        let kubelet = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/var/lib/kubelet"))
            .unwrap();
        assert!(
            kubelet
                .options()
                .as_ref()
                .unwrap()
                .contains(&"rshared".to_owned())
        );
    }

    #[test]
    fn an_ordinary_service_owns_every_namespace() {
        let spec = build(&service(), &PreparedRoot::dir()).unwrap();
        use LinuxNamespaceType::*;
        assert_eq!(
            namespace_types(&spec),
            vec![Mount, Cgroup, Network, Pid, Ipc, Uts]
        );
        assert_eq!(spec.hostname().as_deref(), Some("ntp"));
    }

    #[test]
    fn hostname_and_ulimits_reach_the_spec() {
        let spec = build(&service(), &PreparedRoot::dir()).unwrap();
        // Named after itself, no limits of its own by default.
        assert_eq!(spec.hostname().as_deref(), Some("ntp"));
        assert_eq!(
            spec.process().as_ref().unwrap().rlimits().as_deref(),
            Some(&[][..])
        );
        let mut s = service();
        s.hostname = Some("time-1".into());
        s.rlimits = vec![crate::service::Rlimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 65536,
        }];
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("time-1"));
        let limits = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
        assert_eq!(limits.len(), 1);
        assert_eq!(limits[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((limits[0].soft(), limits[0].hard()), (1024, 65536));
        s.rlimits[0].name = "bogus".into();
        assert!(matches!(
            build(&s, &PreparedRoot::dir()),
            Err(SpecError::Rlimit(name)) if name == "bogus"
        ));
    }

    #[test]
    fn every_service_is_in_the_one_shim_group() {
        let spec = build(&service(), &PreparedRoot::dir()).unwrap();
        let annotations = spec.annotations().as_ref().unwrap();
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        assert_eq!(annotations[SHIM_GROUP_ANNOTATION], SHIM_GROUP);
    }

    #[test]
    fn host_namespaces_are_left_out() {
        let mut s = service();
        s.host.net = true;
        s.host.pid = true;
        s.host.uts = true;
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        use LinuxNamespaceType::*;
        assert_eq!(namespace_types(&spec), vec![Mount, Cgroup, Ipc]);
        s.host.cgroup = true;
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        assert_eq!(namespace_types(&spec), vec![Mount, Ipc]);
        assert_eq!(spec.hostname(), &None);
    }

    #[test]
    fn all_five_capability_sets_are_explicit() {
        let spec = build(&service(), &PreparedRoot::dir()).unwrap();
        let process = spec.process().as_ref().unwrap();
        let caps = process.capabilities().as_ref().unwrap();
        let expected = default_capabilities();
        assert_eq!(caps.bounding().as_ref(), Some(&expected));
        assert_eq!(caps.effective().as_ref(), Some(&expected));
        assert_eq!(caps.permitted().as_ref(), Some(&expected));
        assert_eq!(caps.inheritable().as_ref(), Some(&HashSet::new()));
        assert_eq!(caps.ambient().as_ref(), Some(&HashSet::new()));
        assert!(!expected.contains(&Capability::SysAdmin));
        assert_eq!(process.no_new_privileges(), Some(true));
    }

    #[test]
    fn privileged_gets_everything_and_no_masks() {
        let mut s = service();
        s.privileged = true;
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        let process = spec.process().as_ref().unwrap();
        let bounding = process
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert!(bounding.contains(&Capability::SysAdmin));
        assert_eq!(bounding.len(), 41);
        assert_eq!(process.no_new_privileges(), Some(false));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.masked_paths(), &Some(vec![]));
        assert_eq!(linux.readonly_paths(), &Some(vec![]));
        let devices = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(devices.len(), 1);
        assert!(devices[0].allow());
        assert!(spec.mounts().as_ref().unwrap().iter().any(|m| m.destination() == Path::new("/dev")
            && m.typ().as_deref() == Some("bind")));
    }

    #[test]
    fn seccomp_filters_the_unprivileged_only() {
        let spec = build(&service(), &PreparedRoot::dir()).unwrap();
        let seccomp = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        let denied = seccomp.syscalls().as_ref().unwrap()[0].names().clone();
        assert!(denied.contains(&"mount".to_string()));
        let mut s = service();
        s.privileged = true;
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        assert_eq!(spec.linux().as_ref().unwrap().seccomp(), &None);
    }

    #[test]
    fn unprivileged_devices_are_deny_all_then_the_defaults() {
        let spec = build(&service(), &PreparedRoot::dir()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let devices = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(!devices[0].allow());
        assert_eq!(devices.len(), 1 + DEFAULT_DEVICES.len());
        assert!(
            linux
                .masked_paths()
                .as_ref()
                .unwrap()
                .contains(&"/proc/kcore".to_string())
        );
        assert!(
            linux
                .readonly_paths()
                .as_ref()
                .unwrap()
                .contains(&"/proc/sys".to_string())
        );
    }

    #[test]
    fn binds_and_root_and_cgroup() {
        let mut s = service();
        s.read_only_root = true;
        s.mounts.push(BindMount {
            source: "/var/log".into(),
            destination: "/log".into(),
            read_only: true,
            propagation: None,
        });
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        let last = spec.mounts().as_ref().unwrap().last().unwrap().clone();
        assert_eq!(last.source().as_deref(), Some(Path::new("/var/log")));
        assert_eq!(
            last.options().as_ref().unwrap(),
            &vec!["rbind".to_string(), "rprivate".into(), "ro".into()]
        );
        let cgroup = spec.linux().as_ref().unwrap().cgroups_path().clone();
        assert_eq!(cgroup, Some(PathBuf::from("/ros/ntp")));
    }

    #[test]
    fn the_spec_serializes_to_the_oci_json_shape() {
        let json = serde_json::to_value(build(&service(), &PreparedRoot::dir()).unwrap()).unwrap();
        assert_eq!(json["ociVersion"], "1.0.2");
        assert_eq!(json["root"]["path"], "/usr/lib/ros/images/ntp");
        assert_eq!(json["process"]["args"][0], "ntpd");
        assert_eq!(json["linux"]["cgroupsPath"], "/ros/ntp");
    }

    #[test]
    fn a_registry_image_roots_in_the_bundle_and_fills_in_from_its_config() {
        let mut s = service();
        s.root = Root::Image("registry.local/ntp:1".into());
        s.command = None;
        let prepared = PreparedRoot {
            mounts: Vec::new(),
            image: Some(ImageDefaults {
                entrypoint: vec!["/usr/sbin/ntpd".into()],
                cmd: vec!["-n".into()],
                env: vec!["TZ=UTC".into()],
                working_dir: Some("/var/lib/ntp".into()),
                user: Some("123:456".into()),
            }),
        };
        let json = serde_json::to_value(build(&s, &prepared).unwrap()).unwrap();
        assert_eq!(json["root"]["path"], "rootfs");
        assert_eq!(
            json["process"]["args"],
            serde_json::json!(["/usr/sbin/ntpd", "-n"])
        );
        assert_eq!(json["process"]["cwd"], "/var/lib/ntp");
        assert_eq!(json["process"]["user"]["uid"], 123);
        assert_eq!(json["process"]["user"]["gid"], 456);
        assert!(
            json["process"]["env"]
                .as_array()
                .unwrap()
                .contains(&"TZ=UTC".into())
        );
    }

    #[test]
    fn an_image_user_name_is_refused_with_its_name() {
        let mut s = service();
        s.root = Root::Image("registry.local/ntp:1".into());
        let prepared = PreparedRoot {
            mounts: Vec::new(),
            image: Some(ImageDefaults {
                user: Some("ntp".into()),
                ..ImageDefaults::default()
            }),
        };
        let err = build(&s, &prepared).unwrap_err();
        assert!(
            matches!(&err, SpecError::ImageUser(name) if name == "ntp"),
            "{err}"
        );
        // The definition's own user wins and needs no lookup.
        s.user = Some(User { uid: 7, gid: 7 });
        let spec = build(&s, &prepared).unwrap();
        let user = spec.process().as_ref().unwrap().user();
        assert_eq!((user.uid(), user.gid()), (7, 7));
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let mut s = service();
        s.command = None;
        assert!(matches!(
            build(&s, &PreparedRoot::dir()),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn devices_become_nodes_and_cgroup_rules() {
        let mut s = service();
        s.devices.push(Device {
            host: "/dev/null".into(),
            container: "/dev/sink".into(),
            access: "rw".into(),
        });
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let node = &linux.devices().as_ref().unwrap()[0];
        assert_eq!(node.path(), Path::new("/dev/sink"));
        assert_eq!(
            (node.typ(), node.major(), node.minor()),
            (LinuxDeviceType::C, 1, 3)
        );
        let rule = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!((rule.major(), rule.minor()), (Some(1), Some(3)));
        assert_eq!(rule.access().as_deref(), Some("rw"));

        s.devices[0].host = "/etc/hostname-that-is-not-there".into();
        let err = build(&s, &PreparedRoot::dir()).unwrap_err();
        assert!(
            matches!(&err, SpecError::Device { path, .. } if path == Path::new("/etc/hostname-that-is-not-there")),
            "{err}"
        );
        s.devices[0].host = "/etc/hostname".into();
        assert!(matches!(
            build(&s, &PreparedRoot::dir()),
            Err(SpecError::NotADevice { .. })
        ));
    }

    #[test]
    fn a_device_directory_gives_every_device_below_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("input/by-path")).unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.path().join("input/event0")).unwrap();
        std::fs::write(dir.path().join("input/README"), "not a device").unwrap();
        // A real device node needs root to make; /dev/null reached through a
        // bound directory stands in for one.
        let mut s = service();
        s.devices.push(Device {
            host: dir.path().join("input"),
            container: "/dev/input".into(),
            access: "r".into(),
        });
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        // Symlinks are not followed inside a directory, files are skipped.
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .devices()
                .as_ref()
                .map(Vec::len),
            Some(0)
        );
        s.devices[0].host = "/dev".into();
        s.devices[0].container = "/dev".into();
        let spec = build(&s, &PreparedRoot::dir()).unwrap();
        let nodes = spec.linux().as_ref().unwrap().devices().clone().unwrap();
        assert!(
            nodes
                .iter()
                .any(|n| n.path() == Path::new("/dev/null") && (n.major(), n.minor()) == (1, 3))
        );
    }

    #[test]
    fn limits_go_to_the_cgroup() {
        let mut s = service();
        s.limits = Limits {
            memory: Some(64 << 20),
            cpu_shares: Some(512),
        };
        let json = serde_json::to_value(build(&s, &PreparedRoot::dir()).unwrap()).unwrap();
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["shares"], 512);
    }

    #[test]
    fn dev_t_splits_like_glibc() {
        // makedev(1, 3) and makedev(259, 65537).
        assert_eq!(split_dev(0x103), (1, 3));
        let dev = (259u64 & 0xfff) << 8 | (65537u64 & 0xff) | ((65537u64 & !0xff) << 12);
        assert_eq!(split_dev(dev), (259, 65537));
    }
}
