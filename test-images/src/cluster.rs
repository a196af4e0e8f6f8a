//! The host side of the cluster-agent tests: a registration server that
//! plays the k3s server's part of the agent bootstrap, the
//! `cluster-test-agent` binary built static for the guest, and an image
//! that carries it as `/bin/k3s` like `rancher/k3s`.
//!
//! How the parts fit: [`RegistrationServer`] serves HTTPS on a free
//! loopback port with a certificate for 127.0.0.1 and 10.0.2.2 (the
//! host as a QEMU user-network guest sees it), so the same server
//! answers an agent on the host and one in the guest. It serves
//! `GET /cacerts` (the CA, whose sha256 is the hash in
//! [`RegistrationServer::secure_token`]), `POST /v1-agent/register` and
//! `POST /v1-agent/heartbeat`, and records what it was told, with
//! times, for the tests to assert on. [`agent_binary`] builds the agent
//! once per test process; [`agent_image`] wraps it.
//!
//! The server is std threads on blocking sockets under rustls, one
//! thread per connection, HTTP/1.1 with `Connection: close`; dropping
//! it stops and joins its accepting thread (a connection thread still
//! answering finishes on its own, bounded by a 10 s socket timeout).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::{Config, Image, Layer, Pki};

/// The host as a QEMU user-network guest reaches it.
pub const HOST_FROM_GUEST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 2));

const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted registration, as the agent sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub node_name: String,
    pub labels: Vec<String>,
    pub taints: Vec<String>,
    pub node_password: String,
    /// The host checks by name (`k3s_data_mounted`, `kubelet_shared`,
    /// `pods_log_mounted`, `node_dir_mounted`, `cgroup_writable`,
    /// `kmsg`, `host_network`, `pid_one`).
    pub checks: BTreeMap<String, bool>,
    /// The node password file was there before this start.
    pub persisted_password: bool,
    /// The agent's machine's boot (a reboot gives a new one).
    pub boot_id: String,
    /// When the server accepted it.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct State {
    registrations: Vec<Registration>,
    /// Each node's password from its first registration.
    passwords: HashMap<String, String>,
    refused: Vec<Instant>,
    heartbeats: HashMap<String, usize>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    secret: String,
    ca: Vec<u8>,
    tls: Arc<ServerConfig>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A handler thread that panicked leaves the records intact.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The k3s server's part of an agent's join, for tests; see the module
/// documentation. Stops accepting when dropped.
#[derive(Debug)]
pub struct RegistrationServer {
    shared: Arc<Shared>,
    port: u16,
    ca_hash: String,
    acceptor: Option<JoinHandle<()>>,
}

impl RegistrationServer {
    /// Makes a CA and a certificate for 127.0.0.1 and 10.0.2.2 in `dir`
    /// and serves on a free port of 127.0.0.1, accepting `secret`.
    pub fn start(dir: &Path, secret: &str) -> Self {
        let pki = Pki::for_addresses(dir, &[IpAddr::from([127, 0, 0, 1]), HOST_FROM_GUEST]);
        let certs = CertificateDer::pem_file_iter(&pki.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .expect("the server certificate as PEM");
        let key = PrivateKeyDer::from_pem_file(&pki.key).expect("the server key as PEM");
        let tls =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("rustls's default protocol versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("the server certificate and key");
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener
            .local_addr()
            .expect("the listener's address")
            .port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            secret: secret.to_string(),
            ca: pki.ca.clone().into_bytes(),
            tls: Arc::new(tls),
            stop: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accepting.clone();
                std::thread::spawn(move || {
                    // A client that goes away mid-request is its own problem.
                    let _ = serve(&shared, stream);
                });
            }
        });
        Self {
            ca_hash: sha256_hex(pki.ca.as_bytes()),
            shared,
            port,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://10.0.2.2:PORT`: the server from a QEMU guest.
    pub fn url_for_guest(&self) -> String {
        format!("https://{HOST_FROM_GUEST}:{}", self.port)
    }

    /// `https://127.0.0.1:PORT`: the server from the host.
    pub fn url_for_host(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// sha256 hex of the CA PEM, exactly as `/cacerts` serves it.
    pub fn ca_hash(&self) -> &str {
        &self.ca_hash
    }

    /// The CA PEM `/cacerts` serves.
    pub fn ca_pem(&self) -> &[u8] {
        &self.shared.ca
    }

    /// `K10<ca hash>::server:<secret>`, as k3s's server token.
    pub fn secure_token(&self) -> String {
        format!("K10{}::server:{}", self.ca_hash, self.shared.secret)
    }

    /// Every accepted registration, oldest first.
    pub fn registrations(&self) -> Vec<Registration> {
        self.shared.state().registrations.clone()
    }

    /// When each 401 or 409 was answered.
    pub fn refused(&self) -> Vec<Instant> {
        self.shared.state().refused.clone()
    }

    /// Accepted heartbeats from `node`.
    pub fn heartbeats(&self, node: &str) -> usize {
        self.shared
            .state()
            .heartbeats
            .get(node)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `count` registrations were accepted; panics with
    /// what has come (and how many were refused) after `timeout`.
    pub fn wait_for_registrations(&self, count: usize, timeout: Duration) -> Vec<Registration> {
        let state = self.wait_until(timeout, |s| s.registrations.len() >= count);
        state.registrations.clone()
    }

    /// Waits until `count` answers were refusals; panics after `timeout`.
    pub fn wait_for_refusals(&self, count: usize, timeout: Duration) -> Vec<Instant> {
        let state = self.wait_until(timeout, |s| s.refused.len() >= count);
        state.refused.clone()
    }

    /// Waits until `node` sent `count` heartbeats; panics after `timeout`.
    pub fn wait_for_heartbeats(&self, node: &str, count: usize, timeout: Duration) -> usize {
        let state = self.wait_until(timeout, |s| {
            s.heartbeats.get(node).copied().unwrap_or(0) >= count
        });
        state.heartbeats.get(node).copied().unwrap_or(0)
    }

    fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&State) -> bool,
    ) -> MutexGuard<'_, State> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state();
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the registration server waited {timeout:?} in vain; it has {} registration(s) \
                 {:#?}, {} refusal(s), heartbeats {:?}",
                state.registrations.len(),
                state.registrations,
                state.refused.len(),
                state.heartbeats
            );
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state
    }
}

impl Drop for RegistrationServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// One connection: one request, one answer, close_notify.
fn serve(shared: &Shared, tcp: TcpStream) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    tcp.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    let connection = ServerConnection::new(shared.tls.clone()).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(connection, tcp);
    let request = read_request(&mut stream)?;
    let (status, body) = answer(shared, &request);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Conflict",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.conn.send_close_notify();
    stream.flush()
}

#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn read_request(stream: &mut impl Read) -> std::io::Result<Request> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 || raw.len() > 64 * 1024 {
            return Err(std::io::Error::other("no complete request head"));
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let mut length = 0;
    let mut authorization = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(std::io::Error::other)?;
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        }
    }
    if length > 1 << 20 {
        return Err(std::io::Error::other("request body over 1 MiB"));
    }
    while raw.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("request body cut short"));
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    Ok(Request {
        method,
        path,
        authorization,
        body: raw[head_end..head_end + length].to_vec(),
    })
}

/// The status and body for a request, recording what it did.
fn answer(shared: &Shared, request: &Request) -> (u16, Vec<u8>) {
    let route = (request.method.as_str(), request.path.as_str());
    if route == ("GET", "/cacerts") {
        return (200, shared.ca.clone());
    }
    if !matches!(
        route,
        ("POST", "/v1-agent/register") | ("POST", "/v1-agent/heartbeat")
    ) {
        return (404, b"not found\n".to_vec());
    }
    let mut state = shared.state();
    let authorized = request.authorization.as_deref() == Some(&format!("Bearer {}", shared.secret));
    let (status, body): (u16, &[u8]) = if !authorized {
        state.refused.push(Instant::now());
        (401, b"unauthorized\n")
    } else {
        let json: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(json) => json,
            Err(_) => return (400, b"not JSON\n".to_vec()),
        };
        let node = text(&json["node_name"]);
        if route.1 == "/v1-agent/heartbeat" {
            *state.heartbeats.entry(node).or_default() += 1;
            (200, b"ok\n")
        } else {
            let registration = Registration {
                labels: texts(&json["labels"]),
                taints: texts(&json["taints"]),
                node_password: text(&json["node_password"]),
                checks: json["checks"]
                    .as_object()
                    .map(|checks| {
                        checks
                            .iter()
                            .map(|(name, ok)| (name.clone(), ok.as_bool().unwrap_or(false)))
                            .collect()
                    })
                    .unwrap_or_default(),
                persisted_password: json["persisted_password"].as_bool().unwrap_or(false),
                boot_id: text(&json["boot_id"]),
                at: Instant::now(),
                node_name: node.clone(),
            };
            let first = state
                .passwords
                .entry(node)
                .or_insert_with(|| registration.node_password.clone());
            if *first != registration.node_password {
                state.refused.push(Instant::now());
                (409, b"node password differs from the first registration\n")
            } else {
                state.registrations.push(registration);
                (200, b"ok\n")
            }
        }
    };
    drop(state);
    shared.changed.notify_all();
    (status, body.to_vec())
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn texts(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_default()
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::sha256_digest(bytes)
        .trim_start_matches("sha256:")
        .to_string()
}

/// The `cluster-test-agent` binary, static for musl: built once per
/// test process with `cargo build --release --locked --target
/// x86_64-unknown-linux-musl -p cluster-test-agent`, in its own target
/// directory (`target/test-agent`) so the build does not wait on the
/// lock of the cargo running the tests.
pub fn agent_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_agent).clone()
}

fn build_agent() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-images sits in the workspace");
    let target_dir = workspace.join("target/test-agent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "x86_64-unknown-linux-musl",
            "-p",
            "cluster-test-agent",
            "--target-dir",
        ])
        .arg(&target_dir)
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "building cluster-test-agent for musl failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join("x86_64-unknown-linux-musl/release/cluster-test-agent")
}

/// An image shaped like `rancher/k3s`: `binary` as `/bin/k3s` (0755),
/// entrypoint `/bin/k3s`, command `agent`, and the mount points the OS
/// gives the agent.
pub fn agent_image(binary: &Path) -> Image {
    use std::os::unix::fs::PermissionsExt;
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let root = scratch.path();
    std::fs::create_dir_all(root.join("bin")).expect("making bin");
    let k3s = root.join("bin/k3s");
    std::fs::copy(binary, &k3s).expect("copying the agent binary");
    std::fs::set_permissions(&k3s, std::fs::Permissions::from_mode(0o755))
        .expect("making /bin/k3s executable");
    for dir in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "etc/rancher/node",
        "var/lib/rancher/k3s",
        "var/lib/kubelet",
        "var/log/pods",
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("making a mount point");
    }
    let config = Config {
        created: Some("2026-01-01T00:00:00Z".into()),
        entrypoint: vec!["/bin/k3s".into()],
        working_dir: Some("/".into()),
        ..Config::new(&["agent"])
    };
    Image::new(vec![Layer::from_dir(root)], &config)
}
