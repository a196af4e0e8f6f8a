//! The files that hold the configuration's secrets (the cluster join
//! token, the password, user-data and metadata) on a real file system:
//! created 0600 (the user-data script 0700) in 0700 directories, and wider
//! modes left by earlier writers narrowed by the next write.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use os_config::datasource::block::{Mounter, with_mounted};
use os_config::datasource::label::FsType;
use os_config::store::{Access, write_atomically, write_file, write_private};
use os_config::userdata::{Metadata, Payload, UserData};
use os_config::{ConfigPaths, KeyPath, Store};
use serde_norway::Value;

#[track_caller]
fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn widen(path: &Path, wide: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(wide)).unwrap();
    assert_eq!(mode(path), wide);
}

fn token_user_data() -> UserData {
    UserData {
        payload: Payload::CloudConfig(
            "#cloud-config\nrancher: {cluster: {server: 'https://k8s:6443', token: K10secret}}\n"
                .into(),
        ),
        metadata: Metadata {
            hostname: Some("node-7".into()),
            public_keys: vec!["ssh-ed25519 AAAA meta".into()],
            ..Metadata::default()
        },
    }
}

#[test]
fn a_stored_set_creates_the_file_0600_in_a_0700_directory() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ConfigPaths::under(dir.path());
    let store = Store::new(paths.clone());
    store
        .set(
            &KeyPath::parse("rancher.cluster.token").unwrap(),
            Value::from("K10secret"),
        )
        .unwrap();
    assert_eq!(mode(&paths.cloud_config_file()), 0o600);
    assert_eq!(mode(&paths.conf_dir()), 0o700);
    assert!(
        fs::read_to_string(paths.cloud_config_file())
            .unwrap()
            .contains("K10secret")
    );
}

#[test]
fn a_world_readable_cloud_config_and_its_directories_are_narrowed_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ConfigPaths::under(dir.path());
    fs::create_dir_all(paths.cloud_config_dir()).unwrap();
    fs::write(paths.cloud_config_file(), "hostname: node1\n").unwrap();
    widen(&paths.conf_dir(), 0o755);
    widen(&paths.cloud_config_dir(), 0o755);
    widen(&paths.cloud_config_file(), 0o644);

    Store::new(paths.clone())
        .set(
            &KeyPath::parse("rancher.cluster.token").unwrap(),
            Value::from("K10secret"),
        )
        .unwrap();
    assert_eq!(mode(&paths.cloud_config_file()), 0o600);
    assert_eq!(mode(&paths.conf_dir()), 0o700);
    assert_eq!(mode(&paths.cloud_config_dir()), 0o700);
    assert_eq!(
        fs::read_to_string(paths.cloud_config_file()).unwrap(),
        "hostname: node1\nrancher:\n  cluster:\n    token: K10secret\n"
    );
}

#[test]
fn saved_user_data_and_metadata_are_0600_in_0700_directories() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ConfigPaths::under(dir.path());
    token_user_data().save(&paths).unwrap();
    assert_eq!(mode(&paths.user_data_file()), 0o600);
    assert_eq!(mode(&paths.metadata_file()), 0o600);
    assert_eq!(mode(&paths.cloud_config_dir()), 0o700);
    assert_eq!(mode(&paths.conf_dir()), 0o700);
    assert!(
        fs::read_to_string(paths.user_data_file())
            .unwrap()
            .contains("token: K10secret")
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&fs::read(paths.metadata_file()).unwrap()).unwrap();
    assert_eq!(metadata["hostname"], "node-7");
}

#[test]
fn saving_user_data_again_narrows_files_and_directories_left_wider() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ConfigPaths::under(dir.path());
    token_user_data().save(&paths).unwrap();
    widen(&paths.conf_dir(), 0o755);
    widen(&paths.cloud_config_dir(), 0o777);
    widen(&paths.user_data_file(), 0o644);
    widen(&paths.metadata_file(), 0o666);

    token_user_data().save(&paths).unwrap();
    assert_eq!(mode(&paths.user_data_file()), 0o600);
    assert_eq!(mode(&paths.metadata_file()), 0o600);
    assert_eq!(mode(&paths.cloud_config_dir()), 0o700);
    assert_eq!(mode(&paths.conf_dir()), 0o700);
}

#[test]
fn a_user_data_script_is_saved_0700_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ConfigPaths::under(dir.path());
    let marker = dir.path().join("ran");
    let script = format!("#!/bin/sh\necho K10secret > '{}'\n", marker.display());
    // An earlier, world-readable script is replaced, not reused.
    fs::create_dir_all(paths.conf_dir()).unwrap();
    fs::write(paths.user_script_file(), "#!/bin/sh\nexit 1\n").unwrap();
    widen(&paths.user_script_file(), 0o755);
    UserData {
        payload: Payload::Script(script.into_bytes()),
        metadata: Metadata::default(),
    }
    .save(&paths)
    .unwrap();
    assert_eq!(mode(&paths.user_script_file()), 0o700);
    assert_eq!(mode(&paths.metadata_file()), 0o600);
    assert_eq!(mode(&paths.conf_dir()), 0o700);
    let status = std::process::Command::new(paths.user_script_file())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(fs::read_to_string(&marker).unwrap(), "K10secret\n");
}

#[test]
fn while_writing_no_file_in_the_directory_is_ever_wider_than_0600() {
    // Created 0600, not chmod-ed after: the directory is watched while the
    // file is written many times, and every file seen in it is 0600.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("conf/secret.yml");
    write_private(&target, b"token: one\n").unwrap();
    let conf = target.parent().unwrap().to_owned();
    let done = std::sync::atomic::AtomicBool::new(false);
    let wide_seen = Mutex::new(Vec::<(PathBuf, u32)>::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for entry in fs::read_dir(&conf).unwrap().filter_map(Result::ok) {
                    if let Ok(metadata) = entry.metadata() {
                        let mode = metadata.permissions().mode() & 0o777;
                        if mode != 0o600 {
                            wide_seen.lock().unwrap().push((entry.path(), mode));
                        }
                    }
                }
            }
        });
        for round in 0..500 {
            write_private(&target, format!("token: {round}\n").as_bytes()).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(*wide_seen.lock().unwrap(), vec![]);
    assert_eq!(fs::read_to_string(&target).unwrap(), "token: 499\n");
    assert_eq!(fs::read_dir(&conf).unwrap().count(), 1, "no temp file left");
}

#[test]
fn a_wide_temp_file_left_under_our_temp_name_does_not_lend_its_mode() {
    // A writer with our pid that died (pids are reused) may have left
    // temp files; ours must be created fresh, not opened with their mode.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    fs::create_dir_all(&conf).unwrap();
    let planted = 2000;
    for n in 0..planted {
        let temp = conf.join(format!(".secret.yml.tmp.{}.{n}", std::process::id()));
        fs::write(&temp, "old").unwrap();
        widen(&temp, 0o666);
    }
    let target = conf.join("secret.yml");
    write_private(&target, b"token: K10secret\n").unwrap();
    assert_eq!(mode(&target), 0o600);
    assert_eq!(fs::read_to_string(&target).unwrap(), "token: K10secret\n");
    // Exactly one planted name was taken (and the scenario really ran).
    assert_eq!(fs::read_dir(&conf).unwrap().count(), planted);
}

#[test]
fn shared_files_keep_their_readable_mode_and_directory() {
    // The network status file is for `ros` without root: not narrowed.
    let dir = tempfile::tempdir().unwrap();
    let status_dir = dir.path().join("run/ros/network");
    fs::create_dir_all(&status_dir).unwrap();
    widen(&status_dir, 0o755);
    let status = status_dir.join("status.json");
    write_atomically(&status, b"{}").unwrap();
    assert_eq!(mode(&status_dir), 0o755);
    assert_eq!(mode(&status) & 0o044, 0o044, "readable by group and others");
    write_file(&status, b"{}", Access::Private).unwrap();
    assert_eq!(mode(&status), 0o600);
    assert_eq!(mode(&status_dir), 0o700);
}

/// Records the mode of the mount point's directory at mount time.
#[derive(Debug, Default)]
struct ModeAtMount(Mutex<Vec<u32>>);

impl Mounter for ModeAtMount {
    fn mount_read_only(&self, _device: &Path, target: &Path, _fs_type: FsType) -> io::Result<()> {
        let parent = target.parent().unwrap();
        self.0.lock().unwrap().push(mode(parent));
        Ok(())
    }

    fn unmount(&self, _target: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_datasource_disk_is_mounted_below_a_directory_only_root_enters() {
    let dir = tempfile::tempdir().unwrap();
    let mount_dir = dir.path().join("run/ros/datasource");
    fs::create_dir_all(&mount_dir).unwrap();
    widen(&mount_dir, 0o755);
    let mounter = ModeAtMount::default();
    let read = with_mounted(
        &mounter,
        Path::new("/dev/null"),
        FsType::Iso9660,
        &mount_dir.join("config-2"),
        |target| target.is_dir(),
    )
    .unwrap();
    assert!(read);
    assert_eq!(*mounter.0.lock().unwrap(), vec![0o700]);
    assert_eq!(mode(&mount_dir), 0o700);
}
