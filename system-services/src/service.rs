//! A system service, resolved: everything needed to build its container,
//! checked, with no optional parts left to interpret.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::runtime::Capability;

use crate::root::{ImageDefaults, Root};

// The name and the restart policy are the cloud-config's own types, one
// definition for `ros config validate` and for the boot.
pub use os_config::schema::{InvalidServiceName, RestartPolicy, ServiceName, Signal};

/// Which namespaces the service shares with the host instead of owning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostNamespaces {
    pub net: bool,
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
    /// Mount propagation (`shared`, `rslave`, …); `rprivate` when `None`.
    pub propagation: Option<String>,
}

/// A host device made available inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub host: PathBuf,
    pub container: PathBuf,
    /// Some of `r`, `w`, `m` (read, write, mknod).
    pub access: String,
}

/// The user the process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// cgroup limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Relative CPU weight (Docker's shares, 2..262144; 1024 is the default).
    pub cpu_shares: Option<u64>,
}

/// One resource limit (`ulimits`): the `RLIMIT_*` name in lower case
/// without the prefix (`nofile`), and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Everything needed to run one system service as a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: ServiceName,
    /// The image as the definition names it (`ros/console`), for people.
    pub image: String,
    /// The root file system.
    pub root: Root,
    pub read_only_root: bool,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    pub command: Option<Vec<String>>,
    /// `KEY=value` pairs, over the image's.
    pub env: Vec<String>,
    /// Else the image's, else `/`.
    pub working_dir: Option<PathBuf>,
    /// Else the image's, else root.
    pub user: Option<User>,
    /// The host name in its own UTS namespace; its name when `None`.
    pub hostname: Option<String>,
    /// Resource limits; the rest are inherited from PID 1.
    pub rlimits: Vec<Rlimit>,
    pub host: HostNamespaces,
    /// All capabilities, every device, no masked paths: for the few
    /// services that manage the machine itself.
    pub privileged: bool,
    /// The capabilities kept when not privileged.
    pub capabilities: HashSet<Capability>,
    pub mounts: Vec<BindMount>,
    pub devices: Vec<Device>,
    pub limits: Limits,
    pub restart: RestartPolicy,
    /// What a stop sends first (`stop_signal`); SIGKILL after the grace.
    pub stop_signal: Signal,
    /// Services this one starts after (`io.rancher.os.after`).
    pub after: Vec<ServiceName>,
    /// Starts once the network is online (`io.rancher.os.after: network`,
    /// RancherOS's name for its network service), not before.
    pub after_network: bool,
    /// Services this one starts before (`io.rancher.os.before`).
    pub before: Vec<ServiceName>,
    /// False for one-shot jobs that services after them wait for
    /// (`io.rancher.os.detach: false`).
    pub detach: bool,
    /// The container is created and never started
    /// (`io.rancher.os.createonly`).
    pub create_only: bool,
}

/// What a service gets unless it asks for more: enough to run as root in
/// its own file tree and drop to another user, nothing that reaches outside.
pub fn default_capabilities() -> HashSet<Capability> {
    use Capability::*;
    [
        Chown,
        DacOverride,
        Fowner,
        Fsetid,
        Kill,
        Setgid,
        Setuid,
        Setpcap,
        NetBindService,
    ]
    .into_iter()
    .collect()
}

/// The `PATH` a service gets unless its image or definition sets one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Service {
    /// A service in the directory `root` running `args`, with the least
    /// privilege: own namespaces, default capabilities, no restarts.
    /// Callers fill in the rest.
    pub fn new(name: ServiceName, root: impl Into<PathBuf>, args: Vec<String>) -> Self {
        let root = root.into();
        Self {
            name,
            image: root.display().to_string(),
            root: Root::Dir(root),
            read_only_root: false,
            entrypoint: None,
            command: Some(args),
            env: Vec::new(),
            working_dir: None,
            user: None,
            hostname: None,
            rlimits: Vec::new(),
            host: HostNamespaces::default(),
            privileged: false,
            capabilities: default_capabilities(),
            mounts: Vec::new(),
            devices: Vec::new(),
            limits: Limits::default(),
            restart: RestartPolicy::No,
            stop_signal: Signal::TERM,
            after: Vec::new(),
            before: Vec::new(),
            detach: true,
            create_only: false,
            after_network: false,
        }
    }

    /// The program and its arguments, as Docker picks them: the
    /// service's entrypoint, else the image's; then the service's command,
    /// else (unless the service replaced the entrypoint) the image's.
    pub fn argv(&self, image: Option<&ImageDefaults>) -> Vec<String> {
        let entrypoint = match (&self.entrypoint, image) {
            (Some(own), _) => own.clone(),
            (None, Some(image)) => image.entrypoint.clone(),
            (None, None) => Vec::new(),
        };
        let command = match (&self.command, &self.entrypoint, image) {
            (Some(own), _, _) => own.clone(),
            (None, None, Some(image)) => image.cmd.clone(),
            _ => Vec::new(),
        };
        let mut argv = entrypoint;
        argv.extend(command);
        argv
    }

    /// The environment: the image's, then `PATH` if neither sets it, then
    /// the service's; a later `KEY=` replaces an earlier one.
    pub fn environment(&self, image: Option<&ImageDefaults>) -> Vec<String> {
        let image_env = image.map(|i| i.env.as_slice()).unwrap_or_default();
        let mut env: Vec<String> = Vec::new();
        let has_path = |list: &[String]| list.iter().any(|e| e.starts_with("PATH="));
        if !has_path(image_env) && !has_path(&self.env) {
            env.push(DEFAULT_PATH.to_string());
        }
        for entry in image_env.iter().chain(&self.env) {
            let key = entry.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(entry.clone());
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into(), "--port=80".into()],
            env: vec!["PATH=/image/bin".into(), "MODE=image".into()],
            working_dir: Some("/srv".into()),
            user: None,
        }
    }

    #[test]
    fn argv_follows_dockers_rules() {
        let name = ServiceName::new("web").unwrap();
        let mut s = Service::new(name, "/root", vec![]);
        s.command = None;
        assert_eq!(s.argv(Some(&image())), ["/entry", "serve", "--port=80"]);
        s.command = Some(vec!["debug".into()]);
        assert_eq!(s.argv(Some(&image())), ["/entry", "debug"]);
        // A new entrypoint drops the image's command.
        s.command = None;
        s.entrypoint = Some(vec!["/bin/sh".into()]);
        assert_eq!(s.argv(Some(&image())), ["/bin/sh"]);
        s.command = Some(vec!["-c".into(), "true".into()]);
        assert_eq!(s.argv(None), ["/bin/sh", "-c", "true"]);
        s.entrypoint = None;
        s.command = None;
        assert!(s.argv(None).is_empty());
    }

    #[test]
    fn environment_layers_with_later_keys_winning() {
        let name = ServiceName::new("web").unwrap();
        let mut s = Service::new(name, "/root", vec!["x".into()]);
        assert_eq!(s.environment(None), [DEFAULT_PATH]);
        s.env = vec!["MODE=service".into(), "TERM=linux".into()];
        assert_eq!(
            s.environment(Some(&image())),
            ["PATH=/image/bin", "MODE=service", "TERM=linux"]
        );
    }
}
