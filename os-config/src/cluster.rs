//! The `cluster-agent` system service, derived from `rancher.cluster`.
//!
//! A `server` in `rancher.cluster` defines the service; without one there
//! is no agent and nothing is pulled. The derived definition is the k3s
//! agent run the way k3s runs in a container: its own containerd (in the
//! image), the host's network and host name, privileged (it manages
//! cgroups, iptables and mounts for its pods), and its state bound from
//! the host so it survives a reboot. `rancher.services.cluster-agent`
//! merges over it like over any built-in service: another agent is a
//! matter of `image`, `command` and `environment`.
//!
//! The token never goes into the definition: PID 1 writes it to
//! [`TOKEN_FILE`] (0600, on tmpfs) and the agent reads it from there
//! (`K3S_TOKEN_FILE`), so it is not in the container's spec, in
//! containerd's metadata or in `ros service` output.

use serde_norway::{Mapping, Value};

use crate::schema::{Cluster, Hostname};
use crate::tree;

/// The service's name.
pub const SERVICE: &str = "cluster-agent";
/// The agent image when `rancher.cluster.image` names none.
pub const DEFAULT_IMAGE: &str = "rancher/k3s:v1.31.4-k3s1";
/// The directory PID 1 writes the token into; bound read-only into the agent.
pub const TOKEN_DIR: &str = "/run/ros/cluster-agent";
/// The token, as the agent reads it.
pub const TOKEN_FILE: &str = "/run/ros/cluster-agent/token";
/// Where the node's password lives on the host (k3s's `/etc/rancher/node`):
/// the server refuses a node that comes back with another one.
pub const NODE_DIR: &str = "/var/lib/rancher/cluster-agent/node";
/// Host directories the agent keeps its state in, bound at the same path:
/// k3s's data (its containerd store among it), the kubelet's, pod logs.
pub const STATE_DIRS: &[&str] = &["/var/lib/rancher/k3s", "/var/lib/kubelet", "/var/log/pods"];
/// The kubelet's directory: shared, so volume mounts it makes reach the
/// pods' containers.
pub const KUBELET_DIR: &str = "/var/lib/kubelet";

/// The token the agent gets: a short token with `ca_checksum` becomes the
/// secure form `K10<checksum>::<token>`, so the agent checks the server's
/// CA before it sends the token.
pub fn join_token(cluster: &Cluster) -> Option<String> {
    let token = cluster.token.as_ref()?.reveal();
    Some(match &cluster.ca_checksum {
        Some(checksum) if !token.starts_with("K10") => format!("K10{}::{token}", checksum.hex()),
        _ => token.to_owned(),
    })
}

/// The node name the agent registers: `node_name`, else the host name in
/// lowercase (as the kubelet takes it); `None` leaves it to the agent.
pub fn node_name(cluster: &Cluster, hostname: Option<&Hostname>) -> Option<String> {
    match &cluster.node_name {
        Some(name) => Some(name.to_string()),
        None => hostname.map(|h| h.as_str().to_ascii_lowercase()),
    }
}

/// The derived definition of the agent, as `rancher.services.cluster-agent`
/// would be written; `None` without a server.
pub fn agent_definition(cluster: &Cluster, hostname: Option<&Hostname>) -> Option<Value> {
    let server = cluster.server.as_ref()?;
    let mut command = vec!["agent".to_owned()];
    for (key, value) in &cluster.labels {
        command.extend(["--node-label".to_owned(), format!("{key}={value}")]);
    }
    for taint in &cluster.taints {
        command.extend(["--node-taint".to_owned(), taint.as_str().to_owned()]);
    }
    command.extend(cluster.args.iter().cloned());

    let mut environment = Mapping::new();
    let mut set = |key: &str, value: &str| {
        environment.insert(Value::from(key), Value::from(value));
    };
    set("K3S_URL", server.as_str());
    set("K3S_TOKEN_FILE", TOKEN_FILE);
    if let Some(name) = node_name(cluster, hostname) {
        set("K3S_NODE_NAME", &name);
    }
    for (key, value) in &cluster.environment {
        set(key, value);
    }

    let mut volumes: Vec<String> = STATE_DIRS
        .iter()
        .map(|dir| match *dir {
            // rshared: the kubelet's volume mounts reach the pods.
            KUBELET_DIR => format!("{dir}:{dir}:rshared"),
            _ => format!("{dir}:{dir}"),
        })
        .collect();
    volumes.push(format!("{NODE_DIR}:/etc/rancher/node"));
    volumes.push(format!("{TOKEN_DIR}:{TOKEN_DIR}:ro"));

    let image = cluster.image.as_deref().unwrap_or(DEFAULT_IMAGE);
    Some(definition_tree(image, command, environment, volumes))
}

/// The definition as a YAML tree (kept in one place so it reads like the
/// YAML it stands for).
fn definition_tree(
    image: &str,
    command: Vec<String>,
    environment: Mapping,
    volumes: Vec<String>,
) -> Value {
    let mut labels = Mapping::new();
    labels.insert("io.rancher.os.scope".into(), "system".into());
    // Started once the links have their leases: the agent's first
    // request goes to the server.
    labels.insert("io.rancher.os.after".into(), "network".into());
    let mut definition = Mapping::new();
    let mut set = |key: &str, value: Value| {
        definition.insert(Value::from(key), value);
    };
    set("image", image.into());
    set("command", command.into());
    set("environment", Value::Mapping(environment));
    set("labels", Value::Mapping(labels));
    set("volumes", volumes.into());
    // The kubelet and kube-proxy work on the host's network; the node is
    // named after the host.
    set("net", "host".into());
    set("uts", "host".into());
    // Its own PID namespace: k3s is PID 1 there and moves itself out of
    // its cgroup's root, so the kubelet can create the pods' cgroups.
    // Privileged: it manages cgroups, iptables, mounts and devices.
    set("privileged", true.into());
    set("restart", "always".into());
    Value::Mapping(definition)
}

/// Puts the derived agent definition into `merged` (a whole configuration
/// tree), under whatever `rancher.services.cluster-agent` the layers give,
/// which wins key by key. A `rancher.cluster` that does not check adds
/// nothing: its errors are reported by the check.
pub fn add_agent(merged: &mut Value) {
    let Some(section) = merged.get("rancher").and_then(|r| r.get("cluster")) else {
        return;
    };
    let Ok(cluster) = serde_norway::from_value::<Cluster>(section.clone()) else {
        return;
    };
    let hostname = merged
        .get("hostname")
        .cloned()
        .and_then(|h| serde_norway::from_value::<Hostname>(h).ok());
    let Some(mut definition) = agent_definition(&cluster, hostname.as_ref()) else {
        return;
    };
    let Some(Value::Mapping(rancher)) = merged.get_mut("rancher") else {
        return;
    };
    let services = rancher
        .entry(Value::from("services"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !services.is_mapping() {
        return;
    }
    if let Some(own) = services.get(SERVICE) {
        tree::merge(&mut definition, own.clone());
    }
    if let Value::Mapping(services) = services {
        services.insert(Value::from(SERVICE), definition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> Cluster {
        serde_norway::from_str(yaml).unwrap()
    }

    fn strings(value: &Value) -> Vec<String> {
        value
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn no_server_means_no_agent() {
        assert_eq!(agent_definition(&cluster("token: abc"), None), None);
        let mut merged: Value = serde_norway::from_str("rancher: {cluster: {token: abc}}").unwrap();
        let before = merged.clone();
        add_agent(&mut merged);
        assert_eq!(merged, before);
    }

    #[test]
    fn the_default_agent_is_k3s_with_the_token_in_a_file() {
        let c = cluster(
            "server: https://k8s:6443\ntoken: hunter2\nlabels: {zone: eu-1}\n\
             taints: [gpu:NoSchedule]\nargs: [--kubelet-arg=max-pods=50]\n",
        );
        let hostname = Hostname::try_from("Node-7".to_owned()).unwrap();
        let definition = agent_definition(&c, Some(&hostname)).unwrap();
        assert_eq!(definition["image"], Value::from(DEFAULT_IMAGE));
        assert_eq!(
            strings(&definition["command"]),
            [
                "agent",
                "--node-label",
                "zone=eu-1",
                "--node-taint",
                "gpu:NoSchedule",
                "--kubelet-arg=max-pods=50"
            ]
        );
        let env = &definition["environment"];
        assert_eq!(env["K3S_URL"], Value::from("https://k8s:6443"));
        assert_eq!(env["K3S_TOKEN_FILE"], Value::from(TOKEN_FILE));
        assert_eq!(env["K3S_NODE_NAME"], Value::from("node-7"));
        let text = serde_norway::to_string(&definition).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            strings(&definition["volumes"])
                .contains(&"/var/lib/kubelet:/var/lib/kubelet:rshared".to_owned())
        );
        assert_eq!(
            definition["labels"]["io.rancher.os.after"],
            Value::from("network")
        );
    }

    #[test]
    fn a_checksum_turns_a_short_token_into_a_secure_one() {
        let sum = "a".repeat(64);
        let c = cluster(&format!("token: hunter2\nca_checksum: {sum}"));
        assert_eq!(join_token(&c).unwrap(), format!("K10{sum}::hunter2"));
        let c = cluster(&format!("token: K10{sum}::server:x\nca_checksum: {sum}"));
        assert_eq!(join_token(&c).unwrap(), format!("K10{sum}::server:x"));
        assert_eq!(join_token(&cluster("server: https://k8s")), None);
    }

    #[test]
    fn the_users_own_definition_wins_key_by_key() {
        let mut merged: Value = serde_norway::from_str(
            "hostname: edge\nrancher:\n  cluster: {server: \"https://k8s:9345\", token: t, node_name: n1}\n  \
             services:\n    cluster-agent:\n      image: example.com/rke2-agent:1\n      \
             environment: {K3S_URL: \"https://other:9345\"}\n",
        )
        .unwrap();
        add_agent(&mut merged);
        let agent = &merged["rancher"]["services"][SERVICE];
        assert_eq!(agent["image"], Value::from("example.com/rke2-agent:1"));
        assert_eq!(
            agent["environment"]["K3S_URL"],
            Value::from("https://other:9345")
        );
        assert_eq!(agent["environment"]["K3S_NODE_NAME"], Value::from("n1"));
        assert_eq!(agent["privileged"], Value::from(true));
    }

    fn errors(text: &str) -> String {
        crate::check_document(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_cluster_values_are_errors_that_name_the_key() {
        let missing = errors("rancher:\n  cluster:\n    server: https://k8s:6443\n");
        assert!(missing.contains("rancher.cluster.token"), "{missing}");
        assert!(
            missing.contains("needs a token to join https://k8s:6443"),
            "{missing}"
        );
        let not_https = errors("rancher:\n  cluster:\n    server: http://k8s:6443\n    token: t\n");
        assert!(not_https.contains("rancher.cluster.server"), "{not_https}");
        assert!(not_https.contains("is not an https URL"), "{not_https}");
        let label = errors(
            "rancher:\n  cluster:\n    server: https://k8s\n    token: t\n    labels: {zone: eu 1}\n",
        );
        assert!(label.contains("rancher.cluster.labels.zone"), "{label}");
        let sum = "a".repeat(64);
        let other = "b".repeat(64);
        let mismatch = errors(&format!(
            "rancher:\n  cluster:\n    server: https://k8s\n    token: K10{other}::server:x\n    ca_checksum: {sum}\n"
        ));
        assert!(
            mismatch.contains("rancher.cluster.ca_checksum"),
            "{mismatch}"
        );
    }

    #[test]
    fn a_checked_configuration_with_a_cluster_has_the_agent_service() {
        let mut layers = crate::Layers::default();
        layers.add_text(
            crate::layers::LayerSource::Cmdline,
            "rancher:\n  cluster: {server: \"https://k8s:6443\", token: t}\n",
        );
        let config = layers.merged().unwrap().config;
        let agent = &config.rancher.services[&SERVICE.parse().unwrap()];
        assert_eq!(agent.image.as_deref(), Some(DEFAULT_IMAGE));
        assert!(agent.privileged);
    }
}
