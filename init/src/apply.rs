//! cloud-config applied to the machine: `rancher.sysctl`, `write_files`,
//! `mounts`, `bootcmd`, and `runcmd` with the user-data script. Every
//! entry is tried; each failure is reported naming the entry, and the rest
//! go on — a typo in one file must not cost the machine its console.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::MsFlags;
use os_config::schema::{Mount, StringOrList, WriteFile};

use crate::host::Host;
use crate::supervise::reaper::Reaper;

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

/// Writes every file under `root` (the machine's `/`).
pub fn write_files(root: &Path, files: &[WriteFile]) -> Vec<ApplyError> {
    files
        .iter()
        .filter_map(|file| {
            write_file(root, file)
                .err()
                .map(|reason| ApplyError::WriteFile {
                    path: file.path.as_str().to_string(),
                    reason,
                })
        })
        .collect()
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

    fn files(yaml: &str) -> Vec<WriteFile> {
        serde_norway::from_str(yaml).unwrap()
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
