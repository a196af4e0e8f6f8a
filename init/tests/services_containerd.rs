//! The services against a real, private containerd (own root, state and
//! socket in a temp dir): the engine, the control socket and the `ros`
//! binary as PID 1 and the console use them, with `ros log-pipe` writing
//! the logs. Needs root (and containerd, runc or crun, busybox-static);
//! skipped loudly otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::runtime::Capability;
use system_services::containerd::Containerd;
use system_services::control::{self, Control};
use system_services::definition::{Context, Definitions};
use system_services::engine::Engine;
use system_services::order;
use system_services::restart::Backoff;
use system_services::runtime::ContainerRuntime;
use system_services::service::{RestartPolicy, Service, ServiceName};
use system_services::supervisor::{ServiceState, ServiceStatus, Supervised, supervise};
use tokio::sync::watch;

#[path = "../../system-services/tests/common/mod.rs"]
mod common;

use common::PrivateContainerd;

/// A client whose tasks log through `ros log-pipe`, as PID 1's do.
async fn client(daemon: &PrivateContainerd) -> Arc<Containerd> {
    Arc::new(
        daemon
            .client()
            .await
            .with_log_pipe(env!("CARGO_BIN_EXE_ros")),
    )
}

/// A root file system with busybox: enough for sh, sleep, grep, yes.
fn busybox_root(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("a static /bin/busybox (Debian's busybox-static)");
    for applet in [
        "sh", "sleep", "grep", "cat", "echo", "yes", "head", "seq", "true",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for dir in ["proc", "sys", "dev", "run", "tmp", "etc", "shared"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    root.to_path_buf()
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
    s.restart = RestartPolicy::Always;
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

fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

/// When a process started, in clock ticks since boot (/proc/PID/stat field 22).
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command may hold spaces; the fields after it do not.
    let after_command = &stat[stat.rfind(')').unwrap() + 2..];
    after_command.split(' ').nth(19).unwrap().parse().unwrap()
}

#[tokio::test]
async fn capabilities_inside_equal_those_asked() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = client(&daemon).await;
    let root = busybox_root(&daemon.path().join("rootfs"));
    let mut asked = service(
        "caps",
        &root,
        "grep -E '^(Cap|Seccomp:)' /proc/self/status; trap 'exit 0' TERM; sleep 1000 & wait",
    );
    asked.capabilities.insert(Capability::NetAdmin);
    let supervised = run(&runtime, &asked, daemon.path());
    supervised.settled().await;
    let log = wait_for_log(&daemon.path().join("caps.log"), "CapAmb").await;
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
    // Mode 2: a seccomp filter is on.
    assert_eq!(capability_line(&log, "Seccomp:"), "Seccomp:\t2");
    supervised.stop().await;
    assert_eq!(runtime.task("caps").await.unwrap(), None);
}

#[tokio::test]
async fn a_crash_is_restarted_within_two_seconds() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = client(&daemon).await;
    let root = busybox_root(&daemon.path().join("rootfs"));
    let supervised = run(
        &runtime,
        &service("crashy", &root, LONG_RUNNING),
        daemon.path(),
    );
    let mut status = supervised.status();
    let first = until(&mut status, "first start", |s| running_pid(s).is_some()).await;
    let pid = running_pid(&first).unwrap();
    let crashed_at = Instant::now();
    kill(pid, nix::sys::signal::Signal::SIGKILL);
    let again = until(&mut status, "restart", |s| {
        running_pid(s).is_some_and(|p| p != pid)
    })
    .await;
    let latency = crashed_at.elapsed();
    eprintln!("MEASURED restart latency (crash to running again): {latency:?}");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    assert_eq!(again.restarts, 1);
    supervised.stop().await;
}

#[tokio::test]
async fn containerd_killed_and_restarted_reattaches_without_duplicates() {
    require_root!();
    let mut daemon = PrivateContainerd::start();
    let runtime = client(&daemon).await;
    let root = busybox_root(&daemon.path().join("rootfs"));
    let supervised = run(
        &runtime,
        &service("steady", &root, LONG_RUNNING),
        daemon.path(),
    );
    let mut status = supervised.status();
    let before = until(&mut status, "start", |s| running_pid(s).is_some()).await;
    let pid = running_pid(&before).unwrap();
    let shims = daemon.shims();
    assert_eq!(shims.len(), 1);

    daemon.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted_at = Instant::now();
    daemon.spawn();
    let after = until(&mut status, "re-attach", |s| s.reattached).await;
    eprintln!(
        "MEASURED re-attach cost: {:?} from containerd answering again",
        restarted_at.elapsed()
    );
    assert_eq!(
        running_pid(&after),
        Some(pid),
        "the same task, not a new one"
    );
    assert_eq!(after.restarts, 0);
    let task = runtime.task("steady").await.unwrap().unwrap();
    assert_eq!(task.pid, pid);
    assert_eq!(daemon.shims(), shims, "no second shim, no duplicate task");
    supervised.stop().await;
}

#[tokio::test]
async fn a_stopped_service_is_gone_and_can_start_again() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = client(&daemon).await;
    let root = busybox_root(&daemon.path().join("rootfs"));
    let definition = service("again", &root, LONG_RUNNING);
    let first = run(&runtime, &definition, daemon.path());
    let started = Instant::now();
    let status = first.settled().await;
    eprintln!(
        "MEASURED one service created and started on containerd in {:?}",
        started.elapsed()
    );
    assert!(running_pid(&status).is_some(), "{status:?}");
    first.stop().await;
    assert_eq!(runtime.task("again").await.unwrap(), None);
    let second = run(&runtime, &definition, daemon.path());
    assert!(running_pid(&second.settled().await).is_some());
    second.stop().await;
}

/// An images directory (`image: ros/<name>` is `<dir>/<name>`) with one
/// busybox image, `ros/busybox`.
fn images(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    busybox_root(&images.join("busybox"));
    images
}

/// The definitions of a cloud-config's `rancher:` section.
fn definitions(rancher_yaml: &str, images: &Path) -> Definitions {
    let rancher: os_config::schema::Rancher =
        serde_norway::from_str(rancher_yaml).unwrap_or_else(|e| panic!("{rancher_yaml}: {e}"));
    let context = Context {
        images_dir: images.to_path_buf(),
        environment: BTreeMap::new(),
        defaults: Vec::new(),
        etc_dir: images.join("no-etc"),
        files_dir: images.join("no-files"),
    };
    Definitions::from_config(&rancher, &BTreeMap::new(), &context)
}

#[tokio::test]
async fn services_from_a_cloud_config_start_in_dependency_order() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = client(&daemon).await;
    let images = images(daemon.path());
    let yaml = r#"
services:
  console:
    image: ros/busybox
    command: sh -c "trap 'exit 0' TERM; sleep 1000 & wait"
    labels: {io.rancher.os.after: "syslog, ntp"}
    restart: always
  syslog:
    image: ros/busybox
    command: sh -c "trap 'exit 0' TERM; sleep 1000 & wait"
    labels: {io.rancher.os.after: udev}
    restart: always
  udev:
    image: ros/busybox
    command: sh -c "trap 'exit 0' TERM; sleep 1000 & wait"
    restart: always
  ntp:
    image: ros/busybox
    command: sh -c "trap 'exit 0' TERM; sleep 1000 & wait"
    labels: {io.rancher.os.before: console, io.rancher.os.after: udev}
    restart: always
  loop-a:
    image: ros/busybox
    command: [true]
    labels: {io.rancher.os.after: loop-b}
  loop-b:
    image: ros/busybox
    command: [true]
    labels: {io.rancher.os.after: loop-a}
  typo:
    image: ros/busybox
    command: [true]
    labels: {io.rancher.os.after: sylog}
"#;
    let definitions = definitions(yaml, &images);
    let services = definitions.enabled();
    let plan = order::plan(&services, |n| definitions.is_defined(n.as_str()));
    let problems: Vec<String> = plan.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "service typo: io.rancher.os.after names sylog, which is not defined",
            "services loop-a, loop-b wait for each other (a cycle in their after/before labels)",
        ]
    );
    let engine = Engine::new(Arc::clone(&runtime), daemon.path().join("logs"));
    let started = Instant::now();
    let statuses = engine.start_plan(&services, &plan).await;
    eprintln!(
        "MEASURED four services started in dependency order in {:?}",
        started.elapsed()
    );
    let pid = |name: &str| {
        statuses
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, s)| running_pid(s))
            .unwrap_or_else(|| panic!("{name} is not running: {statuses:?}"))
    };
    let time = |name: &str| start_time(pid(name));
    assert!(time("udev") < time("syslog"), "udev before syslog");
    assert!(time("udev") < time("ntp"), "udev before ntp");
    assert!(time("syslog") < time("console"), "syslog before console");
    assert!(time("ntp") < time("console"), "ntp before console");
    for name in ["loop-a", "loop-b", "typo"] {
        assert!(
            engine.status_of(&ServiceName::new(name).unwrap()).is_none(),
            "{name} must not start"
        );
    }
    // Four tasks, one shim: the services share a shim group.
    assert_eq!(daemon.shims().len(), 1, "one containerd-shim for all");
    engine.stop_all().await;
    // The shim goes once its last task is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.shims().is_empty() {
        assert!(Instant::now() < deadline, "the shim outlived its tasks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the built `ros` with `args` against PID 1's pieces in the test.
async fn ros(socket: &Path, logs: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ros"));
    command
        .arg("service")
        .args(args)
        .env("ROS_CONTROL_SOCKET", socket)
        .env("ROS_LOG_DIR", logs);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ros_service_lists_stops_starts_and_shows_logs() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = client(&daemon).await;
    let images = images(daemon.path());
    let logs = daemon.path().join("logs");
    let yaml = r#"
services:
  web:
    image: ros/busybox
    command: sh -c "echo hello from web; trap 'exit 0' TERM; sleep 1000 & wait"
    restart: always
  job:
    image: ros/busybox
    command: [sh, -c, "echo job done"]
    labels: {io.rancher.os.detach: "false"}
  off:
    image: ros/busybox
    command: [true]
disable: [off]
"#;
    let loaded = definitions(yaml, &images);
    let engine = Arc::new(Engine::new(Arc::clone(&runtime), &logs));
    let control = Arc::new(Control::new(
        Arc::clone(&engine),
        Box::new({
            let images = images.clone();
            move || definitions(yaml, &images)
        }),
    ));
    let socket = daemon.path().join("control.sock");
    let server = control::serve(&socket, Arc::clone(&control)).unwrap();
    let services = loaded.enabled();
    let plan = order::plan(&services, |n| loaded.is_defined(n.as_str()));
    engine.start_plan(&services, &plan).await;

    let list = ros(&socket, &logs, &["list"]).await;
    let listed = text(&list);
    assert!(list.status.success(), "{listed}");
    let row = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {listed}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("web")[1..3], ["enabled", "running"]);
    assert_eq!(row("job")[1..3], ["enabled", "exited"]);
    assert_eq!(row("off")[1..3], ["disabled", "disabled"]);
    assert_eq!(row("web")[6], "ros/busybox");

    let logs_out = ros(&socket, &logs, &["logs", "web"]).await;
    assert_eq!(text(&logs_out), "hello from web\n");
    assert_eq!(
        text(&ros(&socket, &logs, &["logs", "--tail", "1", "job"]).await),
        "job done\n"
    );

    let stop = ros(&socket, &logs, &["stop", "web"]).await;
    assert!(stop.status.success(), "{}", text(&stop));
    assert_eq!(text(&stop), "web: stopped\n");
    assert!(text(&ros(&socket, &logs, &["ps"]).await).lines().count() == 1);
    let start = ros(&socket, &logs, &["start", "web"]).await;
    assert!(
        text(&start).starts_with("web: running (pid "),
        "{}",
        text(&start)
    );
    let ps = text(&ros(&socket, &logs, &["ps"]).await);
    assert!(ps.contains("web") && ps.contains("sh -c"), "{ps}");

    let unknown = ros(&socket, &logs, &["stop", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        text(&unknown),
        "ros: nope: unknown service nope (defined: job, off, web)\n"
    );
    let unknown_logs = ros(&socket, &logs, &["logs", "nope"]).await;
    assert_eq!(unknown_logs.status.code(), Some(1));
    assert!(
        text(&unknown_logs).contains("unknown service nope"),
        "{}",
        text(&unknown_logs)
    );

    server.abort();
    engine.stop_all().await;
}

#[tokio::test]
async fn logs_go_through_ros_log_pipe_and_rotate_by_size() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = client(&daemon).await;
    let root = busybox_root(&daemon.path().join("rootfs"));
    // 2.5 MiB of output: more than two 1 MiB files.
    let chatty = service(
        "chatty",
        &root,
        "yes 'a line of output from the service, 64 bytes long.............' | head -c 2621440; echo; echo the end; echo to stderr >&2; trap 'exit 0' TERM; sleep 1000 & wait",
    );
    let supervised = run(&runtime, &chatty, daemon.path());
    supervised.settled().await;
    let log = daemon.path().join("chatty.log");
    let all = || {
        let files = system_services::logs::tail(&log, 2, None).unwrap_or_default();
        String::from_utf8_lossy(&files).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    // stdout and stderr are two pipes: their lines interleave in any order.
    while !(all().contains("\nthe end\n") && all().contains("\nto stderr\n")) {
        assert!(Instant::now() < deadline, "output incomplete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let rotated = daemon.path().join("chatty.log.1");
    let oldest = daemon.path().join("chatty.log.2");
    assert!(size(&rotated) > 900_000 && size(&rotated) <= 1 << 20);
    assert!(size(&oldest) > 900_000 && size(&oldest) <= 1 << 20);
    assert!(size(&log) < 1 << 20);
    assert!(!daemon.path().join("chatty.log.3").exists());
    // Whole lines only: rotation never cuts one.
    for file in [&oldest, &rotated] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.ends_with('\n'), "{}", file.display());
    }
    supervised.stop().await;
}

#[tokio::test]
async fn a_registry_that_does_not_answer_fails_naming_the_image_and_is_retried() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = client(&daemon).await;
    // Nothing listens on port 1: the pull's connection is refused.
    let mut remote = service("remote", Path::new("/unused"), LONG_RUNNING);
    remote.root = system_services::root::Root::Image("127.0.0.1:1/app:1".into());
    let supervised = run(&runtime, &remote, daemon.path());
    let status = supervised.settled().await;
    let ServiceState::Failed { error, permanent } = status.state else {
        panic!("{status:?}")
    };
    assert!(!permanent, "a registry may come back: {error}");
    assert!(error.contains("127.0.0.1:1/app:1"), "{error}");
    supervised.stop().await;
}
