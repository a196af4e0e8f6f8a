//! The containerd driver: one gRPC channel per daemon, the namespace fixed
//! at construction and sent on every call by an interceptor.
//! The user's workloads (the `workloads` crate) keep richer records on
//! the same handle and reuse its pieces: `create_record`,
//! `create_and_start_task`, `task_status`, `rootfs_mount` and `error`.

use std::path::{Path, PathBuf};

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetRequest, KillRequest, StartRequest, WaitRequest,
};
use containerd_client::types::Mount as ContainerdMount;
use containerd_client::types::v1::Status;
use oci_spec::runtime::Spec;
use prost_types::Any;
use tonic::metadata::{AsciiMetadataValue, errors::InvalidMetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status as GrpcStatus};

use crate::root::{PreparedRoot, Root, RootfsMount};
use crate::runtime::{ContainerRuntime, RuntimeError, TaskState, TaskStatus};

/// The runc shim; the OCI runtime binary it calls is an option.
const SHIM: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";
/// The first argument of the log pipe program: `ros log-pipe FILE`.
pub const LOG_PIPE_ARG: &str = "log-pipe";

/// Percent-encodes everything but unreserved characters and `/`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The runc shim's options (containerd's runc/options/oci.proto); only the
/// field we set.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    /// The OCI runtime binary the shim runs, e.g. `crun`.
    #[prost(string, tag = "6")]
    binary_name: String,
}

/// Adds the `containerd-namespace` header to every request.
#[derive(Debug, Clone)]
pub struct NamespaceInterceptor(AsciiMetadataValue);

impl Interceptor for NamespaceInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, GrpcStatus> {
        request
            .metadata_mut()
            .insert("containerd-namespace", self.0.clone());
        Ok(request)
    }
}

type Namespaced = InterceptedService<Channel, NamespaceInterceptor>;

/// Why connecting to containerd failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to containerd at {socket}: {source}")]
    Transport {
        socket: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("namespace {namespace:?} is not a valid header value: {source}")]
    Namespace {
        namespace: String,
        #[source]
        source: InvalidMetadataValue,
    },
}

/// A containerd daemon, seen through one namespace.
#[derive(Debug, Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: NamespaceInterceptor,
    /// The OCI runtime binary, e.g. `crun` or `runc`.
    oci_runtime: String,
    /// The program the shim runs to write a task's output (see
    /// [`Containerd::with_log_pipe`]); without one the shim appends to the
    /// file itself.
    log_pipe: Option<PathBuf>,
    /// How images missing at `prepare_root` are pulled.
    pull: crate::image::PullOptions,
}

impl Containerd {
    /// Connects to the daemon's socket. The channel reconnects by itself
    /// when the daemon restarts.
    pub async fn connect(
        socket: &Path,
        namespace: &str,
        oci_runtime: &str,
    ) -> Result<Self, ConnectError> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|source| ConnectError::Transport {
                    socket: socket.display().to_string(),
                    source,
                })?;
        let header = namespace
            .parse()
            .map_err(|source| ConnectError::Namespace {
                namespace: namespace.to_string(),
                source,
            })?;
        Ok(Self {
            channel,
            namespace: NamespaceInterceptor(header),
            oci_runtime: oci_runtime.to_string(),
            log_pipe: None,
            pull: crate::image::PullOptions::default(),
        })
    }

    /// Task output goes through `program` (containerd's `binary://` log
    /// URI): the shim runs `program log-pipe FILE` with the task's stdout
    /// and stderr on fds 3 and 4, and waits for fd 5 to close. The program
    /// owns the file, so it can rotate it; a file the shim appends to
    /// cannot be renamed under it.
    pub fn with_log_pipe(mut self, program: impl Into<PathBuf>) -> Self {
        self.log_pipe = Some(program.into());
        self
    }

    /// Images that `prepare_root` pulls are pulled with `options` (plain
    /// HTTP registries, CA certificates); HTTPS with the system's CAs
    /// without it.
    pub fn with_pull_options(mut self, options: crate::image::PullOptions) -> Self {
        self.pull = options;
        self
    }

    /// The stdout/stderr URI of a task whose output goes to `log`.
    pub fn log_uri(&self, log: &Path) -> String {
        match &self.log_pipe {
            // containerd 1.6 turns each query pair into two arguments.
            Some(program) => format!(
                "binary://{}?{LOG_PIPE_ARG}={}",
                program.display(),
                query_escape(&log.display().to_string())
            ),
            None => format!("file://{}", log.display()),
        }
    }

    /// The daemon's channel, shared by every client of it.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The interceptor that sends this handle's namespace.
    pub fn namespace(&self) -> &NamespaceInterceptor {
        &self.namespace
    }

    fn containers(&self) -> ContainersClient<Namespaced> {
        ContainersClient::with_interceptor(self.channel.clone(), self.namespace.clone())
    }

    fn tasks(&self) -> TasksClient<Namespaced> {
        TasksClient::with_interceptor(self.channel.clone(), self.namespace.clone())
    }

    /// The runtime a container record names: the runc shim running
    /// this handle's OCI runtime binary.
    pub fn runtime(&self) -> Runtime {
        let options = RuncOptions {
            binary_name: self.oci_runtime.clone(),
        };
        Runtime {
            name: SHIM.to_string(),
            options: Some(Any {
                type_url: RUNC_OPTIONS_TYPE_URL.to_string(),
                value: prost::Message::encode_to_vec(&options),
            }),
        }
    }
}

impl Containerd {
    /// Creates the container record `container` (its id, labels,
    /// snapshot...) running `spec` on this handle's runtime.
    pub async fn create_record(
        &self,
        mut container: Container,
        spec: &Spec,
    ) -> Result<(), RuntimeError> {
        let id = container.id.clone();
        let value = serde_json::to_vec(spec).map_err(|e| {
            RuntimeError::new("encode spec", &id, Code::InvalidArgument, e.to_string())
        })?;
        container.runtime = Some(self.runtime());
        container.spec = Some(Any {
            type_url: SPEC_TYPE_URL.to_string(),
            value,
        });
        self.containers()
            .create(CreateContainerRequest {
                container: Some(container),
            })
            .await
            .map_err(error("create container", &id))?;
        Ok(())
    }

    /// Creates and starts the task of container `id` on `rootfs`; returns
    /// its pid. Its output goes to `log` (a file, or the log pipe): both
    /// streams, or with `terminal` the one stream of the pty the shim
    /// makes. The shim opens the file; its directory is made here.
    pub async fn create_and_start_task(
        &self,
        id: &str,
        log: &Path,
        rootfs: &[RootfsMount],
        terminal: bool,
    ) -> Result<u32, RuntimeError> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                RuntimeError::new("create log directory", id, Code::Internal, e.to_string())
            })?;
        }
        let log_uri = self.log_uri(log);
        let request = CreateTaskRequest {
            container_id: id.to_string(),
            // A terminal has one stream: stderr stays empty.
            stderr: if terminal {
                String::new()
            } else {
                log_uri.clone()
            },
            stdout: log_uri,
            terminal,
            rootfs: rootfs
                .iter()
                .map(|m| ContainerdMount {
                    r#type: m.typ.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        self.tasks()
            .create(request)
            .await
            .map_err(error("create task", id))?;
        let started = self
            .tasks()
            .start(StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            })
            .await
            .map_err(error("start task", id))?;
        Ok(started.into_inner().pid)
    }
}

/// A mount containerd gave for a snapshot, as a task's rootfs takes it.
pub fn rootfs_mount(mount: ContainerdMount) -> RootfsMount {
    RootfsMount {
        typ: mount.r#type,
        source: mount.source,
        options: mount.options,
    }
}

/// A task's status as containerd reports its process.
pub fn task_status(process: &containerd_client::types::v1::Process) -> TaskStatus {
    match Status::try_from(process.status) {
        Ok(Status::Created) => TaskStatus::Created,
        Ok(Status::Running) => TaskStatus::Running,
        Ok(Status::Paused | Status::Pausing) => TaskStatus::Paused,
        Ok(Status::Stopped) => TaskStatus::Stopped {
            exit_code: process.exit_status,
        },
        Ok(Status::Unknown) | Err(_) => TaskStatus::Unknown,
    }
}

/// Turns a failed call's status into a `RuntimeError` naming the
/// operation and the container, its code kept (see [`code_of`]).
pub fn error<'a>(
    operation: &'static str,
    id: &'a str,
) -> impl FnOnce(GrpcStatus) -> RuntimeError + 'a {
    move |status| RuntimeError::new(operation, id, code_of(&status), status.message())
}

/// The status code, except that a connection broken mid-call (tonic says
/// `Unknown`, "transport error") is `Unavailable`: containerd went away.
/// Statuses containerd itself sends never carry a local error source.
pub(crate) fn code_of(status: &GrpcStatus) -> Code {
    if status.code() == Code::Unknown && std::error::Error::source(status).is_some() {
        Code::Unavailable
    } else {
        status.code()
    }
}

/// Makes the missing sources of bind mounts, as directories (as Docker
/// does for `-v`): a service that keeps its state in `/var/lib/<name>`
/// finds it there on the first boot.
fn create_bind_sources(id: &str, spec: &Spec) -> Result<(), RuntimeError> {
    let binds = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("bind"));
    for mount in binds {
        let Some(source) = mount.source() else {
            continue;
        };
        if source.symlink_metadata().is_err() {
            std::fs::create_dir_all(source).map_err(|e| {
                RuntimeError::new(
                    "create bind source",
                    id,
                    Code::FailedPrecondition,
                    format!("{}: {e}", source.display()),
                )
            })?;
        }
    }
    Ok(())
}

impl ContainerRuntime for Containerd {
    async fn create_container(&self, id: &str, spec: &Spec) -> Result<(), RuntimeError> {
        create_bind_sources(id, spec)?;
        let container = Container {
            id: id.to_string(),
            ..Default::default()
        };
        self.create_record(container, spec).await
    }

    async fn delete_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.containers()
            .delete(DeleteContainerRequest { id: id.to_string() })
            .await
            .map_err(error("delete container", id))?;
        Ok(())
    }

    async fn prepare_root(
        &self,
        id: &str,
        root: &Root,
        log: &Path,
    ) -> Result<PreparedRoot, RuntimeError> {
        let Root::Image(reference) = root else {
            return Ok(PreparedRoot::dir());
        };
        // A service's image comes from the registry `image:` names, with
        // this daemon's pull options; a pull shows in the service's log
        // (`ros service logs`), the only place a person looks then.
        let mut progress = PullLog::open(log, reference);
        let mut report = |event: crate::image::PullEvent| progress.line(&event);
        let rootfs =
            crate::image::prepare_rootfs_pulling(self, reference, id, &self.pull, &mut report)
                .await
                .map_err(|e| {
                    let error = RuntimeError::new("prepare image", id, e.code(), e.to_string());
                    progress.failed(&error);
                    error
                })?;
        let config = rootfs.config;
        Ok(PreparedRoot {
            mounts: rootfs.mounts.into_iter().map(rootfs_mount).collect(),
            image: Some(crate::root::ImageDefaults {
                entrypoint: config.entrypoint,
                cmd: config.cmd,
                env: config.env,
                working_dir: config.working_dir,
                user: config.user,
            }),
        })
    }

    async fn release_root(&self, id: &str, root: &Root) -> Result<(), RuntimeError> {
        match root {
            Root::Dir(_) => Ok(()),
            Root::Image(_) => crate::image::remove_rootfs(self, id)
                .await
                .map_err(|e| RuntimeError::new("remove rootfs", id, e.code(), e.to_string())),
        }
    }

    async fn start_task(
        &self,
        id: &str,
        log: &Path,
        rootfs: &[RootfsMount],
    ) -> Result<u32, RuntimeError> {
        // The shim (or the program it runs) writes both streams, so
        // output is kept while containerd restarts.
        self.create_and_start_task(id, log, rootfs, false).await
    }

    async fn task(&self, id: &str) -> Result<Option<TaskState>, RuntimeError> {
        let request = GetRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        match self.tasks().get(request).await {
            Ok(response) => Ok(response.into_inner().process.map(|p| TaskState {
                pid: p.pid,
                status: task_status(&p),
            })),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(error("get task", id)(status)),
        }
    }

    async fn wait_task(&self, id: &str) -> Result<u32, RuntimeError> {
        let request = WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        let response = self
            .tasks()
            .wait(request)
            .await
            .map_err(error("wait task", id))?;
        Ok(response.into_inner().exit_status)
    }

    async fn kill_task(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        self.kill(id, signal, true).await
    }

    async fn kill_init(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        self.kill(id, signal, false).await
    }

    async fn delete_task(&self, id: &str) -> Result<(), RuntimeError> {
        let request = || DeleteTaskRequest {
            container_id: id.to_string(),
        };
        match self.tasks().delete(request()).await {
            // The shim was going away as its task had just exited: asked
            // again, containerd answers from its own records (or NotFound).
            Err(status) if status.message().contains("ttrpc: closed") => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                self.tasks()
                    .delete(request())
                    .await
                    .map_err(error("delete task", id))?;
            }
            other => {
                other.map_err(error("delete task", id))?;
            }
        }
        Ok(())
    }
}

impl Containerd {
    /// `all`: every process of the task's cgroup, else its first one.
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let request = KillRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            signal,
            all,
        };
        self.tasks()
            .kill(request)
            .await
            .map_err(error("kill task", id))?;
        Ok(())
    }
}

/// A pull's progress, appended to a service's log as `ros: pull …` lines.
struct PullLog {
    file: Option<std::fs::File>,
    reference: String,
}

impl PullLog {
    fn open(log: &Path, reference: &str) -> Self {
        if let Some(dir) = log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .inspect_err(|e| tracing::warn!("pull progress of {reference}: {}: {e}", log.display()))
            .ok();
        Self {
            file,
            reference: reference.to_owned(),
        }
    }

    fn line(&mut self, event: &crate::image::PullEvent) {
        self.write(&format!("ros: pull {}: {event}", self.reference));
    }

    fn failed(&mut self, error: &RuntimeError) {
        self.write(&format!("ros: pull {} failed: {error}", self.reference));
    }

    fn write(&mut self, line: &str) {
        use std::io::Write;
        if let Some(file) = &mut self.file {
            // A full disk loses progress lines, never the pull.
            let _ = writeln!(file, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_is_unavailable_but_a_daemon_error_is_not() {
        let from_daemon = GrpcStatus::unknown("OCI runtime create failed");
        assert_eq!(code_of(&from_daemon), Code::Unknown);
        let broken = GrpcStatus::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(broken.code(), Code::Unknown);
        assert_eq!(code_of(&broken), Code::Unavailable);
        assert_eq!(code_of(&GrpcStatus::not_found("no task")), Code::NotFound);
    }

    #[tokio::test]
    async fn the_log_uri_names_the_pipe_program_and_the_file() {
        // A lazy channel: nothing is dialled until a call is made.
        let channel = tonic::transport::Endpoint::from_static("http://[::1]:1").connect_lazy();
        let plain = Containerd {
            channel,
            namespace: NamespaceInterceptor("ros".parse().unwrap()),
            oci_runtime: "crun".into(),
            log_pipe: None,
            pull: crate::image::PullOptions::default(),
        };
        let log = Path::new("/var/log/ros/my svc.log");
        assert_eq!(plain.log_uri(log), "file:///var/log/ros/my svc.log");
        let piped = plain.with_log_pipe("/usr/bin/ros");
        assert_eq!(
            piped.log_uri(log),
            "binary:///usr/bin/ros?log-pipe=/var/log/ros/my%20svc.log"
        );
    }

    #[test]
    fn runc_options_encode_the_binary_name_as_field_6() {
        let bytes = prost::Message::encode_to_vec(&RuncOptions {
            binary_name: "crun".into(),
        });
        // Field 6, wire type 2 (length-delimited): tag byte 6 << 3 | 2 = 50.
        assert_eq!(bytes, vec![50, 4, b'c', b'r', b'u', b'n']);
    }
}
