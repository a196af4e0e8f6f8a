//! The switch from the initramfs to the real root: the squashfs (from the
//! initramfs, or from the boot medium: see [`super::medium`]), read-only,
//! under a tmpfs overlay so the system is writable and every boot starts
//! clean.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::mounts::MOVED_TO_NEW_ROOT;
use crate::host::{Host, HostResult};

/// Where the `-kernel/-initrd` initramfs carries the root file system
/// image (the ISO's and a disk's initrd leave it on the medium).
pub const ROOT_IMAGE: &str = "/rootfs.squashfs";
/// Where the initramfs carries `ros` itself (the kernel runs `/init`).
pub const SELF_IN_INITRAMFS: &str = "/init";
/// Where `ros` is seen in the new root, for services and the console.
pub const SELF_IN_NEW_ROOT: &str = "usr/bin/ros";

/// The squashfs, read-only; visible afterwards under /run/ros.
const LOWER: &str = "/run/ros/lower";
/// The tmpfs holding the overlay's upper and work directories.
const WRITABLE: &str = "/run/ros/rw";
const NEW_ROOT: &str = "/sysroot";

/// Mounts the image as the new root and makes it `/`. Expects the early
/// mounts in place; carries them over.
pub fn switch_root(host: &dyn Host, image: &Path) -> HostResult<()> {
    let device = host.attach_loop(image)?;
    let lower = Path::new(LOWER);
    host.create_dir_all(lower)?;
    host.mount(
        &device.to_string_lossy(),
        lower,
        Some("squashfs"),
        MsFlags::MS_RDONLY,
        None,
    )?;

    let writable = Path::new(WRITABLE);
    host.create_dir_all(writable)?;
    host.mount(
        "tmpfs",
        writable,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    let (upper, work) = (writable.join("upper"), writable.join("work"));
    host.create_dir_all(&upper)?;
    host.create_dir_all(&work)?;

    let new_root = Path::new(NEW_ROOT);
    host.create_dir_all(new_root)?;
    let options = format!(
        "lowerdir={LOWER},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    host.mount(
        "overlay",
        new_root,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )?;

    // `ros` is not in the squashfs: the initramfs copy is bound in, so the
    // binary exists once.
    let self_target = new_root.join(SELF_IN_NEW_ROOT);
    host.touch(&self_target)?;
    host.mount(
        SELF_IN_INITRAMFS,
        &self_target,
        None,
        MsFlags::MS_BIND,
        None,
    )?;

    for mount in MOVED_TO_NEW_ROOT {
        let target: PathBuf = new_root.join(mount.trim_start_matches('/'));
        host.create_dir_all(&target)?;
        host.mount(mount, &target, None, MsFlags::MS_MOVE, None)?;
    }
    host.chroot_here(new_root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostCall};

    fn mount(
        source: &str,
        target: &str,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> HostCall {
        HostCall::Mount {
            source: source.into(),
            target: target.into(),
            fstype: fstype.map(Into::into),
            flags,
            data: data.map(Into::into),
        }
    }

    #[test]
    fn builds_the_overlay_and_moves_the_early_mounts() {
        let host = FakeHost::new();
        switch_root(&host, Path::new(ROOT_IMAGE)).unwrap();
        let mounts: Vec<HostCall> = host
            .calls()
            .into_iter()
            .filter(|c| matches!(c, HostCall::Mount { .. }))
            .collect();
        let mut expected = vec![
            mount(
                "/dev/loop0",
                LOWER,
                Some("squashfs"),
                MsFlags::MS_RDONLY,
                None,
            ),
            mount(
                "tmpfs",
                WRITABLE,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0755"),
            ),
            mount(
                "overlay",
                NEW_ROOT,
                Some("overlay"),
                MsFlags::empty(),
                Some("lowerdir=/run/ros/lower,upperdir=/run/ros/rw/upper,workdir=/run/ros/rw/work"),
            ),
            mount(
                "/init",
                "/sysroot/usr/bin/ros",
                None,
                MsFlags::MS_BIND,
                None,
            ),
        ];
        for m in MOVED_TO_NEW_ROOT {
            expected.push(mount(
                m,
                &format!("/sysroot{m}"),
                None,
                MsFlags::MS_MOVE,
                None,
            ));
        }
        assert_eq!(mounts, expected);
        assert_eq!(
            host.calls().first(),
            Some(&HostCall::AttachLoop(ROOT_IMAGE.into()))
        );
        assert_eq!(
            host.calls().last(),
            Some(&HostCall::ChrootHere(NEW_ROOT.into()))
        );
    }

    #[test]
    fn stops_at_the_first_failure_without_changing_root() {
        let host = FakeHost::new();
        host.fail_next(1);
        let err = switch_root(&host, Path::new(ROOT_IMAGE)).unwrap_err();
        assert!(err.target.contains("AttachLoop"), "{}", err.target);
        assert!(
            !host
                .calls()
                .iter()
                .any(|c| matches!(c, HostCall::ChrootHere(_)))
        );
    }
}
