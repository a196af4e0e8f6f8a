//! A system service, resolved: everything needed to build its container,
//! checked, with no optional parts left to interpret.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use oci_spec::runtime::Capability;

/// A service name: also the containerd container id and the cgroup name, so
/// it is kept to what all three accept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

/// Why a service name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid service name {name:?}: {reason}")]
pub struct InvalidServiceName {
    pub name: String,
    pub reason: &'static str,
}

impl ServiceName {
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidServiceName> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 63 {
            Some("it is longer than 63 characters")
        } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            Some("it must start with a lowercase letter or a digit")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        {
            Some("only lowercase letters, digits, '-', '_' and '.' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidServiceName { name, reason }),
            None => Ok(Self(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a service whose task exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never: a one-shot job.
    #[default]
    No,
    /// Whatever the exit code.
    Always,
    /// Only after a non-zero exit.
    OnFailure,
    /// Like `Always`, unless a person stopped it.
    UnlessStopped,
}

impl RestartPolicy {
    /// Whether a task that exited with `code` (not stopped by a person) runs again.
    pub fn restarts_after(self, code: u32) -> bool {
        match self {
            Self::No => false,
            Self::Always | Self::UnlessStopped => true,
            Self::OnFailure => code != 0,
        }
    }
}

/// Which namespaces the service shares with the host instead of owning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostNamespaces {
    pub net: bool,
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

/// Everything needed to run one system service as a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: ServiceName,
    /// The root file system: a directory shipped in the image.
    pub root: PathBuf,
    pub read_only_root: bool,
    /// The process: program and arguments.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    pub working_dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub host: HostNamespaces,
    /// All capabilities, every device, no masked paths: for the few
    /// services that manage the machine itself.
    pub privileged: bool,
    /// The capabilities kept when not privileged.
    pub capabilities: HashSet<Capability>,
    pub mounts: Vec<BindMount>,
    pub restart: RestartPolicy,
    /// Services that must be running before this one starts.
    pub after: Vec<ServiceName>,
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

impl Service {
    /// A service with the least privilege: own namespaces, default
    /// capabilities, no restarts. Callers fill in the rest.
    pub fn new(name: ServiceName, root: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            name,
            root: root.into(),
            read_only_root: false,
            args,
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ],
            working_dir: PathBuf::from("/"),
            uid: 0,
            gid: 0,
            host: HostNamespaces::default(),
            privileged: false,
            capabilities: default_capabilities(),
            mounts: Vec::new(),
            restart: RestartPolicy::No,
            after: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_checked() {
        assert_eq!(
            ServiceName::new("user-containerd").unwrap().as_str(),
            "user-containerd"
        );
        assert_eq!(ServiceName::new("ntp.v2").unwrap().to_string(), "ntp.v2");
        let cases = [
            ("", "it is empty"),
            (
                "Console",
                "it must start with a lowercase letter or a digit",
            ),
            ("-x", "it must start with a lowercase letter or a digit"),
            (
                "a b",
                "only lowercase letters, digits, '-', '_' and '.' are allowed",
            ),
            (
                "a/b",
                "only lowercase letters, digits, '-', '_' and '.' are allowed",
            ),
        ];
        for (name, reason) in cases {
            let err = ServiceName::new(name).unwrap_err();
            assert_eq!((err.name.as_str(), err.reason), (name, reason));
        }
        let long = "a".repeat(64);
        assert_eq!(
            ServiceName::new(long).unwrap_err().reason,
            "it is longer than 63 characters"
        );
    }

    #[test]
    fn restart_policies() {
        use RestartPolicy::*;
        assert!(!No.restarts_after(1));
        assert!(Always.restarts_after(0) && Always.restarts_after(1));
        assert!(UnlessStopped.restarts_after(0));
        assert!(!OnFailure.restarts_after(0) && OnFailure.restarts_after(2));
    }
}
