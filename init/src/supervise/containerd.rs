//! The system containerd: written its config, started, watched, restarted
//! with backoff when it dies. Its shims keep the service tasks alive
//! meanwhile; the service supervisors re-attach once it is back.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use system_services::daemon::DaemonConfig;
use system_services::restart::Backoff;
use tokio::sync::watch;
use tokio::time::Instant;

use super::reaper::Reaper;
use crate::host::Shutdown;

/// How long a containerd start may take before its socket answers (TCG is slow).
const SOCKET_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A containerd under [`supervise`], as PID 1 runs the system one and
/// `ros user-containerd` the user one.
#[derive(Debug)]
pub struct Supervised {
    task: tokio::task::JoinHandle<()>,
    up: watch::Receiver<u64>,
    stop: watch::Sender<Option<Shutdown>>,
}

impl Supervised {
    /// Starts supervising a containerd run as `config` says.
    pub fn start(reaper: Arc<Reaper>, config: DaemonConfig) -> Self {
        let (up_tx, up) = watch::channel(0);
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(supervise(reaper, config, up_tx, stop_rx));
        Self { task, up, stop }
    }

    /// Resolves once its socket answered for the first time; an error
    /// when the supervisor ended before.
    pub async fn answering(&mut self) -> Result<(), watch::error::RecvError> {
        self.up
            .wait_for(|generation| *generation > 0)
            .await
            .map(|_| ())
    }

    /// Stops containerd and waits for its supervisor to end.
    pub async fn stop(self, how: Shutdown) -> Result<(), tokio::task::JoinError> {
        self.stop.send_replace(Some(how));
        self.task.await
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
            // The kernel starts PID 1 without PATH; containerd finds its
            // shim and the shim the OCI runtime through it.
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
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
