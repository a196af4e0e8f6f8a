//! Growing the state partition to its disk, on the boot that finds the
//! disk larger than the partition table says: the EC2 image (a few tens of
//! MiB) written to a volume of gigabytes, or a virtual disk enlarged.
//!
//! Before the partition is mounted, [`grow_partition`] moves the backup
//! GPT to the disk's end and extends the state partition when it is the
//! disk's last (disk-layout's `grow`), then tells the kernel the new size
//! (BLKPG_RESIZE_PARTITION). Once it is mounted, [`grow_filesystem`]
//! grows ext4 online to the partition (EXT4_IOC_RESIZE_FS, as resize2fs
//! does on a mounted file system). Each step checks what is there, so a
//! boot cut short in between finishes the job on the next. The two
//! kernel calls sit behind [`Resizer`]; a failure is the caller's to log,
//! never to stop the boot.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Where the block devices are: `/sys/class/block` and `/dev` on the
/// machine, directories of files in tests.
#[derive(Debug, Clone)]
pub struct GrowPaths {
    pub sys_class_block: PathBuf,
    pub dev: PathBuf,
}

impl GrowPaths {
    pub fn system() -> Self {
        Self {
            sys_class_block: PathBuf::from("/sys/class/block"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// The two calls that change what the kernel has.
pub trait Resizer {
    /// The kernel's idea of partition `number` of `disk` (an open fd of
    /// the whole disk): now `length` bytes from `start`.
    fn resize_partition(&self, disk: &File, number: u32, start: u64, length: u64)
    -> io::Result<()>;
    /// Grows the ext4 file system mounted at `mount` to `blocks` blocks.
    fn resize_ext4(&self, mount: &Path, blocks: u64) -> io::Result<()>;
}

/// The real calls: two ioctls.
#[derive(Debug, Default)]
pub struct KernelResizer;

/// `BLKPG`, `_IO(0x12, 105)`, and its resize operation.
// `libc::Ioctl`: the request's type differs between glibc and musl.
const BLKPG: libc::Ioctl = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;
/// `EXT4_IOC_RESIZE_FS`, `_IOW('f', 16, __u64)`.
const EXT4_IOC_RESIZE_FS: libc::Ioctl = 0x4008_6610;

/// `struct blkpg_partition` of `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

impl Resizer for KernelResizer {
    fn resize_partition(
        &self,
        disk: &File,
        number: u32,
        start: u64,
        length: u64,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let too_big = |_| io::Error::other("partition beyond 2^63 bytes");
        let mut partition = BlkpgPartition {
            start: i64::try_from(start).map_err(too_big)?,
            length: i64::try_from(length).map_err(too_big)?,
            pno: libc::c_int::try_from(number).map_err(|_| io::Error::other("partition number"))?,
            devname: [0; 64],
            volname: [0; 64],
        };
        let mut arg = BlkpgIoctlArg {
            op: BLKPG_RESIZE_PARTITION,
            flags: 0,
            datalen: libc::c_int::try_from(size_of::<BlkpgPartition>())
                .map_err(|_| io::Error::other("blkpg_partition larger than a c_int"))?,
            data: std::ptr::from_mut(&mut partition).cast(),
        };
        // SAFETY: BLKPG reads a blkpg_ioctl_arg whose data points to a
        // blkpg_partition of datalen bytes; both live until it returns.
        let rc = unsafe { libc::ioctl(disk.as_raw_fd(), BLKPG, std::ptr::from_mut(&mut arg)) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn resize_ext4(&self, mount: &Path, blocks: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let dir = File::open(mount)?;
        let count: u64 = blocks;
        // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 from the pointer, which
        // lives until it returns; the fd is a directory of the file system.
        let rc = unsafe {
            libc::ioctl(
                dir.as_raw_fd(),
                EXT4_IOC_RESIZE_FS,
                std::ptr::from_ref(&count),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// What failed, naming the device.
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("partition table of {}: {source}", disk.display())]
    Table {
        disk: PathBuf,
        #[source]
        source: disk_layout::GptError,
    },
    #[error("telling the kernel {} has grown: {source}", partition.display())]
    Kernel {
        partition: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("growing the file system at {}: {source}", mount.display())]
    Resize {
        mount: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> GrowError + '_ {
    move |source| GrowError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`grow_partition`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionGrown {
    pub disk: PathBuf,
    pub number: u32,
    /// The partition's size before and after, in bytes; equal when only
    /// the backup table moved (the partition is not the last).
    pub old_bytes: u64,
    pub new_bytes: u64,
}

/// Makes the GPT of the disk holding `partition` (a `/dev` path) reach
/// the disk's end, extending `partition` when it is the last one.
/// `Ok(None)`: not a partition, or nothing to do.
pub fn grow_partition(
    paths: &GrowPaths,
    partition: &Path,
    resizer: &dyn Resizer,
) -> Result<Option<PartitionGrown>, GrowError> {
    let Some(name) = partition
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return Ok(None);
    };
    let sys = paths.sys_class_block.join(&name);
    let Ok(number) = read_number(&sys.join("partition")) else {
        // A whole disk (or a loop file) has no table to grow.
        return Ok(None);
    };
    let disk_sys = std::fs::canonicalize(&sys).map_err(io_at(&sys))?;
    let Some(disk_name) = disk_sys.parent().and_then(Path::file_name) else {
        return Ok(None);
    };
    let disk = paths.dev.join(disk_name);
    let size = read_number(&disk_sys.parent().unwrap_or(&disk_sys).join("size"))
        .map_err(io_at(&disk_sys))?
        * 512;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .map_err(io_at(&disk))?;
    let number =
        u32::try_from(number).map_err(|_| io_at(&sys)(io::Error::other("partition number")))?;
    let table = |source| GrowError::Table {
        disk: disk.clone(),
        source,
    };
    // Only a GPT disk: anything else is left as it is.
    if disk_layout::read(&mut file, size).is_err() {
        return Ok(None);
    }
    let Some(grown) = disk_layout::grow(&mut file, size, number).map_err(table)? else {
        return Ok(None);
    };
    file.sync_all().map_err(io_at(&disk))?;
    let gpt = disk_layout::read(&mut file, size).map_err(table)?;
    let entry = gpt
        .partition(number)
        .ok_or_else(|| table(disk_layout::GptError::BadNumber(number)))?;
    let (old_bytes, new_bytes) = match grown.partition {
        Some((_, old_last, _)) => {
            resizer
                .resize_partition(&file, number, entry.offset(), entry.bytes())
                .map_err(|source| GrowError::Kernel {
                    partition: partition.to_path_buf(),
                    source,
                })?;
            (
                (old_last + 1 - entry.first_lba) * disk_layout::SECTOR,
                entry.bytes(),
            )
        }
        None => (entry.bytes(), entry.bytes()),
    };
    Ok(Some(PartitionGrown {
        disk,
        number,
        old_bytes,
        new_bytes,
    }))
}

fn read_number(path: &Path) -> io::Result<u64> {
    std::fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{} is not a number", path.display())))
}

/// What [`grow_filesystem`] did: the file system's blocks before and
/// after, and their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesystemGrown {
    pub block_size: u64,
    pub old_blocks: u64,
    pub new_blocks: u64,
}

/// Grows the ext4 file system on `device`, mounted at `mount`, to fill
/// the device. `Ok(None)`: not ext, or it fills it already.
pub fn grow_filesystem(
    device: &Path,
    mount: &Path,
    resizer: &dyn Resizer,
) -> Result<Option<FilesystemGrown>, GrowError> {
    let mut file = File::open(device).map_err(io_at(device))?;
    let mut superblock = [0u8; 1024];
    file.seek(SeekFrom::Start(1024))
        .and_then(|_| file.read_exact(&mut superblock))
        .map_err(io_at(device))?;
    let Some((block_size, blocks)) = ext_blocks(&superblock) else {
        return Ok(None);
    };
    let size = file.seek(SeekFrom::End(0)).map_err(io_at(device))?;
    let fits = size / block_size;
    if fits <= blocks {
        return Ok(None);
    }
    resizer
        .resize_ext4(mount, fits)
        .map_err(|source| GrowError::Resize {
            mount: mount.to_path_buf(),
            source,
        })?;
    Ok(Some(FilesystemGrown {
        block_size,
        old_blocks: blocks,
        new_blocks: fits,
    }))
}

/// An ext superblock's block size and count.
fn ext_blocks(sb: &[u8; 1024]) -> Option<(u64, u64)> {
    let u32_at = |at: usize| {
        u64::from(u32::from_le_bytes([
            sb[at],
            sb[at + 1],
            sb[at + 2],
            sb[at + 3],
        ]))
    };
    if sb[56..58] != [0x53, 0xEF] {
        return None;
    }
    let log = u32_at(24);
    if log > 6 {
        return None;
    }
    let block_size = 1024u64 << log;
    // The high half counts only with the 64bit incompat feature.
    let incompat_64bit = u32_at(0x60) & 0x80 != 0;
    let high = if incompat_64bit { u32_at(0x150) } else { 0 };
    Some((block_size, (high << 32) | u32_at(4)))
}

/// The boot's step before the state partition is mounted: grows its
/// partition, saying what it did; a failure is said, never fatal.
pub fn before_mount(paths: &GrowPaths, device: &Path) {
    match grow_partition(paths, device, &KernelResizer) {
        Ok(Some(grown)) if grown.new_bytes > grown.old_bytes => {
            let line = format!(
                "grew {} (partition {} of {}) from {} to {} MiB",
                device.display(),
                grown.number,
                grown.disk.display(),
                grown.old_bytes >> 20,
                grown.new_bytes >> 20
            );
            tracing::info!("{line}");
            crate::console::line(&format!("ros: {line}"));
        }
        Ok(Some(grown)) => tracing::info!(
            "moved the backup partition table of {} to its end",
            grown.disk.display()
        ),
        Ok(None) => {}
        Err(error) => crate::console::report(&format!("growing the state partition: {error}")),
    }
}

/// The step once it is mounted at `mount`: grows the file system to the
/// partition.
pub fn after_mount(device: &Path, mount: &Path) {
    match grow_filesystem(device, mount, &KernelResizer) {
        Ok(Some(grown)) => {
            let line = format!(
                "grew the file system on {} from {} to {} MiB",
                device.display(),
                (grown.old_blocks * grown.block_size) >> 20,
                (grown.new_blocks * grown.block_size) >> 20
            );
            tracing::info!("{line}");
            crate::console::line(&format!("ros: {line}"));
        }
        Ok(None) => {}
        Err(error) => crate::console::report(&format!("growing the state file system: {error}")),
    }
}

#[cfg(test)]
mod tests;
