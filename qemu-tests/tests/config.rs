//! Configuration at boot, from the outside: user-data on a config drive
//! and keys on the kernel command line become layers of the machine's
//! configuration.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::{Image, VmBuilder, config_drive};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn user_data_from_a_config_drive_and_the_cmdline_are_layers() {
    let dir = tempfile::tempdir().unwrap();
    let drive = config_drive(
        dir.path(),
        r#"#cloud-config
hostname: from-config-drive
write_files:
  - path: /etc/ros-test/motd
    content: d3JpdHRlbiBieSB3cml0ZV9maWxlcwo=
    encoding: b64
    permissions: "0600"
bootcmd:
  - echo bootcmd ran > /var/log/ros/bootcmd.out
runcmd:
  - [sh, -c, "cat /proc/sys/vm/swappiness > /var/log/ros/runcmd.out"]
rancher:
  sysctl:
    vm.swappiness: 7
"#,
    );
    let mut vm = VmBuilder::kernel(
        Image::built(),
        "rancher.debug rancher.modules=[br_netfilter,overlay]",
    )
    .arg("-drive")
    .arg(format!("file={},format=raw,if=virtio", drive.display()))
    .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    assert_eq!(
        vm.check("ros config get hostname").trim(),
        "from-config-drive"
    );
    assert_eq!(
        vm.check("ros config get rancher.sysctl").trim(),
        "vm.swappiness: 7"
    );
    assert_eq!(vm.check("ros config get rancher.debug").trim(), "true");
    assert_eq!(
        vm.check("ros config get rancher.modules").trim(),
        "- br_netfilter\n- overlay"
    );
    // Applied: the file in the host's root (PID 1's), the sysctl, bootcmd
    // early and runcmd late (it saw the sysctl).
    assert_eq!(
        vm.check("cat /proc/1/root/etc/ros-test/motd"),
        "written by write_files\n"
    );
    assert_eq!(
        vm.check("stat -c %a /proc/1/root/etc/ros-test/motd").trim(),
        "600"
    );
    assert_eq!(vm.check("cat /proc/sys/vm/swappiness").trim(), "7");
    assert_eq!(
        vm.check("cat /var/log/ros/bootcmd.out").trim(),
        "bootcmd ran"
    );
    // runcmd runs once the services have settled.
    let deadline = Instant::now() + Duration::from_secs(90);
    while vm.run("[ -s /var/log/ros/runcmd.out ]").status != 0 {
        assert!(Instant::now() < deadline, "runcmd wrote nothing");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(vm.check("cat /var/log/ros/runcmd.out").trim(), "7");
    // Saved as a layer of its own, below cloud-config.yml.
    vm.check("grep -q from-config-drive /var/lib/rancher/conf/cloud-config.d/user-data.yml");
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());
}

/// Boots with `disk` as the first virtio disk, which the built-in
/// `rancher.state.autoformat` lists.
fn boot_with_state_disk(disk: &Path) -> qemu_tests::Vm {
    VmBuilder::kernel(Image::built(), "")
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .start()
}

#[test]
fn a_blank_disk_becomes_the_state_partition_and_the_configuration_persists() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("state.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();

    // First boot: the blank disk is formatted and mounted; a setting and
    // a file in /home go on it.
    let mut vm = boot_with_state_disk(&disk);
    vm.wait_ready();
    assert!(
        vm.output()
            .contains("ros: state on /dev/vda, formatted now"),
        "{}",
        qemu_tests::tail(&vm.output(), 40)
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    let mounts = vm.check("cat /proc/1/mounts");
    assert!(mounts.contains("/dev/vda /run/ros/state ext4"), "{mounts}");
    assert!(
        mounts.contains("/dev/vda /var/lib/rancher ext4"),
        "{mounts}"
    );
    assert!(mounts.contains("/dev/vda /home ext4"), "{mounts}");
    vm.check("ros config set hostname kept-across-boots");
    vm.check("echo kept > /home/note");
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());

    // The host sees an ext4 filesystem labelled RANCHER_STATE, unmounted
    // cleanly at power off (a forced check finds nothing to fix).
    let label = Command::new("e2label").arg(&disk).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&label.stdout).trim(),
        "RANCHER_STATE"
    );
    let check = Command::new("e2fsck")
        .arg("-fn")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // Second boot: found by its label, not formatted again; the setting
    // names the machine and the file is there.
    let mut vm = boot_with_state_disk(&disk);
    vm.wait_ready();
    let output = vm.output();
    assert!(output.contains("ros: state on /dev/vda\n"), "{output}");
    assert!(!output.contains("formatted now"), "{output}");
    vm.wait_for_shell(SHELL_TIMEOUT);
    assert_eq!(
        vm.check("ros config get hostname").trim(),
        "kept-across-boots"
    );
    assert_eq!(vm.check("hostname").trim(), "kept-across-boots");
    assert_eq!(vm.check("cat /home/note").trim(), "kept");
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());
}
