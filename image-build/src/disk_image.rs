//! `ros-ec2.raw`: a disk image with the layout `ros install` writes
//! (disk-layout's [`ros_layout`]): GRUB's boot code in the protective
//! MBR and its core.img in the BIOS boot partition, the EFI system
//! partition image, and the state partition (ext4, `RANCHER_STATE`)
//! holding the kernel, the small initrd, the root image beside it (PID 1
//! mounts it from there) and `grub.cfg`. The kernel command line
//! turns the `ec2` datasource on. The state partition is only as large as
//! its files and some room; PID 1 grows it to the volume on first boot.
//!
//! No loop device and no mount: the tables are written into a sparse file
//! and `mke2fs -d` fills the file system at its offset.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use disk_layout::{
    ALIGN, BIOS_BOOT_FIRST, BIOS_BOOT_LAST, BOOT_CODE_LEN, ESP_FIRST, Guid, SECTOR, STATE_NAME,
    STATE_NUMBER, ros_layout, state_files,
};
use sha2::{Digest, Sha256};

/// The kernel command line of the EC2 image: the screen (`tty0`, the
/// active terminal, where EC2's instance screenshot looks) and the serial
/// port last, so `/dev/console` is ttyS0, the console log EC2 keeps; and
/// user-data, host name and SSH keys from the instance metadata service.
pub fn ec2_cmdline() -> String {
    "console=tty0 console=ttyS0,115200n8 rancher.cloud_init.datasources=[ec2]".to_string()
}

/// Free room in the state partition besides the kernel and the initrd:
/// the journal, inode tables, the configuration and a first boot's logs
/// until it has grown.
const ROOM: u64 = 24 << 20;
const MIB: u64 = 1 << 20;

/// GRUB's parts for a disk (see the boot loader step).
#[derive(Debug, Clone)]
pub struct LoaderFiles {
    /// boot.img: its first 440 bytes become the MBR's code.
    pub boot_img: PathBuf,
    /// core.img, written at the BIOS boot partition's start.
    pub core_img: PathBuf,
    /// A FAT image that becomes the EFI system partition as it is.
    pub esp_img: PathBuf,
}

/// What was written, for the size report and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskImage {
    /// The file's length.
    pub apparent: u64,
    /// Bytes allocated on the build host (the file is sparse).
    pub allocated: u64,
    /// The state partition's size.
    pub state_bytes: u64,
}

/// Writes `image` from the kernel, the initrd, the root image and the
/// loaders, with `cmdline` in grub.cfg; `staging` is a scratch directory
/// for the state partition's files.
pub fn write(
    vmlinuz: &Path,
    initrd: &Path,
    squashfs: &Path,
    loaders: &LoaderFiles,
    cmdline: &str,
    staging: &Path,
    image: &Path,
) -> anyhow::Result<DiskImage> {
    // The state partition's files, as mke2fs -d copies them.
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    let grub_cfg = staging.join(state_files::GRUB_CFG);
    std::fs::create_dir_all(grub_cfg.parent().unwrap_or(staging))
        .with_context(|| format!("creating {}", staging.display()))?;
    for (from, to) in [
        (vmlinuz, state_files::VMLINUZ),
        (initrd, state_files::INITRD),
        (squashfs, state_files::ROOTFS),
    ] {
        std::fs::copy(from, staging.join(to))
            .with_context(|| format!("copying {} into {}", from.display(), staging.display()))?;
    }
    std::fs::write(&grub_cfg, state_files::grub_cfg(cmdline))
        .with_context(|| format!("writing {}", grub_cfg.display()))?;

    let boot_img = read(&loaders.boot_img)?;
    let core_img = read(&loaders.core_img)?;
    let esp_img = read(&loaders.esp_img)?;
    if boot_img.len() < BOOT_CODE_LEN {
        bail!(
            "{} is {} bytes; boot code needs {BOOT_CODE_LEN}",
            loaders.boot_img.display(),
            boot_img.len()
        );
    }
    let bios_boot_bytes = (BIOS_BOOT_LAST + 1 - BIOS_BOOT_FIRST) * SECTOR;
    if core_img.len() as u64 > bios_boot_bytes {
        bail!(
            "{} is {} bytes; the BIOS boot partition holds {bios_boot_bytes}",
            loaders.core_img.display(),
            core_img.len()
        );
    }

    let content = [vmlinuz, initrd, squashfs]
        .iter()
        .map(|path| std::fs::metadata(path).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()
        .context("sizing the kernel, initrd and root image")?;
    let state_bytes = (content + ROOM).div_ceil(MIB) * MIB;
    let state_first = (ESP_FIRST + (esp_img.len() as u64).div_ceil(SECTOR)).div_ceil(ALIGN) * ALIGN;
    // The last MiB holds the backup table; the state partition ends
    // just before it.
    let size = state_first * SECTOR + state_bytes + MIB;

    // GUIDs from what the image holds: the same inputs, the same image.
    let seed = Sha256::new()
        .chain_update(std::fs::read(vmlinuz).context("reading the kernel")?)
        .chain_update(std::fs::read(initrd).context("reading the initrd")?)
        .chain_update(std::fs::read(squashfs).context("reading the root image")?)
        .chain_update(cmdline)
        .finalize();
    let mut n = 0u8;
    let guid = || {
        n += 1;
        let digest = Sha256::new()
            .chain_update(seed)
            .chain_update([n])
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Guid::v4_from(bytes)
    };
    let gpt = ros_layout(size, esp_img.len() as u64, guid)?;
    let state = gpt
        .partition(STATE_NUMBER)
        .context("the layout has a state partition")?;
    if state.bytes() != state_bytes {
        bail!(
            "state partition is {} bytes, {state_bytes} planned",
            state.bytes()
        );
    }

    if image.exists() {
        std::fs::remove_file(image).with_context(|| format!("removing {}", image.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(image)
        .with_context(|| format!("creating {}", image.display()))?;
    file.set_len(size)
        .with_context(|| format!("sizing {}", image.display()))?;
    disk_layout::write(&mut file, &gpt, &boot_img[..BOOT_CODE_LEN])
        .with_context(|| format!("writing the partition table of {}", image.display()))?;
    for (lba, bytes, what) in [
        (BIOS_BOOT_FIRST, &core_img, "core.img"),
        (ESP_FIRST, &esp_img, "the EFI system partition"),
    ] {
        file.seek(SeekFrom::Start(lba * SECTOR))
            .and_then(|_| file.write_all(bytes))
            .with_context(|| format!("writing {what} into {}", image.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", image.display()))?;
    drop(file);

    mke2fs(image, staging, state.offset(), state_bytes, &seed[16..32])?;

    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(image)?;
    Ok(DiskImage {
        apparent: meta.len(),
        allocated: meta.blocks() * 512,
        state_bytes,
    })
}

/// The `ec2` step: `ros-ec2.raw` in the output directory from the
/// kernel, the small initrd, the root image and GRUB's disk loaders.
pub fn build(dirs: &crate::BuildDirs) -> anyhow::Result<DiskImage> {
    let out = |name: &str| dirs.out.join(name);
    let loaders = disk_loaders(dirs)?;
    write(
        &out("vmlinuz"),
        &out(crate::initrd::MEDIA_INITRD),
        &out("rootfs.squashfs"),
        &loaders,
        &ec2_cmdline(),
        &out("ec2-root"),
        &out(IMAGE_NAME),
    )
}

/// The image's file name in the output directory.
pub const IMAGE_NAME: &str = "ros-ec2.raw";

/// GRUB's disk loaders, from the boot loader.
fn disk_loaders(dirs: &crate::BuildDirs) -> anyhow::Result<LoaderFiles> {
    let loaders = crate::boot_loader::disk_loaders(dirs)?;
    Ok(LoaderFiles {
        boot_img: loaders.boot_img,
        core_img: loaders.core_img,
        esp_img: loaders.esp_img,
    })
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The state file system at `offset` in `image`, filled from `staging`.
/// 4 KiB blocks whatever the size (mke2fs picks 1 KiB for a small file
/// system, which would stay small-blocked once grown); a UUID from the
/// inputs; `SOURCE_DATE_EPOCH` as every time stamp when set.
fn mke2fs(
    image: &Path,
    staging: &Path,
    offset: u64,
    bytes: u64,
    uuid: &[u8],
) -> anyhow::Result<()> {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-4{}-8{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    );
    let mut command = Command::new("mke2fs");
    command
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-T", "default"])
        .args(["-L", STATE_NAME, "-U", &uuid])
        .arg("-E")
        .arg(format!("offset={offset},root_owner=0:0,hash_seed={uuid}"))
        .arg("-d")
        .arg(staging)
        .arg(image)
        .arg(format!("{}k", bytes / 1024));
    if let Some(epoch) = std::env::var_os("SOURCE_DATE_EPOCH") {
        command.env("E2FSPROGS_FAKE_TIME", epoch);
    }
    let output = command
        .output()
        .context("running mke2fs (apt-get install e2fsprogs)")?;
    if !output.status.success() {
        bail!(
            "mke2fs on {} at offset {offset}: {}",
            image.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: &mut Command) -> String {
        let output = command.output().unwrap();
        assert!(output.status.success(), "{command:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn the_ec2_image_has_the_install_layout_and_a_state_file_system_with_the_boot_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("vmlinuz"), vec![1u8; 3 << 20]).unwrap();
        std::fs::write(path("initrd"), vec![2u8; 1 << 20]).unwrap();
        std::fs::write(path("rootfs.squashfs"), vec![3u8; 4 << 20]).unwrap();
        std::fs::write(path("boot.img"), vec![0xEBu8; 512]).unwrap();
        std::fs::write(path("core.img"), vec![0xC0u8; 40_000]).unwrap();
        std::fs::write(path("esp.img"), vec![0xE5u8; 2 << 20]).unwrap();
        let loaders = LoaderFiles {
            boot_img: path("boot.img"),
            core_img: path("core.img"),
            esp_img: path("esp.img"),
        };
        let image = path("ros-ec2.raw");
        let written = write(
            &path("vmlinuz"),
            &path("initrd"),
            &path("rootfs.squashfs"),
            &loaders,
            &ec2_cmdline(),
            &path("staging"),
            &image,
        )
        .unwrap();
        // 8 MiB of files and the room, whole MiB.
        assert_eq!(written.state_bytes, 32 << 20);
        // 1 MiB tables and gap, 1 MiB BIOS boot, 2 MiB ESP, state, 1 MiB backup.
        assert_eq!(written.apparent, (5 << 20) + (32 << 20));
        assert!(written.allocated < written.apparent, "{written:?}");

        // util-linux reads the same three partitions.
        let parts = run(Command::new("partx")
            .args(["-g", "-r", "-o", "NR,START,SECTORS,NAME"])
            .arg(&image));
        assert_eq!(
            parts,
            "1 2048 2048 BIOS\\x20boot\n2 4096 4096 EFI\\x20system\n3 8192 65536 RANCHER_STATE\n"
        );
        let bytes = std::fs::read(&image).unwrap();
        assert!(bytes[..440].iter().all(|&b| b == 0xEB));
        assert!(
            bytes[2048 * 512..2048 * 512 + 40_000]
                .iter()
                .all(|&b| b == 0xC0)
        );
        assert!(bytes[4096 * 512..8192 * 512].iter().all(|&b| b == 0xE5));

        // The state partition alone: ext4 labelled RANCHER_STATE, clean,
        // 4 KiB blocks, with the boot files.
        let state = path("state.img");
        std::fs::write(&state, &bytes[8192 * 512..(8192 + 65536) * 512]).unwrap();
        let probe = run(Command::new("blkid")
            .args(["-p", "-o", "export"])
            .arg(&state));
        assert!(probe.contains("LABEL=RANCHER_STATE"), "{probe}");
        assert!(probe.contains("TYPE=ext4"), "{probe}");
        run(Command::new("e2fsck").args(["-f", "-n"]).arg(&state));
        let cfg = run(Command::new("debugfs")
            .args(["-R", "cat /boot/grub/grub.cfg"])
            .arg(&state));
        assert_eq!(
            cfg,
            "linux /boot/vmlinuz console=tty0 console=ttyS0,115200n8 rancher.cloud_init.datasources=[ec2]\ninitrd /boot/initrd\n"
        );
        for (file, size) in [
            ("/boot/initrd", "Size: 1048576"),
            ("/boot/rootfs.squashfs", "Size: 4194304"),
        ] {
            let stat = run(Command::new("debugfs")
                .args(["-R", &format!("stat {file}")])
                .arg(&state));
            assert!(stat.contains(size), "{file}: {stat}");
        }
        let block_size = run(Command::new("dumpe2fs").arg("-h").arg(&state));
        assert!(
            block_size.contains("Block size:               4096"),
            "{block_size}"
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for (name, len) in [
            ("vmlinuz", 1000),
            ("initrd", 2000),
            ("rootfs.squashfs", 3000),
            ("boot.img", 512),
            ("core.img", 512),
            ("esp.img", 1 << 20),
        ] {
            std::fs::write(path(name), vec![7u8; len]).unwrap();
        }
        let loaders = LoaderFiles {
            boot_img: path("boot.img"),
            core_img: path("core.img"),
            esp_img: path("esp.img"),
        };
        let build = |name: &str| {
            write(
                &path("vmlinuz"),
                &path("initrd"),
                &path("rootfs.squashfs"),
                &loaders,
                "x",
                &path("staging"),
                &path(name),
            )
            .unwrap();
            std::fs::read(path(name)).unwrap()
        };
        let (a, b) = (build("a.raw"), build("b.raw"));
        // The tables (GUIDs from the inputs) are the same.
        assert_eq!(a[..34 * 512], b[..34 * 512]);
        let tail = a.len() - 33 * 512;
        assert_eq!(a[tail..], b[tail..]);
    }

    #[test]
    fn a_core_image_too_large_for_its_partition_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for (name, len) in [
            ("vmlinuz", 10),
            ("initrd", 10),
            ("rootfs.squashfs", 10),
            ("boot.img", 512),
            ("core.img", (1 << 20) + 1),
            ("esp.img", 4096),
        ] {
            std::fs::write(path(name), vec![7u8; len]).unwrap();
        }
        let loaders = LoaderFiles {
            boot_img: path("boot.img"),
            core_img: path("core.img"),
            esp_img: path("esp.img"),
        };
        let error = write(
            &path("vmlinuz"),
            &path("initrd"),
            &path("rootfs.squashfs"),
            &loaders,
            "x",
            &path("s"),
            &path("i.raw"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("core.img is 1048577 bytes; the BIOS boot partition holds 1048576"),
            "{error}"
        );
        assert!(!path("i.raw").exists());
    }
}
