//! Where a service's root file system comes from: a directory shipped in
//! the image (`image: ros/<name>`), used as the OCI root path as it is, or
//! a registry image, unpacked into a containerd snapshot whose mounts the
//! task gets.

use std::fmt;
use std::path::PathBuf;

/// The root file system of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// A pre-extracted directory, e.g. `/usr/lib/ros/images/console`.
    Dir(PathBuf),
    /// A registry reference, e.g. `docker.io/library/alpine:3.20`.
    Image(String),
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(path) => write!(f, "{}", path.display()),
            Self::Image(reference) => f.write_str(reference),
        }
    }
}

/// One mount that makes up a task's root file system (containerd's
/// `types.Mount`): e.g. the overlay of an image's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

/// What an image says about the process when the service does not: its
/// config's `Entrypoint`, `Cmd`, `Env`, `WorkingDir` and `User`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid`, `uid:gid`, or a name (names are not resolved: see spec).
    pub user: Option<String>,
}

/// A root made ready for one container: the mounts its task needs (none
/// for a directory) and the image's defaults (none for a directory).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreparedRoot {
    pub mounts: Vec<RootfsMount>,
    pub image: Option<ImageDefaults>,
}

impl PreparedRoot {
    /// A shipped directory: nothing to mount, no image defaults.
    pub fn dir() -> Self {
        Self::default()
    }
}
