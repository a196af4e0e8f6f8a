//! The initrd: `/init` (= `ros`) and the root squashfs, uncompressed, so
//! nothing is decompressed twice at boot and the same pair boots from the
//! ISO, a disk or `qemu -kernel/-initrd`.

use std::path::Path;

use anyhow::Context;

use image_build::cpio::{Entry, write_archive};

pub fn write(ros: &Path, squashfs: &Path, initrd: &Path) -> anyhow::Result<()> {
    let init = std::fs::read(ros).with_context(|| format!("reading {}", ros.display()))?;
    let root =
        std::fs::read(squashfs).with_context(|| format!("reading {}", squashfs.display()))?;
    let entries = [
        // The kernel opens /dev/console for PID 1's stdio before /init runs.
        Entry::Dir {
            path: "dev",
            mode: 0o755,
        },
        Entry::CharDevice {
            path: "dev/console",
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        Entry::Dir {
            path: "proc",
            mode: 0o555,
        },
        Entry::Dir {
            path: "sys",
            mode: 0o555,
        },
        Entry::Dir {
            path: "run",
            mode: 0o755,
        },
        Entry::Dir {
            path: "tmp",
            mode: 0o1777,
        },
        Entry::File {
            path: "init",
            mode: 0o755,
            data: &init,
        },
        Entry::File {
            path: "rootfs.squashfs",
            mode: 0o444,
            data: &root,
        },
    ];
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(initrd).with_context(|| format!("creating {}", initrd.display()))?,
    );
    write_archive(&mut out, &entries)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}
