//! `ros cluster status`: whether the cluster agent runs, against which
//! server, as which node, and since when. The configuration says what
//! should run; PID 1's control socket says what does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use os_config::cluster::{self, SERVICE};
use os_config::{CloudConfig, ConfigPaths};
use system_services::control::ServiceInfo;

/// `ros cluster …`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The agent: running or not, the server, the node name, since when.
    Status,
}

/// Runs one `ros cluster` command.
pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ClusterCommand::Status => status(),
    }
}

fn status() -> anyhow::Result<ExitCode> {
    let cmdline =
        crate::boot::read_cmdline(std::path::Path::new("/proc/cmdline")).unwrap_or_default();
    let root = std::env::var_os(super::config::ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let config = crate::services::current_config(&ConfigPaths::under(root), &cmdline);
    if config.rancher.cluster.server.is_none() {
        print!("{}", status_text(&config, None, SystemTime::now()));
        return Ok(ExitCode::SUCCESS);
    }
    let socket = super::service::control_socket(None);
    let services = super::service::services(&socket)?;
    let agent = services.iter().find(|s| s.name == SERVICE);
    print!("{}", status_text(&config, agent, SystemTime::now()));
    // Scripts can wait for a running agent on the exit code.
    Ok(if agent.is_some_and(|a| a.state == "running") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report, one `name: value` line each.
pub fn status_text(config: &CloudConfig, agent: Option<&ServiceInfo>, now: SystemTime) -> String {
    let section = &config.rancher.cluster;
    let Some(server) = &section.server else {
        return "cluster: none (rancher.cluster.server is not set; no agent runs)\n".to_owned();
    };
    let node = cluster::node_name(section, config.hostname.as_ref())
        .unwrap_or_else(|| "the host name, as the agent finds it".to_owned());
    let mut text = format!("server: {server}\nnode: {node}\n");
    let Some(agent) = agent else {
        text.push_str(&format!("agent: not defined ({SERVICE} is missing)\n"));
        return text;
    };
    text.push_str(&format!("image: {}\n", agent.image));
    let mut state = agent.state.clone();
    if let Some(pid) = agent.pid {
        state.push_str(&format!(" (pid {pid})"));
    }
    if let Some(since) = agent.since {
        let at = UNIX_EPOCH + Duration::from_secs(since);
        let ago = now.duration_since(at).unwrap_or_default().as_secs();
        state.push_str(&format!(
            " since {} ({})",
            system_services::image::rfc3339(at),
            elapsed(ago)
        ));
    }
    text.push_str(&format!("agent: {state}\n"));
    text.push_str(&format!("restarts: {}\n", agent.restarts));
    if let Some(detail) = &agent.detail {
        text.push_str(&format!("last error: {detail}\n"));
    }
    text
}

/// `42 s ago`, `3 min ago`, `2 h 5 min ago`.
fn elapsed(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        _ => format!("{} h {} min ago", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> CloudConfig {
        os_config::check_document(yaml).unwrap().config
    }

    fn agent(state: &str, since: Option<u64>) -> ServiceInfo {
        ServiceInfo {
            name: SERVICE.to_owned(),
            enabled: true,
            state: state.to_owned(),
            pid: (state == "running").then_some(812),
            restarts: 2,
            image: "rancher/k3s:v1".to_owned(),
            privileged: true,
            command: vec!["/bin/k3s".into(), "agent".into()],
            detail: (state == "failed").then(|| "pull refused".to_owned()),
            since,
        }
    }

    #[test]
    fn without_a_cluster_it_says_no_agent_runs() {
        let text = status_text(&config("hostname: a"), None, SystemTime::now());
        assert_eq!(
            text,
            "cluster: none (rancher.cluster.server is not set; no agent runs)\n"
        );
    }

    #[test]
    fn a_running_agent_shows_server_node_and_since_when() {
        let config = config(
            "hostname: Edge-1\nrancher:\n  cluster: {server: \"https://k8s:6443\", token: secret}\n",
        );
        let since = 1_796_000_000;
        let now = UNIX_EPOCH + Duration::from_secs(since + 150);
        let text = status_text(&config, Some(&agent("running", Some(since))), now);
        assert_eq!(
            text,
            "server: https://k8s:6443\nnode: edge-1\nimage: rancher/k3s:v1\n\
             agent: running (pid 812) since 2026-11-30T00:53:20Z (2 min ago)\nrestarts: 2\n"
        );
        assert!(!text.contains("secret"));
        let failed = status_text(&config, Some(&agent("failed", None)), now);
        assert!(failed.contains("agent: failed\n"), "{failed}");
        assert!(failed.contains("last error: pull refused"), "{failed}");
    }
}
