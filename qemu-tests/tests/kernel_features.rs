//! Boots the built kernel (`target/image/vmlinuz`) in QEMU with a tiny
//! busybox initramfs and checks, from inside, every kernel feature the
//! system relies on: filesystems, cgroup v2 controllers, namespaces, loop
//! mounted squashfs (xz and zstd) under overlayfs, the virtio/CD-ROM
//! devices, networking pieces, and ACPI power-off.
//!
//! Needs on the host: qemu-system-x86, busybox-static, squashfs-tools.
//! Uses KVM when it works and falls back to TCG (slow), never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image_build::cpio::{Entry, write_archive};
use qemu_tests::VmBuilder;

/// TCG on a busy two-core machine runs the whole check in well under a
/// minute (about 8 s when idle); KVM in a second or two.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The guest's `/init`. Prints `PASS <name>` or `FAIL <name>: <output>` per
/// check, then `DONE`, then powers off through ACPI.
const GUEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
echo "USERSPACE $(cut -d' ' -f1 /proc/uptime)"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp

check() {
    name=$1; shift
    if out=$("$@" 2>&1); then echo "PASS $name"; else echo "FAIL $name: $out"; fi
}
has_controllers() {
    for c in cpuset cpu io memory pids; do
        grep -qw $c /sys/fs/cgroup/cgroup.controllers || return 1
    done
}

for f in squashfs overlay ext4 vfat iso9660 tmpfs devtmpfs cgroup2 proc sysfs devpts mqueue; do
    check "fs-$f" grep -qw $f /proc/filesystems
done

mkdir -p /sys/fs/cgroup
check cgroup2-mount mount -t cgroup2 none /sys/fs/cgroup
echo "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
check cgroup2-controllers has_controllers
check cgroup2-subtree sh -c 'echo "+cpuset +cpu +io +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control'
check cgroup2-limits sh -c 'mkdir /sys/fs/cgroup/t && echo 50M > /sys/fs/cgroup/t/memory.max && echo 10 > /sys/fs/cgroup/t/pids.max && echo "50000 100000" > /sys/fs/cgroup/t/cpu.max && echo 0 > /sys/fs/cgroup/t/cpuset.cpus && echo $$ > /sys/fs/cgroup/t/cgroup.procs'
check cgroup2-freeze test -e /sys/fs/cgroup/t/cgroup.freeze

check ns-unshare unshare -m -u -i -n -p -f --mount-proc true
check ns-unshare-user unshare -r true
for ns in cgroup ipc mnt net pid time user uts; do check "ns-$ns" test -e /proc/self/ns/$ns; done
check seccomp-filter grep -q Seccomp_filters /proc/self/status
check bpf-syscall test -e /proc/sys/kernel/unprivileged_bpf_disabled
check sysvipc test -e /proc/sysvipc/shm
check mqueue sh -c 'mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue'
check keys test -e /proc/keys -o -e /proc/sys/kernel/keys

check squashfs-xz sh -c 'mkdir -p /mnt/xz && mount -o loop,ro /test/xz.sqfs /mnt/xz && grep -q xz /mnt/xz/hello'
check squashfs-zstd sh -c 'mkdir -p /mnt/zstd && mount -o loop,ro /test/zstd.sqfs /mnt/zstd && grep -q zstd /mnt/zstd/hello'
check overlay sh -c 'mkdir -p /tmp/up /tmp/work /mnt/ov && mount -t overlay overlay -o lowerdir=/mnt/xz:/mnt/zstd,upperdir=/tmp/up,workdir=/tmp/work /mnt/ov && echo new > /mnt/ov/hello && grep -q new /tmp/up/hello'

check dev-vda test -b /dev/vda
check ext4-vda sh -c 'mke2fs -q /dev/vda && mkdir -p /mnt/vda && mount -t ext4 /dev/vda /mnt/vda && echo x > /mnt/vda/x && umount /mnt/vda'
check vfat-vda sh -c 'mkdosfs /dev/vda >/dev/null && mount -t vfat -o codepage=437,iocharset=utf8 /dev/vda /mnt/vda && echo x > /mnt/vda/x && umount /mnt/vda'
check dev-sr0 test -b /dev/sr0
check cdrom-read sh -c 'mkdir -p /mnt/cd && mount -t squashfs -o ro /dev/sr0 /mnt/cd && grep -q zstd /mnt/cd/hello'
check dev-hwrng test -c /dev/hwrng
check hwrng-virtio grep -q virtio /sys/class/misc/hw_random/rng_current
check dev-rtc0 test -c /dev/rtc0
check dev-tun test -c /dev/net/tun
check devpts sh -c 'mkdir -p /dev/pts && mount -t devpts devpts /dev/pts && test -c /dev/pts/ptmx'
check input-event sh -c 'ls /dev/input/event*'

check net-eth0-virtio sh -c 'readlink /sys/class/net/eth0/device/driver | grep -q virtio_net'
check net-dhcp sh -c 'ip link set lo up && ip link set eth0 up && udhcpc -i eth0 -n -q -t 5 -s /bin/true'
check net-ipv6 test -e /proc/net/if_inet6
check net-bridge ip link add br0 type bridge
check net-veth ip link add v0 type veth
check net-bond ip link add bond1 type bond
check net-vlan ip link add link eth0 name eth0.5 type vlan id 5
check net-macvlan ip link add link eth0 name mv0 type macvlan
check br-netfilter test -e /proc/sys/net/bridge/bridge-nf-call-iptables
check conntrack test -e /proc/sys/net/netfilter/nf_conntrack_max
check iptables-legacy test -e /proc/net/ip_tables_names
check ip6tables-legacy test -e /proc/net/ip6_tables_names

echo "DONE"
poweroff -f
"#;

/// Every check the guest runs; each must print `PASS`.
const CHECKS: &[&str] = &[
    "fs-squashfs",
    "fs-overlay",
    "fs-ext4",
    "fs-vfat",
    "fs-iso9660",
    "fs-tmpfs",
    "fs-devtmpfs",
    "fs-cgroup2",
    "fs-proc",
    "fs-sysfs",
    "fs-devpts",
    "fs-mqueue",
    "cgroup2-mount",
    "cgroup2-controllers",
    "cgroup2-subtree",
    "cgroup2-limits",
    "cgroup2-freeze",
    "ns-unshare",
    "ns-unshare-user",
    "ns-cgroup",
    "ns-ipc",
    "ns-mnt",
    "ns-net",
    "ns-pid",
    "ns-time",
    "ns-user",
    "ns-uts",
    "seccomp-filter",
    "bpf-syscall",
    "sysvipc",
    "mqueue",
    "keys",
    "squashfs-xz",
    "squashfs-zstd",
    "overlay",
    "dev-vda",
    "ext4-vda",
    "vfat-vda",
    "dev-sr0",
    "cdrom-read",
    "dev-hwrng",
    "hwrng-virtio",
    "dev-rtc0",
    "dev-tun",
    "devpts",
    "input-event",
    "net-eth0-virtio",
    "net-dhcp",
    "net-ipv6",
    "net-bridge",
    "net-veth",
    "net-bond",
    "net-vlan",
    "net-macvlan",
    "br-netfilter",
    "conntrack",
    "iptables-legacy",
    "ip6tables-legacy",
];

#[test]
fn kernel_has_every_feature_the_system_needs() {
    let work = scratch_dir("kernel-features");

    // Two squashfs images (xz and zstd), like the root filesystem will be.
    let xz = squashfs(&work, "xz", "xz payload\n");
    let zstd = squashfs(&work, "zstd", "zstd payload\n");
    let disk = work.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();

    let busybox = static_busybox();
    let (xz_bytes, zstd_bytes) = (std::fs::read(&xz).unwrap(), std::fs::read(&zstd).unwrap());
    let initrd = work.join("initrd.cpio");
    let mut archive = Vec::new();
    write_archive(
        &mut archive,
        &[
            Entry::Dir {
                path: "bin",
                mode: 0o755,
            },
            Entry::Dir {
                path: "test",
                mode: 0o755,
            },
            Entry::File {
                path: "init",
                mode: 0o755,
                data: GUEST_INIT.as_bytes(),
            },
            Entry::File {
                path: "bin/busybox",
                mode: 0o755,
                data: &busybox,
            },
            Entry::File {
                path: "test/xz.sqfs",
                mode: 0o644,
                data: &xz_bytes,
            },
            Entry::File {
                path: "test/zstd.sqfs",
                mode: 0o644,
                data: &zstd_bytes,
            },
        ],
    )
    .unwrap();
    std::fs::write(&initrd, archive).unwrap();

    // panic=-1: a panic reboots, which -no-reboot turns into an exit.
    let mut vm = VmBuilder::own_initrd(&initrd, "console=ttyS0 panic=-1")
        .memory_mib(512)
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args([
            "-netdev",
            "user,id=net0",
            "-device",
            "virtio-net-pci,netdev=net0",
        ])
        // Any image will do for the CD-ROM; a squashfs one can be mounted.
        .arg("-cdrom")
        .arg(zstd.display().to_string())
        .start();
    vm.wait_for("\nDONE", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("the guest did not finish: {e}"));
    assert!(
        vm.wait_exit(BOOT_TIMEOUT).success(),
        "QEMU did not power off cleanly"
    );
    let console = vm.output();
    let lines: Vec<&str> = console.lines().map(str::trim_end).collect();

    let failed: Vec<&&str> = lines
        .iter()
        .filter(|line| line.starts_with("FAIL "))
        .collect();
    assert!(
        failed.is_empty(),
        "failed checks: {failed:#?}\nconsole:\n{console}"
    );
    let missing: Vec<&&str> = CHECKS
        .iter()
        .filter(|check| !lines.iter().any(|line| *line == format!("PASS {check}")))
        .collect();
    assert!(
        missing.is_empty(),
        "checks that did not report: {missing:?}\nconsole:\n{console}"
    );

    let userspace = lines
        .iter()
        .find_map(|line| line.strip_prefix("USERSPACE "));
    eprintln!(
        "kernel booted to userspace at {}s (guest uptime), powered off after {:.1}s",
        userspace.unwrap_or("?"),
        vm.elapsed().as_secs_f64()
    );
    drop(vm);
    std::fs::remove_dir_all(&work).unwrap();
}

/// A fresh directory under cargo's scratch space for integration tests.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A squashfs image compressed with `comp` holding one file, `hello`.
fn squashfs(work: &Path, comp: &str, hello: &str) -> PathBuf {
    let dir = work.join(format!("payload-{comp}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello"), hello).unwrap();
    let image = work.join(format!("{comp}.sqfs"));
    let output = Command::new("mksquashfs")
        .arg(&dir)
        .arg(&image)
        .args(["-comp", comp, "-noappend", "-no-progress", "-quiet"])
        .output()
        .expect("mksquashfs not found: apt-get install squashfs-tools");
    assert!(
        output.status.success(),
        "mksquashfs -comp {comp}: {output:?}"
    );
    image
}

/// The host's busybox, which must be static: the initramfs has no libc.
fn static_busybox() -> Vec<u8> {
    let path = Path::new("/bin/busybox");
    let needs = image_build::elf::needs(path).unwrap_or_else(|err| {
        panic!(
            "{}: {err:#}: apt-get install busybox-static",
            path.display()
        )
    });
    assert!(
        needs.is_some_and(|n| n.interpreter.is_none()),
        "{} is dynamically linked: apt-get install busybox-static",
        path.display()
    );
    std::fs::read(path).unwrap()
}
