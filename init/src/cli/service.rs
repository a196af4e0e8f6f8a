//! `ros service`: list, start, stop and follow the system services.
//!
//! What only PID 1 knows (state, pid, restarts) comes over its control
//! socket; logs are read straight from `/var/log/ros/<service>.log`;
//! `enable` and `disable` change cloud-config.yml and take effect at the
//! next boot (or with `ros service up`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use os_config::layers::optional_services;
use os_config::{ConfigPaths, Layers, Store};
use serde_norway::Value;
use system_services::control::{self, Request, Response, ServiceInfo};
use system_services::logs;

/// The environment variables that move the socket and the log directory (tests).
pub const SOCKET_ENV: &str = "ROS_CONTROL_SOCKET";
pub const LOG_DIR_ENV: &str = "ROS_LOG_DIR";

/// `ros service …`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// PID 1's control socket [env: ROS_CONTROL_SOCKET] [default: /run/ros/control.sock].
    #[arg(long = "control-socket", global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Directory the configuration paths are under [env: ROS_CONFIG_ROOT] [default: /].
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Every service: enabled or not, state, pid, restarts, image, privileged.
    List,
    /// The running services, with their pid and command.
    Ps,
    /// Start the service at every boot (rancher.services_include / rancher.disable).
    Enable { name: String },
    /// Do not start the service at boot.
    Disable { name: String },
    /// Start as the configuration defines it now, replacing a container whose definition changed.
    Up {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Start, as last run.
    Start {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop (SIGTERM, then SIGKILL after 10 s); the container is removed.
    Stop {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop and start again.
    Restart {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop and forget until the next `up` or boot.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Pull a service's registry image (or any reference) into the system containerd.
    Pull(super::pull::PullArgs),
    /// Print a service's output (stdout and stderr).
    Logs {
        /// Keep printing what it writes.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        name: String,
    },
}

/// Runs one `ros service` command.
pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    let socket = control_socket(args.socket);
    let root = args
        .root
        .or_else(|| std::env::var_os(super::config::ROOT_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    let paths = ConfigPaths::under(root);
    match args.command {
        ServiceCommand::List => list(&socket),
        ServiceCommand::Ps => ps(&socket),
        ServiceCommand::Enable { name } => enable(&paths, &name, true),
        ServiceCommand::Disable { name } => enable(&paths, &name, false),
        ServiceCommand::Up { names } => act(&socket, Request::Up { names }),
        ServiceCommand::Start { names } => act(&socket, Request::Start { names }),
        ServiceCommand::Stop { names } => act(&socket, Request::Stop { names }),
        ServiceCommand::Restart { names } => act(&socket, Request::Restart { names }),
        ServiceCommand::Rm { names } => act(&socket, Request::Remove { names }),
        ServiceCommand::Logs { follow, tail, name } => logs(&socket, &name, tail, follow),
        ServiceCommand::Pull(args) => super::pull::run(args, &paths),
    }
}

/// PID 1's control socket: `given`, else `ROS_CONTROL_SOCKET`, else
/// the real one.
pub fn control_socket(given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(control::SOCKET))
}

pub fn services(socket: &Path) -> anyhow::Result<Vec<ServiceInfo>> {
    match control::call(socket, &Request::List)? {
        Response::Services { services } => Ok(services),
        Response::Error { message } => bail!("PID 1: {message}"),
        other => bail!("PID 1 answered {other:?} to list"),
    }
}

/// Rows of text in aligned columns.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The `list` table, one row per service; details of failures below it.
pub fn list_text(services: &[ServiceInfo]) -> String {
    let mut rows = vec![
        [
            "NAME",
            "ENABLED",
            "STATE",
            "PID",
            "RESTARTS",
            "PRIVILEGED",
            "IMAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut details = String::new();
    for s in services {
        rows.push(vec![
            s.name.clone(),
            if s.enabled { "enabled" } else { "disabled" }.into(),
            s.state.clone(),
            s.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            s.restarts.to_string(),
            if s.privileged { "yes" } else { "no" }.into(),
            s.image.clone(),
        ]);
        if let Some(detail) = &s.detail {
            details.push_str(&format!("{}: {detail}\n", s.name));
        }
    }
    table(&rows) + &details
}

fn list(socket: &Path) -> anyhow::Result<ExitCode> {
    print!("{}", list_text(&services(socket)?));
    Ok(ExitCode::SUCCESS)
}

/// The `ps` table: running services only.
pub fn ps_text(services: &[ServiceInfo]) -> String {
    let mut rows = vec![
        ["NAME", "PID", "RESTARTS", "COMMAND"]
            .map(String::from)
            .to_vec(),
    ];
    for s in services.iter().filter(|s| s.pid.is_some()) {
        rows.push(vec![
            s.name.clone(),
            s.pid.map(|p| p.to_string()).unwrap_or_default(),
            s.restarts.to_string(),
            s.command.join(" "),
        ]);
    }
    table(&rows)
}

fn ps(socket: &Path) -> anyhow::Result<ExitCode> {
    print!("{}", ps_text(&services(socket)?));
    Ok(ExitCode::SUCCESS)
}

fn act(socket: &Path, request: Request) -> anyhow::Result<ExitCode> {
    let outcomes = match control::call(socket, &request)? {
        Response::Done { outcomes } => outcomes,
        Response::Error { message } => bail!("PID 1: {message}"),
        other => bail!("PID 1 answered {other:?}"),
    };
    let mut failed = false;
    for outcome in outcomes {
        if outcome.ok {
            println!("{}: {}", outcome.name, outcome.message);
        } else {
            failed = true;
            eprintln!("ros: {}: {}", outcome.name, outcome.message);
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `enable` (on) or `disable` (off): one atomic write of cloud-config.yml.
fn enable(paths: &ConfigPaths, name: &str, on: bool) -> anyhow::Result<ExitCode> {
    let merged = Layers::load(paths)
        .merged()
        .map_err(|errors| anyhow::anyhow!("the configuration does not check: {errors}"))?
        .config;
    let optional = optional_services().keys().any(|n| n.as_str() == name);
    let defined = merged.rancher.services.keys().any(|n| n.as_str() == name);
    if !optional && !defined {
        let mut known: Vec<String> = merged
            .rancher
            .services
            .keys()
            .map(ToString::to_string)
            .chain(optional_services().keys().map(ToString::to_string))
            .collect();
        known.sort();
        known.dedup();
        bail!("unknown service {name} (defined: {})", known.join(", "));
    }
    let store = Store::new(paths.clone());
    let mut document = store.read()?;
    let root = mapping(&mut document);
    let rancher = mapping(root.entry("rancher".into()).or_insert(Value::Null));
    if optional {
        let include = mapping(
            rancher
                .entry("services_include".into())
                .or_insert(Value::Null),
        );
        include.insert(name.into(), Value::Bool(on));
    }
    // rancher.disable is a list, and lists replace: the stored one is the
    // merged one with this name added or taken out.
    let mut disable: Vec<String> = merged
        .rancher
        .disable
        .iter()
        .map(ToString::to_string)
        .filter(|n| n != name)
        .collect();
    if !on && (defined || !optional) {
        disable.push(name.to_string());
    }
    if disable.is_empty() {
        rancher.remove("disable");
    } else {
        rancher.insert(
            "disable".into(),
            Value::Sequence(disable.into_iter().map(Value::String).collect()),
        );
    }
    store.replace(&document)?;
    let after = Layers::load(paths).merged().ok().map(|c| c.config);
    let now = after
        .as_ref()
        .map(crate::services::definitions)
        .and_then(|d| d.get(name).map(|d| d.enabled));
    if now != Some(on) {
        eprintln!(
            "ros: warning: {name} is still {} at boot: another layer (the kernel command line?) decides",
            if on { "disabled" } else { "enabled" }
        );
    }
    if on {
        println!("{name}: enabled; it starts at boot (now: ros service up {name})");
    } else {
        println!("{name}: disabled; it does not start at boot (now: ros service stop {name})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The mapping `value` is, making it one if it is not.
fn mapping(value: &mut Value) -> &mut serde_norway::Mapping {
    if !value.is_mapping() {
        *value = Value::Mapping(serde_norway::Mapping::new());
    }
    match value {
        Value::Mapping(map) => map,
        _ => unreachable!("made a mapping above"),
    }
}

fn logs(socket: &Path, name: &str, tail: Option<usize>, follow: bool) -> anyhow::Result<ExitCode> {
    let dir = std::env::var_os(LOG_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::services::LOG_DIR));
    let valid = system_services::service::ServiceName::new(name)?;
    let path = dir.join(format!("{valid}.log"));
    // A name PID 1 does not know is a typo, not an empty log.
    if let Ok(services) = services(socket)
        && !services.iter().any(|s| s.name == name)
    {
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        bail!("unknown service {name} (defined: {})", names.join(", "));
    }
    let rotation = logs::Rotation::default();
    let text = match logs::tail(&path, rotation.keep, tail) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && follow => Vec::new(),
        Err(e) => return Err(e).context(format!("logs of {name}")),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&text)?;
    out.flush()?;
    if follow {
        follow_file(&path, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what is appended to `path` until interrupted; starts over on a
/// new file when it is rotated.
fn follow_file(path: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let mut position = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut inode = std::fs::metadata(path).map(|m| m.ino()).ok();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if Some(meta.ino()) != inode || meta.len() < position {
            // Rotated (or truncated): the new file from its start.
            inode = Some(meta.ino());
            position = 0;
        }
        if meta.len() > position {
            let mut file = std::fs::File::open(path)?;
            file.seek(SeekFrom::Start(position))?;
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk)?;
            position += u64::try_from(chunk.len()).unwrap_or(0);
            out.write_all(&chunk)?;
            out.flush()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, state: &str, pid: Option<u32>) -> ServiceInfo {
        ServiceInfo {
            name: name.into(),
            enabled: name != "acpid",
            state: state.into(),
            pid,
            restarts: u32::from(pid.is_some()),
            image: format!("ros/{name}"),
            privileged: name == "console",
            command: vec![format!("/usr/sbin/{name}"), "-n".into()],
            detail: (state == "failed").then(|| "exec: no such file".to_string()),
            since: None,
        }
    }

    #[test]
    fn list_and_ps_tables() {
        let services = [
            info("acpid", "disabled", None),
            info("console", "running", Some(812)),
            info("ntp", "failed", None),
        ];
        assert_eq!(
            list_text(&services),
            "NAME     ENABLED   STATE     PID  RESTARTS  PRIVILEGED  IMAGE\n\
             acpid    disabled  disabled  -    0         no          ros/acpid\n\
             console  enabled   running   812  1         yes         ros/console\n\
             ntp      enabled   failed    -    0         no          ros/ntp\n\
             ntp: exec: no such file\n"
        );
        assert_eq!(
            ps_text(&services),
            "NAME     PID  RESTARTS  COMMAND\n\
             console  812  1         /usr/sbin/console -n\n"
        );
    }
}
