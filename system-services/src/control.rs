//! How `ros service` reaches PID 1: a Unix socket, one JSON request line
//! and one JSON response line per connection. PID 1 serves it with the
//! engine and the configuration as it is now (re-read for every request,
//! so `ros service enable` shows at once and `up` starts what the file
//! says).

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

async fn answer<R: ContainerRuntime>(
    stream: tokio::net::UnixStream,
    control: &Control<R>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(read).read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => control.handle(request).await,
        Err(err) => Response::Error {
            message: format!("bad request: {err}"),
        },
    };
    let mut text = serde_json::to_string(&response).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
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
    stream.write_all(text.as_bytes())?;
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
