//! The typed cloud-config schema (RancherOS v1.x compatible).
//!
//! Every struct denies unknown fields; values are validated newtypes. The
//! key table in [`keys`] lists the same keys for `ros config keys`, for
//! suggestions on typos and for warnings on keys that are read but not
//! applied; a test keeps it in step with these structs.

pub mod cluster;
pub mod device;
pub mod files;
pub mod keys;
pub mod network;
pub mod newtypes;
pub mod owner;
pub mod rancher_keys;
pub mod scalar;
pub mod service;
pub mod syslog;
pub mod system;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_norway::Value;

pub use cluster::Cluster;
pub use device::{DeviceKind, DeviceSpec};
pub use files::{Command, Encoding, Mount, MountSource, WriteFile};
pub use network::{
    BondMode, BondOptions, BridgeRole, Dns, InterfaceConfig, InterfaceKey, InterfaceName, IpCidr,
    LacpRate, MacAddr, Network, Vlan, Vlans, XmitHashPolicy,
};
pub use newtypes::{
    AbsolutePath, ByteSize, Capability, DomainName, FileMode, Hostname, InvalidServiceName,
    ServiceName, Signal,
};
pub use owner::Owner;
pub use scalar::{KeyValues, StringOrList};
pub use service::{HostNamespace, NetworkMode, RestartPolicy, Scope, Service, Volume};
pub use syslog::{ForwardTarget, Syslog};
pub use system::{CloudInit, DatasourceSpec, EngineConfig, Ssh, State, SystemContainerd};

use scalar::{bool_word, scalar_map};

/// A whole cloud-config document.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudConfig {
    /// The machine's host name.
    pub hostname: Option<Hostname>,
    /// Public keys for the `rancher` user.
    pub ssh_authorized_keys: Vec<String>,
    /// Files written at boot.
    pub write_files: Vec<WriteFile>,
    /// Filesystems mounted at boot.
    pub mounts: Vec<Mount>,
    /// Commands run at the end of boot.
    pub runcmd: Vec<Command>,
    /// Commands run early in boot.
    pub bootcmd: Vec<Command>,
    /// Everything else.
    pub rancher: Rancher,
}

/// A boolean written any way RancherOS accepted (for map values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Flag(#[serde(deserialize_with = "bool_word")] pub bool);

/// `rancher:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rancher {
    /// Network configuration.
    pub network: Network,
    /// System services, by name; merged over the built-in ones.
    pub services: BTreeMap<ServiceName, Service>,
    /// Optional services shipped in the image, turned on by name
    /// (see [`crate::layers::OPTIONAL`]).
    pub services_include: BTreeMap<ServiceName, Flag>,
    /// Console flavour; only `default` exists here.
    pub console: Option<String>,
    /// Environment given to every service.
    #[serde(deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// The state partition.
    pub state: State,
    /// SSH daemon settings.
    pub ssh: Ssh,
    /// Kernel parameters (`net.ipv4.ip_forward: 1`).
    #[serde(deserialize_with = "scalar_map")]
    pub sysctl: BTreeMap<String, String>,
    /// Kernel modules to load.
    pub modules: Vec<String>,
    /// Remote syslog forwarding.
    pub syslog: Syslog,
    /// RancherOS's user Docker options: `bridge`, `bip`, `mtu` and
    /// `insecure_registry` apply to the user containerd's containers; the
    /// rest are warned about (the engine is containerd).
    pub docker: EngineConfig,
    /// RancherOS's system Docker options: `insecure_registry` applies to
    /// service images; the rest are warned about.
    pub system_docker: EngineConfig,
    /// The system containerd PID 1 starts.
    pub system_containerd: SystemContainerd,
    /// Where user-data comes from.
    pub cloud_init: CloudInit,
    /// Built-in services not to start.
    pub disable: Vec<ServiceName>,
    /// `ros: ready` waits until the archives in
    /// `/var/lib/rancher/preload/docker` are loaded (they load in the
    /// background otherwise).
    #[serde(deserialize_with = "bool_word")]
    pub preload_wait: bool,
    /// Verbose logging.
    #[serde(deserialize_with = "bool_word")]
    pub debug: bool,
    /// Console password for `rancher`; secret.
    pub password: Option<String>,
    /// Consoles that log in without a password (`tty1`, `ttyS0`).
    pub autologin: Option<StringOrList>,
    /// The cluster agent.
    pub cluster: Cluster,
    // RancherOS keys read with a warning and not applied.
    /// RancherOS bootstrap containers (not implemented).
    pub bootstrap: Option<Value>,
    /// RancherOS bootstrap Docker (not implemented).
    pub bootstrap_docker: Option<Value>,
    /// RancherOS removed /usr (not implemented).
    #[serde(deserialize_with = "bool_word")]
    pub rm_usr: bool,
    /// RancherOS shared root switch (not implemented).
    #[serde(deserialize_with = "bool_word")]
    pub no_sharedroot: bool,
    /// RancherOS boot log switch (not implemented).
    #[serde(deserialize_with = "bool_word")]
    pub log: bool,
    /// RancherOS console rebuild switch (not implemented).
    #[serde(deserialize_with = "bool_word")]
    pub force_console_rebuild: bool,
    /// RancherOS fallback network (not implemented).
    pub default_network: Option<Value>,
    /// RancherOS service repositories (not implemented).
    pub repositories: Option<Value>,
    /// RancherOS upgrade source (not implemented).
    pub upgrade: Option<Value>,
    /// Registry credentials (not implemented).
    pub registry_auths: Option<Value>,
    /// RancherOS defaults section (not implemented).
    pub defaults: Option<Value>,
    /// RancherOS root resize (not implemented).
    pub resize_device: Option<String>,
    /// RancherOS services restarted on config change (not implemented).
    pub restart_services: Vec<String>,
}

impl Rancher {
    /// The services that run: defined and not disabled.
    pub fn enabled_services(&self) -> impl Iterator<Item = (&ServiceName, &Service)> {
        self.services
            .iter()
            .filter(|(name, _)| !self.disable.contains(name))
    }
}
