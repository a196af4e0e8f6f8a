//! The system containerd: written its config, started, watched, restarted
//! with backoff when it dies. Its shims keep the service tasks alive
//! meanwhile; the service supervisors re-attach once it is back. One that
//! stops answering is restarted only if it also stopped working: short of
//! memory a live containerd goes silent while it pages itself back in,
//! and killing it would free little and cost a full restart.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use system_services::daemon::{DaemonConfig, GO_RUNTIME_ENV};
use system_services::restart::Backoff;
use tokio::sync::watch;
use tokio::time::Instant;

use super::reaper::Reaper;
use crate::host::Shutdown;

const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long containerd may take to answer, at its start and afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From spawn to a socket that accepts: containerd loads its plugins
    /// in a second or two on hardware, tens of seconds under TCG on a
    /// loaded host; past this it is killed and started again.
    pub socket_timeout: Duration,
    /// How often a running containerd is asked whether it answers.
    pub probe_interval: Duration,
    /// How long one answer may take.
    pub probe_timeout: Duration,
    /// Unanswered probes in a row after which it is killed and started
    /// again: one may be a busy moment, several are a hang.
    pub probe_failures: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            socket_timeout: Duration::from_secs(120),
            probe_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(5),
            probe_failures: 3,
        }
    }
}

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

    /// A containerd that answers at once and stops when asked, without
    /// a process: for tests of the boot's steps.
    #[cfg(test)]
    pub fn already_up() -> Self {
        let (up_tx, up) = watch::channel(1);
        let (stop, mut stop_rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let _ = stop_rx.wait_for(Option::is_some).await;
            drop(up_tx);
        });
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
    shutdown: watch::Receiver<Option<Shutdown>>,
) {
    supervise_with(reaper, config, Limits::default(), up, shutdown).await;
}

/// [`supervise`] with its time limits given. A containerd whose socket
/// does not accept within `socket_timeout`, or that stops answering
/// `probe_failures` probes in a row, is killed and started again.
pub async fn supervise_with(
    reaper: Arc<Reaper>,
    config: DaemonConfig,
    limits: Limits,
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
            answered = wait_for_socket(&config.socket, limits.socket_timeout) => {
                if answered {
                    generation += 1;
                    tracing::info!(pid = daemon.pid, generation, "containerd is up");
                    up.send_replace(generation);
                } else {
                    crate::console::report(&format!(
                        "containerd (pid {}): {} did not accept in {} s; restarting it",
                        daemon.pid,
                        config.socket.display(),
                        limits.socket_timeout.as_secs()
                    ));
                    kill_now(daemon).await;
                    tokio::time::sleep(backoff.delay_after(started.elapsed())).await;
                    continue;
                }
            }
            code = &mut daemon.exit => {
                tracing::error!(code = code.unwrap_or(-1), "containerd exited while starting");
                tokio::time::sleep(backoff.delay_after(started.elapsed())).await;
                continue;
            }
            () = stop_requested(&mut shutdown) => {
                stop(daemon).await;
                return;
            }
        }
        tokio::select! {
            code = &mut daemon.exit => {
                let delay = backoff.delay_after(started.elapsed());
                tracing::error!(code = code.unwrap_or(-1), ?delay, "containerd died; restarting");
                tokio::time::sleep(delay).await;
            }
            unanswered = stops_answering(&config.socket, daemon.pid, &limits) => {
                crate::console::report(&format!(
                    "containerd (pid {}) did not answer {unanswered} probes in a row; restarting it",
                    daemon.pid
                ));
                kill_now(daemon).await;
                tokio::time::sleep(backoff.delay_after(started.elapsed())).await;
            }
            () = stop_requested(&mut shutdown) => {
                stop(daemon).await;
                return;
            }
        }
    }
}

/// How many times `probe_failures` unanswered probes a containerd that
/// keeps working (CPU time, page faults) gets before it is restarted all
/// the same: short of memory it pages its binary back in from the medium
/// for minutes, and a restart would only page it in again.
const BUSY_ALLOWANCE: u32 = 10;

/// Resolves once `limits.probe_failures` probes in a row went
/// unanswered while containerd did no work in between (stopped or
/// deadlocked), or
/// [`BUSY_ALLOWANCE`] times that many while it worked; never while
/// containerd answers. Gives the number of probes in a row unanswered.
async fn stops_answering(socket: &Path, pid: u32, limits: &Limits) -> u32 {
    let (mut idle, mut busy) = (0, 0);
    let mut work = work_done(pid);
    loop {
        tokio::time::sleep(limits.probe_interval).await;
        if answers(socket, limits.probe_timeout).await {
            (idle, busy) = (0, 0);
            work = work_done(pid);
            continue;
        }
        let now = work_done(pid);
        let working = now.is_some() && now != work;
        work = now;
        if working {
            (idle, busy) = (0, busy + idle + 1);
        } else {
            idle += 1;
        }
        tracing::warn!(idle, busy, socket = %socket.display(), "containerd did not answer a probe");
        if idle >= limits.probe_failures
            || idle + busy >= limits.probe_failures.saturating_mul(BUSY_ALLOWANCE)
        {
            return idle + busy;
        }
    }
}

/// The work a process has done so far: its major page faults plus its
/// CPU time in ticks, from `/proc/PID/stat`; `None` when unreadable.
/// A stopped or deadlocked process's count stands still; one paging
/// under memory pressure or computing moves.
fn work_done(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    work_in_stat(&stat)
}

/// [`work_done`] from the text of a `/proc/PID/stat` (proc(5)): the
/// fields after the command name, which may hold spaces and `)`, start
/// with the state (field 3); majflt is field 12, utime 14, stime 15.
pub fn work_in_stat(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(field(12)? + field(14)? + field(15)?)
}

/// The HTTP/2 client preface: a gRPC server answers it with its SETTINGS.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the daemon behind `socket` answers within `timeout`: it
/// accepts a connection and says something back to the HTTP/2 preface.
/// A stopped (or deadlocked) daemon's socket still accepts (the kernel
/// queues the connection), so accepting alone proves nothing.
pub async fn answers(socket: &Path, timeout: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await.ok()?;
        stream.write_all(HTTP2_PREFACE).await.ok()?;
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte).await.ok()?;
        (read > 0).then_some(())
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(())))
}

/// SIGKILL at once: it does not answer, so it would not stop on SIGTERM
/// either (a stopped process does not even see it).
async fn kill_now(daemon: super::reaper::Spawned) {
    let pid = Pid::from_raw(i32::try_from(daemon.pid).unwrap_or(i32::MAX));
    let _ = kill(pid, Signal::SIGKILL);
    let _ = daemon.exit.await;
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
    let mut command = Command::new(&config.binary);
    // A value in our own environment wins (the kernel passes `GOGC=100`
    // on its command line to PID 1's): to measure against the default.
    for (key, value) in GO_RUNTIME_ENV {
        if std::env::var_os(key).is_none() {
            command.env(key, value);
        }
    }
    reaper.spawn(
        command
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_major_faults_plus_cpu_time_whatever_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt
        // cminflt majflt cmajflt utime stime ...
        let stat = "53 (contai) nerd) S 1 53 53 0 -1 4194560 900 0 7 0 20 5 0 0 20 0";
        assert_eq!(work_in_stat(stat), Some(7 + 20 + 5));
    }

    #[test]
    fn a_cut_or_garbled_stat_gives_no_work() {
        assert_eq!(work_in_stat("53 (containerd) S 1 53"), None);
        assert_eq!(work_in_stat("no parenthesis here"), None);
        assert_eq!(
            work_in_stat("53 (containerd) S 1 53 53 0 -1 4194560 900 0 x 0 20 5"),
            None
        );
    }

    /// Probes a socket nobody listens on while `child` runs; gives how
    /// many went unanswered before a restart was called for.
    fn unanswered_probes_of(mut child: std::process::Child) -> u32 {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            probe_interval: Duration::from_millis(300),
            probe_timeout: Duration::from_millis(100),
            probe_failures: 3,
            ..Limits::default()
        };
        let unanswered = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(stops_answering(
                &dir.path().join("none.sock"),
                child.id(),
                &limits,
            ));
        let _ = child.kill();
        let _ = child.wait();
        unanswered
    }

    #[test]
    fn a_silent_daemon_that_does_nothing_is_given_up_after_the_probe_failures() {
        let idle = Command::new("sleep").arg("60").spawn().unwrap();
        // Its exec is work too: probe only once it sleeps (a loaded
        // machine can take a while to get there).
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let before = work_done(idle.id());
            std::thread::sleep(Duration::from_millis(200));
            if before.is_some() && work_done(idle.id()) == before {
                break;
            }
        }
        assert_eq!(unanswered_probes_of(idle), 3);
    }

    #[test]
    fn a_silent_daemon_that_keeps_working_is_given_ten_times_as_many_probes() {
        let busy = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        assert_eq!(unanswered_probes_of(busy), 3 * BUSY_ALLOWANCE);
    }

    #[test]
    fn our_own_process_has_done_some_work() {
        let pid = std::process::id();
        let first = work_done(pid);
        assert!(first.is_some(), "/proc/{pid}/stat unreadable");
        // Burn CPU until a tick is counted; the count never goes back.
        let mut spin = 0u64;
        let start = std::time::Instant::now();
        while work_done(pid) == first && start.elapsed() < Duration::from_secs(5) {
            spin = spin.wrapping_add(std::hint::black_box(1));
        }
        assert!(work_done(pid) > first, "no work counted after {spin} loops");
    }
}
