//! cpio archives in the kernel's "newc" format, as the initrd's two parts
//! (see `initrd`) and the test initrds are made of.

use std::io::{self, Write};

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    Dir {
        path: &'a str,
        mode: u32,
    },
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    CharDevice {
        path: &'a str,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// Writes `entries` and the trailer. Every entry is owned by root, dated
/// at 0, so the same inputs give the same bytes.
pub fn write_archive(out: &mut impl Write, entries: &[Entry<'_>]) -> io::Result<()> {
    let mut offset = 0u64;
    for (index, entry) in entries.iter().enumerate() {
        let ino = u32::try_from(index + 1).map_err(io::Error::other)?;
        let (path, mode, data, rdev) = match *entry {
            Entry::Dir { path, mode } => (path, S_IFDIR | mode, &[][..], (0, 0)),
            Entry::File { path, mode, data } => (path, S_IFREG | mode, data, (0, 0)),
            Entry::CharDevice {
                path,
                mode,
                major,
                minor,
            } => (path, S_IFCHR | mode, &[][..], (major, minor)),
        };
        offset += write_entry(out, ino, path, mode, data, rdev)?;
    }
    offset += write_entry(out, 0, "TRAILER!!!", 0, &[], (0, 0))?;
    // The kernel does not need it, but tools like an archive padded to 512.
    let pad = (512 - offset % 512) % 512;
    out.write_all(&vec![0; usize::try_from(pad).map_err(io::Error::other)?])
}

fn write_entry(
    out: &mut impl Write,
    ino: u32,
    path: &str,
    mode: u32,
    data: &[u8],
    (rdev_major, rdev_minor): (u32, u32),
) -> io::Result<u64> {
    let name_len = path.len() + 1; // with its NUL
    let file_size =
        u32::try_from(data.len()).map_err(|_| io::Error::other(format!("{path} is over 4 GiB")))?;
    let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
    let header = format!(
        "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{file_size:08x}\
         {dev_major:08x}{dev_minor:08x}{rdev_major:08x}{rdev_minor:08x}{name_len:08x}{check:08x}",
        uid = 0,
        gid = 0,
        mtime = 0,
        dev_major = 0,
        dev_minor = 0,
        check = 0,
    );
    out.write_all(header.as_bytes())?;
    out.write_all(path.as_bytes())?;
    out.write_all(&[0])?;
    let header_and_name = header.len() + name_len;
    let name_pad = (4 - header_and_name % 4) % 4;
    out.write_all(&[0; 3][..name_pad])?;
    out.write_all(data)?;
    let data_pad = (4 - data.len() % 4) % 4;
    out.write_all(&[0; 3][..data_pad])?;
    Ok((header_and_name + name_pad + data.len() + data_pad) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn archive() -> Vec<u8> {
        let mut out = Vec::new();
        write_archive(
            &mut out,
            &[
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
                Entry::File {
                    path: "init",
                    mode: 0o755,
                    data: b"#!/bin/sh\n",
                },
                Entry::File {
                    path: "odd",
                    mode: 0o644,
                    data: b"abcde",
                },
            ],
        )
        .unwrap();
        out
    }

    #[test]
    fn entries_are_aligned_and_the_archive_is_padded() {
        let out = archive();
        assert_eq!(out.len() % 512, 0);
        assert!(out.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("TRAILER!!!"));
        // Each header starts on a 4-byte boundary.
        for (at, _) in text.match_indices("070701") {
            assert_eq!(at % 4, 0);
        }
    }

    #[test]
    fn the_cpio_tool_reads_it_back() {
        let Ok(mut cpio) = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            panic!("the cpio tool is needed (apt-get install cpio)");
        };
        cpio.stdin.take().unwrap().write_all(&archive()).unwrap();
        let listing = String::from_utf8(cpio.wait_with_output().unwrap().stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 4, "{listing}");
        assert!(
            lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" dev"),
            "{listing}"
        );
        assert!(
            lines[1].starts_with("crw-------")
                && lines[1].contains("5,")
                && lines[1].ends_with("dev/console")
        );
        assert!(
            lines[2].starts_with("-rwxr-xr-x")
                && lines[2].contains(" 10 ")
                && lines[2].ends_with(" init")
        );
        assert!(lines[3].starts_with("-rw-r--r--") && lines[3].ends_with(" odd"));
    }
}
