//! Filesystem labels read straight from the first bytes of a device: at
//! boot there is no udev and no blkid. Config drives are vfat or iso9660,
//! the state partition ext4 (or ext2/3); their labels sit at fixed offsets.

/// The filesystems a config drive or NoCloud disk may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// FAT12/16/32.
    Vfat,
    /// ISO 9660 (CD image).
    Iso9660,
    /// ext2, ext3 or ext4: the ext4 driver mounts all three.
    Ext4,
}

impl FsType {
    /// The name `mount(2)` takes.
    pub fn mount_name(self) -> &'static str {
        match self {
            Self::Vfat => "vfat",
            Self::Iso9660 => "iso9660",
            Self::Ext4 => "ext4",
        }
    }
}

/// How many bytes of a device [`filesystem_label`] needs: up to the end of
/// the ISO 9660 primary volume descriptor.
pub const HEAD_LEN: usize = ISO_PVD_OFFSET + 2048;

const ISO_PVD_OFFSET: usize = 16 * 2048;

/// The filesystem and label found in `head`, the first bytes of a device.
pub fn filesystem_label(head: &[u8]) -> Option<(FsType, String)> {
    iso9660_label(head)
        .map(|label| (FsType::Iso9660, label))
        .or_else(|| vfat_label(head).map(|label| (FsType::Vfat, label)))
        .or_else(|| ext_label(head).map(|label| (FsType::Ext4, label)))
}

/// The ext superblock starts 1024 bytes in.
const EXT_SUPERBLOCK: usize = 1024;

/// The UUID of an ext filesystem, as blkid prints it.
pub fn ext_uuid(head: &[u8]) -> Option<String> {
    let superblock = head.get(EXT_SUPERBLOCK..EXT_SUPERBLOCK + 136)?;
    if superblock[56..58] != [0x53, 0xEF] {
        return None;
    }
    // s_uuid, 16 bytes at 104, printed 8-4-4-4-12.
    let hex: Vec<String> = superblock[104..120]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        hex[..4].concat(),
        hex[4..6].concat(),
        hex[6..8].concat(),
        hex[8..10].concat(),
        hex[10..].concat()
    ))
}

fn ext_label(head: &[u8]) -> Option<String> {
    let superblock = head.get(EXT_SUPERBLOCK..EXT_SUPERBLOCK + 136)?;
    // s_magic at 56; s_volume_name, 16 bytes, at 120.
    if superblock[56..58] != [0x53, 0xEF] {
        return None;
    }
    text_label(&superblock[120..136])
}

fn iso9660_label(head: &[u8]) -> Option<String> {
    let pvd = head.get(ISO_PVD_OFFSET..ISO_PVD_OFFSET + 2048)?;
    // Type 1 (primary), "CD001", version 1; the volume id is bytes 40..72.
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" || pvd[6] != 1 {
        return None;
    }
    text_label(&pvd[40..72])
}

fn vfat_label(head: &[u8]) -> Option<String> {
    let boot = head.get(..512)?;
    if boot[510..512] != [0x55, 0xAA] {
        return None;
    }
    let bytes_per_sector = u16::from_le_bytes([boot[11], boot[12]]);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
        return None;
    }
    // FAT32 has no 16-bit sectors-per-FAT; its extended BPB starts later.
    let sectors_per_fat_16 = u16::from_le_bytes([boot[22], boot[23]]);
    let (signature, label, fs_type) = if sectors_per_fat_16 == 0 {
        (boot[0x42], &boot[0x47..0x52], &boot[0x52..0x5A])
    } else {
        (boot[0x26], &boot[0x2B..0x36], &boot[0x36..0x3E])
    };
    if signature != 0x29 || !fs_type.starts_with(b"FAT") {
        return None;
    }
    text_label(label).filter(|label| label != "NO NAME")
}

fn text_label(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let label = text.trim_end_matches([' ', '\0']);
    (!label.is_empty()).then(|| label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fat16_boot(label: &[u8; 11]) -> Vec<u8> {
        let mut boot = vec![0u8; 512];
        boot[11..13].copy_from_slice(&512u16.to_le_bytes());
        boot[22..24].copy_from_slice(&8u16.to_le_bytes());
        boot[0x26] = 0x29;
        boot[0x2B..0x36].copy_from_slice(label);
        boot[0x36..0x3E].copy_from_slice(b"FAT16   ");
        boot[510] = 0x55;
        boot[511] = 0xAA;
        boot
    }

    #[test]
    fn reads_a_fat16_label() {
        assert_eq!(
            filesystem_label(&fat16_boot(b"config-2   ")),
            Some((FsType::Vfat, "config-2".to_owned()))
        );
        assert_eq!(filesystem_label(&fat16_boot(b"NO NAME    ")), None);
    }

    #[test]
    fn reads_an_iso9660_label() {
        let mut head = vec![0u8; HEAD_LEN];
        head[ISO_PVD_OFFSET] = 1;
        head[ISO_PVD_OFFSET + 1..ISO_PVD_OFFSET + 6].copy_from_slice(b"CD001");
        head[ISO_PVD_OFFSET + 6] = 1;
        let mut id = [b' '; 32];
        id[..6].copy_from_slice(b"cidata");
        head[ISO_PVD_OFFSET + 40..ISO_PVD_OFFSET + 72].copy_from_slice(&id);
        assert_eq!(
            filesystem_label(&head),
            Some((FsType::Iso9660, "cidata".to_owned()))
        );
    }

    #[test]
    fn reads_an_ext4_label() {
        let mut head = vec![0u8; HEAD_LEN];
        head[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        head[1024 + 120..1024 + 133].copy_from_slice(b"RANCHER_STATE");
        assert_eq!(
            filesystem_label(&head),
            Some((FsType::Ext4, "RANCHER_STATE".to_owned()))
        );
        head[1024 + 104..1024 + 120].copy_from_slice(&[
            0x6b, 0x4f, 0x2e, 0x0c, 0x1d, 0x2a, 0x4b, 0x3c, 0x9e, 0x8f, 0x01, 0x23, 0x45, 0x67,
            0x89, 0xab,
        ]);
        assert_eq!(
            ext_uuid(&head).as_deref(),
            Some("6b4f2e0c-1d2a-4b3c-9e8f-0123456789ab")
        );
        // Without the magic it is not ext.
        head[1024 + 56] = 0;
        assert_eq!(filesystem_label(&head), None);
        assert_eq!(ext_uuid(&head), None);
    }

    #[test]
    fn blank_and_short_devices_have_no_label() {
        assert_eq!(filesystem_label(&[]), None);
        assert_eq!(filesystem_label(&vec![0u8; HEAD_LEN]), None);
        assert_eq!(filesystem_label(&fat16_boot(b"config-2   ")[..100]), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024), at_pvd in any::<bool>()) {
            let head = if at_pvd {
                let mut head = vec![0u8; ISO_PVD_OFFSET];
                head.extend_from_slice(&bytes);
                head
            } else {
                bytes
            };
            let _ = filesystem_label(&head);
        }
    }
}
