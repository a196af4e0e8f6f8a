//! `cluster-test-agent`: for tests only, a small stand-in for the k3s
//! agent that follows its contract with the OS, so the QEMU tests can
//! run the `cluster-agent` system service without a Kubernetes server.
//!
//! It is installed as `/bin/k3s` in an image shaped like `rancher/k3s`
//! and started as `k3s agent [flags]`. Like the k3s agent it reads
//! `K3S_URL`, `K3S_TOKEN`/`K3S_TOKEN_FILE` and `K3S_NODE_NAME` (flags
//! win), fetches `/cacerts` without trusting it, checks a secure
//! token's CA hash against it, then trusts only that CA; it keeps a
//! node password in `/etc/rancher/node/password`. Instead of a kubelet
//! it checks the host setup the OS promised the agent ([`checks`]),
//! registers with the test's server (`POST /v1-agent/register`) and
//! sends a heartbeat every 2 s. Any failure ends it with exit code 1,
//! as a crashing agent would, for the OS's supervisor to restart;
//! bad argv ends it with 2.
//!
//! `ROS_TEST_AGENT_NODE_DIR`, for the host tests only, puts the node
//! password in another directory than `/etc/rancher/node`.
//!
//! Parts: [`args`] (argv and env), [`token`], [`node`] (the password),
//! [`checks`] (mountinfo and the rest), [`http`] (rustls over a
//! blocking socket, hand-written HTTP/1.1).

// Shipped code returns errors instead of panicking (tests may: clippy.toml):
// locked in while this crate is clean.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod args;
mod checks;
mod http;
mod node;
mod token;

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sha2::Digest;

use args::{ServerUrl, Settings};
use http::Tls;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Usage(#[from] args::UsageError),
    #[error(transparent)]
    Settings(#[from] args::SettingsError),
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("GET {server}/cacerts answered {status}")]
    CaCerts { server: ServerUrl, status: u16 },
    #[error(
        "CA hash of {server} does not match the token: /cacerts hashes to {found}, the token says {expected}"
    )]
    CaMismatch {
        server: ServerUrl,
        found: String,
        expected: String,
    },
    #[error("{server} refused the token (401 Unauthorized)")]
    Unauthorized { server: ServerUrl },
    #[error(
        "{server} refused node {node}: its node password is not the one the node first registered with (409 Conflict)"
    )]
    PasswordConflict { server: ServerUrl, node: String },
    #[error("{server}{path} answered {status}: {body}")]
    Unexpected {
        server: ServerUrl,
        path: &'static str,
        status: u16,
        body: String,
    },
}

impl Error {
    /// 2 for argv k3s would refuse, 1 for everything else.
    fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

fn main() -> ExitCode {
    stop_on_term();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(never) => match never {},
        Err(error) => {
            eprintln!("cluster-test-agent: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(args: &[String]) -> Result<Infallible, Error> {
    let flags = args::parse_flags(args)?;
    let settings = Settings::resolve(
        flags,
        |name| std::env::var(name).ok(),
        |path| std::fs::read_to_string(path),
    )?;
    let server = &settings.server;
    let tls = bootstrap(&settings)?;
    let node_dir = std::env::var_os(node::NODE_DIR_TEST_OVERRIDE)
        .map_or_else(|| PathBuf::from(node::NODE_DIR), PathBuf::from);
    let (password, persisted) = node::password(&node_dir)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let checks = checks::run(&mountinfo);
    for (name, ok) in &checks {
        println!("cluster-test-agent: check {name}: {ok}");
    }
    println!("cluster-test-agent: check persisted_password: {persisted}");
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let registration = serde_json::json!({
        "node_name": settings.node_name,
        "labels": settings.labels,
        "taints": settings.taints,
        "node_password": password,
        "checks": checks.iter().map(|(n, ok)| (n.to_string(), serde_json::Value::Bool(*ok))).collect::<serde_json::Map<_, _>>(),
        "persisted_password": persisted,
        "boot_id": boot_id.trim(),
    });
    post(&tls, &settings, "/v1-agent/register", &registration)?;
    println!(
        "cluster-test-agent: registered {} with {server}",
        settings.node_name
    );
    let heartbeat = serde_json::json!({"node_name": settings.node_name});
    loop {
        std::thread::sleep(HEARTBEAT_EVERY);
        post(&tls, &settings, "/v1-agent/heartbeat", &heartbeat)?;
    }
}

/// k3s's bootstrap: `/cacerts` fetched unverified, its hash checked
/// against a secure token, then a TLS setup trusting only that bundle.
fn bootstrap(settings: &Settings) -> Result<Tls, Error> {
    let server = &settings.server;
    let answer = Tls::unverified()?.request(server, "GET", "/cacerts", None, &[])?;
    if answer.status != 200 {
        return Err(Error::CaCerts {
            server: server.clone(),
            status: answer.status,
        });
    }
    let found: String = sha2::Sha256::digest(&answer.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Some(expected) = settings.token.ca_hash()
        && expected != found
    {
        return Err(Error::CaMismatch {
            server: server.clone(),
            found,
            expected: expected.to_string(),
        });
    }
    Ok(Tls::trusting(server, &answer.body)?)
}

/// A JSON POST with the token; 401 and 409 have their own errors.
fn post(
    tls: &Tls,
    settings: &Settings,
    path: &'static str,
    body: &serde_json::Value,
) -> Result<(), Error> {
    let server = &settings.server;
    let bytes = body.to_string().into_bytes();
    let answer = tls.request(server, "POST", path, Some(settings.token.secret()), &bytes)?;
    match answer.status {
        200 => Ok(()),
        401 => Err(Error::Unauthorized {
            server: server.clone(),
        }),
        409 => Err(Error::PasswordConflict {
            server: server.clone(),
            node: settings.node_name.clone(),
        }),
        status => Err(Error::Unexpected {
            server: server.clone(),
            path,
            status,
            body: String::from_utf8_lossy(&answer.body).into_owned(),
        }),
    }
}

/// As PID 1 of its container the kernel gives it no default action for
/// SIGTERM/SIGINT: without a handler, stopping the service would wait
/// for the SIGKILL.
fn stop_on_term() {
    extern "C" fn exit_now(_signal: libc::c_int) {
        // SAFETY: _exit is async-signal-safe and ends the process; there
        // is nothing to flush that a heartbeat loop cannot lose.
        unsafe { libc::_exit(0) }
    }
    let handler: extern "C" fn(libc::c_int) = exit_now;
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only calls _exit, which is
        // async-signal-safe; no other code in this process sets handlers.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}
