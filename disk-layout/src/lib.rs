//! GPT disks, written and read with nothing but `Read + Write + Seek`:
//! `ros install` writes a block device with it, `image-build` a sparse
//! file (the EC2 image), and PID 1 grows the last partition when the disk
//! turns out larger than the table says (an EC2 volume bigger than the
//! image).
//!
//! The parts: [`Guid`] (mixed-endian GUIDs), [`Gpt`] and [`Partition`]
//! (the table as values), [`write`] (protective MBR with boot code,
//! primary and backup header and entries, CRC32s), [`read`] (the primary
//! table, else the backup) and [`grow`] (the backup moved to the new end,
//! the last partition extended). [`ros_layout`] is the one layout every
//! installed disk and the EC2 image have: BIOS boot, EFI system, state.

// Shipped code returns errors instead of panicking (tests may: clippy.toml)
// and never truncates silently.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

mod guid;

use std::io::{self, Read, Seek, SeekFrom, Write};

pub use guid::{BadGuid, Guid};

/// Bytes per logical sector: what GPT sizes are counted in here. Disks
/// with 4 KiB logical sectors are refused by [`sector_count`].
pub const SECTOR: u64 = 512;
/// [`SECTOR`] as a buffer length, so no `u64` is cast down to `usize`.
const SECTOR_LEN: usize = 512;
const _: () = assert!(SECTOR_LEN as u64 == SECTOR);
/// Partitions start and end on 1 MiB boundaries (in sectors).
pub const ALIGN: u64 = 2048;
/// Entries in the partition array, each [`ENTRY_SIZE`] bytes: the usual
/// 16 KiB array, 32 sectors.
pub const ENTRY_COUNT: u32 = 128;
pub const ENTRY_SIZE: u32 = 128;
const ENTRY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR;
/// The first sector a partition may use: MBR, header, entries.
pub const FIRST_USABLE: u64 = 2 + ENTRY_SECTORS;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
/// Bytes of MBR boot code before the disk signature.
pub const BOOT_CODE_LEN: usize = 440;
const MBR_PROTECTIVE: u8 = 0xEE;

/// Partition type GUIDs.
pub mod types {
    use super::Guid;

    /// GRUB's BIOS boot partition ("Hah!IdontNeedEFI"): core.img lives here.
    pub const BIOS_BOOT: Guid = Guid::from_fields(
        0x2168_6148,
        0x6449,
        0x6E6F,
        [0x74, 0x4E, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49],
    );
    /// EFI system partition.
    pub const EFI_SYSTEM: Guid = Guid::from_fields(
        0xC12A_7328,
        0xF81F,
        0x11D2,
        [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
    );
    /// Linux file system data.
    pub const LINUX_FS: Guid = Guid::from_fields(
        0x0FC6_3DAF,
        0x8483,
        0x4772,
        [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
    );
}

/// One used entry of the partition array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its slot, from 1 (`/dev/vda3` is number 3).
    pub number: u32,
    pub type_guid: Guid,
    pub guid: Guid,
    /// First and last sector, inclusive.
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    /// Up to 36 UTF-16 code units.
    pub name: String,
}

impl Partition {
    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }

    /// Where it starts, in bytes.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    pub fn bytes(&self) -> u64 {
        self.sectors() * SECTOR
    }
}

/// A partition table, as values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    pub disk_guid: Guid,
    /// The disk's size in sectors as the table sees it: the backup header
    /// sits in the last one.
    pub sectors: u64,
    /// The used entries, by number.
    pub partitions: Vec<Partition>,
}

impl Gpt {
    /// The last sector a partition may use: before the backup entries.
    pub fn last_usable(&self) -> u64 {
        last_usable(self.sectors)
    }

    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }

    /// Every rule a table must keep before it is written: within the
    /// usable sectors, no overlaps, numbers 1..=128 once each, names short
    /// enough.
    pub fn check(&self) -> Result<(), GptError> {
        if self.sectors < FIRST_USABLE + ENTRY_SECTORS + 2 {
            return Err(GptError::TooSmall {
                sectors: self.sectors,
            });
        }
        let mut sorted: Vec<&Partition> = self.partitions.iter().collect();
        sorted.sort_by_key(|p| p.first_lba);
        for p in &sorted {
            if p.number == 0 || p.number > ENTRY_COUNT {
                return Err(GptError::BadNumber(p.number));
            }
            if p.first_lba < FIRST_USABLE
                || p.last_lba < p.first_lba
                || p.last_lba > self.last_usable()
            {
                return Err(GptError::OutOfRange {
                    number: p.number,
                    first: p.first_lba,
                    last: p.last_lba,
                    last_usable: self.last_usable(),
                });
            }
            if p.name.encode_utf16().count() > 36 {
                return Err(GptError::NameTooLong(p.name.clone()));
            }
            if p.type_guid.is_zero() {
                return Err(GptError::NoType(p.number));
            }
        }
        for pair in sorted.windows(2) {
            if pair[1].first_lba <= pair[0].last_lba {
                return Err(GptError::Overlap(pair[0].number, pair[1].number));
            }
        }
        let mut numbers: Vec<u32> = self.partitions.iter().map(|p| p.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        if numbers.len() != self.partitions.len() {
            return Err(GptError::DuplicateNumber);
        }
        Ok(())
    }
}

/// What failed, naming the part of the table.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("a disk of {sectors} sectors is too small for a GPT and one partition")]
    TooSmall { sectors: u64 },
    #[error("{bytes} bytes is not a whole number of {SECTOR}-byte sectors")]
    NotSectors { bytes: u64 },
    #[error("partition number {0} is not between 1 and {ENTRY_COUNT}")]
    BadNumber(u32),
    #[error(
        "partition {number} (sectors {first}..={last}) is outside the usable sectors {FIRST_USABLE}..={last_usable}"
    )]
    OutOfRange {
        number: u32,
        first: u64,
        last: u64,
        last_usable: u64,
    },
    #[error("partitions {0} and {1} overlap")]
    Overlap(u32, u32),
    #[error("a partition number is used twice")]
    DuplicateNumber,
    #[error("partition {0} has no type")]
    NoType(u32),
    #[error("partition name {0:?} is longer than 36 UTF-16 units")]
    NameTooLong(String),
    #[error("boot code is {0} bytes; the MBR holds {BOOT_CODE_LEN}")]
    BootCodeTooLong(usize),
    #[error("no GPT: {primary}; backup (sector {backup_lba}): {backup}")]
    NoTable {
        primary: TableError,
        backup_lba: u64,
        backup: TableError,
    },
    #[error("the layout needs {needed} sectors; the disk has {sectors}")]
    DiskTooSmall { needed: u64, sectors: u64 },
}

/// Why one copy of the table (the primary at sector 1, or the backup at
/// the disk's last sector) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The header or the entries cannot be read.
    #[error("cannot read the {what} at sector {lba}: {source}")]
    Read {
        /// `header` or `partition entries`.
        what: &'static str,
        /// Where.
        lba: u64,
        #[source]
        source: io::Error,
    },
    /// Not a GPT header (a blank disk, or another scheme).
    #[error("no \"EFI PART\" signature")]
    NoSignature,
    /// A header size no GPT writes.
    #[error("header size {size} is not between {HEADER_SIZE} and {SECTOR} bytes")]
    HeaderSize {
        /// What the header says.
        size: u32,
    },
    /// The header was damaged.
    #[error("header CRC32 mismatch")]
    HeaderCrc,
    /// A header that was copied from elsewhere.
    #[error("header says it is at sector {claimed}, read from {lba}")]
    Misplaced {
        /// Where the header says it is.
        claimed: u64,
        /// Where it was read.
        lba: u64,
    },
    /// An entry array no GPT writes.
    #[error(
        "{count} entries of {size} bytes (entries are a multiple of 8 bytes, at least 128, \
         and at most 4096 of them)"
    )]
    EntryShape {
        /// Entries, as the header says.
        count: u32,
        /// Bytes per entry, as the header says.
        size: u32,
    },
    /// The entries were damaged.
    #[error("partition entries CRC32 mismatch")]
    EntriesCrc,
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> GptError {
    move |source| GptError::Io { what, source }
}

/// The size in sectors of a disk of `bytes`.
pub fn sector_count(bytes: u64) -> Result<u64, GptError> {
    if !bytes.is_multiple_of(SECTOR) {
        return Err(GptError::NotSectors { bytes });
    }
    Ok(bytes / SECTOR)
}

fn last_usable(sectors: u64) -> u64 {
    sectors.saturating_sub(2 + ENTRY_SECTORS)
}

/// The last sector of a partition that ends as close to the disk's end as
/// 1 MiB alignment allows.
pub fn aligned_end(sectors: u64) -> u64 {
    ((last_usable(sectors) + 1) / ALIGN * ALIGN).saturating_sub(1)
}

/// Writes the protective MBR (its first bytes `boot_code`), the primary
/// and the backup table for `gpt`, whose `sectors` is the disk's size.
/// Nothing else on the disk is touched.
pub fn write<D: Write + Seek>(disk: &mut D, gpt: &Gpt, boot_code: &[u8]) -> Result<(), GptError> {
    gpt.check()?;
    if boot_code.len() > BOOT_CODE_LEN {
        return Err(GptError::BootCodeTooLong(boot_code.len()));
    }
    let mut mbr = [0u8; SECTOR_LEN];
    mbr[..boot_code.len()].copy_from_slice(boot_code);
    mbr[446..462].copy_from_slice(&protective_entry(gpt.sectors));
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    write_at(disk, 0, &mbr, "writing the protective MBR")?;
    write_tables(disk, gpt)
}

/// The one partition entry of a protective MBR: type 0xEE from sector 1
/// over the whole disk, or as much of it as 32 bits count.
fn protective_entry(sectors: u64) -> [u8; 16] {
    let mut entry = [0u8; 16];
    // Not bootable; CHS start 0/0/2; type; CHS end as far as CHS goes.
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    entry[4] = MBR_PROTECTIVE;
    entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&size.to_le_bytes());
    entry
}

/// Backup first, then primary: cut short, the disk keeps one good table
/// (a firmware repairs the other from it).
fn write_tables<D: Write + Seek>(disk: &mut D, gpt: &Gpt) -> Result<(), GptError> {
    let entries = encode_entries(&gpt.partitions);
    let entries_crc = crc32fast::hash(&entries);
    let backup_header = gpt.sectors - 1;
    let backup_entries = backup_header - ENTRY_SECTORS;
    write_at(disk, backup_entries, &entries, "writing the backup entries")?;
    write_at(
        disk,
        backup_header,
        &encode_header(gpt, backup_header, 1, backup_entries, entries_crc),
        "writing the backup header",
    )?;
    write_at(disk, 2, &entries, "writing the primary entries")?;
    write_at(
        disk,
        1,
        &encode_header(gpt, 1, backup_header, 2, entries_crc),
        "writing the primary header",
    )?;
    disk.flush().map_err(io_err("flushing the disk"))
}

fn write_at<D: Write + Seek>(
    disk: &mut D,
    lba: u64,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), GptError> {
    disk.seek(SeekFrom::Start(lba * SECTOR))
        .and_then(|_| disk.write_all(bytes))
        .map_err(io_err(what))
}

fn read_at<D: Read + Seek>(disk: &mut D, lba: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    disk.seek(SeekFrom::Start(lba * SECTOR))?;
    disk.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn encode_header(
    gpt: &Gpt,
    my_lba: u64,
    alternate: u64,
    entries_lba: u64,
    entries_crc: u32,
) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR_LEN];
    h[0..8].copy_from_slice(SIGNATURE);
    h[8..12].copy_from_slice(&REVISION.to_le_bytes());
    h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alternate.to_le_bytes());
    h[40..48].copy_from_slice(&FIRST_USABLE.to_le_bytes());
    h[48..56].copy_from_slice(&gpt.last_usable().to_le_bytes());
    h[56..72].copy_from_slice(&gpt.disk_guid.0);
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
    h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

fn encode_entries(partitions: &[Partition]) -> Vec<u8> {
    let mut bytes = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
    for p in partitions {
        let at = (p.number as usize - 1) * ENTRY_SIZE as usize;
        let e = &mut bytes[at..at + ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.0);
        e[16..32].copy_from_slice(&p.guid.0);
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (i, unit) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
    }
    bytes
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// A header read and checked, where its entries are.
#[derive(Debug)]
struct Header {
    alternate: u64,
    disk_guid: Guid,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

fn decode_header(sector: &[u8], expected_lba: u64) -> Result<Header, TableError> {
    if &sector[0..8] != SIGNATURE {
        return Err(TableError::NoSignature);
    }
    let size = u32_at(sector, 12);
    if size < HEADER_SIZE || u64::from(size) > SECTOR {
        return Err(TableError::HeaderSize { size });
    }
    let mut copy = sector[..size as usize].to_vec();
    copy[16..20].fill(0);
    if crc32fast::hash(&copy) != u32_at(sector, 16) {
        return Err(TableError::HeaderCrc);
    }
    if u64_at(sector, 24) != expected_lba {
        return Err(TableError::Misplaced {
            claimed: u64_at(sector, 24),
            lba: expected_lba,
        });
    }
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&sector[56..72]);
    let header = Header {
        alternate: u64_at(sector, 32),
        disk_guid: Guid(guid),
        entries_lba: u64_at(sector, 72),
        entry_count: u32_at(sector, 80),
        entry_size: u32_at(sector, 84),
        entries_crc: u32_at(sector, 88),
    };
    if header.entry_size < 128 || !header.entry_size.is_multiple_of(8) || header.entry_count > 4096
    {
        return Err(TableError::EntryShape {
            count: header.entry_count,
            size: header.entry_size,
        });
    }
    Ok(header)
}

fn decode_entries(bytes: &[u8], header: &Header) -> Vec<Partition> {
    bytes
        .chunks_exact(header.entry_size as usize)
        .enumerate()
        .filter_map(|(i, e)| {
            let mut type_guid = [0u8; 16];
            type_guid.copy_from_slice(&e[0..16]);
            if type_guid == [0; 16] {
                return None;
            }
            let mut guid = [0u8; 16];
            guid.copy_from_slice(&e[16..32]);
            let units: Vec<u16> = e[56..128]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            Some(Partition {
                number: u32::try_from(i + 1).ok()?,
                type_guid: Guid(type_guid),
                guid: Guid(guid),
                first_lba: u64_at(e, 32),
                last_lba: u64_at(e, 40),
                attributes: u64_at(e, 48),
                name: String::from_utf16_lossy(&units),
            })
        })
        .collect()
}

/// One table (header at `lba`) and its entries, checked.
fn read_one<D: Read + Seek>(
    disk: &mut D,
    lba: u64,
) -> Result<(Header, Vec<Partition>), TableError> {
    let sector = read_at(disk, lba, SECTOR_LEN).map_err(|source| TableError::Read {
        what: "header",
        lba,
        source,
    })?;
    let header = decode_header(&sector, lba)?;
    let len = header.entry_count as usize * header.entry_size as usize;
    let bytes = read_at(disk, header.entries_lba, len).map_err(|source| TableError::Read {
        what: "partition entries",
        lba: header.entries_lba,
        source,
    })?;
    if crc32fast::hash(&bytes) != header.entries_crc {
        return Err(TableError::EntriesCrc);
    }
    let partitions = decode_entries(&bytes, &header);
    Ok((header, partitions))
}

/// Reads the table of a disk of `size` bytes: the primary, or the backup
/// in its last sector when the primary is damaged. `sectors` is where the
/// table puts the disk's end (the backup header's sector + 1), which is
/// less than the disk's size when the disk has grown.
pub fn read<D: Read + Seek>(disk: &mut D, size: u64) -> Result<Gpt, GptError> {
    let sectors = sector_count(size)?;
    let to_gpt = |(header, partitions): (Header, Vec<Partition>), sectors: u64| Gpt {
        disk_guid: header.disk_guid,
        sectors,
        partitions,
    };
    let primary = match read_one(disk, 1) {
        Ok((header, partitions)) => {
            let table_sectors = header.alternate + 1;
            return Ok(to_gpt((header, partitions), table_sectors));
        }
        Err(why) => why,
    };
    let backup_lba = sectors - 1;
    match read_one(disk, backup_lba) {
        Ok(found) => Ok(to_gpt(found, sectors)),
        Err(backup) => Err(GptError::NoTable {
            primary,
            backup_lba,
            backup,
        }),
    }
}

/// What [`grow`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grown {
    /// The disk's end as the table had it, in sectors, and now.
    pub old_sectors: u64,
    pub new_sectors: u64,
    /// The partition extended, with its last sector before and after;
    /// `None` when only the backup table moved.
    pub partition: Option<(u32, u64, u64)>,
}

/// Makes the table of a disk of `size` bytes reach its end: the backup
/// table moves to the last sectors, and partition `number`, when it is
/// the last one on the disk, is extended to the last 1 MiB boundary.
/// `Ok(None)`: the table already fills the disk. The protective MBR's
/// size follows.
pub fn grow<D: Read + Write + Seek>(
    disk: &mut D,
    size: u64,
    number: u32,
) -> Result<Option<Grown>, GptError> {
    let sectors = sector_count(size)?;
    let mut gpt = read(disk, size)?;
    let old_sectors = gpt.sectors;
    if old_sectors > sectors {
        // A table larger than its disk: not ours to shrink.
        return Err(GptError::DiskTooSmall {
            needed: old_sectors,
            sectors,
        });
    }
    gpt.sectors = sectors;
    let last_end = gpt.partitions.iter().map(|p| p.last_lba).max();
    let new_end = aligned_end(sectors);
    let mut extended = None;
    if let Some(p) = gpt.partitions.iter_mut().find(|p| p.number == number)
        && Some(p.last_lba) == last_end
        && new_end > p.last_lba
    {
        extended = Some((number, p.last_lba, new_end));
        p.last_lba = new_end;
    }
    if old_sectors == sectors && extended.is_none() {
        return Ok(None);
    }
    write_tables(disk, &gpt)?;
    let mut mbr = read_at(disk, 0, SECTOR_LEN).map_err(io_err("reading the MBR"))?;
    if mbr[446 + 4] == MBR_PROTECTIVE && mbr[510..512] == [0x55, 0xAA] {
        let entry = protective_entry(sectors);
        mbr[446 + 12..446 + 16].copy_from_slice(&entry[12..16]);
        write_at(disk, 0, &mbr, "writing the protective MBR")?;
    }
    if old_sectors != sectors {
        // The old backup header now lies inside the disk: clear it so
        // no tool mistakes it for a table.
        write_at(
            disk,
            old_sectors - 1,
            &[0u8; SECTOR_LEN],
            "clearing the old backup header",
        )?;
    }
    disk.flush().map_err(io_err("flushing the disk"))?;
    Ok(Some(Grown {
        old_sectors,
        new_sectors: sectors,
        partition: extended,
    }))
}

/// Where the parts of an installed disk go (sectors): GRUB's core.img in
/// the BIOS boot partition, the EFI system partition image after it, the
/// state partition to the end.
pub const BIOS_BOOT_FIRST: u64 = 2048;
pub const BIOS_BOOT_LAST: u64 = 4095;
pub const ESP_FIRST: u64 = 4096;
/// The state partition's number, GPT name and file system label.
pub const STATE_NUMBER: u32 = 3;
pub const STATE_NAME: &str = "RANCHER_STATE";

/// The layout of an installed disk and the EC2 image, on a disk of
/// `size` bytes, for an ESP image of `esp_bytes`: 1 BIOS boot
/// (2048..=4095), 2 EFI system (from 4096, exactly `esp_bytes`), 3 the
/// state partition from the next 1 MiB boundary to the disk's last one.
/// `guid` makes the disk's and each partition's GUIDs, in that order.
pub fn ros_layout(
    size: u64,
    esp_bytes: u64,
    mut guid: impl FnMut() -> Guid,
) -> Result<Gpt, GptError> {
    let sectors = sector_count(size)?;
    let esp_sectors = esp_bytes.div_ceil(SECTOR);
    let esp_last = ESP_FIRST + esp_sectors - 1;
    let state_first = (esp_last + 1).div_ceil(ALIGN) * ALIGN;
    let state_last = aligned_end(sectors);
    // At least 1 MiB of state partition.
    if state_last < state_first + ALIGN - 1 || esp_sectors == 0 {
        return Err(GptError::DiskTooSmall {
            needed: state_first + ALIGN + 2 + ENTRY_SECTORS,
            sectors,
        });
    }
    let disk_guid = guid();
    let mut part = |number, type_guid, first_lba, last_lba, name: &str| Partition {
        number,
        type_guid,
        guid: guid(),
        first_lba,
        last_lba,
        attributes: 0,
        name: name.to_owned(),
    };
    let partitions = vec![
        part(
            1,
            types::BIOS_BOOT,
            BIOS_BOOT_FIRST,
            BIOS_BOOT_LAST,
            "BIOS boot",
        ),
        part(2, types::EFI_SYSTEM, ESP_FIRST, esp_last, "EFI system"),
        part(3, types::LINUX_FS, state_first, state_last, STATE_NAME),
    ];
    let gpt = Gpt {
        disk_guid,
        sectors,
        partitions,
    };
    gpt.check()?;
    Ok(gpt)
}

#[cfg(test)]
mod tests;

/// What the state partition holds for the boot loader: the kernel and
/// initrd where an upgrade swaps them, and GRUB's two-line configuration
/// (GRUB's embedded configuration finds the partition by its label and
/// reads this one).
pub mod state_files {
    /// Paths inside the state partition.
    pub const VMLINUZ: &str = "boot/vmlinuz";
    pub const INITRD: &str = "boot/initrd";
    /// The root image, next to the initrd (the ISO has the same layout):
    /// PID 1 mounts it from here instead of carrying it in the initrd.
    pub const ROOTFS: &str = "boot/rootfs.squashfs";
    pub const GRUB_CFG: &str = "boot/grub/grub.cfg";
    /// Where the configuration `ros config set` writes lives (the state
    /// partition is bound over `/var/lib/rancher`).
    pub const CLOUD_CONFIG: &str = "var/lib/rancher/conf/cloud-config.yml";
    /// The consoles of an installed machine and the EC2 image: kernel
    /// messages on the screen and the serial port; `/dev/console` (and
    /// `ros: ready`) is the serial port, the last one named.
    pub const CONSOLES: &str = "console=tty1 console=ttyS0,115200n8";

    /// `grub.cfg` for a kernel command line.
    pub fn grub_cfg(cmdline: &str) -> String {
        format!("linux /{VMLINUZ} {cmdline}\ninitrd /{INITRD}\n")
    }
}
