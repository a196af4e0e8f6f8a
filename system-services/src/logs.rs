//! Service logs: `/var/log/ros/<service>.log`, rotated by size.
//!
//! The shim does not write the file itself: it runs `ros log-pipe FILE`
//! (containerd's `binary://` log URI) with the task's stdout and stderr on
//! pipes, and that process owns the file, so it can rename it when it is
//! full and open a new one. Rotating a file the shim appends to would need
//! copy-and-truncate, which loses what is written in between.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// When a log file is rotated and how many old ones are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A file reaching this size is rotated.
    pub max_bytes: u64,
    /// Old files kept: `<file>.1` (newest) .. `<file>.<keep>`.
    pub keep: u32,
}

impl Default for Rotation {
    /// 1 MiB and two old files: at most 3 MiB per service.
    fn default() -> Self {
        Self {
            max_bytes: 1 << 20,
            keep: 2,
        }
    }
}

/// The files of one log, oldest first, the live one last.
pub fn files(path: &Path, keep: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=keep).rev().map(|n| numbered(path, n)).collect();
    files.push(path.to_path_buf());
    files
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// A log file that rotates itself by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending (creating it and its directory).
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = Self::append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            rotation,
            file,
            size,
        })
    }

    fn append(path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    /// Appends `data`, first rotating if it would not fit. A chunk larger
    /// than a whole file is written anyway: nothing is cut.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        if self.size > 0 && self.size.saturating_add(len) > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(data)?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.rotation.keep == 0 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.rotation.keep).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = Self::append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Where the output goes: a log file, or nowhere when it cannot be
/// opened (the task must not die of a closed pipe because of its log).
#[derive(Debug)]
pub enum Sink {
    File(RotatingFile),
    Discard,
}

impl Sink {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::File(file) => file.write_all(data),
            Self::Discard => Ok(()),
        }
    }
}

/// Lines longer than this are written in pieces.
const MAX_LINE: usize = 64 * 1024;

/// Copies every stream into `sink` until all of them end (the task and
/// everything holding its stdout and stderr are gone). Whole lines are
/// written at once, so the streams interleave by line.
pub fn copy_streams<R: Read + Send + 'static>(streams: Vec<R>, sink: Sink) -> io::Result<()> {
    let sink = Arc::new(Mutex::new(sink));
    let threads: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || copy_lines(stream, &sink))
        })
        .collect();
    let mut result = Ok(());
    for thread in threads {
        let outcome = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a log copier panicked")));
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

fn copy_lines(mut stream: impl Read, sink: &Mutex<Sink>) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let write = |data: &[u8]| -> io::Result<()> {
        let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.write_all(data)
    };
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&buf[..n]);
        let complete = match pending.iter().rposition(|b| *b == b'\n') {
            Some(last) => last + 1,
            None if pending.len() >= MAX_LINE => pending.len(),
            None => continue,
        };
        // A failing disk must not stop the copy: the task would block on
        // a full pipe. What cannot be written is dropped.
        let _ = write(&pending[..complete]);
        pending.drain(..complete);
    }
    if !pending.is_empty() {
        // Ended mid-line: end the line, so the next writer starts its own.
        pending.push(b'\n');
        let _ = write(&pending);
    }
    Ok(())
}

/// The last `lines` lines of a log (all when `None`), across its rotated
/// files.
pub fn tail(path: &Path, keep: u32, lines: Option<usize>) -> io::Result<Vec<u8>> {
    let mut text = Vec::new();
    let mut found = false;
    for file in files(path, keep) {
        match std::fs::read(&file) {
            Ok(bytes) => {
                found = true;
                text.extend(bytes);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !found {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no log yet", path.display()),
        ));
    }
    let Some(lines) = lines else {
        return Ok(text);
    };
    // The start of the last `lines` lines; a final newline ends the last
    // line rather than starting an empty one.
    let body = text.strip_suffix(b"\n").unwrap_or(&text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    if lines == 0 {
        return Ok(Vec::new());
    }
    Ok(text[start..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_keeping_that_many_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/svc.log");
        let rotation = Rotation {
            max_bytes: 10,
            keep: 2,
        };
        let mut file = RotatingFile::open(&path, rotation).unwrap();
        for line in ["one 1\n", "two 2\n", "three\n", "four\n", "five\n"] {
            file.write_all(line.as_bytes()).unwrap();
        }
        // 6 + 6 > 10: rotated before "two", "three" and "four"; "five" fits.
        assert_eq!(read(&path), "four\nfive\n");
        assert_eq!(read(&numbered(&path, 1)), "three\n");
        assert_eq!(read(&numbered(&path, 2)), "two 2\n");
        assert!(!numbered(&path, 3).exists());
        assert_eq!(
            String::from_utf8(tail(&path, 2, None).unwrap()).unwrap(),
            "two 2\nthree\nfour\nfive\n"
        );
        // Reopened, it goes on from the size on disk.
        drop(file);
        let mut file = RotatingFile::open(&path, rotation).unwrap();
        file.write_all(b"sixty\n").unwrap();
        assert_eq!(read(&path), "sixty\n");
        assert_eq!(read(&numbered(&path, 1)), "four\nfive\n");
        assert_eq!(read(&numbered(&path, 2)), "three\n");
    }

    #[test]
    fn keep_zero_truncates_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let rotation = Rotation {
            max_bytes: 8,
            keep: 0,
        };
        let mut file = RotatingFile::open(&path, rotation).unwrap();
        file.write_all(b"abcdef\n").unwrap();
        file.write_all(b"ghij\n").unwrap();
        assert_eq!(read(&path), "ghij\n");
    }

    #[test]
    fn a_chunk_larger_than_a_file_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let rotation = Rotation {
            max_bytes: 4,
            keep: 1,
        };
        let mut file = RotatingFile::open(&path, rotation).unwrap();
        file.write_all(b"a very long line\n").unwrap();
        assert_eq!(read(&path), "a very long line\n");
    }

    #[test]
    fn streams_are_copied_by_whole_lines_until_they_all_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let (out_r, mut out_w) = io::pipe().unwrap();
        let (err_r, mut err_w) = io::pipe().unwrap();
        let file = RotatingFile::open(&path, Rotation::default()).unwrap();
        let copier = std::thread::spawn(move || copy_streams(vec![out_r, err_r], Sink::File(file)));
        out_w.write_all(b"out: hal").unwrap();
        err_w.write_all(b"err: whole line\n").unwrap();
        out_w.write_all(b"f a line\nno newline at the end").unwrap();
        drop(out_w);
        drop(err_w);
        copier.join().unwrap().unwrap();
        let text = read(&path);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "err: whole line",
                "no newline at the end",
                "out: half a line"
            ]
        );
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let tail_of = |n| String::from_utf8(tail(&path, 2, n).unwrap()).unwrap();
        assert_eq!(tail_of(Some(2)), "b\nc\n");
        assert_eq!(tail_of(Some(10)), "a\nb\nc\n");
        assert_eq!(tail_of(Some(0)), "");
        assert_eq!(tail_of(None), "a\nb\nc\n");
        std::fs::write(&path, "a\nno end").unwrap();
        assert_eq!(tail_of(Some(1)), "no end");
        let missing = tail(&dir.path().join("none.log"), 2, None).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("no log yet"), "{missing}");
    }
}
