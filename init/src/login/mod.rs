//! Who may log in to the console container, and how: the `rancher` user
//! and its password ([`accounts`]), its SSH keys and the SSH daemon
//! ([`ssh`]), the terminals that log in by themselves ([`autologin`]).
//!
//! The console service's script runs `ros console-init setup` as root in
//! the console container before any getty starts (it writes `/etc/passwd`,
//! `/etc/group`, `/etc/shadow` and `~rancher/.ssh/authorized_keys` from the
//! configuration), `ros console-init sshd` to exec dropbear with the
//! arguments the configuration asks for, and `ros console-init autologin
//! TTY` to choose between a login prompt and `login -f rancher` per
//! terminal. The pieces are pure functions from the configuration to file
//! contents and argv, so they are unit tested without root; the little
//! that touches the file system is in [`files`].

pub mod accounts;
pub mod autologin;
pub mod files;
pub mod ssh;

use os_config::{CloudConfig, ConfigPaths, Layers};

/// The configuration as the console sees it: every layer (the kernel
/// command line included), merged as PID 1 merges them, and the keys of
/// every layer and of the datasource's metadata.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The merged configuration.
    pub config: CloudConfig,
    /// `ssh_authorized_keys` of every layer and the metadata, in order, once each.
    pub authorized_keys: Vec<String>,
}

impl ConsoleConfig {
    /// Loads the layers under `paths` (the command line from its `/proc/cmdline`).
    pub fn load(paths: &ConfigPaths) -> Self {
        let layers = Layers::load(paths);
        let metadata = std::fs::read(paths.metadata_file()).unwrap_or_default();
        let mut authorized_keys = ssh::union_of_keys(&layers);
        ssh::add_keys(&mut authorized_keys, ssh::metadata_keys(&metadata));
        let config = crate::config::merged_leaving_out_top(layers, |_| {});
        Self {
            config,
            authorized_keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use os_config::layers::LayerSource;
    use os_config::schema::keys::{self, Support};

    use super::accounts::{self, HashError, Hasher};
    use super::ssh::{self, KeyToolError, KeyTools};
    use super::*;

    struct Fixed;
    impl Hasher for Fixed {
        fn sha512_crypt(&self, _plain: &str) -> Result<String, HashError> {
            Ok("$6$salt$hash".into())
        }
    }

    struct Touch;
    impl KeyTools for Touch {
        fn generate(&self, _kind: &str, path: &Path) -> Result<(), KeyToolError> {
            std::fs::write(path, "").map_err(|source| KeyToolError::Write {
                path: path.to_owned(),
                source,
            })
        }
        fn convert(&self, _openssh: &Path, dropbear: &Path) -> Result<(), KeyToolError> {
            std::fs::write(dropbear, "").map_err(|source| KeyToolError::Write {
                path: dropbear.to_owned(),
                source,
            })
        }
    }

    /// Everything the console derives from a configuration.
    fn effects(yaml: &str) -> Vec<String> {
        let mut layers = Layers::default();
        layers.add_text(LayerSource::CloudConfig(PathBuf::from("c.yml")), yaml);
        assert!(layers.problems.is_empty(), "{:?}", layers.problems);
        let keys = ssh::union_of_keys(&layers);
        let config = layers.merged().unwrap().config;
        let rancher = &config.rancher;
        let dir = tempfile::tempdir().unwrap();
        let (host_keys, _) = ssh::host_keys(&rancher.ssh.keys, dir.path(), &Touch);
        let host_keys: Vec<PathBuf> = host_keys
            .iter()
            .map(|k| k.strip_prefix(dir.path()).unwrap().to_owned())
            .collect();
        let password = accounts::password(rancher.password.as_deref(), &Fixed).0;
        vec![
            ssh::sshd_args(&rancher.ssh, rancher.password.is_some(), &host_keys).join(" "),
            format!("daemon {}", rancher.ssh.daemon_enabled()),
            accounts::shadow(&password),
            autologin::terminals(rancher.autologin.as_ref()).join(" "),
            keys.join("\n"),
        ]
    }

    /// Every login key is marked implemented, and setting it changes what
    /// the console does: none is accepted and ignored.
    #[test]
    fn every_login_key_has_an_effect() {
        let cases = [
            ("rancher.ssh.port", "rancher: {ssh: {port: 2222}}"),
            (
                "rancher.ssh.listen_address",
                "rancher: {ssh: {listen_address: 10.0.0.1}}",
            ),
            ("rancher.ssh.daemon", "rancher: {ssh: {daemon: false}}"),
            (
                "rancher.ssh.keys",
                "rancher: {ssh: {keys: {ssh_host_rsa_key: PEM}}}",
            ),
            ("rancher.password", "rancher: {password: secret}"),
            ("rancher.autologin", "rancher: {autologin: ttyS0}"),
            (
                "ssh_authorized_keys",
                "ssh_authorized_keys: [ssh-ed25519 AAAAkey me]",
            ),
        ];
        let login_keys: Vec<&str> = keys::KEYS
            .iter()
            .map(|spec| spec.pattern)
            .filter(|p| {
                p.starts_with("rancher.ssh.")
                    || [
                        "rancher.password",
                        "rancher.autologin",
                        "ssh_authorized_keys",
                    ]
                    .contains(p)
            })
            .collect();
        let mut listed: Vec<&str> = cases.iter().map(|(key, _)| *key).collect();
        listed.sort_unstable();
        let mut table = login_keys.clone();
        table.sort_unstable();
        assert_eq!(listed, table, "a login key without a case here");
        let defaults = effects("{}");
        for (key, yaml) in cases {
            assert_eq!(
                keys::find(key).map(|spec| spec.support),
                Some(Support::Implemented),
                "{key}"
            );
            assert_ne!(effects(yaml), defaults, "{key} changes nothing");
        }
    }
}
