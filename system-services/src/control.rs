//! How `ros service` reaches PID 1: a Unix socket, one JSON request line
//! and one JSON response line per connection. PID 1 serves it with the
//! engine and the configuration as it is now (re-read for every request,
//! so `ros service enable` shows at once and `up` starts what the file
//! says).
//!
//! PID 1 reads from whoever connects, so the server does not trust the
//! caller: the kernel's word on who it is (`SO_PEERCRED`) must be root of
//! the machine's user namespace (the console runs `ros service` as root,
//! through sudo for the rancher user), a request is one line of at most
//! [`MAX_REQUEST`] bytes, and it must arrive within [`REQUEST_TIMEOUT`].
//! Everything else gets an error answer naming the caller and is logged.
//!
//! The power button has a narrower way in: [`serve_power`] reads a FIFO
//! bound into the acpid service alone, where the one thing that can be
//! asked is an orderly power-off. acpid no longer needs the host's PID
//! namespace to signal PID 1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::definition::Definitions;
use crate::engine::Engine;
use crate::runtime::ContainerRuntime;
use crate::service::{Service, ServiceName};
use crate::supervisor::{ServiceState, ServiceStatus};

/// Where PID 1 listens.
pub const SOCKET: &str = "/run/ros/control.sock";
/// How long the client waits for an answer: stopping waits out grace
/// periods, starting may pull an image.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest request line: a few hundred service names.
pub const MAX_REQUEST: u64 = 64 * 1024;
/// How long a caller has to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The FIFO acpid writes to; its directory is bound into acpid at the
/// same path (the directory, so a FIFO made again is seen).
pub const POWER_FIFO: &str = "/run/ros/power/request";
/// The one request the FIFO takes, as a line.
pub const POWER_OFF: &str = "power-off";
/// The longest line the FIFO keeps; longer ones are dropped.
const MAX_POWER_LINE: usize = 64;

/// What `ros service` asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Every defined or running service.
    List,
    /// Start, as last run (or as defined, if it never ran).
    Start { names: Vec<String> },
    /// Stop (SIGTERM, then SIGKILL) and remove the container.
    Stop { names: Vec<String> },
    /// Stop and start again.
    Restart { names: Vec<String> },
    /// Start as the configuration defines it now, replacing a running
    /// container whose definition changed.
    Up { names: Vec<String> },
    /// Stop and forget.
    Remove { names: Vec<String> },
}

/// What PID 1 answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Response {
    Services {
        services: Vec<ServiceInfo>,
    },
    /// One outcome per name, in the order asked.
    Done {
        outcomes: Vec<Outcome>,
    },
    /// The request could not be read.
    Error {
        message: String,
    },
}

/// One row of `ros service list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    pub name: String,
    /// Started at boot (defined, not disabled, included if optional).
    pub enabled: bool,
    /// running, exited, failed, created, stopped, starting; or, for one
    /// the engine never ran: invalid, blocked, disabled, not-started.
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub image: String,
    pub privileged: bool,
    /// The command it runs, when known.
    pub command: Vec<String>,
    /// Why it is failed, exited, invalid or blocked.
    pub detail: Option<String>,
    /// Since when it is in `state` (seconds since the epoch), when it ran.
    #[serde(default)]
    pub since: Option<u64>,
}

/// The result for one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    /// The state it ended in, or what went wrong.
    pub message: String,
}

impl Outcome {
    fn ok(name: &str, message: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            ok: true,
            message: message.into(),
        }
    }

    fn failed(name: &str, message: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            ok: false,
            message: message.into(),
        }
    }
}

/// The configuration as it is now.
pub type Loader = Box<dyn Fn() -> Definitions + Send + Sync>;

/// PID 1's side: answers requests with the engine.
pub struct Control<R> {
    engine: Arc<Engine<R>>,
    load: Loader,
    /// Why services were not started at boot (order problems), by name.
    blocked: Mutex<BTreeMap<String, String>>,
}

impl<R> std::fmt::Debug for Control<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl<R: ContainerRuntime> Control<R> {
    pub fn new(engine: Arc<Engine<R>>, load: Loader) -> Self {
        Self {
            engine,
            load,
            blocked: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records why `name` was not started, for `list`.
    pub fn set_blocked(&self, name: &str, why: String) {
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), why);
    }

    pub async fn handle(&self, request: Request) -> Response {
        match request {
            Request::List => Response::Services {
                services: self.list(),
            },
            Request::Start { names } => self.each(names, Action::Start).await,
            Request::Stop { names } => self.each(names, Action::Stop).await,
            Request::Restart { names } => self.each(names, Action::Restart).await,
            Request::Up { names } => self.each(names, Action::Up).await,
            Request::Remove { names } => self.each(names, Action::Remove).await,
        }
    }

    fn list(&self) -> Vec<ServiceInfo> {
        let definitions = (self.load)();
        let running = self.engine.snapshot();
        let blocked = self
            .blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let names: BTreeSet<String> = definitions
            .services
            .keys()
            .cloned()
            .chain(running.keys().map(ToString::to_string))
            .collect();
        names
            .into_iter()
            .map(|name| {
                let defined = definitions.get(&name);
                let enabled = defined.is_some_and(|d| d.enabled);
                let known = ServiceName::new(name.as_str())
                    .ok()
                    .and_then(|n| running.get(&n));
                match known {
                    Some(snapshot) => info(&name, enabled, &snapshot.service, &snapshot.status),
                    None => {
                        let service = defined.and_then(|d| d.service.as_ref().ok());
                        let (state, detail) = match defined.map(|d| &d.service) {
                            Some(Err(errors)) => ("invalid", Some(errors.to_string())),
                            _ if blocked.contains_key(&name) => {
                                ("blocked", blocked.get(&name).cloned())
                            }
                            _ if !enabled => ("disabled", None),
                            _ => ("not-started", None),
                        };
                        ServiceInfo {
                            name: name.clone(),
                            enabled,
                            state: state.to_string(),
                            pid: None,
                            restarts: 0,
                            image: defined.map(|d| d.image.clone()).unwrap_or_default(),
                            privileged: service.is_some_and(|s| s.privileged),
                            command: service.map(|s| s.argv(None)).unwrap_or_default(),
                            detail,
                            since: None,
                        }
                    }
                }
            })
            .collect()
    }

    async fn each(&self, names: Vec<String>, action: Action) -> Response {
        let mut outcomes = Vec::new();
        for name in names {
            outcomes.push(self.one(&name, action).await);
        }
        Response::Done { outcomes }
    }

    async fn one(&self, name: &str, action: Action) -> Outcome {
        let definitions = (self.load)();
        let known = ServiceName::new(name)
            .ok()
            .filter(|n| self.engine.status_of(n).is_some());
        let defined = definitions.get(name);
        if known.is_none() && defined.is_none() {
            let all: Vec<&str> = definitions.services.keys().map(String::as_str).collect();
            return Outcome::failed(
                name,
                format!("unknown service {name} (defined: {})", all.join(", ")),
            );
        }
        // The configuration's definition, when an action needs it.
        let configured = || -> Result<Service, Outcome> {
            match defined.map(|d| &d.service) {
                Some(Ok(service)) => Ok(service.clone()),
                Some(Err(errors)) => Err(Outcome::failed(name, errors.to_string())),
                None => Err(Outcome::failed(
                    name,
                    format!("service {name} is no longer defined"),
                )),
            }
        };
        let status = match (action, known) {
            (Action::Start, Some(known)) => {
                let Some(service) = self.engine.snapshot().remove(&known).map(|s| s.service) else {
                    return Outcome::failed(name, "removed meanwhile");
                };
                self.engine.start(service).await
            }
            (Action::Start | Action::Up, _) => match configured() {
                Ok(service) => self.engine.start(service).await,
                Err(outcome) => return outcome,
            },
            (Action::Restart, Some(known)) => match self.engine.restart(&known, None).await {
                Ok(status) => status,
                Err(err) => return Outcome::failed(name, err.to_string()),
            },
            (Action::Restart, None) => match configured() {
                Ok(service) => self.engine.start(service).await,
                Err(outcome) => return outcome,
            },
            (Action::Stop, Some(known)) => match self.engine.stop(&known).await {
                Ok(status) => status,
                Err(err) => return Outcome::failed(name, err.to_string()),
            },
            (Action::Remove, Some(known)) => {
                return match self.engine.remove(&known).await {
                    Ok(()) => Outcome::ok(name, "removed"),
                    Err(err) => Outcome::failed(name, err.to_string()),
                };
            }
            (Action::Stop | Action::Remove, None) => {
                return Outcome::failed(name, format!("service {name} is not running"));
            }
        };
        let ok = !matches!(status.state, ServiceState::Failed { .. });
        Outcome {
            name: name.to_string(),
            ok,
            message: describe(&status),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Start,
    Stop,
    Restart,
    Up,
    Remove,
}

fn info(name: &str, enabled: bool, service: &Service, status: &ServiceStatus) -> ServiceInfo {
    let (pid, detail) = match &status.state {
        ServiceState::Running { pid } => (Some(*pid), None),
        ServiceState::Exited { code } => (None, Some(format!("exit code {code}"))),
        ServiceState::Failed { error, .. } => (None, Some(error.clone())),
        _ => (None, None),
    };
    ServiceInfo {
        name: name.to_string(),
        enabled,
        state: status.state.word().to_string(),
        pid,
        restarts: status.restarts,
        image: service.image.clone(),
        privileged: service.privileged,
        command: service.argv(None),
        detail,
        since: status
            .since
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs()),
    }
}

/// `running (pid 42)`, `failed: …`.
fn describe(status: &ServiceStatus) -> String {
    match &status.state {
        ServiceState::Running { pid } => format!("running (pid {pid})"),
        ServiceState::Exited { code } => format!("exited with code {code}"),
        ServiceState::Failed { error, .. } => format!("failed: {error}"),
        other => other.word().to_string(),
    }
}

/// Serves `control` on `socket` (replacing a stale socket file) until the
/// task is dropped. Each connection gets its own task, so a long stop
/// does not hold up a `list`.
pub fn serve<R: ContainerRuntime>(
    socket: &Path,
    control: Arc<Control<R>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    // Only root manages services.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let control = Arc::clone(&control);
                    tokio::spawn(async move {
                        if let Err(err) = answer(stream, &control).await {
                            tracing::warn!(%err, "control connection");
                        }
                    });
                }
                Err(err) => {
                    tracing::error!(%err, "control socket accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

/// Who is on the other end of a control connection, as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)?;
        match self.pid {
            Some(pid) => write!(f, " pid {pid}"),
            None => Ok(()),
        }
    }
}

/// Why a request got no answer of its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("refused: {0} is not root (only root manages services)")]
    NotRoot(Peer),
    #[error("refused: the request from {0} is longer than {MAX_REQUEST} bytes")]
    TooLong(Peer),
    #[error("refused: no request line from {0} within {secs} s", secs = REQUEST_TIMEOUT.as_secs())]
    TooSlow(Peer),
}

/// Whether `peer` may use the control socket: root of the machine's user
/// namespace only (a root in another user namespace shows up here as the
/// overflow uid).
pub fn check_peer(peer: Peer) -> Result<(), Refused> {
    if peer.uid == 0 {
        Ok(())
    } else {
        Err(Refused::NotRoot(peer))
    }
}

/// Reads one request line from `read`: at most [`MAX_REQUEST`] bytes,
/// within `timeout`.
async fn read_request<T: tokio::io::AsyncRead + Unpin>(
    read: T,
    peer: Peer,
    timeout: Duration,
) -> Result<Result<String, Refused>, std::io::Error> {
    use tokio::io::AsyncReadExt;
    // One byte over the limit tells a long line from one that fits.
    let mut limited = tokio::io::BufReader::new(read.take(MAX_REQUEST + 1));
    let mut line = Vec::new();
    match tokio::time::timeout(timeout, limited.read_until(b'\n', &mut line)).await {
        Err(_) => Ok(Err(Refused::TooSlow(peer))),
        Ok(result) => {
            result?;
            if line.len() as u64 > MAX_REQUEST {
                return Ok(Err(Refused::TooLong(peer)));
            }
            Ok(Ok(String::from_utf8_lossy(&line).into_owned()))
        }
    }
}

async fn answer<R: ContainerRuntime>(
    stream: tokio::net::UnixStream,
    control: &Control<R>,
) -> std::io::Result<()> {
    let credentials = stream.peer_cred()?;
    let peer = Peer {
        uid: credentials.uid(),
        gid: credentials.gid(),
        pid: credentials.pid(),
    };
    let (read, mut write) = stream.into_split();
    let request = match check_peer(peer) {
        Ok(()) => read_request(read, peer, REQUEST_TIMEOUT).await?,
        Err(refused) => Err(refused),
    };
    let response = match request {
        Err(refused) => {
            tracing::warn!("control socket: {refused}");
            Response::Error {
                message: refused.to_string(),
            }
        }
        Ok(line) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => control.handle(request).await,
            Err(err) => Response::Error {
                message: format!("bad request: {err}"),
            },
        },
    };
    let mut text = serde_json::to_string(&response).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// Serves the power FIFO at `fifo` (made anew, 0600 in a 0700
/// directory): each `power-off` line calls `power_off`; anything else is
/// logged and dropped. PID 1 holds the FIFO open for writing too, so it
/// never reads an end of file when acpid's writer goes.
pub fn serve_power(
    fifo: &Path,
    power_off: impl Fn() + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use nix::sys::stat::Mode;
    use tokio::io::AsyncReadExt;
    if let Some(dir) = fifo.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(fifo) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    nix::unistd::mkfifo(fifo, Mode::from_bits_truncate(0o600)).map_err(std::io::Error::from)?;
    let mut receiver = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(fifo)?;
    let path = fifo.to_path_buf();
    Ok(tokio::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let read = match receiver.read(&mut chunk).await {
                Ok(read) => read,
                Err(err) => {
                    tracing::error!(%err, fifo = %path.display(), "power requests");
                    return;
                }
            };
            pending.extend(&chunk[..read]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]);
                if line.trim() == POWER_OFF {
                    tracing::info!("power-off asked through {}", path.display());
                    power_off();
                } else {
                    tracing::warn!(request = %line.trim(), "power FIFO: not a request, dropped");
                }
            }
            if pending.len() > MAX_POWER_LINE {
                tracing::warn!("power FIFO: a line over {MAX_POWER_LINE} bytes, dropped");
                pending.clear();
            }
        }
    }))
}

/// Why the client got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach PID 1 at {}: {source} (is this the ros console, as root?)", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to PID 1: {0}")]
    Io(#[from] std::io::Error),
    #[error("PID 1 answered something unreadable: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Sends one request and waits for the answer (blocking: the CLI side).
pub fn call(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let mut stream =
        std::os::unix::net::UnixStream::connect(socket).map_err(|source| ClientError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    // PID 1 answers a caller it refuses without reading the request: the
    // answer may be there even when the request could not be sent.
    match stream.write_all(text.as_bytes()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => return Err(err.into()),
        _ => {}
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(serde_json::from_str(&line)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{Defined, DefinitionError, DefinitionErrors};
    use crate::fake::FakeRuntime;

    #[test]
    fn the_wire_format_is_tagged_json_lines() {
        let request = Request::Stop {
            names: vec!["ntp".into()],
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(text, r#"{"request":"stop","names":["ntp"]}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), request);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"request":"list"}"#).unwrap(),
            Request::List
        );
        let bad = serde_json::from_str::<Request>(r#"{"request":"explode"}"#).unwrap_err();
        assert!(bad.to_string().contains("unknown variant"), "{bad}");
        let response = Response::Done {
            outcomes: vec![Outcome::ok("ntp", "stopped")],
        };
        let text = serde_json::to_string(&response).unwrap();
        assert_eq!(
            text,
            r#"{"response":"done","outcomes":[{"name":"ntp","ok":true,"message":"stopped"}]}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), response);
    }

    fn service(name: &str) -> Service {
        let mut s = Service::new(
            ServiceName::new(name).unwrap(),
            format!("/images/{name}"),
            vec![format!("/usr/sbin/{name}")],
        );
        s.image = format!("ros/{name}");
        s
    }

    /// ntp and syslog enabled, acpid disabled, broken invalid.
    fn definitions() -> Definitions {
        let mut services = BTreeMap::new();
        for (name, enabled) in [("ntp", true), ("syslog", true), ("acpid", false)] {
            services.insert(
                name.to_string(),
                Defined {
                    enabled,
                    service: Ok(service(name)),
                    image: format!("ros/{name}"),
                },
            );
        }
        services.insert(
            "broken".to_string(),
            Defined {
                enabled: true,
                service: Err(DefinitionErrors(vec![DefinitionError {
                    service: "broken".into(),
                    key: "image".into(),
                    problem: "missing".into(),
                }])),
                image: String::new(),
            },
        );
        Definitions { services }
    }

    fn control(runtime: &Arc<FakeRuntime>) -> Control<FakeRuntime> {
        let engine = Arc::new(Engine::new(Arc::clone(runtime), "/var/log/ros"));
        Control::new(engine, Box::new(definitions))
    }

    fn outcomes(response: Response) -> Vec<Outcome> {
        match response {
            Response::Done { outcomes } => outcomes,
            other => panic!("{other:?}"),
        }
    }

    fn row<'a>(list: &'a [ServiceInfo], name: &str) -> &'a ServiceInfo {
        list.iter().find(|s| s.name == name).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn list_shows_defined_running_disabled_invalid_and_blocked_services() {
        let runtime = Arc::new(FakeRuntime::default());
        let control = control(&runtime);
        control.engine.start(service("ntp")).await;
        control.set_blocked("syslog", "after nothing".into());
        let Response::Services { services } = control.handle(Request::List).await else {
            panic!()
        };
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["acpid", "broken", "ntp", "syslog"]);
        let ntp = row(&services, "ntp");
        assert_eq!(
            (ntp.state.as_str(), ntp.pid, ntp.enabled),
            ("running", Some(1000), true)
        );
        assert_eq!(ntp.image, "ros/ntp");
        assert_eq!(ntp.command, ["/usr/sbin/ntp"]);
        let acpid = row(&services, "acpid");
        assert_eq!((acpid.state.as_str(), acpid.enabled), ("disabled", false));
        let broken = row(&services, "broken");
        assert_eq!(broken.state, "invalid");
        assert_eq!(
            broken.detail.as_deref(),
            Some("service broken: image: missing")
        );
        assert_eq!(row(&services, "syslog").state, "blocked");
    }

    #[tokio::test(start_paused = true)]
    async fn start_stop_restart_up_and_remove_report_per_name() {
        let runtime = Arc::new(FakeRuntime::default());
        let control = control(&runtime);
        let done = outcomes(
            control
                .handle(Request::Start {
                    names: vec!["ntp".into(), "nope".into(), "broken".into()],
                })
                .await,
        );
        assert_eq!(done[0], Outcome::ok("ntp", "running (pid 1000)"));
        assert!(!done[1].ok);
        assert_eq!(
            done[1].message,
            "unknown service nope (defined: acpid, broken, ntp, syslog)"
        );
        assert_eq!(
            done[2],
            Outcome::failed("broken", "service broken: image: missing")
        );

        let done = outcomes(
            control
                .handle(Request::Stop {
                    names: vec!["ntp".into(), "syslog".into()],
                })
                .await,
        );
        assert_eq!(done[0], Outcome::ok("ntp", "stopped"));
        assert_eq!(
            done[1],
            Outcome::failed("syslog", "service syslog is not running")
        );

        let done = outcomes(
            control
                .handle(Request::Restart {
                    names: vec!["ntp".into()],
                })
                .await,
        );
        assert_eq!(done[0], Outcome::ok("ntp", "running (pid 1001)"));
        // A disabled service can still be started by hand.
        let done = outcomes(
            control
                .handle(Request::Up {
                    names: vec!["acpid".into()],
                })
                .await,
        );
        assert_eq!(done[0], Outcome::ok("acpid", "running (pid 1002)"));
        let done = outcomes(
            control
                .handle(Request::Remove {
                    names: vec!["ntp".into()],
                })
                .await,
        );
        assert_eq!(done[0], Outcome::ok("ntp", "removed"));
        assert!(!runtime.has_container("ntp"));
    }

    #[test]
    fn only_root_may_ask_and_a_refusal_names_the_caller() {
        let root = Peer {
            uid: 0,
            gid: 0,
            pid: Some(42),
        };
        assert_eq!(check_peer(root), Ok(()));
        let rancher = Peer {
            uid: 1100,
            gid: 1100,
            pid: Some(4321),
        };
        let refused = check_peer(rancher).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "refused: uid 1100 gid 1100 pid 4321 is not root (only root manages services)"
        );
        // Root of another user namespace arrives as the overflow uid.
        let overflow = Peer {
            uid: 65534,
            gid: 65534,
            pid: None,
        };
        assert_eq!(check_peer(overflow), Err(Refused::NotRoot(overflow)));
    }

    const ROOT: Peer = Peer {
        uid: 0,
        gid: 0,
        pid: Some(1),
    };

    #[tokio::test]
    async fn a_request_line_is_bounded_in_size() {
        let fits = format!("{{\"request\":\"list\"}}{}\n", " ".repeat(1000));
        let line = read_request(fits.as_bytes(), ROOT, REQUEST_TIMEOUT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line, fits);
        // A line of exactly the limit, newline included, still fits.
        let exact = format!(
            "{}\n",
            "x".repeat(usize::try_from(MAX_REQUEST).unwrap() - 1)
        );
        assert_eq!(
            read_request(exact.as_bytes(), ROOT, REQUEST_TIMEOUT)
                .await
                .unwrap(),
            Ok(exact.clone())
        );
        // 100 MB with no newline: refused after the first 64 KiB.
        let endless = tokio::io::repeat(b'x');
        let refused = read_request(endless, ROOT, REQUEST_TIMEOUT)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused, Refused::TooLong(ROOT));
        assert_eq!(
            refused.to_string(),
            "refused: the request from uid 0 gid 0 pid 1 is longer than 65536 bytes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_sends_nothing_is_dropped_after_the_timeout() {
        // The other end stays open and silent.
        let (_client, server) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let refused = read_request(server, ROOT, REQUEST_TIMEOUT)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused, Refused::TooSlow(ROOT));
        assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
        assert_eq!(
            refused.to_string(),
            "refused: no request line from uid 0 gid 0 pid 1 within 10 s"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_is_not_root_gets_an_error_naming_it() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test changes one thread's user: run it as root"
        );
        let runtime = Arc::new(FakeRuntime::default());
        let control = Arc::new(control(&runtime));
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("control.sock");
        let server = serve(&socket, Arc::clone(&control)).unwrap();
        // The mode keeps others out already; opened here so the peer
        // check is what answers.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let reply = std::thread::spawn(move || {
            // SAFETY: the raw system call changes this thread's user only
            // (libc's wrapper would change every thread of the test
            // process); the thread ends right after, never going back.
            let changed = unsafe { libc::syscall(libc::SYS_setresuid, 1100, 1100, 1100) };
            assert_eq!(changed, 0);
            call(&socket, &Request::List).unwrap()
        })
        .join()
        .unwrap();
        let Response::Error { message } = reply else {
            panic!("{reply:?}")
        };
        assert!(
            message.starts_with("refused: uid 1100 gid 0 pid "),
            "{message}"
        );
        assert!(message.ends_with(" is not root (only root manages services)"));
        assert!(runtime.calls().is_empty(), "nothing was done for it");
        server.abort();
    }

    #[tokio::test]
    async fn the_power_fifo_asks_for_power_off_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("power/request");
        let (asked, mut asks) = tokio::sync::mpsc::unbounded_channel();
        let server = serve_power(&fifo, move || {
            let _ = asked.send(());
        })
        .unwrap();
        let mode = std::fs::metadata(&fifo).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&mode.file_type()));
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        let dir_mode = std::fs::metadata(fifo.parent().unwrap()).unwrap();
        assert_eq!(dir_mode.permissions().mode() & 0o777, 0o700);
        // As acpid's script writes: a shell redirection, one line, closed.
        for text in ["reboot\n", &"x".repeat(500), "\npower-off\n"] {
            let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            writer.write_all(text.as_bytes()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), asks.recv())
            .await
            .unwrap()
            .unwrap();
        // Only the one line asked.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(asks.try_recv().is_err());
        server.abort();
    }

    #[tokio::test]
    async fn requests_travel_over_the_socket() {
        let runtime = Arc::new(FakeRuntime::default());
        let control = Arc::new(control(&runtime));
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/ros/control.sock");
        // A stale socket file from before is replaced.
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        std::fs::write(&socket, "").unwrap();
        let server = serve(&socket, Arc::clone(&control)).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let client = {
            let socket = socket.clone();
            tokio::task::spawn_blocking(move || {
                let list = call(&socket, &Request::List).unwrap();
                let start = call(
                    &socket,
                    &Request::Start {
                        names: vec!["syslog".into()],
                    },
                )
                .unwrap();
                (list, start)
            })
        };
        let (list, start) = client.await.unwrap();
        assert!(matches!(list, Response::Services { services } if services.len() == 4));
        assert_eq!(
            outcomes(start),
            [Outcome::ok("syslog", "running (pid 1000)")]
        );
        // Garbage gets an error answer, not a dropped connection.
        let reply = tokio::task::spawn_blocking(move || {
            let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            stream.write_all(b"{\"request\":\n").unwrap();
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let Response::Error { message } = serde_json::from_str(&reply).unwrap() else {
            panic!("{reply}")
        };
        assert!(message.starts_with("bad request"), "{message}");
        server.abort();
        let missing = call(&dir.path().join("none.sock"), &Request::List).unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot reach PID 1 at"),
            "{missing}"
        );
    }
}
