//! `ros user-containerd`: the first process of the user containerd's
//! container, which has a PID namespace of its own (the user's workloads
//! never see the system services' processes).
//!
//! In order: it moves itself into a leaf cgroup, so the workloads' cgroups
//! (siblings of it under the container's cgroup namespace) can have
//! controllers; it runs containerd with [`DaemonConfig::user`], restarted
//! with backoff as PID 1 restarts the system one; once containerd answers
//! it loads the archives in `/var/lib/rancher/preload/docker` that were
//! not loaded before, then keeps the containers with a restart policy
//! running ([`workloads::keeper`]). As PID 1 of its namespace it reaps the
//! orphans (the shims). SIGTERM stops the containers, then containerd.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use system_services::containerd::Containerd;
use system_services::daemon::DaemonConfig;
use system_services::image::{PreloadOutcome, preload_dir};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::host::Shutdown;
use crate::supervise::containerd;
use crate::supervise::reaper::Reaper;

/// Where the user's image archives are loaded from at boot (RancherOS's).
pub const PRELOAD_DIR: &str = "/var/lib/rancher/preload/docker";
/// The sha256 of every archive loaded already, kept with the images.
const PRELOADED_RECORD: &str = "/var/lib/containerd/io.ros/preloaded";
/// Made once this boot's preload is over: `rancher.preload_wait` waits
/// for it before `ros: ready`.
pub const PRELOAD_DONE: &str = "/run/containerd/io.ros/preload-done";
/// The leaf cgroup this process and containerd move into.
const SUPERVISOR_CGROUP: &str = "supervisor";
/// How long the workloads get to stop before containerd goes.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs the user containerd until SIGTERM.
pub fn run() -> anyhow::Result<ExitCode> {
    if let Err(error) = leaf_cgroup(Path::new("/sys/fs/cgroup")) {
        // Containers still run; only their resource limits may not apply.
        eprintln!("ros user-containerd: cgroup controllers for the workloads: {error}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(supervise())
}

async fn supervise() -> anyhow::Result<ExitCode> {
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let reaper = Reaper::start().context("installing SIGCHLD handler")?;
    let daemon = DaemonConfig::user();
    let socket = daemon.socket.clone();
    let mut containerd = containerd::Supervised::start(Arc::clone(&reaper), daemon);
    let stopped = tokio::select! {
        answered = containerd.answering() => {
            answered.context("containerd supervisor ended")?;
            false
        }
        _ = terminate.recv() => true,
        _ = interrupt.recv() => true,
    };
    if stopped {
        let _ = containerd.stop(Shutdown::PowerOff).await;
        return Ok(ExitCode::SUCCESS);
    }
    let settings = workloads::Settings::system();
    let client = settings
        .connect()
        .await
        .with_context(|| format!("the user containerd at {}", socket.display()))?;

    preload(&client).await;
    let (stop_keeper, keeper_stop) = watch::channel(false);
    let keeper = tokio::spawn(workloads::keep(client.clone(), settings, keeper_stop));
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    println!("ros user-containerd: stopping the containers, then containerd");
    stop_keeper.send_replace(true);
    let _ = keeper.await;
    workloads::stop_all(&client, STOP_GRACE).await;
    let _ = containerd.stop(Shutdown::PowerOff).await;
    Ok(ExitCode::SUCCESS)
}

/// Loads the archives of [`PRELOAD_DIR`] not loaded before, each
/// reported on a line of the service's log, then marks the preload done.
async fn preload(client: &Containerd) {
    for outcome in preload_dir(client, Path::new(PRELOAD_DIR), Path::new(PRELOADED_RECORD)).await {
        println!("ros user-containerd: preload {}", describe(&outcome));
    }
    let done = Path::new(PRELOAD_DONE);
    if let Some(dir) = done.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(error) = std::fs::write(done, "") {
        eprintln!("ros user-containerd: {}: {error}", done.display());
    }
}

/// One line for a preload outcome.
pub fn describe(outcome: &PreloadOutcome) -> String {
    match outcome {
        PreloadOutcome::Loaded { file, images } => {
            format!("{}: loaded {}", file.display(), images.join(", "))
        }
        PreloadOutcome::AlreadyLoaded { file } => format!("{}: loaded before", file.display()),
        PreloadOutcome::Skipped { file, reason } => {
            format!("{}: skipped: {reason}", file.display())
        }
        PreloadOutcome::Failed { file, error } => format!("{}: failed: {error}", file.display()),
    }
}

/// Moves this process into a leaf cgroup below `root` and hands every
/// controller `root` has down to its children: cgroup v2 lets a cgroup
/// either hold processes or give controllers to children, not both.
fn leaf_cgroup(root: &Path) -> std::io::Result<()> {
    let leaf = root.join(SUPERVISOR_CGROUP);
    std::fs::create_dir_all(&leaf)?;
    std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())?;
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))?;
    let enable: Vec<String> = controllers
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if !enable.is_empty() {
        std::fs::write(root.join("cgroup.subtree_control"), enable.join(" "))?;
    }
    Ok(())
}
