//! Hostile user-data on a config drive, from the outside: an alias bomb,
//! 100 MiB of user-data and a document of 10^5 unknown keys each leave
//! the machine booting to `ros: ready` with a clear error on the console,
//! and PID 1's peak memory (VmHWM in /proc/1/status, read in the console
//! as a user would) stays bounded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use qemu_tests::{Image, Vm, VmBuilder, config_drive};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);

/// PID 1's peak resident memory may grow by this much over a plain boot's
/// (about 20 MiB): the document bounds allow tens of MiB, an expanded
/// bomb would be gigabytes (the VM has 1 GiB).
const MAX_PID1_PEAK_KIB: u64 = 160 * 1024;

fn boot_with(drive: &Path) -> Vm {
    let mut vm = VmBuilder::kernel(Image::built(), "")
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", drive.display()))
        .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm
}

/// PID 1's peak resident set, in KiB, as the console reads it.
fn pid1_peak_kib(vm: &mut Vm) -> u64 {
    let line = vm.check("grep VmHWM /proc/1/status");
    let kib = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {line:?}"));
    eprintln!("PID 1 peak RSS: {kib} KiB");
    kib
}

/// A config drive like [`config_drive`], big enough for `size` bytes of
/// user-data: a `#cloud-config` line and then `#` up to `size`.
fn large_config_drive(dir: &Path, size: usize) -> PathBuf {
    let mut text = b"#cloud-config\nhostname: too-large\n".to_vec();
    text.resize(size, b'#');
    qemu_tests::config_drive_named(dir, "config-2-large.img", &text, size as u64 + (16 << 20))
}

#[test]
fn an_alias_bomb_on_a_config_drive_is_refused_and_the_boot_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // One 100 KB string and 30,000 aliases of it: 3 GB once expanded,
    // about 200 KB on the drive.
    let mut user_data = format!(
        "#cloud-config\nhostname: &a {}\nbomb: [",
        "x".repeat(100_000)
    );
    user_data.push_str(&"*a,".repeat(30_000));
    user_data.push_str("]\n");
    let drive = config_drive(dir.path(), &user_data);
    let mut vm = boot_with(&drive);
    let output = vm.output();
    assert!(
        output.contains("the document expands to more than") && output.contains("an alias bomb"),
        "no alias bomb error on the console:\n{}",
        qemu_tests::tail(&output, 40)
    );
    // Nothing of it applied.
    assert_ne!(vm.check("hostname").trim().len(), 100_000);
    assert!(pid1_peak_kib(&mut vm) < MAX_PID1_PEAK_KIB);
}

#[test]
fn a_hundred_mib_of_user_data_is_refused_by_its_size_and_the_boot_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let drive = large_config_drive(dir.path(), 100 << 20);
    let mut vm = boot_with(&drive);
    let output = vm.output();
    assert!(
        output.contains("larger than 1048576 bytes (the user-data cap); this source is skipped"),
        "no size error on the console:\n{}",
        qemu_tests::tail(&output, 40)
    );
    assert_ne!(vm.check("hostname").trim(), "too-large");
    assert!(pid1_peak_kib(&mut vm) < MAX_PID1_PEAK_KIB);
}

#[test]
fn a_hundred_thousand_unknown_keys_are_left_out_in_brief_and_the_rest_applies() {
    let dir = tempfile::tempdir().unwrap();
    let mut user_data = String::from("#cloud-config\nhostname: keys-left-out\n");
    user_data.extend((0..100_000).map(|i| format!("u{i}: 0\n")));
    let drive = config_drive(dir.path(), &user_data);
    let mut vm = boot_with(&drive);
    let output = vm.output();
    assert!(
        output.contains("unknown key `u0`")
            && output.contains("and 99950 more unknown keys from here on"),
        "no brief report on the console:\n{}",
        qemu_tests::tail(&output, 40)
    );
    // 50 listed, one summary: not 10^5 lines.
    let listed = output.matches("unknown key `u").count();
    assert!(listed <= 60, "{listed} unknown keys listed");
    assert_eq!(vm.check("hostname").trim(), "keys-left-out");
    assert!(pid1_peak_kib(&mut vm) < MAX_PID1_PEAK_KIB);
}
