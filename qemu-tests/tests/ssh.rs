//! Logging in, from the outside: SSH through a QEMU port forward with a
//! key from user-data (a config drive), `rancher` becoming root with
//! `sudo`, wrong keys, root and passwords refused, a password set with
//! `ros config` working after a reboot, the host key surviving it on the
//! state partition, and the serial console asking for a login when
//! `rancher.autologin` does not name it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use qemu_tests::{Image, Vm, VmBuilder, blank_disk, config_drive};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const SSH_TIMEOUT: Duration = Duration::from_secs(120);
const PASSWORD: &str = "correct-horse-battery";

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (apt-get install openssh-client)"))
}

/// A key pair made with ssh-keygen; returns the private key's path.
fn key_pair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let output = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key));
    assert!(output.status.success(), "{output:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The machine's SSH port forwarded to `port` on the host's loopback.
fn with_ssh_forward(builder: VmBuilder, port: u16) -> VmBuilder {
    builder.args([
        "-netdev",
        &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
        "-device",
        "virtio-net-pci,netdev=n0",
    ])
}

/// The host's ssh client, talking to the forwarded port.
struct Client {
    port: u16,
    known_hosts: PathBuf,
    askpass: PathBuf,
}

impl Client {
    fn new(dir: &Path, port: u16) -> Self {
        let askpass = dir.join("askpass");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{PASSWORD}'\n")).unwrap();
        std::fs::set_permissions(
            &askpass,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Self {
            port,
            known_hosts: dir.join("known_hosts"),
            askpass,
        }
    }

    fn base(&self) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-p", &self.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR"])
            .stdin(Stdio::null());
        command
    }

    /// `command` as `user` with `key` alone; no password is ever typed.
    fn with_key(&self, key: &Path, user: &str, command: &str) -> Output {
        run(self
            .base()
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "PreferredAuthentications=publickey", "-i"])
            .arg(key)
            .arg(format!("{user}@127.0.0.1"))
            .arg(command))
    }

    /// `command` as `user`, with [`PASSWORD`] answered through SSH_ASKPASS.
    fn with_password(&self, user: &str, command: &str) -> Output {
        run(self
            .base()
            .args(["-o", "PreferredAuthentications=password"])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .env("SSH_ASKPASS", &self.askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .arg(format!("{user}@127.0.0.1"))
            .arg(command))
    }

    /// Logs in with `key` until the daemon answers; returns how long it took.
    fn wait_for_login(&self, key: &Path, vm: &Vm) -> Duration {
        let started = Instant::now();
        loop {
            let output = self.with_key(key, "rancher", "id -un");
            if output.status.success() {
                assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "rancher");
                return started.elapsed();
            }
            assert!(
                started.elapsed() < SSH_TIMEOUT,
                "no SSH login: {output:?}\nconsole:\n{}",
                qemu_tests::tail(&vm.output(), 40)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The host's ed25519 key, as ssh-keyscan sees it.
    fn host_key(&self) -> String {
        let output = run(Command::new("ssh-keyscan")
            .args(["-t", "ed25519", "-p", &self.port.to_string(), "127.0.0.1"])
            .stderr(Stdio::null()));
        let text = String::from_utf8_lossy(&output.stdout);
        // `[127.0.0.1]:PORT ssh-ed25519 AAAA…`: the key, not where it was.
        let key = text.trim().split_once(' ').map(|(_, key)| key.to_owned());
        let key = key.unwrap_or_default();
        assert!(key.starts_with("ssh-ed25519 "), "ssh-keyscan: {output:?}");
        key
    }
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn ssh_with_a_key_from_user_data_sudo_and_a_host_key_that_survives_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(dir.path(), "user-data-key");
    let (other_key, other_public) = key_pair(dir.path(), "other-key");
    let drive = config_drive(
        dir.path(),
        &format!("#cloud-config\nssh_authorized_keys:\n  - {public}\n"),
    );
    let disk = blank_disk(dir.path());

    // First boot: the blank disk (vda) becomes the state partition; the
    // config drive (vdb) brings the key; ttyS0 logs rancher in.
    let port = free_port();
    let client = Client::new(dir.path(), port);
    let mut vm = with_ssh_forward(VmBuilder::kernel(Image::built(), ""), port)
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", drive.display()))
        .start();
    vm.wait_ready();
    let since_ready = client.wait_for_login(&key, &vm);
    eprintln!("ssh: first login {since_ready:?} after `ros: ready`");

    // The serial console: rancher, logged in by itself.
    vm.wait_for_user_shell(SHELL_TIMEOUT);
    assert_eq!(vm.check("id -un").trim(), "rancher");
    assert_eq!(vm.check("id -G").trim(), "1100 27 1101");
    assert_ne!(
        vm.run("cat /etc/shadow").status,
        0,
        "rancher reads /etc/shadow"
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    assert_eq!(vm.check("id -u").trim(), "0");

    // Over SSH: rancher, root through sudo without a password, at home
    // on the state partition.
    let whoami = client.with_key(
        &key,
        "rancher",
        "id -u; id -gn; pwd; sudo id -u; sudo -u root true && echo ok",
    );
    assert!(whoami.status.success(), "{whoami:?}");
    assert_eq!(text(&whoami), "1100\nrancher\n/home/rancher\n0\nok");
    let refused = client.with_key(&key, "rancher", "sudo -E id");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("option -E is not supported"),
        "{refused:?}"
    );

    // A key nobody configured is refused; so is root, even holding a
    // key root's own authorized_keys lists.
    assert!(
        !client
            .with_key(&other_key, "rancher", "true")
            .status
            .success()
    );
    vm.check("mkdir -p /root/.ssh && cp /home/rancher/.ssh/authorized_keys /root/.ssh/");
    let root = client.with_key(&key, "root", "id -u");
    assert!(!root.status.success(), "root logged in: {root:?}");
    // No password set: password logins are not even offered.
    let password = client.with_password("rancher", "true");
    assert!(!password.status.success(), "{password:?}");

    // Measured: memory in use with dropbear running.
    assert!(!vm.check("pidof dropbear").trim().is_empty());
    let used_kib =
        vm.check("awk '/^MemTotal/{t=$2} /^MemAvailable/{a=$2} END{print t-a}' /proc/meminfo");
    eprintln!(
        "ssh: memory used after boot with dropbear: {} KiB",
        used_kib.trim()
    );
    let rss = vm.check("grep VmRSS /proc/$(pidof dropbear | cut -d' ' -f1)/status");
    eprintln!("ssh: dropbear's own {}", rss.trim());
    let host_key = client.host_key();

    // A password and a second key, set as a user would; they apply from
    // the next start of the console (here: the reboot).
    vm.check(&format!("ros config set rancher.password {PASSWORD}"));
    vm.check(&format!(
        "ros config set ssh_authorized_keys '[{other_public}]'"
    ));
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());

    // Second boot, from the state partition alone, without autologin.
    let port = free_port();
    let client = Client {
        port,
        ..Client::new(dir.path(), port)
    };
    let mut vm = with_ssh_forward(
        VmBuilder::kernel_without_autologin(Image::built(), ""),
        port,
    )
    .arg("-drive")
    .arg(format!("file={},format=raw,if=virtio", disk.display()))
    .start();
    vm.wait_ready();
    let since_ready = client.wait_for_login(&key, &vm);
    eprintln!("ssh: login {since_ready:?} after `ros: ready` (host keys made before)");
    assert_eq!(
        client.host_key(),
        host_key,
        "the host key changed with the reboot"
    );
    // Both layers' keys: user-data's and cloud-config.yml's.
    let other = client.with_key(&other_key, "rancher", "id -un");
    assert_eq!(text(&other), "rancher", "{other:?}");
    let password = client.with_password("rancher", "id -un");
    assert_eq!(text(&password), "rancher", "{password:?}");
    assert!(!client.with_password("root", "true").status.success());

    // The serial console asks for a login; what is typed is a user name,
    // not a command, until the password is given.
    vm.wait_for("login:", SHELL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let from = vm.output().len();
    vm.send_line("echo '@@SHELL''-UP@@'");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !vm.output()[from..].contains("@@SHELL-UP@@"),
        "a shell answered without a login:\n{}",
        qemu_tests::tail(&vm.output(), 20)
    );
    // Back to a fresh prompt (a wrong password ends that attempt), then
    // rancher's password logs in.
    let typed = |vm: &mut Vm, line: &str, answer: &str| {
        let from = vm.output().len();
        vm.send_line(line);
        vm.wait_for_since(from, answer, SHELL_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    typed(&mut vm, "wrong", "login:");
    typed(&mut vm, "rancher", "Password:");
    vm.send_line(PASSWORD);
    vm.wait_for_user_shell(SHELL_TIMEOUT);
    assert_eq!(vm.check("id -un").trim(), "rancher");
    vm.send_line("sudo ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());
}
