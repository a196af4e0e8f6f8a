//! What PID 1 prepares for the cluster agent before it starts (the
//! service itself is derived in `os_config::cluster`): the join token in
//! a file only root can read, the agent's host directories, and the
//! kubelet's directory as a shared mount so the volume mounts the kubelet
//! makes reach the pods' containers.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use os_config::CloudConfig;
use os_config::cluster::{self, KUBELET_DIR, NODE_DIR, STATE_DIRS};

use crate::host::{Host, HostError};

/// Everything the agent of `config` needs before it starts: the token
/// file (removed without a token) and, when the agent is defined and not
/// disabled, its directories. At boot and before every `ros service`
/// request, so an agent configured on a running machine finds them too.
/// Returns what failed, for the caller to report.
pub fn prepare(host: &dyn Host, config: &CloudConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let token_dir = Path::new(cluster::TOKEN_DIR);
    if let Err(error) = write_token(config, token_dir) {
        problems.push(format!(
            "cluster agent: writing {}/token: {error}",
            token_dir.display()
        ));
    }
    let runs = config
        .rancher
        .enabled_services()
        .any(|(name, _)| name.as_str() == cluster::SERVICE);
    if runs && let Err(error) = prepare_dirs(host, Path::new("/")) {
        problems.push(format!("cluster agent: {error}"));
    }
    problems
}

/// Writes the token `config` gives the agent to `dir/token` (0600, `dir`
/// 0700), replacing it whole; removes it when there is none, so a token
/// taken out of the configuration does not stay behind.
pub fn write_token(config: &CloudConfig, dir: &Path) -> io::Result<()> {
    let file = dir.join("token");
    let Some(token) = cluster::join_token(&config.rancher.cluster) else {
        return match std::fs::remove_file(&file) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        };
    };
    if std::fs::read(&file).is_ok_and(|old| old == token.as_bytes()) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let partial = dir.join(".token.partial");
    let _ = std::fs::remove_file(&partial);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?;
    out.write_all(token.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&partial, &file)
}

/// The agent's directories below `root` (its data, the kubelet's, pod
/// logs, the node password), and the kubelet's made a shared mount.
pub fn prepare_dirs(host: &dyn Host, root: &Path) -> Result<(), HostError> {
    let below = |dir: &str| -> PathBuf { root.join(dir.trim_start_matches('/')) };
    for dir in STATE_DIRS.iter().chain([&NODE_DIR]) {
        host.create_dir_all(&below(dir))?;
    }
    let kubelet = below(KUBELET_DIR);
    // It is a mount of its own when the state partition or a tmpfs holds
    // it; otherwise bind it onto itself, since only a mount can be shared.
    if !host.is_mountpoint(&kubelet)? {
        let source = kubelet.display().to_string();
        host.mount(&source, &kubelet, None, MsFlags::MS_BIND, None)?;
    }
    host.mount("none", &kubelet, None, MsFlags::MS_SHARED, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostCall};

    fn config(yaml: &str) -> CloudConfig {
        os_config::check_document(yaml).unwrap().config
    }

    #[test]
    fn the_token_is_a_file_only_root_reads_and_goes_when_the_cluster_does() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("cluster-agent");
        std::fs::create_dir(&tokens).unwrap();
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sum = "c".repeat(64);
        write_token(
            &config(&format!(
                "rancher:\n  cluster: {{server: \"https://k8s:6443\", token: hunter2, ca_checksum: {sum}}}\n"
            )),
            &tokens,
        )
        .unwrap();
        let file = tokens.join("token");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("K10{sum}::hunter2")
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&tokens), 0o700);
        write_token(&config("hostname: a"), &tokens).unwrap();
        assert!(!file.exists());
        // Nothing to remove is fine.
        write_token(&config("hostname: a"), &tokens).unwrap();
    }

    #[test]
    fn the_kubelet_directory_is_made_a_shared_mount() {
        let host = FakeHost::default();
        prepare_dirs(&host, Path::new("/")).unwrap();
        let calls = host.calls();
        for dir in [
            "/var/lib/rancher/k3s",
            "/var/lib/kubelet",
            "/var/log/pods",
            "/var/lib/rancher/cluster-agent/node",
        ] {
            assert!(calls.contains(&HostCall::CreateDirAll(dir.into())), "{dir}");
        }
        let mounts: Vec<(&str, MsFlags)> = calls
            .iter()
            .filter_map(|call| match call {
                HostCall::Mount { target, flags, .. } if target == Path::new(KUBELET_DIR) => {
                    Some((target.to_str().unwrap(), *flags))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            mounts,
            [
                (KUBELET_DIR, MsFlags::MS_BIND),
                (KUBELET_DIR, MsFlags::MS_SHARED)
            ]
        );
    }
}
