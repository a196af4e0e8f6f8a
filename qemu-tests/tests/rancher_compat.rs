//! What RancherOS's own integration tests checked of a cloud-config at
//! run time (its tests/write_files_test.go, mounts_test.go, swap_test.go,
//! network_test.go, os_release_test.go), checked here from the console in
//! one boot: files and mounts seen there, a bridge that only its VLAN port
//! names with a VLAN of its own and a named VLAN on a second NIC, the
//! console's /etc/os-release and /etc/hosts, and the compose keys a
//! service may use (and a `user` service reported as not run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qemu_tests::{Image, Vm, VmBuilder, config_drive};

const SHELL_TIMEOUT: Duration = Duration::from_secs(180);

/// The UUID the data disk's file system gets, for the `UUID=` mount.
const DATA_UUID: &str = "0b3c5a8e-6f1d-4c2a-9e7b-5d4c3b2a1f00";

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (apt-get install e2fsprogs util-linux)"));
    assert!(output.status.success(), "{command:?}: {output:?}");
}

/// A disk image of `mib` MiB at `dir/name`.
fn disk(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(mib << 20))
        .expect("a disk image");
    path
}

const USER_DATA: &str = r#"#cloud-config
hostname: compat-box
write_files:
- path: /test
  content: |
    console content
- path: /test2
  container: console
  content: |
    console only
- path: /etc/compat.env
  content: |
    # for compat-svc
    FROM_FILE=yes
mounts:
- ["/test", "/home/rancher/test", "", "bind"]
- [LABEL=DATA, /mnt/data, auto, defaults]
- [/dev/vdb, /home/rancher/b, "", ""]
- ["UUID=0b3c5a8e-6f1d-4c2a-9e7b-5d4c3b2a1f00", /srv/c, ext4, ""]
- [/dev/vdc, "", swap, ""]
rancher:
  network:
    interfaces:
      br0:
        vlans: 100
      eth1:
        vlans: 100,200:foobar
      eth1.100:
        bridge: br0
      br0.100:
        address: 10.99.0.1/24
  services:
    compat-svc:
      image: ros/console
      command: [sh, -c, "echo compat host=$(hostname) file=$FROM_FILE nofile=$(ulimit -n); exec sleep 3600"]
      hostname: compat-svc-host
      env_file: /etc/compat.env
      ulimits:
        nofile: 4242
      restart: always
    user-svc:
      image: ros/console
      command: [sh]
      labels:
        io.rancher.os.scope: user
"#;

/// Polls `command` until it succeeds: services and DHCP settle in the
/// background after the console is up.
fn eventually(vm: &mut Vm, command: &str, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let result = vm.run(command);
        if result.status == 0 {
            return result.output;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{command}` kept failing: {}",
            result.output
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_rancheros_cloud_config_behaves_as_on_rancheros_seen_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let drive = config_drive(dir.path(), USER_DATA);
    // /dev/vdb: ext4 labelled DATA with a known UUID; /dev/vdc: swap.
    let data = disk(dir.path(), "data.img", 64);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "DATA", "-U", DATA_UUID])
        .arg(&data));
    let swap = disk(dir.path(), "swap.img", 32);
    run(Command::new("mkswap").arg(&swap));
    let mut vm = VmBuilder::kernel(Image::built(), "")
        .drive(&drive)
        .drive(&data)
        .drive(&swap)
        // eth0 with QEMU's DHCP, eth1 isolated: the VLANs' parent.
        .args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .args([
            "-netdev",
            "user,id=n1,restrict=on",
            "-device",
            "virtio-net-pci,netdev=n1",
        ])
        .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);

    // write_files: without `container:` in the machine and the console,
    // with `container: console` in the console.
    assert_eq!(vm.check("cat /test"), "console content\n");
    assert_eq!(vm.check("cat /test2"), "console only\n");
    assert_eq!(vm.check("sudo cat /proc/1/root/test"), "console content\n");

    // mounts: a file bound, LABEL= with a probed type, an empty type,
    // UUID=; all seen in the console's own mount table.
    assert_eq!(vm.check("cat /home/rancher/test"), "console content\n");
    let mounts = vm.check("cat /proc/self/mounts");
    for (target, fstype) in [
        ("/home/rancher/test", None),
        ("/mnt/data", Some("ext4")),
        ("/home/rancher/b", Some("ext4")),
        ("/srv/c", Some("ext4")),
    ] {
        let line = mounts
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(target))
            .unwrap_or_else(|| panic!("{target} is not mounted in the console:\n{mounts}"));
        if let Some(fstype) = fstype {
            assert_eq!(line.split_whitespace().nth(2), Some(fstype), "{line}");
        }
    }
    // The same file system in both places: written in one, read in the other.
    vm.check("echo shared | sudo tee /mnt/data/probe > /dev/null");
    assert_eq!(vm.check("cat /srv/c/probe"), "shared\n");
    // swap: on where the kernel has it; otherwise said on the console.
    if vm.run("test -e /proc/swaps").status == 0 {
        let swaps = vm.check("cat /proc/swaps");
        assert!(swaps.contains("/dev/vdc"), "{swaps}");
    } else {
        assert!(
            vm.output().contains(
                "ros: mounts /dev/vdc: swap on /dev/vdc: this kernel has no swap support"
            ),
            "no swap and no report:\n{}",
            qemu_tests::tail(&vm.output(), 60)
        );
    }

    // Network: br0 made for its port, the port in it, br0's own VLAN, the
    // named VLAN; addressed where asked.
    vm.check("ip link show br0");
    assert!(vm.check("ip link show br0.100").contains("br0.100@br0"));
    assert_eq!(vm.check("ls /sys/class/net/br0/brif"), "eth1.100\n");
    let vlans = vm.check("cat /proc/net/vlan/config");
    for (name, id, parent) in [
        ("eth1.100", "100", "eth1"),
        ("foobar", "200", "eth1"),
        ("br0.100", "100", "br0"),
    ] {
        assert!(
            vlans.lines().any(|line| {
                let fields: Vec<&str> = line.split('|').map(str::trim).collect();
                fields == [name, id, parent]
            }),
            "{name} (VLAN {id} on {parent}) in\n{vlans}"
        );
    }
    assert!(
        vm.check("ip -4 addr show br0.100").contains("10.99.0.1/24"),
        "br0.100 has its address"
    );

    // The console's os-release names the system and the version of ros.
    let version = vm.check("ros --version");
    let version = version.split_whitespace().nth(1).expect("ros VERSION");
    let os_release = vm.check("cat /etc/os-release");
    for line in [
        "NAME=\"ros\"".to_string(),
        "ID=ros".to_string(),
        format!("VERSION=\"{version}\""),
        format!("VERSION_ID={version}"),
        format!("PRETTY_NAME=\"ros {version}\""),
    ] {
        assert!(
            os_release.lines().any(|l| l == line),
            "{line} in\n{os_release}"
        );
    }
    // /etc/hosts names the machine.
    assert_eq!(vm.check("hostname"), "compat-box\n");
    let hosts = vm.check("cat /etc/hosts");
    for line in [
        "127.0.0.1\tlocalhost",
        "127.0.1.1\tcompat-box",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ] {
        assert!(hosts.lines().any(|l| l == line), "{line:?} in\n{hosts}");
    }

    // Services: hostname, env_file and ulimits applied; a `user` one named
    // as not run.
    let logs = eventually(
        &mut vm,
        "sudo ros service logs compat-svc | grep 'compat host='",
        Duration::from_secs(60),
    );
    assert!(
        logs.contains("compat host=compat-svc-host file=yes nofile=4242"),
        "{logs}"
    );
    assert!(
        vm.output().contains(
            "ros: service user-svc: labels.io.rancher.os.scope: `user`: this service is NOT run"
        ),
        "the user service is not reported:\n{}",
        qemu_tests::tail(&vm.output(), 80)
    );
}
