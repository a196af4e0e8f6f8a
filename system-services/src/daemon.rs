//! A containerd daemon's configuration: where it keeps its things and
//! which plugins it runs.

use std::path::{Path, PathBuf};

/// Where one containerd daemon keeps its things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub binary: PathBuf,
    pub config_file: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Whether the CRI plugin runs (the user containerd's, for a kubelet).
    pub cri: bool,
}

/// The Go runtime's settings for containerd, which its shims inherit.
/// `GOGC=50` collects once the heap grew by half since the last
/// collection instead of doubled: both daemons and the shim keep a few
/// MiB of heap, and on a small machine a smaller heap is worth the
/// collections (measured in issue 14's note).
pub const GO_RUNTIME_ENV: &[(&str, &str)] = &[("GOGC", "50")];

impl DaemonConfig {
    /// A private daemon with everything under `dir`: for tests.
    pub fn under(dir: &Path) -> Self {
        Self {
            binary: "/usr/bin/containerd".into(),
            config_file: dir.join("config.toml"),
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("containerd.sock"),
            log: dir.join("containerd.log"),
            cri: false,
        }
    }

    /// The system containerd of DESIGN.md.
    pub fn system() -> Self {
        Self {
            binary: "/usr/bin/containerd".into(),
            config_file: "/run/ros/system-containerd.toml".into(),
            root: "/var/lib/system-containerd".into(),
            state: "/run/system-containerd".into(),
            socket: "/run/system-containerd/containerd.sock".into(),
            log: "/var/log/ros/system-containerd.log".into(),
            cri: false,
        }
    }

    /// The user containerd of DESIGN.md, as its container sees it: the
    /// paths Docker users know, CRI on. Its output is the service's log.
    pub fn user() -> Self {
        Self {
            binary: "/usr/bin/containerd".into(),
            config_file: "/run/user-containerd.toml".into(),
            root: "/var/lib/containerd".into(),
            state: "/run/containerd".into(),
            socket: "/run/containerd/containerd.sock".into(),
            log: "/dev/stdout".into(),
            cri: true,
        }
    }

    /// The daemon's config. Plugins neither daemon has a use for are off:
    /// snapshotters for file systems we do not ship, tracing, the cgroup
    /// metrics collector and the restart monitor (`ros` supervises tasks
    /// itself); CRI unless asked for (that is the user containerd's job).
    /// The image's containerd is built without most of them
    /// (image-build/src/containerd.rs); the list still matters for
    /// Debian's full build, which the host tests run. CRI's runc runtime
    /// runs crun, the one OCI runtime in the image.
    pub fn toml(&self) -> String {
        let cri_off = if self.cri {
            ""
        } else {
            "\n  \"io.containerd.grpc.v1.cri\","
        };
        let cri_runtime = if self.cri {
            r#"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "crun"
"#
        } else {
            ""
        };
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{cri_off}
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.restart",
  "io.containerd.monitor.v1.cgroups",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"
{cri_runtime}"#,
            root = self.root.display(),
            state = self.state.display(),
            socket = self.socket.display(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_config_disables_cri_and_uses_its_own_paths() {
        let text = DaemonConfig::system().toml();
        assert!(text.contains(r#""io.containerd.grpc.v1.cri""#));
        assert!(text.contains(r#"root = "/var/lib/system-containerd""#));
        assert!(text.contains(r#"state = "/run/system-containerd""#));
        assert!(text.contains(r#"address = "/run/system-containerd/containerd.sock""#));
    }

    #[test]
    fn neither_daemon_runs_the_metrics_collector_or_the_restart_monitor() {
        for text in [DaemonConfig::system().toml(), DaemonConfig::user().toml()] {
            let disabled = text
                .split_once("disabled_plugins = [")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(list, _)| list)
                .expect("a disabled_plugins list");
            for plugin in [
                "io.containerd.monitor.v1.cgroups",
                "io.containerd.internal.v1.restart",
                "io.containerd.snapshotter.v1.btrfs",
            ] {
                assert!(
                    disabled.contains(&format!("\"{plugin}\",")),
                    "{plugin}: {text}"
                );
            }
            assert!(
                !disabled.contains("overlayfs"),
                "the snapshotter stays: {text}"
            );
        }
    }

    #[test]
    fn user_config_keeps_cri_on_with_crun_and_the_docker_paths() {
        let text = DaemonConfig::user().toml();
        assert!(!text.contains(r#""io.containerd.grpc.v1.cri","#), "{text}");
        assert!(text.contains(r#"BinaryName = "crun""#), "{text}");
        assert!(text.contains(r#"root = "/var/lib/containerd""#));
        assert!(text.contains(r#"address = "/run/containerd/containerd.sock""#));
    }
}
