//! The boot counter on a real ext4 file system, mounted and unmounted
//! between "boots" as the state partition is: the count and the last good
//! configuration survive each unmount, and the file system stays clean.
//! Needs root (loop mounts); runs as root here and in CI.

use std::path::Path;
use std::process::Command;

use os_config::ConfigPaths;
use ros::boot::counter::{self, BootCounter, MAX_FAILED_BOOTS};

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Mounts `image` on `at` for one "boot", runs `boot` on the machine's
/// paths there, and unmounts.
fn boot_with<T>(image: &Path, at: &Path, boot: impl FnOnce(&ConfigPaths) -> T) -> T {
    run(Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(image)
        .arg(at));
    let paths = ConfigPaths::under(at);
    let result = boot(&paths);
    run(Command::new("umount").arg(at));
    result
}

#[test]
fn three_failed_boots_on_an_ext4_state_partition_bring_the_last_good_configuration_back() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test mounts a loop device: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("state.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "RANCHER_STATE"])
        .arg(&image));
    let at = dir.path().join("state");
    std::fs::create_dir(&at).unwrap();

    // A good boot: the configuration is kept.
    boot_with(&image, &at, |paths| {
        std::fs::create_dir_all(paths.conf_dir()).unwrap();
        std::fs::write(paths.cloud_config_file(), "hostname: good\n").unwrap();
        let counter = BootCounter::new(paths);
        assert!(!counter::start_boot(&counter, paths, |l| panic!("{l}")));
        counter::reached_ready(&counter, paths, |l| panic!("{l}"));
    });
    // A bad configuration, then boots that never get ready.
    boot_with(&image, &at, |paths| {
        std::fs::write(paths.cloud_config_file(), "hostname: bad\n").unwrap();
    });
    for boot in 1..=MAX_FAILED_BOOTS {
        let fallback = boot_with(&image, &at, |paths| {
            counter::start_boot(&BootCounter::new(paths), paths, |_| {})
        });
        assert!(!fallback, "boot {boot}");
    }
    let (fallback, said, hostname) = boot_with(&image, &at, |paths| {
        let said = std::cell::RefCell::new(String::new());
        let fallback = counter::start_boot(&BootCounter::new(paths), paths, |l| {
            said.borrow_mut().push_str(l);
        });
        let hostname = std::fs::read_to_string(paths.cloud_config_file()).unwrap();
        (fallback, said.into_inner(), hostname)
    });
    assert!(fallback);
    assert!(
        said.contains("3 boots in a row did not reach ready"),
        "{said}"
    );
    assert_eq!(hostname, "hostname: good\n");
    // That boot reaches ready: the count starts again, on disk.
    boot_with(&image, &at, |paths| {
        let counter = BootCounter::new(paths);
        assert_eq!(counter.failed_boots(), MAX_FAILED_BOOTS + 1);
        counter::reached_ready(&counter, paths, |l| panic!("{l}"));
    });
    let count = boot_with(&image, &at, |paths| BootCounter::new(paths).failed_boots());
    assert_eq!(count, 0);
    run(Command::new("e2fsck").arg("-fn").arg(&image));
}
