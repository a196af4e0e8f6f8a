//! The reaper and the containerd supervisor with real child processes.
//! `waitpid(-1)` reaps every child of the process, so these tests take
//! turns: one reaper at a time, in a test binary of their own.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use ros::host::Shutdown;
use ros::supervise::containerd::supervise;
use ros::supervise::reaper::Reaper;
use system_services::daemon::DaemonConfig;
use tokio::sync::watch;

static ONE_REAPER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_REAPER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_reaper_delivers_exit_codes_of_spawned_children() {
    let _turn = take_turn();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
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
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
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
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
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

#[test]
fn commands_run_in_order_with_their_output_logged_and_failures_named() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/cloud-init.log");
    let marker = dir.path().join("marker");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let reaper = Reaper::start().unwrap();
            let commands = vec![
                vec![
                    "/bin/sh".to_string(),
                    "-c".into(),
                    format!("echo first; touch {}", marker.display()),
                ],
                vec![
                    "/bin/sh".to_string(),
                    "-c".into(),
                    format!("test -e {} && echo second; exit 3", marker.display()),
                ],
                vec!["/no/such/program".to_string()],
            ];
            let errors = ros::apply::run_commands(&reaper, "runcmd", &commands, &log).await;
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
