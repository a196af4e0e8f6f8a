//! The system containerd: written its config, started, watched, restarted
//! with backoff when it dies. Its shims keep the service tasks alive
//! meanwhile; the service supervisors re-attach once it is back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use system_services::restart::Backoff;
use tokio::sync::watch;
use tokio::time::Instant;

use super::reaper::Reaper;
use crate::host::Shutdown;

/// How long a containerd start may take before its socket answers (TCG is slow).
const SOCKET_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where one containerd daemon keeps its things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub binary: PathBuf,
    pub config_file: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl DaemonConfig {
    /// The system containerd of DESIGN.md.
    pub fn system() -> Self {
        Self {
            binary: "/usr/bin/containerd".into(),
            config_file: "/run/ros/system-containerd.toml".into(),
            root: "/var/lib/system-containerd".into(),
            state: "/run/system-containerd".into(),
            socket: "/run/system-containerd/containerd.sock".into(),
            log: "/var/log/ros/system-containerd.log".into(),
        }
    }

    /// The daemon's config. Plugins the system containerd has no use for
    /// are off: CRI (that is the user containerd's job), snapshotters for
    /// file systems we do not ship, tracing.
    pub fn toml(&self) -> String {
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
  "io.containerd.internal.v1.opt",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"
"#,
            root = self.root.display(),
            state = self.state.display(),
            socket = self.socket.display(),
        )
    }
}

/// Runs containerd until shutdown. Each time its socket starts answering,
/// `up` gets the next generation number (1 for the first start).
pub async fn supervise(
    reaper: Arc<Reaper>,
    config: DaemonConfig,
    up: watch::Sender<u64>,
    mut shutdown: watch::Receiver<Option<Shutdown>>,
) {
    let mut backoff = Backoff::default();
    let mut generation = 0;
    while shutdown.borrow().is_none() {
        let started = Instant::now();
        let mut daemon = match spawn(&reaper, &config) {
            Ok(daemon) => daemon,
            Err(err) => {
                tracing::error!(%err, "cannot start containerd");
                tokio::time::sleep(backoff.delay_after(Duration::ZERO)).await;
                continue;
            }
        };
        tokio::select! {
            answered = wait_for_socket(&config.socket, SOCKET_TIMEOUT) => {
                if answered {
                    generation += 1;
                    tracing::info!(pid = daemon.pid, generation, "containerd is up");
                    up.send_replace(generation);
                } else {
                    tracing::error!(socket = %config.socket.display(), "containerd socket did not answer");
                }
            }
            code = &mut daemon.exit => {
                tracing::error!(code = code.unwrap_or(-1), "containerd exited while starting");
                tokio::time::sleep(backoff.delay_after(started.elapsed())).await;
                continue;
            }
        }
        tokio::select! {
            code = &mut daemon.exit => {
                let delay = backoff.delay_after(started.elapsed());
                tracing::error!(code = code.unwrap_or(-1), ?delay, "containerd died; restarting");
                tokio::time::sleep(delay).await;
            }
            () = stop_requested(&mut shutdown) => {
                stop(daemon).await;
                return;
            }
        }
    }
}

fn spawn(reaper: &Reaper, config: &DaemonConfig) -> std::io::Result<super::reaper::Spawned> {
    for dir in [
        config.config_file.parent(),
        config.log.parent(),
        Some(config.root.as_path()),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&config.config_file, config.toml())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.log)?;
    reaper.spawn(
        Command::new(&config.binary)
            .arg("--config")
            .arg(&config.config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )
}

async fn stop_requested(shutdown: &mut watch::Receiver<Option<Shutdown>>) {
    // An error means the sender is gone: nobody can ask anymore, so stop.
    let _ = shutdown.wait_for(Option::is_some).await;
}

/// Polls until the socket accepts a connection.
async fn wait_for_socket(socket: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn stop(daemon: super::reaper::Spawned) {
    let pid = Pid::from_raw(i32::try_from(daemon.pid).unwrap_or(i32::MAX));
    let _ = kill(pid, Signal::SIGTERM);
    let mut exit = daemon.exit;
    if tokio::time::timeout(STOP_GRACE, &mut exit).await.is_err() {
        tracing::warn!("containerd did not stop in time; killing");
        let _ = kill(pid, Signal::SIGKILL);
        let _ = exit.await;
    }
    tracing::info!("containerd stopped");
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
}
