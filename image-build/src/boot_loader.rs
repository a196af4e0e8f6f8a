//! GRUB, from Debian's packages, as the boot loader of installed disks,
//! of the EC2 image and of the ISO's UEFI boot.
//!
//! Every disk has the same GPT layout (see `disk-layout`): the MBR's boot
//! code is GRUB's `boot.img`, which loads `core.img` from the first sector
//! of the BIOS boot partition (LBA 2048); the EFI system partition holds a
//! GRUB EFI image as the removable-media path `EFI/BOOT/BOOTX64.EFI`. Both
//! find the state partition on the disk they were loaded from (`(,gpt3)`:
//! GRUB fills in the boot disk, so a second disk with the same label is
//! never taken), run `/boot/grub/grub.cfg` from it (written by the
//! installer: one `linux` and one `initrd` line) and boot.
//!
//! The ISO's UEFI loader is smaller: it reads no configuration, its
//! commands are built in with the same kernel command line as ISOLINUX,
//! and it finds the ISO 9660 volume on the whole device it was loaded from,
//! CD or disk.
//!
//! Nothing is installed on the build host: `grub-mkimage` runs from the
//! unpacked grub-common package (its shared libraries come with
//! grub-common's dependencies, which `./dev setup` installs), with the
//! modules of the same GRUB version.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::BuildDirs;
use crate::debian::{Packages, run};

/// Where `core.img` starts on every disk: the BIOS boot partition.
pub const CORE_LBA: u64 = 2048;

/// The size of `esp.img`, the EFI system partition: a multiple of 1 MiB,
/// large enough for FAT16 (some firmware reads no FAT12 on a fixed disk).
pub const ESP_BYTES: u64 = 4 << 20;

const SECTOR: usize = 512;

/// Where `boot.img` keeps the LBA of the first sector of `core.img`
/// (GRUB_BOOT_MACHINE_KERNEL_SECTOR).
const BOOT_KERNEL_SECTOR: usize = 0x5c;
/// The jump that skips forcing the boot drive to 0x80 when the BIOS passes
/// a floppy number (GRUB_BOOT_MACHINE_DRIVE_CHECK); `grub-setup` replaces
/// it with two NOPs for hard disks, as done here.
const BOOT_DRIVE_CHECK: usize = 0x66;
/// The blocklist at the end of `core.img`'s first sector (diskboot): the
/// start LBA (8 bytes) and the length in sectors (2 bytes) of the rest.
const CORE_BLOCKLIST_START: usize = SECTOR - 12;
const CORE_BLOCKLIST_LEN: usize = SECTOR - 4;

/// The partition of the state file system, on the disk GRUB came from.
const DISK_PREFIX: &str = "(,gpt3)/boot/grub";

/// What the disk loaders run: the installer's grub.cfg, from the state
/// partition (`root`, set from the prefix), then boot. `source` runs it
/// with GRUB's script parser; nothing waits at a menu.
const DISK_CONFIG: &str = "source /boot/grub/grub.cfg\nboot\n";

/// GRUB modules of the BIOS `core.img` (dependencies come by themselves).
const BIOS_MODULES: &[&str] = &["biosdisk", "part_gpt", "ext2", "linux", "configfile"];

/// GRUB modules of the disk's EFI loader. `efi_gop` hands the firmware's
/// frame buffer to the kernel (efifb), so the screen shows the console.
const EFI_DISK_MODULES: &[&str] = &["part_gpt", "ext2", "linux", "configfile", "efi_gop"];

/// GRUB modules of the ISO's EFI loader: no script parser (`normal` and
/// what it pulls in are most of GRUB's size); `part_gpt` names the
/// partition it was loaded from when the ISO is a disk.
const EFI_ISO_MODULES: &[&str] = &["part_gpt", "iso9660", "linux", "efi_gop"];

/// The loaders `ros install` and the EC2 image write to a disk.
#[derive(Debug, Clone)]
pub struct DiskLoaders {
    /// 512 bytes; its first 440 are the MBR's boot code.
    pub boot_img: PathBuf,
    /// Written raw at [`CORE_LBA`].
    pub core_img: PathBuf,
    /// Written raw as the EFI system partition ([`ESP_BYTES`]).
    pub esp_img: PathBuf,
}

/// Builds `boot.img`, `core.img` and `esp.img` into `out/boot-loaders/`.
pub fn disk_loaders(dirs: &BuildDirs) -> anyhow::Result<DiskLoaders> {
    let grub = Grub::unpacked(&dirs.cache)?;
    let dir = dirs.out.join("boot-loaders");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("disk-embedded.cfg");
    write(&config, DISK_CONFIG.as_bytes())?;

    let loaders = DiskLoaders {
        boot_img: dir.join("boot.img"),
        core_img: dir.join("core.img"),
        esp_img: dir.join("esp.img"),
    };

    let boot_source = grub.i386_pc.join("boot.img");
    let mut boot = std::fs::read(&boot_source)
        .with_context(|| format!("reading {}", boot_source.display()))?;
    patch_boot_img(&mut boot, CORE_LBA)?;
    write(&loaders.boot_img, &boot)?;

    let core_raw = dir.join("core-unpatched.img");
    grub.mkimage(
        &grub.i386_pc,
        "i386-pc",
        DISK_PREFIX,
        &config,
        BIOS_MODULES,
        &core_raw,
    )?;
    let mut core =
        std::fs::read(&core_raw).with_context(|| format!("reading {}", core_raw.display()))?;
    patch_core_img(&mut core, CORE_LBA)?;
    write(&loaders.core_img, &core)?;
    std::fs::remove_file(&core_raw)?;

    let efi = dir.join("BOOTX64.EFI");
    grub.mkimage(
        &grub.x86_64_efi,
        "x86_64-efi",
        DISK_PREFIX,
        &config,
        EFI_DISK_MODULES,
        &efi,
    )?;
    fat_image(&efi, ESP_BYTES, "ESP", &loaders.esp_img)?;
    Ok(loaders)
}

/// The ISO's El Torito EFI boot image, as `image`: a FAT holding a GRUB
/// that boots `/boot/vmlinuz` and `/boot/initrd` from the ISO 9660 volume
/// of the device it came from with `cmdline`. Returns its size in bytes.
pub fn iso_efi_image(cache: &Path, cmdline: &str, image: &Path) -> anyhow::Result<u64> {
    let grub = Grub::unpacked(cache)?;
    let scratch = tempfile::tempdir().context("a scratch directory")?;
    let config = scratch.path().join("iso-embedded.cfg");
    write(&config, iso_config(cmdline)?.as_bytes())?;
    let efi = scratch.path().join("BOOTX64.EFI");
    // `()`: the whole device GRUB was loaded from (GRUB drops the
    // partition of the hybrid disk's EFI partition; a CD has none).
    grub.mkimage(
        &grub.x86_64_efi,
        "x86_64-efi",
        "()/boot",
        &config,
        EFI_ISO_MODULES,
        &efi,
    )?;
    let size = std::fs::metadata(&efi)?.len();
    // Room for FAT12's tables and directories, in whole 64 KiB.
    let bytes = (size + (64 << 10)).div_ceil(64 << 10) * (64 << 10);
    fat_image(&efi, bytes, "ROS_EFI", image)?;
    Ok(bytes)
}

/// The built-in commands of the ISO's EFI loader: GRUB's rescue parser runs
/// them, so each word is single-quoted (taken literally).
fn iso_config(cmdline: &str) -> anyhow::Result<String> {
    ensure!(
        !cmdline.contains(['\'', '\n']),
        "the kernel command line {cmdline:?} holds a quote or a newline, which GRUB's built-in config cannot take"
    );
    let words: Vec<String> = cmdline
        .split_whitespace()
        .map(|word| format!("'{word}'"))
        .collect();
    Ok(format!(
        "linux /boot/vmlinuz {}\ninitrd /boot/initrd\nboot\n",
        words.join(" ")
    ))
}

/// Makes GRUB's `boot.img` load `core.img` from `core_lba` of the disk the
/// BIOS booted, whatever drive number it passes.
fn patch_boot_img(boot: &mut [u8], core_lba: u64) -> anyhow::Result<()> {
    ensure!(
        boot.len() == SECTOR && boot[510..] == [0x55, 0xaa],
        "boot.img is not a 512-byte boot sector ({} bytes)",
        boot.len()
    );
    ensure!(
        boot[BOOT_DRIVE_CHECK] == 0xeb,
        "boot.img has no drive-check jump at {BOOT_DRIVE_CHECK:#x}: another GRUB version?"
    );
    boot[BOOT_KERNEL_SECTOR..BOOT_KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    boot[BOOT_DRIVE_CHECK..BOOT_DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    Ok(())
}

/// Points the blocklist of `core.img`'s first sector at the rest of it,
/// which follows that sector at `core_lba + 1`.
fn patch_core_img(core: &mut Vec<u8>, core_lba: u64) -> anyhow::Result<()> {
    if core.len() <= SECTOR {
        bail!("core.img is {} bytes: not a GRUB core image", core.len());
    }
    core.resize(core.len().div_ceil(SECTOR) * SECTOR, 0);
    let rest = u16::try_from(core.len() / SECTOR - 1)
        .context("core.img is too large for its one blocklist entry")?;
    core[CORE_BLOCKLIST_START..CORE_BLOCKLIST_START + 8]
        .copy_from_slice(&(core_lba + 1).to_le_bytes());
    core[CORE_BLOCKLIST_LEN..CORE_BLOCKLIST_LEN + 2].copy_from_slice(&rest.to_le_bytes());
    Ok(())
}

/// GRUB's tool and its two platforms' modules, unpacked from the cache.
struct Grub {
    mkimage: PathBuf,
    i386_pc: PathBuf,
    x86_64_efi: PathBuf,
}

impl Grub {
    fn unpacked(cache: &Path) -> anyhow::Result<Self> {
        let packages = Packages::new(cache)?;
        let root = |name: &str| -> anyhow::Result<PathBuf> {
            packages.unpacked(&packages.candidate(name)?)
        };
        Ok(Self {
            mkimage: root("grub-common")?.join("usr/bin/grub-mkimage"),
            i386_pc: root("grub-pc-bin")?.join("usr/lib/grub/i386-pc"),
            x86_64_efi: root("grub-efi-amd64-bin")?.join("usr/lib/grub/x86_64-efi"),
        })
    }

    /// One GRUB image for `format`, with `config` built in.
    fn mkimage(
        &self,
        modules_dir: &Path,
        format: &str,
        prefix: &str,
        config: &Path,
        modules: &[&str],
        out: &Path,
    ) -> anyhow::Result<()> {
        run(Command::new(&self.mkimage)
            .arg("--directory")
            .arg(modules_dir)
            .args(["--format", format, "--prefix", prefix, "--config"])
            .arg(config)
            .arg("--output")
            .arg(out)
            .args(modules))
        .with_context(|| {
            format!(
                "grub-mkimage for {format} (its libraries: apt-get install grub-common; see ./dev setup)"
            )
        })
    }
}

/// A FAT file system image of `bytes` with `efi` as
/// `/EFI/BOOT/BOOTX64.EFI`, made with mtools (no loop device, no root).
/// Serial number and times are fixed so builds repeat.
fn fat_image(efi: &Path, bytes: u64, label: &str, image: &Path) -> anyhow::Result<()> {
    let sectors = bytes / SECTOR as u64;
    if image.exists() {
        std::fs::remove_file(image).with_context(|| format!("removing {}", image.display()))?;
    }
    std::fs::File::create(image)
        .and_then(|f| f.set_len(bytes))
        .with_context(|| format!("creating {}", image.display()))?;
    let mtools = |tool: &str| {
        let mut command = Command::new(tool);
        command
            .env("SOURCE_DATE_EPOCH", "0")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(image);
        command
    };
    run(mtools("mformat")
        .args(["-T", &sectors.to_string(), "-h", "1", "-s", "32", "-c", "1"])
        .args(["-N", "52414e43", "-v", label, "::"]))
    .context("mformat (apt-get install mtools)")?;
    run(mtools("mmd").args(["::/EFI", "::/EFI/BOOT"]))?;
    run(mtools("mcopy").arg(efi).arg("::/EFI/BOOT/BOOTX64.EFI"))
        .with_context(|| format!("copying {} into {}", efi.display(), image.display()))
}

/// Where the root file system carries the disk loaders, for `ros install`.
pub const INSTALLED_DIR: &str = "usr/lib/ros/boot";

/// Copies the disk loaders into the root file system at `root`.
pub fn install(loaders: &DiskLoaders, root: &Path) -> anyhow::Result<()> {
    let dir = root.join(INSTALLED_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, file) in [
        ("boot.img", &loaders.boot_img),
        ("core.img", &loaders.core_img),
        ("esp.img", &loaders.esp_img),
    ] {
        std::fs::copy(file, dir.join(name))
            .with_context(|| format!("copying {} into {}", file.display(), dir.display()))?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for GRUB's boot.img: the bytes the patch checks.
    fn boot_sector() -> Vec<u8> {
        let mut boot = vec![0u8; SECTOR];
        boot[BOOT_DRIVE_CHECK] = 0xeb;
        boot[BOOT_DRIVE_CHECK + 1] = 0x05;
        boot[510] = 0x55;
        boot[511] = 0xaa;
        boot
    }

    #[test]
    fn boot_img_points_at_core_img_and_skips_the_drive_check() {
        let mut boot = boot_sector();
        patch_boot_img(&mut boot, 2048).unwrap();
        assert_eq!(&boot[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(&boot[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(&boot[510..], &[0x55, 0xaa]);
    }

    #[test]
    fn a_boot_img_of_another_shape_is_refused() {
        let mut short = vec![0u8; 440];
        let error = patch_boot_img(&mut short, 2048).unwrap_err().to_string();
        assert!(error.contains("440 bytes"), "{error}");
        let mut no_jump = boot_sector();
        no_jump[BOOT_DRIVE_CHECK] = 0;
        let error = patch_boot_img(&mut no_jump, 2048).unwrap_err().to_string();
        assert!(error.contains("drive-check"), "{error}");
    }

    #[test]
    fn core_img_loads_its_other_sectors_from_the_next_lba() {
        // 3 sectors and a bit: padded to 4, three of them after the first.
        let mut core = vec![0xaau8; 3 * SECTOR + 100];
        patch_core_img(&mut core, 2048).unwrap();
        assert_eq!(core.len(), 4 * SECTOR);
        assert_eq!(&core[0x1f4..0x1fc], &2049u64.to_le_bytes());
        assert_eq!(&core[0x1fc..0x1fe], &3u16.to_le_bytes());
        assert_eq!(core[0x1fe], 0xaa, "the load segment stays");
        assert!(core[3 * SECTOR + 100..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_core_img_of_one_sector_is_refused() {
        let error = patch_core_img(&mut vec![0; SECTOR], 2048)
            .unwrap_err()
            .to_string();
        assert!(error.contains("512 bytes"), "{error}");
    }

    #[test]
    fn the_iso_config_boots_with_every_word_of_the_command_line_quoted() {
        let config = iso_config("console=tty1  rancher.autologin=[tty1,ttyS0]").unwrap();
        assert_eq!(
            config,
            "linux /boot/vmlinuz 'console=tty1' 'rancher.autologin=[tty1,ttyS0]'\n\
             initrd /boot/initrd\nboot\n"
        );
        let error = iso_config("a='b c'").unwrap_err().to_string();
        assert!(error.contains("quote"), "{error}");
    }

    #[test]
    fn the_iso_config_takes_the_image_command_line() {
        let config = iso_config(crate::iso::CMDLINE).unwrap();
        for word in crate::iso::CMDLINE.split_whitespace() {
            assert!(config.contains(&format!("'{word}'")), "{word} in {config}");
        }
    }
}
