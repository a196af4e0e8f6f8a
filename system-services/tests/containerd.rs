//! The engine against a real, private containerd (own root, state and
//! socket in a temp dir) with crun. Needs root; skipped loudly otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::runtime::Capability;
use system_services::containerd::Containerd;
use system_services::daemon::DaemonConfig;
use system_services::restart::Backoff;
use system_services::runtime::ContainerRuntime;
use system_services::service::{Service, ServiceName};
use system_services::supervisor::{ServiceState, ServiceStatus, Supervised, supervise};
use tokio::sync::watch;

/// A containerd of our own, killed when dropped.
struct PrivateContainerd {
    dir: tempfile::TempDir,
    config: DaemonConfig,
    child: Option<Child>,
}

impl PrivateContainerd {
    fn start() -> Self {
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

    fn spawn(&mut self) {
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
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.config.log).unwrap_or_default()
    }

    async fn client(&self) -> Containerd {
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
fn oci_runtime() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "crun"
    } else {
        "runc"
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        if !is_root() {
            eprintln!(
                "\n*** SKIPPED: {} needs root (a private containerd and crun) ***\n",
                module_path!()
            );
            return;
        }
    };
}

/// A root file system with busybox: enough for sh, sleep, grep.
fn busybox_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "grep", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for dir in ["proc", "sys", "dev", "run", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    root
}

/// Runs until SIGTERM: as PID 1 of its namespace a plain `sleep` would
/// ignore it and every stop would wait for the grace period.
const LONG_RUNNING: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

fn service(name: &str, root: &Path, script: &str) -> Service {
    let mut s = Service::new(
        ServiceName::new(name).unwrap(),
        root,
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    );
    s.restart = system_services::service::RestartPolicy::Always;
    s
}

fn run(runtime: &Arc<Containerd>, service: &Service, log_dir: &Path) -> Supervised {
    let log = log_dir.join(format!("{}.log", service.name));
    supervise(
        Arc::clone(runtime),
        service.clone(),
        log,
        Backoff::default(),
    )
}

async fn until(
    status: &mut watch::Receiver<ServiceStatus>,
    what: &str,
    f: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let outcome = tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| f(s)))
        .await
        .map(|found| found.map(|s| s.clone()));
    match outcome {
        Ok(Ok(found)) => found,
        _ => panic!(
            "timed out waiting for {what}; last status {:?}",
            *status.borrow()
        ),
    }
}

fn running_pid(status: &ServiceStatus) -> Option<u32> {
    match status.state {
        ServiceState::Running { pid } => Some(pid),
        _ => None,
    }
}

async fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {}: {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn capability_line(log: &str, name: &str) -> String {
    log.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} missing in {log:?}"))
        .to_string()
}

#[tokio::test]
async fn capabilities_inside_equal_those_asked() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = Arc::new(daemon.client().await);
    let root = busybox_root(daemon.dir.path());
    let mut asked = service(
        "caps",
        &root,
        "grep ^Cap /proc/self/status; trap 'exit 0' TERM; sleep 1000 & wait",
    );
    asked.capabilities.insert(Capability::NetAdmin);
    let supervised = run(&runtime, &asked, daemon.dir.path());
    supervised.settled().await;
    let log = wait_for_log(&daemon.dir.path().join("caps.log"), "CapAmb").await;
    // chown dac_override fowner fsetid kill setgid setuid setpcap
    // net_bind_service net_admin: bits 0 1 3 4 5 6 7 8 10 12.
    let expected = "00000000000015fb";
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(
            capability_line(&log, set),
            format!("{set}:\t{expected}"),
            "{log}"
        );
    }
    assert_eq!(capability_line(&log, "CapInh"), "CapInh:\t0000000000000000");
    assert_eq!(capability_line(&log, "CapAmb"), "CapAmb:\t0000000000000000");
    supervised.stop().await;
    assert_eq!(runtime.task("caps").await.unwrap(), None);
}

#[tokio::test]
async fn a_crash_is_restarted_within_two_seconds() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = Arc::new(daemon.client().await);
    let root = busybox_root(daemon.dir.path());
    let supervised = run(
        &runtime,
        &service("crashy", &root, LONG_RUNNING),
        daemon.dir.path(),
    );
    let mut status = supervised.status();
    let first = until(&mut status, "first start", |s| running_pid(s).is_some()).await;
    let pid = running_pid(&first).unwrap();
    let crashed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let again = until(&mut status, "restart", |s| {
        running_pid(s).is_some_and(|p| p != pid)
    })
    .await;
    let latency = crashed_at.elapsed();
    eprintln!("restart latency (crash to running again): {latency:?}");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    assert_eq!(again.restarts, 1);
    supervised.stop().await;
}

#[tokio::test]
async fn containerd_killed_and_restarted_reattaches_without_duplicates() {
    require_root!();
    let mut daemon = PrivateContainerd::start();
    let runtime = Arc::new(daemon.client().await);
    let root = busybox_root(daemon.dir.path());
    let supervised = run(
        &runtime,
        &service("steady", &root, LONG_RUNNING),
        daemon.dir.path(),
    );
    let mut status = supervised.status();
    let before = until(&mut status, "start", |s| running_pid(s).is_some()).await;
    let pid = running_pid(&before).unwrap();

    daemon.kill();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.spawn();
    let after = until(&mut status, "re-attach", |s| s.reattached).await;
    eprintln!(
        "re-attach after containerd restart: {:?} from the kill",
        down_at.elapsed()
    );
    assert_eq!(
        running_pid(&after),
        Some(pid),
        "the same task, not a new one"
    );
    assert_eq!(after.restarts, 0);
    let task = runtime.task("steady").await.unwrap().unwrap();
    assert_eq!(task.pid, pid);
    supervised.stop().await;
}

#[tokio::test]
async fn a_stopped_service_is_gone_and_can_start_again() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = Arc::new(daemon.client().await);
    let root = busybox_root(daemon.dir.path());
    let definition = service("again", &root, LONG_RUNNING);
    let first = run(&runtime, &definition, daemon.dir.path());
    let started = Instant::now();
    let status = first.settled().await;
    eprintln!(
        "one service created and started on containerd in {:?}",
        started.elapsed()
    );
    assert!(running_pid(&status).is_some(), "{status:?}");
    first.stop().await;
    assert_eq!(runtime.task("again").await.unwrap(), None);
    let second = run(&runtime, &definition, daemon.dir.path());
    assert!(running_pid(&second.settled().await).is_some());
    second.stop().await;
}
