//! cloud-config applied to the machine: `rancher.sysctl`, `write_files`,
//! `mounts`, `bootcmd`, and `runcmd` with the user-data script. Every
//! entry is tried; each failure is reported naming the entry, and the rest
//! go on — a typo in one file must not cost the machine its console.
//!
//! A `write_files` entry that says `container: <service>` (RancherOS's way
//! to give a service its files) is written below
//! [`CONTAINER_FILES_DIR`]`/<service>`; resolving the service binds each
//! file there read-only over its path in the service's root
//! (`system_services::definition`), so it is there before the service
//! starts, for shipped and registry images alike.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::MsFlags;
use os_config::schema::{Mount, StringOrList, Syslog, WriteFile};

pub use system_services::definition::CONTAINER_FILES_DIR;

use crate::host::Host;
use crate::supervise::reaper::Reaper;

/// Where the syslog service listens, in a directory it shares with the
/// host; the host's `/dev/log` links here (the console, with the host's
/// `/dev` and `/run`, logs through the same link).
pub const SYSLOG_SOCKET: &str = "/run/ros/syslog/log";

/// One entry that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("rancher.sysctl.{key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("write_files {path}: {reason}")]
    WriteFile { path: String, reason: String },
    #[error("write_files[{index}].container: `{service}` is not a defined service")]
    UnknownContainer { index: usize, service: String },
    #[error("rancher.syslog.forward: writing {path}: {source}")]
    SyslogForward {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounts {mount_point}: {reason}")]
    Mount { mount_point: String, reason: String },
    #[error("{stage} `{command}`: {reason}")]
    Command {
        stage: &'static str,
        command: String,
        reason: String,
    },
}

/// Sets each `key: value` by writing `/proc/sys/<key with dots as slashes>`.
pub fn sysctl<'a>(
    proc_sys: &Path,
    settings: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<ApplyError> {
    settings
        .into_iter()
        .filter_map(|(key, value)| {
            // The dots of a key are its path; a key never climbs out.
            let relative: PathBuf = key
                .split('.')
                .filter(|part| !part.is_empty() && *part != "..")
                .collect();
            std::fs::write(proc_sys.join(relative), value)
                .err()
                .map(|source| ApplyError::Sysctl {
                    key: key.clone(),
                    source,
                })
        })
        .collect()
}

/// Where `write_files` entries go.
#[derive(Debug)]
pub struct FileTargets<'a> {
    /// The machine's `/`, for entries without `container:`.
    pub root: &'a Path,
    /// [`CONTAINER_FILES_DIR`]: one directory per service below it.
    pub container_files: &'a Path,
    /// The defined services (enabled or not).
    pub services: &'a BTreeSet<String>,
}

/// Writes every entry, each given with its index in `write_files`: into
/// the machine's root, or, with `container:`, into that service's
/// directory below `container_files`.
pub fn write_files(targets: &FileTargets, files: &[(usize, WriteFile)]) -> Vec<ApplyError> {
    files
        .iter()
        .filter_map(|(index, file)| {
            let root = match file.container.as_deref() {
                None => targets.root.to_path_buf(),
                // A defined service's name is a plain file name: it cannot
                // climb out of the directory.
                Some(service) if targets.services.contains(service) => {
                    targets.container_files.join(service)
                }
                Some(service) => {
                    return Some(ApplyError::UnknownContainer {
                        index: *index,
                        service: service.to_string(),
                    });
                }
            };
            write_file(&root, file)
                .err()
                .map(|reason| ApplyError::WriteFile {
                    path: file.path.as_str().to_string(),
                    reason,
                })
        })
        .collect()
}

/// The rsyslog drop-in `rancher.syslog.forward` becomes, in the syslog
/// service's root.
pub const SYSLOG_FORWARD_FILE: &str = "etc/rsyslog.d/50-forward.conf";

/// Gives the syslog service the drop-in that forwards to
/// `rancher.syslog.forward`'s targets, as its own file below
/// `container_files`, or removes it when there are none.
pub fn syslog_forward(container_files: &Path, syslog: &Syslog) -> Result<(), ApplyError> {
    let path = container_files.join("syslog").join(SYSLOG_FORWARD_FILE);
    let fail = |source| ApplyError::SyslogForward {
        path: path.clone(),
        source,
    };
    match syslog.rsyslog_conf() {
        Some(conf) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(fail)?;
            }
            std::fs::write(&path, conf).map_err(fail)
        }
        None => match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(fail(error)),
            _ => Ok(()),
        },
    }
}

/// Makes `dev_log` a link to `socket` (replacing what was there), so
/// `logger` and syslog(3) on the host reach the syslog service.
pub fn link_dev_log(dev_log: &Path, socket: &Path) -> std::io::Result<()> {
    if std::fs::read_link(dev_log).is_ok_and(|target| target == socket) {
        return Ok(());
    }
    match std::fs::remove_file(dev_log) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    std::os::unix::fs::symlink(socket, dev_log)
}

fn write_file(root: &Path, file: &WriteFile) -> Result<(), String> {
    let content = file.decoded_content().map_err(|e| e.to_string())?;
    let (uid, gid) = owner_ids(file.owner.as_deref().unwrap_or("root"))?;
    let mode = file.permissions.map_or(0o644, |mode| mode.bits());
    let path = root.join(file.path.as_str().trim_start_matches('/'));
    let dir = path.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // Written beside and renamed over: a reader sees the old file or the new.
    let temp = dir.join(format!(
        ".{}.ros-new",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        std::io::Write::write_all(&mut out, &content)?;
        out.sync_all()?;
        // The umask may have narrowed the mode; the file gets what was asked.
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::chown(&temp, Some(uid), Some(gid))?;
        std::fs::rename(&temp, &path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        e.to_string()
    })
}

/// `user[:group]`, numeric or `root`: the host root has no other users.
fn owner_ids(owner: &str) -> Result<(u32, u32), String> {
    let id = |name: &str| match name {
        "root" => Ok(0),
        _ => name
            .parse::<u32>()
            .map_err(|_| format!("owner `{name}` is not root or a numeric id")),
    };
    match owner.split_once(':') {
        Some((user, group)) => Ok((id(user)?, id(group)?)),
        None => {
            let uid = id(owner)?;
            Ok((uid, uid))
        }
    }
}

/// Mounts each entry; the mount point is created.
pub fn mounts(host: &dyn Host, entries: &[Mount]) -> Vec<ApplyError> {
    entries
        .iter()
        .filter_map(|entry| {
            mount(host, entry).err().map(|reason| ApplyError::Mount {
                mount_point: entry.mount_point.clone(),
                reason,
            })
        })
        .collect()
}

fn mount(host: &dyn Host, entry: &Mount) -> Result<(), String> {
    let (flags, data) = mount_options(&entry.options);
    let target = Path::new(&entry.mount_point);
    host.create_dir_all(target).map_err(|e| e.to_string())?;
    let fstype =
        (!entry.fstype.is_empty() && entry.fstype != "auto").then_some(entry.fstype.as_str());
    host.mount(
        &entry.device,
        target,
        fstype,
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| e.to_string())
}

/// fstab options: the ones the kernel takes as flags, the rest as data.
pub fn mount_options(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "defaults" | "rw" | "auto" | "noauto" | "nofail" | "_netdev" => {}
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// The program and arguments of a command: a string runs through
/// `sh -c`, a list is the argv itself.
pub fn argv(command: &StringOrList) -> Vec<String> {
    match command {
        StringOrList::String(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        StringOrList::List(argv) => argv.clone(),
    }
}

/// Runs `commands` one after another (a later one may depend on an
/// earlier), their output appended to `log`.
pub async fn run_commands(
    reaper: &Reaper,
    stage: &'static str,
    commands: &[Vec<String>],
    log: &Path,
) -> Vec<ApplyError> {
    let mut errors = Vec::new();
    for argv in commands {
        let shown = argv.join(" ");
        if let Err(reason) = run_command(reaper, argv, log).await {
            errors.push(ApplyError::Command {
                stage,
                command: shown,
                reason,
            });
        }
    }
    errors
}

/// Runs one command, its output appended to `log`; says why it failed.
pub async fn run_command(reaper: &Reaper, argv: &[String], log: &Path) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("the command is empty")?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let spawned = reaper
        .spawn(
            Command::new(program)
                .args(args)
                .env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
                .env("HOME", "/root")
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        )
        .map_err(|e| e.to_string())?;
    match spawned.exit.await {
        Ok(0) => Ok(()),
        Ok(code) => Err(format!("exited with {code} (output in {})", log.display())),
        Err(_) => Err("its exit was lost".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::host::{FakeHost, HostCall};

    fn files(yaml: &str) -> Vec<(usize, WriteFile)> {
        serde_norway::from_str::<Vec<WriteFile>>(yaml)
            .unwrap()
            .into_iter()
            .enumerate()
            .collect()
    }

    /// The machine's root at `root`, services' files below `root/run/files`,
    /// `syslog` and `ntp` defined.
    fn write_files(root: &Path, files: &[(usize, WriteFile)]) -> Vec<ApplyError> {
        let container_files = root.join("run/files");
        super::write_files(
            &FileTargets {
                root,
                container_files: &container_files,
                services: &["syslog", "ntp"].map(String::from).into(),
            },
            files,
        )
    }

    #[test]
    fn files_are_written_with_their_mode_and_content() {
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /etc/motd\n  content: hello\n  permissions: '0600'\n- path: /opt/x/y.sh\n  encoding: b64\n  content: ZWNobyBoaQo=\n  permissions: '0755'\n  owner: root:root\n",
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let motd = root.path().join("etc/motd");
        assert_eq!(std::fs::read_to_string(&motd).unwrap(), "hello");
        assert_eq!(
            std::fs::metadata(&motd).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let script = root.path().join("opt/x/y.sh");
        assert_eq!(std::fs::read_to_string(&script).unwrap(), "echo hi\n");
        assert_eq!(
            std::fs::metadata(&script).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    #[test]
    fn a_bad_entry_is_named_and_the_others_are_written() {
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /etc/a\n  content: x\n  owner: rancher\n- path: /etc/b\n  content: '!!'\n  encoding: b64\n- path: /etc/c\n  content: ok\n",
            ),
        );
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert_eq!(
            shown[0],
            "write_files /etc/a: owner `rancher` is not root or a numeric id"
        );
        assert!(
            shown[1].starts_with("write_files /etc/b: content is not valid base64"),
            "{}",
            shown[1]
        );
        assert!(!root.path().join("etc/a").exists());
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/c")).unwrap(),
            "ok"
        );
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(root.path().join("etc")).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_container_entry_lands_in_that_services_directory_with_its_mode_and_owner() {
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /etc/openntpd/ntpd.conf\n  container: ntp\n  content: 'server 10.0.2.2'\n  permissions: '0640'\n  owner: '0:101'\n",
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let written = root.path().join("run/files/ntp/etc/openntpd/ntpd.conf");
        assert_eq!(
            std::fs::read_to_string(&written).unwrap(),
            "server 10.0.2.2"
        );
        let meta = std::fs::metadata(&written).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 101);
        // Not on the machine's own root.
        assert!(!root.path().join("etc/openntpd").exists());
    }

    #[test]
    fn a_container_entry_naming_no_service_is_an_error_naming_its_key() {
        let root = tempfile::tempdir().unwrap();
        let errors = write_files(
            root.path(),
            &files(
                "- path: /etc/a\n  content: a\n- path: /etc/x.conf\n  container: nosuch\n  content: x\n- path: /etc/rsyslog.d/a.conf\n  container: syslog\n  content: y\n",
            ),
        );
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["write_files[1].container: `nosuch` is not a defined service"]
        );
        assert!(!root.path().join("run/files/nosuch").exists());
        assert!(!root.path().join("etc/x.conf").exists());
        assert!(
            root.path()
                .join("run/files/syslog/etc/rsyslog.d/a.conf")
                .is_file()
        );
        assert!(root.path().join("etc/a").is_file());
    }

    #[test]
    fn syslog_forwarding_is_a_drop_in_in_the_syslog_services_files() {
        let dir = tempfile::tempdir().unwrap();
        let syslog: Syslog =
            serde_norway::from_str("forward: [udp://10.0.2.2:5514, tcp://10.0.2.2:5601]").unwrap();
        syslog_forward(dir.path(), &syslog).unwrap();
        let written = dir.path().join("syslog").join(SYSLOG_FORWARD_FILE);
        let conf = std::fs::read_to_string(&written).unwrap();
        assert!(
            conf.contains("target=\"10.0.2.2\" port=\"5514\" protocol=\"udp\""),
            "{conf}"
        );
        assert!(
            conf.contains("target=\"10.0.2.2\" port=\"5601\" protocol=\"tcp\""),
            "{conf}"
        );
        // Resolving the service binds it where rsyslog includes drop-ins.
        let binds =
            system_services::definition::container_files(&dir.path().join("syslog")).unwrap();
        assert_eq!(binds.len(), 1);
        assert_eq!(
            binds[0].destination,
            Path::new("/etc/rsyslog.d/50-forward.conf")
        );
        // No targets: no drop-in.
        syslog_forward(dir.path(), &Syslog::default()).unwrap();
        assert!(!written.exists());
    }

    #[test]
    fn dev_log_becomes_a_link_to_the_syslog_socket_replacing_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let dev_log = dir.path().join("log");
        let socket = Path::new(SYSLOG_SOCKET);
        std::fs::write(&dev_log, "old").unwrap();
        link_dev_log(&dev_log, socket).unwrap();
        assert_eq!(std::fs::read_link(&dev_log).unwrap(), socket);
        // Twice is the same.
        link_dev_log(&dev_log, socket).unwrap();
        assert_eq!(std::fs::read_link(&dev_log).unwrap(), socket);
    }

    #[test]
    fn owners_are_root_or_numbers() {
        assert_eq!(owner_ids("root"), Ok((0, 0)));
        assert_eq!(owner_ids("1000:100"), Ok((1000, 100)));
        assert_eq!(owner_ids("root:5"), Ok((0, 5)));
        assert_eq!(
            owner_ids("nobody"),
            Err("owner `nobody` is not root or a numeric id".to_string())
        );
    }

    #[test]
    fn sysctl_keys_are_paths_under_proc_sys() {
        let proc_sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(proc_sys.path().join("net/ipv4")).unwrap();
        let settings: BTreeMap<String, String> = [
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("no.such.key".to_string(), "1".to_string()),
        ]
        .into();
        let errors = sysctl(proc_sys.path(), &settings);
        assert_eq!(
            std::fs::read_to_string(proc_sys.path().join("net/ipv4/ip_forward")).unwrap(),
            "1"
        );
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("rancher.sysctl.no.such.key: "),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        assert_eq!(mount_options("defaults"), (MsFlags::empty(), String::new()));
        assert_eq!(
            mount_options("ro,noatime,size=10m,mode=755"),
            (
                MsFlags::MS_RDONLY | MsFlags::MS_NOATIME,
                "size=10m,mode=755".into()
            )
        );
    }

    #[test]
    fn mounts_create_the_target_and_report_failures() {
        let host = FakeHost::new();
        let entries: Vec<Mount> = serde_norway::from_str(
            "- [/dev/vdb, /mnt/data, ext4, 'noatime']\n- [tmpfs, /mnt/t, auto, '']",
        )
        .unwrap();
        assert!(mounts(&host, &entries).is_empty());
        assert!(host.calls().contains(&HostCall::Mount {
            source: "/dev/vdb".into(),
            target: "/mnt/data".into(),
            fstype: Some("ext4".into()),
            flags: MsFlags::MS_NOATIME,
            data: None,
        }));
        assert!(host.calls().contains(&HostCall::Mount {
            source: "tmpfs".into(),
            target: "/mnt/t".into(),
            fstype: None,
            flags: MsFlags::empty(),
            data: None,
        }));
        host.fail_next(1);
        let errors = mounts(&host, &entries[..1]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with("mounts /mnt/data: "),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn strings_run_through_the_shell_and_lists_as_argv() {
        assert_eq!(
            argv(&StringOrList::String("echo $HOME".into())),
            ["/bin/sh", "-c", "echo $HOME"]
        );
        assert_eq!(
            argv(&StringOrList::List(vec!["touch".into(), "/x".into()])),
            ["touch", "/x"]
        );
    }
}
