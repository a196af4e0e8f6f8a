use super::*;

fn machine() -> (tempfile::TempDir, ConfigPaths) {
    let dir = tempfile::tempdir().unwrap();
    let paths = ConfigPaths::under(dir.path());
    fs::create_dir_all(paths.cloud_config_dir()).unwrap();
    (dir, paths)
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

#[test]
fn each_boot_counts_and_ready_resets_the_count() {
    let (_dir, paths) = machine();
    let counter = BootCounter::new(&paths);
    assert_eq!(counter.failed_boots(), 0);
    assert_eq!(counter.begin().unwrap(), 0);
    assert_eq!(counter.begin().unwrap(), 1);
    assert_eq!(counter.failed_boots(), 2);
    reached_ready(&counter, &paths, |line| panic!("{line}"));
    assert_eq!(counter.failed_boots(), 0);
}

#[test]
fn a_counter_that_is_not_a_number_counts_as_zero() {
    let (_dir, paths) = machine();
    write(&paths.conf_dir().join("boot-attempts"), "garbage");
    assert_eq!(BootCounter::new(&paths).begin().unwrap(), 0);
}

#[test]
fn after_three_failed_boots_the_last_good_configuration_comes_back_loudly() {
    let (_dir, paths) = machine();
    let counter = BootCounter::new(&paths);
    write(&paths.cloud_config_file(), "hostname: good\n");
    write(&paths.user_data_file(), "runcmd: [good]\n");
    assert!(!start_boot(&counter, &paths, |l| panic!("{l}")));
    reached_ready(&counter, &paths, |l| panic!("{l}"));
    // A new configuration that never gets ready.
    write(&paths.cloud_config_file(), "hostname: bad\n");
    fs::remove_file(paths.user_data_file()).unwrap();
    write(
        &paths.cloud_config_dir().join("90-bad.yml"),
        "bootcmd: [reboot]\n",
    );
    for _ in 0..MAX_FAILED_BOOTS {
        assert!(!start_boot(&counter, &paths, |l| panic!("{l}")));
    }
    let said = std::cell::RefCell::new(Vec::new());
    assert!(start_boot(&counter, &paths, |l| said
        .borrow_mut()
        .push(l.to_owned())));
    let said = said.into_inner();
    assert_eq!(said.len(), 1);
    assert!(
        said[0].starts_with("ros: WARNING: 3 boots in a row did not reach ready: booting with the last configuration that reached ready"),
        "{said:?}"
    );
    assert_eq!(
        fs::read_to_string(paths.cloud_config_file()).unwrap(),
        "hostname: good\n"
    );
    assert_eq!(
        fs::read_to_string(paths.user_data_file()).unwrap(),
        "runcmd: [good]\n"
    );
    assert!(!paths.cloud_config_dir().join("90-bad.yml").exists());
    let failed = paths.conf_dir().join(FAILED_DIR);
    assert_eq!(
        fs::read_to_string(failed.join("cloud-config.yml")).unwrap(),
        "hostname: bad\n"
    );
    assert!(failed.join("cloud-config.d/90-bad.yml").is_file());
    // The boots after it keep what was put back and do not move it again.
    assert!(!start_boot(&counter, &paths, |_| {}));
    assert_eq!(
        fs::read_to_string(failed.join("cloud-config.yml")).unwrap(),
        "hostname: bad\n"
    );
}

#[test]
fn without_a_good_boot_ever_the_fallback_is_the_built_in_configuration() {
    let (_dir, paths) = machine();
    let counter = BootCounter::new(&paths);
    write(&paths.cloud_config_file(), "hostname: bad\n");
    for _ in 0..MAX_FAILED_BOOTS {
        start_boot(&counter, &paths, |_| {});
    }
    let said = std::cell::RefCell::new(String::new());
    assert!(start_boot(&counter, &paths, |l| *said.borrow_mut() = l.to_owned()));
    assert!(said.into_inner().contains("none ever reached ready"));
    assert!(!paths.cloud_config_file().exists());
}

#[test]
fn the_kept_copy_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, paths) = machine();
    write(&paths.cloud_config_file(), "rancher: {password: secret}\n");
    save_last_good(&paths.conf_dir()).unwrap();
    let kept = paths.conf_dir().join(LAST_GOOD_DIR);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&kept), 0o700);
    assert_eq!(mode(&kept.join("cloud-config.yml")), 0o600);
}
