//! GUIDs as GPT stores them: the first three fields little-endian, the
//! rest as bytes, printed the usual way (`C12A7328-F81F-11D2-…`).

use std::fmt;
use std::io::Read;
use std::str::FromStr;

/// A GUID in its on-disk byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

/// A GUID string that is not `8-4-4-4-12` hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a GUID (8-4-4-4-12 hex digits)")]
pub struct BadGuid(pub String);

impl Guid {
    /// The unused-entry type.
    pub const ZERO: Self = Self([0; 16]);

    /// A random (version 4) GUID from the kernel's generator.
    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Self::v4_from(bytes))
    }

    /// A version 4 GUID made of `bytes` (say, a hash): reproducible
    /// images get the same GUIDs every build.
    pub fn v4_from(mut bytes: [u8; 16]) -> Self {
        // Version 4 in the high nibble of the third field (stored
        // little-endian, so byte 7), variant 10 in byte 8.
        bytes[7] = (bytes[7] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }

    /// The GUID written `a-b-c-d[0..2]-d[2..8]`.
    pub const fn from_fields(a: u32, b: u16, c: u16, d: [u8; 8]) -> Self {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl FromStr for Guid {
    type Err = BadGuid;

    fn from_str(text: &str) -> Result<Self, BadGuid> {
        let bad = || BadGuid(text.to_owned());
        let fields: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = fields.iter().map(|f| f.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let hex: String = fields.concat();
        let mut big = [0u8; 16];
        for (i, byte) in big.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        let mut bytes = big;
        bytes[..4].reverse();
        bytes[4..6].reverse();
        bytes[6..8].reverse();
        Ok(Self(bytes))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02X}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guid_round_trips_through_its_text_in_mixed_endian_bytes() {
        let esp: Guid = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse().unwrap();
        assert_eq!(
            esp.0,
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert_eq!(esp.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(esp, crate::types::EFI_SYSTEM);
        // The BIOS boot type is "Hah!IdontNeedEFI" in on-disk order.
        assert_eq!(&crate::types::BIOS_BOOT.0, b"Hah!IdontNeedEFI");
        assert_eq!(
            crate::types::BIOS_BOOT.to_string(),
            "21686148-6449-6E6F-744E-656564454649"
        );
        // Lower case is read too.
        assert_eq!(
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".parse::<Guid>(),
            Ok(esp)
        );
    }

    #[test]
    fn malformed_guids_are_refused_naming_the_text() {
        for text in [
            "",
            "C12A7328F81F11D2BA4B00A0C93EC93B",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93G",
        ] {
            assert_eq!(text.parse::<Guid>(), Err(BadGuid(text.to_owned())));
        }
    }

    #[test]
    fn version_4_guids_carry_their_version_and_variant() {
        let guid = Guid::v4_from([0xff; 16]);
        let text = guid.to_string();
        assert_eq!(&text[14..15], "4", "{text}");
        assert_eq!(&text[19..20], "B", "{text}");
        assert_ne!(Guid::random().unwrap(), Guid::random().unwrap());
    }
}
