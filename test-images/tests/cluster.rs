//! The cluster-agent stand-in against the registration server, both on
//! the host: the static musl `cluster-test-agent` runs as a real
//! process with `K3S_URL` pointing at the server's loopback address,
//! keeping its node password in a temporary directory
//! (`ROS_TEST_AGENT_NODE_DIR`, a test-only override of
//! `/etc/rancher/node`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use test_images::{RegistrationServer, agent_binary, agent_image};

const SECRET: &str = "t0ps3cret";
const WAIT: Duration = Duration::from_secs(30);

/// Every check the agent reports.
const CHECKS: [&str; 8] = [
    "k3s_data_mounted",
    "kubelet_shared",
    "pods_log_mounted",
    "node_dir_mounted",
    "cgroup_writable",
    "kmsg",
    "host_network",
    "pid_one",
];

/// A running agent, its output in files; killed when dropped.
struct Agent {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Agent {
    /// `cluster-test-agent agent ARGS` with only the `K3S_*` settings
    /// given and the node password kept in `node_dir`.
    fn start(env: &[(&str, &str)], node_dir: &Path, args: &[&str], logs: &Path) -> Self {
        std::fs::create_dir_all(logs).unwrap();
        let stdout = logs.join("stdout");
        let stderr = logs.join("stderr");
        let child = Command::new(agent_binary())
            .arg("agent")
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .env("ROS_TEST_AGENT_NODE_DIR", node_dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for it to end by itself.
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent still runs after {WAIT:?}; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(dir: &Path) -> RegistrationServer {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    RegistrationServer::start(&pki, SECRET)
}

fn settings<'a>(url: &'a str, token: &'a str, node: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("K3S_URL", url),
        ("K3S_TOKEN", token),
        ("K3S_NODE_NAME", node),
    ]
}

#[test]
fn an_agent_with_the_secure_token_registers_and_sends_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let node_dir = dir.path().join("node");
    let (url, token) = (server.url_for_host(), server.secure_token());
    let _agent = Agent::start(
        &settings(&url, &token, "worker-1"),
        &node_dir,
        &[
            "--node-label",
            "role=test",
            "--node-taint=dedicated=ci:NoSchedule",
        ],
        &dir.path().join("logs"),
    );
    let registrations = server.wait_for_registrations(1, WAIT);
    let registration = &registrations[0];
    assert_eq!(registration.node_name, "worker-1");
    assert_eq!(registration.labels, ["role=test"]);
    assert_eq!(registration.taints, ["dedicated=ci:NoSchedule"]);
    let names: Vec<&str> = registration.checks.keys().map(String::as_str).collect();
    let mut expected = CHECKS.to_vec();
    expected.sort();
    assert_eq!(names, expected);
    // On the host it is no container's PID 1 and none of the OS's
    // mounts are there.
    assert!(!registration.checks["pid_one"]);
    assert!(!registration.checks["node_dir_mounted"]);
    assert!(!registration.checks["k3s_data_mounted"]);
    assert_eq!(registration.checks["kmsg"], Path::new("/dev/kmsg").exists());
    assert!(!registration.persisted_password);
    let password = std::fs::read_to_string(node_dir.join("password")).unwrap();
    assert_eq!(registration.node_password, password.trim());
    assert_eq!(registration.node_password.len(), 32);
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(registration.boot_id, boot_id.trim());
    assert!(server.refused().is_empty());

    // Every 2 s: two in a little over 4 s.
    let started = Instant::now();
    server.wait_for_heartbeats("worker-1", 2, Duration::from_secs(10));
    assert!(started.elapsed() >= Duration::from_millis(3500));
    let stdout = _agent.stdout();
    assert!(
        stdout.contains(&format!(
            "cluster-test-agent: registered worker-1 with {url}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("cluster-test-agent: check pid_one: false"),
        "{stdout}"
    );
    for check in CHECKS.iter().chain(&["persisted_password"]) {
        assert!(
            stdout.contains(&format!("cluster-test-agent: check {check}: ")),
            "{check} not logged: {stdout}"
        );
    }
}

#[test]
fn an_agent_whose_server_goes_away_exits_1_at_the_next_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (url, token) = (server.url_for_host(), server.secure_token());
    let mut agent = Agent::start(
        &settings(&url, &token, "worker-1"),
        &dir.path().join("node"),
        &[],
        &dir.path().join("logs"),
    );
    server.wait_for_registrations(1, WAIT);
    let gone = Instant::now();
    drop(server);
    assert_eq!(agent.exit().code(), Some(1));
    assert!(
        gone.elapsed() < Duration::from_secs(5),
        "{:?}",
        gone.elapsed()
    );
    let stderr = agent.stderr();
    assert!(stderr.contains(&format!("connecting to {url}")), "{stderr}");
}

/// `curl` against the server trusting its CA: status and body.
fn curl(server: &RegistrationServer, ca: &Path, args: &[&str], path: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("{}{path}", server.url_for_host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.to_string(), body.to_string())
}

#[test]
fn the_server_serves_its_ca_and_refuses_heartbeats_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let ca = dir.path().join("pki/ca.pem");
    let (status, body) = curl(&server, &ca, &[], "/cacerts");
    assert_eq!(status, "200");
    assert_eq!(body.as_bytes(), server.ca_pem());

    let beat = ["-X", "POST", "-d", r#"{"node_name":"worker-1"}"#];
    let wrong = [&beat[..], &["-H", "Authorization: Bearer nope"]].concat();
    assert_eq!(curl(&server, &ca, &wrong, "/v1-agent/heartbeat").0, "401");
    assert_eq!(server.refused().len(), 1);
    assert_eq!(server.heartbeats("worker-1"), 0);

    let bearer = format!("Authorization: Bearer {SECRET}");
    let right = [&beat[..], &["-H", &bearer]].concat();
    assert_eq!(curl(&server, &ca, &right, "/v1-agent/heartbeat").0, "200");
    assert_eq!(server.heartbeats("worker-1"), 1);
    assert_eq!(curl(&server, &ca, &[], "/v1-agent/nothing").0, "404");
}

#[test]
fn an_agent_with_a_wrong_secret_exits_1_and_is_counted_as_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = server.url_for_host();
    let token = format!("K10{}::server:not-the-secret", server.ca_hash());
    let mut agent = Agent::start(
        &settings(&url, &token, "worker-1"),
        &dir.path().join("node"),
        &[],
        &dir.path().join("logs"),
    );
    assert_eq!(agent.exit().code(), Some(1));
    let stderr = agent.stderr();
    assert!(
        stderr.contains(&format!(
            "cluster-test-agent: {url} refused the token (401 Unauthorized)"
        )),
        "{stderr}"
    );
    assert_eq!(server.refused().len(), 1);
    assert!(server.registrations().is_empty());
}

#[test]
fn an_agent_whose_token_pins_another_ca_exits_1_before_registering() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = server.url_for_host();
    let token = format!("K10{}::server:{SECRET}", "ab".repeat(32));
    let mut agent = Agent::start(
        &settings(&url, &token, "worker-1"),
        &dir.path().join("node"),
        &[],
        &dir.path().join("logs"),
    );
    assert_eq!(agent.exit().code(), Some(1));
    let stderr = agent.stderr();
    assert!(
        stderr.contains(&format!("CA hash of {url} does not match the token")),
        "{stderr}"
    );
    assert!(stderr.contains(server.ca_hash()), "{stderr}");
    assert!(server.registrations().is_empty());
    assert!(server.refused().is_empty());
    // The password is made only once the server is trusted.
    assert!(!dir.path().join("node/password").exists());
}

#[test]
fn a_short_token_trusts_the_ca_the_server_gives() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = server.url_for_host();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{SECRET}\n")).unwrap();
    let _agent = Agent::start(
        &[
            ("K3S_URL", url.as_str()),
            ("K3S_TOKEN", "overridden-by-the-file"),
            ("K3S_TOKEN_FILE", token_file.to_str().unwrap()),
        ],
        &dir.path().join("node"),
        &["--node-name", "from-flag"],
        &dir.path().join("logs"),
    );
    let registrations = server.wait_for_registrations(1, WAIT);
    assert_eq!(registrations[0].node_name, "from-flag");
}

#[test]
fn a_node_name_registered_with_another_password_is_refused_with_409() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (url, token) = (server.url_for_host(), server.secure_token());
    let first_dir = dir.path().join("first-node");
    let mut first = Agent::start(
        &settings(&url, &token, "worker-1"),
        &first_dir,
        &[],
        &dir.path().join("first"),
    );
    let first_password = server.wait_for_registrations(1, WAIT)[0]
        .node_password
        .clone();
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    // Another machine (another password file) taking the same name.
    let mut imposter = Agent::start(
        &settings(&url, &token, "worker-1"),
        &dir.path().join("other-node"),
        &[],
        &dir.path().join("imposter"),
    );
    assert_eq!(imposter.exit().code(), Some(1));
    let stderr = imposter.stderr();
    assert!(stderr.contains("409 Conflict"), "{stderr}");
    assert!(stderr.contains("worker-1"), "{stderr}");
    assert_eq!(server.refused().len(), 1);

    // The first node coming back keeps its password and is welcome.
    let _again = Agent::start(
        &settings(&url, &token, "worker-1"),
        &first_dir,
        &[],
        &dir.path().join("again"),
    );
    let registrations = server.wait_for_registrations(2, WAIT);
    assert_eq!(registrations[1].node_password, first_password);
    assert!(registrations[1].persisted_password);
    assert!(registrations[1].at > registrations[0].at);
}

#[test]
fn an_agent_with_no_server_listening_exits_1_naming_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let mut agent = Agent::start(
        &settings(&url, SECRET, "worker-1"),
        &dir.path().join("node"),
        &[],
        &dir.path().join("logs"),
    );
    assert_eq!(agent.exit().code(), Some(1));
    let stderr = agent.stderr();
    assert!(stderr.contains(&format!("connecting to {url}")), "{stderr}");
}

#[test]
fn an_unknown_flag_ends_the_agent_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(
        &settings("https://127.0.0.1:1", SECRET, "worker-1"),
        &dir.path().join("node"),
        &["--kubelet-arg", "max-pods=10"],
        &dir.path().join("logs"),
    );
    assert_eq!(agent.exit().code(), Some(2));
    let stderr = agent.stderr();
    assert!(
        stderr.contains("unknown flag \"--kubelet-arg\""),
        "{stderr}"
    );
}

#[test]
fn sigterm_ends_a_registered_agent_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (url, token) = (server.url_for_host(), server.secure_token());
    let mut agent = Agent::start(
        &settings(&url, &token, "worker-1"),
        &dir.path().join("node"),
        &[],
        &dir.path().join("logs"),
    );
    server.wait_for_registrations(1, WAIT);
    let kill = Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // Its own handler: a process killed by the signal has no exit code.
    assert_eq!(agent.exit().code(), Some(0));
}

#[test]
fn the_registration_certificate_names_the_loopback_and_the_guests_view_of_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(dir.path().join("pki/leaf.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("IP Address:127.0.0.1, IP Address:10.0.2.2"),
        "{text}"
    );
    assert_eq!(
        server.url_for_guest(),
        format!("https://10.0.2.2:{}", server.port())
    );
    assert_eq!(
        test_images::sha256_digest(server.ca_pem()),
        format!("sha256:{}", server.ca_hash())
    );
    assert_eq!(
        server.secure_token(),
        format!("K10{}::server:{SECRET}", server.ca_hash())
    );
}

#[test]
fn the_agent_image_carries_the_agent_as_bin_k3s_like_rancher_k3s() {
    let binary = agent_binary();
    let image = agent_image(&binary);
    let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/k3s"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["agent"]));
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("layer.tar");
    std::fs::write(&tar, &image.layers[0].tar).unwrap();
    let listing = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let k3s = listing
        .lines()
        .find(|line| line.ends_with(" ./bin/k3s"))
        .unwrap_or_else(|| panic!("no ./bin/k3s in {listing}"));
    assert!(k3s.starts_with("-rwxr-xr-x 0/0"), "{k3s}");
    let size = std::fs::metadata(&binary).unwrap().len().to_string();
    assert!(k3s.contains(&size), "{k3s}");
    // Static: no interpreter to look for in the image.
    let file = Command::new("file").arg(&binary).output().unwrap();
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("static-pie linked") || file.contains("statically linked"),
        "{file}"
    );
}
