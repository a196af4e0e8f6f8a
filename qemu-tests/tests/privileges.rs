//! Every service gets only what it needs, checked in the guest as a user
//! would (docs/SECURITY.md is the list these tests hold the services to):
//! from inside an unprivileged service no namespace can be made, by
//! `unshare` or by `clone`/`clone3`; another service's root is out of
//! reach; and each built-in service holds exactly the capabilities the
//! page documents, read back from `/proc/<pid>/status`.
//!
//! The probes are the tiny programs of system-services/tests/probe (the
//! host test runs them under a private containerd); here they reach the
//! guest as `write_files` on a config drive and run in a `probe` service
//! of busybox (the acpid image), whose log says what each call returned.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::{Image, Vm, VmBuilder, config_drive};

#[path = "../../system-services/tests/probe/mod.rs"]
mod probe;

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

/// What the probe service prints: each probe's exit status, `unshare -U`'s,
/// and whether the roots of rsyslogd and ntpd can be listed.
const PROBE_SCRIPT: &str = "until [ -x /probe/clone3-user ]; do sleep 0.2; done; \
    for p in clone-user clone-net clone-plain clone3-user; do /probe/$p; echo \"probe $p=$?\"; done; \
    unshare -U true 2>/dev/null; echo \"probe unshare-user=$?\"; \
    for p in /proc/[0-9]*; do case \"$(cat $p/comm 2>/dev/null)\" in \
      rsyslogd|ntpd) ls $p/root/ >/dev/null 2>&1; echo \"probe root-of-$(cat $p/comm)=$?\";; esac; done; \
    echo 'probe done'";

/// The user-data: the probes as files, and two probe services, one with
/// its own PID namespace (as every unprivileged built-in service) and one
/// sharing the host's (to try the other services' roots). Both start
/// after syslog, so rsyslogd runs when they look (it starts alongside
/// them otherwise, and was missed once in CI).
fn user_data() -> String {
    let mut files = String::new();
    for (name, program) in probes() {
        files.push_str(&format!(
            "  - path: /var/lib/rancher/probe/{name}\n    permissions: \"0755\"\n    encoding: b64\n    content: {}\n",
            base64(&program)
        ));
    }
    let script = PROBE_SCRIPT.replace('\\', "\\\\").replace('"', "\\\"");
    let service = |name: &str, pid_host: bool| {
        format!(
            "    {name}:\n      image: ros/acpid\n      command: [/bin/sh, -c, \"{script}\"]\n      labels:\n        io.rancher.os.scope: system\n        io.rancher.os.after: syslog\n      volumes:\n        - /var/lib/rancher/probe:/probe:ro\n{}      restart: \"no\"\n",
            if pid_host { "      pid: host\n" } else { "" }
        )
    };
    format!(
        "#cloud-config\nwrite_files:\n{files}rancher:\n  services:\n{}{}",
        service("probe", false),
        service("probe-host-pid", true)
    )
}

fn probes() -> [(&'static str, Vec<u8>); 4] {
    [
        ("clone-user", probe::clone(probe::CLONE_NEWUSER)),
        ("clone-net", probe::clone(probe::CLONE_NEWNET)),
        ("clone-plain", probe::clone(0)),
        (
            "clone3-user",
            probe::clone3(u64::from(probe::CLONE_NEWUSER)),
        ),
    ]
}

fn base64(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe");
    std::fs::write(&file, bytes).unwrap();
    let output = Command::new("base64")
        .arg("-w0")
        .arg(&file)
        .output()
        .expect("base64 (coreutils)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The `probe NAME=VALUE` lines of a probe service's log, once it is done.
fn probe_results(vm: &mut Vm, service: &str) -> Vec<String> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        let log = vm.run(&format!("ros service logs {service}")).output;
        if log.contains("probe done") {
            return log
                .lines()
                .filter_map(|l| {
                    l.split_once("probe ")
                        .map(|(_, rest)| rest.trim().to_owned())
                })
                .filter(|l| l != "done")
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{service} did not finish; its log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn boot_with_probes(dir: &Path) -> Vm {
    let drive = config_drive(dir, &user_data());
    let mut vm = VmBuilder::kernel(Image::built(), "")
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", drive.display()))
        .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm
}

/// The pid of a running service, from `ros service list`.
fn service_pid(vm: &mut Vm, name: &str) -> u32 {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        let list = vm.check("ros service list");
        let pid = list
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                (cells.get(2) == Some(&"running"))
                    .then(|| cells.get(3).and_then(|p| p.parse().ok()))
                    .flatten()
            });
        if let Some(pid) = pid {
            return pid;
        }
        assert!(Instant::now() < deadline, "{name} not running:\n{list}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn an_unprivileged_service_makes_no_namespace_and_reaches_no_other_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = boot_with_probes(dir.path());

    // The console is privileged (no filter): there the same probes make
    // their namespaces, so what fails below is the filter, not the kernel.
    for (name, _) in probes() {
        let status = vm.run(&format!("/var/lib/rancher/probe/{name}")).status;
        assert_eq!(status, probe::CREATED, "{name} in the console");
    }

    let created = probe::CREATED;
    let own_pid = probe_results(&mut vm, "probe");
    // EPERM from the clone rules, ENOSYS from clone3, EPERM from unshare
    // (busybox exits 1); a plain fork works. Its own PID namespace shows
    // no other service's process at all.
    assert_eq!(
        own_pid,
        [
            "clone-user=1".to_owned(),
            "clone-net=1".to_owned(),
            format!("clone-plain={created}"),
            "clone3-user=38".to_owned(),
            "unshare-user=1".to_owned(),
        ],
        "probe"
    );
    // Sharing the host's PID namespace, it sees rsyslogd and ntpd but
    // cannot list their roots: they hold capabilities it does not.
    let host_pid = probe_results(&mut vm, "probe-host-pid");
    assert_eq!(host_pid[..5], own_pid[..], "probe-host-pid");
    let roots: Vec<&String> = host_pid[5..].iter().collect();
    // rsyslogd runs by then (the probes start after syslog); ntpd only
    // once the network is online, so it is checked when it was there.
    assert!(
        roots.iter().any(|r| r.starts_with("root-of-rsyslogd=")),
        "{host_pid:?}"
    );
    for root in roots {
        assert!(root.ends_with("=1"), "{root} listed: {host_pid:?}");
    }
    // The console (root, every capability) can: the check is real.
    let syslog = service_pid(&mut vm, "syslog");
    vm.check(&format!("ls /proc/{syslog}/root/etc/rsyslog.conf"));
    vm.send_line("ros poweroff");
}

/// Every capability of this kernel (0 to CAP_CHECKPOINT_RESTORE, 40).
const ALL: u64 = (1 << 41) - 1;
const CHOWN: u64 = 1 << 0;
const DAC_OVERRIDE: u64 = 1 << 1;
const FOWNER: u64 = 1 << 3;
const KILL: u64 = 1 << 5;
const SETGID: u64 = 1 << 6;
const SETUID: u64 = 1 << 7;
const NET_ADMIN: u64 = 1 << 12;
const SYS_CHROOT: u64 = 1 << 18;
const SYS_NICE: u64 = 1 << 23;
const SYS_TIME: u64 = 1 << 25;
const SYSLOG: u64 = 1 << 34;

/// docs/SECURITY.md's table: each built-in service's capabilities (the
/// permitted, effective and bounding sets; inheritable and ambient are
/// empty for all) and its seccomp mode (2: filtered, 0: none).
const DOCUMENTED: &[(&str, u64, u32)] = &[
    ("udev", CHOWN | DAC_OVERRIDE | FOWNER | KILL | NET_ADMIN, 2),
    ("syslog", SYSLOG, 2),
    (
        "ntp",
        SYS_TIME | SYS_CHROOT | SETUID | SETGID | KILL | SYS_NICE,
        2,
    ),
    ("acpid", 0, 2),
    ("console", ALL, 0),
    ("user-containerd", ALL, 0),
];

#[test]
fn every_built_in_service_holds_the_documented_capabilities() {
    let mut vm = VmBuilder::kernel(Image::built(), "").start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    let mut wrong = Vec::new();
    for (name, caps, seccomp) in DOCUMENTED {
        let pid = service_pid(&mut vm, name);
        let status = vm.check(&format!("grep -E '^(Cap|Seccomp:)' /proc/{pid}/status"));
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{key} of {name}: {status}"))
                .to_owned()
        };
        let expected = format!("{caps:016x}");
        let found = [
            ("CapPrm:", expected.clone()),
            ("CapEff:", expected.clone()),
            ("CapBnd:", expected),
            ("CapInh:", format!("{:016x}", 0)),
            ("CapAmb:", format!("{:016x}", 0)),
            ("Seccomp:", seccomp.to_string()),
        ];
        for (key, want) in found {
            let got = field(key);
            if got != want {
                wrong.push(format!("{name} {key} {got}, documented {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    vm.send_line("ros poweroff");
}
