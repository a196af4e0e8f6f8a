//! Hangs outside PID 1's code do not keep the machine from coming up:
//! a `bootcmd` that never ends is killed after its timeout and the
//! console comes up; a system containerd that stops answering (stopped
//! with SIGSTOP from the console) is killed and started again, and the
//! services go on.
//!
//! A containerd stopped *before* its socket is up is the same limit at an
//! earlier moment (`Limits::socket_timeout`); it is tested with real
//! processes in `init/tests/supervise.rs`
//! (`a_containerd_whose_socket_never_comes_is_killed_and_started_again`):
//! reaching into the boot before containerd's socket would need a hook in
//! PID 1 that production does not need.

use std::time::{Duration, Instant};

use qemu_tests::{Image, VmBuilder, config_drive};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn a_bootcmd_that_never_ends_is_killed_and_the_console_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let drive = config_drive(
        dir.path(),
        "#cloud-config\nbootcmd:\n  - sleep 100000\n  - echo after-the-hang > /run/bootcmd-went-on\n",
    );
    let mut vm = VmBuilder::kernel(Image::built(), "")
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", drive.display()))
        .start();
    let ready = vm.wait_ready();
    let output = vm.output();
    assert!(
        output.contains("ros: bootcmd `/bin/sh -c sleep 100000`: still running after 60s; killed"),
        "{}",
        qemu_tests::tail(&output, 40)
    );
    // The boot waited for the timeout, not for ever.
    assert!(ready >= Duration::from_secs(60), "ready in {ready:?}");
    vm.wait_for_shell(SHELL_TIMEOUT);
    // The command after it ran; the sleep is gone (services' own short
    // sleeps may run meanwhile: only the bootcmd's is looked for).
    assert_eq!(
        vm.check("cat /run/bootcmd-went-on").trim(),
        "after-the-hang"
    );
    assert_eq!(
        vm.run("pgrep -f 'sleep 10000[0]' | grep -q . ").status,
        1,
        "a sleep is left"
    );
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());
}

/// The pid of the system containerd: PID 1's child.
fn system_containerd(vm: &mut qemu_tests::Vm) -> String {
    vm.check(
        "for p in $(pidof containerd); do \
         [ \"$(awk '/^PPid:/ {print $2}' /proc/$p/status)\" = 1 ] && echo $p; done; true",
    )
    .trim()
    .to_string()
}

#[test]
fn a_system_containerd_that_stops_answering_is_restarted_and_services_go_on() {
    let mut vm = VmBuilder::kernel(Image::built(), "").start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    let first = system_containerd(&mut vm);
    assert!(!first.is_empty(), "no system containerd");
    assert!(
        vm.check("ros service list").contains("console"),
        "the services answer before"
    );
    let from = vm.output().len();
    vm.check(&format!("kill -STOP {first}"));
    // Three probes 10 s apart, 5 s each: about 45 s, more under TCG. The
    // first miss may still count as busy (it ran until the STOP), so the
    // line says 3 or 4; a stopped daemon is never given the busy allowance.
    let end = vm
        .wait_for_since(
            from,
            " probes in a row; restarting it",
            Duration::from_secs(150),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let output = vm.output();
    let line = output[from..end].lines().last().unwrap_or("");
    assert!(
        [3, 4].iter().any(|n| line.contains(&format!(
            "ros: containerd (pid {first}) did not answer {n} probes in a row; restarting it"
        ))),
        "{line}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let second = loop {
        let now = system_containerd(&mut vm);
        if !now.is_empty() && now != first {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "no new containerd:\n{}",
            qemu_tests::tail(&vm.output(), 40)
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_ne!(second, first);
    // The stopped one was killed, not left behind.
    assert_eq!(
        vm.run(&format!("test -e /proc/{first}")).status,
        1,
        "containerd {first} still exists"
    );
    // The services re-attach through the new one: the console (this
    // shell) lived on, and `ros service list` answers through containerd.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = vm.run("ros service list");
        if list.status == 0 && list.output.contains("console") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ros service list after the restart: {}",
            list.output
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());
}
