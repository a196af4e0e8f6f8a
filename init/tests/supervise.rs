//! The reaper and the containerd supervisor with real child processes.
//! `waitpid(-1)` reaps every child of the process, so these tests take
//! turns: one reaper at a time, in a test binary of their own.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use ros::host::Shutdown;
use ros::supervise::containerd::{Limits, supervise, supervise_with};
use ros::supervise::reaper::Reaper;
use system_services::daemon::DaemonConfig;
use tokio::sync::watch;

static ONE_REAPER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `future` on a current-thread runtime, as PID 1 does.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_REAPER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_reaper_delivers_exit_codes_of_spawned_children() {
    let _turn = take_turn();
    block_on(async {
        let reaper = Reaper::start().unwrap();
        let ok = reaper.spawn(&mut Command::new("true")).unwrap();
        let failing = reaper
            .spawn(Command::new("sh").args(["-c", "exit 7"]))
            .unwrap();
        let killed = reaper
            .spawn(Command::new("sh").args(["-c", "kill -9 $$"]))
            .unwrap();
        assert_eq!(ok.exit.await.unwrap(), 0);
        assert_eq!(failing.exit.await.unwrap(), 7);
        assert_eq!(killed.exit.await.unwrap(), 137);
    });
}

#[test]
fn the_reaper_collects_orphans_nobody_waits_for() {
    let _turn = take_turn();
    block_on(async {
        let reaper = Reaper::start().unwrap();
        // The grandchild is orphaned to us (a subreaper) when sh exits.
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let parent = reaper
            .spawn(Command::new("sh").args(["-c", "sleep 0.2 & exit 0"]))
            .unwrap();
        assert_eq!(parent.exit.await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Nothing of ours is left unreaped: no zombies among our children.
        let children =
            std::fs::read_to_string(format!("/proc/self/task/{}/children", std::process::id()))
                .unwrap_or_default();
        for pid in children.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(!stat.contains(") Z "), "zombie left: {stat}");
        }
    });
}

#[test]
fn containerd_is_restarted_when_it_dies_and_stopped_on_shutdown() {
    let _turn = take_turn();
    // A stand-in daemon: answers on the socket, dies after a moment.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let script = dir.path().join("daemon");
    std::fs::write(
        &script,
        format!(
            "#!/usr/bin/env python3\nimport socket,time,os\ns=socket.socket(socket.AF_UNIX)\n\
             try: os.unlink('{sock}')\nexcept OSError: pass\ns.bind('{sock}');s.listen()\ntime.sleep(0.3)\n",
            sock = socket.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = DaemonConfig {
        binary: script,
        config_file: dir.path().join("config.toml"),
        root: dir.path().join("root"),
        state: dir.path().join("state"),
        socket,
        log: dir.path().join("log/daemon.log"),
        cri: false,
    };
    block_on(async {
        let reaper = Reaper::start().unwrap();
        let (up_tx, mut up) = watch::channel(0);
        let (shutdown_tx, shutdown) = watch::channel(None);
        let task = tokio::spawn(supervise(reaper, config, up_tx, shutdown));
        // Generation 2 means: it came up, died, and came up again.
        tokio::time::timeout(Duration::from_secs(30), up.wait_for(|g| *g >= 2))
            .await
            .unwrap()
            .unwrap();
        shutdown_tx.send_replace(Some(Shutdown::PowerOff));
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
    });
    let written = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(written.contains("disabled_plugins"), "{written}");
}

/// `/bin/sh -c script`, as a runcmd entry.
fn sh(script: impl Into<String>) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

#[test]
fn commands_run_in_order_with_their_output_logged_and_failures_named() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/cloud-init.log");
    let marker = dir.path().join("marker");
    block_on(async {
        let reaper = Reaper::start().unwrap();
        let commands = vec![
            sh(format!("echo first; touch {}", marker.display())),
            sh(format!(
                "test -e {} && echo second; exit 3",
                marker.display()
            )),
            vec!["/no/such/program".to_string()],
        ];
        let errors = ros::apply::run_commands(
            &reaper,
            "runcmd",
            &commands,
            &log,
            ros::apply::RUNCMD_TIMEOUT,
        )
        .await;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("runcmd `/bin/sh -c test -e"),
            "{}",
            shown[0]
        );
        assert!(shown[0].contains("exited with 3"), "{}", shown[0]);
        assert!(
            shown[1].starts_with("runcmd `/no/such/program`: "),
            "{}",
            shown[1]
        );
    });
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_children_and_the_next_runs() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cloud-init.log");
    let child = dir.path().join("child");
    let started = std::time::Instant::now();
    block_on(async {
        let reaper = Reaper::start().unwrap();
        let commands = vec![
            sh(format!(
                "sleep 100000 & echo $! > {}; wait",
                child.display()
            )),
            sh("echo next"),
        ];
        let errors = ros::apply::run_commands(
            &reaper,
            "bootcmd",
            &commands,
            &log,
            Duration::from_millis(500),
        )
        .await;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("bootcmd `/bin/sh -c sleep 100000 & echo $! > "),
            "{}",
            shown[0]
        );
        assert!(
            shown[0].contains("still running after 500ms; killed"),
            "{}",
            shown[0]
        );
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "next\n");
    // The background sleep went with its group: its /proc entry goes
    // once whoever inherited it reaps it.
    let pid = std::fs::read_to_string(&child).unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::fs::read_to_string(proc_dir.join("stat"))
            .map(|stat| stat.contains(") Z "))
            .unwrap_or(true)
    });
    assert!(gone, "{} still runs", proc_dir.display());
}

/// A stand-in daemon config for `binary` in `dir`.
fn daemon_in(dir: &std::path::Path, binary: std::path::PathBuf) -> DaemonConfig {
    DaemonConfig {
        binary,
        config_file: dir.join("config.toml"),
        root: dir.join("root"),
        state: dir.join("state"),
        socket: dir.join("d.sock"),
        log: dir.join("log/daemon.log"),
        cri: false,
    }
}

fn executable(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn a_containerd_whose_socket_never_comes_is_killed_and_started_again() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let script = dir.path().join("daemon");
    // Starts, never makes its socket.
    executable(
        &script,
        &format!(
            "#!/bin/sh\necho $$ GOGC=$GOGC >> {}\nexec sleep 100000\n",
            starts.display()
        ),
    );
    let config = daemon_in(dir.path(), script);
    let limits = Limits {
        socket_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    block_on(async {
        let reaper = Reaper::start().unwrap();
        let (up_tx, up) = watch::channel(0);
        let (shutdown_tx, shutdown) = watch::channel(None);
        let task = tokio::spawn(supervise_with(reaper, config, limits, up_tx, shutdown));
        let restarted = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let count = std::fs::read_to_string(&starts).unwrap_or_default();
                if count.lines().count() >= 2 {
                    return count;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(*up.borrow(), 0, "it never answered");
        // Every start gets the Go runtime's settings (unless the test
        // runs with its own, which then win).
        if std::env::var_os("GOGC").is_none() {
            assert!(
                restarted.lines().all(|line| line.ends_with(" GOGC=50")),
                "{restarted}"
            );
        }
        // The first is gone: killed, not left beside the second.
        let first = restarted.lines().next().unwrap().split(' ').next().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{first}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
        // A shutdown while it starts is not held up by the wait.
        shutdown_tx.send_replace(Some(Shutdown::PowerOff));
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .unwrap()
            .unwrap();
    });
}

#[test]
fn a_stopped_containerd_is_restarted_once_its_probes_go_unanswered() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let pids = dir.path().join("pids");
    let script = dir.path().join("daemon");
    // Answers every connection with a byte, as a gRPC server answers the
    // HTTP/2 preface with its settings.
    executable(
        &script,
        &format!(
            "#!/usr/bin/env python3\nimport socket,os\nopen('{pids}','a').write(f'{{os.getpid()}}\\n')\n\
             s=socket.socket(socket.AF_UNIX)\ntry: os.unlink('{sock}')\nexcept OSError: pass\n\
             s.bind('{sock}');s.listen()\nwhile True:\n  c,_=s.accept()\n  try: c.recv(64);c.send(b'x')\n  except OSError: pass\n  c.close()\n",
            pids = pids.display(),
            sock = socket.display()
        ),
    );
    let config = daemon_in(dir.path(), script);
    let limits = Limits {
        socket_timeout: Duration::from_secs(20),
        probe_interval: Duration::from_millis(200),
        // Generous: the test host is loaded; a stopped daemon never answers.
        probe_timeout: Duration::from_secs(1),
        probe_failures: 3,
    };
    block_on(async {
        let reaper = Reaper::start().unwrap();
        let (up_tx, mut up) = watch::channel(0);
        let (shutdown_tx, shutdown) = watch::channel(None);
        let task = tokio::spawn(supervise_with(reaper, config, limits, up_tx, shutdown));
        tokio::time::timeout(Duration::from_secs(20), up.wait_for(|g| *g >= 1))
            .await
            .unwrap()
            .unwrap();
        // Answering, it is left alone.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(*up.borrow(), 1);
        assert!(ros::supervise::containerd::answers(&socket, Duration::from_secs(2)).await);
        let first: i32 = std::fs::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
        assert!(!ros::supervise::containerd::answers(&socket, Duration::from_millis(300)).await);
        tokio::time::timeout(Duration::from_secs(20), up.wait_for(|g| *g >= 2))
            .await
            .unwrap()
            .unwrap();
        let all = std::fs::read_to_string(&pids).unwrap();
        assert_eq!(all.lines().count(), 2, "{all}");
        assert_ne!(all.lines().nth(1).unwrap(), first.to_string());
        shutdown_tx.send_replace(Some(Shutdown::PowerOff));
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
    });
}
