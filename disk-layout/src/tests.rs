//! Tables written into files, read back, damaged, grown; and checked
//! with util-linux's `partx` and `blkid`, which read GPT on their own.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::Command;

use super::*;

const MIB: u64 = 1 << 20;

fn counter() -> impl FnMut() -> Guid {
    let mut n = 0u8;
    move || {
        n += 1;
        Guid::v4_from([n; 16])
    }
}

fn disk(dir: &Path, size: u64) -> (std::path::PathBuf, File) {
    let path = dir.join("disk.img");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    file.set_len(size).unwrap();
    (path, file)
}

/// `partx` on the file: one `(number, start, end, type, name)` per
/// partition, as util-linux reads the table.
fn partx(path: &Path) -> Vec<(u32, u64, u64, String, String)> {
    let out = Command::new("partx")
        .args(["-g", "-r", "-o", "NR,START,END,TYPE,NAME"])
        .arg(path)
        .output()
        .expect("partx (util-linux) is installed");
    assert!(out.status.success(), "partx: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_ascii_uppercase(),
                f.get(4).copied().unwrap_or("").replace("\\x20", " "),
            )
        })
        .collect()
}

fn blkid_pttype(path: &Path) -> String {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "PTTYPE"])
        .arg(path)
        .output()
        .expect("blkid (util-linux) is installed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_blank_disk_gets_three_partitions_that_partx_and_blkid_read() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut file) = disk(dir.path(), 64 * MIB);
    let gpt = ros_layout(64 * MIB, 3 * MIB, counter()).unwrap();
    let boot = [0xEBu8; BOOT_CODE_LEN];
    write(&mut file, &gpt, &boot).unwrap();

    assert_eq!(read(&mut file, 64 * MIB).unwrap(), gpt);
    let sectors = 64 * MIB / SECTOR;
    assert_eq!(
        partx(&path),
        vec![
            (
                1,
                2048,
                4095,
                types::BIOS_BOOT.to_string(),
                "BIOS boot".into()
            ),
            (
                2,
                4096,
                4096 + 6144 - 1,
                types::EFI_SYSTEM.to_string(),
                "EFI system".into()
            ),
            (
                3,
                10240,
                (sectors - 34) / 2048 * 2048 - 1,
                types::LINUX_FS.to_string(),
                "RANCHER_STATE".into()
            ),
        ]
    );
    assert_eq!(blkid_pttype(&path), "gpt");

    // The MBR: boot code, then one protective entry over the disk.
    let mbr = read_at(&mut file, 0, 512).unwrap();
    assert!(mbr[..440].iter().all(|&b| b == 0xEB));
    assert_eq!(mbr[446 + 4], 0xEE);
    assert_eq!(u32_at(&mbr, 446 + 8), 1);
    assert_eq!(u64::from(u32_at(&mbr, 446 + 12)), sectors - 1);
    assert_eq!(mbr[510..], [0x55, 0xAA]);
    // Only the tables were written: the file stays sparse.
    use std::os::unix::fs::MetadataExt;
    assert!(file.metadata().unwrap().blocks() * 512 < MIB);
}

#[test]
fn the_esp_size_is_rounded_to_sectors_and_the_state_partition_to_mib() {
    let gpt = ros_layout(100 * MIB + 512 * 7, 1_000_000, counter()).unwrap();
    let esp = gpt.partition(2).unwrap();
    assert_eq!(esp.sectors(), 1_000_000u64.div_ceil(512));
    let state = gpt.partition(3).unwrap();
    assert_eq!(state.first_lba % ALIGN, 0);
    assert_eq!((state.last_lba + 1) % ALIGN, 0);
    assert!(state.last_lba <= gpt.last_usable());
    assert_eq!(state.name, STATE_NAME);
}

#[test]
fn a_disk_too_small_for_the_layout_is_refused_with_the_sizes() {
    let error = ros_layout(4 * MIB, 3 * MIB, counter()).unwrap_err();
    assert!(
        matches!(error, GptError::DiskTooSmall { sectors: 8192, .. }),
        "{error}"
    );
    let error = ros_layout(64 * MIB + 1, MIB, counter()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "67108865 bytes is not a whole number of 512-byte sectors"
    );
}

#[test]
fn a_damaged_primary_table_is_read_from_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut file) = disk(dir.path(), 32 * MIB);
    let gpt = ros_layout(32 * MIB, MIB, counter()).unwrap();
    write(&mut file, &gpt, &[]).unwrap();
    write_at(&mut file, 1, &[0xFF; 16], "damage").unwrap();
    assert_eq!(read(&mut file, 32 * MIB).unwrap(), gpt);

    // Entries damaged under both headers: no table, and both reasons.
    write_at(&mut file, 2, &[0xFF; 16], "damage").unwrap();
    let last = 32 * MIB / SECTOR - 1;
    write_at(&mut file, last - 32, &[0xFF; 16], "damage").unwrap();
    let error = read(&mut file, 32 * MIB).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "no GPT: no \"EFI PART\" signature; backup (sector {last}): partition entries CRC32 mismatch"
        )
    );
}

#[test]
fn a_blank_disk_has_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut file) = disk(dir.path(), 8 * MIB);
    assert!(matches!(
        read(&mut file, 8 * MIB),
        Err(GptError::NoTable {
            primary: TableError::NoSignature,
            backup: TableError::NoSignature,
            backup_lba,
        }) if backup_lba == 8 * MIB / SECTOR - 1
    ));
}

#[test]
fn tables_that_break_the_rules_are_not_written() {
    let base = ros_layout(64 * MIB, MIB, counter()).unwrap();
    let mut overlap = base.clone();
    overlap.partitions[1].first_lba = 4000;
    let mut outside = base.clone();
    outside.partitions[2].last_lba = base.sectors - 1;
    let mut twice = base.clone();
    twice.partitions[1].number = 1;
    let mut long = base.clone();
    long.partitions[0].name = "x".repeat(37);
    let mut sink = io::Cursor::new(Vec::new());
    let messages: Vec<String> = [overlap, outside, twice, long]
        .iter()
        .map(|gpt| write(&mut sink, gpt, &[]).unwrap_err().to_string())
        .collect();
    assert_eq!(messages[0], "partitions 1 and 2 overlap");
    assert!(
        messages[1].starts_with("partition 3 (sectors 6144..=131071) is outside"),
        "{}",
        messages[1]
    );
    assert_eq!(messages[2], "a partition number is used twice");
    assert!(messages[3].contains("longer than 36"), "{}", messages[3]);
    let error = write(&mut sink, &base, &[0; 441]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "boot code is 441 bytes; the MBR holds 440"
    );
    assert!(sink.get_ref().is_empty(), "nothing was written");
}

#[test]
fn growing_moves_the_backup_and_extends_the_last_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut file) = disk(dir.path(), 64 * MIB);
    let gpt = ros_layout(64 * MIB, MIB, counter()).unwrap();
    write(&mut file, &gpt, &[0x90; 440]).unwrap();
    let old_end = gpt.partition(3).unwrap().last_lba;

    // The image written to a disk twice its size.
    file.set_len(128 * MIB).unwrap();
    let grown = grow(&mut file, 128 * MIB, STATE_NUMBER).unwrap().unwrap();
    let new_end = aligned_end(128 * MIB / SECTOR);
    assert_eq!(
        grown,
        Grown {
            old_sectors: 64 * MIB / SECTOR,
            new_sectors: 128 * MIB / SECTOR,
            partition: Some((3, old_end, new_end)),
        }
    );
    let after = read(&mut file, 128 * MIB).unwrap();
    assert_eq!(after.sectors, 128 * MIB / SECTOR);
    assert_eq!(after.partition(3).unwrap().last_lba, new_end);
    assert_eq!(after.partition(1), gpt.partition(1));
    assert_eq!(partx(&path)[2].2, new_end);
    // The MBR keeps its code and covers the new size; the old backup
    // header is gone.
    let mbr = read_at(&mut file, 0, 512).unwrap();
    assert!(mbr[..440].iter().all(|&b| b == 0x90));
    assert_eq!(u64::from(u32_at(&mbr, 446 + 12)), 128 * MIB / SECTOR - 1);
    let old_backup = read_at(&mut file, 64 * MIB / SECTOR - 1, 512).unwrap();
    assert!(old_backup.iter().all(|&b| b == 0));
    // The backup alone now tells the same.
    write_at(&mut file, 1, &[0; 512], "damage").unwrap();
    assert_eq!(read(&mut file, 128 * MIB).unwrap(), after);

    // Growing again: nothing to do.
    write_tables(&mut file, &after).unwrap();
    assert_eq!(grow(&mut file, 128 * MIB, STATE_NUMBER).unwrap(), None);
}

#[test]
fn only_the_last_partition_is_extended_but_the_backup_always_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut file) = disk(dir.path(), 64 * MIB);
    let gpt = ros_layout(64 * MIB, MIB, counter()).unwrap();
    write(&mut file, &gpt, &[]).unwrap();
    file.set_len(80 * MIB).unwrap();
    let grown = grow(&mut file, 80 * MIB, 2).unwrap().unwrap();
    assert_eq!(grown.partition, None);
    assert_eq!(grown.new_sectors, 80 * MIB / SECTOR);
    let after = read(&mut file, 80 * MIB).unwrap();
    assert_eq!(after.partitions, gpt.partitions);
}

#[test]
fn a_table_larger_than_its_disk_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut file) = disk(dir.path(), 64 * MIB);
    let gpt = ros_layout(64 * MIB, MIB, counter()).unwrap();
    write(&mut file, &gpt, &[]).unwrap();
    file.set_len(48 * MIB).unwrap();
    // The primary says the disk ends at 64 MiB.
    let error = grow(&mut file, 48 * MIB, STATE_NUMBER).unwrap_err();
    assert!(matches!(error, GptError::DiskTooSmall { .. }), "{error}");
}

#[test]
fn grub_cfg_is_the_kernel_and_initrd_lines_exactly() {
    assert_eq!(
        state_files::grub_cfg("console=ttyS0 rancher.debug"),
        "linux /boot/vmlinuz console=ttyS0 rancher.debug\ninitrd /boot/initrd\n"
    );
}
