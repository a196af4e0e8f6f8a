//! The user's containers on the user containerd, with Docker's habits:
//! `ros run|ps|logs|stop|start|restart|rm|exec|pull`, and the same
//! binary answering as `docker` for that subset ([`docker_args`]). The
//! work is the `workloads` crate's; this is the flags and the printing.
//!
//! Where things are can be moved (tests): `ROS_CONTAINERD_SOCKET`,
//! `ROS_CONTAINERD_NAMESPACE`, `ROS_OCI_RUNTIME`, `ROS_WORKLOADS_DIR`
//! (data and runtime directories under it), `ROS_WORKLOADS_PROGRAM` (the
//! log pipe program), `ROS_NET_HOOK` (the network hook program),
//! `ROS_CONFIG_ROOT` (where the configuration is read), `ROS_CONTROL_SOCKET`
//! (PID 1, asked why the user containerd does not answer).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand};
use os_config::{ConfigPaths, Layers};
use system_services::image::PullEvent;
use workloads::exec::{CallerIo, ExecOptions};
use workloads::flags::{
    FlagError, UserFlag, parse_env, parse_hostname, parse_name, parse_net, parse_port,
    parse_restart, parse_user_flag, parse_volume,
};
use workloads::{Engine, RunOptions, Settings, WorkloadError};

use super::pull::ProgressPrinter;

pub const SOCKET_ENV: &str = "ROS_CONTAINERD_SOCKET";
pub const NAMESPACE_ENV: &str = "ROS_CONTAINERD_NAMESPACE";
pub const RUNTIME_ENV: &str = "ROS_OCI_RUNTIME";
pub const DIR_ENV: &str = "ROS_WORKLOADS_DIR";
pub const PROGRAM_ENV: &str = "ROS_WORKLOADS_PROGRAM";
pub const HOOK_ENV: &str = "ROS_NET_HOOK";

/// The docker subcommands this binary answers, as `ros <subcommand>`.
pub const DOCKER_SUBCOMMANDS: &[&str] = &[
    "run", "ps", "logs", "stop", "start", "restart", "rm", "exec", "pull", "images", "rmi", "load",
];

/// Exit code for bad usage (a flag's value, an unsupported command).
const USAGE: u8 = 2;

/// Why `docker ARGS` is not answered; each names what this system does
/// answer ([`DOCKER_SUBCOMMANDS`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DockerArgsError {
    #[error("docker: a command is needed; this system answers: {}", DOCKER_SUBCOMMANDS.join(", "))]
    NoCommand,
    #[error("docker: the option {0} is not supported; this system answers: {list}", list = DOCKER_SUBCOMMANDS.join(", "))]
    Option(String),
    #[error("docker: '{0}' is not supported; this system answers: {list}", list = DOCKER_SUBCOMMANDS.join(", "))]
    Command(String),
}

/// `docker ARGS` as `ros ARGS`, for the subcommands [`DOCKER_SUBCOMMANDS`]
/// lists; anything else is refused with a message naming it.
pub fn docker_args(args: &[OsString]) -> Result<Vec<OsString>, DockerArgsError> {
    let Some(first) = args.get(1) else {
        return Err(DockerArgsError::NoCommand);
    };
    let text = first.to_string_lossy();
    if text.starts_with('-') {
        return Err(DockerArgsError::Option(text.into_owned()));
    }
    if !DOCKER_SUBCOMMANDS.contains(&text.as_ref()) {
        return Err(DockerArgsError::Command(text.into_owned()));
    }
    let mut rewritten = vec![OsString::from("ros")];
    rewritten.extend(args[1..].iter().cloned());
    Ok(rewritten)
}

/// The workload subcommands of `ros`.
#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Pull an image into the user containerd.
    Pull(PullArgs),
    /// Create and start a container from an image (pulled if missing).
    Run(RunArgs),
    /// List containers.
    Ps(PsArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// Stop containers: SIGTERM, then SIGKILL after the timeout.
    Stop(StopArgs),
    /// Start stopped containers.
    Start(NamesArgs),
    /// Stop and start containers.
    Restart(StopArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// List images.
    Images(super::images::ImagesArgs),
    /// Remove images.
    Rmi(super::images::RmiArgs),
    /// Load images from a `docker save` or OCI archive.
    Load(super::images::LoadArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// A reference: `busybox`, `registry.example.com/team/app:1.2`.
    pub image: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container's name.
    #[arg(short, long)]
    detach: bool,
    /// The container's name [default: from the image].
    #[arg(long)]
    name: Option<String>,
    /// Publish a container port on the host: HOST:CONTAINER[/udp].
    #[arg(short, long = "publish", value_name = "HOST:CONTAINER[/PROTO]")]
    publish: Vec<String>,
    /// Bind a host directory (under /home, /opt, /mnt, /media, /srv) or a named volume.
    #[arg(short, long = "volume", value_name = "HOST-PATH|NAME:PATH[:ro]")]
    volume: Vec<String>,
    /// Set an environment variable (KEY alone takes this shell's value).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// no, always, on-failure[:N] or unless-stopped.
    #[arg(long, default_value = "no")]
    restart: String,
    /// bridge, host or none.
    #[arg(long, visible_alias = "network", default_value = "bridge")]
    net: String,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// The working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// The container's host name.
    #[arg(long)]
    hostname: Option<String>,
    /// Keep stdin open and pass it on.
    #[arg(short, long)]
    interactive: bool,
    /// Give the process a terminal.
    #[arg(short, long)]
    tty: bool,
    /// The image: `busybox`, `registry.example.com/team/app:1.2`.
    image: String,
    /// The command and its arguments, replacing the image's.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also the containers that are not running.
    #[arg(short, long)]
    all: bool,
    /// Only the names.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing what it writes, until it stops.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (or `all`).
    #[arg(long, short = 'n', value_name = "N")]
    tail: Option<String>,
    name: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(short, long)]
    interactive: bool,
    #[arg(short, long)]
    tty: bool,
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    #[arg(short, long)]
    user: Option<String>,
    name: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Where the workloads are: the machine's, moved by the environment
/// variables above, with `rancher.docker`'s bridge and registries.
pub fn settings() -> Settings {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let mut settings = Settings::system();
    if let Some(socket) = env(SOCKET_ENV) {
        settings.socket = socket.into();
    }
    if let Some(namespace) = env(NAMESPACE_ENV) {
        settings.namespace = namespace.to_string_lossy().into_owned();
    }
    if let Some(runtime) = env(RUNTIME_ENV) {
        settings.oci_runtime = runtime.to_string_lossy().into_owned();
    }
    if let Some(dir) = env(DIR_ENV) {
        settings = settings.with_dirs_under(Path::new(&dir));
    }
    if let Some(program) = env(PROGRAM_ENV) {
        settings.log_pipe = Some(program.into());
    }
    if let Some(hook) = env(HOOK_ENV) {
        settings.hook_program = hook.into();
    }
    let root = env(super::config::ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    // A broken configuration does not stop the user's containers.
    if let Ok(checked) = Layers::load(&ConfigPaths::under(root)).merged() {
        settings = settings.with_engine_config(&checked.config.rancher.docker);
    }
    settings
}

/// Runs one workload command.
pub fn run(command: WorkloadCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(dispatch(command));
    // A read of stdin may still be blocked on a thread: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => Ok(code),
        Err(Failure::Usage(error)) => {
            eprintln!("ros: {error}");
            Ok(ExitCode::from(USAGE))
        }
        Err(Failure::Other(error)) => Err(error),
    }
}

/// A bad flag value (exit 2) or a failure (exit 1).
enum Failure {
    Usage(FlagError),
    Other(anyhow::Error),
}

impl From<FlagError> for Failure {
    fn from(error: FlagError) -> Self {
        Self::Usage(error)
    }
}

impl From<WorkloadError> for Failure {
    fn from(error: WorkloadError) -> Self {
        match error {
            WorkloadError::Flag(flag) => Self::Usage(flag),
            other => Self::Other(other.into()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::Other(error)
    }
}

async fn connect() -> Result<Engine, Failure> {
    let settings = settings();
    let socket = settings.socket.clone();
    // PID 1 is asked about its user containerd only when that is the one
    // this command talks to.
    let control = super::service::control_socket(None);
    let ask_pid_1 = socket == Path::new(workloads::SOCKET)
        || std::env::var_os(super::service::SOCKET_ENV).is_some();
    super::engine_start::wait_for_socket(
        &socket,
        super::engine_start::WAIT,
        || super::engine_start::answers(&socket),
        || {
            if ask_pid_1 {
                super::service::services(&control).ok()
            } else {
                None
            }
        },
        |line| eprintln!("{line}"),
    )
    .await?;
    Engine::connect(settings)
        .await
        .with_context(|| format!("the user containerd at {}", socket.display()))
        .map_err(Failure::Other)
}

async fn dispatch(command: WorkloadCommand) -> Result<ExitCode, Failure> {
    match command {
        WorkloadCommand::Pull(args) => pull(args).await,
        WorkloadCommand::Run(args) => run_container(args).await,
        WorkloadCommand::Ps(args) => ps(args).await,
        WorkloadCommand::Logs(args) => logs(args).await,
        WorkloadCommand::Stop(args) => {
            let engine = connect().await?;
            let timeout = Duration::from_secs(args.time);
            each(&args.names, |name| {
                let engine = &engine;
                async move { engine.stop(&name, timeout).await }
            })
            .await
        }
        WorkloadCommand::Start(args) => {
            let engine = connect().await?;
            each(&args.names, |name| {
                let engine = &engine;
                async move { engine.start(&name).await.map(|_| ()) }
            })
            .await
        }
        WorkloadCommand::Restart(args) => {
            let engine = connect().await?;
            let timeout = Duration::from_secs(args.time);
            each(&args.names, |name| {
                let engine = &engine;
                async move { engine.restart(&name, timeout).await.map(|_| ()) }
            })
            .await
        }
        WorkloadCommand::Rm(args) => {
            let engine = connect().await?;
            let force = args.force;
            each(&args.names, |name| {
                let engine = &engine;
                async move { engine.remove(&name, force).await }
            })
            .await
        }
        WorkloadCommand::Exec(args) => exec(args).await,
        WorkloadCommand::Images(args) => Ok(super::images::images(&connect().await?, args).await?),
        WorkloadCommand::Rmi(args) => Ok(super::images::rmi(&connect().await?, args).await?),
        WorkloadCommand::Load(args) => Ok(super::images::load(&connect().await?, args).await?),
    }
}

/// One operation on each name: the name printed when it worked, the
/// error when not; non-zero if any failed.
async fn each<F, Fut>(names: &[String], operation: F) -> Result<ExitCode, Failure>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<(), WorkloadError>>,
{
    let mut failed = false;
    for name in names {
        match operation(name.clone()).await {
            Ok(()) => println!("{name}"),
            Err(error) => {
                eprintln!("ros: {name}: {error}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn pull(args: PullArgs) -> Result<ExitCode, Failure> {
    let engine = connect().await?;
    let mut progress = Progress::new(std::io::stdout());
    system_services::image::pull(
        engine.containerd(),
        &args.image,
        &engine.settings().pull,
        &mut |event| progress.print(&event),
    )
    .await
    .map_err(|e| Failure::Other(e.into()))?;
    Ok(ExitCode::SUCCESS)
}

/// Pull progress: on a terminal a bar per layer, redrawn in place;
/// elsewhere a line per event (`ros service pull`'s).
enum Progress<W: Write + std::io::IsTerminal> {
    Lines(ProgressPrinter<W>),
    Bars(Bars<W>),
}

impl<W: Write + std::io::IsTerminal> Progress<W> {
    fn new(out: W) -> Self {
        if out.is_terminal() {
            Self::Bars(Bars {
                out,
                rows: Vec::new(),
                drawn: 0,
            })
        } else {
            Self::Lines(ProgressPrinter::new(out))
        }
    }

    fn print(&mut self, event: &PullEvent) {
        match self {
            Self::Lines(printer) => printer.print(event),
            Self::Bars(bars) => bars.print(event),
        }
    }
}

/// One row per layer under the lines before them; the rows are redrawn
/// (cursor up, erase line) on every layer event.
struct Bars<W> {
    out: W,
    rows: Vec<String>,
    drawn: usize,
}

impl<W: Write> Bars<W> {
    fn print(&mut self, event: &PullEvent) {
        let (index, count, row) = match event {
            PullEvent::Layer {
                index,
                count,
                digest,
                done,
                total,
                status,
            } => (*index, *count, layer_row(digest, *done, *total, *status)),
            PullEvent::Unpacking {
                index,
                count,
                digest,
            } => (
                *index,
                *count,
                format!("{}: unpacking", short_digest(digest)),
            ),
            other => {
                let _ = writeln!(self.out, "{}", super::pull::line(other));
                let _ = self.out.flush();
                self.rows.clear();
                self.drawn = 0;
                return;
            }
        };
        if self.rows.len() < count {
            self.rows.resize(count, String::new());
        }
        if let Some(slot) = self.rows.get_mut(index.saturating_sub(1)) {
            *slot = row;
        }
        let mut text = String::new();
        if self.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for row in &self.rows {
            text.push_str(&format!("\r\x1b[2K{row}\n"));
        }
        self.drawn = self.rows.len();
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.get(..12).unwrap_or(hex)
}

/// `a46fbb00284b: [=========>          ] 1.2/3.4 MB`.
fn layer_row(
    digest: &str,
    done: u64,
    total: u64,
    status: system_services::image::LayerStatus,
) -> String {
    use system_services::image::LayerStatus;
    const WIDTH: u64 = 30;
    let head = short_digest(digest);
    match status {
        LayerStatus::Present => format!("{head}: already present"),
        LayerStatus::Complete => format!("{head}: downloaded {:.1} MB", total as f64 / 1e6),
        LayerStatus::Downloading => {
            let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(0);
            let bar: String = (0..WIDTH)
                .map(|i| match i.cmp(&filled) {
                    std::cmp::Ordering::Less => '=',
                    std::cmp::Ordering::Equal => '>',
                    std::cmp::Ordering::Greater => ' ',
                })
                .collect();
            format!(
                "{head}: [{bar}] {:.1}/{:.1} MB",
                done as f64 / 1e6,
                total as f64 / 1e6
            )
        }
    }
}

/// `--user`: a numeric `uid[:gid]`, or a name the image's passwd
/// resolves at start.
fn user_and_name(
    flag: Option<&str>,
) -> Result<(Option<system_services::service::User>, Option<String>), FlagError> {
    Ok(match flag.map(parse_user_flag).transpose()? {
        Some(UserFlag::Id(id)) => (Some(id), None),
        Some(UserFlag::Name(name)) => (None, Some(name)),
        None => (None, None),
    })
}

/// The flags as `RunOptions`; each bad value names its flag.
fn run_options(args: &RunArgs) -> Result<RunOptions, FlagError> {
    let lookup = |key: &str| std::env::var(key).ok();
    let mut env = Vec::new();
    for entry in &args.env {
        env.extend(parse_env(entry, lookup)?);
    }
    let (user, user_name) = user_and_name(args.user.as_deref())?;
    Ok(RunOptions {
        image: args.image.clone(),
        name: args.name.as_deref().map(parse_name).transpose()?,
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        ports: args
            .publish
            .iter()
            .map(|p| parse_port(p))
            .collect::<Result<_, _>>()?,
        volumes: args
            .volume
            .iter()
            .map(|v| parse_volume(v))
            .collect::<Result<_, _>>()?,
        env,
        restart: parse_restart(&args.restart)?,
        net: parse_net(&args.net)?,
        remove: args.rm,
        workdir: args.workdir.clone(),
        user,
        user_name,
        hostname: args.hostname.as_deref().map(parse_hostname).transpose()?,
        // In the background the terminal's output goes to the log.
        tty: args.tty,
        interactive: args.interactive && !args.detach,
    })
}

async fn run_container(args: RunArgs) -> Result<ExitCode, Failure> {
    let options = run_options(&args)?;
    let engine = connect().await?;
    // Pull progress on stderr: stdout is the container's.
    let mut printer = Progress::new(std::io::stderr());
    let mut progress = |event: PullEvent| printer.print(&event);
    if args.detach {
        let started = engine.run(&options, &mut progress).await?;
        println!("{}", started.name);
        return Ok(ExitCode::SUCCESS);
    }
    options.check(engine.settings())?;
    // Attached, this process removes it (after printing all its output);
    // the keeper's `--rm` is for detached containers.
    let attached = RunOptions {
        remove: false,
        ..options.clone()
    };
    let name = engine.create(&attached, &mut progress).await?;
    let code = if options.tty || options.interactive {
        let raw = if options.tty {
            workloads::tty::RawMode::enter()
        } else {
            None
        };
        let code = engine
            .start_attached(&name, options.tty, options.interactive, CallerIo::std())
            .await;
        drop(raw);
        code
    } else {
        match engine.start(&name).await {
            Ok(_) => follow(&engine, &name).await,
            Err(error) => Err(error),
        }
    };
    if options.remove
        && let Err(error) = engine.remove(&name, true).await
    {
        eprintln!("ros: removing {name}: {error}");
    }
    Ok(exit_code(code?))
}

/// Prints the output until the task exits; Ctrl-C is passed on as
/// SIGINT (once; a second one leaves the container running).
async fn follow(engine: &Engine, name: &str) -> Result<u32, WorkloadError> {
    let mut out = std::io::stdout();
    let followed = engine.follow_until_exit(name, &mut out);
    tokio::pin!(followed);
    tokio::select! {
        code = &mut followed => code,
        _ = tokio::signal::ctrl_c() => {
            use system_services::runtime::ContainerRuntime;
            let _ = engine.containerd().kill_task(name, 2).await;
            followed.await
        }
    }
}

/// A container's exit code as ours (128 + signal for a killed one).
fn exit_code(code: u32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

async fn ps(args: PsArgs) -> Result<ExitCode, Failure> {
    let engine = connect().await?;
    let rows = engine.ps(args.all).await?;
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for row in rows {
            let _ = writeln!(out, "{}", row.name);
        }
    } else {
        let _ = out.write_all(workloads::status::table(&rows, SystemTime::now()).as_bytes());
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs(args: LogsArgs) -> Result<ExitCode, Failure> {
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| FlagError::new("--tail", n, "expected a number of lines or `all`"))?,
        ),
    };
    let engine = connect().await?;
    let mut out = std::io::stdout();
    engine.logs(&args.name, tail, args.follow, &mut out).await?;
    Ok(ExitCode::SUCCESS)
}

async fn exec(args: ExecArgs) -> Result<ExitCode, Failure> {
    let lookup = |key: &str| std::env::var(key).ok();
    let mut env = Vec::new();
    for entry in &args.env {
        env.extend(parse_env(entry, lookup)?);
    }
    let (user, user_name) = user_and_name(args.user.as_deref())?;
    let options = ExecOptions {
        command: args.command,
        env,
        workdir: args.workdir,
        user,
        user_name,
        tty: args.tty,
        interactive: args.interactive,
    };
    let engine = connect().await?;
    let raw = if options.tty {
        workloads::tty::RawMode::enter()
    } else {
        None
    };
    let code = engine.exec(&args.name, &options, CallerIo::std()).await;
    drop(raw);
    Ok(exit_code(code?))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(subcommand)]
        command: WorkloadCommand,
    }

    fn parse(args: &[&str]) -> WorkloadCommand {
        Test::try_parse_from(std::iter::once("ros").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn the_command_after_the_image_keeps_its_own_flags() {
        let WorkloadCommand::Run(args) = parse(&[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            "-e",
            "A=1",
            "busybox",
            "sh",
            "-c",
            "echo -n hi",
        ]) else {
            panic!("not run");
        };
        assert!(args.detach);
        assert_eq!(args.image, "busybox");
        assert_eq!(args.command, ["sh", "-c", "echo -n hi"]);
        let options = run_options(&args).unwrap();
        assert_eq!(options.name.unwrap().as_str(), "web");
        assert_eq!(options.ports[0].host, 8080);
        assert_eq!(options.env, ["A=1"]);
    }

    #[test]
    fn a_bad_value_names_its_flag() {
        let WorkloadCommand::Run(args) = parse(&["run", "-p", "80", "busybox"]) else {
            panic!("not run");
        };
        assert_eq!(run_options(&args).unwrap_err().flag, "-p");
        let WorkloadCommand::Run(args) = parse(&["run", "--restart", "sometimes", "busybox"])
        else {
            panic!("not run");
        };
        assert_eq!(run_options(&args).unwrap_err().flag, "--restart");
    }

    #[test]
    fn layer_rows_draw_a_bar_of_what_is_done() {
        use system_services::image::LayerStatus;
        let digest = "sha256:a46fbb00284b0123456789";
        assert_eq!(
            layer_row(digest, 1_000_000, 3_000_000, LayerStatus::Downloading),
            format!(
                "a46fbb00284b: [{}>{}] 1.0/3.0 MB",
                "=".repeat(10),
                " ".repeat(19)
            )
        );
        assert_eq!(
            layer_row(digest, 5, 5, LayerStatus::Present),
            "a46fbb00284b: already present"
        );
        let mut out = Vec::new();
        let mut bars = Bars {
            out: &mut out,
            rows: Vec::new(),
            drawn: 0,
        };
        let event = |done| PullEvent::Layer {
            index: 1,
            count: 2,
            digest: digest.into(),
            done,
            total: 10,
            status: LayerStatus::Downloading,
        };
        bars.print(&event(1));
        bars.print(&event(5));
        let text = String::from_utf8(out).unwrap();
        // Two rows drawn, then the cursor back up over both to redraw.
        assert_eq!(text.matches("\x1b[2K").count(), 4, "{text:?}");
        assert_eq!(text.matches("\x1b[2A").count(), 1, "{text:?}");
    }

    #[test]
    fn docker_maps_its_subset_and_names_what_it_refuses() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            docker_args(&args(&["docker", "run", "--rm", "busybox"])).unwrap(),
            args(&["ros", "run", "--rm", "busybox"])
        );
        assert_eq!(
            docker_args(&args(&["/usr/bin/docker", "images"])).unwrap(),
            args(&["ros", "images"])
        );
        let err = docker_args(&args(&["docker", "swarm", "init"])).unwrap_err();
        assert_eq!(err, DockerArgsError::Command("swarm".into()));
        assert!(
            err.to_string()
                .starts_with("docker: 'swarm' is not supported; this system answers: run, ps,"),
            "{err}"
        );
        let err = docker_args(&args(&["docker", "--host", "x", "ps"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("the option --host is not supported"),
            "{err}"
        );
        assert_eq!(
            docker_args(&args(&["docker"])).unwrap_err(),
            DockerArgsError::NoCommand
        );
    }
}
