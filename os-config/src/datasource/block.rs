//! Finding a disk by filesystem label, and mounting it, behind two small
//! traits so tests run without root or real devices.

use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::label::{FsType, HEAD_LEN, filesystem_label};

/// The block devices of the machine.
pub trait BlockDevices: Send + Sync + Debug {
    /// Every device node that may hold a filesystem.
    fn list(&self) -> io::Result<Vec<PathBuf>>;

    /// Up to `len` bytes from the start of `device`.
    fn read_head(&self, device: &Path, len: usize) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(len);
        File::open(device)?
            .take(len as u64)
            .read_to_end(&mut head)?;
        Ok(head)
    }
}

/// The real devices: every entry of `/sys/class/block` as `/dev/NAME`.
#[derive(Debug, Clone)]
pub struct SysBlockDevices {
    /// `/sys/class/block`.
    pub sys_class_block: PathBuf,
    /// `/dev`.
    pub dev: PathBuf,
}

impl Default for SysBlockDevices {
    fn default() -> Self {
        Self {
            sys_class_block: PathBuf::from("/sys/class/block"),
            dev: PathBuf::from("/dev"),
        }
    }
}

impl BlockDevices for SysBlockDevices {
    fn list(&self) -> io::Result<Vec<PathBuf>> {
        let mut devices: Vec<PathBuf> = std::fs::read_dir(&self.sys_class_block)?
            .filter_map(Result::ok)
            .map(|entry| self.dev.join(entry.file_name()))
            .filter(|node| node.exists())
            .collect();
        devices.sort();
        Ok(devices)
    }
}

/// The first device whose filesystem label is `label` (compared without
/// case: vfat tools upper-case labels, ISO tools may not).
pub fn find_by_label(
    devices: &dyn BlockDevices,
    label: &str,
) -> io::Result<Option<(PathBuf, FsType)>> {
    for device in devices.list()? {
        // A device that cannot be read (an empty CD drive) is not the one.
        let Ok(head) = devices.read_head(&device, HEAD_LEN) else {
            continue;
        };
        if let Some((fs_type, found)) = filesystem_label(&head)
            && found.eq_ignore_ascii_case(label)
        {
            return Ok(Some((device, fs_type)));
        }
    }
    Ok(None)
}

/// Mounting, read-only, for datasources.
pub trait Mounter: Send + Sync + Debug {
    /// Mounts `device` (a `fs_type` filesystem) read-only at `target`.
    fn mount_read_only(&self, device: &Path, target: &Path, fs_type: FsType) -> io::Result<()>;

    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;
}

/// mount(2) and umount(2).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn mount_read_only(&self, device: &Path, target: &Path, fs_type: FsType) -> io::Result<()> {
        use nix::mount::MsFlags;
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        nix::mount::mount(
            Some(device),
            target,
            Some(fs_type.mount_name()),
            flags,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        nix::mount::umount(target).map_err(io::Error::from)
    }
}

/// Mounts `device` at `target`, runs `read`, and unmounts whatever `read`
/// returned. The directory holding `target` is made 0700 first: while it
/// is mounted, the device's user-data (which may hold the cluster token)
/// shows with the device's own modes, so only root may reach it.
pub fn with_mounted<T>(
    mounter: &dyn Mounter,
    device: &Path,
    fs_type: FsType,
    target: &Path,
    read: impl FnOnce(&Path) -> T,
) -> io::Result<T> {
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::store::private_dir(parent)?;
    }
    std::fs::create_dir_all(target)?;
    mounter.mount_read_only(device, target, fs_type)?;
    let result = read(target);
    if let Err(error) = mounter.unmount(target) {
        tracing::warn!(target = %target.display(), %error, "cannot unmount datasource");
    }
    Ok(result)
}
