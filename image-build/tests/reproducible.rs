//! The same commit builds the same ISO: the root file system, the initrd
//! and the ISO are built a second time, into a directory of their own,
//! from the inputs of the image under test (`$ROS_IMAGE_DIR`, else
//! `target/image/`: its `ros`, `sudo` and `vmlinuz`, the pinned Debian
//! packages, the cached containerd), and every part must come out with
//! the same sha256.
//!
//! It takes minutes (the root file system is assembled and compressed
//! again), so `cargo test` leaves it out; `./dev test` (and so CI) runs it
//! right after building the image, when that image is surely from this
//! tree: `cargo test -p image-build --test reproducible -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Built by the steps this test repeats, compared byte for byte.
const REBUILT: &[&str] = &["rootfs.squashfs", "initrd", "ros.iso"];

/// Built by the steps before (`ros`, `kernel`), taken as they are.
const INPUTS: &[&str] = &["ros", "sudo", "vmlinuz"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn image_dir() -> PathBuf {
    std::env::var_os("ROS_IMAGE_DIR")
        .map_or_else(|| workspace().join("target/image"), PathBuf::from)
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
#[ignore = "rebuilds the image (minutes): ./dev test runs it after the build"]
fn a_second_build_from_the_same_inputs_gives_the_same_iso() {
    let first = image_dir();
    for part in INPUTS.iter().chain(REBUILT) {
        assert!(
            first.join(part).is_file(),
            "{} is missing: build the image first (./dev build)",
            first.join(part).display()
        );
    }
    let second = tempfile::Builder::new()
        .prefix("image-repro-")
        .tempdir_in(workspace().join("target"))
        .unwrap();
    for part in INPUTS {
        std::fs::copy(first.join(part), second.path().join(part)).unwrap();
    }
    for step in ["rootfs", "initrd", "iso"] {
        let status = Command::new(env!("CARGO_BIN_EXE_image-build"))
            .arg("--out")
            .arg(second.path())
            .arg(step)
            .current_dir(workspace())
            .status()
            .unwrap();
        assert!(status.success(), "image-build {step} failed ({status})");
    }
    let differ: Vec<String> = REBUILT
        .iter()
        .filter_map(|part| {
            let (a, b) = (sha256(&first.join(part)), sha256(&second.path().join(part)));
            (a != b).then(|| format!("{part}: {a} vs {b}"))
        })
        .collect();
    if !differ.is_empty() {
        // Kept, to compare (unsquashfs -lls, cmp -l, diffoscope).
        let kept = second.keep();
        panic!(
            "two builds of the same inputs differ ({} vs {}; is {} from this tree?):\n{}",
            first.display(),
            kept.display(),
            first.display(),
            differ.join("\n")
        );
    }
    eprintln!("ros.iso {} both times", sha256(&first.join("ros.iso")));
}
