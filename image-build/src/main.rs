//! `image-build`: turns the workspace, the pinned kernel source and Debian
//! packages into the bootable image under `target/image/`.

mod kernel;

use std::path::PathBuf;

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
    #[command(subcommand)]
    step: Step,
}

#[derive(Debug, Subcommand)]
enum Step {
    /// Build the kernel from kernel-config/ (cached by the hash of its inputs).
    Kernel,
}

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
    match cli.step {
        Step::Kernel => {
            let image = kernel::build(&dirs)?;
            println!("{}", image.display());
        }
    }
    Ok(())
}
