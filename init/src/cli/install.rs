//! `ros install -d DEVICE`: puts the system on a disk (see
//! [`crate::install`] for the steps and what is refused).
//!
//! It runs in the console, as root, and first joins PID 1's mount
//! namespace (as `nsenter -t 1 -m` would): there are the host's `/dev`,
//! its mounts (to refuse a disk in use), `mke2fs` and GRUB's loaders. The
//! kernel and initrd come from the ISO (label `ROS`, mounted read-only for
//! the copy) or, on an installed machine, from its state partition.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use disk_layout::state_files;
use os_config::datasource::block::{Mounter, SysBlockDevices, SystemMounter, find_by_label};

use crate::host::Shutdown;
use crate::install::{InstallError, Installer, Loaders, RealMounts, System, inspect, refusal};
use crate::supervise::shutdown::signal_for;

/// `ros install …`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The whole disk to install to, erasing it (`/dev/vda`, `/dev/sda`, `/dev/nvme0n1`).
    #[arg(short = 'd', long = "device", value_name = "DEVICE")]
    device: PathBuf,
    /// A cloud-config saved as the installed machine's cloud-config.yml
    /// (checked first: a bad file stops the install before anything is written).
    #[arg(short = 'c', long = "cloud-config", value_name = "FILE")]
    cloud_config: Option<PathBuf>,
    /// Kernel arguments added to the installed boot entry.
    #[arg(
        short = 'a',
        long = "append",
        value_name = "ARGS",
        allow_hyphen_values = true
    )]
    append: Option<String>,
    /// Install over a disk that is not blank (it never installs to a
    /// mounted disk or the boot medium).
    #[arg(short = 'f', long = "force")]
    force: bool,
    /// Stay up after installing instead of rebooting.
    #[arg(long = "no-reboot")]
    no_reboot: bool,
}

/// Where the ISO is mounted, and the new state partition, during the install.
const MEDIA_MOUNT: &str = "/run/ros/install/media";
const TARGET_MOUNT: &str = "/run/ros/install/state";
/// An installed machine's state partition, where its kernel and initrd are.
const RUNNING_STATE: &str = "/run/ros/state";

/// Runs `ros install`.
pub fn run(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // The cloud-config first: a bad one stops everything, nothing written.
    let cloud_config = match &args.cloud_config {
        Some(path) => Some(check_cloud_config(path)?),
        None => None,
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "installing needs root: sudo ros install -d {}",
            args.device.display()
        );
    }
    enter_host_mounts()?;

    let system = System::real();
    let media = BootFiles::find(&system)?;
    let facts = inspect(&system, &args.device, media.disk.as_deref())?;
    if let Some(reason) = refusal(&facts, args.force) {
        return Err(InstallError::Refused {
            disk: args.device.clone(),
            reason,
        }
        .into());
    }
    let cmdline = match args.append.as_deref().map(str::trim) {
        Some(extra) if !extra.is_empty() => format!("{} {extra}", state_files::CONSOLES),
        _ => state_files::CONSOLES.to_owned(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "ros install: installing to {} ({:.2} GiB), erasing it; kernel and initrd from {}",
        args.device.display(),
        facts.size as f64 / f64::from(1u32 << 30),
        media.from
    )?;
    let installer = Installer {
        disk: PathBuf::from("/dev").join(&facts.name),
        size: facts.size,
        vmlinuz: media.dir.join(state_files::VMLINUZ),
        initrd: media.dir.join(state_files::INITRD),
        loaders: Loaders::in_dir(Path::new(crate::install::LOADERS_DIR)),
        cmdline,
        cloud_config,
        mke2fs: PathBuf::from("/sbin/mke2fs"),
        mount_dir: PathBuf::from(TARGET_MOUNT),
        partition: None,
    };
    installer.run(&RealMounts, &mut out)?;
    // The ISO is unmounted before the reboot.
    drop(media);
    writeln!(
        out,
        "ros install: done in {:.1} s",
        started.elapsed().as_secs_f64()
    )?;
    if args.no_reboot {
        writeln!(
            out,
            "ros install: reboot to start the installed system (remove the installation medium)"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "ros install: rebooting; remove the installation medium"
    )?;
    out.flush()?;
    let signal = signal_for(Shutdown::Reboot);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), signal)
        .with_context(|| format!("asking PID 1 to reboot ({signal})"))?;
    Ok(ExitCode::SUCCESS)
}

/// Reads and checks the cloud-config; every problem names the file, and
/// the line and key the checker found.
fn check_cloud_config(path: &Path) -> anyhow::Result<serde_norway::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match os_config::check_document(&text) {
        Ok(checked) => {
            for warning in &checked.warnings {
                eprintln!("ros install: warning: {}: {warning}", path.display());
            }
            Ok(checked.value)
        }
        Err(errors) => {
            let listed: Vec<String> = errors
                .0
                .iter()
                .map(|error| format!("  {}: {error}", path.display()))
                .collect();
            bail!(
                "{} is not a valid cloud-config; nothing was written:\n{}",
                path.display(),
                listed.join("\n")
            )
        }
    }
}

/// Joins PID 1's mount namespace, unless already in it. Only a
/// single-threaded process may; the CLI is one.
fn enter_host_mounts() -> anyhow::Result<()> {
    let ours = std::fs::read_link("/proc/self/ns/mnt").context("reading /proc/self/ns/mnt")?;
    let init = std::fs::read_link("/proc/1/ns/mnt").context("reading /proc/1/ns/mnt")?;
    if ours == init {
        return Ok(());
    }
    let ns = std::fs::File::open("/proc/1/ns/mnt").context("opening /proc/1/ns/mnt")?;
    // SAFETY: setns takes an open namespace fd and a flag; it changes only
    // this (single-threaded) process's view of the mounts.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .context("joining PID 1's mount namespace (setns)");
    }
    std::env::set_current_dir("/").context("chdir /")?;
    Ok(())
}

/// Where the kernel and initrd are copied from.
struct BootFiles {
    /// A directory with `boot/vmlinuz` and `boot/initrd`.
    dir: PathBuf,
    /// In words, for the progress line.
    from: String,
    /// The disk it is on (`sr0`), never to be installed over.
    disk: Option<String>,
    /// The ISO was mounted here for the copy.
    mounted: bool,
}

impl BootFiles {
    /// The ISO (label `ROS`), else the running state partition.
    fn find(system: &System) -> anyhow::Result<Self> {
        let devices = SysBlockDevices::default();
        if let Some((device, fs)) =
            find_by_label(&devices, crate::install::MEDIA_LABEL).context("listing block devices")?
        {
            let target = Path::new(MEDIA_MOUNT);
            std::fs::create_dir_all(target).with_context(|| format!("creating {MEDIA_MOUNT}"))?;
            SystemMounter
                .mount_read_only(&device, target, fs)
                .with_context(|| format!("mounting {} at {MEDIA_MOUNT}", device.display()))?;
            let name = device
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(Self {
                dir: target.to_path_buf(),
                from: device.display().to_string(),
                disk: Some(system.disk_of(&name)),
                mounted: true,
            });
        }
        let state = Path::new(RUNNING_STATE);
        if state.join(state_files::VMLINUZ).is_file() {
            return Ok(Self {
                dir: state.to_path_buf(),
                from: "this machine's state partition".into(),
                disk: None,
                mounted: false,
            });
        }
        bail!(
            "no kernel and initrd to install: no medium labelled {} (the ISO) is attached, and {RUNNING_STATE} has no {}",
            crate::install::MEDIA_LABEL,
            state_files::VMLINUZ
        )
    }
}

/// The ISO is unmounted however the install ends: refused, failed or done.
impl Drop for BootFiles {
    fn drop(&mut self) {
        if self.mounted
            && let Err(error) = SystemMounter.unmount(&self.dir)
        {
            eprintln!("ros install: unmounting {}: {error}", self.dir.display());
        }
    }
}
