//! `ros install`: the steps that put the system on a disk.
//!
//! [`inspect`] reads what the kernel says of the target (sysfs, the mount
//! tables, the first MiB) into a [`DiskFacts`]; [`refusal`] decides, as a
//! pure function, whether to go on: a partition, a read-only or
//! non-512-byte-sector disk, a mounted disk or the boot medium are refused
//! always, a disk that is not blank unless forced. [`Installer::run`] then
//! writes the layout of disk-layout (GRUB's boot code, core.img and the
//! EFI system partition image raw), makes the state file system with
//! `mke2fs`, mounts it, copies the kernel, the initrd and the root image
//! beside it (when the medium has one) with percent lines,
//! writes `grub.cfg` and the cloud-config, and syncs. The CLI
//! (`cli/install.rs`) runs it in PID 1's mount namespace, where the host's
//! `/dev`, `mke2fs` and the loaders are.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use disk_layout::{
    BIOS_BOOT_FIRST, BIOS_BOOT_LAST, BOOT_CODE_LEN, ESP_FIRST, Guid, SECTOR, STATE_NAME,
    STATE_NUMBER, ros_layout, state_files,
};
use os_config::datasource::label::{ext_uuid, filesystem_label};

/// Where the loaders are in the root image.
pub const LOADERS_DIR: &str = "/usr/lib/ros/boot";
/// The label of the ISO the kernel and initrd are copied from.
pub const MEDIA_LABEL: &str = "ROS";
/// The root image's file name, beside the initrd.
const ROOTFS_NAME: &str = "rootfs.squashfs";
/// How much of the disk's start [`inspect`] reads, and the installer
/// clears at both ends: every table and file system signature is there.
const EDGE: u64 = 1 << 20;

/// What failed, naming the device or file.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a block device", .0.display())]
    NotABlockDevice(PathBuf),
    #[error("{}: {reason}", disk.display())]
    Refused { disk: PathBuf, reason: Refusal },
    #[error("partition table on {}: {source}", disk.display())]
    Table {
        disk: PathBuf,
        #[source]
        source: disk_layout::GptError,
    },
    #[error("{} is {len} bytes; {what} holds {room}", path.display())]
    TooLarge {
        path: PathBuf,
        len: u64,
        what: &'static str,
        room: u64,
    },
    #[error("{} did not appear after the partition table was re-read", .0.display())]
    NoPartition(PathBuf),
    #[error("{command}: {message}")]
    Command { command: String, message: String },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why a disk is not installed to. The first group stands even with
/// `--force`: writing there would destroy the running system or what it
/// booted from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("is a partition; give the whole disk ({0})")]
    Partition(String),
    #[error("is read-only")]
    ReadOnly,
    #[error("has {0}-byte logical sectors; only 512-byte sectors are supported")]
    SectorSize(u64),
    #[error("is in use: {0} is mounted (-f does not change this; unmount it first)")]
    Mounted(String),
    #[error("is the medium this system booted from (-f does not change this)")]
    BootMedium,
    #[error("is not blank: {0}; -f installs over it, erasing everything on it")]
    NotBlank(String),
}

/// What the kernel says of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskFacts {
    /// `vda`.
    pub name: String,
    /// Bytes.
    pub size: u64,
    pub read_only: bool,
    pub logical_sector: u64,
    /// The whole disk, when this is a partition.
    pub parent: Option<String>,
    /// The disk's partitions the kernel knows (`vda1`…).
    pub partitions: Vec<String>,
    /// The disk or its partitions that are mounted (here or in PID 1's
    /// namespace), by name.
    pub mounted: Vec<String>,
    /// The disk holds the boot medium.
    pub boot_medium: bool,
    /// The first MiB, or what there is of it.
    pub head: Vec<u8>,
}

/// Whether to write to the disk, and if not why.
pub fn refusal(facts: &DiskFacts, force: bool) -> Option<Refusal> {
    if let Some(parent) = &facts.parent {
        return Some(Refusal::Partition(format!("/dev/{parent}")));
    }
    if facts.read_only {
        return Some(Refusal::ReadOnly);
    }
    if facts.logical_sector != SECTOR {
        return Some(Refusal::SectorSize(facts.logical_sector));
    }
    if let Some(mounted) = facts.mounted.first() {
        return Some(Refusal::Mounted(format!("/dev/{mounted}")));
    }
    if facts.boot_medium {
        return Some(Refusal::BootMedium);
    }
    if force {
        return None;
    }
    not_blank(&facts.head, &facts.partitions).map(Refusal::NotBlank)
}

/// What makes a disk not blank, in words: a partition table, a file
/// system, or any data in its first MiB.
pub fn not_blank(head: &[u8], partitions: &[String]) -> Option<String> {
    if head.get(512..520) == Some(b"EFI PART") {
        return Some("it has a GPT partition table".into());
    }
    if let Some((fs, label)) = filesystem_label(head) {
        return Some(format!(
            "it has a file system ({}) labelled {label}",
            fs.mount_name()
        ));
    }
    if ext_uuid(head).is_some() {
        return Some("it has an ext file system".into());
    }
    if head.get(510..512) == Some(&[0x55, 0xAA]) {
        return Some("it has an MBR partition table or boot sector".into());
    }
    if !partitions.is_empty() {
        return Some(format!("it has partitions {}", partitions.join(", ")));
    }
    if head.iter().any(|&b| b != 0) {
        return Some("its first MiB holds data".into());
    }
    None
}

/// Where to look: `/sys/class/block`, `/dev` and the mount tables.
#[derive(Debug, Clone)]
pub struct System {
    pub sys_class_block: PathBuf,
    pub dev: PathBuf,
    /// Mount tables (`/proc/self/mountinfo`, PID 1's).
    pub mountinfo: Vec<PathBuf>,
}

impl System {
    pub fn real() -> Self {
        Self {
            sys_class_block: PathBuf::from("/sys/class/block"),
            dev: PathBuf::from("/dev"),
            mountinfo: vec![
                PathBuf::from("/proc/self/mountinfo"),
                PathBuf::from("/proc/1/mountinfo"),
            ],
        }
    }

    fn read(&self, name: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.sys_class_block.join(name).join(file))
            .ok()
            .map(|text| text.trim().to_owned())
    }

    /// The whole disk a block device (`vda3`, `sr0`) belongs to.
    pub fn disk_of(&self, name: &str) -> String {
        if self.read(name, "partition").is_some()
            && let Ok(target) = std::fs::canonicalize(self.sys_class_block.join(name))
            && let Some(parent) = target.parent().and_then(Path::file_name)
        {
            return parent.to_string_lossy().into_owned();
        }
        name.to_owned()
    }
}

/// The device numbers (`major:minor`) mounted, from mountinfo text.
pub fn mounted_numbers(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(2).map(str::to_owned))
        .collect()
}

/// Reads the facts of `disk` (a `/dev` path); `boot_medium` is the name of
/// the disk the system booted from, when known.
pub fn inspect(
    system: &System,
    disk: &Path,
    boot_medium: Option<&str>,
) -> Result<DiskFacts, InstallError> {
    use std::os::unix::fs::FileTypeExt;
    let real = std::fs::canonicalize(disk).map_err(io_at(disk))?;
    let meta = std::fs::metadata(&real).map_err(io_at(&real))?;
    if !meta.file_type().is_block_device() {
        return Err(InstallError::NotABlockDevice(disk.to_path_buf()));
    }
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = (system.read(&name, "partition").is_some()).then(|| system.disk_of(&name));
    let number = |n: &str| system.read(n, "dev").unwrap_or_default();
    let partitions: Vec<String> = std::fs::read_dir(system.sys_class_block.join(&name))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|child| {
                    system.read(child, "partition").is_some() && child.starts_with(&name)
                })
                .collect()
        })
        .unwrap_or_default();
    let mounted_devs: Vec<String> = system
        .mountinfo
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| mounted_numbers(&text))
        .collect();
    let mut mounted: Vec<String> = std::iter::once(name.clone())
        .chain(partitions.iter().cloned())
        .filter(|n| {
            let dev = number(n);
            !dev.is_empty() && mounted_devs.contains(&dev)
        })
        .collect();
    mounted.sort();
    let sectors: u64 = system
        .read(&name, "size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut head = Vec::new();
    File::open(&real)
        .and_then(|file| file.take(EDGE).read_to_end(&mut head))
        .map_err(io_at(&real))?;
    let mut partitions = partitions;
    partitions.sort();
    Ok(DiskFacts {
        boot_medium: boot_medium == Some(name.as_str()),
        size: sectors * 512,
        read_only: system.read(&name, "ro").as_deref() == Some("1"),
        logical_sector: system
            .read(&name, "queue/logical_block_size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(SECTOR),
        name,
        parent,
        partitions,
        mounted,
        head,
    })
}

/// `/dev/vda` → `/dev/vda3`; `/dev/nvme0n1` → `/dev/nvme0n1p3`.
pub fn partition_path(disk: &Path, number: u32) -> PathBuf {
    let text = disk.display().to_string();
    if text.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{text}p{number}"))
    } else {
        PathBuf::from(format!("{text}{number}"))
    }
}

/// GRUB's parts for a disk.
#[derive(Debug, Clone)]
pub struct Loaders {
    pub boot_img: PathBuf,
    pub core_img: PathBuf,
    pub esp_img: PathBuf,
}

impl Loaders {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            boot_img: dir.join("boot.img"),
            core_img: dir.join("core.img"),
            esp_img: dir.join("esp.img"),
        }
    }
}

/// Mounting the new state partition; the real one is mount(2).
pub trait Mounts {
    fn mount(&self, device: &Path, target: &Path) -> io::Result<()>;
    fn unmount(&self, target: &Path) -> io::Result<()>;
}

/// mount(2) and umount(2), ext4.
#[derive(Debug, Default)]
pub struct RealMounts;

impl Mounts for RealMounts {
    fn mount(&self, device: &Path, target: &Path) -> io::Result<()> {
        nix::mount::mount(
            Some(device),
            target,
            Some("ext4"),
            nix::mount::MsFlags::MS_NOATIME,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        nix::mount::umount(target).map_err(io::Error::from)
    }
}

/// One install, fully described.
#[derive(Debug, Clone)]
pub struct Installer {
    /// The whole disk, `/dev/vda`.
    pub disk: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub loaders: Loaders,
    /// The kernel command line in grub.cfg.
    pub cmdline: String,
    /// The checked cloud-config to save, as YAML.
    pub cloud_config: Option<serde_norway::Value>,
    /// `mke2fs`.
    pub mke2fs: PathBuf,
    /// Where the new state partition is mounted while files are copied.
    pub mount_dir: PathBuf,
    /// The state partition's device, when the caller provides it (a loop
    /// device over the partition's bytes, in tests); else the kernel
    /// re-reads the new table and it is [`partition_path`] of the disk.
    pub partition: Option<PathBuf>,
}

impl Installer {
    /// Writes the disk. Progress goes to `out`, one line per step and per
    /// 10 % copied.
    pub fn run(&self, mounts: &dyn Mounts, out: &mut dyn Write) -> Result<(), InstallError> {
        let say = |out: &mut dyn Write, line: &str| {
            let _ = writeln!(out, "ros install: {line}");
            let _ = out.flush();
        };
        let boot_img =
            std::fs::read(&self.loaders.boot_img).map_err(io_at(&self.loaders.boot_img))?;
        let core_img =
            std::fs::read(&self.loaders.core_img).map_err(io_at(&self.loaders.core_img))?;
        let esp_img = std::fs::read(&self.loaders.esp_img).map_err(io_at(&self.loaders.esp_img))?;
        if boot_img.len() < BOOT_CODE_LEN {
            return Err(InstallError::TooLarge {
                path: self.loaders.boot_img.clone(),
                len: boot_img.len() as u64,
                what: "(too short) the MBR boot code",
                room: BOOT_CODE_LEN as u64,
            });
        }
        let room = (BIOS_BOOT_LAST + 1 - BIOS_BOOT_FIRST) * SECTOR;
        if core_img.len() as u64 > room {
            return Err(InstallError::TooLarge {
                path: self.loaders.core_img.clone(),
                len: core_img.len() as u64,
                what: "the BIOS boot partition",
                room,
            });
        }
        let table = |source| InstallError::Table {
            disk: self.disk.clone(),
            source,
        };
        let mut guid_error = None;
        let gpt = ros_layout(self.size, esp_img.len() as u64, || {
            Guid::random().unwrap_or_else(|e| {
                guid_error = Some(e);
                Guid::ZERO
            })
        })
        .map_err(table)?;
        if let Some(error) = guid_error {
            return Err(io_at(Path::new("/dev/urandom"))(error));
        }

        say(
            out,
            &format!(
                "writing the partition table and boot loader to {}",
                self.disk.display()
            ),
        );
        {
            // Exclusive: the kernel refuses when anything holds the disk.
            let mut disk = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_EXCL)
                .open(&self.disk)
                .map_err(io_at(&self.disk))?;
            #[allow(clippy::cast_possible_truncation)] // EDGE is 1 MiB: fits any usize.
            let zeros = vec![0u8; EDGE as usize];
            // Old tables and signatures at both ends go first.
            for at in [0, self.size.saturating_sub(EDGE)] {
                disk.seek(SeekFrom::Start(at))
                    .and_then(|_| disk.write_all(&zeros))
                    .map_err(io_at(&self.disk))?;
            }
            disk_layout::write(&mut disk, &gpt, &boot_img[..BOOT_CODE_LEN]).map_err(table)?;
            for (lba, bytes) in [(BIOS_BOOT_FIRST, &core_img), (ESP_FIRST, &esp_img)] {
                disk.seek(SeekFrom::Start(lba * SECTOR))
                    .and_then(|_| disk.write_all(bytes))
                    .map_err(io_at(&self.disk))?;
            }
            disk.sync_all().map_err(io_at(&self.disk))?;
            // A partition named by the caller is there already.
            if self.partition.is_none() {
                reread_partitions(&disk).map_err(io_at(&self.disk))?;
            }
        }
        let partition = self
            .partition
            .clone()
            .unwrap_or_else(|| partition_path(&self.disk, STATE_NUMBER));
        wait_for(&partition)?;

        say(
            out,
            &format!(
                "making the ext4 file system {STATE_NAME} on {}",
                partition.display()
            ),
        );
        run(Command::new(&self.mke2fs)
            .args(["-q", "-F", "-t", "ext4", "-L", STATE_NAME])
            .arg(&partition))?;

        std::fs::create_dir_all(&self.mount_dir).map_err(io_at(&self.mount_dir))?;
        mounts
            .mount(&partition, &self.mount_dir)
            .map_err(io_at(&partition))?;
        let filled = self.fill(out);
        let synced = File::open(&self.mount_dir)
            .and_then(|dir| nix::unistd::syncfs(&dir).map_err(io::Error::from));
        let unmounted = mounts.unmount(&self.mount_dir);
        filled?;
        synced.map_err(io_at(&self.mount_dir))?;
        unmounted.map_err(io_at(&self.mount_dir))?;
        nix::unistd::sync();
        say(out, &format!("{} is ready", self.disk.display()));
        Ok(())
    }

    /// The kernel, the initrd, grub.cfg and the cloud-config, into the
    /// mounted state partition.
    fn fill(&self, out: &mut dyn Write) -> Result<(), InstallError> {
        let root = &self.mount_dir;
        let boot = root.join("boot/grub");
        std::fs::create_dir_all(&boot).map_err(io_at(&boot))?;
        // The root image sits next to the initrd on every medium (the ISO,
        // an installed disk); an initrd that carries it has none beside it.
        let rootfs = self.initrd.with_file_name(ROOTFS_NAME);
        let mut files = vec![
            (self.vmlinuz.clone(), root.join(state_files::VMLINUZ)),
            (self.initrd.clone(), root.join(state_files::INITRD)),
        ];
        if rootfs.is_file() {
            files.push((rootfs, root.join(state_files::ROOTFS)));
        }
        let total: u64 = files
            .iter()
            .map(|(from, _)| std::fs::metadata(from).map(|m| m.len()).unwrap_or(0))
            .sum();
        let mut progress = Progress::new(total, out);
        for (from, to) in &files {
            copy_counting(from, to, &mut progress)?;
        }
        let cfg = root.join(state_files::GRUB_CFG);
        std::fs::write(&cfg, state_files::grub_cfg(&self.cmdline)).map_err(io_at(&cfg))?;
        if let Some(value) = &self.cloud_config {
            let paths = os_config::ConfigPaths::under(root);
            let file = paths.cloud_config_file();
            os_config::Store::new(paths)
                .merge(value.clone())
                .map_err(|e| io_at(&file)(io::Error::other(e.to_string())))?;
            let _ = writeln!(
                progress.out,
                "ros install: saved the cloud-config as /{}",
                state_files::CLOUD_CONFIG
            );
        }
        Ok(())
    }
}

/// Percent lines: one each time another tenth is copied.
struct Progress<'a> {
    total: u64,
    done: u64,
    shown: u64,
    out: &'a mut dyn Write,
}

impl<'a> Progress<'a> {
    fn new(total: u64, out: &'a mut dyn Write) -> Self {
        Self {
            total,
            done: 0,
            shown: 0,
            out,
        }
    }

    fn add(&mut self, bytes: u64) {
        self.done += bytes;
        let percent = (self.done * 100).checked_div(self.total).unwrap_or(100);
        let tenth = percent / 10 * 10;
        if tenth > self.shown {
            self.shown = tenth;
            let _ = writeln!(
                self.out,
                "ros install: copying the kernel and initrd: {tenth:>3}% ({} of {} MiB)",
                self.done >> 20,
                self.total >> 20
            );
            let _ = self.out.flush();
        }
    }
}

fn copy_counting(from: &Path, to: &Path, progress: &mut Progress<'_>) -> Result<(), InstallError> {
    let mut source = File::open(from).map_err(io_at(from))?;
    let mut target = File::create(to).map_err(io_at(to))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = source.read(&mut buf).map_err(io_at(from))?;
        if n == 0 {
            break;
        }
        target.write_all(&buf[..n]).map_err(io_at(to))?;
        progress.add(n as u64);
    }
    target.sync_all().map_err(io_at(to))
}

/// BLKRRPART: the kernel reads the new table and makes `/dev/vda1…3`.
/// A regular file (tests) has none to read.
fn reread_partitions(disk: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    if !disk.metadata()?.file_type().is_block_device() {
        return Ok(());
    }
    // `libc::Ioctl`: the request's type differs between glibc and musl.
    const BLKRRPART: libc::Ioctl = 0x125F;
    // The kernel may be busy with the change event of the last write; a
    // few tries.
    let mut last = io::Error::other("BLKRRPART");
    for _ in 0..10 {
        // SAFETY: BLKRRPART takes no argument; the fd is open and ours.
        let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKRRPART) };
        if rc == 0 {
            return Ok(());
        }
        last = io::Error::last_os_error();
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last)
}

/// devtmpfs makes the node when the kernel adds the partition.
fn wait_for(partition: &Path) -> Result<(), InstallError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !partition.exists() {
        if Instant::now() >= deadline {
            return Err(InstallError::NoPartition(partition.to_path_buf()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<(), InstallError> {
    let shown = format!("{command:?}").replace('"', "");
    let output = command.output().map_err(|e| InstallError::Command {
        command: shown.clone(),
        message: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(InstallError::Command {
            command: shown,
            message: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
