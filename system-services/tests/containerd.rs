//! The engine against a real, private containerd (own root, state and
//! socket in a temp dir) with crun. Needs root; skipped loudly otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::PrivateContainerd;
use oci_spec::runtime::Capability;
use system_services::containerd::Containerd;
use system_services::restart::Backoff;
use system_services::runtime::ContainerRuntime;
use system_services::service::{Service, ServiceName};
use system_services::supervisor::{ServiceState, ServiceStatus, Supervised, supervise};
use tokio::sync::watch;

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
    let spec = system_services::spec::build(service).unwrap();
    let log = log_dir.join(format!("{}.log", service.name));
    supervise(Arc::clone(runtime), service, spec, log, Backoff::default())
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
