//! The user's containers end to end: a private containerd, busybox pushed
//! to a local `docker-registry`, and `workloads::Engine` running it.
//! Needs root; skipped loudly otherwise.

#[path = "../../system-services/tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::PrivateContainerd;
use support::LocalRegistry;
use system_services::image::PullEvent;
use system_services::runtime::ContainerRuntime;
use system_services::service::RestartPolicy;
use tokio::sync::watch;
use workloads::engine::Started;
use workloads::flags::{NetMode, parse_name, parse_port, parse_volume};
use workloads::keeper::{KeeperTiming, keep_with};
use workloads::status::State;
use workloads::{Engine, RunOptions, Settings, WorkloadError};

struct Fixture {
    // Dropped last: the daemon outlives the engine's channel.
    engine: Engine,
    image: String,
    dir: tempfile::TempDir,
    registry: LocalRegistry,
    daemon: PrivateContainerd,
}

impl Fixture {
    async fn new() -> Self {
        let daemon = PrivateContainerd::start();
        let registry = LocalRegistry::start();
        let image = registry.push_busybox("1").await;
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(&daemon, &registry, dir.path());
        let engine = Engine::connect(settings).await.unwrap();
        Self {
            engine,
            image,
            dir,
            registry,
            daemon,
        }
    }

    fn options(&self, name: &str, net: NetMode, command: &[&str]) -> RunOptions {
        RunOptions {
            name: Some(parse_name(name).unwrap()),
            net,
            command: command.iter().map(|s| s.to_string()).collect(),
            ..RunOptions::new(&self.image)
        }
    }

    async fn run(&self, options: &RunOptions) -> Result<Started, WorkloadError> {
        self.engine.run(options, &mut |_: PullEvent| {}).await
    }

    /// Runs the container, follows its output to its end; returns the
    /// exit code and the output.
    async fn run_to_exit(&self, options: &RunOptions) -> (u32, String) {
        let started = self.run(options).await.unwrap();
        let mut out = Vec::new();
        let code = self
            .engine
            .follow_until_exit(&started.name, &mut out)
            .await
            .unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    /// Creates the container and starts it attached (as `options.tty`
    /// and `options.interactive` say) to a caller typing `input`;
    /// returns the exit code and the caller's stdout and stderr.
    async fn run_attached(
        &self,
        options: &RunOptions,
        input: &str,
    ) -> (u32, tokio::io::DuplexStream, tokio::io::DuplexStream) {
        let name = self
            .engine
            .create(options, &mut |_: PullEvent| {})
            .await
            .unwrap();
        let (io, out, err) = caller(input);
        let code = self
            .engine
            .start_attached(&name, options.tty, options.interactive, io)
            .await
            .unwrap();
        (code, out, err)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.engine.settings().log_path(name)).unwrap_or_default()
    }

    async fn state(&self, name: &str) -> State {
        self.engine.state(name).await.unwrap()
    }

    /// Waits until `f` holds of the container's state.
    async fn until(&self, name: &str, what: &str, f: impl Fn(State) -> bool) -> State {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.state(name).await;
            if f(state) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: not {what}: {state:?}; log: {}; containerd: {}",
                self.log(name),
                self.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn pid(&self, name: &str) -> Option<u32> {
        self.engine
            .records()
            .task(name)
            .await
            .unwrap()
            .filter(|t| t.status == system_services::runtime::TaskStatus::Running)
            .map(|t| t.pid)
    }
}

fn settings(daemon: &PrivateContainerd, registry: &LocalRegistry, dir: &Path) -> Settings {
    let mut settings = Settings::system().with_dirs_under(dir);
    settings.socket = daemon.config.socket.clone();
    settings.namespace = daemon.namespace.clone();
    settings.oci_runtime = common::oci_runtime().into();
    // The shim appends to the log itself: `ros log-pipe` is the CLI test's.
    settings.log_pipe = None;
    // Stands in for `ros net-hook`: the bridge's netns gets only lo.
    settings.hook_program = "/bin/true".into();
    settings.volume_roots = vec![dir.join("host")];
    settings.pull.registry.plain_http = vec![registry.address.clone()];
    settings
}

fn exited(state: State) -> bool {
    matches!(state, State::Exited { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_containers_with_net_none_and_host_write_their_output_to_the_log() {
    require_root!();
    let f = Fixture::new().await;
    // The links on one line of stdout: the shim copies stdout and stderr
    // separately, so lines of the two interleave in any order.
    let script = "echo to-stdout; echo to-stderr >&2; echo host=$(hostname); echo links=$(ls /sys/class/net)";
    let none = f.options("quiet", NetMode::None, &["sh", "-c", script]);
    let started = f.run(&none).await.unwrap();
    assert_eq!(started.name, "quiet");
    assert!(started.pid > 0);
    f.until("quiet", "exited", exited).await;
    let log = f.log("quiet");
    assert!(
        log.contains("to-stdout\n") && log.contains("to-stderr\n"),
        "{log}"
    );
    assert!(log.contains("host=quiet\n"), "{log}");
    assert_eq!(
        links_in(&log),
        ["lo"],
        "only loopback in its own netns: {log}"
    );

    // Other tests add and remove links on the host meanwhile: the
    // container sees every link there before and after its run, and no
    // link that was in neither.
    let before = host_links();
    let host = f.options("shared", NetMode::Host, &["sh", "-c", script]);
    f.run(&host).await.unwrap();
    f.until("shared", "exited", exited).await;
    let after = host_links();
    let log = f.log("shared");
    let ours = workloads::files::host_name();
    assert!(log.contains(&format!("host={ours}\n")), "{log}");
    let seen = links_in(&log);
    for link in before.intersection(&after) {
        assert!(seen.contains(link), "the host's {link} is missing: {log}");
    }
    for link in &seen {
        assert!(
            before.contains(link) || after.contains(link),
            "{link} is not a host link: {log}"
        );
    }
}

fn host_links() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The interface names of the script's `links=` line, sorted.
fn links_in(log: &str) -> Vec<String> {
    let line = log
        .lines()
        .find_map(|line| line.strip_prefix("links="))
        .unwrap_or_else(|| panic!("no links= line in the log: {log}"));
    let mut links: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    links.sort();
    links
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_run_prints_the_output_and_returns_the_exit_code() {
    require_root!();
    let f = Fixture::new().await;
    let options = f.options(
        "once",
        NetMode::None,
        &["sh", "-c", "echo hello there; exit 3"],
    );
    let (code, out) = f.run_to_exit(&options).await;
    assert_eq!(code, 3);
    assert_eq!(out, "hello there\n");
    let state = f.state("once").await;
    assert!(
        matches!(
            state,
            State::Exited {
                code: 3,
                at: Some(_)
            }
        ),
        "{state:?}"
    );
    let rows = f.engine.ps(true).await.unwrap();
    assert!(
        rows[0]
            .state
            .text(std::time::SystemTime::now())
            .starts_with("Exited (3) ")
    );
    assert!(f.engine.ps(false).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_restart_and_rm_and_what_ps_says_between() {
    require_root!();
    let f = Fixture::new().await;
    // Pulled and unpacked by a first container, so the next run measures
    // only the container's own start.
    f.run(&f.options("warm", NetMode::None, &["true"]))
        .await
        .unwrap();
    let options = f.options("sleeper", NetMode::None, &["sleep", "1000"]);
    let begun = Instant::now();
    f.run(&options).await.unwrap();
    let took = begun.elapsed();
    eprintln!("MEASURED: ros run -d (image present) to task running: {took:?}");
    assert!(matches!(
        f.state("sleeper").await,
        State::Running { since: Some(_) }
    ));
    let rows = f.engine.ps(false).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].name, "sleeper");
    assert!(
        rows[0]
            .state
            .text(std::time::SystemTime::now())
            .starts_with("Up ")
    );
    assert_eq!(rows[0].command, ["sleep", "1000"]);

    // rm refuses a running container, naming it.
    let err = f.engine.remove("sleeper", false).await.unwrap_err();
    assert!(
        matches!(err, WorkloadError::Running(ref n) if n == "sleeper"),
        "{err}"
    );
    assert!(err.to_string().contains("container sleeper is running"));

    // PID 1 of the container ignores SIGTERM: SIGKILL after the timeout.
    let begun = Instant::now();
    f.engine
        .stop("sleeper", Duration::from_millis(500))
        .await
        .unwrap();
    assert!(begun.elapsed() >= Duration::from_millis(500));
    let state = f.state("sleeper").await;
    assert!(
        matches!(state, State::Exited { code: 137, .. }),
        "{state:?}"
    );
    assert!(f.engine.ps(false).await.unwrap().is_empty());

    let first = f.engine.start("sleeper").await.unwrap();
    assert_eq!(f.pid("sleeper").await, Some(first));
    let second = f
        .engine
        .restart("sleeper", Duration::from_millis(200))
        .await
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(f.pid("sleeper").await, Some(second));

    f.engine.remove("sleeper", true).await.unwrap();
    assert!(f.engine.records().get("sleeper").await.unwrap().is_none());
    assert!(f.engine.records().task("sleeper").await.unwrap().is_none());
    assert!(!f.engine.settings().container_run_dir("sleeper").exists());
    let err = f.engine.stop("sleeper", Duration::ZERO).await.unwrap_err();
    assert_eq!(err.to_string(), "no such container: sleeper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_twice_and_a_published_port_taken_twice_are_refused() {
    require_root!();
    let f = Fixture::new().await;
    let mut options = f.options("web", NetMode::Bridge, &["sleep", "1000"]);
    options.ports = vec![parse_port("18080:80").unwrap()];
    f.run(&options).await.unwrap();
    let err = f.run(&options).await.unwrap_err();
    assert!(
        matches!(err, WorkloadError::NameTaken(ref n) if n == "web"),
        "{err}"
    );
    // The first one is untouched.
    assert!(f.state("web").await.is_running());

    options.name = Some(parse_name("web2").unwrap());
    let err = f.run(&options).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "host port 18080/tcp is already published by container web"
    );
    assert!(f.engine.records().get("web2").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_flag_leaves_nothing_and_volumes_are_bound() {
    require_root!();
    let f = Fixture::new().await;
    let host_dir = f.dir.path().join("host/site");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("index.html"), "from the host\n").unwrap();
    let single = f.dir.path().join("host/motd");
    std::fs::write(&single, "one file\n").unwrap();
    let mut options = f.options(
        "gone",
        NetMode::None,
        &[
            "sh",
            "-c",
            "cat /site/index.html /etc/motd; echo kept > /named/file; cat /etc/hosts",
        ],
    );
    options.remove = true;
    options.volumes = vec![
        parse_volume(&format!("{}:/site:ro", host_dir.display())).unwrap(),
        parse_volume("cache:/named").unwrap(),
        parse_volume(&format!("{}:/etc/motd:ro", single.display())).unwrap(),
    ];
    let (code, text) = f.run_to_exit(&options).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("from the host\none file\n"), "{text}");
    assert!(text.contains("127.0.1.1\tgone\n"), "{text}");
    f.engine.remove("gone", false).await.unwrap();
    assert!(f.engine.records().get("gone").await.unwrap().is_none());
    assert!(!f.engine.settings().log_path("gone").exists());
    assert!(!f.engine.settings().container_run_dir("gone").exists());
    // Named volumes outlive their containers.
    let kept = f.engine.settings().volume_path("cache").join("file");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "kept\n");

    let mut outside = f.options("bad", NetMode::None, &["true"]);
    outside.volumes = vec![parse_volume("/etc:/host-etc").unwrap()];
    let err = f.run(&outside).await.unwrap_err().to_string();
    assert!(
        err.starts_with("-v \"/etc:/host-etc\": host path /etc is not under"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_image_is_named_in_the_error() {
    require_root!();
    let f = Fixture::new().await;
    let image = f.image.replace("test/busybox:1", "test/nothing:here");
    let options = RunOptions {
        name: Some(parse_name("ghost").unwrap()),
        net: NetMode::None,
        ..RunOptions::new(&image)
    };
    let err = f.run(&options).await.unwrap_err();
    assert!(matches!(err, WorkloadError::ImageNotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("unable to find image {image}: ")),
        "{err}"
    );
    assert!(f.engine.records().get("ghost").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keeper_restarts_by_policy_and_leaves_a_stopped_container_alone() {
    require_root!();
    let f = Fixture::new().await;
    let mut always = f.options("always", NetMode::None, &["sleep", "1000"]);
    always.restart = RestartPolicy::Always;
    f.run(&always).await.unwrap();
    let mut stopped = f.options("stopped", NetMode::None, &["sleep", "1000"]);
    stopped.restart = RestartPolicy::UnlessStopped;
    f.run(&stopped).await.unwrap();
    let once = f.options("once", NetMode::None, &["sleep", "1000"]);
    f.run(&once).await.unwrap();

    let timing = KeeperTiming {
        poll: Duration::from_millis(200),
        ..KeeperTiming::default()
    };
    let (stop_keeper, shutdown) = watch::channel(false);
    let keeper = tokio::spawn(keep_with(
        f.engine.containerd().clone(),
        f.engine.settings().clone(),
        shutdown,
        timing.clone(),
    ));
    // Let it find and watch them.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let before = f.pid("always").await.unwrap();
    let killed = Instant::now();
    f.engine.containerd().kill_task("always", 9).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        if let Some(pid) = f.pid("always").await.filter(|p| *p != before) {
            break pid;
        }
        assert!(Instant::now() < deadline, "always was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "MEASURED: keeper: SIGKILL to running again: {:?}",
        killed.elapsed()
    );
    assert_ne!(before, after);

    // A person stopped it: it stays down.
    f.engine
        .stop("stopped", Duration::from_millis(300))
        .await
        .unwrap();
    // Not restarted without a policy either.
    f.engine.containerd().kill_task("once", 9).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(
        f.state("stopped").await,
        State::Exited { code: 137, .. }
    ));
    assert!(matches!(
        f.state("once").await,
        State::Exited { code: 137, .. }
    ));

    // As after a reboot: the keeper is gone, the tasks too, no exit
    // recorded; the next keeper starts what the policy says.
    stop_keeper.send(true).unwrap();
    keeper.await.unwrap();
    for name in ["always", "stopped"] {
        let _ = f.engine.containerd().kill_task(name, 9).await;
        let _ = f.engine.containerd().wait_task(name).await;
        let _ = f.engine.containerd().delete_task(name).await;
    }
    assert!(f.engine.records().task("always").await.unwrap().is_none());
    let (stop_keeper, shutdown) = watch::channel(false);
    let keeper = tokio::spawn(keep_with(
        f.engine.containerd().clone(),
        f.engine.settings().clone(),
        shutdown,
        timing,
    ));
    f.until(
        "always",
        "running again after the reboot",
        State::is_running,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!f.state("stopped").await.is_running());
    assert!(!f.state("once").await.is_running());
    stop_keeper.send(true).unwrap();
    keeper.await.unwrap();
}

/// Caller streams in memory: `input` as stdin, stdout and stderr kept.
fn caller(
    input: &str,
) -> (
    workloads::exec::CallerIo,
    tokio::io::DuplexStream,
    tokio::io::DuplexStream,
) {
    let (out_ours, out_theirs) = tokio::io::duplex(1 << 16);
    let (err_ours, err_theirs) = tokio::io::duplex(1 << 16);
    let io = workloads::exec::CallerIo {
        stdin: Box::new(std::io::Cursor::new(input.as_bytes().to_vec())),
        stdout: Box::new(out_ours),
        stderr: Box::new(err_ours),
        size: Some((100, 30)),
        follow_resize: false,
    };
    (io, out_theirs, err_theirs)
}

async fn read_all(mut stream: tokio::io::DuplexStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_prints_the_commands_output_and_returns_its_exit_code() {
    require_root!();
    let f = Fixture::new().await;
    f.run(&f.options("box", NetMode::None, &["sleep", "1000"]))
        .await
        .unwrap();
    let options = workloads::exec::ExecOptions {
        command: ["sh", "-c", "echo out $GREETING; echo err >&2; exit 6"]
            .map(String::from)
            .to_vec(),
        env: vec!["GREETING=hello".into()],
        ..Default::default()
    };
    let (io, out, err) = caller("");
    let code = f.engine.exec("box", &options, io).await.unwrap();
    assert_eq!(code, 6);
    assert_eq!(read_all(out).await, "out hello\n");
    assert_eq!(read_all(err).await, "err\n");

    // -i: the caller's input reaches the process, and its end too.
    let options = workloads::exec::ExecOptions {
        command: vec!["cat".into()],
        interactive: true,
        ..Default::default()
    };
    let (io, out, _err) = caller("piped in\n");
    assert_eq!(f.engine.exec("box", &options, io).await.unwrap(), 0);
    assert_eq!(read_all(out).await, "piped in\n");
    // Nothing of the exec is left in the run directory.
    let left: Vec<_> = std::fs::read_dir(f.engine.settings().container_run_dir("box"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("exec-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    f.engine.stop("box", Duration::ZERO).await.unwrap();
    let (io, _out, _err) = caller("");
    let err = f.engine.exec("box", &options, io).await.unwrap_err();
    assert_eq!(err.to_string(), "container box is not running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_terminal_and_with_stdin_talks_to_the_caller() {
    require_root!();
    let f = Fixture::new().await;
    let mut options = f.options("term", NetMode::None, &["sh"]);
    options.tty = true;
    options.interactive = true;
    let (code, out, _err) = f
        .run_attached(&options, "stty size; echo from-$((6*7))\nexit 5\n")
        .await;
    let text = read_all(out).await;
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("from-42"), "{text}");
    assert!(text.contains("30 100"), "the caller's size: {text}");
    assert!(matches!(
        f.state("term").await,
        State::Exited { code: 5, .. }
    ));

    let mut options = f.options("pipe", NetMode::None, &["sh", "-c", "cat; echo err >&2"]);
    options.interactive = true;
    let (code, out, err) = f.run_attached(&options, "through stdin\n").await;
    assert_eq!(code, 0);
    assert_eq!(read_all(out).await, "through stdin\n");
    assert_eq!(read_all(err).await, "err\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_until_the_container_stops_and_tail_counts_lines() {
    require_root!();
    let f = Fixture::new().await;
    let script = "echo first; sleep 1; echo second";
    f.run(&f.options("talker", NetMode::None, &["sh", "-c", script]))
        .await
        .unwrap();
    let mut out = Vec::new();
    let begun = Instant::now();
    f.engine.logs("talker", None, true, &mut out).await.unwrap();
    assert!(
        begun.elapsed() >= Duration::from_millis(500),
        "followed until the end"
    );
    assert_eq!(String::from_utf8(out).unwrap(), "first\nsecond\n");
    let mut out = Vec::new();
    f.engine
        .logs("talker", Some(1), false, &mut out)
        .await
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "second\n");
    let err = f
        .engine
        .logs("nobody", None, false, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no such container: nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keeper_removes_a_detached_rm_container_once_it_exits() {
    require_root!();
    let f = Fixture::new().await;
    let (stop_keeper, shutdown) = watch::channel(false);
    let timing = KeeperTiming {
        poll: Duration::from_millis(200),
        ..KeeperTiming::default()
    };
    let keeper = tokio::spawn(keep_with(
        f.engine.containerd().clone(),
        f.engine.settings().clone(),
        shutdown,
        timing,
    ));
    let mut options = f.options("brief", NetMode::None, &["sh", "-c", "sleep 1; echo done"]);
    options.remove = true;
    f.run(&options).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.engine.records().get("brief").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "brief was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!f.engine.settings().log_path("brief").exists());
    stop_keeper.send(true).unwrap();
    keeper.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_user_given_by_name_is_found_in_the_images_passwd() {
    require_root!();
    let f = Fixture::new().await;
    let image = f.registry.push_busybox_as("nobody", Some("nobody")).await;
    let options = RunOptions {
        name: Some(parse_name("who").unwrap()),
        net: NetMode::None,
        command: ["sh", "-c", "id -u; id -g"].map(String::from).to_vec(),
        ..RunOptions::new(&image)
    };
    let (code, out) = f.run_to_exit(&options).await;
    assert_eq!(code, 0);
    assert_eq!(out, "65534\n65534\n");

    // -u NAME, for run and for exec, looked up the same way.
    let mut options = f.options("named", NetMode::None, &["sleep", "1000"]);
    options.user_name = Some("nobody:root".into());
    f.run(&options).await.unwrap();
    let exec = workloads::exec::ExecOptions {
        command: ["sh", "-c", "id -u; id -g; cat /proc/1/status | grep ^Uid"]
            .map(String::from)
            .to_vec(),
        user_name: Some("root".into()),
        ..Default::default()
    };
    let (io, out, _err) = caller("");
    assert_eq!(f.engine.exec("named", &exec, io).await.unwrap(), 0);
    let text = read_all(out).await;
    assert!(text.starts_with("0\n0\nUid:\t65534\t"), "{text}");
    options.name = Some(parse_name("unnamed").unwrap());
    options.user_name = Some("ghost".into());
    let err = f.run(&options).await.unwrap_err().to_string();
    assert!(err.starts_with("-u \"ghost\": "), "{err}");
}
