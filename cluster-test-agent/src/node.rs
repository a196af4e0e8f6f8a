//! The node password, kept where k3s keeps it (`/etc/rancher/node/password`):
//! made once, sent with every registration, so the server can tell the
//! same node coming back from another machine taking its name.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where k3s keeps the node password.
pub const NODE_DIR: &str = "/etc/rancher/node";

/// For the host tests only: a directory used instead of [`NODE_DIR`], so
/// tests on the build machine keep their passwords in a temporary
/// directory. Nothing in the OS sets it.
pub const NODE_DIR_TEST_OVERRIDE: &str = "ROS_TEST_AGENT_NODE_DIR";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("reading the node password {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the node password file {0} is empty")]
    Empty(PathBuf),
    #[error("making the node directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading /dev/urandom for a node password: {0}")]
    Random(std::io::Error),
    #[error("writing the node password {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The node password in `dir`: read, or made the first time (directory
/// 0700, file 0600). Also says whether it was there before.
pub fn password(dir: &Path) -> Result<(String, bool), NodeError> {
    let path = dir.join("password");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            if text.is_empty() {
                return Err(NodeError::Empty(path));
            }
            return Ok((text.to_string(), true));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(NodeError::Read { path, source }),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| NodeError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut random = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut random))
        .map_err(NodeError::Random)?;
    let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(format!("{password}\n").as_bytes()))
        .map_err(|source| NodeError::Write {
            path: path.clone(),
            source,
        })?;
    Ok((password, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cluster-test-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_first_start_makes_a_private_password_and_the_next_reads_it() {
        let base = scratch("password");
        let dir = base.join("node");
        let (made, existed) = password(&dir).unwrap();
        assert!(!existed);
        assert_eq!(made.len(), 32);
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("password")), 0o600);
        assert_eq!(password(&dir).unwrap(), (made, true));
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn an_empty_password_file_is_refused() {
        let dir = scratch("empty");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("password"), "\n").unwrap();
        assert!(matches!(password(&dir), Err(NodeError::Empty(p)) if p == dir.join("password")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
