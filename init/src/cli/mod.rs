//! The `ros` command line, for people on the console and for scripts.
//! Exit codes: 0 success, 1 the command failed (invalid configuration,
//! refused change, I/O), 2 bad usage.

pub mod config;
pub mod log_pipe;
pub mod network;
pub mod pull;
pub mod service;

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
    /// Show links, addresses, DHCP leases and routes.
    Network(network::NetworkArgs),
    /// Run by containerd's shim: copy a task's output into FILE, rotated by size.
    #[command(name = "log-pipe", hide = true)]
    LogPipe { file: PathBuf },
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
        Command::Network(args) => network::run(args),
        Command::LogPipe { file } => log_pipe::run(&file),
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

/// Asks PID 1 for an orderly shutdown; it stops everything in order.
fn request_shutdown(how: Shutdown) -> anyhow::Result<ExitCode> {
    let signal = signal_for(how);
    nix::sys::signal::kill(Pid::from_raw(1), signal).map_err(|err| {
        anyhow::anyhow!("cannot signal PID 1 with {signal}: {err} (are you root?)")
    })?;
    Ok(ExitCode::SUCCESS)
}
