//! Reading the big programs of the boot ahead of time. Most of the boot is
//! the kernel decompressing containerd and its shim from the squashfs; read
//! on other CPUs while PID 1 loads the configuration, they are in the page
//! cache by the time they run.

use std::fs::File;
use std::io;
use std::path::Path;

/// Programs the boot runs, grouped so each group reads on its own CPU:
/// containerd now, its shim and the OCI runtime a little later.
pub const BOOT_PROGRAMS: &[&[&str]] = &[
    &["/usr/bin/containerd"],
    &["/usr/bin/containerd-shim-runc-v2", "/usr/bin/crun"],
];

/// Starts one reader thread per group and returns at once. A file that
/// cannot be read is skipped: this only saves time.
pub fn start(groups: &'static [&'static [&'static str]]) {
    for group in groups {
        let spawned = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || {
                for path in *group {
                    if let Err(err) = read_through(Path::new(path)) {
                        tracing::debug!(path, %err, "prefetch skipped");
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::debug!(%err, "no prefetch thread");
        }
    }
}

/// Reads the whole file and drops the bytes: they stay in the page cache.
fn read_through(path: &Path) -> io::Result<u64> {
    io::copy(&mut File::open(path)?, &mut io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 300_000]).unwrap();
        assert_eq!(read_through(&path).unwrap(), 300_000);
        assert_eq!(
            read_through(&dir.path().join("missing"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
