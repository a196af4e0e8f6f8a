//! The walking skeleton, checked from the outside: the image boots (from
//! `-kernel/-initrd` and from the ISO), PID 1 is `ros`, the system
//! containerd runs, the console shell lives in a container of it, and the
//! machine powers off cleanly.

use std::time::Duration;

use qemu_tests::{Boot, Image, VmBuilder};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
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
    let containerd = vm.check("pidof containerd");
    assert!(!containerd.trim().is_empty());
    vm.check("test -S /run/system-containerd/containerd.sock");

    // This shell is in the console container: its own cgroup namespace
    // rooted at /ros/console, so PID 1 and containerd (in the host's root
    // cgroup) are seen two levels up; its own mount namespace and root.
    assert_eq!(vm.check("cat /proc/self/cgroup").trim(), "0::/");
    assert_eq!(vm.check("cat /proc/1/cgroup").trim(), "0::/../..");
    assert_eq!(
        vm.check("cat /proc/$(pidof containerd)/cgroup").trim(),
        "0::/../.."
    );
    let own_cgroups =
        vm.run(r#"[ "$(readlink /proc/self/ns/cgroup)" != "$(readlink /proc/1/ns/cgroup)" ]"#);
    assert_eq!(
        own_cgroups.status, 0,
        "the console shares PID 1's cgroup namespace"
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
    assert_eq!(vm.check("cat /proc/1/cgroup").trim(), "0::/../..");
    // Booted from the ISO: the kernel command line is ISOLINUX's.
    assert!(vm.check("cat /proc/cmdline").contains("console=ttyS0"));
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).success());
    assert!(!vm.output().contains("Kernel panic"));
}

#[test]
fn ctrl_alt_del_and_sigterm_reboot_in_order() {
    let mut vm = VmBuilder::kernel(Image::built(), "").start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    // SIGTERM to PID 1 is an orderly reboot (busybox's convention); with
    // -no-reboot QEMU then exits.
    vm.send_line("kill -TERM 1");
    let status = vm.wait_exit(POWEROFF_TIMEOUT);
    let output = vm.output();
    assert!(
        output.contains("ros: shutting down (reboot)"),
        "{}",
        qemu_tests::tail(&output, 30)
    );
    assert!(status.success());
}
