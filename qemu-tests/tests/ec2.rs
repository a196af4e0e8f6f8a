//! The EC2 image as EC2 runs it: `ros-ec2.raw` written to a larger volume,
//! attached as NVMe, started by UEFI firmware, with the instance metadata
//! service at 169.254.169.254 answering IMDSv2 only (the fake in
//! `qemu_tests::imds`). One boot; checked as a user would: logging in over
//! SSH as `rancher` with the key from the metadata, the host name from the
//! metadata, the user-data applied, the state partition grown to the
//! volume, and a token-less (IMDSv1) request refused while the datasource
//! still got everything with its token.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use qemu_tests::imds::{Imds, Instance};
use qemu_tests::{Boot, Image, VmBuilder, image_dir};

/// EC2 volumes are larger than the image; 2 GiB stands for one.
const VOLUME_BYTES: u64 = 2 << 30;
const SSH_TIMEOUT: Duration = Duration::from_secs(180);
const HOSTNAME: &str = "ip-172-31-7-42.ec2.internal";
const USER_DATA: &str = "#cloud-config
write_files:
  - path: /home/rancher/from-user-data
    content: written by write_files
runcmd:
  - echo runcmd ran > /home/rancher/from-runcmd
";

/// The built EC2 image, copied to a sparse volume of [`VOLUME_BYTES`].
fn volume(dir: &Path) -> PathBuf {
    let image = image_dir().join("ros-ec2.raw");
    assert!(
        image.is_file(),
        "{} is missing: build it (`cargo run -p image-build -- ec2`)",
        image.display()
    );
    let volume = dir.join("ec2-volume.raw");
    std::fs::copy(&image, &volume).expect("copying the EC2 image");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&volume)
        .and_then(|f| f.set_len(VOLUME_BYTES))
        .expect("growing the volume");
    volume
}

/// An ed25519 key pair from ssh-keygen: the private key's path and the
/// public key's line.
fn key_pair(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("ec2-key");
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ec2-test", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(output.status.success(), "{output:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("the public key");
    (key, public.trim().to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `command` over SSH as `rancher` with `key`, through the forwarded port.
fn ssh(port: u16, key: &Path, known_hosts: &Path, command: &str) -> Output {
    Command::new("ssh")
        .args(["-p", &port.to_string(), "-i"])
        .arg(key)
        .args(["-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20"])
        .args(["-o", "LogLevel=ERROR", "-o"])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("rancher@127.0.0.1")
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("ssh (apt-get install openssh-client)")
}

#[test]
fn the_ec2_image_boots_on_nvme_under_uefi_with_what_imdsv2_serves() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let volume = volume(dir.path());
    let (key, public_key) = key_pair(dir.path());
    let imds = Imds::start(Instance {
        hostname: HOSTNAME.into(),
        instance_id: "i-0123456789abcdef0".into(),
        openssh_key: public_key.clone(),
        user_data: USER_DATA.into(),
    });
    let port = free_port();
    let mut vm = VmBuilder::new(Image::built(), Boot::Disk)
        .uefi()
        .nvme(&volume)
        .args([
            "-netdev",
            &format!(
                "user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22,{}",
                imds.netdev_options()
            ),
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .start();
    let ready = vm.wait_ready();
    eprintln!(
        "EC2 image, UEFI, NVMe: ros: ready in {ready:?} (guest clock), {:?} since QEMU started",
        vm.elapsed()
    );

    // The key from the metadata logs `rancher` in.
    let known_hosts = dir.path().join("known_hosts");
    let started = Instant::now();
    let login = loop {
        let output = ssh(port, &key, &known_hosts, "echo logged-in-as-$(id -un)");
        if output.status.success() {
            break String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(
            started.elapsed() < SSH_TIMEOUT,
            "no SSH login with the metadata's key: {}\nconsole:\n{}",
            String::from_utf8_lossy(&output.stderr),
            qemu_tests::tail(&vm.output(), 60)
        );
        std::thread::sleep(Duration::from_secs(3));
    };
    assert_eq!(login.trim(), "logged-in-as-rancher");
    let run = |command: &str| {
        let output = ssh(port, &key, &known_hosts, command);
        assert!(
            output.status.success(),
            "`{command}` failed: {}{}\nconsole:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            qemu_tests::tail(&vm.output(), 80)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    assert_eq!(run("hostname").trim(), HOSTNAME);
    let authorized = run("cat ~rancher/.ssh/authorized_keys");
    assert!(authorized.contains(&public_key), "{authorized}");
    assert_eq!(
        run("cat /home/rancher/from-user-data").trim(),
        "written by write_files"
    );
    // runcmd runs last, once the services have settled: maybe after ready.
    assert_eq!(
        run("for i in $(seq 60); do [ -e /home/rancher/from-runcmd ] && break; sleep 1; done; cat /home/rancher/from-runcmd").trim(),
        "runcmd ran"
    );

    // The state partition and its file system fill the volume.
    let sectors: u64 = run("cat /sys/class/block/nvme0n1p3/size")
        .trim()
        .parse()
        .expect("a sector count");
    assert!(
        sectors * 512 > VOLUME_BYTES - (16 << 20),
        "the state partition has {sectors} sectors on a {VOLUME_BYTES}-byte volume"
    );
    let df = run("df -k /home | tail -n 1");
    let kib: u64 = df
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("df: {df}"));
    assert!(
        kib * 1024 > VOLUME_BYTES * 9 / 10,
        "the state file system is {kib} KiB on a {VOLUME_BYTES}-byte volume: {df}"
    );

    // A request without a token (IMDSv1) is refused...
    let v1 = ssh(
        port,
        &key,
        &known_hosts,
        "wget -q -O - http://169.254.169.254/latest/meta-data/hostname",
    );
    assert!(!v1.status.success(), "IMDSv1 answered: {v1:?}");
    let requests = imds.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && !r.had_token && r.status == 401),
        "the fake saw no refused token-less GET: {requests:#?}"
    );
    // ...while ros asked for a token first and read everything with it.
    let ros_reads: Vec<_> = requests.iter().filter(|r| r.had_token).collect();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "PUT" && r.path == "/latest/api/token" && r.status == 200),
        "no token was handed out: {requests:#?}"
    );
    for path in [
        "/latest/user-data",
        "/latest/meta-data/hostname",
        "/latest/meta-data/public-keys/0/openssh-key",
    ] {
        assert!(
            ros_reads
                .iter()
                .any(|r| r.path == path && r.valid_token && r.status == 200),
            "{path} was not read with a valid token: {requests:#?}"
        );
    }
    assert!(!vm.output().contains("Kernel panic"));
}
