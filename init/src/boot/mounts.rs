//! The early mounts: the kernel hands PID 1 an empty root, and everything
//! after (logging, cgroups, containerd) reads these file systems.

use std::path::Path;

use nix::mount::MsFlags;

use crate::host::{Host, HostResult};

/// One early mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyMount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);
const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// In order: a target below another (`/dev/pts`) comes after it.
pub const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    EarlyMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    EarlyMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    EarlyMount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
    },
    EarlyMount {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    EarlyMount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=0755"),
    },
    EarlyMount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    EarlyMount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
    },
];

/// The early mounts that a switch of root carries over to the new root
/// (each moves with everything mounted below it).
pub const MOVED_TO_NEW_ROOT: &[&str] = &["/dev", "/proc", "/sys", "/run", "/tmp"];

/// Mounts the table in order. Safe to run twice: a target that is already
/// a mount point is left alone.
pub fn mount_early(host: &dyn Host) -> HostResult<()> {
    for m in EARLY_MOUNTS {
        let target = Path::new(m.target);
        host.create_dir_all(target)?;
        if host.is_mountpoint(target)? {
            continue;
        }
        host.mount(m.source, target, Some(m.fstype), m.flags, m.data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostCall};

    fn mounts_of(host: &FakeHost) -> Vec<HostCall> {
        host.calls()
            .into_iter()
            .filter(|c| matches!(c, HostCall::Mount { .. }))
            .collect()
    }

    fn expected_mount(m: &EarlyMount) -> HostCall {
        HostCall::Mount {
            source: m.source.into(),
            target: m.target.into(),
            fstype: Some(m.fstype.into()),
            flags: m.flags,
            data: m.data.map(str::to_string),
        }
    }

    #[test]
    fn mounts_the_table_in_order() {
        let host = FakeHost::new();
        mount_early(&host).unwrap();
        let expected: Vec<HostCall> = EARLY_MOUNTS.iter().map(expected_mount).collect();
        assert_eq!(mounts_of(&host), expected);
    }

    #[test]
    fn running_twice_mounts_nothing_more() {
        let host = FakeHost::new();
        mount_early(&host).unwrap();
        mount_early(&host).unwrap();
        assert_eq!(mounts_of(&host).len(), EARLY_MOUNTS.len());
    }

    #[test]
    fn skips_what_the_kernel_already_mounted() {
        let host = FakeHost::new();
        host.add_mountpoint("/dev");
        mount_early(&host).unwrap();
        assert!(
            !mounts_of(&host).iter().any(
                |c| matches!(c, HostCall::Mount { target, .. } if target == Path::new("/dev"))
            )
        );
    }

    #[test]
    fn a_parent_is_mounted_before_its_children() {
        for (i, child) in EARLY_MOUNTS.iter().enumerate() {
            for parent in &EARLY_MOUNTS[i + 1..] {
                assert!(
                    !Path::new(child.target).starts_with(parent.target),
                    "{} must come after {}",
                    child.target,
                    parent.target
                );
            }
        }
    }

    #[test]
    fn a_failed_mount_stops_the_step_with_its_target() {
        let host = FakeHost::new();
        host.fail_next(1); // the mkdir of /proc, the first call
        let err = mount_early(&host).unwrap_err();
        assert_eq!(err.op, "fake");
        assert!(err.target.contains("/proc"), "{}", err.target);
    }

    #[test]
    fn everything_moved_to_the_new_root_is_an_early_mount() {
        for target in MOVED_TO_NEW_ROOT {
            assert!(EARLY_MOUNTS.iter().any(|m| m.target == *target), "{target}");
        }
    }
}
