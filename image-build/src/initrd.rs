//! The initrds. `initrd`, for `qemu -kernel/-initrd` and PXE, is two
//! cpio archives one after the other, which the kernel unpacks in turn.
//! The first holds `/init` (= `ros`), zstd-compressed: ros shrinks to a
//! third and unpacks in milliseconds. The second holds the root squashfs
//! as it is: it is compressed inside, so compressing it again would only
//! cost time at boot.
//!
//! `initrd-media`, for the ISO and installed disks, is the first archive
//! alone plus `/rootfs.squashfs.id` (the squashfs's superblock): the
//! image is a file next to it on the medium, which PID 1 mounts. An
//! initramfs is never freed, so an image inside it stays in RAM for good;
//! from the medium its pages are page cache the kernel can drop.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use image_build::cpio::{Entry, write_archive};

/// The squashfs superblock's length: what `/rootfs.squashfs.id` holds.
pub const IMAGE_ID_LEN: usize = 96;
/// The initrd of the ISO and installed disks, in the output directory.
pub const MEDIA_INITRD: &str = "initrd-media";

/// `initrd`: `ros` and the root image in one file.
pub fn write(ros: &Path, squashfs: &Path, initrd: &Path) -> anyhow::Result<()> {
    let root =
        std::fs::read(squashfs).with_context(|| format!("reading {}", squashfs.display()))?;
    let root_archive = [Entry::File {
        path: "rootfs.squashfs",
        mode: 0o444,
        data: &root,
    }];
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(initrd).with_context(|| format!("creating {}", initrd.display()))?,
    );
    out.write_all(&init_archive(ros, None)?)?;
    write_archive(&mut out, &root_archive)?;
    out.flush()?;
    Ok(())
}

/// `initrd-media`: `ros` and the first bytes of the root image it goes
/// with, by which PID 1 tells that image on a medium from another.
pub fn write_media(ros: &Path, squashfs: &Path, initrd: &Path) -> anyhow::Result<()> {
    let mut id = Vec::with_capacity(IMAGE_ID_LEN);
    std::fs::File::open(squashfs)
        .and_then(|file| file.take(IMAGE_ID_LEN as u64).read_to_end(&mut id))
        .with_context(|| format!("reading {}", squashfs.display()))?;
    if id.len() < IMAGE_ID_LEN || !id.starts_with(b"hsqs") {
        bail!("{} is not a squashfs image", squashfs.display());
    }
    std::fs::write(initrd, init_archive(ros, Some(&id))?)
        .with_context(|| format!("writing {}", initrd.display()))
}

/// The first archive, zstd-compressed and padded to 4 bytes: `/init`
/// and, for a medium's initrd, the image's id.
fn init_archive(ros: &Path, image_id: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let init = std::fs::read(ros).with_context(|| format!("reading {}", ros.display()))?;
    let mut init_archive = vec![
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
    ];
    if let Some(id) = image_id {
        init_archive.push(Entry::File {
            path: "rootfs.squashfs.id",
            mode: 0o444,
            data: id,
        });
    }
    let mut init_cpio = Vec::new();
    write_archive(&mut init_cpio, &init_archive)?;
    let mut compressed = zstd(&init_cpio)?;
    // The kernel looks for the next archive at a 4-byte boundary.
    compressed.resize(compressed.len().next_multiple_of(4), 0);
    Ok(compressed)
}

/// `data` compressed by zstd at its highest level; the kernel's decoder
/// takes zstd's default window for it (8 MiB at -19).
fn zstd(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("zstd")
        .args(["-19", "-q", "-c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running zstd (Debian package zstd)")?;
    let mut stdin = child.stdin.take().context("zstd's stdin")?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().context("waiting for zstd")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the thread feeding zstd panicked"))?
        .context("feeding zstd")?;
    if !output.status.success() {
        bail!("zstd failed: {}", output.status);
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the second archive starts: its header names rootfs.squashfs.
    fn second_archive(initrd: &[u8]) -> usize {
        (0..initrd.len() - 125)
            .step_by(4)
            .find(|&at| {
                initrd[at..].starts_with(b"070701")
                    && initrd[at + 110..].starts_with(b"rootfs.squashfs")
            })
            .expect("an uncompressed archive with the squashfs")
    }

    #[test]
    fn init_is_compressed_and_the_squashfs_is_stored_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let ros = dir.path().join("ros");
        let squashfs = dir.path().join("rootfs.squashfs");
        let initrd = dir.path().join("initrd");
        // Compressible, like a program.
        std::fs::write(&ros, b"ros ".repeat(50_000)).unwrap();
        std::fs::write(&squashfs, b"hsqs and its compressed blocks").unwrap();
        write(&ros, &squashfs, &initrd).unwrap();

        let bytes = std::fs::read(&initrd).unwrap();
        assert!(
            bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
            "zstd magic first"
        );
        let split = second_archive(&bytes);
        assert!(split < 10_000, "ros compressed: {split} bytes");
        let stored = &bytes[split..];
        assert!(
            stored
                .windows(30)
                .any(|w| w == b"hsqs and its compressed blocks")
        );

        // The zstd tool, unlike the kernel, refuses the padding after the
        // frame: one of the last four lengths is the frame's own.
        let compressed = dir.path().join("init.cpio.zst");
        let cpio = (split - 3..=split)
            .rev()
            .find_map(|end| {
                std::fs::write(&compressed, &bytes[..end]).unwrap();
                let out = Command::new("zstd")
                    .args(["-d", "-q", "-c"])
                    .arg(&compressed)
                    .output()
                    .unwrap();
                out.status.success().then_some(out)
            })
            .expect("the first archive is one zstd frame");
        let text = String::from_utf8_lossy(&cpio.stdout);
        assert!(text.starts_with("070701"));
        for name in ["dev/console", "init", "TRAILER!!!"] {
            assert!(text.contains(name), "{name} in the first archive");
        }
        assert!(text.contains(&"ros ".repeat(1000)));
    }

    #[test]
    fn the_media_initrd_has_ros_and_the_image_id_but_not_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let ros = dir.path().join("ros");
        let squashfs = dir.path().join("rootfs.squashfs");
        let initrd = dir.path().join("initrd-media");
        std::fs::write(&ros, b"ros ".repeat(50_000)).unwrap();
        let mut image = b"hsqs".to_vec();
        image.extend((0..200u8).map(|n| n.wrapping_mul(7)));
        image.extend(b"the rest of the image");
        std::fs::write(&squashfs, &image).unwrap();
        write_media(&ros, &squashfs, &initrd).unwrap();

        // One zstd frame and up to 3 bytes of padding, which zstd refuses.
        let bytes = std::fs::read(&initrd).unwrap();
        let frame = dir.path().join("init.cpio.zst");
        let cpio = (bytes.len() - 3..=bytes.len())
            .rev()
            .find_map(|end| {
                std::fs::write(&frame, &bytes[..end]).unwrap();
                let out = Command::new("zstd")
                    .args(["-d", "-q", "-c"])
                    .arg(&frame)
                    .output()
                    .unwrap();
                out.status.success().then_some(out.stdout)
            })
            .expect("one zstd frame");
        let text = String::from_utf8_lossy(&cpio);
        assert!(text.contains("rootfs.squashfs.id"), "{text}");
        assert!(!text.contains("the rest of the image"));
        let at = cpio
            .windows(IMAGE_ID_LEN)
            .position(|w| w == &image[..IMAGE_ID_LEN])
            .expect("the image's first 96 bytes");
        assert!(at > 0);
        assert!(std::fs::metadata(&initrd).unwrap().len() < 10_000);

        std::fs::write(&squashfs, b"not squashfs at all, but long enough to have 96 bytes.............................................").unwrap();
        let err = write_media(&ros, &squashfs, &initrd).unwrap_err();
        assert!(err.to_string().contains("is not a squashfs image"), "{err}");
    }
}
