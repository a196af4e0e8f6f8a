//! The hybrid ISO boots every way a machine can start it: under UEFI
//! (OVMF) as a CD and as a disk (a USB stick written with `dd`), and under
//! a BIOS (SeaBIOS) as a disk; as a BIOS CD `boot.rs` boots it. Each way
//! reaches `ros: ready` with the same kernel command line as ISOLINUX's
//! entry, and says which firmware started it.

use std::path::{Path, PathBuf};

use qemu_tests::{Boot, Image, Vm, VmBuilder, image_dir};

const SHELL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The words of ISOLINUX's `APPEND` line, as the ISO was built with.
fn isolinux_append() -> Vec<String> {
    let config = image_dir().join("iso-root/isolinux/isolinux.cfg");
    let text = std::fs::read_to_string(&config)
        .unwrap_or_else(|e| panic!("{}: {e} (build the iso step)", config.display()));
    let append = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("APPEND "))
        .unwrap_or_else(|| panic!("no APPEND line in {}:\n{text}", config.display()));
    append.split_whitespace().map(str::to_string).collect()
}

/// A copy of the ISO to attach as a disk: the guest may write to a disk.
fn iso_as_disk(dir: &Path, image: &Image) -> PathBuf {
    let disk = dir.join("ros-iso-disk.img");
    std::fs::copy(&image.iso, &disk).expect("copying the ISO");
    disk
}

/// Boots to ready and a root shell; checks the kernel command line and
/// the firmware; returns the machine for more checks.
fn boot_and_check(name: &str, builder: VmBuilder, firmware: &str) -> Vm {
    let mut vm = builder.start();
    let ready = vm.wait_ready();
    eprintln!(
        "{name}: ros: ready in {ready:?} (guest clock), {:?} since QEMU started",
        vm.elapsed()
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    let cmdline = vm.check("cat /proc/cmdline");
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    for word in isolinux_append() {
        assert!(
            words.contains(&word.as_str()),
            "{name}: {word:?} missing from the kernel command line {cmdline:?}"
        );
    }
    let booted_by = vm.check("[ -d /sys/firmware/efi ] && echo uefi || echo bios");
    assert_eq!(
        booted_by.trim(),
        firmware,
        "{name}: started by the wrong firmware"
    );
    vm
}

#[test]
fn the_iso_boots_as_a_cd_under_uefi() {
    let image = Image::built();
    let vm = boot_and_check("UEFI CD", VmBuilder::new(image, Boot::Cdrom).uefi(), "uefi");
    assert!(!vm.output().contains("Kernel panic"));
}

#[test]
fn the_iso_boots_as_a_disk_under_uefi() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let image = Image::built();
    let disk = iso_as_disk(dir.path(), &image);
    let vm = boot_and_check(
        "UEFI disk",
        VmBuilder::new(image, Boot::Disk).uefi().drive(&disk),
        "uefi",
    );
    assert!(!vm.output().contains("Kernel panic"));
}

#[test]
fn the_iso_boots_as_a_disk_under_bios() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let image = Image::built();
    let disk = iso_as_disk(dir.path(), &image);
    let vm = boot_and_check(
        "BIOS disk",
        VmBuilder::new(image, Boot::Disk).drive(&disk),
        "bios",
    );
    assert!(!vm.output().contains("Kernel panic"));
}
