//! What the cached builds (the kernel, containerd) share: a lock that
//! serialises builds of one cache, and a log every build command streams
//! into, whose tail a failure shows.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// How many lines of the build log a failure shows.
const LOG_TAIL_LINES: usize = 40;

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
