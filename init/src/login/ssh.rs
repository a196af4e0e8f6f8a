//! SSH into the console: dropbear, its host keys and `rancher`'s keys.
//!
//! - Keys: `ssh_authorized_keys` of every layer (a key in user-data does
//!   not hide one in `cloud-config.yml`) and the datasource's metadata,
//!   added to `~rancher/.ssh/authorized_keys`; lines already there (a key
//!   the user added) stay, as RancherOS did.
//! - Host keys: from `rancher.ssh.keys` (OpenSSH files by their OpenSSH
//!   names, converted with dropbearconvert at every start) when given,
//!   else generated once with dropbearkey into [`KEY_DIR`], on the state
//!   partition when there is one, so the fingerprint survives a reboot.
//! - The daemon: `rancher.ssh.port` (22) on `rancher.ssh.listen_address`
//!   (every address); root may not log in; passwords only when
//!   `rancher.password` is set.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use os_config::Layers;
use os_config::schema::Ssh;
use serde_norway::Value;

/// Where generated host keys are kept (0700, keys 0600).
pub const KEY_DIR: &str = "/var/lib/rancher/ssh";
/// The daemon.
pub const DROPBEAR: &str = "/usr/sbin/dropbear";
/// Key kinds generated when none are given: quick to make even under
/// emulation, and what current clients prefer.
pub const GENERATED_KINDS: &[&str] = &["ed25519", "ecdsa"];
/// Key kinds `rancher.ssh.keys` may give.
const GIVEN_KINDS: &[&str] = &["rsa", "ecdsa", "ed25519"];

/// `ssh_authorized_keys` of every layer, lowest first, each key once.
pub fn union_of_keys(layers: &Layers) -> Vec<String> {
    let mut keys = Vec::new();
    for layer in &layers.layers {
        if let Some(Value::Sequence(list)) = layer.value.get("ssh_authorized_keys") {
            add_keys(
                &mut keys,
                list.iter().filter_map(Value::as_str).map(str::to_owned),
            );
        }
    }
    keys
}

/// The key itself (`TYPE BASE64`), without options or comment.
fn identity(line: &str) -> Option<(&str, &str)> {
    let mut fields = line.split_whitespace();
    Some((fields.next()?, fields.next()?))
}

/// Adds the keys of `more` that `keys` lacks (one line each, no blanks).
pub fn add_keys(keys: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for key in more {
        for line in key.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !keys.iter().any(|k| identity(k) == identity(line)) {
                keys.push(line.to_owned());
            }
        }
    }
}

/// The `public_keys` of the saved metadata (JSON), if any.
pub fn metadata_keys(json: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Value>(json)
        .ok()
        .and_then(|value| {
            value
                .get("public_keys")
                .and_then(|keys| keys.as_array())
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
        })
        .unwrap_or_default()
}

/// `authorized_keys` after adding `keys` to what is there.
pub fn authorized_keys_file(existing: &str, keys: &[String]) -> String {
    let mut lines: Vec<String> = existing.lines().map(str::to_owned).collect();
    let mut present: Vec<String> = lines
        .iter()
        .filter(|l| !l.trim_start().starts_with('#'))
        .cloned()
        .collect();
    for key in keys {
        let before = present.len();
        add_keys(&mut present, [key.clone()]);
        if present.len() > before {
            lines.push(key.clone());
        }
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// dropbear's `-p`: `[ADDRESS:]PORT`, IPv6 addresses in brackets.
fn listen(ssh: &Ssh) -> String {
    let port = ssh.port.unwrap_or(22);
    match ssh.listen_address.as_deref().map(str::trim) {
        None | Some("") => port.to_string(),
        Some(address) if address.contains(':') && !address.starts_with('[') => {
            format!("[{address}]:{port}")
        }
        Some(address) => format!("{address}:{port}"),
    }
}

/// dropbear's arguments: in the foreground, logging to stderr (the
/// service's log), root refused, passwords refused unless one is set.
pub fn sshd_args(ssh: &Ssh, password_set: bool, host_keys: &[PathBuf]) -> Vec<String> {
    let mut args: Vec<String> = ["-F", "-E", "-w"].map(str::to_owned).to_vec();
    if !password_set {
        args.push("-s".into());
    }
    args.extend([
        "-p".into(),
        listen(ssh),
        "-P".into(),
        "/run/dropbear.pid".into(),
    ]);
    for key in host_keys {
        args.push("-r".into());
        args.push(key.display().to_string());
    }
    args
}

/// Why a host key was not made or converted, naming the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyToolError {
    #[error("starting {program} for {}: {source}", key.display())]
    Start {
        program: &'static str,
        key: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} for {}: {status}: {stderr}", key.display())]
    Failed {
        program: &'static str,
        key: PathBuf,
        status: std::process::ExitStatus,
        /// What the tool said, trimmed.
        stderr: String,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// dropbearkey and dropbearconvert, faked in tests.
pub trait KeyTools {
    /// Makes a new host key of `kind` at `path` (dropbear's format).
    fn generate(&self, kind: &str, path: &Path) -> Result<(), KeyToolError>;
    /// Converts the OpenSSH key at `openssh` into dropbear's format at `dropbear`.
    fn convert(&self, openssh: &Path, dropbear: &Path) -> Result<(), KeyToolError>;
}

/// The real tools, in the console image.
#[derive(Debug)]
pub struct DropbearTools;

/// Runs `program` with `args`, which makes or reads `key`.
fn run_tool(
    program: &'static str,
    args: &[&std::ffi::OsStr],
    key: &Path,
) -> Result<(), KeyToolError> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|source| KeyToolError::Start {
            program,
            key: key.to_owned(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(KeyToolError::Failed {
            program,
            key: key.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

impl KeyTools for DropbearTools {
    fn generate(&self, kind: &str, path: &Path) -> Result<(), KeyToolError> {
        run_tool(
            "dropbearkey",
            &["-t".as_ref(), kind.as_ref(), "-f".as_ref(), path.as_ref()],
            path,
        )
    }

    fn convert(&self, openssh: &Path, dropbear: &Path) -> Result<(), KeyToolError> {
        run_tool(
            "dropbearconvert",
            &[
                "openssh".as_ref(),
                "dropbear".as_ref(),
                openssh.as_ref(),
                dropbear.as_ref(),
            ],
            openssh,
        )
    }
}

/// A `rancher.ssh.keys` name dropbear has no use for.
#[derive(Debug, thiserror::Error)]
#[error(
    "rancher.ssh.keys.{name}: not a host key dropbear uses (ssh_host_rsa_key, ssh_host_ecdsa_key, ssh_host_ed25519_key); left out"
)]
pub struct UnknownHostKey {
    name: String,
}

/// The kind of a `rancher.ssh.keys` name (`ssh_host_ed25519_key` →
/// `ed25519`); `Ok(None)` for public halves, which dropbear derives.
fn given_kind(name: &str) -> Result<Option<&'static str>, UnknownHostKey> {
    if name.ends_with(".pub") {
        return Ok(None);
    }
    GIVEN_KINDS
        .iter()
        .find(|kind| name == format!("ssh_host_{kind}_key"))
        .map(|kind| Some(*kind))
        .ok_or_else(|| UnknownHostKey {
            name: name.to_owned(),
        })
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The host key files for dropbear's `-r`, and warnings. Given keys are
/// converted into `dir/given/`; without any (or none converting), the
/// generated ones in `dir` are used, made when missing. Whatever is in
/// `dir` afterwards, keys kept from an older release included, is root's
/// alone (files 0600, directories 0700).
pub fn host_keys(
    given: &BTreeMap<String, String>,
    dir: &Path,
    tools: &dyn KeyTools,
) -> (Vec<PathBuf>, Vec<String>) {
    let (keys, mut warnings) = find_or_make_host_keys(given, dir, tools);
    if let Err(error) = os_config::store::narrow_private_tree(dir) {
        warnings.push(format!("{}: {error}", dir.display()));
    }
    (keys, warnings)
}

fn find_or_make_host_keys(
    given: &BTreeMap<String, String>,
    dir: &Path,
    tools: &dyn KeyTools,
) -> (Vec<PathBuf>, Vec<String>) {
    let mut warnings = Vec::new();
    if let Err(error) = private_dir(dir) {
        warnings.push(format!("{}: {error}", dir.display()));
    }
    let mut keys = Vec::new();
    if !given.is_empty() {
        let given_dir = dir.join("given");
        if let Err(error) = private_dir(&given_dir) {
            warnings.push(format!("{}: {error}", given_dir.display()));
        }
        for (name, text) in given {
            let kind = match given_kind(name) {
                Ok(Some(kind)) => kind,
                Ok(None) => continue,
                Err(unknown) => {
                    warnings.push(unknown.to_string());
                    continue;
                }
            };
            let openssh = given_dir.join(name);
            let dropbear = given_dir.join(format!("dropbear_{kind}_host_key"));
            let _ = std::fs::remove_file(&dropbear);
            let mut pem = text.trim_end().to_owned();
            pem.push('\n');
            let converted = super::files::write_private(&openssh, pem.as_bytes(), 0o600)
                .map_err(|source| KeyToolError::Write {
                    path: openssh.clone(),
                    source,
                })
                .and_then(|()| tools.convert(&openssh, &dropbear));
            let _ = std::fs::remove_file(&openssh);
            match converted {
                Ok(()) => keys.push(dropbear),
                Err(error) => warnings.push(format!(
                    "rancher.ssh.keys.{name}: not converted ({error}); left out"
                )),
            }
        }
        if keys.is_empty() {
            warnings.push("rancher.ssh.keys: no usable host key; generated keys are used".into());
        } else {
            return (keys, warnings);
        }
    }
    for kind in GENERATED_KINDS {
        let path = dir.join(format!("dropbear_{kind}_host_key"));
        if !path.exists()
            && let Err(error) = tools.generate(kind, &path)
        {
            // The error names the key file.
            warnings.push(format!("SSH host key: {error}"));
            continue;
        }
        keys.push(path);
    }
    (keys, warnings)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use os_config::layers::LayerSource;

    fn ssh(yaml: &str) -> Ssh {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn keys_of_every_layer_are_joined_each_once() {
        let mut layers = Layers::default();
        layers.add_text(
            LayerSource::CloudConfig("cloud-config.yml".into()),
            "ssh_authorized_keys: [ssh-ed25519 AAAAfile me@file]",
        );
        layers.add_text(
            LayerSource::CloudConfigD("user-data.yml".into()),
            "ssh_authorized_keys: [ssh-rsa AAAAdata ops, ssh-ed25519 AAAAfile same key other comment]",
        );
        let mut keys = union_of_keys(&layers);
        assert_eq!(
            keys,
            ["ssh-ed25519 AAAAfile me@file", "ssh-rsa AAAAdata ops"]
        );
        add_keys(
            &mut keys,
            metadata_keys(br#"{"hostname": "h", "public_keys": ["ssh-rsa AAAAmeta ec2", "ssh-rsa AAAAdata dup"]}"#),
        );
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[2], "ssh-rsa AAAAmeta ec2");
        assert!(metadata_keys(b"not json").is_empty());
    }

    #[test]
    fn authorized_keys_keeps_what_the_user_added_and_adds_the_configured_ones() {
        let existing = "# mine\nssh-ed25519 AAAAmine laptop\n";
        let keys = vec![
            "ssh-ed25519 AAAAmine configured too".to_owned(),
            "ssh-rsa AAAAnew ops".to_owned(),
        ];
        assert_eq!(
            authorized_keys_file(existing, &keys),
            "# mine\nssh-ed25519 AAAAmine laptop\nssh-rsa AAAAnew ops\n"
        );
        assert_eq!(authorized_keys_file("", &[]), "");
        assert_eq!(
            authorized_keys_file("", &keys[1..]),
            "ssh-rsa AAAAnew ops\n"
        );
    }

    #[test]
    fn dropbear_refuses_root_and_passwords_unless_one_is_set() {
        let keys = [PathBuf::from("/k/ed"), PathBuf::from("/k/ec")];
        assert_eq!(
            sshd_args(&Ssh::default(), false, &keys).join(" "),
            "-F -E -w -s -p 22 -P /run/dropbear.pid -r /k/ed -r /k/ec"
        );
        let args = sshd_args(&ssh("{port: 2222, listen_address: 10.0.2.15}"), true, &keys);
        assert_eq!(
            args.join(" "),
            "-F -E -w -p 10.0.2.15:2222 -P /run/dropbear.pid -r /k/ed -r /k/ec"
        );
        let v6 = sshd_args(&ssh("{listen_address: 'fd00::1'}"), true, &[]);
        assert_eq!(v6[4], "[fd00::1]:22");
    }

    /// Writes a stand-in key file per call and records it.
    #[derive(Default)]
    struct FakeTools {
        calls: RefCell<Vec<String>>,
        fail_convert: bool,
    }

    impl KeyTools for FakeTools {
        fn generate(&self, kind: &str, path: &Path) -> Result<(), KeyToolError> {
            self.calls.borrow_mut().push(format!("generate {kind}"));
            std::fs::write(path, kind).map_err(|source| KeyToolError::Write {
                path: path.to_owned(),
                source,
            })
        }
        fn convert(&self, openssh: &Path, dropbear: &Path) -> Result<(), KeyToolError> {
            let text = std::fs::read_to_string(openssh).unwrap();
            self.calls
                .borrow_mut()
                .push(format!("convert {}", text.trim()));
            if self.fail_convert {
                return Err(KeyToolError::Failed {
                    program: "dropbearconvert",
                    key: openssh.to_owned(),
                    status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
                    stderr: "unsupported key".into(),
                });
            }
            std::fs::write(dropbear, text).map_err(|source| KeyToolError::Write {
                path: dropbear.to_owned(),
                source,
            })
        }
    }

    #[test]
    fn host_keys_are_generated_once_in_a_private_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ssh");
        let tools = FakeTools::default();
        let (keys, warnings) = host_keys(&BTreeMap::new(), &dir, &tools);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            keys,
            [
                dir.join("dropbear_ed25519_host_key"),
                dir.join("dropbear_ecdsa_host_key")
            ]
        );
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        // The fake writes them as the umask leaves files; they end up
        // root's alone all the same.
        for key in &keys {
            assert_eq!(mode(key), 0o600, "{}", key.display());
        }
        // A key an older release left readable by all is narrowed at the
        // next start.
        std::fs::set_permissions(&keys[0], std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The next start finds them: the same keys, nothing generated.
        let again = host_keys(&BTreeMap::new(), &dir, &tools).0;
        assert_eq!(again, keys);
        assert_eq!(mode(&keys[0]), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            *tools.calls.borrow(),
            ["generate ed25519", "generate ecdsa"]
        );
    }

    #[test]
    fn given_host_keys_are_converted_and_unknown_names_are_warned_about() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ssh");
        let given: BTreeMap<String, String> = [
            ("ssh_host_ed25519_key", "PRIVATE ED25519"),
            ("ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA"),
            ("ssh_host_dsa_key", "PRIVATE DSA"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let tools = FakeTools::default();
        let (keys, warnings) = host_keys(&given, &dir, &tools);
        assert_eq!(keys, [dir.join("given/dropbear_ed25519_host_key")]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("rancher.ssh.keys.ssh_host_dsa_key: not a host key"));
        assert_eq!(*tools.calls.borrow(), ["convert PRIVATE ED25519"]);
        // The OpenSSH copy does not stay on disk.
        assert!(!dir.join("given/ssh_host_ed25519_key").exists());
    }

    #[test]
    fn given_keys_that_do_not_convert_fall_back_to_generated_ones() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ssh");
        let given = BTreeMap::from([("ssh_host_rsa_key".to_owned(), "BROKEN".to_owned())]);
        let tools = FakeTools {
            fail_convert: true,
            ..FakeTools::default()
        };
        let (keys, warnings) = host_keys(&given, &dir, &tools);
        assert_eq!(keys.len(), 2);
        // The warning names the key, the tool, how it ended and what it said.
        assert_eq!(
            warnings[0],
            format!(
                "rancher.ssh.keys.ssh_host_rsa_key: not converted (dropbearconvert for {}: \
                 exit status: 1: unsupported key); left out",
                dir.join("given/ssh_host_rsa_key").display()
            ),
        );
        assert!(
            warnings[1].contains("generated keys are used"),
            "{warnings:?}"
        );
    }
}
