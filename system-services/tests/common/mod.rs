//! Helpers shared by the host integration tests (this crate's and the
//! `ros` crate's, which includes this file): a private containerd (own
//! root, state and socket in a temp dir, own containerd namespace) and
//! the root check.
// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use system_services::containerd::Containerd;
use system_services::daemon::DaemonConfig;

/// A containerd of our own, killed with its tasks and shims when dropped.
pub struct PrivateContainerd {
    pub dir: tempfile::TempDir,
    pub config: DaemonConfig,
    child: Option<Child>,
    /// Its own containerd namespace: the runc shim keeps its state under
    /// /run/containerd/runc/<namespace> whatever the daemon's state dir,
    /// so tests running side by side must not share one.
    pub namespace: String,
}

static NEXT_NAMESPACE: AtomicU32 = AtomicU32::new(0);

impl PrivateContainerd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = DaemonConfig::under(dir.path());
        std::fs::write(&config.config_file, config.toml()).unwrap();
        let n = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
        let mut daemon = Self {
            dir,
            config,
            child: None,
            namespace: format!("ros-test-{}-{n}", std::process::id()),
        };
        daemon.spawn();
        daemon
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.log)
            .unwrap();
        let child = Command::new(&self.config.binary)
            .arg("--config")
            .arg(&self.config.config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd from Debian's containerd package");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&self.config.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.config.log).unwrap_or_default()
    }

    /// A client in this daemon's namespace.
    pub async fn client(&self) -> Containerd {
        let runtime = oci_runtime();
        eprintln!("OCI runtime for this host: {runtime}");
        Containerd::connect(&self.config.socket, &self.namespace, runtime)
            .await
            .unwrap()
    }

    /// The pids of this daemon's shims, one per task: found by the
    /// daemon socket on their command line.
    pub fn shims(&self) -> Vec<i32> {
        let address = self.config.socket.display().to_string();
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let is_shim = args.first()?.ends_with(b"containerd-shim-runc-v2");
                let ours = args
                    .windows(2)
                    .any(|w| w[0] == b"-address" && w[1] == address.as_bytes());
                (is_shim && ours).then_some(pid)
            })
            .collect();
        pids.sort_unstable();
        pids
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        // Tasks and shims first: they outlive the daemon on purpose.
        let tasks = pids_in(
            &self.config.state.join("io.containerd.runtime.v2.task"),
            "init.pid",
        );
        for pid in tasks.into_iter().chain(self.shims()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.kill();
        for runtime in ["runc", "crun"] {
            let _ = std::fs::remove_dir_all(
                Path::new("/run/containerd")
                    .join(runtime)
                    .join(&self.namespace),
            );
        }
    }
}

/// The pids in every `<namespace>/<id>/<file>` below `dir`.
fn pids_in(dir: &Path, file: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for namespace in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for task in std::fs::read_dir(namespace.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(task.path().join(file)) {
                pids.extend(text.trim().parse::<i32>());
            }
        }
    }
    pids
}

/// crun needs a pure cgroup2 host (as our OS is); on a hybrid cgroup v1
/// host (CI machines often are) the tests use runc instead.
pub fn oci_runtime() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "crun"
    } else {
        "runc"
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether this runs in CI (`CI` set, as CI services do, and not to
/// `false` or `0`): tests that need root fail there instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

#[macro_export]
macro_rules! require_root {
    () => {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        if !$crate::common::is_root() {
            // In CI a skip would read as a pass.
            assert!(
                !$crate::common::in_ci(),
                "{} needs root (a private containerd and an OCI runtime): CI must run it as root",
                module_path!()
            );
            eprintln!(
                "\n*** SKIPPED: {} needs root (a private containerd and an OCI runtime) ***\n",
                module_path!()
            );
            return;
        }
    };
}
