//! What the cached builds (the kernel, containerd, crun, dropbear) share:
//! the cache key over their inputs, the entry looked up and built under a
//! lock that serialises builds of one cache, a log every build command
//! streams into, whose tail a failure shows, and the Debian source they
//! start from.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// How many lines of the build log a failure shows.
const LOG_TAIL_LINES: usize = 40;

/// A cache key: sha256 over every input, each part labelled and
/// length-prefixed, so no two input sets give the same bytes.
pub struct InputsHash(Sha256);

impl InputsHash {
    pub fn new() -> Self {
        Self(Sha256::new())
    }

    pub fn part(&mut self, label: &str, value: &str) {
        self.0.update(format!("{label} {}\n", value.len()));
        self.0.update(value);
        self.0.update("\n");
    }

    /// The key, in hex.
    pub fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// The entry `key` of `cache`, made by `build` unless `complete` finds it
/// there. A miss takes the cache's lock and looks again: another
/// image-build may have finished it meanwhile. Gives the entry and whether
/// it was a hit.
pub fn cached_entry(
    cache: &Path,
    key: &str,
    complete: impl Fn(&Path) -> bool,
    build: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<(PathBuf, bool)> {
    let entry = cache.join(key);
    let hit = complete(&entry);
    if !hit {
        std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
        let _lock = lock(&cache.join("lock"))?;
        if !complete(&entry) {
            build()?;
        }
    }
    Ok((entry, hit))
}

/// Serialises builds that share a cache's source and build directories.
pub fn lock(path: &Path) -> anyhow::Result<File> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// The log file every build command streams into.
#[derive(Debug)]
pub struct BuildLog {
    pub path: PathBuf,
    file: File,
}

impl BuildLog {
    pub fn create(path: PathBuf) -> anyhow::Result<Self> {
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path, file })
    }

    /// Runs `command` with its output going to the log; on failure the
    /// error carries the log's tail, which is where the reason is.
    pub fn run(&self, command: &mut Command) -> anyhow::Result<()> {
        let shown = format!("{command:?}");
        writeln!(&self.file, "\n$ {shown}")?;
        let started = Instant::now();
        let status = command
            .stdin(Stdio::null())
            .stdout(self.file.try_clone()?)
            .stderr(self.file.try_clone()?)
            .status()
            .with_context(|| format!("starting {shown}"))?;
        writeln!(
            &self.file,
            "# {status} after {:.1} s",
            started.elapsed().as_secs_f64()
        )?;
        if status.success() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        bail!(
            "{shown} failed ({status}); last lines of {}:\n{}",
            self.path.display(),
            tail(&text, LOG_TAIL_LINES)
        )
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The unpacked Debian source of `package` at `version` (Debian's patches
/// applied), fetched once into `src/<version>/`: `apt-get source` runs in
/// a scratch directory renamed into place, so a half-extracted tree is
/// never taken for a whole one. The tree is the one directory `is_tree`
/// accepts.
pub fn debian_source(
    src: &Path,
    package: &str,
    version: &str,
    log: &BuildLog,
    is_tree: impl Fn(&Path) -> bool,
) -> anyhow::Result<PathBuf> {
    let done = src.join(path_safe(version));
    if !done.is_dir() {
        std::fs::create_dir_all(src).with_context(|| format!("creating {}", src.display()))?;
        let partial = src.join(format!(".{}.partial", path_safe(version)));
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        log.run(
            Command::new("apt-get")
                .args(["source", "-q"])
                .arg(format!("{package}={version}"))
                .current_dir(&partial),
        )
        .with_context(|| {
            format!("apt-get source {package} needs deb-src lines (./dev setup writes them)")
        })?;
        std::fs::rename(&partial, &done)
            .with_context(|| format!("renaming {} into place", partial.display()))?;
    }
    // apt-get source leaves the .dsc, the tarballs and one directory.
    let mut trees = Vec::new();
    for entry in std::fs::read_dir(&done).with_context(|| format!("reading {}", done.display()))? {
        let path = entry?.path();
        if path.is_dir() && is_tree(&path) {
            trees.push(path);
        }
    }
    match trees.as_slice() {
        [tree] => Ok(tree.clone()),
        _ => bail!(
            "{} does not hold exactly one {package} source tree",
            done.display()
        ),
    }
}

/// A directory name for a Debian version (`~`, `:` kept out of paths).
pub fn path_safe(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `name version` of each of `packages`, in that order, one a line: what
/// a source build compiles and links with, for its cache key. Fails
/// naming those not installed, with the `apt-get build-dep` of `source`
/// that installs them.
pub fn installed_versions(packages: &[&str], source: &str) -> anyhow::Result<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\n"])
        .args(packages)
        .output()
        .context("running dpkg-query")?;
    let installed: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("ii "))
        .filter_map(|line| {
            let (name, version) = line.trim().split_once(' ')?;
            // Multi-arch packages answer as name:arch.
            let name = name.split(':').next().unwrap_or(name);
            Some((name.to_owned(), version.to_owned()))
        })
        .collect();
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    for wanted in packages {
        match installed.iter().find(|(name, _)| name == wanted) {
            Some((name, version)) => lines.push(format!("{name} {version}")),
            None => missing.push(*wanted),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{source}'s build needs {}: run `apt-get build-dep {source}` (./dev setup)",
            missing.join(", ")
        );
    }
    Ok(lines.join("\n"))
}

/// Debian's compiler and linker flags for a package built with
/// `hardening=+all`, as dpkg-buildflags gives them in `tree` (its
/// file-prefix map keeps the build path out of the binary).
pub fn debian_flags(tree: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut flags = Vec::new();
    for variable in ["CFLAGS", "CPPFLAGS", "LDFLAGS"] {
        let output = Command::new("dpkg-buildflags")
            .args(["--get", variable])
            .env("DEB_BUILD_MAINT_OPTIONS", "hardening=+all")
            .current_dir(tree)
            .output()
            .context("running dpkg-buildflags (apt-get install dpkg-dev)")?;
        if !output.status.success() {
            bail!(
                "dpkg-buildflags --get {variable} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        flags.push((
            variable,
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        ));
    }
    Ok(flags)
}
