//! What `ros console-init setup` writes, under a root that tests move:
//! `/etc/passwd`, `/etc/group`, `/etc/shells` (0644), `/etc/shadow`
//! (0600), and `rancher`'s home with `.ssh/authorized_keys`, owned by
//! `rancher` and writable by it alone (dropbear refuses keys otherwise).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, chown};

use super::ConsoleConfig;
use super::accounts::{self, HashError, Hasher, RANCHER_GID, RANCHER_UID};
use super::ssh;

/// What failed, and on which path.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("writing {path}: {source}", path = path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("giving {path} to rancher: {source}", path = path.display())]
    Chown { path: PathBuf, source: nix::Error },
}

/// Writes `contents` to `path` through a temporary file renamed over it,
/// with `mode` from the start.
pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.new"));
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&temporary, path)
}

/// busybox's `mkpasswd -m sha512`, the password on its standard input
/// (never in argv, which `ps` shows).
#[derive(Debug)]
pub struct BusyboxHasher;

impl Hasher for BusyboxHasher {
    fn sha512_crypt(&self, plain: &str) -> Result<String, HashError> {
        const PROGRAM: &str = "mkpasswd";
        let mut child = Command::new(PROGRAM)
            .args(["-m", "sha512"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HashError::Start {
                program: PROGRAM,
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(format!("{plain}\n").as_bytes())
                .map_err(|source| HashError::Input {
                    program: PROGRAM,
                    source,
                })?;
        }
        let output = child.wait_with_output().map_err(|source| HashError::Wait {
            program: PROGRAM,
            source,
        })?;
        if !output.status.success() {
            return Err(HashError::Failed {
                program: PROGRAM,
                status: output.status,
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

fn give_to_rancher(path: &Path) -> Result<(), SetupError> {
    chown(
        path,
        Some(Uid::from_raw(RANCHER_UID)),
        Some(Gid::from_raw(RANCHER_GID)),
    )
    .map_err(|source| SetupError::Chown {
        path: path.to_owned(),
        source,
    })
}

/// A directory of rancher's: made when missing, owned by rancher, and
/// writable by it alone.
fn rancher_dir(path: &Path, mode: u32) -> Result<(), SetupError> {
    let write = |source| SetupError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(write)?;
    give_to_rancher(path)?;
    let current = std::fs::metadata(path).map_err(write)?.permissions().mode() & 0o7777;
    if current & 0o022 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & !0o022))
            .map_err(write)?;
    }
    Ok(())
}

/// Writes the accounts and `rancher`'s keys under `root`; returns the
/// warnings to show.
pub fn setup(
    root: &Path,
    console: &ConsoleConfig,
    hasher: &dyn Hasher,
) -> Result<Vec<String>, SetupError> {
    let mut warnings = Vec::new();
    let (password, warning) =
        accounts::password(console.config.rancher.password.as_deref(), hasher);
    warnings.extend(warning);
    let etc = root.join("etc");
    for (name, contents, mode) in [
        ("passwd", accounts::passwd(), 0o644),
        ("group", accounts::group(), 0o644),
        ("shells", accounts::SHELLS.to_owned(), 0o644),
        ("shadow", accounts::shadow(&password), 0o600),
    ] {
        let path = etc.join(name);
        write_private(&path, contents.as_bytes(), mode)
            .map_err(|source| SetupError::Write { path, source })?;
    }
    let home = root.join(accounts::HOME.trim_start_matches('/'));
    rancher_dir(&home, 0o755)?;
    let dot_ssh = home.join(".ssh");
    rancher_dir(&dot_ssh, 0o700)?;
    let file = dot_ssh.join("authorized_keys");
    let existing = std::fs::read_to_string(&file).unwrap_or_default();
    let text = ssh::authorized_keys_file(&existing, &console.authorized_keys);
    write_private(&file, text.as_bytes(), 0o600).map_err(|source| SetupError::Write {
        path: file.clone(),
        source,
    })?;
    give_to_rancher(&file)?;
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use os_config::CloudConfig;

    struct Fixed;
    impl Hasher for Fixed {
        fn sha512_crypt(&self, _plain: &str) -> Result<String, HashError> {
            Ok("$6$salt$hashed".into())
        }
    }

    fn console(yaml: &str, keys: &[&str]) -> ConsoleConfig {
        ConsoleConfig {
            config: serde_norway::from_str::<CloudConfig>(yaml).unwrap(),
            authorized_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    /// Needs root (chown to 1100), as the console has.
    #[test]
    fn setup_writes_the_accounts_and_rancher_s_keys_owned_by_rancher() {
        assert!(Uid::effective().is_root(), "this test needs root (chown)");
        let root = tempfile::tempdir().unwrap();
        let config = console("rancher: {password: secret}", &["ssh-ed25519 AAAAkey me"]);
        let warnings = setup(root.path(), &config, &Fixed).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let shadow = root.path().join("etc/shadow");
        assert_eq!(mode(&shadow), 0o600);
        assert!(
            std::fs::read_to_string(&shadow)
                .unwrap()
                .contains("rancher:$6$salt$hashed:")
        );
        assert_eq!(mode(&root.path().join("etc/passwd")), 0o644);
        let keys = root.path().join("home/rancher/.ssh/authorized_keys");
        assert_eq!(
            std::fs::read_to_string(&keys).unwrap(),
            "ssh-ed25519 AAAAkey me\n"
        );
        for (path, expected) in [
            (root.path().join("home/rancher"), 0o755),
            (root.path().join("home/rancher/.ssh"), 0o700),
            (keys.clone(), 0o600),
        ] {
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (1100, 1100), "{}", path.display());
            assert_eq!(meta.mode() & 0o777, expected, "{}", path.display());
        }
        // A key the user added stays when the console starts again.
        std::fs::write(&keys, "ssh-rsa AAAAadded by hand\n").unwrap();
        setup(
            root.path(),
            &console("{}", &["ssh-ed25519 AAAAkey me"]),
            &Fixed,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&keys).unwrap(),
            "ssh-rsa AAAAadded by hand\nssh-ed25519 AAAAkey me\n"
        );
        // Without a password the account is locked again.
        assert!(
            std::fs::read_to_string(&shadow)
                .unwrap()
                .contains("\nrancher:*:")
        );
    }

    #[test]
    fn a_group_writable_home_is_made_private_to_rancher() {
        assert!(Uid::effective().is_root(), "this test needs root (chown)");
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("home/rancher");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        setup(root.path(), &console("{}", &[]), &Fixed).unwrap();
        assert_eq!(mode(&home), 0o755);
    }
}
