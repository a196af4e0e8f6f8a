//! The built `ros` binary (and the same binary named `docker`) against a
//! private containerd, busybox pushed to a local `docker-registry` named
//! as insecure in the configuration, task output through `ros log-pipe`.
//! Needs root; skipped loudly otherwise.

#[path = "../../system-services/tests/common/mod.rs"]
mod common;
#[path = "../../workloads/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::PrivateContainerd;
use support::LocalRegistry;

struct Cli {
    daemon: PrivateContainerd,
    dir: tempfile::TempDir,
}

impl Cli {
    fn command(&self, program: &Path, args: &[&str]) -> Output {
        let config_root = self.dir.path().join("config");
        Command::new(program)
            .args(args)
            .env("ROS_CONTAINERD_SOCKET", &self.daemon.config.socket)
            .env("ROS_CONTAINERD_NAMESPACE", &self.daemon.namespace)
            .env("ROS_OCI_RUNTIME", common::oci_runtime())
            .env("ROS_WORKLOADS_DIR", self.dir.path().join("workloads"))
            .env("ROS_WORKLOADS_PROGRAM", env!("CARGO_BIN_EXE_ros"))
            .env("ROS_NET_HOOK", "/bin/true")
            .env("ROS_CONFIG_ROOT", config_root)
            .output()
            .unwrap()
    }

    fn ros(&self, args: &[&str]) -> Output {
        self.command(Path::new(env!("CARGO_BIN_EXE_ros")), args)
    }

    fn docker(&self) -> PathBuf {
        let link = self.dir.path().join("bin/docker");
        if !link.exists() {
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ros"), &link).unwrap();
        }
        link
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{:?}: {}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ros_and_docker_run_ps_exec_and_rm_against_the_user_containerd() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let registry = LocalRegistry::start();
    let image = registry.push_busybox("cli").await;
    let dir = tempfile::tempdir().unwrap();
    // The registry is plain HTTP: named in rancher.docker.insecure_registry.
    let cloud_config = os_config::ConfigPaths::under(dir.path().join("config")).cloud_config_file();
    std::fs::create_dir_all(cloud_config.parent().unwrap()).unwrap();
    std::fs::write(
        &cloud_config,
        format!(
            "rancher:\n  docker:\n    insecure_registry:\n    - {}\n",
            registry.address
        ),
    )
    .unwrap();
    let cli = Cli { daemon, dir };

    // Pulled on the way, progress on stderr, the output alone on stdout.
    let output = cli.ros(&["run", "--rm", &image, "echo", "hi"]);
    assert_eq!(ok(&output), "hi\n");
    assert!(
        text(&output.stderr).contains("pulled "),
        "{}",
        text(&output.stderr)
    );
    // `ros pull`: a line per step when not on a terminal; present now.
    let pulled = ok(&cli.ros(&["pull", &image]));
    assert!(pulled.contains("already present"), "{pulled}");
    assert!(pulled.contains("pulled "), "{pulled}");
    assert_eq!(ok(&cli.ros(&["ps", "-a", "-q"])), "", "--rm left nothing");

    let docker = cli.docker();
    let output = cli.command(&docker, &["run", "--rm", &image, "echo", "hi"]);
    assert_eq!(ok(&output), "hi\n");
    let output = cli.command(&docker, &["swarm", "init"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("'swarm' is not supported"),
        "{}",
        text(&output.stderr)
    );

    // The container's exit code is ours.
    let output = cli.ros(&[
        "run",
        "--rm",
        "--net",
        "none",
        &image,
        "sh",
        "-c",
        "echo bye >&2; exit 7",
    ]);
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(text(&output.stdout), "bye\n", "stderr lands in the log too");

    // A bad flag value names the flag; exit 2.
    let output = cli.ros(&["run", "-p", "80", &image]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("-p \"80\""),
        "{}",
        text(&output.stderr)
    );

    assert_eq!(
        ok(&cli.ros(&[
            "run",
            "-d",
            "--name",
            "sleeper",
            &image,
            "sh",
            "-c",
            "echo started; sleep 1000"
        ])),
        "sleeper\n"
    );
    let ps = ok(&cli.ros(&["ps"]));
    let row = ps
        .lines()
        .find(|l| l.starts_with("sleeper "))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(row.contains(" Up "), "{ps}");
    let output = cli.command(
        &docker,
        &[
            "exec",
            "sleeper",
            "sh",
            "-c",
            "echo from-exec; echo to-err >&2; exit 4",
        ],
    );
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(text(&output.stdout), "from-exec\n");
    assert_eq!(text(&output.stderr), "to-err\n");
    assert_eq!(ok(&cli.ros(&["logs", "sleeper"])), "started\n");

    // rm refuses it running, naming it; other names are still tried.
    let output = cli.ros(&["rm", "sleeper", "nobody"]);
    assert_eq!(output.status.code(), Some(1));
    let errors = text(&output.stderr);
    assert!(errors.contains("container sleeper is running"), "{errors}");
    assert!(errors.contains("no such container: nobody"), "{errors}");
    assert_eq!(ok(&cli.ros(&["rm", "-f", "sleeper"])), "sleeper\n");
    assert_eq!(ok(&cli.ros(&["ps", "-a", "-q"])), "");

    // A terminal in the background: the shim copies it to the log pipe.
    let begun = std::time::Instant::now();
    let output = cli.ros(&[
        "run",
        "-d",
        "-t",
        "--name",
        "tty",
        "--net",
        "none",
        &image,
        "sh",
        "-c",
        "tty; echo on-a-tty",
    ]);
    eprintln!(
        "MEASURED: `ros run -d` process (image present), start to exit: {:?}",
        begun.elapsed()
    );
    assert_eq!(ok(&output), "tty\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ps = ok(&cli.ros(&["ps", "-a"]));
        if ps.contains("Exited (0)") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ps}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = ok(&cli.ros(&["logs", "tty"]));
    assert!(
        log.contains("/dev/pts/0") && log.contains("on-a-tty"),
        "{log}"
    );
}
