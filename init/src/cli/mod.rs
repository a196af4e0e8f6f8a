//! The `ros` command line.

pub mod config;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `ros`: manage this machine.
#[derive(Debug, Parser)]
#[command(
    name = "ros",
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
}

/// Parses `args` and runs the command. Exit codes: 0 success, 1 the
/// command failed (invalid configuration, refused change, I/O), 2 usage.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
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
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ros: {error:#}");
            ExitCode::from(1)
        }
    }
}
