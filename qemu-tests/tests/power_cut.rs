//! Power cuts during `ros config set`: QEMU is killed (SIGKILL, the
//! machine's power gone at once) while `ros config set` runs in a loop on
//! an ext4 state disk, then the machine boots again from the same disk.
//! After every cut:
//!
//! - on the host, the disk's ext4 is clean once its journal is replayed
//!   (as the next mount would): `e2fsck -E journal_only` then `e2fsck -fn`
//!   on a copy, so the guest still finds what the cut left;
//! - in the guest, `cloud-config.yml` parses and checks, the key the loop
//!   does not touch is still there, and the looped key holds either the
//!   last value whose `ros config set` had returned before the cut (the
//!   old file) or the one after it (the new file): a returned `set` is
//!   durable, an unfinished one all or nothing;
//! - the kernel log has no ext4 error.
//!
//! Two loops, both a boot per cut (the boot that checks one cut is the one
//! the next cut hits):
//!
//! - [`a_power_cut_during_config_set_leaves_the_old_or_the_new_file`], the
//!   many-cut one: the image's kernel and its `ros` binary in a small
//!   initrd with busybox, which mounts the disk and runs
//!   `ros config --root /mnt set` (the same code and the same `Store`
//!   write path as on the console, on the same kernel's ext4 and virtio
//!   disk) without booting the whole system: a few seconds a cut;
//! - [`a_power_cut_on_the_full_system_leaves_the_old_or_the_new_file`]:
//!   the whole image with its state partition, typed on the console as a
//!   user would; a minute a cut under TCG, so a few cuts.
//!
//! What a cut loses is what the guest had not handed to the disk (its page
//! cache, requests in flight); QEMU has written every request it
//! completed, so a disk's own volatile cache is not simulated.
//!
//! Too slow for CI, so ignored; run them with `./dev power-cut [CUTS]`, or
//! `ROS_POWER_CUTS=100 cargo test -p qemu-tests --test power_cut -- --ignored
//! --test-threads=1`. `ROS_POWER_CUT_SEED` repeats a run's kill delays.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use image_build::cpio::{Entry, write_archive};
use qemu_tests::{Image, Vm, VmBuilder, tail};

const SHELL_TIMEOUT: Duration = Duration::from_secs(180);
/// The key the loop never touches: it must survive every cut.
const KEPT: &str = "power-cut-kept";
/// Kill delays after the loop's first completed `set`, in milliseconds.
const MAX_DELAY_MS: u64 = 2500;

/// xorshift64*: delays that a seed repeats, without a dependency.
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % MAX_DELAY_MS
    }
}

fn boot(disk: &Path) -> Vm {
    let mut vm = VmBuilder::kernel(Image::built(), "").drive(disk).start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm
}

/// The number of the last `@@SET-N@@` line: the last `set` that returned.
fn last_acknowledged(output: &str) -> Option<u64> {
    output
        .rsplit("@@SET-")
        .filter_map(|rest| rest.split_once("@@\n"))
        .find_map(|(number, _)| number.parse().ok())
}

fn run(command: &mut Command) -> (i32, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (apt-get install e2fsprogs)"));
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The disk's file system is clean once its journal is replayed; checked
/// on a copy so the next boot sees the disk as the cut left it.
fn assert_clean_after_replay(disk: &Path, cut: u32) {
    let copy = disk.with_extension("check.img");
    std::fs::copy(disk, &copy).expect("copying the disk image");
    let (replay, text) = run(Command::new("e2fsck")
        .args(["-E", "journal_only", "-y"])
        .arg(&copy));
    // 0: nothing to do, 1: the journal was replayed.
    assert!(
        replay <= 1,
        "cut {cut}: journal replay: exit {replay}: {text}"
    );
    let (check, text) = run(Command::new("e2fsck").arg("-fn").arg(&copy));
    assert_eq!(check, 0, "cut {cut}: e2fsck -fn after replay: {text}");
    let _ = std::fs::remove_file(&copy);
}

/// What the guest finds after a cut: the file checks, the kept key is
/// there, and the looped one is `acknowledged` or the one after.
fn check_after_cut(vm: &mut Vm, cut: u32, acknowledged: u64) -> u64 {
    let file = "/var/lib/rancher/conf/cloud-config.yml";
    let validate = vm.run(&format!("ros config validate -i {file}"));
    assert_eq!(
        validate.status,
        0,
        "cut {cut}: the stored configuration does not check: {}\n{}",
        validate.output,
        vm.check(&format!("cat {file}"))
    );
    assert_eq!(
        vm.check("ros config export | grep -c '^hostname: '").trim(),
        "1",
        "cut {cut}"
    );
    assert_eq!(
        vm.check("ros config get hostname").trim(),
        KEPT,
        "cut {cut}"
    );
    let value = vm.check("ros config get rancher.environment.POWER_CUT");
    let value: u64 = value
        .trim()
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cut {cut}: POWER_CUT is {value:?}"));
    assert!(
        value == acknowledged || value == acknowledged + 1,
        "cut {cut}: POWER_CUT is n{value}; the last set that returned was n{acknowledged}: \
         neither the old nor the new file"
    );
    let errors = vm.run("dmesg | grep -c 'EXT4-fs error'");
    assert_eq!(
        errors.output.trim(),
        "0",
        "cut {cut}: {}",
        vm.check("dmesg | grep EXT4")
    );
    value
}

#[test]
#[ignore = "too slow for CI: a boot per cut, 100 cuts; run with ./dev power-cut"]
fn a_power_cut_during_config_set_leaves_the_old_or_the_new_file() {
    let cuts = from_env("ROS_POWER_CUTS", 100);
    let mut delays = delays();
    eprintln!("power cuts: {cuts}");
    let dir = tempfile::tempdir().unwrap();
    let initrd = loop_initrd(dir.path());
    // Formatted as the boot formats a blank state disk.
    let disk = dir.path().join("state.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap();
    let (status, text) = run(Command::new("mke2fs")
        .args(["-t", "ext4", "-q", "-F", "-L", "RANCHER_STATE"])
        .arg(&disk));
    assert_eq!(status, 0, "mke2fs: {text}");

    let started = Instant::now();
    let mut acknowledged = 0;
    let mut sets = 0;
    let mut boots = Vec::new();
    for cut in 0..=cuts {
        let mode = if cut == 0 { "first" } else { "check" };
        let (mut vm, check) = boot_to_check(&initrd, &disk, mode, cut);
        let end = vm
            .wait_for_since(check, "@@\n", Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        boots.push(vm.elapsed());
        let output = vm.output();
        let line = &output[check..end];
        if cut > 0 {
            acknowledged = check_line(line, cut, acknowledged);
        }
        if cut == cuts {
            break;
        }
        vm.wait_for(
            &format!("@@SET-{}@@\n", acknowledged + 1),
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| {
            panic!(
                "cut {}: the set loop does not run: {e}\n{}",
                cut + 1,
                tail(&vm.output(), 30)
            )
        });
        std::thread::sleep(Duration::from_millis(delays.next_ms()));
        vm.kill();
        let before = acknowledged;
        acknowledged = last_acknowledged(&vm.output()).unwrap_or(acknowledged);
        sets += acknowledged - before;
        assert_clean_after_replay(&disk, cut + 1);
        if (cut + 1) % 10 == 0 {
            eprintln!(
                "power cuts: {}/{cuts} done, {sets} sets returned, {:.0?} so far",
                cut + 1,
                started.elapsed()
            );
        }
    }
    // The last boot checked the last cut; a clean unmount leaves nothing
    // for e2fsck.
    let (mut vm, _) = boot_to_check(&initrd, &disk, "final", cuts + 1);
    assert!(vm.wait_exit(Duration::from_secs(60)).success());
    let (status, text) = run(Command::new("e2fsck").arg("-fn").arg(&disk));
    assert_eq!(status, 0, "after the last boot: {text}");
    eprintln!(
        "power cuts: {cuts} cuts, 0 failures, {sets} sets returned, median boot to check {:.1?}, in {:.0?}",
        qemu_tests::median(boots),
        started.elapsed()
    );
}

/// The guest of the many-cut loop: mount the disk (replaying its journal),
/// report what is stored, then set the key in a loop until the power goes.
const LOOP_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /mnt
mode=$(sed -n 's/.*powercut=\([a-z]*\).*/\1/p' /proc/cmdline)
mount -t ext4 /dev/vda /mnt || { echo "@@CHECK mount=failed@@"; poweroff -f; }
conf=/mnt/var/lib/rancher/conf/cloud-config.yml
if [ "$mode" = first ]; then
    ros config --root /mnt set hostname power-cut-kept
    ros config --root /mnt set rancher.environment.POWER_CUT n0
fi
ros config --root /mnt validate -i $conf >/dev/null 2>&1; valid=$?
kept=$(ros config --root /mnt get hostname)
value=$(ros config --root /mnt get rancher.environment.POWER_CUT)
errors=$(dmesg | grep -c 'EXT4-fs error')
echo "@@CHECK valid=$valid kept=$kept value=$value ext4errors=$errors@@"
if [ "$valid" != 0 ]; then cat $conf; fi
if [ "$mode" = final ]; then umount /mnt; poweroff -f; fi
i=${value#n}
while :; do
    i=$((i+1))
    ros config --root /mnt set rancher.environment.POWER_CUT n$i && echo "@@SET-$i@@"
done
"#;

/// Boots the loop's guest and waits for its check line; returns where the
/// line starts. A kernel that dies before its first process ran never
/// touched the disk (under a loaded TCG host the timer check fails now and
/// then): it is booted once more, saying so.
fn boot_to_check(initrd: &Path, disk: &Path, mode: &str, cut: u32) -> (Vm, usize) {
    let mut retried = false;
    loop {
        let vm = loop_vm(initrd, disk, mode);
        match vm.wait_for("@@CHECK ", Duration::from_secs(300)) {
            Ok(out) => return (vm, out.len()),
            Err(error) if !retried && !vm.output().contains("@@") => {
                eprintln!(
                    "cut {cut}: the kernel did not reach the guest's init; booting once more:\n{error}"
                );
                retried = true;
            }
            Err(error) => panic!("cut {cut}: no check line: {error}"),
        }
    }
}

fn loop_vm(initrd: &Path, disk: &Path, mode: &str) -> Vm {
    // no_timer_check: the IO-APIC timer test fails on a loaded TCG host.
    VmBuilder::own_initrd(
        initrd,
        &format!("console=ttyS0 panic=-1 quiet no_timer_check powercut={mode}"),
    )
    .memory_mib(256)
    .drive(disk)
    .start()
}

/// `valid=0 kept=power-cut-kept value=nN ext4errors=0`: N is returned.
fn check_line(line: &str, cut: u32, acknowledged: u64) -> u64 {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name).and_then(|f| f.strip_prefix('=')))
            .unwrap_or_else(|| panic!("cut {cut}: no {name} in {line:?}"))
            .trim_end_matches('@')
    };
    assert_eq!(
        field("valid"),
        "0",
        "cut {cut}: the stored configuration does not check: {line}"
    );
    assert_eq!(field("kept"), KEPT, "cut {cut}: {line}");
    assert_eq!(field("ext4errors"), "0", "cut {cut}: {line}");
    let value: u64 = field("value")
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cut {cut}: {line}"));
    assert!(
        value == acknowledged || value == acknowledged + 1,
        "cut {cut}: POWER_CUT is n{value}; the last set that returned was n{acknowledged}: \
         neither the old nor the new file"
    );
    value
}

/// An initrd of busybox, the image's `ros` and [`LOOP_INIT`].
fn loop_initrd(dir: &Path) -> std::path::PathBuf {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let ros = ros_binary(dir);
    let mut archive = Vec::new();
    write_archive(
        &mut archive,
        &[
            Entry::Dir {
                path: "bin",
                mode: 0o755,
            },
            Entry::Dir {
                path: "proc",
                mode: 0o755,
            },
            Entry::Dir {
                path: "sys",
                mode: 0o755,
            },
            Entry::Dir {
                path: "dev",
                mode: 0o755,
            },
            Entry::File {
                path: "init",
                mode: 0o755,
                data: LOOP_INIT.as_bytes(),
            },
            Entry::File {
                path: "bin/busybox",
                mode: 0o755,
                data: &busybox,
            },
            Entry::File {
                path: "bin/ros",
                mode: 0o755,
                data: &ros,
            },
        ],
    )
    .unwrap();
    let initrd = dir.join("power-cut.cpio");
    std::fs::write(&initrd, archive).unwrap();
    initrd
}

/// The image's `ros`: `ros` next to the image parts, else the initrd's
/// `/init` (the same binary).
fn ros_binary(dir: &Path) -> Vec<u8> {
    let image = qemu_tests::image_dir();
    if let Ok(ros) = std::fs::read(image.join("ros")) {
        return ros;
    }
    let initrd = std::fs::File::open(image.join("initrd")).expect("the image's initrd");
    let output = Command::new("cpio")
        .args(["-i", "--quiet", "--to-stdout", "init"])
        .current_dir(dir)
        .stdin(initrd)
        .output()
        .expect("cpio (apt-get install cpio)");
    assert!(
        output.status.success() && !output.stdout.is_empty(),
        "no /init in the image's initrd"
    );
    output.stdout
}

fn from_env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Kill delays from `ROS_POWER_CUT_SEED`, or a seed of the clock (printed
/// so the run can be repeated).
fn delays() -> Delays {
    let seed = std::env::var("ROS_POWER_CUT_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("power cut delays: seed {seed} (ROS_POWER_CUT_SEED repeats it)");
    Delays(seed)
}

#[test]
#[ignore = "too slow for CI: a whole boot per cut; run with ./dev power-cut"]
fn a_power_cut_on_the_full_system_leaves_the_old_or_the_new_file() {
    let cuts = from_env("ROS_POWER_CUTS_FULL", 3);
    let mut delays = delays();
    eprintln!("power cuts on the full system: {cuts}");

    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("state.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap();

    // The first boot formats the disk; the file starts with both keys.
    let mut vm = boot(&disk);
    vm.check(&format!("ros config set hostname {KEPT}"));
    vm.check("ros config set rancher.environment.POWER_CUT n0");
    let mut acknowledged = 0;
    let started = Instant::now();
    let mut sets = 0;
    for cut in 1..=cuts {
        // Quoted apart, so the echo of the typed line never matches.
        vm.send_line(&format!(
            "i={acknowledged}; while :; do i=$((i+1)); \
             ros config set rancher.environment.POWER_CUT n$i && echo \"@@SET\"\"-$i@@\"; done"
        ));
        let from = vm.output().len();
        vm.wait_for(
            &format!("@@SET-{}@@\n", acknowledged + 1),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("cut {cut}: the set loop does not run: {e}"));
        std::thread::sleep(Duration::from_millis(delays.next_ms()));
        vm.kill();
        let output = vm.output();
        let before = acknowledged;
        acknowledged = last_acknowledged(&output[from..]).unwrap_or(acknowledged);
        sets += acknowledged - before;
        assert_clean_after_replay(&disk, cut);

        vm = boot(&disk);
        acknowledged = check_after_cut(&mut vm, cut, acknowledged);
        if cut % 10 == 0 || cut == cuts {
            eprintln!(
                "full-system power cuts: {cut}/{cuts} done, {sets} sets returned, {:.0?} so far",
                started.elapsed()
            );
        }
    }

    // A clean power off at the end leaves a file system that needs nothing.
    vm.send_line("ros poweroff");
    assert!(
        vm.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        tail(&vm.output(), 40)
    );
    let (status, text) = run(Command::new("e2fsck").arg("-fn").arg(&disk));
    assert_eq!(status, 0, "after the last boot: {text}");
    eprintln!(
        "full-system power cuts: {cuts} cuts, 0 failures, {sets} sets returned, in {:.0?}",
        started.elapsed()
    );
}

#[test]
fn the_last_acknowledged_set_is_read_from_the_console() {
    let console = "$ i=3; while ...echo \"@@SET\"\"-$i@@\"; done\n@@SET-4@@\n@@SET-5@@\n@@SET-6";
    assert_eq!(last_acknowledged(console), Some(5));
    assert_eq!(last_acknowledged("nothing yet"), None);
    let mut delays = Delays(7);
    let first: Vec<u64> = (0..5).map(|_| delays.next_ms()).collect();
    let mut again = Delays(7);
    assert_eq!(first, (0..5).map(|_| again.next_ms()).collect::<Vec<_>>());
    assert!(first.iter().all(|d| *d < MAX_DELAY_MS));
}
