//! The walking skeleton, checked from the outside: the image boots (from
//! `-kernel/-initrd` and from the ISO), PID 1 is `ros`, the system
//! containerd runs, the console shell lives in a container of it, and the
//! machine powers off cleanly.

use std::time::Duration;

use qemu_tests::{Boot, Image, VmBuilder};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
/// The pid of the system containerd, PID 1's child (the user containerd
/// runs in a container, its parent a shim).
const SYSTEM_CONTAINERD: &str = r#"for p in $(pidof containerd); do if [ "$(cut -d' ' -f4 /proc/$p/stat)" = 1 ]; then echo $p; fi; done"#;
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn boots_from_kernel_and_initrd_to_a_console_in_a_container() {
    let mut vm = VmBuilder::kernel(Image::built(), "").start();
    let ready = vm.wait_ready();
    eprintln!(
        "ros: ready in {ready:?} (guest clock), {:?} since QEMU started",
        vm.elapsed()
    );
    vm.wait_for_shell(SHELL_TIMEOUT);

    // PID 1 is ros: the same file as the `ros` the console runs.
    vm.check("cmp /proc/1/exe /usr/bin/ros");
    assert_eq!(vm.check("cat /proc/1/comm").trim(), "init");
    assert!(
        vm.check("ros --version").starts_with("ros "),
        "ros --version"
    );

    // The system containerd runs, with its own socket.
    let containerd = vm.check(SYSTEM_CONTAINERD);
    assert!(!containerd.trim().is_empty());
    vm.check("test -S /run/system-containerd/containerd.sock");

    // This shell is in the console container: containerd put it in the
    // cgroup /ros/console (namespace "ros", container "console"); the
    // console shares the host's cgroup namespace (`cgroup: host`) so an
    // administrator sees real paths, and PID 1 and containerd stay in
    // the root cgroup.
    assert_eq!(vm.check("cat /proc/self/cgroup").trim(), "0::/ros/console");
    assert_eq!(vm.check("cat /proc/1/cgroup").trim(), "0::/");
    assert_eq!(
        vm.check(&format!("cat /proc/$({SYSTEM_CONTAINERD})/cgroup"))
            .trim(),
        "0::/"
    );
    let own_mounts =
        vm.run(r#"[ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ]"#);
    assert_eq!(
        own_mounts.status, 0,
        "the console shares PID 1's mount namespace"
    );
    let own_root = vm.run(r#"[ "$(stat -c %d:%i /)" != "$(stat -L -c %d:%i /proc/1/root)" ]"#);
    assert_eq!(own_root.status, 0, "the console's root is PID 1's root");
    // A shim keeps it, so it outlives a restart of containerd.
    assert!(!vm.check("pidof containerd-shim-runc-v2").trim().is_empty());

    vm.send_line("ros poweroff");
    let status = vm.wait_exit(POWEROFF_TIMEOUT);
    let output = vm.output();
    assert!(
        output.contains("ros: shutting down (power off)"),
        "{}",
        qemu_tests::tail(&output, 30)
    );
    assert!(
        !output.contains("Kernel panic"),
        "{}",
        qemu_tests::tail(&output, 30)
    );
    assert!(status.success(), "QEMU exited with {status}");
}

#[test]
fn boots_from_the_iso() {
    let mut vm = VmBuilder::new(Image::built(), Boot::Cdrom).start();
    let ready = vm.wait_ready();
    eprintln!(
        "ISO: ros: ready in {ready:?} (guest clock), {:?} since QEMU started",
        vm.elapsed()
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm.check("cmp /proc/1/exe /usr/bin/ros");
    assert_eq!(vm.check("cat /proc/self/cgroup").trim(), "0::/ros/console");
    // Booted from the ISO: the kernel command line is ISOLINUX's.
    assert!(vm.check("cat /proc/cmdline").contains("console=ttyS0"));
    // The root image is read from the ISO, not carried in the initrd
    // (where it would stay in RAM): the initramfs has no copy.
    let backing = vm.check("cat /sys/block/loop0/loop/backing_file");
    assert!(
        backing
            .trim()
            .ends_with("/run/ros/medium/boot/rootfs.squashfs"),
        "{backing}"
    );
    let medium = vm.check("grep ' /run/ros/medium ' /proc/1/mounts");
    assert!(medium.contains(" iso9660 ro"), "{medium}");
    // After ready the console shows warnings and worse only: the
    // services' info lines stay out of what the user types.
    let printk = vm.check("cat /proc/sys/kernel/printk");
    assert_eq!(printk.split_whitespace().next(), Some("5"), "{printk}");
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).success());
    let output = vm.output();
    assert!(!output.contains("Kernel panic"));
    // Every service ends on its stop signal (acpid's is SIGKILL: it
    // ignores SIGTERM), none waits out the grace period.
    assert!(
        !output.contains("did not stop in time"),
        "{}",
        qemu_tests::tail(&output, 30)
    );
}

#[test]
fn sigterm_reboots_in_order() {
    // Info lines on the console, to see the order of the shutdown steps.
    let mut vm = VmBuilder::kernel(Image::built(), "loglevel=7").start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    // SIGTERM to PID 1 is an orderly reboot (busybox's convention); with
    // -no-reboot QEMU then exits.
    vm.send_line("kill -TERM 1");
    let status = vm.wait_exit(POWEROFF_TIMEOUT);
    let output = vm.output();
    let at = |needle: &str| {
        output
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{}", qemu_tests::tail(&output, 40)))
    };
    // The console line is written directly, the others go through the
    // kernel log: only the log's lines keep their order on the console.
    at("ros: shutting down (reboot)");
    let steps = [
        at("stopping service=console"),
        at("containerd stopped"),
        at("reboot: Restarting system"),
    ];
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "out of order: {steps:?}\n{}",
        qemu_tests::tail(&output, 40)
    );
    assert!(status.success());
}

#[test]
fn ctrl_alt_del_reboots_in_order() {
    let mut vm = VmBuilder::kernel(Image::built(), "").with_monitor().start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm.monitor("sendkey ctrl-alt-delete");
    let status = vm.wait_exit(POWEROFF_TIMEOUT);
    assert!(
        vm.output().contains("ros: shutting down (reboot)"),
        "{}",
        qemu_tests::tail(&vm.output(), 30)
    );
    assert!(status.success());
}

#[test]
fn a_killed_containerd_is_restarted_and_the_console_lives_on() {
    let mut vm = VmBuilder::kernel(Image::built(), "").start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    // Every service's shim is there before they are counted.
    vm.wait_for_services_settled(SHELL_TIMEOUT);
    let before = vm.check(SYSTEM_CONTAINERD).trim().to_string();
    let shell = vm.check("echo $$").trim().to_string();
    let shims = |vm: &mut qemu_tests::Vm| {
        vm.check("pidof containerd-shim-runc-v2")
            .split_whitespace()
            .count()
    };
    let shims_before = shims(&mut vm);
    vm.check(&format!("kill -9 {before}"));
    // The shim keeps the console running meanwhile: this shell still answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let after = loop {
        let now = vm.run(SYSTEM_CONTAINERD).output.trim().to_string();
        if !now.is_empty()
            && now != before
            && vm
                .run("dmesg | grep -q 're-attached to running task'")
                .status
                == 0
        {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "containerd not back, or console not re-attached"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_ne!(after, before);
    assert_eq!(vm.check("echo $$").trim(), shell, "the same console shell");
    // Every service re-attached, none started a second time next to it.
    assert_eq!(shims(&mut vm), shims_before);
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).success());
}

#[test]
fn the_iso_boots_as_a_disk_too() {
    // A hybrid ISO written to a USB stick or a disk boots through its MBR.
    let image = Image::built();
    let drive = format!("file={},format=raw,if=ide,snapshot=on", image.iso.display());
    let mut vm = VmBuilder::new(image, Boot::Disk)
        .arg("-drive")
        .arg(drive)
        .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm.check("cmp /proc/1/exe /usr/bin/ros");
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).success());
}

#[test]
fn a_machine_reset_before_ros_starts_is_booted_once_more() {
    // What a TCG fault in the firmware or the kernel looks like from here:
    // QEMU (with -no-reboot) exits without a word from ros.
    let mut vm = VmBuilder::kernel(Image::built(), "").with_monitor().start();
    vm.monitor("system_reset");
    vm.wait_ready();
    assert_eq!(vm.boots(), 2);
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).success());
}
