//! The remaining `rancher.*` sections: state partition, SSH, the engine
//! options RancherOS passed to Docker, cloud-init datasources (the cluster
//! agent's section is in [`super::cluster`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::newtypes::AbsolutePath;
use super::scalar::{bool_word, opt_bool_word, scalar_map};

/// `rancher.state`: where `/var/lib/rancher` and `/home` persist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// The device: a path or `LABEL=…`/`UUID=…`.
    #[serde(deserialize_with = "super::device::optional_device")]
    pub dev: Option<super::device::DeviceSpec>,
    /// Its filesystem.
    pub fstype: Option<String>,
    /// Devices to format as the state partition when they are blank.
    pub autoformat: Vec<String>,
    /// Wait for the device to appear.
    #[serde(deserialize_with = "bool_word")]
    pub wait: bool,
    /// Fail the boot when it does not.
    #[serde(deserialize_with = "bool_word")]
    pub required: bool,
    /// Subdirectory of the device used as state.
    pub directory: Option<String>,
    /// RancherOS ran `mdadm --assemble --scan` first (not implemented).
    #[serde(deserialize_with = "bool_word")]
    pub mdadm_scan: bool,
    /// RancherOS ran this script before mounting (not implemented).
    pub script: Option<String>,
    /// RancherOS's OEM partition filesystem (not implemented).
    pub oem_fstype: Option<String>,
    /// RancherOS's OEM partition device (not implemented).
    pub oem_dev: Option<String>,
}

/// `rancher.ssh`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ssh {
    /// Host keys by file name (`ssh_host_ed25519_key`, `….pub`); secret.
    pub keys: BTreeMap<String, String>,
    /// Listening port.
    pub port: Option<u16>,
    /// Listening address.
    pub listen_address: Option<String>,
    /// Run the SSH daemon; `false` disables it.
    #[serde(deserialize_with = "opt_bool_word")]
    pub daemon: Option<bool>,
}

impl Ssh {
    /// Whether the SSH daemon runs (it does unless told not to).
    pub fn daemon_enabled(&self) -> bool {
        self.daemon.unwrap_or(true)
    }
}

/// `rancher.docker` / `rancher.system_docker`: RancherOS's engine options,
/// read so existing configs load. This system runs containerd: of the user
/// engine's, `bridge`, `bip`, `mtu` and `insecure_registry` apply to the
/// user's containers; the others are warned about and not applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Engine to switch to.
    pub engine: Option<String>,
    /// Serve TLS.
    #[serde(deserialize_with = "bool_word")]
    pub tls: bool,
    /// TLS arguments.
    pub tls_args: Vec<String>,
    /// Base arguments.
    pub args: Vec<String>,
    /// Appended arguments.
    pub extra_args: Vec<String>,
    /// TLS server certificate.
    pub server_cert: Option<String>,
    /// TLS server key; secret.
    pub server_key: Option<String>,
    /// CA certificate.
    pub ca_cert: Option<String>,
    /// CA key; secret.
    pub ca_key: Option<String>,
    /// `KEY=value` environment.
    pub environment: Vec<String>,
    /// Where the engine runs.
    pub storage_context: Option<String>,
    /// Exec the engine instead of supervising it.
    #[serde(deserialize_with = "bool_word")]
    pub exec: bool,
    /// Bridge device.
    pub bridge: Option<String>,
    /// Bridge IP.
    pub bip: Option<String>,
    /// Daemon config file.
    pub config_file: Option<String>,
    /// containerd socket.
    pub containerd: Option<String>,
    /// Debug logging.
    #[serde(deserialize_with = "opt_bool_word")]
    pub debug: Option<bool>,
    /// Exec root.
    pub exec_root: Option<String>,
    /// Socket group.
    pub group: Option<String>,
    /// Data root.
    pub graph: Option<String>,
    /// Listen addresses.
    pub host: Vec<String>,
    /// Registries reached over plain HTTP.
    pub insecure_registry: Vec<String>,
    /// Keep containers running when the engine stops.
    #[serde(deserialize_with = "opt_bool_word")]
    pub live_restore: Option<bool>,
    /// Log driver.
    pub log_driver: Option<String>,
    /// Log driver options.
    #[serde(deserialize_with = "scalar_map")]
    pub log_opts: BTreeMap<String, String>,
    /// Bridge MTU.
    pub mtu: Option<u32>,
    /// PID file.
    pub pid_file: Option<String>,
    /// Registry mirror.
    pub registry_mirror: Option<String>,
    /// Restart containers.
    #[serde(deserialize_with = "opt_bool_word")]
    pub restart: Option<bool>,
    /// SELinux.
    #[serde(deserialize_with = "opt_bool_word")]
    pub selinux_enabled: Option<bool>,
    /// Storage driver.
    pub storage_driver: Option<String>,
    /// Userland proxy.
    #[serde(deserialize_with = "opt_bool_word")]
    pub userland_proxy: Option<bool>,
}

/// `rancher.cloud_init`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudInit {
    /// Where user-data comes from, tried in order.
    pub datasources: Vec<DatasourceSpec>,
}

/// One entry of `rancher.cloud_init.datasources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasourceSpec {
    /// `cloud-config-url=` on the kernel command line.
    Cmdline,
    /// An OpenStack config drive: the `config-2` disk, or a mounted directory.
    ConfigDrive(Option<String>),
    /// A NoCloud `cidata` disk, or a directory.
    NoCloud(Option<String>),
    /// A file on the machine.
    File(String),
    /// A URL.
    Url(String),
    /// The EC2 instance metadata service (IMDSv2).
    Ec2,
    /// A RancherOS datasource this system does not have (`gce`, `digitalocean`, …).
    Unsupported(String),
}

/// RancherOS datasources that are recognised but not provided here.
const UNSUPPORTED_DATASOURCES: &[&str] = &[
    "aliyun",
    "azure",
    "cloudstack",
    "digitalocean",
    "exoscale",
    "gce",
    "hetzner",
    "packet",
    "proxmox",
    "vmware",
    "metadata",
];

/// Why a `rancher.cloud_init.datasources` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDatasource {
    /// `file` or `url` without what to read.
    #[error("datasource `{kind}` needs an argument, like `{kind}:…`")]
    MissingArgument {
        /// `file` or `url`.
        kind: String,
    },
    /// A name neither this system nor RancherOS knows.
    #[error(
        "`{text}` is not a datasource (cmdline, configdrive[:PATH], nocloud[:PATH], file:PATH, url:URL, ec2)"
    )]
    Unknown {
        /// The entry as written.
        text: String,
    },
}

impl FromStr for DatasourceSpec {
    type Err = InvalidDatasource;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, argument) = match text.split_once(':') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (text, None),
        };
        let argument_required = |make: fn(String) -> Self| match argument {
            Some(argument) if !argument.is_empty() => Ok(make(argument.to_owned())),
            _ => Err(InvalidDatasource::MissingArgument {
                kind: kind.to_owned(),
            }),
        };
        match kind {
            "cmdline" | "proc-cmdline" => Ok(Self::Cmdline),
            "configdrive" => Ok(Self::ConfigDrive(argument.map(str::to_owned))),
            "nocloud" => Ok(Self::NoCloud(argument.map(str::to_owned))),
            "file" => argument_required(Self::File),
            "url" => argument_required(Self::Url),
            "ec2" => Ok(Self::Ec2),
            _ if UNSUPPORTED_DATASOURCES.contains(&kind) => Ok(Self::Unsupported(text.to_owned())),
            _ => Err(InvalidDatasource::Unknown {
                text: text.to_owned(),
            }),
        }
    }
}

impl<'de> Deserialize<'de> for DatasourceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DatasourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cmdline => f.write_str("cmdline"),
            Self::ConfigDrive(None) => f.write_str("configdrive"),
            Self::ConfigDrive(Some(path)) => write!(f, "configdrive:{path}"),
            Self::NoCloud(None) => f.write_str("nocloud"),
            Self::NoCloud(Some(path)) => write!(f, "nocloud:{path}"),
            Self::File(path) => write!(f, "file:{path}"),
            Self::Url(url) => write!(f, "url:{url}"),
            Self::Ec2 => f.write_str("ec2"),
            Self::Unsupported(text) => f.write_str(text),
        }
    }
}

/// `rancher.system_containerd`: the containerd that PID 1 starts and runs
/// the system services in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemContainerd {
    /// The daemon binary.
    pub binary: AbsolutePath,
    /// Its gRPC socket.
    pub address: AbsolutePath,
    /// Persistent root (images, snapshots).
    pub root: AbsolutePath,
    /// Runtime state.
    pub state: AbsolutePath,
    /// A config file to pass with `--config`.
    pub config_file: Option<AbsolutePath>,
    /// Debug logging.
    #[serde(deserialize_with = "bool_word")]
    pub debug: bool,
}

impl Default for SystemContainerd {
    fn default() -> Self {
        let path = AbsolutePath::built_in;
        Self {
            binary: path("/usr/bin/containerd"),
            address: path("/run/system-containerd/containerd.sock"),
            root: path("/var/lib/system-containerd"),
            state: path("/run/system-containerd"),
            config_file: None,
            debug: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_in_path_is_absolute() {
        let defaults = SystemContainerd::default();
        for path in [
            &defaults.binary,
            &defaults.address,
            &defaults.root,
            &defaults.state,
        ] {
            assert_eq!(
                AbsolutePath::try_from(path.as_str().to_owned()).as_ref(),
                Ok(path)
            );
        }
        assert_eq!(defaults.binary.as_str(), "/usr/bin/containerd");
    }

    #[test]
    fn datasource_specs_round_trip() {
        for text in [
            "cmdline",
            "configdrive",
            "configdrive:/media/config-2",
            "nocloud",
            "nocloud:/run/cidata",
            "file:/var/lib/rancher/user-data",
            "url:http://10.0.2.2:8080/user-data",
            "ec2",
            "gce",
        ] {
            let spec: DatasourceSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        let error = "url".parse::<DatasourceSpec>().unwrap_err();
        assert_eq!(
            error,
            InvalidDatasource::MissingArgument { kind: "url".into() }
        );
        assert_eq!(
            error.to_string(),
            "datasource `url` needs an argument, like `url:…`"
        );
        let error = "floppy".parse::<DatasourceSpec>().unwrap_err();
        assert_eq!(
            error,
            InvalidDatasource::Unknown {
                text: "floppy".into()
            }
        );
        assert!(error.to_string().contains("not a datasource"), "{error}");
    }
}
