use std::process::Command;
use std::sync::Mutex;

use disk_layout::{Guid, STATE_NUMBER, ros_layout};

use super::*;

const MIB: u64 = 1 << 20;

/// Records the kernel calls instead of making them.
#[derive(Debug, Default)]
struct FakeResizer {
    calls: Mutex<Vec<String>>,
    fail: bool,
}

impl Resizer for FakeResizer {
    fn resize_partition(&self, _: &File, number: u32, start: u64, length: u64) -> io::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("partition {number} {start} {length}"));
        if self.fail {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        Ok(())
    }

    fn resize_ext4(&self, mount: &Path, blocks: u64) -> io::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ext4 {} {blocks}", mount.display()));
        Ok(())
    }
}

/// A sysfs and /dev of one disk `vda` (an image file of `size` bytes,
/// the layout written for `written` bytes) with partitions 1 to 3.
fn machine(dir: &Path, written: u64, size: u64) -> GrowPaths {
    let paths = GrowPaths {
        sys_class_block: dir.join("sys/class/block"),
        dev: dir.join("dev"),
    };
    std::fs::create_dir_all(&paths.sys_class_block).unwrap();
    std::fs::create_dir_all(&paths.dev).unwrap();
    let devices = dir.join("sys/devices/virtio0/block/vda");
    for n in 1..=3 {
        let part = devices.join(format!("vda{n}"));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("partition"), format!("{n}\n")).unwrap();
        std::os::unix::fs::symlink(&part, paths.sys_class_block.join(format!("vda{n}"))).unwrap();
    }
    std::fs::write(devices.join("size"), format!("{}\n", size / 512)).unwrap();
    std::os::unix::fs::symlink(&devices, paths.sys_class_block.join("vda")).unwrap();
    let image = paths.dev.join("vda");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&image)
        .unwrap();
    file.set_len(written).unwrap();
    let mut n = 0u8;
    let gpt = ros_layout(written, MIB, || {
        n += 1;
        Guid::v4_from([n; 16])
    })
    .unwrap();
    disk_layout::write(&mut file, &gpt, &[]).unwrap();
    file.set_len(size).unwrap();
    paths
}

#[test]
fn the_last_partition_of_a_larger_disk_grows_and_the_kernel_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let paths = machine(dir.path(), 64 * MIB, 256 * MIB);
    let resizer = FakeResizer::default();
    let grown = grow_partition(&paths, &paths.dev.join("vda3"), &resizer)
        .unwrap()
        .unwrap();
    // The state partition starts at 3 MiB (BIOS boot, a 1 MiB ESP) and
    // now ends at the last whole MiB before the backup table.
    assert_eq!(
        grown,
        PartitionGrown {
            disk: paths.dev.join("vda"),
            number: 3,
            old_bytes: 60 * MIB,
            new_bytes: 252 * MIB,
        }
    );
    assert_eq!(
        *resizer.calls.lock().unwrap(),
        [format!("partition 3 {} {}", 3 * MIB, 252 * MIB)]
    );
    let mut disk = File::open(paths.dev.join("vda")).unwrap();
    let gpt = disk_layout::read(&mut disk, 256 * MIB).unwrap();
    assert_eq!(gpt.sectors, 256 * MIB / 512);
    assert_eq!(gpt.partition(STATE_NUMBER).unwrap().bytes(), 252 * MIB);

    // The next boot: nothing to do, nothing asked of the kernel.
    let again = FakeResizer::default();
    assert_eq!(
        grow_partition(&paths, &paths.dev.join("vda3"), &again).unwrap(),
        None
    );
    assert!(again.calls.lock().unwrap().is_empty());
}

#[test]
fn a_partition_that_is_not_the_last_keeps_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let paths = machine(dir.path(), 64 * MIB, 128 * MIB);
    let resizer = FakeResizer::default();
    let grown = grow_partition(&paths, &paths.dev.join("vda2"), &resizer)
        .unwrap()
        .unwrap();
    assert_eq!(grown.old_bytes, grown.new_bytes);
    assert!(resizer.calls.lock().unwrap().is_empty());
}

#[test]
fn a_whole_disk_or_a_disk_without_gpt_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let paths = machine(dir.path(), 64 * MIB, 128 * MIB);
    let resizer = FakeResizer::default();
    assert_eq!(
        grow_partition(&paths, &paths.dev.join("vda"), &resizer).unwrap(),
        None
    );
    // No table at all.
    std::fs::write(
        paths.dev.join("vda"),
        vec![0u8; usize::try_from(8 * MIB).unwrap()],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sys/devices/virtio0/block/vda/size"),
        format!("{}\n", 8 * MIB / 512),
    )
    .unwrap();
    assert_eq!(
        grow_partition(&paths, &paths.dev.join("vda3"), &resizer).unwrap(),
        None
    );
    assert!(resizer.calls.lock().unwrap().is_empty());
}

#[test]
fn a_kernel_that_refuses_is_an_error_naming_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let paths = machine(dir.path(), 64 * MIB, 128 * MIB);
    let resizer = FakeResizer {
        fail: true,
        ..FakeResizer::default()
    };
    let error = grow_partition(&paths, &paths.dev.join("vda3"), &resizer).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "telling the kernel {} has grown: Device or resource busy (os error 16)",
            paths.dev.join("vda3").display()
        )
    );
}

fn mke2fs(file: &Path, size: u64) {
    let out = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-L",
            "RANCHER_STATE",
        ])
        .arg(file)
        .arg(format!("{}k", size / 1024))
        .output()
        .expect("mke2fs (e2fsprogs)");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn an_ext4_file_system_smaller_than_its_device_is_grown_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.img");
    File::create(&part).unwrap().set_len(32 * MIB).unwrap();
    mke2fs(&part, 32 * MIB);
    let resizer = FakeResizer::default();
    // It fills the device: nothing to do.
    assert_eq!(
        grow_filesystem(&part, Path::new("/mnt"), &resizer).unwrap(),
        None
    );
    File::options()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(96 * MIB)
        .unwrap();
    let grown = grow_filesystem(&part, Path::new("/mnt"), &resizer)
        .unwrap()
        .unwrap();
    assert_eq!(
        grown,
        FilesystemGrown {
            block_size: 4096,
            old_blocks: 8192,
            new_blocks: 24576,
        }
    );
    assert_eq!(*resizer.calls.lock().unwrap(), ["ext4 /mnt 24576"]);
    // Not ext: left alone.
    std::fs::write(&part, vec![0u8; 8192]).unwrap();
    assert_eq!(
        grow_filesystem(&part, Path::new("/mnt"), &resizer).unwrap(),
        None
    );
}

/// Needs root (a loop device, mount): the real ioctl grows a mounted
/// file system.
#[test]
fn the_kernel_grows_a_mounted_ext4_online() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (loop device and mount)"
    );
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs.img");
    File::create(&image).unwrap().set_len(32 * MIB).unwrap();
    mke2fs(&image, 32 * MIB);
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let device = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let mount = dir.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let result = (|| {
        nix::mount::mount(
            Some(&device),
            &mount,
            Some("ext4"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )?;
        // The device grows under the mounted file system.
        File::options()
            .write(true)
            .open(&image)?
            .set_len(128 * MIB)?;
        let status = Command::new("losetup").arg("-c").arg(&device).status()?;
        assert!(status.success());
        let grown = grow_filesystem(&device, &mount, &KernelResizer);
        let stat = nix::sys::statvfs::statvfs(&mount)?;
        let _ = nix::mount::umount(&mount);
        Ok::<_, io::Error>((grown, stat.blocks() * stat.fragment_size()))
    })();
    let _ = Command::new("losetup").arg("-d").arg(&device).status();
    let (grown, bytes) = result.unwrap();
    // EXT4_IOC_RESIZE_FS needs CAP_SYS_RESOURCE, which some sandboxes
    // drop even for root: there the kernel must have recognised the
    // ioctl (EPERM from its capability check, not ENOTTY) and the QEMU
    // tests show the growth.
    if !has_cap_sys_resource() {
        eprintln!("CAP_SYS_RESOURCE is missing: checking that the kernel knows the ioctl only");
        match grown {
            Err(GrowError::Resize { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EPERM), "{source}");
            }
            other => panic!("expected EPERM without CAP_SYS_RESOURCE: {other:?}"),
        }
        return;
    }
    assert_eq!(grown.unwrap().unwrap().new_blocks, 32768);
    assert!(bytes > 100 * MIB, "{bytes} bytes after growing");
}

fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    effective & (1 << 24) != 0
}
