//! The `ros` command line, for people on the console and for scripts.
//! Exit codes: 0 success, 1 the command failed (invalid configuration,
//! refused change, I/O), 2 bad usage.

pub mod analyze;
pub mod cluster;
pub mod config;
pub mod console;
pub mod engine_start;
pub mod images;
pub mod install;
pub mod log_pipe;
pub mod network;
pub mod pull;
pub mod service;
pub mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nix::unistd::Pid;

use crate::host::Shutdown;
use crate::supervise::shutdown::signal_for;

/// `ros`: manage this machine.
#[derive(Debug, Parser)]
#[command(
    name = "ros",
    version,
    about = "Manage the machine: its configuration and services"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read and change the machine's cloud-config.
    Config(config::ConfigArgs),
    /// List, start, stop and follow the system services.
    Service(service::ServiceArgs),
    /// The cluster agent: `ros cluster status`.
    Cluster(cluster::ClusterArgs),
    /// Show links, addresses, DHCP leases and routes.
    Network(network::NetworkArgs),
    /// Install the system to a disk (GPT, BIOS and UEFI boot, the state partition).
    Install(install::InstallArgs),
    /// The boot's timeline: phases and services, as a table or an SVG.
    Analyze(analyze::AnalyzeArgs),
    /// Run by containerd's shim: copy a task's output into FILE, rotated by size.
    #[command(name = "log-pipe", hide = true)]
    LogPipe { file: PathBuf },
    /// The user's containers: run, ps, logs, stop, start, restart, rm, exec,
    /// pull, images, rmi, load.
    #[command(flatten)]
    Workload(workload::WorkloadCommand),
    /// Run by crun as an OCI hook: wire (`up`) or unwire (`down`) the
    /// network of the container whose state is on standard input.
    #[command(name = "net-hook", hide = true)]
    NetHook { phase: container_net::Phase },
    /// The user containerd's container runs this first: containerd, the
    /// preloaded images, the restart keeper.
    #[command(name = "user-containerd", hide = true)]
    UserContainerd,
    /// The console service's script: accounts, SSH daemon, autologin.
    #[command(name = "console-init", hide = true)]
    ConsoleInit(console::ConsoleInitArgs),
    /// Stop every service and power the machine off.
    Poweroff,
    /// Stop every service and restart the machine.
    Reboot,
    /// Stop every service and halt the machine.
    Halt,
}

/// Parses `args` and runs the command.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    // Answering as `docker`: its subset of commands are ours.
    let argv0 = args.first().map(PathBuf::from).unwrap_or_default();
    if argv0.file_name().is_some_and(|name| name == "docker") {
        match workload::docker_args(&args) {
            Ok(rewritten) => args = rewritten,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are errors to clap, but not failures.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Config(args) => config::run(args),
        Command::Service(args) => service::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Network(args) => network::run(args),
        Command::Install(args) => install::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::LogPipe { file } => log_pipe::run(&file),
        Command::Workload(command) => workload::run(command),
        Command::NetHook { phase } => net_hook(phase),
        Command::UserContainerd => crate::user_containerd::run(),
        Command::ConsoleInit(args) => console::run(args),
        Command::Poweroff => request_shutdown(Shutdown::PowerOff),
        Command::Reboot => request_shutdown(Shutdown::Reboot),
        Command::Halt => request_shutdown(Shutdown::Halt),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ros: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// `ros net-hook up|down`: its errors go to crun, which fails the
/// container's start with them.
fn net_hook(phase: container_net::Phase) -> anyhow::Result<ExitCode> {
    container_net::hook(
        phase,
        &mut std::io::stdin().lock(),
        std::path::Path::new(container_net::STATE_DIR),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Asks PID 1 for an orderly shutdown; it stops everything in order.
fn request_shutdown(how: Shutdown) -> anyhow::Result<ExitCode> {
    let signal = signal_for(how);
    nix::sys::signal::kill(Pid::from_raw(1), signal).map_err(|err| {
        anyhow::anyhow!("cannot signal PID 1 with {signal}: {err} (are you root?)")
    })?;
    Ok(ExitCode::SUCCESS)
}
