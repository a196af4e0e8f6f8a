//! The `ros` command line, for people on the console and for scripts.
//! Exit codes: 0 success, 1 the command failed, 2 bad usage.

use clap::{Parser, Subcommand};
use nix::unistd::Pid;

use crate::host::Shutdown;
use crate::supervise::shutdown::signal_for;

#[derive(Debug, Parser)]
#[command(name = "ros", version, about = "Manage this machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stop every service and power the machine off.
    Poweroff,
    /// Stop every service and restart the machine.
    Reboot,
    /// Stop every service and halt the machine.
    Halt,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are errors to clap, but not failures.
            let _ = err.print();
            return if err.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("ros: {err:#}");
            1
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Poweroff => request_shutdown(Shutdown::PowerOff),
        Command::Reboot => request_shutdown(Shutdown::Reboot),
        Command::Halt => request_shutdown(Shutdown::Halt),
    }
}

/// Asks PID 1 for an orderly shutdown; it stops everything in order.
fn request_shutdown(how: Shutdown) -> anyhow::Result<()> {
    let signal = signal_for(how);
    nix::sys::signal::kill(Pid::from_raw(1), signal)
        .map_err(|err| anyhow::anyhow!("cannot signal PID 1 with {signal}: {err} (are you root?)"))
}
