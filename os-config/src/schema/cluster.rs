//! `rancher.cluster`: how the machine joins a Kubernetes cluster. A
//! `server` turns the `cluster-agent` system service on; what that service
//! runs is derived from this section in [`crate::cluster`].
//!
//! Every value is checked here, so a bad one is reported with its key by
//! `ros config validate` and `ros config set`, not by an agent failing at
//! boot. Cross-field checks (a server needs a token; a CA checksum agrees
//! with a secure token's) are in [`crate::rules`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::scalar::scalar_map;

/// `rancher.cluster`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// The server to join (`https://HOST:6443`).
    pub server: Option<ServerUrl>,
    /// The join token; secret.
    pub token: Option<JoinToken>,
    /// The node's name in the cluster; the host name when absent.
    pub node_name: Option<NodeName>,
    /// Node labels (`KEY: value`), checked as Kubernetes checks them.
    #[serde(deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
    /// Node taints (`KEY[=VALUE]:EFFECT`).
    pub taints: Vec<Taint>,
    /// The agent image; the default is the k3s agent.
    pub image: Option<String>,
    /// More arguments for the agent, after those derived from this section.
    pub args: Vec<String>,
    /// More environment for the agent.
    #[serde(deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// The SHA-256 of the server's CA bundle: the agent checks the server
    /// against it before sending the token.
    pub ca_checksum: Option<CaChecksum>,
}

/// Why a `rancher.cluster` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidClusterValue {
    #[error("`{0}` is not an https URL of a cluster server (like https://10.0.0.1:6443)")]
    Server(String),
    #[error("the join token is empty or contains spaces or control characters")]
    Token,
    #[error(
        "`{0}` is not a node name (lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, at most 253 characters)"
    )]
    NodeName(String),
    #[error(
        "`{0}` is not a taint (KEY[=VALUE]:EFFECT, EFFECT one of NoSchedule, PreferNoSchedule, NoExecute)"
    )]
    Taint(String),
    #[error("`{0}` is not a SHA-256 checksum (64 hexadecimal digits, optionally after `sha256:`)")]
    CaChecksum(String),
}

/// The server's URL: `https://` and a host, nothing that could be read
/// as another argument.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerUrl(String);

impl ServerUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServerUrl {
    type Error = InvalidClusterValue;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        let host = url.strip_prefix("https://").unwrap_or_default();
        let authority = host.split('/').next().unwrap_or_default();
        let valid = !authority.is_empty()
            && !authority.starts_with(':')
            && url.chars().all(|c| c.is_ascii_graphic());
        if valid {
            Ok(Self(url))
        } else {
            Err(InvalidClusterValue::Server(url))
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The join token. Its `Debug` never shows it, so a logged configuration
/// does not carry it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct JoinToken(String);

impl JoinToken {
    /// The token itself, for the one place that hands it to the agent.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// The CA hash of a secure token (`K10<hash>::<credentials>`).
    pub fn ca_hash(&self) -> Option<&str> {
        let (hash, _) = self.0.strip_prefix("K10")?.split_once("::")?;
        Some(hash)
    }
}

impl TryFrom<String> for JoinToken {
    type Error = InvalidClusterValue;

    fn try_from(token: String) -> Result<Self, Self::Error> {
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(InvalidClusterValue::Token);
        }
        Ok(Self(token))
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

/// A Kubernetes node name: a lowercase DNS subdomain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct NodeName(String);

impl NodeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = InvalidClusterValue;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(InvalidClusterValue::NodeName(name));
        }
        Ok(Self(name))
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A node taint, as `kubectl taint` and the k3s agent's `--node-taint`
/// write it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Taint(String);

impl Taint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Taint {
    type Error = InvalidClusterValue;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let valid = text.rsplit_once(':').is_some_and(|(pair, effect)| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
                && label_key_problem(key).is_none()
                && label_value_problem(value).is_none()
        });
        if valid {
            Ok(Self(text))
        } else {
            Err(InvalidClusterValue::Taint(text))
        }
    }
}

/// A SHA-256 checksum, kept as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CaChecksum(String);

impl CaChecksum {
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CaChecksum {
    type Error = InvalidClusterValue;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let hex = text.strip_prefix("sha256:").unwrap_or(&text);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(hex.to_ascii_lowercase()))
        } else {
            Err(InvalidClusterValue::CaChecksum(text))
        }
    }
}

/// Why `key` is not a Kubernetes label key (`[PREFIX/]NAME`), if it is not.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && NodeName::try_from(prefix.to_owned()).is_err()
    {
        return Some(format!(
            "the prefix `{prefix}` of label `{key}` is not a DNS subdomain"
        ));
    }
    if name.is_empty() || name.len() > 63 || !name_chars_ok(name) {
        return Some(format!(
            "label key `{key}`: the name must be 1 to 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
        ));
    }
    None
}

/// Why `value` is not a Kubernetes label value, if it is not.
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() || (value.len() <= 63 && name_chars_ok(value)) {
        return None;
    }
    Some(format!(
        "label value `{value}`: at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
    ))
}

fn name_chars_ok(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> Result<Cluster, serde_norway::Error> {
        serde_norway::from_str(yaml)
    }

    #[test]
    fn a_complete_section_reads() {
        let c = cluster(
            "server: https://10.0.0.1:6443\ntoken: K10abc::server:secret\nnode_name: edge-1\n\
             labels: {zone: eu-1, example.com/role: edge}\ntaints: [dedicated=edge:NoSchedule]\n\
             args: [--kubelet-arg=max-pods=50]\nenvironment: {K3S_DEBUG: true}\n\
             ca_checksum: sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n",
        )
        .unwrap();
        assert_eq!(c.server.unwrap().as_str(), "https://10.0.0.1:6443");
        assert_eq!(c.token.as_ref().unwrap().reveal(), "K10abc::server:secret");
        assert_eq!(c.token.unwrap().ca_hash(), Some("abc"));
        assert_eq!(c.node_name.unwrap().as_str(), "edge-1");
        assert_eq!(c.labels["example.com/role"], "edge");
        assert_eq!(c.taints[0].as_str(), "dedicated=edge:NoSchedule");
        assert_eq!(c.environment["K3S_DEBUG"], "true");
        assert_eq!(
            c.ca_checksum.unwrap().hex(),
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
        );
    }

    #[test]
    fn a_server_that_is_not_https_is_refused() {
        for url in [
            "http://k8s:6443",
            "k8s:6443",
            "https://",
            "https:///x",
            "https://k8s:6443 --x",
        ] {
            let error = cluster(&format!("server: \"{url}\""))
                .unwrap_err()
                .to_string();
            assert!(error.contains("is not an https URL"), "{url}: {error}");
        }
    }

    #[test]
    fn an_empty_token_is_refused_and_a_token_never_prints() {
        let error = cluster("token: \"\"").unwrap_err().to_string();
        assert!(error.contains("join token is empty"), "{error}");
        cluster("token: \"a b\"").unwrap_err();
        let c = cluster("token: K10abc::server:hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn node_names_are_lowercase_dns_names() {
        cluster("node_name: Edge-1").unwrap_err();
        cluster("node_name: edge_1").unwrap_err();
        cluster("node_name: edge-1.example.com").unwrap();
    }

    #[test]
    fn taints_need_a_known_effect() {
        cluster("taints: [gpu:NoSchedule]").unwrap();
        cluster("taints: [gpu=true:NoExecute]").unwrap();
        for bad in ["gpu", "gpu=true", "gpu=true:Sometimes", "=x:NoSchedule"] {
            let error = cluster(&format!("taints: [\"{bad}\"]"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("is not a taint"), "{bad}: {error}");
        }
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        assert_eq!(label_key_problem("zone"), None);
        assert_eq!(label_key_problem("topology.kubernetes.io/zone"), None);
        assert!(label_key_problem("-zone").is_some());
        assert!(label_key_problem("Bad_Prefix/zone").is_some());
        assert_eq!(label_value_problem(""), None);
        assert!(label_value_problem("eu 1").is_some());
        assert!(label_value_problem(&"x".repeat(64)).is_some());
    }

    #[test]
    fn a_checksum_is_64_hex_digits() {
        cluster("ca_checksum: abc").unwrap_err();
        cluster(&format!("ca_checksum: {}", "0".repeat(64))).unwrap();
    }
}
