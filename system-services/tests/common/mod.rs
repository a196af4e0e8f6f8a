//! Helpers shared by the host integration tests: a private containerd
//! (own root, state and socket in a temp dir) and the root check.
// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use system_services::containerd::Containerd;
use system_services::daemon::DaemonConfig;

/// A containerd of our own, killed when dropped.
pub struct PrivateContainerd {
    pub dir: tempfile::TempDir,
    pub config: DaemonConfig,
    child: Option<Child>,
}

impl PrivateContainerd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = DaemonConfig::under(dir.path());
        std::fs::write(&config.config_file, config.toml()).unwrap();
        let mut daemon = Self {
            dir,
            config,
            child: None,
        };
        daemon.spawn();
        daemon
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

    pub async fn client(&self) -> Containerd {
        let runtime = oci_runtime();
        eprintln!("OCI runtime for this host: {runtime}");
        Containerd::connect(&self.config.socket, "ros-test", runtime)
            .await
            .unwrap()
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        // Tasks and shims first: they outlive the daemon on purpose.
        for pid_file in ["init.pid", "shim.pid"] {
            for pid in pids_in(
                &self.config.state.join("io.containerd.runtime.v2.task"),
                pid_file,
            ) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.kill();
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

#[macro_export]
macro_rules! require_root {
    () => {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        if !$crate::common::is_root() {
            eprintln!(
                "\n*** SKIPPED: {} needs root (a private containerd, runc or crun) ***\n",
                module_path!()
            );
            return;
        }
    };
}
