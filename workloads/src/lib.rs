//! The user's containers on the user containerd, with Docker's habits:
//! `ros run|ps|logs|stop|start|restart|rm|exec` (also answering as
//! `docker`), and the keeper that restarts them by their policy.
//!
//! How the parts fit:
//!
//! - [`flags`]: the values of `-p`, `-v`, `-e`, `--restart`, `--net`,
//!   `-u` and names, parsed into types; every error names its flag;
//! - [`spec`]: the OCI spec of a container, built by
//!   `system_services::spec::build` (least privilege, seccomp) and then
//!   adjusted for workloads: Docker's capabilities, the `/workloads`
//!   cgroup, the network hooks and annotations `container-net` reads,
//!   and `/etc/{resolv.conf,hosts,hostname}` from [`files`];
//! - [`record`]: containerd's container records (labels carry what
//!   `ps` and the keeper need: policy, ports, network, times, exits),
//!   tasks and snapshots, straight over gRPC;
//! - [`engine`]: the operations (run, start, stop, restart, rm, ps,
//!   logs), each on one container by name;
//! - [`status`]: `ps`'s words (`Up 3 minutes`, `Exited (0) 5 seconds ago`);
//! - [`exec`]: a second process in a running container, its output over
//!   fifos under the run directory;
//! - [`keeper`]: started inside the user containerd's container, brings
//!   containers back after a reboot and restarts them when they exit.
//!
//! Nothing runs between commands but the keeper: containerd holds the
//! state (records, labels, tasks), so every command reads it afresh.
//! Output goes to `DATA_DIR/logs/<name>.log` through the shim's
//! `binary://` log pipe (`ros log-pipe`), so it survives the CLI.
//!
//! Measured on the development host (2 shared cores, runc on a cgroup v1
//! host, private containerd 1.6; `cargo test -p workloads --test
//! containers -- --nocapture`): `run -d` with the image present, to the
//! task running, 170–240 ms; the `ros run -d` process from exec to exit
//! 125–170 ms (`init/tests/workload_cli.rs`); a container with `always`
//! running again 290–780 ms after a SIGKILL (100 ms of it the backoff).

// Shipped code returns errors instead of panicking (tests may: clippy.toml)
// and never truncates silently: locked in while this crate is clean.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod engine;
pub mod exec;
pub mod files;
pub mod flags;
pub mod keeper;
pub mod record;
pub mod spec;
pub mod status;
pub mod tty;

use std::path::{Path, PathBuf};

use os_config::schema::system::EngineConfig;
use system_services::containerd::{ConnectError, Containerd};
use system_services::image::{PullOptions, RegistryOptions};

pub use engine::{Engine, RunOptions, WorkloadError, stop_all};
pub use keeper::keep;

/// The user containerd's socket, as seen from the console.
pub const SOCKET: &str = "/run/containerd/containerd.sock";
/// The containerd namespace of the user's containers (Docker's and
/// nerdctl's default).
pub const NAMESPACE: &str = "default";
/// Logs and named volumes: kept across reboots with the containerd root.
pub const DATA_DIR: &str = "/var/lib/containerd/io.ros";
/// Per-container runtime files (`resolv.conf`, `hosts`, `hostname`,
/// exec fifos): gone at reboot, made again at start.
pub const RUN_DIR: &str = "/run/containerd/io.ros";
/// The OCI runtime the runc shim runs.
pub const OCI_RUNTIME: &str = "crun";
/// `ros` itself: the shim runs it to write logs, the runtime for the
/// network hooks. The same path in the console and in the user
/// containerd's container.
pub const ROS_PROGRAM: &str = "/usr/bin/ros";
/// The cgroup parent of every workload (relative to /sys/fs/cgroup).
pub const CGROUP_PARENT: &str = "/workloads";
/// Where `-v HOST:...` may point: the directories the console and the
/// user containerd's container share.
pub const VOLUME_ROOTS: &[&str] = &["/home", "/opt", "/mnt", "/media", "/srv"];

/// The bridge every bridge-mode container is attached to, as
/// `rancher.docker.*` sets it (read by `container-net`'s hooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSettings {
    /// `rancher.docker.bridge`, default `ros0`.
    pub bridge: String,
    /// `rancher.docker.bip`, the bridge's address and prefix, default
    /// `172.18.0.1/16`.
    pub subnet: String,
    /// `rancher.docker.mtu`.
    pub mtu: Option<u32>,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        Self {
            bridge: "ros0".into(),
            subnet: "172.18.0.1/16".into(),
            mtu: None,
        }
    }
}

/// Everything that places the workloads: the daemon, the directories,
/// the helper programs. [`Settings::system`] for the machine; tests put
/// it all under temp dirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub socket: PathBuf,
    pub namespace: String,
    pub oci_runtime: String,
    /// Logs (`logs/<name>.log`) and named volumes (`volumes/<name>`).
    pub data_dir: PathBuf,
    /// Runtime files per container (`<name>/...`).
    pub run_dir: PathBuf,
    /// The program the shim runs as `PROGRAM log-pipe FILE`; without
    /// one the shim appends to the log itself (no rotation).
    pub log_pipe: Option<PathBuf>,
    /// The program the OCI runtime runs as the network hooks.
    pub hook_program: PathBuf,
    pub bridge: BridgeSettings,
    /// Where `-v` host paths may point.
    pub volume_roots: Vec<PathBuf>,
    /// The host's resolver configuration, copied into containers.
    pub host_resolv_conf: PathBuf,
    /// How images are pulled (plain-HTTP registries, ...).
    pub pull: PullOptions,
}

impl Default for Settings {
    /// [`Settings::system`].
    fn default() -> Self {
        Self::system()
    }
}

impl Settings {
    /// The machine's: the user containerd, `/var/lib/containerd/io.ros`,
    /// `/run/containerd/io.ros`, `/usr/bin/ros`.
    pub fn system() -> Self {
        Self {
            socket: SOCKET.into(),
            namespace: NAMESPACE.into(),
            oci_runtime: OCI_RUNTIME.into(),
            data_dir: DATA_DIR.into(),
            run_dir: RUN_DIR.into(),
            log_pipe: Some(ROS_PROGRAM.into()),
            hook_program: ROS_PROGRAM.into(),
            bridge: BridgeSettings::default(),
            volume_roots: VOLUME_ROOTS.iter().map(PathBuf::from).collect(),
            host_resolv_conf: "/etc/resolv.conf".into(),
            pull: PullOptions::default(),
        }
    }

    /// Data and run directories under `dir` (`dir/data`, `dir/run`).
    pub fn with_dirs_under(mut self, dir: &Path) -> Self {
        self.data_dir = dir.join("data");
        self.run_dir = dir.join("run");
        self
    }

    /// `rancher.docker`'s bridge, subnet, MTU and insecure registries.
    pub fn with_engine_config(mut self, engine: &EngineConfig) -> Self {
        if let Some(bridge) = engine.bridge.as_deref().filter(|b| !b.is_empty()) {
            self.bridge.bridge = bridge.to_string();
        }
        if let Some(bip) = engine.bip.as_deref().filter(|b| !b.is_empty()) {
            self.bridge.subnet = bip.to_string();
        }
        if engine.mtu.is_some() {
            self.bridge.mtu = engine.mtu;
        }
        self.pull.registry = RegistryOptions {
            plain_http: engine.insecure_registry.clone(),
            ..self.pull.registry
        };
        self
    }

    /// `DATA_DIR/logs/<name>.log`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.data_dir.join("logs").join(format!("{name}.log"))
    }

    /// `DATA_DIR/volumes/<volume>`.
    pub fn volume_path(&self, volume: &str) -> PathBuf {
        self.data_dir.join("volumes").join(volume)
    }

    /// `RUN_DIR/<name>`.
    pub fn container_run_dir(&self, name: &str) -> PathBuf {
        self.run_dir.join(name)
    }

    /// Connects to the daemon, task output through the log pipe.
    pub async fn connect(&self) -> Result<Containerd, ConnectError> {
        let containerd =
            Containerd::connect(&self.socket, &self.namespace, &self.oci_runtime).await?;
        Ok(match &self.log_pipe {
            Some(program) => containerd.with_log_pipe(program),
            None => containerd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_config_sets_bridge_subnet_mtu_and_plain_http_registries() {
        let mut engine = EngineConfig::default();
        let settings = Settings::system().with_engine_config(&engine);
        assert_eq!(settings.bridge, BridgeSettings::default());
        engine.bridge = Some("br-lab".into());
        engine.bip = Some("10.9.0.1/24".into());
        engine.mtu = Some(1400);
        engine.insecure_registry = vec!["registry.lab:5000".into()];
        let settings = Settings::system().with_engine_config(&engine);
        assert_eq!(
            settings.bridge,
            BridgeSettings {
                bridge: "br-lab".into(),
                subnet: "10.9.0.1/24".into(),
                mtu: Some(1400)
            }
        );
        assert_eq!(settings.pull.registry.plain_http, ["registry.lab:5000"]);
        assert_eq!(
            settings.log_path("web"),
            Path::new("/var/lib/containerd/io.ros/logs/web.log")
        );
        assert_eq!(
            settings.volume_path("db"),
            Path::new("/var/lib/containerd/io.ros/volumes/db")
        );
    }
}
