//! `ros install`, from the outside: the ISO boots with a blank virtio
//! disk, refuses a bad cloud-config, installs with a good one, reboots;
//! the disk then boots alone, under SeaBIOS and under OVMF, with the
//! cloud-config applied, and keeps `ros config set` and `/home` across a
//! reboot. The installed system refuses a second disk holding a file
//! system, and its own disk even with -f. Between the two boots the disk
//! is enlarged, and the state partition grows to it.
//!
//! One install serves every check: installing is the slow part under TCG.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::{Boot, Image, Vm, VmBuilder, tail};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);
const GIB: u64 = 1 << 30;

/// The cloud-config given to `ros install -c`: a host name and a file.
const CLOUD_CONFIG: &str = "#cloud-config
hostname: installed-box
write_files:
  - path: /etc/ros-test/installed
    content: written from the install's cloud-config
";

/// Prints `blank` when the first MiB of /dev/vda is zeros (the console
/// has no blkid; busybox od folds repeated lines into `*`).
const BLANK_VDA: &str =
    r#"[ -z "$(od -An -tx1 -N1048576 /dev/vda | tr -d ' 0*\n')" ] && echo blank || echo written"#;

fn sparse_file(path: &Path, size: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(size))
        .unwrap();
}

/// The disk booted alone: first disk on virtio, no ISO.
fn boot_disk(disk: &Path, second: Option<&Path>, uefi: bool) -> (Vm, Duration) {
    let mut builder = VmBuilder::new(Image::built(), Boot::Disk).drive(disk);
    if let Some(second) = second {
        builder = builder.drive(second);
    }
    if uefi {
        builder = builder.uefi();
    }
    let mut vm = builder.start();
    // The firmware reads the kernel and initrd from the disk: slower than
    // -kernel under TCG, more so on a loaded machine.
    vm.wait_for("ros: ready in ", READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = vm.wait_ready();
    let wall = vm.elapsed();
    eprintln!(
        "installed disk ({}): ros: ready in {ready:?} (guest clock), {wall:?} since QEMU started",
        if uefi { "OVMF" } else { "SeaBIOS" }
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    (vm, wall)
}

/// Writes `text` to `path` in the guest, line by line through printf.
fn write_guest_file(vm: &mut Vm, path: &str, text: &str) {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('\'', "'\\''")
        .replace('\n', "\\n");
    vm.check(&format!("printf '{escaped}' > {path}"));
}

#[test]
fn installs_from_the_iso_and_the_disk_boots_alone_under_seabios_and_ovmf() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    sparse_file(&disk, GIB);
    // A second disk with a file system on it: not to be installed over.
    let data = dir.path().join("data.img");
    sparse_file(&data, 64 << 20);
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-L", "DATA"])
        .arg(&data)
        .status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(mkfs.success());

    let mut vm = VmBuilder::new(Image::built(), Boot::Cdrom)
        .drive(&disk)
        .start();
    vm.wait_for("ros: ready in ", READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = vm.wait_ready();
    eprintln!(
        "ISO: ros: ready in {ready:?} (guest clock), {:?} since QEMU started",
        vm.elapsed()
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    // The live ISO formats no blank disk by itself.
    assert!(
        !vm.output().contains("formatted now"),
        "{}",
        tail(&vm.output(), 40)
    );
    assert_eq!(vm.check(BLANK_VDA).trim(), "blank");
    write_guest_file(&mut vm, "/tmp/cloud-config.yml", CLOUD_CONFIG);
    write_guest_file(
        &mut vm,
        "/tmp/bad.yml",
        "hostname: x\nrancher:\n  dbug: true\n",
    );

    // A bad cloud-config: the file, line and key named; nothing written.
    let bad = vm.run("ros install -d /dev/vda -c /tmp/bad.yml 2>&1");
    assert_eq!(bad.status, 1, "{}", bad.output);
    assert!(bad.output.contains("/tmp/bad.yml"), "{}", bad.output);
    assert!(bad.output.contains("line 3"), "{}", bad.output);
    assert!(bad.output.contains("rancher.dbug"), "{}", bad.output);
    assert_eq!(vm.check(BLANK_VDA).trim(), "blank");

    // The install, then the reboot (QEMU runs with -no-reboot: it exits).
    let from = vm.output().len();
    let started = Instant::now();
    vm.send_line(
        "ros install -d /dev/vda -c /tmp/cloud-config.yml -a 'rancher.autologin=ttyS0 loglevel=3'",
    );
    vm.wait_for_since(from, "ros install: done in ", INSTALL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let install_wall = started.elapsed();
    let output = vm.output()[from..].to_string();
    assert!(
        output.contains("copying the kernel and initrd: 100%"),
        "{output}"
    );
    assert!(output.contains("saved the cloud-config"), "{output}");
    assert!(vm.wait_exit(DOWN_TIMEOUT).success());
    let reported = output
        .split("ros install: done in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("?");
    eprintln!("install: {reported} s as ros measured it, {install_wall:?} from typing the command");

    // The disk alone, under SeaBIOS: the cloud-config applied; a setting
    // and a file in /home made.
    let (mut vm, _) = boot_disk(&disk, Some(&data), false);
    assert_eq!(vm.check("hostname").trim(), "installed-box");
    assert_eq!(
        vm.check("cat /etc/ros-test/installed").trim(),
        "written from the install's cloud-config"
    );
    let cmdline = vm.check("cat /proc/cmdline");
    assert!(
        cmdline.contains("console=ttyS0,115200n8 rancher.autologin=ttyS0"),
        "{cmdline}"
    );
    assert!(
        vm.check("cat /proc/1/mounts")
            .contains("/dev/vda3 /run/ros/state ext4")
    );
    // Refused, naming the disk: a file system on it, without -f.
    let refused = vm.run("ros install -d /dev/vdb --no-reboot 2>&1");
    assert_eq!(refused.status, 1, "{}", refused.output);
    assert!(
        refused.output.contains("/dev/vdb: is not blank: it has a ")
            && refused
                .output
                .contains("labelled DATA; -f installs over it"),
        "{}",
        refused.output
    );
    // The disk the system runs from: refused even with -f.
    let running = vm.run("ros install -d /dev/vda -f --no-reboot 2>&1");
    assert_eq!(running.status, 1, "{}", running.output);
    assert!(
        running
            .output
            .contains("/dev/vda: is in use: /dev/vda3 is mounted"),
        "{}",
        running.output
    );
    vm.check("ros config set rancher.environment.KEPT across-reboots");
    vm.check("echo kept > /home/rancher/kept.txt");
    let before = vm
        .check("cat /sys/class/block/vda3/size")
        .trim()
        .parse::<u64>()
        .unwrap();
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(DOWN_TIMEOUT).success());

    // The disk grows by half a GiB while the machine is off.
    std::fs::File::options()
        .write(true)
        .open(&disk)
        .and_then(|f| f.set_len(GIB + GIB / 2))
        .unwrap();

    // The same disk under OVMF: both kept, and the state partition and
    // its file system grown to the disk.
    let (mut vm, _) = boot_disk(&disk, None, true);
    assert_eq!(vm.check("hostname").trim(), "installed-box");
    assert_eq!(
        vm.check("ros config get rancher.environment.KEPT").trim(),
        "across-reboots"
    );
    assert_eq!(vm.check("cat /home/rancher/kept.txt").trim(), "kept");
    assert!(
        vm.output().contains("ros: grew /dev/vda3"),
        "{}",
        tail(&vm.output(), 60)
    );
    let after = vm
        .check("cat /sys/class/block/vda3/size")
        .trim()
        .parse::<u64>()
        .unwrap();
    let df = vm.check("df -k /run/ros/state | tail -1");
    let fs_kib: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    eprintln!(
        "grown: partition {} -> {} MiB, file system now {} MiB",
        (before * 512) >> 20,
        (after * 512) >> 20,
        fs_kib >> 10
    );
    assert_eq!((after - before) * 512, GIB / 2);
    assert!(fs_kib > ((after * 512) >> 10) * 9 / 10, "{df}");
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(DOWN_TIMEOUT).success());
}
