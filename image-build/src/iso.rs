//! The hybrid ISO: ISOLINUX boots it from a CD, and its MBR from a USB
//! stick or a disk. ISOLINUX itself comes from Debian's packages.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::debian::{Packages, run};

/// The kernel command line of the image. The last console= is where
/// /dev/console (and `ros: ready`) goes: the serial port, for servers and
/// tests; the screen gets the kernel's messages and a login too. As on
/// the RancherOS ISO, both log `rancher` in by themselves (a live
/// medium; an installed or cloud machine asks for a password or a key).
pub const CMDLINE: &str = "console=tty1 console=ttyS0,115200n8 rancher.autologin=[tty1,ttyS0]";

/// The volume label: datasources and the installer find the media by it.
const LABEL: &str = "ROS";

pub fn write(
    vmlinuz: &Path,
    initrd: &Path,
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
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(iso)
        .arg("-isohybrid-mbr")
        .arg(isolinux.join("usr/lib/ISOLINUX/isohdpfx.bin"))
        .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args(["-V", LABEL, "-J", "-R"])
        .arg(staging))
    .context("xorriso (apt-get install xorriso)")
}
