//! Boot-time preload, as RancherOS did from
//! `/var/lib/rancher/preload/{docker,system-docker}/`: every image archive
//! in a directory is loaded once. What was loaded is known by content:
//! `record` lists the sha256 of each archive loaded, so a renamed file is
//! not loaded again and a replaced one is. The record is rewritten
//! (temporary file, fsync, rename) after each success, so a power cut
//! loses at most the archive being loaded, which then loads again.

use std::collections::HashSet;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::archive::load_archive;
use crate::containerd::Containerd;

/// What became of one file of the preload directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreloadOutcome {
    Loaded {
        file: PathBuf,
        images: Vec<String>,
    },
    /// Its content was loaded before (under this name or another).
    AlreadyLoaded {
        file: PathBuf,
    },
    /// Not an archive this loads; `reason` says why.
    Skipped {
        file: PathBuf,
        reason: String,
    },
    Failed {
        file: PathBuf,
        error: String,
    },
}

/// The names an archive may have.
const EXTENSIONS: &[&str] = &[".tar", ".tar.gz", ".tgz"];

/// Loads every archive in `dir` (regular files named `.tar`, `.tar.gz`
/// or `.tgz`, in name order) whose content `record` does not list. A
/// broken archive is reported and the others still load; a missing `dir`
/// is nothing to do.
pub async fn preload_dir(
    containerd: &Containerd,
    dir: &Path,
    record: &Path,
) -> Vec<PreloadOutcome> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            return vec![PreloadOutcome::Failed {
                file: dir.to_path_buf(),
                error: format!("reading the directory: {error}"),
            }];
        }
    };
    files.sort();
    let mut loaded = read_record(record);
    let mut outcomes = Vec::with_capacity(files.len());
    for file in files {
        let outcome = preload_file(containerd, &file, record, &mut loaded).await;
        match &outcome {
            PreloadOutcome::Loaded { images, .. } => {
                tracing::info!(file = %file.display(), ?images, "preloaded");
            }
            PreloadOutcome::Failed { error, .. } => {
                tracing::warn!(file = %file.display(), %error, "preload failed");
            }
            _ => {}
        }
        outcomes.push(outcome);
    }
    outcomes
}

async fn preload_file(
    containerd: &Containerd,
    file: &Path,
    record: &Path,
    loaded: &mut Vec<String>,
) -> PreloadOutcome {
    let skipped = |reason: &str| PreloadOutcome::Skipped {
        file: file.to_path_buf(),
        reason: reason.to_string(),
    };
    let failed = |error: String| PreloadOutcome::Failed {
        file: file.to_path_buf(),
        error,
    };
    match std::fs::symlink_metadata(file) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(_) => return skipped("not a regular file"),
        Err(error) => return failed(format!("reading {}: {error}", file.display())),
    }
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    if !EXTENSIONS.iter().any(|e| name.ends_with(e)) {
        return skipped("not an image archive: the name ends in none of .tar, .tar.gz, .tgz");
    }
    let owned = file.to_path_buf();
    let digest = match tokio::task::spawn_blocking(move || file_digest(&owned)).await {
        Ok(Ok(digest)) => digest,
        Ok(Err(error)) => return failed(format!("reading {}: {error}", file.display())),
        Err(error) => return failed(format!("hashing {}: {error}", file.display())),
    };
    if loaded.contains(&digest) {
        return PreloadOutcome::AlreadyLoaded {
            file: file.to_path_buf(),
        };
    }
    let mut quiet = |_| {};
    match load_archive(containerd, file, &mut quiet).await {
        Ok(images) => {
            loaded.push(digest);
            if let Err(error) = write_record(record, loaded, file) {
                // Loaded all the same; it loads again next time.
                tracing::warn!(record = %record.display(), %error, "cannot save the preload record");
            }
            PreloadOutcome::Loaded {
                file: file.to_path_buf(),
                images,
            }
        }
        Err(error) => failed(error.to_string()),
    }
}

/// `sha256:<hex>` of a file's bytes, read in pieces.
fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buffer[..n]);
    }
    let mut text = String::from("sha256:");
    for byte in hash.finalize().iter() {
        text.push_str(&format!("{byte:02x}"));
    }
    Ok(text)
}

/// The digests in the record, first word of each line; none when it is
/// missing or unreadable (then everything loads again, harmlessly).
fn read_record(record: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let mut seen = HashSet::new();
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.starts_with("sha256:"))
        .filter(|word| seen.insert(word.to_string()))
        .map(str::to_string)
        .collect()
}

/// Rewrites the record atomically: a temporary file beside it, synced,
/// renamed over it, the directory synced. The last file loaded is noted
/// after its digest, for people reading the record.
fn write_record(record: &Path, loaded: &[String], last: &Path) -> std::io::Result<()> {
    let dir = record.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut text = String::new();
    for (i, digest) in loaded.iter().enumerate() {
        text.push_str(digest);
        if i + 1 == loaded.len() {
            text.push(' ');
            text.push_str(&last.display().to_string());
        }
        text.push('\n');
    }
    let name = record.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, record)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_keeps_digests_across_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("sub/loaded");
        assert!(read_record(&record).is_empty(), "no record, nothing loaded");
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        write_record(&record, std::slice::from_ref(&a), Path::new("/p/one.tar")).unwrap();
        write_record(&record, &[a.clone(), b.clone()], Path::new("/p/two.tar")).unwrap();
        assert_eq!(read_record(&record), [a.clone(), b.clone()]);
        let text = std::fs::read_to_string(&record).unwrap();
        assert_eq!(text, format!("{a}\n{b} /p/two.tar\n"));
        let left: Vec<_> = std::fs::read_dir(record.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["loaded"], "no temporary file is left");
    }

    #[test]
    fn a_file_digest_is_its_contents_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(
            file_digest(&path).unwrap(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
