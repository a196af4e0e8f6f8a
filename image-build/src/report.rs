//! `size-report.txt`: what the image weighs, part by part, and which files
//! in the root file system weigh most.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How many of the largest files are listed.
const LARGEST: usize = 20;

/// The mission's limit for `ros.iso`: the build fails at it.
pub const ISO_LIMIT: u64 = 30_000_000;

/// Fails when the ISO of `iso_size` bytes reaches [`ISO_LIMIT`], with the
/// size report, which names the largest parts and files.
pub fn check_iso_size(iso_size: u64, report: &str) -> anyhow::Result<()> {
    if iso_size >= ISO_LIMIT {
        anyhow::bail!(
            "ros.iso is {iso_size} bytes, at or past the limit of {ISO_LIMIT}: cut size first\n{report}"
        );
    }
    Ok(())
}

pub fn write(
    parts: &[(&str, &Path)],
    files: &[(u64, PathBuf)],
    out: &Path,
) -> anyhow::Result<String> {
    let mut text = String::from("part                     bytes        MiB\n");
    for (name, path) in parts {
        let size = std::fs::metadata(path)?.len();
        writeln!(text, "{name:<18} {size:>12} {:>10.2}", mib(size))?;
    }
    let total: u64 = files.iter().map(|(size, _)| size).sum();
    writeln!(
        text,
        "\nroot file system: {} files, {total} bytes ({:.2} MiB) before compression\n\nlargest files (uncompressed):",
        files.len(),
        mib(total)
    )?;
    for (size, path) in files.iter().take(LARGEST) {
        writeln!(text, "{size:>12}  {}", path.display())?;
    }
    std::fs::write(out, &text)?;
    Ok(text)
}

/// Adds the EC2 disk image to the report at `out`: its length and what it
/// takes on disk (it is sparse), the state partition's share.
pub fn append_disk_image(
    out: &Path,
    name: &str,
    apparent: u64,
    allocated: u64,
) -> anyhow::Result<String> {
    let line = format!(
        "\n{name}: {apparent} bytes ({:.2} MiB), {allocated} allocated ({:.2} MiB, sparse)\n",
        mib(apparent),
        mib(allocated)
    );
    let mut text = std::fs::read_to_string(out).unwrap_or_default();
    text.push_str(&line);
    std::fs::write(out, &text)?;
    Ok(line)
}

fn mib(bytes: u64) -> f64 {
    // Sizes of an image are far below 2^52: exact in f64.
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iso_at_the_limit_fails_the_build_naming_the_sizes() {
        check_iso_size(ISO_LIMIT - 1, "report").unwrap();
        let error = check_iso_size(ISO_LIMIT, "largest: containerd").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("30000000") && text.contains("largest: containerd"),
            "{text}"
        );
    }

    #[test]
    fn the_disk_image_line_gives_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("size-report.txt");
        std::fs::write(&report, "part\n").unwrap();
        let line = append_disk_image(&report, "ros-ec2.raw", 3 << 20, 1 << 20).unwrap();
        assert_eq!(
            line,
            "\nros-ec2.raw: 3145728 bytes (3.00 MiB), 1048576 allocated (1.00 MiB, sparse)\n"
        );
        assert_eq!(
            std::fs::read_to_string(&report).unwrap(),
            format!("part\n{line}")
        );
    }

    #[test]
    fn lists_parts_then_the_largest_files() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("vmlinuz");
        std::fs::write(&part, vec![0; 2048]).unwrap();
        let files: Vec<(u64, PathBuf)> = (0..30)
            .rev()
            .map(|i| (i * 10, PathBuf::from(format!("/f{i}"))))
            .collect();
        let text = write(&[("vmlinuz", &part)], &files, &dir.path().join("r.txt")).unwrap();
        assert!(
            text.contains("vmlinuz                    2048       0.00"),
            "{text}"
        );
        assert!(text.contains("30 files, 4350 bytes"), "{text}");
        assert!(text.contains("         290  /f29"));
        assert!(!text.contains("/f9\n"), "only the 20 largest: {text}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("r.txt")).unwrap(),
            text
        );
    }
}
