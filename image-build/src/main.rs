//! `image-build`: turns the workspace, the pinned kernel source and Debian
//! packages into the bootable image under `target/image/`.

// Shipped code returns errors instead of panicking (tests may: clippy.toml)
// and never truncates silently: locked in while this crate is clean.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

mod boot_loader;
mod build_log;
mod containerd;
mod crun;
mod debian;
mod disk_image;
mod dropbear;
mod epoch;
mod images;
mod initrd;
mod iso;
mod kernel;
mod lock;
mod report;
mod rootfs;
mod tree;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Where the image parts are written.
    #[arg(long, default_value = "target/image")]
    out: PathBuf,
    /// Where slow, reusable work (kernel builds, downloaded packages) is kept.
    /// Defaults to $ROS_CACHE_DIR, else ~/.cache/ros-build.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// What to build; everything when left out.
    #[command(subcommand)]
    step: Option<Step>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum Step {
    /// The kernel from kernel-config/ (cached by the hash of its inputs).
    Kernel,
    /// `ros`, static for musl, in release mode.
    Ros,
    /// The root file system from Debian packages, as rootfs.squashfs.
    Rootfs,
    /// The initrds from `ros` and rootfs.squashfs (built before): `initrd`
    /// holding both, and `initrd-media` for the ISO and disks.
    Initrd,
    /// The hybrid ISO from vmlinuz, initrd-media and rootfs.squashfs.
    Iso,
    /// ros-ec2.raw, the EC2 disk image, from vmlinuz, the initrd and
    /// GRUB's disk loaders (built before).
    Ec2,
    /// Every step, then size-report.txt.
    All,
    /// Pins the Debian packages (and the kernel source) the image is built
    /// from at the versions apt offers now, in image-build/debian.lock.
    Lock,
}

/// The musl target `ros` is built for: one static binary, no libc needed.
const ROS_TARGET: &str = "x86_64-unknown-linux-musl";

/// The directories every build step works with.
#[derive(Debug, Clone)]
pub struct BuildDirs {
    /// The workspace root (holds `kernel-config/`).
    pub workspace: PathBuf,
    /// Output directory for the image parts.
    pub out: PathBuf,
    /// Cache directory shared between builds.
    pub cache: PathBuf,
}

impl BuildDirs {
    fn new(out: PathBuf, cache: Option<PathBuf>) -> anyhow::Result<Self> {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("image-build sits inside the workspace")?
            .to_path_buf();
        let cache = match cache.or_else(|| std::env::var_os("ROS_CACHE_DIR").map(PathBuf::from)) {
            Some(dir) => dir,
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/ros-build"),
        };
        let out = if out.is_absolute() {
            out
        } else {
            workspace.join(out)
        };
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
        Ok(Self {
            workspace,
            out,
            cache,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dirs = BuildDirs::new(cli.out, cli.cache)?;
    match cli.step.unwrap_or(Step::All) {
        Step::All => {
            for step in [
                Step::Kernel,
                Step::Ros,
                Step::Rootfs,
                Step::Initrd,
                Step::Iso,
                Step::Ec2,
            ] {
                run_step(&dirs, step)?;
            }
        }
        Step::Lock => lock::update(&dirs)?,
        step => run_step(&dirs, step)?,
    }
    Ok(())
}

fn run_step(dirs: &BuildDirs, step: Step) -> anyhow::Result<()> {
    let started = Instant::now();
    let out = |name: &str| dirs.out.join(name);
    match step {
        Step::Kernel => {
            kernel::build(dirs)?;
        }
        Step::Ros => build_ros(dirs)?,
        Step::Rootfs => {
            let tree = rootfs::assemble(dirs)?;
            rootfs::squash(&tree, &out("rootfs.squashfs"))?;
        }
        Step::Initrd => {
            initrd::write(&out("ros"), &out("rootfs.squashfs"), &out("initrd"))?;
            initrd::write_media(
                &out("ros"),
                &out("rootfs.squashfs"),
                &out(initrd::MEDIA_INITRD),
            )?;
        }
        Step::Iso => {
            iso::write(
                &out("vmlinuz"),
                &out(initrd::MEDIA_INITRD),
                &out("rootfs.squashfs"),
                &dirs.cache,
                &out("iso-root"),
                &out("ros.iso"),
            )?;
            let files = tree::Tree::open(&out("rootfs"))?.files_by_size()?;
            let parts = [
                "vmlinuz",
                "ros",
                "rootfs.squashfs",
                "initrd",
                initrd::MEDIA_INITRD,
                "ros.iso",
            ]
            .map(|name| (name, out(name)));
            let parts: Vec<(&str, &Path)> = parts
                .iter()
                .map(|(name, path)| (*name, path.as_path()))
                .collect();
            let text = report::write(&parts, &files, &out("size-report.txt"))?;
            print!("{text}");
            report::check_iso_size(std::fs::metadata(out("ros.iso"))?.len(), &text)?;
        }
        Step::Ec2 => {
            let image = disk_image::build(dirs)?;
            let line = report::append_disk_image(
                &out("size-report.txt"),
                disk_image::IMAGE_NAME,
                image.apparent,
                image.allocated,
            )?;
            print!("{line}");
        }
        Step::All | Step::Lock => unreachable!("run by main"),
    }
    eprintln!(
        "image-build: {step:?} done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo build` of `ros` and the console's `sudo` for musl; the
/// binaries are copied to `out/ros` and `out/sudo`.
fn build_ros(dirs: &BuildDirs) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    debian::run(
        Command::new(cargo)
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "ros",
                "-p",
                "sudo",
                "--target",
                ROS_TARGET,
            ])
            .current_dir(&dirs.workspace),
    )
    .with_context(|| format!("building ros (rustup target add {ROS_TARGET})"))?;
    for binary in ["ros", "sudo"] {
        let built = dirs
            .workspace
            .join("target")
            .join(ROS_TARGET)
            .join("release")
            .join(binary);
        std::fs::copy(&built, dirs.out.join(binary))
            .with_context(|| format!("copying {}", built.display()))?;
    }
    Ok(())
}
