//! `cloud-config.yml` on disk: read, and changed only by whole-file atomic
//! replacement after the new content has been checked. A power cut at any
//! point leaves the old file or the new one, never a mix.
//!
//! The configuration holds secrets (the cluster join token, the password,
//! SSH host keys), so it is written 0600 in a 0700 directory
//! ([`write_private`]); the same writer saves user-data and metadata.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_norway::Value;

use crate::check::{ConfigErrors, Warning, check_document};
use crate::layers::{ConfigPaths, Layers};
use crate::parse::keypath::KeyPath;
use crate::tree::{self, TreeError};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The stored file is not a valid cloud-config; fix it by hand first.
    #[error("{} is not valid, not changing it:\n{errors}", path.display())]
    StoredInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        errors: ConfigErrors,
    },
    /// The change would make the configuration invalid; nothing was written.
    #[error("refused, nothing was written:\n{0}")]
    Refused(ConfigErrors),
    /// The key path does not fit the stored tree.
    #[error(transparent)]
    Path(#[from] TreeError),
    /// Serialising the new document failed.
    #[error("cannot serialise the configuration: {0}")]
    Serialise(#[from] serde_norway::Error),
    /// Writing the new file failed; the old one is still in place.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The user's configuration file and the layers around it.
#[derive(Debug, Clone)]
pub struct Store {
    paths: ConfigPaths,
}

impl Store {
    /// The store under `paths`.
    pub fn new(paths: ConfigPaths) -> Self {
        Self { paths }
    }

    /// The paths it uses.
    pub fn paths(&self) -> &ConfigPaths {
        &self.paths
    }

    /// The stored document as a tree; an absent file is an empty mapping.
    pub fn read(&self) -> Result<Value, StoreError> {
        let path = self.paths.cloud_config_file();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        check_document(&text)
            .map(|checked| checked.value)
            .map_err(|errors| StoreError::StoredInvalid { path, errors })
    }

    /// Sets one key and stores the result.
    pub fn set(&self, path: &KeyPath, value: Value) -> Result<Vec<Warning>, StoreError> {
        let mut document = self.read()?;
        tree::set(&mut document, path, value)?;
        self.replace(&document)
    }

    /// Merges a document over the stored one and stores the result.
    pub fn merge(&self, overlay: Value) -> Result<Vec<Warning>, StoreError> {
        let mut document = self.read()?;
        tree::merge(&mut document, overlay);
        self.replace(&document)
    }

    /// Checks `document` alone and merged with the other layers, then
    /// writes it atomically.
    pub fn replace(&self, document: &Value) -> Result<Vec<Warning>, StoreError> {
        let text = serde_norway::to_string(document)?;
        let checked = check_document(&text).map_err(|errors| {
            StoreError::Refused(ConfigErrors(
                errors.0.into_iter().map(|e| e.without_line()).collect(),
            ))
        })?;

        let warnings = checked.warnings.clone();
        let layers = Layers::load_with_cloud_config(&self.paths, checked);
        layers.merged().map_err(StoreError::Refused)?;

        // The conf directory and its drop-ins hold secrets (the join token,
        // the password, user-data): only root may enter them.
        let drop_ins = self.paths.cloud_config_dir();
        narrow_dir_if_present(&drop_ins).map_err(|source| StoreError::Write {
            path: drop_ins,
            source,
        })?;
        let path = self.paths.cloud_config_file();
        write_private(&path, text.as_bytes())
            .map_err(|source| StoreError::Write { path, source })?;
        Ok(warnings)
    }
}

/// Who may read a file written with [`write_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone may read it (0666 less the umask) and its directory is left
    /// as it is: status files that `ros` reads without root.
    Shared,
    /// Root alone reads it (0600), in a directory only root enters (0700):
    /// configuration, user-data and metadata, which hold secrets.
    Private,
    /// As `Private`, and root may run it (0700): the user-data script.
    PrivateExecutable,
}

impl Access {
    /// The mode the file is created with (the umask may narrow it).
    fn file_mode(self) -> u32 {
        match self {
            Self::Shared => 0o666,
            Self::Private => 0o600,
            Self::PrivateExecutable => 0o700,
        }
    }
}

/// Replaces `path` with `contents`, readable by anyone (as `fs::write`
/// would leave it); see [`write_file`].
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_file(path, contents, Access::Shared)
}

/// Replaces `path` with `contents` that only root may read: the file is
/// created 0600 and its directory is made 0700; see [`write_file`].
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_file(path, contents, Access::Private)
}

/// Replaces `path` with `contents`: temp file in the same directory,
/// created with the mode `access` gives (never wider, not even for a
/// moment), fsync, rename over the old file, fsync the directory so the
/// rename itself is durable. The old file's mode does not carry over: the
/// renamed file is the new one. For private access the directory is
/// created 0700, or narrowed to 0700 when it is wider.
pub fn write_file(path: &Path, contents: &[u8], access: Access) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match access {
        Access::Shared => fs::create_dir_all(dir)?,
        Access::Private | Access::PrivateExecutable => private_dir(dir)?,
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // The pid tells a live writer's file from a killed one's; the counter
    // keeps two writers in this process apart.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);
    remove_stale_temp_files(dir, name);
    // A file left under this name by an earlier process with our pid would
    // keep its own mode if opened; it must go so ours is created fresh.
    let _ = fs::remove_file(&temp);

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(access.file_mode())
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: a stale temp file is harmless but untidy.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Makes `dir` a directory only root enters: created 0700 (its missing
/// parents as `create_dir_all` makes them), or narrowed to 0700 when it
/// exists with group or other permissions.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    narrow_dir(dir)
}

/// Narrows `dir` to 0700 when it exists with group or other permissions;
/// an absent `dir` is left absent.
pub fn narrow_dir_if_present(dir: &Path) -> io::Result<()> {
    match narrow_dir(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn narrow_dir(dir: &Path) -> io::Result<()> {
    let metadata = fs::metadata(dir)?;
    if !metadata.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Takes group and other permissions off `dir` and everything below it
/// (a 0644 file becomes 0600, a 0755 script 0700, a directory 0700), and
/// returns what it changed. For the boot: files an older release wrote
/// readable by all, or that were copied in by hand, hold secrets as much
/// as those written since. Symbolic links are neither followed nor
/// changed; an absent `dir` is nothing to do.
pub fn narrow_private_tree(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let metadata = match fs::symlink_metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(changed),
        Err(error) => return Err(error),
    };
    narrow_entry(dir, &metadata, &mut changed)?;
    Ok(changed)
}

fn narrow_entry(
    path: &Path,
    metadata: &fs::Metadata,
    changed: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let file_type = metadata.file_type();
    if !(file_type.is_dir() || file_type.is_file()) {
        return Ok(());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))?;
        changed.push(path.to_path_buf());
    }
    if file_type.is_dir() {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            // DirEntry::metadata does not follow a symbolic link.
            narrow_entry(&entry.path(), &entry.metadata()?, changed)?;
        }
    }
    Ok(())
}

/// Removes temp files left by writers that were killed mid-write (their
/// pid is gone). A live writer's file is left alone.
fn remove_stale_temp_files(dir: &Path, name: &std::ffi::OsStr) {
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name();
        // `<pid>.<n>`, or `<pid>` from writers before the counter.
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        if !alive {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::ErrorKind;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(ConfigPaths::under(dir.path()));
        (dir, store)
    }

    fn path(text: &str) -> KeyPath {
        KeyPath::parse(text).unwrap()
    }

    #[test]
    fn set_creates_the_file_and_keeps_other_keys() {
        let (_dir, store) = store();
        store.set(&path("hostname"), Value::from("node1")).unwrap();
        store
            .set(
                &path("rancher.network.dns.nameservers"),
                serde_norway::from_str("[1.1.1.1]").unwrap(),
            )
            .unwrap();
        let stored: Value =
            serde_norway::from_str(&fs::read_to_string(store.paths().cloud_config_file()).unwrap())
                .unwrap();
        let expected: Value = serde_norway::from_str(
            "hostname: node1\nrancher: {network: {dns: {nameservers: [1.1.1.1]}}}",
        )
        .unwrap();
        assert_eq!(stored, expected);
    }

    #[test]
    fn a_bad_value_is_refused_and_the_file_is_untouched() {
        let (_dir, store) = store();
        store.set(&path("hostname"), Value::from("node1")).unwrap();
        let before = fs::read(store.paths().cloud_config_file()).unwrap();
        let error = store
            .set(
                &path("rancher.network.interfaces.eth0.address"),
                Value::from("10.0.0.1"),
            )
            .unwrap_err();
        let StoreError::Refused(errors) = error else {
            panic!("expected Refused, got {error}");
        };
        assert_eq!(errors.0[0].kind(), ErrorKind::InvalidValue);
        assert_eq!(
            errors.0[0].path().map(ToString::to_string).as_deref(),
            Some("rancher.network.interfaces.eth0.address")
        );
        let error = store
            .set(&path("rancher.netwrk.x"), Value::from(1))
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Refused(e) if e.0[0].kind() == ErrorKind::UnknownKey),
            "{error}"
        );
        assert_eq!(fs::read(store.paths().cloud_config_file()).unwrap(), before);
    }

    #[test]
    fn a_change_that_conflicts_with_another_layer_is_refused() {
        let (dir, store) = store();
        let drop_in = dir
            .path()
            .join("var/lib/rancher/conf/cloud-config.d/10-net.yml");
        fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
        fs::write(
            &drop_in,
            "rancher: {services: {web: {image: nginx, net: host}}}",
        )
        .unwrap();
        let error = store
            .set(
                &path("rancher.services.web.network_mode"),
                Value::from("none"),
            )
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Refused(e) if e.0[0].kind() == ErrorKind::Inconsistent),
            "{error}"
        );
        assert!(!store.paths().cloud_config_file().exists());
    }

    #[test]
    fn a_killed_writers_temp_file_is_cleaned_up_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("file.yml");
        // No process has pid u32::MAX - 1 (pid_max is at most 2^22).
        let stale = dir.path().join(format!(".file.yml.tmp.{}", u32::MAX - 1));
        fs::write(&stale, "half").unwrap();
        write_atomically(&target, b"new").unwrap();
        assert!(!stale.exists());
        assert_eq!(fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/file.yml");
        write_atomically(&target, b"one").unwrap();
        write_atomically(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.yml")]);
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_old_world_readable_conf_tree_is_narrowed_to_root_alone() {
        let root = tempfile::tempdir().unwrap();
        let conf = root.path().join("conf");
        let drop_ins = conf.join("cloud-config.d");
        fs::create_dir_all(&drop_ins).unwrap();
        let cloud_config = conf.join("cloud-config.yml");
        let user_data = drop_ins.join("user-data.yml");
        let script = conf.join("cloud-config-script");
        let private = conf.join("already-private");
        fs::write(&cloud_config, "rancher: {password: x}\n").unwrap();
        fs::write(&user_data, "hostname: a\n").unwrap();
        fs::write(&script, "#!/bin/sh\n").unwrap();
        fs::write(&private, "").unwrap();
        // Outside the tree, reached only through a link: left alone.
        let outside = root.path().join("outside");
        fs::write(&outside, "").unwrap();
        std::os::unix::fs::symlink(&outside, conf.join("link")).unwrap();
        for (path, mode) in [
            (&conf, 0o755),
            (&drop_ins, 0o775),
            (&cloud_config, 0o644),
            (&user_data, 0o664),
            (&script, 0o755),
            (&private, 0o600),
            (&outside, 0o644),
        ] {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }

        let mut changed = narrow_private_tree(&conf).unwrap();
        changed.sort();
        let mut expected = vec![
            conf.clone(),
            script.clone(),
            drop_ins.clone(),
            user_data.clone(),
            cloud_config.clone(),
        ];
        expected.sort();
        assert_eq!(changed, expected);
        assert_eq!(mode_of(&conf), 0o700);
        assert_eq!(mode_of(&drop_ins), 0o700);
        assert_eq!(mode_of(&cloud_config), 0o600);
        assert_eq!(mode_of(&user_data), 0o600);
        assert_eq!(mode_of(&script), 0o700);
        assert_eq!(mode_of(&private), 0o600);
        assert_eq!(mode_of(&outside), 0o644);
        // A second boot has nothing left to change.
        assert!(narrow_private_tree(&conf).unwrap().is_empty());
        assert!(
            narrow_private_tree(&root.path().join("absent"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_store_writes_the_configuration_0600_in_a_0700_directory() {
        let (_dir, store) = store();
        let conf = store.paths().conf_dir();
        fs::create_dir_all(&conf).unwrap();
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o755)).unwrap();
        // A file an older release left readable by all is replaced, not kept.
        let file = store.paths().cloud_config_file();
        fs::write(&file, "hostname: old\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        store
            .set(&path("rancher.password"), Value::from("s3cret"))
            .unwrap();
        assert_eq!(mode_of(&file), 0o600);
        assert_eq!(mode_of(&conf), 0o700);
        let stored = fs::read_to_string(&file).unwrap();
        assert!(
            stored.contains("hostname: old") && stored.contains("s3cret"),
            "{stored}"
        );
    }
}
