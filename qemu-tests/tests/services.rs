//! The system services, checked from the outside: the built-in ones run
//! as containers of the system containerd, `ros service` manages them
//! from the console, one killed comes back, their logs are there, the
//! power button powers off through acpid, and the user containerd, on by
//! default, goes and comes back with `rancher.services_include`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use qemu_tests::{Image, Vm, VmBuilder};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a service may take to come back (TCG is slow).
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);
const BUILT_IN: [&str; 5] = ["udev", "syslog", "ntp", "acpid", "console"];

/// One row of `ros service list`: name → (enabled, state, pid).
fn row(list: &str, name: &str) -> Option<(String, String, Option<u32>)> {
    let line = list.lines().find(|l| l.starts_with(&format!("{name} ")))?;
    let cells: Vec<&str> = line.split_whitespace().collect();
    Some((
        cells.get(1)?.to_string(),
        cells.get(2)?.to_string(),
        cells.get(3)?.parse().ok(),
    ))
}

/// Asks `ros service list` until `done` holds for it; returns the list.
fn list_until(vm: &mut Vm, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let list = vm.check("ros service list");
        if done(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "{what}; last list:\n{list}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn restarts(list: &str, name: &str) -> u32 {
    list.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no restarts of {name} in\n{list}"))
}

fn running(list: &str, name: &str) -> Option<u32> {
    row(list, name).and_then(|(_, state, pid)| (state == "running").then_some(pid).flatten())
}

#[test]
fn built_in_services_run_and_one_killed_comes_back() {
    let mut vm = VmBuilder::kernel(Image::built(), "").start();
    let ready = vm.wait_ready();
    eprintln!("ros: ready in {ready:?} (guest clock)");
    vm.wait_for_shell(SHELL_TIMEOUT);

    let list = list_until(
        &mut vm,
        "every built-in service running",
        RESTART_TIMEOUT,
        |list| BUILT_IN.iter().all(|name| running(list, name).is_some()),
    );
    eprintln!("{list}");
    for name in BUILT_IN {
        assert_eq!(row(&list, name).unwrap().0, "enabled", "{name}\n{list}");
        // None died on the way up.
        let restarts = restarts(&list, name);
        if restarts != 0 {
            let logs = vm.check(&format!("ros service logs {name}"));
            panic!("{name} restarted {restarts} times at boot; its log:\n{logs}");
        }
    }
    // Each in its own cgroup under /ros, a task of the system containerd
    // (the console shares the host's cgroup namespace: real paths).
    for name in BUILT_IN {
        let pid = running(&list, name).unwrap();
        assert_eq!(
            vm.check(&format!("cat /proc/{pid}/cgroup")).trim(),
            format!("0::/ros/{name}")
        );
    }
    // The user containerd runs by default, nested: its first process is
    // in a leaf cgroup below its service's (its workloads get the
    // controllers) and in a PID namespace of its own.
    let list = list_until(
        &mut vm,
        "user-containerd running",
        RESTART_TIMEOUT,
        |list| running(list, "user-containerd").is_some(),
    );
    let user = running(&list, "user-containerd").unwrap();
    assert_eq!(row(&list, "user-containerd").unwrap().0, "enabled");
    assert_eq!(
        vm.check(&format!("cat /proc/{user}/cgroup")).trim(),
        "0::/ros/user-containerd/supervisor"
    );
    vm.check(&format!(
        r#"[ "$(readlink /proc/{user}/ns/pid)" != "$(readlink /proc/1/ns/pid)" ]"#
    ));
    // Without rancher.cluster no agent is defined, none runs, and no
    // image was pulled for one (a pull writes the service's log).
    assert!(row(&list, "cluster-agent").is_none(), "{list}");
    let cluster = vm.check("ros cluster status");
    assert!(cluster.contains("no agent runs"), "{cluster}");
    vm.check("test ! -e /var/log/ros/cluster-agent.log");
    // Least privilege: syslog runs without CAP_SYS_ADMIN.
    let syslog = running(&list, "syslog").unwrap();
    let caps = vm.check(&format!("grep CapEff /proc/{syslog}/status"));
    let bits = u64::from_str_radix(caps.split_whitespace().last().unwrap(), 16).unwrap();
    assert_eq!(bits & (1 << 21), 0, "syslog has CAP_SYS_ADMIN: {caps}");

    // Killed from the console, it comes back with a new pid.
    let ntp = running(&list, "ntp").unwrap();
    let killed_at = Instant::now();
    vm.check(&format!("kill -9 {ntp}"));
    let again = list_until(&mut vm, "ntp back after kill -9", RESTART_TIMEOUT, |list| {
        running(list, "ntp").is_some_and(|pid| pid != ntp)
    });
    eprintln!(
        "ntp killed and running again within {:?} (TCG, console round trips included)",
        killed_at.elapsed()
    );
    assert_eq!(restarts(&again, "ntp"), 1, "{again}");

    // Logs: udev says it settled; the CLI reads them.
    let deadline = Instant::now() + RESTART_TIMEOUT;
    loop {
        let udev_log = vm.check("ros service logs udev");
        if udev_log.contains("udev: devices settled") {
            break;
        }
        assert!(Instant::now() < deadline, "udev never settled:\n{udev_log}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // syslog (rsyslog) takes messages on /dev/log into /var/log/syslog
    // (tests/syslog.rs checks the rest).
    // Logged again at each look: one sent before rsyslogd's socket
    // existed is lost.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !vm
        .run("logger -t qemu-test hello-syslog; cat /var/log/syslog")
        .output
        .contains("qemu-test: hello-syslog")
    {
        assert!(
            Instant::now() < deadline,
            "logger message not in /var/log/syslog"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Stop and start by hand; unknown names are refused.
    assert_eq!(vm.check("ros service stop ntp").trim(), "ntp: stopped");
    assert!(
        vm.check("ros service ps")
            .lines()
            .all(|l| !l.starts_with("ntp "))
    );
    assert!(
        vm.check("ros service start ntp")
            .starts_with("ntp: running (pid ")
    );
    let unknown = vm.run("ros service restart nosuch");
    assert_eq!(unknown.status, 1, "{}", unknown.output);
    assert!(
        unknown.output.contains("unknown service nosuch"),
        "{}",
        unknown.output
    );

    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).success());
    let output = vm.output();
    assert!(output.contains("ros: shutting down (power off)"));
    assert!(!output.contains("Kernel panic"));
}

/// Sends one QMP command and returns its answer line.
fn qmp(stream: &mut BufReader<UnixStream>, command: &str) -> String {
    stream
        .get_mut()
        .write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
        .unwrap();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        // Events may come first.
        if line.contains("\"return\"") || line.contains("\"error\"") {
            return line;
        }
    }
}

#[test]
fn the_power_button_powers_off_through_acpid() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let mut vm = VmBuilder::kernel(Image::built(), "")
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    let list = list_until(&mut vm, "acpid running", RESTART_TIMEOUT, |list| {
        running(list, "acpid").is_some()
    });
    // A press before acpid has opened the input device is lost, as on a
    // real machine: press once it listens.
    let acpid = running(&list, "acpid").unwrap();
    let deadline = Instant::now() + RESTART_TIMEOUT;
    while vm
        .run(&format!("ls -l /proc/{acpid}/fd | grep -q /dev/input/"))
        .status
        != 0
    {
        assert!(Instant::now() < deadline, "acpid opened no input device");
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut qmp_stream = connect(&socket);
    let mut greeting = String::new();
    qmp_stream.read_line(&mut greeting).unwrap();
    assert!(greeting.contains("QMP"), "{greeting}");
    qmp(&mut qmp_stream, "qmp_capabilities");
    qmp(&mut qmp_stream, "system_powerdown");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).success());
    let output = vm.output();
    assert!(
        output.contains("ros: shutting down (power off)"),
        "{}",
        qemu_tests::tail(&output, 30)
    );
}

fn connect(socket: &Path) -> BufReader<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return BufReader::new(stream),
            Err(e) => {
                assert!(Instant::now() < deadline, "QMP socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn the_user_containerd_is_disabled_and_enabled_again_from_the_console() {
    let mut vm = VmBuilder::kernel(Image::built(), "").start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    list_until(
        &mut vm,
        "user-containerd running",
        RESTART_TIMEOUT,
        |list| running(list, "user-containerd").is_some(),
    );

    // Disabled: kept in cloud-config.yml as the include switched off, and
    // stopped now.
    assert!(
        vm.check("ros service disable user-containerd")
            .contains("user-containerd: disabled")
    );
    let stored = vm.check("cat /var/lib/rancher/conf/cloud-config.yml");
    assert!(stored.contains("user-containerd: false"), "{stored}");
    vm.check("ros service stop user-containerd");
    let list = list_until(
        &mut vm,
        "user-containerd stopped",
        RESTART_TIMEOUT,
        |list| running(list, "user-containerd").is_none(),
    );
    assert_eq!(
        row(&list, "user-containerd").unwrap().0,
        "disabled",
        "{list}"
    );
    assert_eq!(vm.check("pidof containerd").split_whitespace().count(), 1);
    // A workload command says why there is no user containerd.
    let refused = vm.run("ros ps");
    assert_eq!(refused.status, 1, "{}", refused.output);
    assert!(
        refused
            .output
            .contains("the user-containerd service is stopped; start it with"),
        "{}",
        refused.output
    );

    // Enabled again and brought up without a reboot.
    assert!(
        vm.check("ros service enable user-containerd")
            .contains("user-containerd: enabled")
    );
    vm.check("ros service up user-containerd");
    list_until(
        &mut vm,
        "user-containerd running",
        RESTART_TIMEOUT,
        |list| running(list, "user-containerd").is_some(),
    );
    // Its own socket, root and state, next to the system containerd's:
    // `ros ps` waits for it to answer (up to 60 s).
    vm.check_within("ros ps", Duration::from_secs(90));
    vm.check("test -S /run/system-containerd/containerd.sock");
    assert_eq!(vm.check("pidof containerd").split_whitespace().count(), 2);
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).success());
}
