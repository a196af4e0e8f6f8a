//! The boot counter, and the last configuration that reached `ros: ready`.
//!
//! Each boot with a state partition counts itself in
//! `/var/lib/rancher/conf/boot-attempts` before the configuration loads;
//! `ros: ready` sets it back to 0 and keeps a copy of the configuration
//! files in `conf/last-good/`. A machine whose configuration keeps it from
//! ever getting ready (a bootcmd that reboots, a panic on some input, a
//! hang someone power-cycles) comes, on the boot after
//! [`MAX_FAILED_BOOTS`] failed ones, with that copy instead: the files
//! that failed are moved to `conf/failed/` for a look, the console says so
//! loudly, and user-data is not fetched again on that boot (it may be what
//! failed). GRUB's and Flatcar's boot counters work the same way, for the
//! whole image.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use os_config::ConfigPaths;

/// How many boots in a row may fail to reach `ros: ready` before the last
/// good configuration comes back: one failure may be a power cut, three
/// are the configuration.
pub const MAX_FAILED_BOOTS: u32 = 3;

/// The count of boots since the last one that reached ready.
#[derive(Debug, Clone)]
pub struct BootCounter {
    file: PathBuf,
}

impl BootCounter {
    /// The counter of the machine whose configuration is under `paths`.
    pub fn new(paths: &ConfigPaths) -> Self {
        Self {
            file: paths.conf_dir().join("boot-attempts"),
        }
    }

    /// Boots counted since the last ready one; 0 without a counter (or
    /// with one that does not read as a number).
    pub fn failed_boots(&self) -> u32 {
        fs::read_to_string(&self.file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Counts this boot, durably; returns how many before it failed.
    pub fn begin(&self) -> io::Result<u32> {
        let failed = self.failed_boots();
        write_durably(
            &self.file,
            format!("{}\n", failed.saturating_add(1)).as_bytes(),
        )?;
        Ok(failed)
    }

    /// This boot reached ready: the count starts again.
    pub fn reset(&self) -> io::Result<()> {
        write_durably(&self.file, b"0\n")
    }
}

/// The configuration files the fallback keeps: relative to the conf dir.
const CONFIG_FILES: [&str; 3] = ["cloud-config.yml", "cloud-config.d", "cloud-config-script"];
/// Where the last good configuration is kept, in the conf dir.
pub const LAST_GOOD_DIR: &str = "last-good";
/// Where the configuration that failed is moved, in the conf dir.
pub const FAILED_DIR: &str = "failed";

/// Counts this boot; after [`MAX_FAILED_BOOTS`] failed ones, puts the last
/// good configuration back and says so through `say`. Returns whether
/// this boot runs on the last good configuration.
pub fn start_boot(counter: &BootCounter, paths: &ConfigPaths, say: impl Fn(&str)) -> bool {
    let failed = match counter.begin() {
        Ok(failed) => failed,
        Err(error) => {
            say(&format!(
                "ros: boot counter {}: {error}",
                counter.file.display()
            ));
            return false;
        }
    };
    // Once only: the boots after it run on what was put back.
    if failed != MAX_FAILED_BOOTS {
        if failed > MAX_FAILED_BOOTS {
            say(&format!(
                "ros: WARNING: {failed} boots in a row did not reach ready, the last good configuration did not help either"
            ));
        }
        return false;
    }
    let conf = paths.conf_dir();
    match restore_last_good(&conf) {
        Ok(had_copy) => {
            let what = if had_copy {
                "the last configuration that reached ready"
            } else {
                "no configuration but the built-in, OEM and command-line layers (none ever reached ready)"
            };
            say(&format!(
                "ros: WARNING: {failed} boots in a row did not reach ready: booting with {what}; \
                 the configuration that failed is in {}",
                conf.join(FAILED_DIR).display()
            ));
            true
        }
        Err(error) => {
            say(&format!(
                "ros: WARNING: {failed} boots in a row did not reach ready, and the last good configuration could not be put back: {error}"
            ));
            false
        }
    }
}

/// `ros: ready`: the counter back to 0 and the configuration kept as the
/// last good one. Problems go to `say`.
pub fn reached_ready(counter: &BootCounter, paths: &ConfigPaths, say: impl Fn(&str)) {
    if let Err(error) = save_last_good(&paths.conf_dir()) {
        say(&format!(
            "ros: keeping the last good configuration: {error}"
        ));
    }
    if let Err(error) = counter.reset() {
        say(&format!(
            "ros: boot counter {}: {error}",
            counter.file.display()
        ));
    }
}

/// Copies the configuration files of `conf` to `conf/last-good`, replacing
/// the copy there only once the new one is complete.
pub fn save_last_good(conf: &Path) -> io::Result<()> {
    let fresh = conf.join(".last-good.new");
    remove_any(&fresh)?;
    private_dir(&fresh)?;
    for name in CONFIG_FILES {
        copy_tree(&conf.join(name), &fresh.join(name))?;
    }
    fs::File::open(&fresh)?.sync_all()?;
    let target = conf.join(LAST_GOOD_DIR);
    let old = conf.join(".last-good.old");
    remove_any(&old)?;
    if target.exists() {
        fs::rename(&target, &old)?;
    }
    fs::rename(&fresh, &target)?;
    fs::File::open(conf)?.sync_all()?;
    remove_any(&old)
}

/// Moves the configuration files of `conf` to `conf/failed` and copies
/// the last good ones back; returns whether there was a last good copy
/// (without one, the files are only moved away).
pub fn restore_last_good(conf: &Path) -> io::Result<bool> {
    let failed = conf.join(FAILED_DIR);
    remove_any(&failed)?;
    private_dir(&failed)?;
    for name in CONFIG_FILES {
        let path = conf.join(name);
        if fs::symlink_metadata(&path).is_ok() {
            fs::rename(&path, failed.join(name))?;
        }
    }
    let last_good = conf.join(LAST_GOOD_DIR);
    let had_copy = last_good.is_dir();
    if had_copy {
        for name in CONFIG_FILES {
            copy_tree(&last_good.join(name), &conf.join(name))?;
        }
    }
    fs::File::open(conf)?.sync_all()?;
    Ok(had_copy)
}

/// Copies a file or a directory of files; an absent `from` copies nothing.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let Ok(meta) = fs::symlink_metadata(from) else {
        return Ok(());
    };
    if meta.is_dir() {
        private_dir(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        use std::os::unix::fs::PermissionsExt;
        let contents = fs::read(from)?;
        let mode = meta.permissions().mode() & 0o700;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.max(0o600))
            .open(to)?;
        file.write_all(&contents)?;
        file.sync_all()
    } else {
        // Sockets, links: not configuration.
        Ok(())
    }
}

fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => Err(error),
        _ => Ok(()),
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

/// Temp file, fsync, rename, fsync of the directory: a power cut leaves
/// the old count or the new one.
fn write_durably(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    private_dir(dir)?;
    let temp = dir.join(".boot-attempts.new");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
