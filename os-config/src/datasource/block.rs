//! Finding a disk by filesystem label, and mounting it, behind two small
//! traits so tests run without root or real devices.
//!
//! At boot the state partition's search and each disk datasource look at
//! every device. PID 1 calls [`share_heads`] before the first and
//! [`stop_sharing_heads`] after the last: in between each device is read
//! once, whoever asks. Devices without a medium (an empty CD drive, a
//! loop device with no file) are not opened at all: their size is 0.

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

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
            // Opening an empty CD drive can take the kernel a second.
            .filter(|entry| !has_no_medium(&entry.path()))
            .map(|entry| self.dev.join(entry.file_name()))
            .filter(|node| node.exists())
            .collect();
        devices.sort();
        Ok(devices)
    }

    fn read_head(&self, device: &Path, len: usize) -> io::Result<Vec<u8>> {
        let mut shared = shared_heads();
        let Some(heads) = shared.as_mut() else {
            drop(shared);
            return read_head(device, len);
        };
        if let Some(head) = heads.get(device)
            && (head.wanted >= len || head.bytes.len() < head.wanted)
        {
            return Ok(head.bytes[..len.min(head.bytes.len())].to_vec());
        }
        // Enough for every label at once; errors are not kept (a disk
        // the state search waits for may answer on the next look).
        let wanted = len.max(HEAD_LEN);
        let bytes = read_head(device, wanted)?;
        let head = bytes[..len.min(bytes.len())].to_vec();
        heads.insert(device.to_owned(), Head { bytes, wanted });
        Ok(head)
    }
}

/// Up to `len` bytes from the start of `device`.
fn read_head(device: &Path, len: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    File::open(device)?
        .take(len as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// A device's `size` in sysfs (512-byte sectors) is 0: no medium. A
/// device without the file (a test's fake) counts as having one.
fn has_no_medium(sys_entry: &Path) -> bool {
    std::fs::read_to_string(sys_entry.join("size")).is_ok_and(|size| size.trim() == "0")
}

/// The first bytes of a device as read once while heads are shared.
#[derive(Debug)]
struct Head {
    bytes: Vec<u8>,
    /// How many were asked for: fewer came back at the device's end.
    wanted: usize,
}

static SHARED_HEADS: Mutex<Option<HashMap<PathBuf, Head>>> = Mutex::new(None);

fn shared_heads() -> MutexGuard<'static, Option<HashMap<PathBuf, Head>>> {
    SHARED_HEADS.lock().unwrap_or_else(|e| e.into_inner())
}

/// From now on [`SysBlockDevices`] reads each device's first bytes once
/// and gives every later caller the same: the boot's one scan.
pub fn share_heads() {
    shared_heads().get_or_insert_with(HashMap::new);
}

/// Back to reading devices on every call (what was read is dropped):
/// after the boot's searches, disks may be written.
pub fn stop_sharing_heads() {
    *shared_heads() = None;
}

/// Whether heads are shared now (for tests and the boot's log).
pub fn sharing_heads() -> bool {
    shared_heads().is_some()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /sys/class/block and /dev: `sda` (a file), `sr0` with no
    /// medium, `vda` without a sysfs size.
    fn machine(dir: &Path) -> SysBlockDevices {
        let devices = SysBlockDevices {
            sys_class_block: dir.join("sys/class/block"),
            dev: dir.join("dev"),
        };
        for (name, size) in [("sda", Some("2048\n")), ("sr0", Some("0\n")), ("vda", None)] {
            let sys = devices.sys_class_block.join(name);
            std::fs::create_dir_all(&sys).unwrap();
            if let Some(size) = size {
                std::fs::write(sys.join("size"), size).unwrap();
            }
            std::fs::create_dir_all(&devices.dev).unwrap();
            std::fs::write(devices.dev.join(name), format!("{name} first bytes")).unwrap();
        }
        devices
    }

    #[test]
    fn a_drive_without_a_medium_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let devices = machine(dir.path());
        assert_eq!(
            devices.list().unwrap(),
            [dir.path().join("dev/sda"), dir.path().join("dev/vda")]
        );
    }

    #[test]
    fn while_shared_each_device_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let devices = machine(dir.path());
        let sda = dir.path().join("dev/sda");
        share_heads();
        assert!(sharing_heads());
        assert_eq!(devices.read_head(&sda, 3).unwrap(), b"sda");
        std::fs::write(&sda, "changed on disk").unwrap();
        // The second search sees what the first read, also for a longer head.
        assert_eq!(devices.read_head(&sda, 3).unwrap(), b"sda");
        assert_eq!(
            devices.read_head(&sda, 1 << 20).unwrap(),
            b"sda first bytes"
        );
        // A device that is not there is an error, and not remembered.
        let missing = dir.path().join("dev/vdb");
        let error = devices.read_head(&missing, 3).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        std::fs::write(&missing, "late disk").unwrap();
        assert_eq!(devices.read_head(&missing, 4).unwrap(), b"late");
        stop_sharing_heads();
        assert!(!sharing_heads());
        assert_eq!(devices.read_head(&sda, 7).unwrap(), b"changed");
    }
}
