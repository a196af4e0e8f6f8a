//! Joining a cluster with no login: user-data given at provision time (a
//! config drive) names a server and a token, and the machine's
//! `cluster-agent` system service registers with that server by itself.
//!
//! The agent is a stand-in for the k3s agent (`cluster-test-agent`, a
//! static binary as `/bin/k3s` in an image pushed to a registry on the
//! host): it reads the same variables and flags, checks the host mounts it
//! was promised, verifies the server's CA against the token as k3s does,
//! registers with a registration server the test runs on the host and then
//! sends heartbeats.

use std::time::{Duration, Instant};

use qemu_tests::{Image, Vm, VmBuilder, blank_disk, config_drive};
use test_images::{LocalRegistry, RegistrationServer, agent_binary, agent_image};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);
/// From power-on to the first registration, pull included (TCG).
const JOIN_TIMEOUT: Duration = Duration::from_secs(240);
/// The join token: short, made secure with the server's CA checksum.
const SECRET: &str = "tok-7f3a9c2e51d8";
/// What every check of the agent must find.
const CHECKS: &[&str] = &[
    "k3s_data_mounted",
    "kubelet_shared",
    "pods_log_mounted",
    "node_dir_mounted",
    "cgroup_writable",
    "kmsg",
    "host_network",
    "pid_one",
];

fn with_network(vm: VmBuilder) -> VmBuilder {
    vm.args([
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0",
    ])
}

fn boot(vm: VmBuilder) -> Vm {
    let mut vm = vm.start();
    let ready = vm.wait_ready();
    eprintln!(
        "ros: ready in {ready:?}, {:?} since QEMU started",
        vm.elapsed()
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm
}

fn power_off(mut vm: Vm) {
    vm.send_line("ros poweroff");
    let status = vm.wait_exit(POWEROFF_TIMEOUT);
    assert!(status.success(), "QEMU exited with {status}");
}

/// The agent image in a registry on the host; its reference for the guest.
fn pushed_agent(registry: &LocalRegistry) -> String {
    registry.push("test/k3s", "1", &agent_image(&agent_binary()));
    format!("10.0.2.2:{}/test/k3s:1", registry.port)
}

/// The pid of `service` in `ros service ps`.
fn service_pid(vm: &mut Vm, service: &str) -> u32 {
    let ps = vm.check("ros service ps");
    ps.lines()
        .find(|line| line.split_whitespace().next() == Some(service))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no running {service} in\n{ps}"))
}

#[test]
fn provisioned_user_data_joins_the_cluster_again_after_a_kill_and_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let server = RegistrationServer::start(dir.path(), SECRET);
    let registry = LocalRegistry::start();
    let image = pushed_agent(&registry);
    let user_data = format!(
        "#cloud-config\nhostname: node-7\nrancher:\n  \
         system_docker:\n    insecure_registry: [10.0.2.2:{port}]\n  \
         cluster:\n    server: {url}\n    token: {SECRET}\n    ca_checksum: {sum}\n    \
         image: {image}\n    labels: {{zone: eu-1}}\n    taints: [dedicated=edge:NoSchedule]\n",
        port = registry.port,
        url = server.url_for_guest(),
        sum = server.ca_hash(),
    );
    let drive = config_drive(dir.path(), &user_data);
    let disk = blank_disk(dir.path());

    // Provision: the state disk and the config drive, nothing typed.
    let powered_on = Instant::now();
    let mut vm = with_network(VmBuilder::kernel(Image::built(), ""))
        .drive(&disk)
        .drive(&drive)
        .start();
    let first = server.wait_for_registrations(1, JOIN_TIMEOUT).remove(0);
    eprintln!(
        "power-on to the agent's first registration: {:?}",
        first.at.duration_since(powered_on)
    );
    assert_eq!(first.node_name, "node-7");
    assert_eq!(first.labels, ["zone=eu-1"]);
    assert_eq!(first.taints, ["dedicated=edge:NoSchedule"]);
    for check in CHECKS {
        assert_eq!(
            first.checks.get(*check),
            Some(&true),
            "agent check {check}: {:?}",
            first.checks
        );
    }
    assert!(!first.persisted_password);
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    server.wait_for_heartbeats("node-7", 2, Duration::from_secs(30));

    // What the user sees: the pull and the agent's own lines in the
    // service's log, the agent in `ros cluster status`.
    let logs = vm.check("ros service logs cluster-agent");
    assert!(logs.contains(&format!("ros: pull {image}")), "{logs}");
    assert!(logs.contains("registered node-7"), "{logs}");
    let status = vm.check("ros cluster status");
    assert!(
        status.contains(&format!("server: {}", server.url_for_guest())),
        "{status}"
    );
    assert!(status.contains("node: node-7"), "{status}");
    assert!(status.contains("agent: running (pid"), "{status}");
    assert!(status.contains(" since "), "{status}");

    // The token is nowhere a user or a log reader finds it.
    // (`export` alone is cloud-config.yml, empty here: the user-data is
    // a layer of its own, in `--full`.)
    let exported = vm.check("ros config export --full");
    assert!(exported.contains("token: <redacted>"), "{exported}");
    assert!(!exported.contains(SECRET), "{exported}");
    let section = vm.check("ros config get rancher.cluster");
    assert!(section.contains("token: <redacted>"), "{section}");
    // Asked for by its key, it is shown: that is asking.
    assert_eq!(
        vm.check("ros config get rancher.cluster.token").trim(),
        SECRET
    );
    let dmesg = vm.run(&format!("dmesg | grep -c {SECRET}"));
    assert_eq!(dmesg.output.trim(), "0", "the token is in the kernel log");
    assert_eq!(
        vm.check("stat -c %a /run/ros/cluster-agent/token").trim(),
        "600"
    );
    let readable = vm.run(&format!(
        "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type f -perm -004 -print 2>/dev/null \
         | xargs grep -lF {SECRET} 2>/dev/null; true"
    ));
    assert_eq!(
        readable.output.trim(),
        "",
        "world-readable files with the token"
    );

    // Killed: the supervisor starts it again and it registers again, with
    // the node password it kept.
    let pid = service_pid(&mut vm, "cluster-agent");
    vm.check(&format!("kill -9 {pid}"));
    let again = server.wait_for_registrations(2, Duration::from_secs(60));
    assert!(again[1].persisted_password, "{:?}", again[1]);
    assert_eq!(again[1].boot_id, first.boot_id);
    assert_ne!(service_pid(&mut vm, "cluster-agent"), pid);
    power_off(vm);

    // Rebooted without the config drive: the saved configuration on the
    // state partition joins again, as the same node.
    let mut vm = boot(with_network(
        VmBuilder::kernel(Image::built(), "").drive(&disk),
    ));
    let rejoined = server.wait_for_registrations(3, JOIN_TIMEOUT);
    let third = &rejoined[2];
    assert_eq!(third.node_name, "node-7");
    assert!(third.persisted_password, "{third:?}");
    assert_ne!(third.boot_id, first.boot_id);
    let used = vm.check("free -m | awk '/Mem:/ {print $3}'");
    eprintln!("used memory with the agent running: {} MiB", used.trim());
    power_off(vm);
}

#[test]
fn a_wrong_token_shows_in_the_agents_log_and_its_restarts_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = RegistrationServer::start(dir.path(), SECRET);
    let registry = LocalRegistry::start();
    let image = pushed_agent(&registry);
    let append = format!(
        "rancher.system_docker.insecure_registry=[10.0.2.2:{port}] \
         rancher.cluster.server={url} rancher.cluster.token=not-the-token \
         rancher.cluster.image={image}",
        port = registry.port,
        url = server.url_for_guest(),
    );
    let mut vm = boot(with_network(VmBuilder::kernel(Image::built(), &append)));
    // Each attempt costs 2–7 s under TCG (a container start and two TLS
    // handshakes, more while the boot goes on), so the gaps' ratios say
    // little; the backoff (0.1 s doubling) puts 12.8 s before the ninth
    // attempt on top of its own cost.
    let refused = server.wait_for_refusals(9, JOIN_TIMEOUT);
    let gaps: Vec<Duration> = refused.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("gaps between refused attempts: {gaps:?}");
    let last = gaps[gaps.len() - 1];
    assert!(
        last >= Duration::from_secs(12),
        "the restarts do not back off: {gaps:?}"
    );
    assert!(server.registrations().is_empty());
    let logs = vm.check("ros service logs cluster-agent");
    assert!(logs.contains("refused the token (401"), "{logs}");
    let status = vm.run("ros cluster status");
    assert!(status.output.contains("restarts: "), "{}", status.output);
    assert!(
        !status.output.contains("restarts: 0\n"),
        "{}",
        status.output
    );
    power_off(vm);
}
