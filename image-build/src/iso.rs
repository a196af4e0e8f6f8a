//! The hybrid ISO: ISOLINUX boots it from a CD, and its MBR from a USB
//! stick or a disk, with a BIOS; with UEFI, GRUB's EFI image boots it from
//! the El Torito EFI entry (a CD) or from the EFI partition of its GPT (a
//! disk), both the same FAT image. Both loaders boot the same kernel,
//! initrd and [`CMDLINE`]. ISOLINUX and GRUB come from Debian's packages.
//!
//! The initrd is the small one (`ros` alone, see [`crate::initrd`]); the
//! root image is `boot/rootfs.squashfs` beside it, which PID 1 mounts
//! from the medium, so the ISO holds it once and the machine does not
//! keep it in RAM.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::boot_loader;
use crate::debian::{Packages, run};

/// The kernel command line of the image. The last console= is where
/// /dev/console (and `ros: ready`) goes: the serial port, for servers and
/// tests; the screen gets the kernel's messages and a login too. As on
/// the RancherOS ISO, both log `rancher` in by themselves (a live
/// medium; an installed or cloud machine asks for a password or a key).
/// A live medium never writes to a disk unasked: no blank disk is
/// formatted as the state partition (it may be the one to install to);
/// a disk labelled RANCHER_STATE is still used.
pub const CMDLINE: &str = "console=tty1 console=ttyS0,115200n8 rancher.autologin=[tty1,ttyS0] rancher.state.autoformat=[]";

/// The UEFI boot image, inside the ISO 9660 tree (xorriso points both the
/// El Torito entry and the GPT partition at it).
const EFI_IMAGE: &str = "boot/efi.img";

/// The volume label: datasources and the installer find the media by it.
const LABEL: &str = "ROS";

pub fn write(
    vmlinuz: &Path,
    initrd: &Path,
    squashfs: &Path,
    cache: &Path,
    staging: &Path,
    iso: &Path,
) -> anyhow::Result<()> {
    let packages = Packages::new(cache)?;
    let isolinux = packages.unpacked(&packages.candidate("isolinux")?)?;
    let syslinux = packages.unpacked(&packages.candidate("syslinux-common")?)?;

    if staging.exists() {
        std::fs::remove_dir_all(staging)?;
    }
    let boot = staging.join("boot");
    let loader = staging.join("isolinux");
    std::fs::create_dir_all(&boot)?;
    std::fs::create_dir_all(&loader)?;
    std::fs::copy(vmlinuz, boot.join("vmlinuz"))?;
    std::fs::copy(initrd, boot.join("initrd"))?;
    std::fs::copy(squashfs, staging.join(disk_layout::state_files::ROOTFS))?;
    std::fs::copy(
        isolinux.join("usr/lib/ISOLINUX/isolinux.bin"),
        loader.join("isolinux.bin"),
    )?;
    std::fs::copy(
        syslinux.join("usr/lib/syslinux/modules/bios/ldlinux.c32"),
        loader.join("ldlinux.c32"),
    )?;
    std::fs::write(
        loader.join("isolinux.cfg"),
        format!(
            "SERIAL 0 115200\nDEFAULT ros\nPROMPT 0\nTIMEOUT 0\nLABEL ros\n  KERNEL /boot/vmlinuz\n  INITRD /boot/initrd\n  APPEND {CMDLINE}\n"
        ),
    )?;
    boot_loader::iso_efi_image(cache, CMDLINE, &staging.join(EFI_IMAGE))?;
    // Volume dates (SOURCE_DATE_EPOCH) and every file's and directory's
    // (the staged copies are dated now) from the last commit: builds repeat.
    let epoch = crate::epoch::source_date_epoch()?;
    run(Command::new("xorriso")
        .env("SOURCE_DATE_EPOCH", &epoch)
        .args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(iso)
        .arg("--set_all_file_dates")
        .arg(format!("={epoch}"))
        .arg("-isohybrid-mbr")
        .arg(isolinux.join("usr/lib/ISOLINUX/isohdpfx.bin"))
        .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args(["-eltorito-alt-boot", "-e", EFI_IMAGE, "-no-emul-boot"])
        .arg("-isohybrid-gpt-basdat")
        // No padding to whole 1 MiB "cylinders" (up to 1 MiB of zeros):
        // firmware that boots it as a disk reads LBA, not cylinders.
        .args(["-partition_cyl_align", "off"])
        .args(["-V", LABEL, "-J", "-R"])
        .arg(staging))
    .context("xorriso (apt-get install xorriso)")
}
