//! Processes whose streams come back to the caller: `ros exec` (a second
//! process in a running container, containerd's `Tasks.Exec`) and
//! `ros run -i`/`-it` (the container's own process).
//!
//! The shim writes the process's output into fifos under
//! `RUN_DIR/<name>/` and reads its input from one. Each fifo we read is
//! also held open for writing by us until the process is deleted (which
//! waits for the shim to copy everything): so a read never sees the end
//! before the shim has opened its side, and sees it once all is read.
//! With a terminal (`-t`) there is one output stream, and the caller's
//! terminal is put in raw mode and its size given to the process.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, CreateTaskRequest, DeleteProcessRequest, ExecProcessRequest, ResizePtyRequest,
    StartRequest, WaitRequest,
};
use containerd_client::types::Mount as ContainerdMount;
use prost_types::Any;
use system_services::root::RootfsMount;
use system_services::runtime::{RuntimeError, TaskStatus};
use system_services::service::User;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tonic::Code;

use crate::engine::{Engine, WorkloadError};
use crate::record::{Namespaced, Task, labels, unix_seconds};

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// How long the output may take to drain once the process is deleted.
const DRAIN: Duration = Duration::from_secs(5);

/// `ros exec`'s options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    /// `KEY=value`, over the container's.
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<User>,
    /// `-u NAME[:GROUP]`: looked up in the container's files, over `user`.
    pub user_name: Option<String>,
    /// `-t`: a terminal.
    pub tty: bool,
    /// `-i`: the caller's input goes to the process.
    pub interactive: bool,
}

/// The caller's side of a process's streams.
pub struct CallerIo {
    /// Read only with `-i`.
    pub stdin: Box<dyn AsyncRead + Unpin + Send>,
    pub stdout: Box<dyn AsyncWrite + Unpin + Send>,
    /// Unused with a terminal: the terminal merges both streams.
    pub stderr: Box<dyn AsyncWrite + Unpin + Send>,
    /// The caller's terminal size (columns, rows), for `-t`.
    pub size: Option<(u16, u16)>,
    /// Pass on the changes of this process's terminal size (SIGWINCH).
    pub follow_resize: bool,
}

impl std::fmt::Debug for CallerIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerIo")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl CallerIo {
    /// This process's own stdin, stdout and stderr.
    pub fn std() -> Self {
        Self {
            stdin: Box::new(tokio::io::stdin()),
            stdout: Box::new(tokio::io::stdout()),
            stderr: Box::new(tokio::io::stderr()),
            size: crate::tty::size(),
            follow_resize: true,
        }
    }
}

/// The fifos of one process and the copies between them and the caller.
struct Streams {
    paths: Vec<PathBuf>,
    stdin: String,
    stdout: String,
    stderr: String,
    /// Our own writers on the output fifos: dropped once the process is
    /// deleted, so the copies end.
    keep_open: Vec<pipe::Sender>,
    copies: Vec<JoinHandle<()>>,
    /// The caller's input and our writer on the stdin fifo, until the
    /// process has started.
    pending_input: Option<(Box<dyn AsyncRead + Unpin + Send>, pipe::Sender)>,
    input: Option<JoinHandle<()>>,
}

impl Streams {
    fn open(
        dir: &Path,
        id: &str,
        tty: bool,
        interactive: bool,
        io: CallerIo,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let fifo = |stream: &str| -> std::io::Result<PathBuf> {
            let path = dir.join(format!("{id}-{stream}"));
            let _ = std::fs::remove_file(&path);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(std::io::Error::from)?;
            Ok(path)
        };
        let mut streams = Self {
            paths: Vec::new(),
            stdin: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            keep_open: Vec::new(),
            copies: Vec::new(),
            pending_input: None,
            input: None,
        };
        let CallerIo {
            stdin,
            stdout,
            stderr,
            ..
        } = io;
        let outputs: Vec<(&str, Box<dyn AsyncWrite + Unpin + Send>)> = if tty {
            vec![("stdout", stdout)]
        } else {
            vec![("stdout", stdout), ("stderr", stderr)]
        };
        for (stream, mut sink) in outputs {
            let path = fifo(stream)?;
            let mut receiver = pipe::OpenOptions::new().open_receiver(&path)?;
            streams
                .keep_open
                .push(pipe::OpenOptions::new().open_sender(&path)?);
            streams.copies.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut receiver, &mut sink).await;
                let _ = sink.flush().await;
            }));
            let text = path.display().to_string();
            if stream == "stdout" {
                streams.stdout = text;
            } else {
                streams.stderr = text;
            }
            streams.paths.push(path);
        }
        if interactive {
            let path = fifo("stdin")?;
            // Read-write: opening for writing alone would fail until the
            // shim opens its side.
            let sender = pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&path)?;
            streams.pending_input = Some((stdin, sender));
            streams.stdin = path.display().to_string();
            streams.paths.push(path);
        }
        Ok(streams)
    }

    /// Once the process runs: copies the caller's input to it; at its
    /// end the shim is told to close the process's stdin (our fifo
    /// writer alone would not end it: the shim holds one too). Not with
    /// a terminal: the shim then shuts the terminal down, cutting off
    /// what the process is still doing (Docker refuses `-t` without a
    /// terminal for the same reason).
    fn start_input(
        &mut self,
        mut tasks: TasksClient<Namespaced>,
        name: &str,
        exec_id: &str,
        tty: bool,
    ) {
        let Some((mut source, mut sender)) = self.pending_input.take() else {
            return;
        };
        let request = CloseIoRequest {
            container_id: name.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
        };
        self.input = Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut source, &mut sender).await;
            let _ = sender.flush().await;
            if tty {
                // Held until the process ends (this task is aborted then).
                std::future::pending::<()>().await;
            }
            drop(sender);
            let _ = tasks.close_io(request).await;
        }));
    }

    /// After the process is deleted: the output drained, the fifos gone.
    async fn finish(mut self) {
        self.keep_open.clear();
        for copy in self.copies.drain(..) {
            let _ = tokio::time::timeout(DRAIN, copy).await;
        }
        if let Some(input) = self.input.take() {
            input.abort();
        }
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Gives the process the caller's terminal size each time it changes.
async fn pass_on_resizes(mut tasks: TasksClient<Namespaced>, name: String, exec_id: String) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut changes) = signal(SignalKind::window_change()) else {
        return;
    };
    while changes.recv().await.is_some() {
        if let Some((width, height)) = crate::tty::size() {
            let _ = tasks
                .resize_pty(ResizePtyRequest {
                    container_id: name.clone(),
                    exec_id: exec_id.clone(),
                    width: u32::from(width),
                    height: u32::from(height),
                })
                .await;
        }
    }
}

fn grpc_error(
    operation: &'static str,
    id: &str,
) -> impl FnOnce(tonic::Status) -> RuntimeError + use<> {
    let id = id.to_string();
    move |status| RuntimeError::new(operation, &id, status.code(), status.message())
}

fn random_id() -> String {
    format!("{:08x}", crate::engine::random_u32())
}

impl Engine {
    /// `ros exec`: runs `options.command` in the running container
    /// `name`, its streams to `io`; returns its exit code.
    pub async fn exec(
        &self,
        name: &str,
        options: &ExecOptions,
        io: CallerIo,
    ) -> Result<u32, WorkloadError> {
        let record = self.record(name).await?;
        match self.records().task(name).await? {
            Some(Task {
                status: TaskStatus::Running,
                ..
            }) => {}
            _ => return Err(WorkloadError::NotRunning(name.to_string())),
        }
        if options.command.is_empty() {
            return Err(WorkloadError::Conflict("exec needs a command".into()));
        }
        let mut process = record.spec["process"].clone();
        process["args"] = serde_json::json!(options.command);
        process["terminal"] = serde_json::json!(options.tty);
        if let Some(dir) = &options.workdir {
            process["cwd"] = serde_json::json!(dir);
        }
        let user = match &options.user_name {
            Some(text) => {
                let layers = crate::files::layer_dirs(&self.records().snapshot_mounts(name).await?);
                Some(crate::files::resolve_user(text, &layers).ok_or_else(|| {
                    crate::flags::FlagError::new(
                        "-u",
                        text,
                        "the container's /etc/passwd or /etc/group has no such name",
                    )
                })?)
            }
            None => options.user,
        };
        if let Some(user) = user {
            process["user"] = serde_json::json!({"uid": user.uid, "gid": user.gid});
        }
        let mut env: Vec<String> = process["env"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for entry in &options.env {
            let key = entry.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(entry.clone());
        }
        if options.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process["env"] = serde_json::json!(env);
        let process = serde_json::to_vec(&process).map_err(|e| {
            RuntimeError::new("encode process", name, Code::InvalidArgument, e.to_string())
        })?;

        let exec_id = format!("exec-{}", random_id());
        let dir = self.settings().container_run_dir(name);
        let (size, follow_resize) = (io.size, io.follow_resize);
        let mut streams = Streams::open(&dir, &exec_id, options.tty, options.interactive, io)
            .map_err(|source| WorkloadError::Io {
                what: "making the exec fifos in",
                path: dir.clone(),
                source,
            })?;
        let mut tasks = self.records().tasks();
        let request = ExecProcessRequest {
            container_id: name.to_string(),
            stdin: streams.stdin.clone(),
            stdout: streams.stdout.clone(),
            stderr: streams.stderr.clone(),
            terminal: options.tty,
            spec: Some(Any {
                type_url: PROCESS_TYPE_URL.to_string(),
                value: process,
            }),
            exec_id: exec_id.clone(),
        };
        let outcome = async {
            tasks
                .exec(request)
                .await
                .map_err(grpc_error("exec", name))?;
            self.run_process(
                name,
                &exec_id,
                options.tty,
                &mut streams,
                size,
                follow_resize,
            )
            .await
        }
        .await;
        let _ = tasks
            .delete_process(DeleteProcessRequest {
                container_id: name.to_string(),
                exec_id: exec_id.clone(),
            })
            .await;
        streams.finish().await;
        outcome
    }

    /// Starts a created process (the task's own when `exec_id` is
    /// empty), gives it the terminal's size, waits for its exit code.
    async fn run_process(
        &self,
        name: &str,
        exec_id: &str,
        tty: bool,
        streams: &mut Streams,
        size: Option<(u16, u16)>,
        follow_resize: bool,
    ) -> Result<u32, WorkloadError> {
        let mut tasks = self.records().tasks();
        tasks
            .start(StartRequest {
                container_id: name.to_string(),
                exec_id: exec_id.to_string(),
            })
            .await
            .map_err(grpc_error("start", name))?;
        streams.start_input(self.records().tasks(), name, exec_id, tty);
        if let (true, Some((width, height))) = (tty, size) {
            let _ = tasks
                .resize_pty(ResizePtyRequest {
                    container_id: name.to_string(),
                    exec_id: exec_id.to_string(),
                    width: u32::from(width),
                    height: u32::from(height),
                })
                .await;
        }
        let resizer = (tty && follow_resize).then(|| {
            let tasks = self.records().tasks();
            tokio::spawn(pass_on_resizes(
                tasks,
                name.to_string(),
                exec_id.to_string(),
            ))
        });
        let wait = tasks.wait(WaitRequest {
            container_id: name.to_string(),
            exec_id: exec_id.to_string(),
        });
        let response = wait.await;
        if let Some(resizer) = resizer {
            resizer.abort();
        }
        let response = response.map_err(grpc_error("wait", name))?;
        Ok(response.into_inner().exit_status)
    }

    /// Creates the container's task with its streams on fifos to the
    /// caller (`ros run -i`/`-it`), runs it to its end, records the exit.
    pub async fn start_attached(
        &self,
        name: &str,
        tty: bool,
        interactive: bool,
        io: CallerIo,
    ) -> Result<u32, WorkloadError> {
        let record = self.record(name).await?;
        let rootfs: Vec<RootfsMount> = self.records().snapshot_mounts(name).await?;
        self.prepare_start(&record).await?;
        let dir = self.settings().container_run_dir(name);
        let (size, follow_resize) = (io.size, io.follow_resize);
        let mut streams = Streams::open(&dir, "init", tty, interactive, io).map_err(|source| {
            WorkloadError::Io {
                what: "making the fifos in",
                path: dir.clone(),
                source,
            }
        })?;
        let request = CreateTaskRequest {
            container_id: name.to_string(),
            stdin: streams.stdin.clone(),
            stdout: streams.stdout.clone(),
            stderr: streams.stderr.clone(),
            terminal: tty,
            rootfs: rootfs
                .into_iter()
                .map(|m| ContainerdMount {
                    r#type: m.typ,
                    source: m.source,
                    options: m.options,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let outcome = async {
            self.records()
                .tasks()
                .create(request)
                .await
                .map_err(grpc_error("create task", name))?;
            self.run_process(name, "", tty, &mut streams, size, follow_resize)
                .await
        }
        .await;
        // Deleting the task waits for the shim to copy all output.
        let recorded = self.record_exit(name).await;
        if outcome.is_err() {
            let _ = self.containerd_delete_task(name).await;
        }
        streams.finish().await;
        recorded?;
        outcome
    }

    async fn containerd_delete_task(&self, name: &str) -> Result<(), RuntimeError> {
        use system_services::runtime::ContainerRuntime;
        self.containerd().delete_task(name).await
    }

    /// What every start does first: the runtime files, the start time,
    /// the stop mark and the last exit cleared.
    pub(crate) async fn prepare_start(
        &self,
        record: &crate::record::Record,
    ) -> Result<(), WorkloadError> {
        self.write_files(record)?;
        self.records()
            .set_labels(
                &record.name,
                &[
                    (labels::STARTED, Some(unix_seconds(SystemTime::now()))),
                    (labels::STOPPED, None),
                    (labels::EXIT_CODE, None),
                    (labels::FINISHED, None),
                ],
            )
            .await?;
        Ok(())
    }
}
