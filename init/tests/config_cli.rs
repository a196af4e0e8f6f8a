//! `ros config` end to end: the built binary against a temporary root.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Machine {
    root: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    fn cloud_config(&self) -> PathBuf {
        self.path("var/lib/rancher/conf/cloud-config.yml")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ros"));
        command
            .arg("config")
            .args(args)
            .env("ROS_CONFIG_ROOT", self.root.path());
        command
    }

    fn ros(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ros_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn ok(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn set_then_get_scalars_lists_and_dotted_keys() {
    let machine = Machine::new();
    ok(machine.ros(&["set", "hostname", "node1"]));
    ok(machine.ros(&[
        "set",
        "rancher.network.dns.nameservers",
        "[1.1.1.1,9.9.9.9]",
    ]));
    ok(machine.ros(&[
        "set",
        "rancher.network.interfaces.\"eth0.100\".dhcp",
        "true",
    ]));
    ok(machine.ros(&["set", "rancher.network.interfaces.eth1.mtu", "9000"]));
    ok(machine.ros(&["set", "rancher.environment.OFFSET", "-5"]));
    assert_eq!(
        ok(machine.ros(&["get", "rancher.environment.OFFSET"])),
        "-5\n"
    );
    assert_eq!(ok(machine.ros(&["get", "hostname"])), "node1\n");
    assert_eq!(
        ok(machine.ros(&["get", "rancher.network.dns.nameservers"])),
        "- 1.1.1.1\n- 9.9.9.9\n"
    );
    assert_eq!(
        ok(machine.ros(&["get", "rancher.network.dns.nameservers[1]"])),
        "9.9.9.9\n"
    );
    assert_eq!(
        ok(machine.ros(&["get", "rancher.network.interfaces.\"eth0.100\".dhcp"])),
        "true\n"
    );
    assert_eq!(
        ok(machine.ros(&["get", "rancher.network.interfaces.eth1"])),
        "mtu: 9000\n"
    );
    // A default, from the built-in layer.
    assert_eq!(
        ok(machine.ros(&["get", "rancher.services.console.image"])),
        "ros/console\n"
    );
    assert_eq!(
        ok(machine.ros(&["get", "rancher.network.dhcp_timeout"])),
        "10\n"
    );
    // A valid key that is not set prints nothing.
    assert_eq!(ok(machine.ros(&["get", "rancher.cluster.server"])), "");
}

#[test]
fn a_bad_set_is_refused_with_the_error_and_leaves_the_file() {
    let machine = Machine::new();
    ok(machine.ros(&["set", "hostname", "node1"]));
    let before = fs::read(machine.cloud_config()).unwrap();

    let output = machine.ros(&["set", "rancher.network.interfaces.eth0.address", "10.0.0.1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("`rancher.network.interfaces.eth0.address`"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("refused, nothing was written"));

    let output = machine.ros(&["set", "rancher.netwrok.dns", "x"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("did you mean `rancher.network`?"),
        "{}",
        stderr(&output)
    );

    let output = machine.ros(&["set", "rancher.network..dns", "x"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("invalid key path"),
        "{}",
        stderr(&output)
    );

    assert_eq!(fs::read(machine.cloud_config()).unwrap(), before);
}

#[test]
fn merge_from_stdin_and_from_a_file() {
    let machine = Machine::new();
    ok(machine.ros(&["set", "rancher.network.dns.nameservers", "[1.1.1.1]"]));
    ok(machine.ros_with_stdin(
        &["merge"],
        "rancher:\n  network:\n    dns:\n      search: [lab]\n",
    ));
    let file = machine.path("extra.yml");
    fs::write(&file, "hostname: merged\n").unwrap();
    ok(machine.ros(&["merge", "-i", file.to_str().unwrap()]));
    assert_eq!(
        ok(machine.ros(&["export"])),
        "rancher:\n  network:\n    dns:\n      nameservers:\n      - 1.1.1.1\n      search:\n      - lab\nhostname: merged\n"
    );
    let output = machine.ros_with_stdin(&["merge"], "rancher: {debug: maybe}\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("line 1: `rancher.debug`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn export_redacts_secrets_unless_private_and_full_merges_every_layer() {
    let machine = Machine::new();
    ok(machine.ros(&["set", "rancher.password", "hunter2"]));
    ok(machine.ros(&["set", "rancher.cluster.token", "K10secret"]));
    let oem = machine.path("usr/share/ros/oem/oem-config.yml");
    fs::create_dir_all(oem.parent().unwrap()).unwrap();
    fs::write(&oem, "hostname: from-oem\n").unwrap();
    fs::create_dir_all(machine.path("proc")).unwrap();
    fs::write(machine.path("proc/cmdline"), "quiet rancher.debug\n").unwrap();

    let exported = ok(machine.ros(&["export"]));
    assert_eq!(
        exported,
        "rancher:\n  password: <redacted>\n  cluster:\n    token: <redacted>\n"
    );
    let private = ok(machine.ros(&["export", "--private"]));
    assert!(private.contains("hunter2") && private.contains("K10secret"));

    let full = ok(machine.ros(&["export", "--full"]));
    for expected in [
        "hostname: from-oem",
        "debug: true",
        "image: ros/console",
        "password: <redacted>",
        "token: <redacted>",
    ] {
        assert!(full.contains(expected), "{expected} missing from:\n{full}");
    }
    for secret in ["hunter2", "K10secret"] {
        assert!(!full.contains(secret), "{secret} leaked:\n{full}");
    }
    let full_private = ok(machine.ros(&["export", "--full", "--private"]));
    assert!(full_private.contains("token: K10secret"), "{full_private}");
}

#[test]
fn get_redacts_secrets_below_the_key_and_prints_a_secret_asked_for_by_its_key() {
    let machine = Machine::new();
    ok(machine.ros_with_stdin(
        &["merge"],
        "hostname: node1\n\
         rancher:\n  \
           password: hunter2\n  \
           cluster: {server: 'https://k8s:6443', token: K10secret, environment: {K3S_AGENT_TOKEN: K10agent}}\n  \
           ssh: {keys: {ssh_host_ed25519_key: PRIVATEKEYTEXT, ssh_host_ed25519_key.pub: ssh-ed25519 AAAA}}\n",
    ));

    assert_eq!(
        ok(machine.ros(&["get", "rancher.cluster"])),
        "server: https://k8s:6443\ntoken: <redacted>\nenvironment:\n  K3S_AGENT_TOKEN: <redacted>\n"
    );
    let rancher = ok(machine.ros(&["get", "rancher"]));
    let whole = ok(machine.ros(&["get"]));
    for shown in [&rancher, &whole] {
        for secret in ["hunter2", "K10secret", "K10agent", "PRIVATEKEYTEXT"] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        for kept in [
            "password: <redacted>",
            "token: <redacted>",
            "ssh_host_ed25519_key: <redacted>",
            "ssh_host_ed25519_key.pub: ssh-ed25519 AAAA",
            "server: https://k8s:6443",
            "image: ros/console",
        ] {
            assert!(shown.contains(kept), "{kept} missing from:\n{shown}");
        }
    }
    assert!(whole.contains("hostname: node1"), "{whole}");

    // Asked for by its own key, the secret is printed as it is.
    assert_eq!(
        ok(machine.ros(&["get", "rancher.cluster.token"])),
        "K10secret\n"
    );
    assert_eq!(ok(machine.ros(&["get", "rancher.password"])), "hunter2\n");
    assert_eq!(
        ok(machine.ros(&["get", "rancher.cluster.environment.K3S_AGENT_TOKEN"])),
        "K10agent\n"
    );
    assert_eq!(
        ok(machine.ros(&["get", "rancher.ssh.keys.ssh_host_ed25519_key"])),
        "PRIVATEKEYTEXT\n"
    );
}

#[track_caller]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn set_and_merge_write_the_configuration_for_root_alone() {
    let machine = Machine::new();
    ok(machine.ros(&["set", "rancher.cluster.token", "K10secret"]));
    let conf_dir = machine.path("var/lib/rancher/conf");
    assert_eq!(mode(&machine.cloud_config()), 0o600);
    assert_eq!(mode(&conf_dir), 0o700);
    ok(machine.ros_with_stdin(&["merge"], "hostname: node1\n"));
    assert_eq!(mode(&machine.cloud_config()), 0o600);
    assert_eq!(
        fs::read_to_string(machine.cloud_config()).unwrap(),
        "rancher:\n  cluster:\n    token: K10secret\nhostname: node1\n"
    );
}

#[test]
fn a_world_readable_configuration_is_narrowed_by_the_next_set() {
    use std::os::unix::fs::PermissionsExt;
    let machine = Machine::new();
    let conf_dir = machine.path("var/lib/rancher/conf");
    let drop_ins = conf_dir.join("cloud-config.d");
    fs::create_dir_all(&drop_ins).unwrap();
    fs::write(
        machine.cloud_config(),
        "rancher: {cluster: {token: K10old}}\n",
    )
    .unwrap();
    fs::write(drop_ins.join("10-user.yml"), "hostname: node1\n").unwrap();
    for (path, wide) in [
        (&conf_dir, 0o755),
        (&drop_ins, 0o755),
        (&machine.cloud_config(), 0o644),
    ] {
        fs::set_permissions(path, fs::Permissions::from_mode(wide)).unwrap();
        assert_eq!(mode(path), wide);
    }

    ok(machine.ros(&["set", "rancher.cluster.token", "K10new"]));
    assert_eq!(mode(&machine.cloud_config()), 0o600);
    assert_eq!(mode(&conf_dir), 0o700);
    assert_eq!(mode(&drop_ins), 0o700);
    assert_eq!(
        ok(machine.ros(&["get", "rancher.cluster.token"])),
        "K10new\n"
    );
    // The drop-in is still read; only the directory was narrowed.
    assert_eq!(ok(machine.ros(&["get", "hostname"])), "node1\n");
}

#[test]
fn validate_lists_every_error_and_exits_one() {
    let machine = Machine::new();
    let output = machine.ros_with_stdin(
        &["validate"],
        "hostnme: x\nrancher:\n  ssh: {prot: 22}\n  netwrok: {}\n",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "line 1: unknown key `hostnme` (did you mean `hostname`?)\n\
         line 3: unknown key `rancher.ssh.prot` (did you mean `rancher.ssh.port`?)\n\
         line 4: unknown key `rancher.netwrok` (did you mean `rancher.network`?)\n"
    );
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../os-config/tests/fixtures/valid/rancheros-v1-full.yml");
    let output = machine.ros(&["validate", "-i", fixture.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    // The user engine's options that do not apply are named one by one.
    assert!(
        stderr(&output)
            .contains("`rancher.docker.engine` is a RancherOS key this system does not implement"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn validate_names_a_capability_the_kernel_does_not_have_by_its_key() {
    let machine = Machine::new();
    let output = machine.ros_with_stdin(
        &["validate"],
        "rancher:\n  services:\n    ntp:\n      image: ros/ntp\n      cap_add: [SYS_TIME, SYS_TIEM]\n",
    );
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_eq!(
        stdout(&output),
        "line 5: `rancher.services.ntp.cap_add[1]`: `SYS_TIEM` is not a Linux capability \
         (like NET_ADMIN, CAP_SYS_ADMIN or ALL; see capabilities(7))\n"
    );
}

#[test]
fn validate_names_a_stop_signal_that_is_no_signal_by_its_key() {
    let machine = Machine::new();
    let output = machine.ros_with_stdin(
        &["validate"],
        "rancher:\n  services:\n    ntp:\n      image: ros/ntp\n      stop_signal: SIGTREM\n",
    );
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_eq!(
        stdout(&output),
        "line 5: `rancher.services.ntp.stop_signal`: `SIGTREM` is not a signal \
         (a name like SIGTERM or TERM, or a number 1..=64; see signal(7))\n"
    );
    let output = machine.ros_with_stdin(
        &["validate"],
        "rancher:\n  services:\n    ntp:\n      image: ros/ntp\n      stop_signal: 9\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(stderr(&output), "", "an applied key draws no warning");
}

#[test]
fn keys_lists_every_valid_key() {
    let keys = ok(Machine::new().ros(&["keys"]));
    for key in [
        "hostname",
        "write_files[].encoding",
        "rancher.network.interfaces.<name>.vlans",
        "rancher.services.<name>.restart",
        "rancher.cluster.token",
    ] {
        assert!(
            keys.lines()
                .any(|line| line.split('\t').next() == Some(key)),
            "{key} missing"
        );
    }
    assert!(keys.contains("\nrancher.docker.engine\tnot implemented (warning)\tRancherOS\n"));
    assert!(
        keys.contains("\nrancher.network.wifi_networks\tnot implemented (warning)\tRancherOS: ")
    );
    assert!(keys.contains("\nrancher.cluster.token\timplemented\tthis system\n"));
    assert!(keys.contains("# RancherOS v1.5 keys: "));
}

#[test]
fn root_can_be_given_as_an_option() {
    let machine = Machine::new();
    let output = Command::new(env!("CARGO_BIN_EXE_ros"))
        .args(["config", "--root"])
        .arg(machine.root.path())
        .args(["set", "hostname", "opt-root"])
        .env_remove("ROS_CONFIG_ROOT")
        .output()
        .unwrap();
    ok(output);
    assert_eq!(
        fs::read_to_string(machine.cloud_config()).unwrap(),
        "hostname: opt-root\n"
    );
}

/// xorshift: enough randomness for kill timing without a dependency.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// `ros config set` killed with SIGKILL at random points, hundreds of
/// times: the file must always be the old or the new version, and parse.
#[test]
fn killing_set_at_random_points_leaves_the_old_or_the_new_file() {
    const ROUNDS: u64 = 300;
    let machine = Machine::new();
    // A big file makes the write itself take long enough to be hit.
    let filler = "x".repeat(128 << 10);
    fs::create_dir_all(machine.cloud_config().parent().unwrap()).unwrap();
    fs::write(
        machine.cloud_config(),
        format!("write_files:\n- path: /filler\n  content: {filler}\nrancher:\n  environment:\n    GENERATION: 0\n"),
    )
    .unwrap();

    let started = Instant::now();
    ok(machine.ros(&["set", "rancher.environment.GENERATION", "0"]));
    let one_run = started.elapsed().as_micros() as u64;

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random = Random(seed);
    let mut committed = 0u64;
    let (mut killed, mut finished) = (0u64, 0u64);
    for generation in 1..=ROUNDS {
        let mut child = machine
            .command(&[
                "set",
                "rancher.environment.GENERATION",
                &generation.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(random.below(one_run * 5 / 4)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            finished += 1;
        } else {
            killed += 1;
        }

        let text = fs::read_to_string(machine.cloud_config()).unwrap();
        let checked = os_config::check_document(&text).unwrap_or_else(|e| {
            panic!("round {generation} (seed {seed}): file does not check: {e}")
        });
        let found: u64 = checked.config.rancher.environment["GENERATION"]
            .parse()
            .unwrap();
        assert!(
            found == committed || found == generation,
            "round {generation} (seed {seed}): found generation {found}, expected {committed} or {generation}"
        );
        assert_eq!(checked.config.write_files[0].content.len(), filler.len());
        committed = found;
    }
    eprintln!(
        "kill-during-set: {ROUNDS} rounds, {killed} killed before finishing, {finished} finished, \
         last committed generation {committed}, one run {one_run} us, seed {seed}"
    );
    // Killed writers' temp files are cleaned up by the next write.
    ok(machine.ros(&["set", "rancher.environment.GENERATION", "final"]));
    let leftovers: Vec<_> = fs::read_dir(machine.cloud_config().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "cloud-config.yml")
        .collect();
    assert_eq!(leftovers, Vec::<std::ffi::OsString>::new());
    // The timing must really have hit running writers.
    assert!(
        killed >= ROUNDS / 4,
        "only {killed} of {ROUNDS} runs were killed"
    );
}
