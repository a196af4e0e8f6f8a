//! `rancher.services.<name>`: the compose-like service definition RancherOS
//! used, read by the system-services crate to build OCI specs.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::newtypes::{ByteSize, Capability, ServiceName};
use super::scalar::{KeyValues, StringOrList, bool_word, parse_bool_word};

/// Label: `system` services run in the system containerd, `user` ones in
/// the user containerd.
pub const SCOPE_LABEL: &str = "io.rancher.os.scope";
/// Label: comma-separated services this one starts after.
pub const AFTER_LABEL: &str = "io.rancher.os.after";
/// Label: comma-separated services this one starts before.
pub const BEFORE_LABEL: &str = "io.rancher.os.before";
/// Label: `false` makes boot wait for the service to exit (one-shot jobs).
pub const DETACH_LABEL: &str = "io.rancher.os.detach";
/// Label: `true` creates the container without starting it.
pub const CREATE_ONLY_LABEL: &str = "io.rancher.os.createonly";

/// Why a service field is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidServiceValue {
    /// Not a volume spec.
    #[error("`{0}` is not a volume (HOST:CONTAINER[:ro|rw], or an absolute CONTAINER path)")]
    Volume(String),
    /// Not a network mode.
    #[error("`{0}` is not a network mode (host, none, bridge, or container:NAME)")]
    NetworkMode(String),
    /// Not `host`.
    #[error("`{0}` is not a namespace mode (only `host` is supported)")]
    NamespaceMode(String),
    /// Not a restart policy.
    #[error("`{0}` is not a restart policy (no, always, on-failure[:N], unless-stopped)")]
    RestartPolicy(String),
    /// A label that must name services does not.
    #[error("label `{label}`: {reason}")]
    Label {
        /// The label key.
        label: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

/// One service, as in a docker-compose v1 file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Service {
    /// Image reference, or the name of a service root filesystem in the image.
    pub image: Option<String>,
    /// Replaces the image's command.
    pub command: Option<StringOrList>,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<StringOrList>,
    /// Environment: `KEY: value` or `- KEY=value`.
    pub environment: KeyValues,
    /// Container labels, including the `io.rancher.os.*` ones.
    pub labels: KeyValues,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// Services whose volumes this one mounts too.
    pub volumes_from: Vec<ServiceName>,
    /// Network namespace (compose v1 spelling).
    pub net: Option<NetworkMode>,
    /// Network namespace (compose v2 spelling).
    pub network_mode: Option<NetworkMode>,
    /// PID namespace: `host` shares the host's.
    pub pid: Option<HostNamespace>,
    /// IPC namespace: `host` shares the host's.
    pub ipc: Option<HostNamespace>,
    /// UTS namespace: `host` shares the host's.
    pub uts: Option<HostNamespace>,
    /// cgroup namespace (compose's `cgroup`): `host` sees the host's
    /// cgroup tree rather than only its own.
    pub cgroup: Option<HostNamespace>,
    /// All capabilities and devices.
    #[serde(deserialize_with = "bool_word")]
    pub privileged: bool,
    /// Capabilities added to the default set.
    pub cap_add: Vec<Capability>,
    /// Capabilities removed from the default set.
    pub cap_drop: Vec<Capability>,
    /// Devices (`/dev/kvm`, `/dev/sda:/dev/xvda:rwm`).
    pub devices: Vec<String>,
    /// Read-only root filesystem.
    #[serde(deserialize_with = "bool_word")]
    pub read_only: bool,
    /// What to do when the service exits.
    pub restart: Option<RestartPolicy>,
    /// `user[:group]` to run as.
    pub user: Option<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Memory limit.
    pub mem_limit: Option<ByteSize>,
    /// CPU weight.
    pub cpu_shares: Option<u64>,
    /// Allocate a terminal.
    #[serde(deserialize_with = "bool_word")]
    pub tty: bool,
    /// Keep stdin open.
    #[serde(deserialize_with = "bool_word")]
    pub stdin_open: bool,
    /// The signal a stop sends first (SIGTERM unless set); SIGKILL
    /// follows after the grace period.
    pub stop_signal: Option<super::newtypes::Signal>,
    // Compose keys RancherOS accepted that this system does not apply:
    // kept so a RancherOS config still loads; each draws a warning.
    /// Port publishing.
    pub ports: Option<serde_norway::Value>,
    /// Container links.
    pub links: Option<serde_norway::Value>,
    /// Links outside the project.
    pub external_links: Option<serde_norway::Value>,
    /// DNS servers.
    pub dns: Option<serde_norway::Value>,
    /// DNS search domains.
    pub dns_search: Option<serde_norway::Value>,
    /// `/etc/hosts` additions.
    pub extra_hosts: Option<serde_norway::Value>,
    /// The host name of a service with its own UTS namespace.
    pub hostname: Option<super::newtypes::Hostname>,
    /// Container name.
    pub container_name: Option<serde_norway::Value>,
    /// Log driver.
    pub log_driver: Option<serde_norway::Value>,
    /// Log driver options.
    pub log_opt: Option<serde_norway::Value>,
    /// Security options.
    pub security_opt: Option<serde_norway::Value>,
    /// Resource limits: `nofile: 65536` or `nofile: {soft: 1024, hard: 65536}`.
    pub ulimits: std::collections::BTreeMap<String, Ulimit>,
    /// Environment files on the host (`KEY=value` lines); `environment`
    /// wins over them.
    pub env_file: Option<StringOrList>,
    /// cgroup parent.
    pub cgroup_parent: Option<serde_norway::Value>,
}

impl Service {
    /// `net` or `network_mode`, whichever is set.
    pub fn network_mode(&self) -> Option<&NetworkMode> {
        self.network_mode.as_ref().or(self.net.as_ref())
    }

    /// The `io.rancher.os.scope` label.
    pub fn scope(&self) -> Result<Scope, InvalidServiceValue> {
        match self.labels.get(SCOPE_LABEL) {
            None | Some("system") => Ok(Scope::System),
            Some("user") => Ok(Scope::User),
            Some(other) => Err(InvalidServiceValue::Label {
                label: SCOPE_LABEL,
                reason: format!("`{other}` is not `system` or `user`"),
            }),
        }
    }

    /// Services named by `io.rancher.os.after`.
    pub fn after(&self) -> Result<Vec<ServiceName>, InvalidServiceValue> {
        self.service_list_label(AFTER_LABEL)
    }

    /// Services named by `io.rancher.os.before`.
    pub fn before(&self) -> Result<Vec<ServiceName>, InvalidServiceValue> {
        self.service_list_label(BEFORE_LABEL)
    }

    /// `io.rancher.os.detach`: true (the default) starts the service and
    /// goes on; false waits for it to exit.
    pub fn detach(&self) -> Result<bool, InvalidServiceValue> {
        self.bool_label(DETACH_LABEL, true)
    }

    /// `io.rancher.os.createonly`: create the container, do not start it.
    pub fn create_only(&self) -> Result<bool, InvalidServiceValue> {
        self.bool_label(CREATE_ONLY_LABEL, false)
    }

    /// Every problem with this service's `io.rancher.os.*` labels.
    pub fn label_problems(&self) -> Vec<InvalidServiceValue> {
        let mut problems = Vec::new();
        problems.extend(self.scope().err());
        problems.extend(self.after().err());
        problems.extend(self.before().err());
        problems.extend(self.detach().err());
        problems.extend(self.create_only().err());
        problems
    }

    fn bool_label(&self, label: &'static str, default: bool) -> Result<bool, InvalidServiceValue> {
        match self.labels.get(label) {
            None => Ok(default),
            Some(text) => parse_bool_word(text).ok_or_else(|| InvalidServiceValue::Label {
                label,
                reason: format!("`{text}` is not a boolean"),
            }),
        }
    }

    fn service_list_label(
        &self,
        label: &'static str,
    ) -> Result<Vec<ServiceName>, InvalidServiceValue> {
        let Some(text) = self.labels.get(label) else {
            return Ok(Vec::new());
        };
        text.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                name.parse()
                    .map_err(
                        |e: super::newtypes::InvalidServiceName| InvalidServiceValue::Label {
                            label,
                            reason: e.to_string(),
                        },
                    )
            })
            .collect()
    }
}

/// One `ulimits` entry: a number for both limits, or each given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    /// The limit a process may raise itself up to `hard`.
    pub soft: u64,
    /// The ceiling.
    pub hard: u64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            soft: u64,
            hard: u64,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(u64),
            Two(Pair),
        }
        let expected = "a ulimit is a number or {soft: N, hard: N} with soft <= hard";
        let limit = match Form::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom(expected))?
        {
            Form::One(both) => Self {
                soft: both,
                hard: both,
            },
            Form::Two(Pair { soft, hard }) => Self { soft, hard },
        };
        if limit.soft > limit.hard {
            return Err(serde::de::Error::custom(expected));
        }
        Ok(limit)
    }
}

/// Which containerd runs the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The system containerd, started by PID 1.
    System,
    /// The user containerd.
    User,
}

/// A bind mount: `HOST:CONTAINER[:OPTIONS]` or an anonymous `CONTAINER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Source on the host; `None` for an anonymous volume.
    pub host: Option<String>,
    /// Mount point in the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Other options as written (`shared`, `rslave`, `z`, …).
    pub options: Vec<String>,
}

impl FromStr for Volume {
    type Err = InvalidServiceValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const OPTIONS: &[&str] = &[
            "ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave", "private", "rprivate",
            "nocopy", "bind", "rbind",
        ];
        let error = || InvalidServiceValue::Volume(text.to_owned());
        let parts: Vec<&str> = text.split(':').collect();
        let (host, container, options) = match parts.as_slice() {
            [container] => (None, *container, ""),
            [host, container] => (Some(*host), *container, ""),
            [host, container, options] => (Some(*host), *container, *options),
            _ => return Err(error()),
        };
        if !container.starts_with('/') || host.is_some_and(str::is_empty) {
            return Err(error());
        }
        let options: Vec<String> = options
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        if !options.iter().all(|o| OPTIONS.contains(&o.as_str())) {
            return Err(error());
        }
        Ok(Self {
            host: host.map(str::to_owned),
            container: container.to_owned(),
            read_only: options.iter().any(|o| o == "ro"),
            options: options
                .into_iter()
                .filter(|o| o != "ro" && o != "rw")
                .collect(),
        })
    }
}

impl<'de> Deserialize<'de> for Volume {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The network namespace of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network.
    Host,
    /// Only loopback.
    None,
    /// Its own namespace (`bridge`, `default`).
    Own,
    /// Another service's namespace (`container:NAME`).
    Container(ServiceName),
}

impl FromStr for NetworkMode {
    type Err = InvalidServiceValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "host" => Ok(Self::Host),
            "none" => Ok(Self::None),
            "bridge" | "default" => Ok(Self::Own),
            _ => text
                .strip_prefix("container:")
                .and_then(|name| name.parse().ok())
                .map(Self::Container)
                .ok_or_else(|| InvalidServiceValue::NetworkMode(text.to_owned())),
        }
    }
}

impl<'de> Deserialize<'de> for NetworkMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `pid: host`, `ipc: host`, `uts: host`: share the host's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostNamespace;

impl<'de> Deserialize<'de> for HostNamespace {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "host" {
            Ok(Self)
        } else {
            Err(serde::de::Error::custom(
                InvalidServiceValue::NamespaceMode(text),
            ))
        }
    }
}

/// When a service whose task exited is started again: compose's
/// `restart:`, and the one definition the supervisor of the
/// system-services crate acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never: a one-shot job (also when `restart` is not given).
    #[default]
    No,
    /// Whatever the exit code.
    Always,
    /// Only after a non-zero exit; at most this many times in a row if given.
    OnFailure(Option<u32>),
    /// Like `Always`, unless a person stopped it.
    UnlessStopped,
}

impl RestartPolicy {
    /// Whether a task that exited with `code` (not stopped by a person)
    /// runs again, after `failures` non-zero exits in a row before this one.
    pub fn restarts_after(self, code: u32, failures: u32) -> bool {
        match self {
            Self::No => false,
            Self::Always | Self::UnlessStopped => true,
            Self::OnFailure(max) => code != 0 && max.is_none_or(|max| failures < max),
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = InvalidServiceValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || InvalidServiceValue::RestartPolicy(text.to_owned());
        match text {
            "no" | "" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "on-failure" => Ok(Self::OnFailure(None)),
            "unless-stopped" => Ok(Self::UnlessStopped),
            _ => {
                let count = text.strip_prefix("on-failure:").ok_or_else(error)?;
                count
                    .parse()
                    .map(|n| Self::OnFailure(Some(n)))
                    .map_err(|_| error())
            }
        }
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `restart: no` is the YAML 1.1 boolean false for RancherOS users.
        let super::scalar::ScalarText(text) = Deserialize::deserialize(deserializer)?;
        let text = if text == "false" {
            "no".to_owned()
        } else {
            text
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::No => f.write_str("no"),
            Self::Always => f.write_str("always"),
            Self::OnFailure(None) => f.write_str("on-failure"),
            Self::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            Self::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn reads_a_rancheros_console_definition() {
        let console = service(
            r#"
image: ros/console
command: [/usr/bin/ros, console-init]
labels:
  io.rancher.os.scope: system
  io.rancher.os.after: network, udev
  io.rancher.os.detach: "false"
environment: [TERM=linux, HOME]
volumes: [/dev:/host/dev, /var/lib/rancher:/var/lib/rancher:ro, /home:/home:shared]
net: host
pid: host
ipc: host
uts: host
privileged: yes
restart: always
mem_limit: 512m
cap_add: [net_admin]
"#,
        );
        assert_eq!(console.scope(), Ok(Scope::System));
        assert_eq!(
            console
                .after()
                .unwrap()
                .iter()
                .map(ServiceName::as_str)
                .collect::<Vec<_>>(),
            ["network", "udev"]
        );
        assert_eq!(console.before(), Ok(vec![]));
        assert_eq!(console.detach(), Ok(false));
        assert_eq!(console.create_only(), Ok(false));
        assert_eq!(console.network_mode(), Some(&NetworkMode::Host));
        assert!(console.privileged);
        assert_eq!(console.restart, Some(RestartPolicy::Always));
        assert_eq!(console.mem_limit.map(ByteSize::bytes), Some(512 << 20));
        assert!(console.volumes[1].read_only);
        assert_eq!(console.volumes[2].options, ["shared"]);
        assert_eq!(console.environment.get("TERM"), Some("linux"));
        assert_eq!(console.cap_add[0].as_str(), "CAP_NET_ADMIN");
        assert!(console.label_problems().is_empty());
    }

    #[test]
    fn restart_policies() {
        for (text, policy) in [
            ("no", RestartPolicy::No),
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure(None)),
            ("on-failure:3", RestartPolicy::OnFailure(Some(3))),
            ("unless-stopped", RestartPolicy::UnlessStopped),
        ] {
            assert_eq!(text.parse(), Ok(policy));
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!(service("restart: no").restart, Some(RestartPolicy::No));
        assert_eq!(
            "sometimes".parse::<RestartPolicy>(),
            Err(InvalidServiceValue::RestartPolicy("sometimes".into()))
        );
    }

    #[test]
    fn a_policy_says_which_exits_restart() {
        use RestartPolicy::*;
        assert!(!No.restarts_after(1, 0));
        assert!(Always.restarts_after(0, 0) && Always.restarts_after(1, 99));
        assert!(UnlessStopped.restarts_after(0, 0));
        assert!(!OnFailure(None).restarts_after(0, 0) && OnFailure(None).restarts_after(2, 99));
        assert!(OnFailure(Some(2)).restarts_after(1, 1));
        assert!(!OnFailure(Some(2)).restarts_after(1, 2));
        assert_eq!(RestartPolicy::default(), No);
    }

    #[test]
    fn volumes() {
        let anonymous: Volume = "/data".parse().unwrap();
        assert_eq!(anonymous.host, None);
        for bad in ["/a:rel", "/a:/b:bogus", "/a:/b:ro:x", ":/b"] {
            assert_eq!(
                bad.parse::<Volume>(),
                Err(InvalidServiceValue::Volume(bad.into()))
            );
        }
    }

    #[test]
    fn bad_labels_are_reported_by_label() {
        let bad = service(
            "labels: {io.rancher.os.scope: galaxy, io.rancher.os.after: 'ok, not ok', io.rancher.os.detach: maybe}",
        );
        let labels: Vec<&str> = bad
            .label_problems()
            .iter()
            .map(|p| match p {
                InvalidServiceValue::Label { label, .. } => *label,
                _ => "other",
            })
            .collect();
        assert_eq!(labels, [SCOPE_LABEL, AFTER_LABEL, DETACH_LABEL]);
    }

    #[test]
    fn network_and_namespace_modes() {
        assert_eq!("none".parse(), Ok(NetworkMode::None));
        assert_eq!("bridge".parse(), Ok(NetworkMode::Own));
        assert!(matches!(
            "container:console".parse(),
            Ok(NetworkMode::Container(_))
        ));
        assert_eq!(
            "weird".parse::<NetworkMode>(),
            Err(InvalidServiceValue::NetworkMode("weird".into()))
        );
        let error = serde_norway::from_str::<Service>("pid: container").unwrap_err();
        assert!(error.to_string().contains("only `host`"), "{error}");
    }
}
