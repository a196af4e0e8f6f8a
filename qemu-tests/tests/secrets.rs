//! Secrets stay secret, checked on the console as a user would: every file
//! that holds configuration, user-data or a host key is root's alone (files
//! 0600, the user-data script 0700, directories 0700), files an older
//! release left readable by all are narrowed at boot, and with
//! `rancher.debug` the password and tokens of the user-data reach neither
//! the kernel log nor `ros config get`/`export` (only `export --private`
//! shows them, to root).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use qemu_tests::{Image, VmBuilder, config_drive, tail};

const SHELL_TIMEOUT: Duration = Duration::from_secs(180);
const PASSWORD: &str = "pw-8c1d5e0a";
const TOKEN: &str = "tok-3f9b27aa";
const OLD_SECRET: &str = "old-5a7e19c2";

/// A state disk as an older release left it: `cloud-config.yml` 0644 in a
/// 0755 directory, a drop-in 0664 in a 0775 one, the SSH key directory
/// 0755.
fn old_state_disk(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("state-tree");
    let conf = tree.join("var/lib/rancher/conf");
    let drop_ins = conf.join("cloud-config.d");
    let ssh = tree.join("var/lib/rancher/ssh");
    std::fs::create_dir_all(&drop_ins).unwrap();
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(
        conf.join("cloud-config.yml"),
        format!("rancher:\n  environment:\n    OLD_PASSWORD: {OLD_SECRET}\n"),
    )
    .unwrap();
    std::fs::write(drop_ins.join("50-old.yml"), "hostname: secrets\n").unwrap();
    let chmod = |path: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(&conf, 0o755);
    chmod(&conf.join("cloud-config.yml"), 0o644);
    chmod(&drop_ins, 0o775);
    chmod(&drop_ins.join("50-old.yml"), 0o664);
    chmod(&ssh, 0o755);

    let disk = dir.join("state.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap();
    let output = Command::new("mke2fs")
        .args(["-t", "ext4", "-q", "-F", "-L", "RANCHER_STATE", "-d"])
        .arg(&tree)
        .arg(&disk)
        .output()
        .expect("mke2fs (apt-get install e2fsprogs)");
    assert!(output.status.success(), "mke2fs: {output:?}");
    disk
}

#[test]
fn configuration_and_user_data_files_are_private_and_secrets_stay_out_of_logs_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let disk = old_state_disk(dir.path());
    let drive = config_drive(
        dir.path(),
        &format!(
            "#cloud-config\nrancher:\n  password: {PASSWORD}\n  environment:\n    API_TOKEN: {TOKEN}\n"
        ),
    );
    let mut vm = VmBuilder::kernel(Image::built(), "rancher.debug")
        .drive(&disk)
        .drive(&drive)
        .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);

    // The user-data was found and saved; the old file is still a layer.
    assert_eq!(vm.check("ros config get hostname").trim(), "secrets");
    vm.check("[ -s /var/lib/rancher/conf/cloud-config.d/user-data.yml ]");

    // The console makes the SSH host keys (and narrows their directory)
    // beside the login, then starts dropbear: wait for it.
    let deadline = std::time::Instant::now() + SHELL_TIMEOUT;
    while vm.run("pidof dropbear").status != 0 {
        assert!(std::time::Instant::now() < deadline, "dropbear never ran");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Modes of every saved configuration and user-data file.
    let modes = vm.check(
        "cd /var/lib/rancher && stat -c '%a %n' conf conf/cloud-config.yml conf/cloud-config.d \
         conf/cloud-config.d/50-old.yml conf/cloud-config.d/user-data.yml ssh",
    );
    assert_eq!(
        modes.trim(),
        "700 conf\n600 conf/cloud-config.yml\n700 conf/cloud-config.d\n\
         600 conf/cloud-config.d/50-old.yml\n600 conf/cloud-config.d/user-data.yml\n700 ssh",
        "{modes}"
    );
    // Whatever else is there (metadata, the SSH host keys, the script):
    // nothing with a group or other permission bit.
    let ssh_keys = vm.check("ls /var/lib/rancher/ssh");
    assert!(ssh_keys.contains("dropbear_ed25519_host_key"), "{ssh_keys}");
    let all = vm.check(
        "find /var/lib/rancher/conf /var/lib/rancher/ssh \\( -type f -o -type d \\) \
         -exec stat -c '%a %n' {} +",
    );
    let open: Vec<&str> = all
        .lines()
        .filter(|line| !line.starts_with("600 ") && !line.starts_with("700 "))
        .collect();
    assert!(
        open.is_empty(),
        "readable by more than root: {open:?}\n{all}"
    );
    assert!(all.lines().count() >= 8, "{all}");
    // What narrowing at boot said.
    let narrowed = vm.check("dmesg | grep -c 'group and other permissions removed' || true");
    assert!(
        narrowed.trim().parse::<u32>().unwrap_or(0) >= 4,
        "narrowed at boot: {narrowed}"
    );

    // rancher.debug logged the configuration, without its secrets (the
    // dependencies' debug lines stay out, so the line is still there).
    let logged = vm.check("dmesg | grep -c '<redacted>' || true");
    assert_ne!(
        logged.trim(),
        "0",
        "rancher.debug logged no redacted configuration"
    );
    for secret in [PASSWORD, TOKEN, OLD_SECRET] {
        let found = vm.run(&format!("dmesg | grep -c {secret}"));
        assert_eq!(found.output.trim(), "0", "{secret} is in the kernel log");
        for command in [
            "ros config get",
            "ros config get rancher",
            "ros config export",
            "ros config export --full",
        ] {
            let output = vm.check(command);
            assert!(
                !output.contains(secret),
                "`{command}` shows {secret}:\n{output}"
            );
            assert!(output.contains("<redacted>"), "`{command}`:\n{output}");
        }
    }
    // The owner asks for them: by the key itself, or --private.
    assert_eq!(vm.check("ros config get rancher.password").trim(), PASSWORD);
    let private = vm.check("ros config export --full --private");
    assert!(
        private.contains(PASSWORD) && private.contains(TOKEN),
        "{private}"
    );

    // Registry credentials: never on the command line.
    let pull = vm.run("ros service pull --user deploy busybox 2>&1");
    assert_ne!(pull.status, 0, "{}", pull.output);
    assert!(pull.output.contains("--password-stdin"), "{}", pull.output);

    vm.send_line("ros poweroff");
    assert!(
        vm.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        tail(&vm.output(), 40)
    );
}
