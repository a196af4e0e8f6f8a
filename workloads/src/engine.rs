//! The operations on the user's containers, each on one container by
//! name, each reading containerd afresh (nothing else keeps state).
//!
//! A container is a containerd record (spec, image, snapshot key,
//! labels) plus, while it runs, a task. Whoever sees a task stopped (an
//! attached `run`, `stop`, the keeper) writes its exit code and time to
//! the record and deletes the task: the shim goes away, and deleting
//! waits for the log pipe to write everything out.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use system_services::containerd::{ConnectError, Containerd};
use system_services::image::{self, ImageError, ImageRef, PullEvent};
use system_services::logs;
use system_services::runtime::{ContainerRuntime, RuntimeError, TaskStatus};
use system_services::service::{RestartPolicy, ServiceName, User};
use system_services::spec::SpecError;
use tonic::Code;

use crate::Settings;
use crate::files::{RuntimeFiles, host_name};
use crate::flags::{
    FlagError, NetMode, PortMapping, Proto, Volume, VolumeSource, check_host_path, generated_name,
    ports_label,
};
use crate::record::{Record, Records, Task, labels, unix_seconds};
use crate::status::{Row, State};

pub const SIGTERM: u32 = 15;
pub const SIGKILL: u32 = 9;
/// How long `rm -f` waits for a killed task.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often an attached `run` or `logs -f` looks at the log.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);

/// What `ros run` was asked for, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    pub image: String,
    /// Generated from the image when not given.
    pub name: Option<ServiceName>,
    /// Replaces the image's command.
    pub command: Vec<String>,
    /// Replaces the image's entrypoint (`""` clears it).
    pub entrypoint: Option<String>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<Volume>,
    /// `KEY=value`, over the image's.
    pub env: Vec<String>,
    pub restart: RestartPolicy,
    pub net: NetMode,
    /// `--rm`: removed once its task exits.
    pub remove: bool,
    pub workdir: Option<PathBuf>,
    pub user: Option<User>,
    /// `-u NAME[:GROUP]`: looked up in the image's files, over `user`.
    pub user_name: Option<String>,
    pub hostname: Option<String>,
    /// `-t`: a terminal for the process.
    pub tty: bool,
    /// `-i`: the caller's stdin goes to the process.
    pub interactive: bool,
}

impl RunOptions {
    /// `ros run IMAGE` with nothing else.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            name: None,
            command: Vec::new(),
            entrypoint: None,
            ports: Vec::new(),
            volumes: Vec::new(),
            env: Vec::new(),
            restart: RestartPolicy::No,
            net: NetMode::Bridge,
            remove: false,
            workdir: None,
            user: None,
            user_name: None,
            hostname: None,
            tty: false,
            interactive: false,
        }
    }

    /// The rules between flags Docker has too.
    pub fn check(&self, settings: &Settings) -> Result<(), WorkloadError> {
        if self.remove && self.restart != RestartPolicy::No {
            return Err(WorkloadError::Conflict(
                "--rm and --restart: a container removed when it exits is not restarted".into(),
            ));
        }
        if self.net != NetMode::Bridge && !self.ports.is_empty() {
            return Err(WorkloadError::Conflict(format!(
                "-p and --net {}: ports are published on the bridge only",
                self.net
            )));
        }
        if self.net == NetMode::Host && self.hostname.is_some() {
            return Err(WorkloadError::Conflict(
                "--hostname and --net host: the container has the host's name".into(),
            ));
        }
        for (i, a) in self.ports.iter().enumerate() {
            if self.ports[..i]
                .iter()
                .any(|b| b.host == a.host && b.proto == a.proto)
            {
                return Err(FlagError::new(
                    "-p",
                    &a.to_string(),
                    format!("host port {}/{} is given twice", a.host, a.proto),
                )
                .into());
            }
        }
        for volume in &self.volumes {
            if let VolumeSource::Host(path) = &volume.source {
                let text = format!("{}:{}", path.display(), volume.target.display());
                check_host_path(&text, path, &settings.volume_roots)?;
            }
        }
        Ok(())
    }
}

/// A container that was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub name: String,
    pub pid: u32,
}

/// Why an operation failed; each names the container, image, flag or
/// port at fault.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error("conflicting options: {0}")]
    Conflict(String),
    #[error(
        "the container name {0:?} is already in use: remove that container or choose another --name"
    )]
    NameTaken(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("container {0} is running: stop it first, or remove it with rm -f")]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("host port {port}/{proto} is already published by container {by}")]
    PortTaken { port: u16, proto: Proto, by: String },
    #[error("unable to find image {reference}: {source}")]
    ImageNotFound {
        reference: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error(transparent)]
    Image(Box<ImageError>),
    #[error(
        "image {image} runs as user {user:?}, which its /etc/passwd does not name: give -u UID[:GID]"
    )]
    ImageUser { image: String, user: String },
    #[error("container {name}: {source}")]
    Spec {
        name: String,
        #[source]
        source: SpecError,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl WorkloadError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| Self::Io { what, path, source }
    }
}

fn ignore_not_found(result: Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    match result {
        Err(e) if e.code == Code::NotFound => Ok(()),
        other => other,
    }
}

/// The user's containers on one containerd namespace.
#[derive(Debug, Clone)]
pub struct Engine {
    containerd: Containerd,
    records: Records,
    settings: Settings,
}

impl Engine {
    pub fn new(containerd: Containerd, settings: Settings) -> Self {
        Self {
            records: Records::new(&containerd),
            containerd,
            settings,
        }
    }

    /// Connects as `settings` say.
    pub async fn connect(settings: Settings) -> Result<Self, ConnectError> {
        Ok(Self::new(settings.connect().await?, settings))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The record of `name`; `NoSuchContainer` when there is none.
    pub(crate) async fn record(&self, name: &str) -> Result<Record, WorkloadError> {
        self.records
            .get(name)
            .await?
            .ok_or_else(|| WorkloadError::NoSuchContainer(name.to_string()))
    }

    /// Creates the container: its name checked, its image pulled if
    /// missing (progress to `progress`), its snapshot, volumes, runtime
    /// files, spec and record. Returns its name.
    pub async fn create(
        &self,
        options: &RunOptions,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<String, WorkloadError> {
        options.check(&self.settings)?;
        let name = match &options.name {
            Some(name) => name.clone(),
            None => {
                let random = random_u32();
                ServiceName::new(generated_name(&options.image, random))
                    .map_err(|e| FlagError::new("--name", &e.name, e.reason))?
            }
        };
        let id = name.as_str();
        // Before the snapshot: preparing one for a taken name would
        // replace that container's.
        if self.records.get(id).await?.is_some() {
            return Err(WorkloadError::NameTaken(id.to_string()));
        }
        self.check_ports(id, &options.ports).await?;
        let reference = ImageRef::parse(&options.image)
            .map_err(|e| FlagError::new("IMAGE", &options.image, e.to_string()))?
            .to_string();
        let rootfs = image::prepare_rootfs_pulling(
            &self.containerd,
            &options.image,
            id,
            &self.settings.pull,
            progress,
        )
        .await
        .map_err(|e| {
            if e.is_not_found() {
                WorkloadError::ImageNotFound {
                    reference: options.image.clone(),
                    source: Box::new(e),
                }
            } else {
                WorkloadError::Image(Box::new(e))
            }
        })?;
        let layers = crate::files::layer_dirs(
            &rootfs
                .mounts
                .iter()
                .map(|m| system_services::root::RootfsMount {
                    typ: m.r#type.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                })
                .collect::<Vec<_>>(),
        );
        let made = self
            .make(&name, &reference, options, rootfs.config, &layers)
            .await;
        if made.is_err() {
            let _ = image::remove_rootfs(&self.containerd, id).await;
        }
        made?;
        Ok(id.to_string())
    }

    async fn make(
        &self,
        name: &ServiceName,
        reference: &str,
        options: &RunOptions,
        config: image::ImageConfig,
        layers: &[PathBuf],
    ) -> Result<(), WorkloadError> {
        let id = name.as_str();
        // A user given by name (-u, or the image's) is looked up in the
        // image's own passwd.
        let resolved;
        let options = match (&options.user_name, &options.user, &config.user) {
            (Some(text), _, _) => {
                let user = crate::files::resolve_user(text, layers).ok_or_else(|| {
                    FlagError::new(
                        "-u",
                        text,
                        "the image's /etc/passwd or /etc/group has no such name",
                    )
                })?;
                resolved = RunOptions {
                    user: Some(user),
                    ..options.clone()
                };
                &resolved
            }
            (None, None, Some(text)) if text.parse::<u32>().is_err() && !text.is_empty() => {
                match crate::files::resolve_user(text, layers) {
                    Some(user) => {
                        resolved = RunOptions {
                            user: Some(user),
                            ..options.clone()
                        };
                        &resolved
                    }
                    None => options,
                }
            }
            _ => options,
        };
        let defaults = system_services::root::ImageDefaults {
            entrypoint: config.entrypoint,
            cmd: config.cmd,
            env: config.env,
            working_dir: config.working_dir,
            user: config.user,
        };
        let spec =
            crate::spec::build(name, options, &defaults, &self.settings).map_err(|source| {
                match source {
                    SpecError::ImageUser(user) => WorkloadError::ImageUser {
                        image: options.image.clone(),
                        user,
                    },
                    source => WorkloadError::Spec {
                        name: id.to_string(),
                        source,
                    },
                }
            })?;
        // Docker makes missing volume directories; a file is bound as is.
        for volume in &options.volumes {
            let source = crate::spec::volume_source(&volume.source, &self.settings);
            if source.symlink_metadata().is_ok() {
                continue;
            }
            std::fs::create_dir_all(&source)
                .map_err(WorkloadError::io("creating volume directory", &source))?;
        }
        // A log left by an earlier container of this name is not ours.
        self.remove_log(id);
        let mut labels: HashMap<String, String> = [
            (labels::IMAGE, options.image.clone()),
            (labels::RESTART, options.restart.to_string()),
            (labels::NET, options.net.to_string()),
            (labels::CREATED, unix_seconds(SystemTime::now())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if !options.ports.is_empty() {
            labels.insert(labels::PORTS.into(), ports_label(&options.ports));
        }
        if options.remove {
            labels.insert(labels::AUTO_REMOVE.into(), "true".into());
        }
        match self.records.create(id, reference, labels, &spec).await {
            Err(e) if e.code == Code::AlreadyExists => {
                Err(WorkloadError::NameTaken(id.to_string()))
            }
            other => Ok(other?),
        }
    }

    /// Another running container that publishes one of `ports` on the
    /// host: the hooks would fail later, less clearly.
    async fn check_ports(&self, name: &str, ports: &[PortMapping]) -> Result<(), WorkloadError> {
        if ports.is_empty() {
            return Ok(());
        }
        let tasks = self.records.all_tasks().await?;
        for record in self.records.list().await? {
            if record.name == name || !State::of(&record, tasks.get(&record.name)).is_running() {
                continue;
            }
            for theirs in record.ports() {
                if let Some(ours) = ports
                    .iter()
                    .find(|p| p.host == theirs.host && p.proto == theirs.proto)
                {
                    return Err(WorkloadError::PortTaken {
                        port: ours.host,
                        proto: ours.proto,
                        by: record.name,
                    });
                }
            }
        }
        Ok(())
    }

    /// Creates and starts: `ros run`. A container whose task could not
    /// start stays created, unless `--rm` asked for it to go.
    pub async fn run(
        &self,
        options: &RunOptions,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<Started, WorkloadError> {
        let name = self.create(options, progress).await?;
        match self.start(&name).await {
            Ok(pid) => Ok(Started { name, pid }),
            Err(e) => {
                if options.remove {
                    let _ = self.remove(&name, true).await;
                }
                Err(e)
            }
        }
    }

    /// Starts the container's task (after clearing an exited one);
    /// nothing when it runs already. Returns its pid.
    pub async fn start(&self, name: &str) -> Result<u32, WorkloadError> {
        let record = self.record(name).await?;
        match self.records.task(name).await? {
            Some(Task {
                status: TaskStatus::Running | TaskStatus::Paused,
                pid,
                ..
            }) => return Ok(pid),
            Some(Task {
                status: TaskStatus::Stopped { .. },
                ..
            }) => {
                self.record_exit(name).await?;
            }
            Some(_) => {
                // Created and never started: what an interrupted start
                // leaves.
                let _ = self.containerd.kill_task(name, SIGKILL).await;
                ignore_not_found(self.containerd.delete_task(name).await)?;
            }
            None => {}
        }
        self.check_ports(name, &record.ports()).await?;
        let rootfs = self.records.snapshot_mounts(name).await?;
        self.prepare_start(&record).await?;
        let log = self.settings.log_path(name);
        let terminal = record.spec["process"]["terminal"].as_bool() == Some(true);
        if terminal && self.settings.log_pipe.is_none() {
            // containerd 1.6's shim copies a terminal only to a fifo or a
            // `binary://` program, not to a `file://` log.
            return Err(WorkloadError::Conflict(format!(
                "container {name} has a terminal (-t): in the background it needs the log pipe program"
            )));
        }
        // With `-t` in the background (`start`, the keeper) the shim
        // copies the container's terminal to the log.
        let started = self
            .containerd
            .create_and_start_task(name, &log, &rootfs, terminal)
            .await;
        match started {
            Ok(pid) => Ok(pid),
            Err(e) => {
                // A task created but not started would block the next try.
                let _ = self.containerd.delete_task(name).await;
                Err(e.into())
            }
        }
    }

    /// `RUN_DIR/<name>/{resolv.conf,hosts,hostname}`, written at every
    /// start: the run directory does not survive a reboot.
    pub(crate) fn write_files(&self, record: &Record) -> Result<(), WorkloadError> {
        let net = record.net();
        let hostname = record.spec["hostname"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(host_name);
        let dir = self.settings.container_run_dir(&record.name);
        RuntimeFiles::under(&dir)
            .write(
                &self.settings.host_resolv_conf,
                net,
                &hostname,
                &record.name,
            )
            .map_err(WorkloadError::io("writing the runtime files in", &dir))
    }

    /// If the task has stopped: its exit code and time go to the
    /// record, and the task is deleted. Returns the code.
    pub async fn record_exit(&self, name: &str) -> Result<Option<u32>, WorkloadError> {
        let Some(Task {
            status: TaskStatus::Stopped { exit_code },
            exited_at,
            ..
        }) = self.records.task(name).await?
        else {
            return Ok(None);
        };
        let finished = unix_seconds(exited_at.unwrap_or_else(SystemTime::now));
        let labelled = self
            .records
            .set_labels(
                name,
                &[
                    (labels::EXIT_CODE, Some(exit_code.to_string())),
                    (labels::FINISHED, Some(finished)),
                ],
            )
            .await;
        ignore_not_found(labelled)?;
        ignore_not_found(self.containerd.delete_task(name).await)?;
        Ok(Some(exit_code))
    }

    /// `ros stop`: marked stopped (the keeper leaves it down), SIGTERM,
    /// SIGKILL after `timeout`, its exit recorded.
    pub async fn stop(&self, name: &str, timeout: Duration) -> Result<(), WorkloadError> {
        self.record(name).await?;
        self.records
            .set_labels(name, &[(labels::STOPPED, Some("true".into()))])
            .await?;
        if let Some(Task {
            status: TaskStatus::Running | TaskStatus::Paused,
            ..
        }) = self.records.task(name).await?
        {
            ignore_not_found(self.containerd.kill_task(name, SIGTERM).await)?;
            let waited = tokio::time::timeout(timeout, self.containerd.wait_task(name)).await;
            if waited.is_err() {
                ignore_not_found(self.containerd.kill_task(name, SIGKILL).await)?;
                let _ = tokio::time::timeout(KILL_WAIT, self.containerd.wait_task(name)).await;
            }
        }
        self.record_exit(name).await?;
        Ok(())
    }

    /// `ros restart`: stop, then start.
    pub async fn restart(&self, name: &str, timeout: Duration) -> Result<u32, WorkloadError> {
        self.stop(name, timeout).await?;
        self.start(name).await
    }

    /// `ros rm`: refuses a running container unless `force` (then
    /// SIGKILL); removes task, record, snapshot, log and runtime files.
    /// Named volumes stay.
    pub async fn remove(&self, name: &str, force: bool) -> Result<(), WorkloadError> {
        let record = self.record(name).await?;
        let task = self.records.task(name).await?;
        if State::of(&record, task.as_ref()).is_running() {
            if !force {
                return Err(WorkloadError::Running(name.to_string()));
            }
            ignore_not_found(self.containerd.kill_task(name, SIGKILL).await)?;
            let _ = tokio::time::timeout(KILL_WAIT, self.containerd.wait_task(name)).await;
        }
        if task.is_some() {
            ignore_not_found(self.containerd.delete_task(name).await)?;
        }
        ignore_not_found(self.records.delete(name).await)?;
        image::remove_rootfs(&self.containerd, name)
            .await
            .map_err(|e| WorkloadError::Image(Box::new(e)))?;
        self.remove_log(name);
        let dir = self.settings.container_run_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(WorkloadError::io("removing", &dir)(e));
            }
            _ => {}
        }
        Ok(())
    }

    fn remove_log(&self, name: &str) {
        let rotation = logs::Rotation::default();
        for file in logs::files(&self.settings.log_path(name), rotation.keep) {
            let _ = std::fs::remove_file(file);
        }
    }

    /// `ros ps`: every container (`all`) or the running ones, by name.
    pub async fn ps(&self, all: bool) -> Result<Vec<Row>, WorkloadError> {
        let tasks = self.records.all_tasks().await?;
        Ok(self
            .records
            .list()
            .await?
            .iter()
            .map(|r| Row::of(r, tasks.get(&r.name)))
            .filter(|row| all || row.state.is_running())
            .collect())
    }

    /// The container's state now.
    pub async fn state(&self, name: &str) -> Result<State, WorkloadError> {
        let record = self.record(name).await?;
        let task = self.records.task(name).await?;
        Ok(State::of(&record, task.as_ref()))
    }

    /// The last `tail` lines of its output (all when `None`), across
    /// rotated files.
    pub async fn log_text(
        &self,
        name: &str,
        tail: Option<usize>,
    ) -> Result<Vec<u8>, WorkloadError> {
        self.record(name).await?;
        let path = self.settings.log_path(name);
        match logs::tail(&path, logs::Rotation::default().keep, tail) {
            Ok(text) => Ok(text),
            // Started, and nothing written yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(WorkloadError::io("reading the log", &path)(e)),
        }
    }

    /// `ros logs [-f]`: the log's tail, then (`follow`) what is written
    /// while the task runs.
    pub async fn logs(
        &self,
        name: &str,
        tail: Option<usize>,
        follow: bool,
        out: &mut (dyn Write + Send),
    ) -> Result<(), WorkloadError> {
        let text = self.log_text(name, tail).await?;
        let path = self.settings.log_path(name);
        let write = |out: &mut (dyn Write + Send), bytes: &[u8]| {
            // A closed output (a pipe to `head`) ends quietly.
            out.write_all(bytes).and_then(|()| out.flush())
        };
        if write(out, &text).is_err() || !follow {
            return Ok(());
        }
        let mut follower = Follower::at_end(&path);
        loop {
            let state = self.state(name).await?;
            let chunk = follower.read_new();
            if write(out, &chunk).is_err() {
                return Ok(());
            }
            if !state.is_running() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An attached `ros run`: prints the log as it grows until the task
    /// exits, records the exit (the log pipe has written everything once
    /// the task is deleted), prints the rest. Returns the exit code.
    pub async fn follow_until_exit(
        &self,
        name: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<u32, WorkloadError> {
        let path = self.settings.log_path(name);
        let mut follower = Follower::from_start(&path);
        let wait = self.containerd.wait_task(name);
        tokio::pin!(wait);
        let code = loop {
            tokio::select! {
                code = &mut wait => break code?,
                () = tokio::time::sleep(FOLLOW_EVERY) => {
                    let _ = out.write_all(&follower.read_new()).and_then(|()| out.flush());
                }
            }
        };
        self.record_exit(name).await?;
        let _ = out
            .write_all(&follower.read_new())
            .and_then(|()| out.flush());
        Ok(code)
    }
}

/// Stops every running container of the namespace at once (SIGTERM,
/// SIGKILL after `grace`), for a shutdown: they are not marked stopped,
/// so the keeper starts them again by their policy at the next boot.
pub async fn stop_all(containerd: &Containerd, grace: Duration) {
    let records = Records::new(containerd);
    let tasks = match records.all_tasks().await {
        Ok(tasks) => tasks,
        Err(err) => {
            tracing::warn!(%err, "listing tasks to stop");
            return;
        }
    };
    let running: Vec<String> = tasks
        .into_iter()
        .filter(|(_, t)| matches!(t.status, TaskStatus::Running | TaskStatus::Paused))
        .map(|(name, _)| name)
        .collect();
    let stops = running.iter().map(|name| async move {
        let _ = containerd.kill_task(name, SIGTERM).await;
        if tokio::time::timeout(grace, containerd.wait_task(name))
            .await
            .is_err()
        {
            tracing::warn!(container = %name, "did not stop in time; killing");
            let _ = containerd.kill_task(name, SIGKILL).await;
            let _ = tokio::time::timeout(KILL_WAIT, containerd.wait_task(name)).await;
        }
    });
    futures::future::join_all(stops).await;
}

/// Reads what is appended to a log, starting over when it is rotated.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    position: u64,
    inode: Option<u64>,
}

impl Follower {
    pub fn from_start(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            position: 0,
            inode: None,
        }
    }

    pub fn at_end(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok();
        Self {
            path: path.to_path_buf(),
            position: meta.as_ref().map_or(0, |m| m.len()),
            inode: meta.map(|m| m.ino()),
        }
    }

    /// What was written since the last call.
    pub fn read_new(&mut self) -> Vec<u8> {
        use std::os::unix::fs::MetadataExt;
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = file.metadata() else {
            return Vec::new();
        };
        if self.inode.is_some_and(|i| i != meta.ino()) || meta.len() < self.position {
            self.position = 0;
        }
        self.inode = Some(meta.ino());
        let mut chunk = Vec::new();
        if meta.len() > self.position
            && file.seek(SeekFrom::Start(self.position)).is_ok()
            && file.read_to_end(&mut chunk).is_ok()
        {
            self.position += chunk.len() as u64;
        }
        chunk
    }
}

/// 32 random bits (a generated name's suffix, an exec id): the low half
/// of a randomly seeded hash of the time, taken without a cast.
pub(crate) fn random_u32() -> u32 {
    let [a, b, c, d, ..] = RandomState::new().hash_one(SystemTime::now()).to_le_bytes();
    u32::from_le_bytes([a, b, c, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{parse_port, parse_volume};

    #[test]
    fn rm_and_restart_conflict_as_in_docker() {
        let settings = Settings::system();
        let mut options = RunOptions::new("busybox");
        options.remove = true;
        options.restart = RestartPolicy::Always;
        let err = options.check(&settings).unwrap_err().to_string();
        assert!(err.contains("--rm and --restart"), "{err}");
        let mut options = RunOptions::new("busybox");
        options.net = NetMode::Host;
        options.ports = vec![parse_port("80:80").unwrap()];
        assert!(
            options
                .check(&settings)
                .unwrap_err()
                .to_string()
                .contains("-p and --net host")
        );
        options.net = NetMode::Bridge;
        options.ports.push(parse_port("80:81").unwrap());
        let err = options.check(&settings).unwrap_err().to_string();
        assert!(err.contains("host port 80/tcp is given twice"), "{err}");
    }

    #[test]
    fn volumes_outside_the_shared_roots_are_refused_naming_the_flag() {
        let settings = Settings::system();
        let mut options = RunOptions::new("busybox");
        options.volumes = vec![parse_volume("/etc:/host-etc").unwrap()];
        let err = options.check(&settings).unwrap_err().to_string();
        assert!(
            err.starts_with("-v \"/etc:/host-etc\": host path /etc is not under /home"),
            "{err}"
        );
        options.volumes = vec![parse_volume("/home/rancher/www:/www:ro").unwrap()];
        options.check(&settings).unwrap();
    }

    #[test]
    fn the_follower_reads_appends_and_starts_over_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut follower = Follower::from_start(&path);
        assert!(follower.read_new().is_empty());
        std::fs::write(&path, "one\n").unwrap();
        assert_eq!(follower.read_new(), b"one\n");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(follower.read_new(), b"two\n");
        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        std::fs::write(&path, "three\n").unwrap();
        assert_eq!(follower.read_new(), b"three\n");
    }
}
