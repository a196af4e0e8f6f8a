//! The boot medium: where the root image is when the initrd does not
//! carry it.
//!
//! An initramfs is a tmpfs that is never freed, so a root image inside
//! the initrd stays in RAM for as long as the machine runs (16.5 MB).
//! The ISO (label `ROS`) and an installed disk's state partition
//! (`RANCHER_STATE`) therefore hold `boot/rootfs.squashfs` as a file next
//! to a small initrd that carries only `ros` and [`IMAGE_ID`]: the
//! image's first bytes (its squashfs superblock: sizes, counts, time of
//! making). PID 1 mounts the medium under [`MOUNT`] and loop-mounts the
//! image from there; its pages are then page cache, which the kernel can
//! drop. The superblock tells the image this initrd was built with from
//! another one (an older ISO in the drive, a disk installed from another
//! build). `-kernel/-initrd` and PXE boots keep the initrd that carries
//! the image itself ([`super::switch_root::ROOT_IMAGE`]).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};
use os_config::datasource::block::BlockDevices;
use os_config::datasource::label::{FsType, HEAD_LEN, filesystem_label};

use crate::host::{Host, HostError};

/// In the small initrd: the first bytes of the root image it goes with.
pub const IMAGE_ID: &str = "/rootfs.squashfs.id";
/// Where the medium is mounted; it moves into the new root with `/run`.
pub const MOUNT: &str = "/run/ros/medium";
/// The root image on the medium, next to the kernel and the initrd.
pub const IMAGE_ON_MEDIUM: &str = disk_layout::state_files::ROOTFS;
/// The labels of the media that hold the image, in the order they are
/// preferred: the ISO first, so an ISO booted next to an installed disk
/// runs its own image.
pub const LABELS: [&str; 2] = [crate::install::MEDIA_LABEL, disk_layout::STATE_NAME];
/// How long to wait for the medium: NVMe and USB disks appear after PID
/// 1 starts (the kernel does not wait for their probes).
pub const WAIT: Duration = Duration::from_secs(30);
/// When to say on the console that the boot is waiting.
const SAY_WAITING_AFTER: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum MediumError {
    #[error(
        "no boot medium holds the root image: looked {} s for a file system labelled {} with /{IMAGE_ON_MEDIUM} matching this initrd{}",
        waited.as_secs(),
        LABELS.join(" or "),
        if tried.is_empty() { String::new() } else { format!(" (not matching: {})", tried.join(", ")) }
    )]
    NotFound {
        waited: Duration,
        tried: Vec<String>,
    },
    #[error("reading {}: {source}", path.display())]
    Id { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Where the root image is: the initramfs's own copy when it carries
/// one; else, when the initrd says the image is on its medium, the copy
/// there (mounted now); else `None`: booted from a disk root, nothing to
/// switch.
pub fn root_image(
    host: &dyn Host,
    devices: &dyn BlockDevices,
    in_initramfs: &Path,
    id: &Path,
    mount: &Path,
    wait: Duration,
) -> Result<Option<PathBuf>, MediumError> {
    if in_initramfs.exists() {
        return Ok(Some(in_initramfs.to_path_buf()));
    }
    let expected = match std::fs::read(id) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MediumError::Id {
                path: id.to_path_buf(),
                source,
            });
        }
    };
    let started = Instant::now();
    let mut said = false;
    loop {
        let mut tried = Vec::new();
        if let Some(image) = mount_medium(host, devices, &expected, mount, &mut tried)? {
            return Ok(Some(image));
        }
        let waited = started.elapsed();
        if waited >= wait {
            return Err(MediumError::NotFound { waited, tried });
        }
        if !said && waited >= SAY_WAITING_AFTER {
            host.console(&format!(
                "ros: waiting for the boot medium (a file system labelled {} holding /{IMAGE_ON_MEDIUM})",
                LABELS.join(" or ")
            ));
            said = true;
        }
        std::thread::sleep(POLL);
    }
}

/// [`root_image`] on the machine: `/rootfs.squashfs` and [`IMAGE_ID`]
/// in the initramfs, the media among every block device.
pub fn system_root_image(host: &dyn Host) -> Result<Option<PathBuf>, MediumError> {
    root_image(
        host,
        &os_config::datasource::block::SysBlockDevices::default(),
        Path::new(super::switch_root::ROOT_IMAGE),
        Path::new(IMAGE_ID),
        Path::new(MOUNT),
        WAIT,
    )
}

/// One look at every device: mounts the first medium whose image matches
/// `expected` at `mount` and returns the image's path there. Media that
/// hold another image are unmounted again and named in `tried`.
fn mount_medium(
    host: &dyn Host,
    devices: &dyn BlockDevices,
    expected: &[u8],
    mount: &Path,
    tried: &mut Vec<String>,
) -> Result<Option<PathBuf>, MediumError> {
    let labelled: Vec<(PathBuf, FsType, String)> = devices
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|device| {
            // A device that cannot be read (yet) is not the one.
            let head = devices.read_head(&device, HEAD_LEN).ok()?;
            let (fs, label) = filesystem_label(&head)?;
            Some((device, fs, label))
        })
        .collect();
    for wanted in LABELS {
        for (device, fs, _) in labelled
            .iter()
            .filter(|(_, _, label)| label.eq_ignore_ascii_case(wanted))
        {
            host.create_dir_all(mount)?;
            if host
                .mount(
                    &device.to_string_lossy(),
                    mount,
                    Some(fs.mount_name()),
                    mount_flags(*fs),
                    None,
                )
                .is_err()
            {
                tried.push(format!("{} (does not mount)", device.display()));
                continue;
            }
            let image = mount.join(IMAGE_ON_MEDIUM);
            if starts_with(&image, expected) {
                if *fs == FsType::Ext4 {
                    // The superblock stays writable (the state partition
                    // is the same one, mounted read-write later: the
                    // kernel refuses a second mount that changes that);
                    // this view of it is read-only.
                    host.mount(
                        "",
                        mount,
                        None,
                        MsFlags::MS_REMOUNT
                            | MsFlags::MS_BIND
                            | MsFlags::MS_RDONLY
                            | mount_flags(*fs),
                        None,
                    )?;
                }
                return Ok(Some(image));
            }
            tried.push(device.display().to_string());
            host.umount(mount, MntFlags::empty())?;
        }
    }
    Ok(None)
}

/// The ISO is read-only anyway. An ext4 state partition is mounted
/// read-write: the state mount later shares its superblock.
fn mount_flags(fs: FsType) -> MsFlags {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match fs {
        FsType::Ext4 => flags | MsFlags::MS_NOATIME,
        FsType::Iso9660 | FsType::Vfat => flags | MsFlags::MS_RDONLY,
    }
}

/// Whether `path` exists and starts with `expected`.
fn starts_with(path: &Path, expected: &[u8]) -> bool {
    let mut head = Vec::with_capacity(expected.len());
    File::open(path)
        .and_then(|file| file.take(expected.len() as u64).read_to_end(&mut head))
        .is_ok_and(|_| head == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostCall};

    /// Devices with fixed heads; a file system's content is a directory
    /// the fake host "mounts" by the test filling `mount` beforehand.
    #[derive(Debug)]
    struct Devices(Vec<(PathBuf, Vec<u8>)>);

    impl BlockDevices for Devices {
        fn list(&self) -> io::Result<Vec<PathBuf>> {
            Ok(self.0.iter().map(|(path, _)| path.clone()).collect())
        }
        fn read_head(&self, device: &Path, len: usize) -> io::Result<Vec<u8>> {
            let (_, head) = self
                .0
                .iter()
                .find(|(path, _)| path == device)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            Ok(head[..len.min(head.len())].to_vec())
        }
    }

    fn iso_head(label: &str) -> Vec<u8> {
        let mut head = vec![0u8; HEAD_LEN];
        let pvd = 16 * 2048;
        head[pvd] = 1;
        head[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        head[pvd + 6] = 1;
        let mut padded = [b' '; 32];
        padded[..label.len()].copy_from_slice(label.as_bytes());
        head[pvd + 40..pvd + 72].copy_from_slice(&padded);
        head
    }

    fn ext4_head(label: &str) -> Vec<u8> {
        let mut head = vec![0u8; HEAD_LEN];
        let sb = 1024;
        head[sb + 56..sb + 58].copy_from_slice(&[0x53, 0xEF]);
        head[sb + 120..sb + 120 + label.len()].copy_from_slice(label.as_bytes());
        head
    }

    struct Setup {
        _dir: tempfile::TempDir,
        initramfs_image: PathBuf,
        id: PathBuf,
        mount: PathBuf,
    }

    /// An initrd without the image, with `id`; the "medium" holds an
    /// image starting with `on_medium`.
    fn setup(id: Option<&[u8]>, on_medium: Option<&[u8]>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup {
            initramfs_image: dir.path().join("rootfs.squashfs"),
            id: dir.path().join("rootfs.squashfs.id"),
            mount: dir.path().join("medium"),
            _dir: dir,
        };
        if let Some(id) = id {
            std::fs::write(&setup.id, id).unwrap();
        }
        if let Some(image) = on_medium {
            let path = setup.mount.join(IMAGE_ON_MEDIUM);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, [image, b" and the rest"].concat()).unwrap();
        }
        setup
    }

    fn find(
        host: &FakeHost,
        devices: &Devices,
        s: &Setup,
        wait: Duration,
    ) -> Result<Option<PathBuf>, MediumError> {
        root_image(host, devices, &s.initramfs_image, &s.id, &s.mount, wait)
    }

    fn mounted(host: &FakeHost) -> Vec<(String, Option<String>, MsFlags)> {
        host.calls()
            .into_iter()
            .filter_map(|call| match call {
                HostCall::Mount {
                    source,
                    fstype,
                    flags,
                    ..
                } => Some((source, fstype, flags)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_initrd_that_carries_the_image_uses_it_and_mounts_nothing() {
        let s = setup(Some(b"hsqs-1"), Some(b"hsqs-1"));
        std::fs::write(&s.initramfs_image, b"hsqs").unwrap();
        let host = FakeHost::new();
        let devices = Devices(vec![("/dev/sr0".into(), iso_head("ROS"))]);
        let found = find(&host, &devices, &s, Duration::ZERO).unwrap();
        assert_eq!(found, Some(s.initramfs_image.clone()));
        assert!(host.calls().is_empty(), "{:?}", host.calls());
    }

    #[test]
    fn without_an_image_or_its_id_there_is_nothing_to_switch() {
        let s = setup(None, Some(b"hsqs-1"));
        let host = FakeHost::new();
        let devices = Devices(vec![("/dev/sr0".into(), iso_head("ROS"))]);
        assert_eq!(find(&host, &devices, &s, Duration::ZERO).unwrap(), None);
        assert!(host.calls().is_empty());
    }

    #[test]
    fn the_iso_labelled_ros_is_mounted_read_only_and_its_image_used() {
        let s = setup(Some(b"hsqs-1"), Some(b"hsqs-1"));
        let host = FakeHost::new();
        let devices = Devices(vec![
            ("/dev/sda".into(), vec![0u8; HEAD_LEN]),
            ("/dev/sr0".into(), iso_head("ROS")),
        ]);
        let found = find(&host, &devices, &s, Duration::ZERO).unwrap();
        assert_eq!(found, Some(s.mount.join("boot/rootfs.squashfs")));
        assert_eq!(
            mounted(&host),
            [(
                "/dev/sr0".to_owned(),
                Some("iso9660".to_owned()),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
            )]
        );
    }

    #[test]
    fn an_installed_state_partition_is_mounted_writable_with_a_read_only_view() {
        let s = setup(Some(b"hsqs-1"), Some(b"hsqs-1"));
        let host = FakeHost::new();
        let devices = Devices(vec![("/dev/vda3".into(), ext4_head("RANCHER_STATE"))]);
        let found = find(&host, &devices, &s, Duration::ZERO).unwrap();
        assert_eq!(found, Some(s.mount.join("boot/rootfs.squashfs")));
        let mounts = mounted(&host);
        assert_eq!(mounts.len(), 2, "{mounts:?}");
        assert_eq!(mounts[0].0, "/dev/vda3");
        assert_eq!(mounts[0].1.as_deref(), Some("ext4"));
        assert!(!mounts[0].2.contains(MsFlags::MS_RDONLY), "{mounts:?}");
        assert!(
            mounts[1]
                .2
                .contains(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY),
            "{mounts:?}"
        );
    }

    #[test]
    fn a_medium_with_another_image_is_unmounted_and_named_when_none_matches() {
        let s = setup(Some(b"hsqs-2"), Some(b"hsqs-1"));
        let host = FakeHost::new();
        let devices = Devices(vec![("/dev/sr0".into(), iso_head("ROS"))]);
        let err = find(&host, &devices, &s, Duration::ZERO).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("labelled ROS or RANCHER_STATE"), "{text}");
        assert!(text.contains("not matching: /dev/sr0"), "{text}");
        assert!(
            host.calls()
                .iter()
                .any(|c| matches!(c, HostCall::Umount { .. })),
            "{:?}",
            host.calls()
        );
    }

    #[test]
    fn the_iso_wins_over_a_state_partition_with_the_same_image() {
        let s = setup(Some(b"hsqs-1"), Some(b"hsqs-1"));
        let host = FakeHost::new();
        let devices = Devices(vec![
            ("/dev/sr0".into(), iso_head("ROS")),
            ("/dev/vda3".into(), ext4_head("RANCHER_STATE")),
        ]);
        find(&host, &devices, &s, Duration::ZERO).unwrap();
        assert_eq!(mounted(&host)[0].0, "/dev/sr0");
    }

    #[test]
    fn no_medium_at_all_fails_after_the_wait_saying_what_it_looked_for() {
        let s = setup(Some(b"hsqs-1"), None);
        let host = FakeHost::new();
        let devices = Devices(vec![("/dev/vda".into(), vec![0u8; HEAD_LEN])]);
        let started = Instant::now();
        let err = find(&host, &devices, &s, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            err.to_string()
                .contains("with /boot/rootfs.squashfs matching this initrd"),
            "{err}"
        );
    }
}
