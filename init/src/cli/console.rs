//! `ros console-init`: what the console service's script asks of `ros`
//! (see [`crate::login`]). Run as root inside the console container.
//!
//! - `setup`: the accounts and `rancher`'s keys from the configuration;
//!   warnings on the console.
//! - `sshd`: execs dropbear as the configuration asks (host keys made or
//!   converted first); exits 3 when `rancher.ssh.daemon` is false.
//! - `autologin TTY`: exits 0 when `rancher.autologin` names TTY, 1 if not.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use os_config::ConfigPaths;

use crate::login::{ConsoleConfig, autologin, files, ssh};

/// The exit code of `sshd` when SSH is turned off: the script stops asking.
pub const SSH_OFF: u8 = 3;

/// `ros console-init …`.
#[derive(Debug, Args)]
pub struct ConsoleInitArgs {
    /// Directory the configuration and the written files are under [default: /].
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: std::path::PathBuf,
    #[command(subcommand)]
    command: ConsoleInitCommand,
}

#[derive(Debug, Subcommand)]
enum ConsoleInitCommand {
    /// Write /etc/passwd, group, shadow and rancher's authorized_keys.
    Setup,
    /// Exec the SSH daemon with the configured port, keys and policy.
    Sshd,
    /// Exit 0 when TTY logs rancher in by itself.
    Autologin { tty: String },
}

/// A warning for the person at the console and for the service's log.
fn warn(message: &str) {
    eprintln!("ros: warning: {message}");
    crate::console::line(&format!("ros: warning: {message}"));
}

/// Runs one `ros console-init` command.
pub fn run(args: ConsoleInitArgs) -> anyhow::Result<ExitCode> {
    let console = ConsoleConfig::load(&ConfigPaths::under(&args.root));
    match args.command {
        ConsoleInitCommand::Setup => {
            let warnings = files::setup(&args.root, &console, &files::BusyboxHasher)?;
            let active =
                std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
            let autologin = console.config.rancher.autologin.as_ref();
            for warning in warnings
                .iter()
                .chain(&autologin::warnings(autologin, &active))
            {
                warn(warning);
            }
            Ok(ExitCode::SUCCESS)
        }
        ConsoleInitCommand::Sshd => {
            let settings = &console.config.rancher.ssh;
            if !settings.daemon_enabled() {
                eprintln!("ros: the SSH daemon is off (rancher.ssh.daemon: false)");
                return Ok(ExitCode::from(SSH_OFF));
            }
            let dir = args.root.join(ssh::KEY_DIR.trim_start_matches('/'));
            let (keys, warnings) = ssh::host_keys(&settings.keys, &dir, &ssh::DropbearTools);
            for warning in &warnings {
                warn(warning);
            }
            let password_set = console
                .config
                .rancher
                .password
                .as_deref()
                .is_some_and(|p| !p.is_empty());
            let args = ssh::sshd_args(settings, password_set, &keys);
            let error = std::process::Command::new(ssh::DROPBEAR).args(&args).exec();
            Err(error).with_context(|| format!("starting {}", Path::new(ssh::DROPBEAR).display()))
        }
        ConsoleInitCommand::Autologin { tty } => {
            let asked = autologin::asked_for(console.config.rancher.autologin.as_ref(), &tty);
            Ok(if asked {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
