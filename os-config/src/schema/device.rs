//! How a block device is named in the configuration: a path, `LABEL=` or
//! `UUID=` (`rancher.state.dev`, the first field of a `mounts` entry).
//! Checked when the configuration is read, so `dev: sda1` or `UUID=` is a
//! key-path error rather than a state partition never found at boot.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Why a device spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDevice {
    /// Neither an absolute path nor `LABEL=`/`UUID=`.
    #[error("`{0}` is not a device (an absolute path like /dev/sda1, LABEL=NAME or UUID=HEX)")]
    Form(String),
    /// `LABEL=` with nothing, or something no filesystem label holds.
    #[error("`{0}`: a label is 1 to 255 characters, without `/` or control characters")]
    Label(String),
    /// `UUID=` that is not hex digits and dashes.
    #[error("`{0}`: a UUID is hex digits and `-` (like 0a1b2c3d-… or ABCD-1234)")]
    Uuid(String),
}

/// What a [`DeviceSpec`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// A device node.
    Path(PathBuf),
    /// The filesystem with this label.
    Label(String),
    /// The filesystem with this UUID, in lower case.
    Uuid(String),
}

/// A block device as the configuration names it: the boot finds it by
/// its [`kind`](Self::kind) (init's `boot::state`), never by parsing the
/// text again; it shows as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    text: String,
    kind: DeviceKind,
}

impl DeviceSpec {
    /// What it names.
    pub fn kind(&self) -> &DeviceKind {
        &self.kind
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The checks of a `LABEL=` value, shared with `mounts`.
pub(crate) fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 255
        && !label.contains('/')
        && !label.chars().any(char::is_control)
}

/// The checks of a `UUID=` value, shared with `mounts`: ext4's 36
/// characters, vfat's `ABCD-1234`.
pub(crate) fn uuid_ok(uuid: &str) -> bool {
    let digits = uuid.bytes().filter(u8::is_ascii_hexdigit).count();
    digits >= 8 && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl TryFrom<String> for DeviceSpec {
    type Error = InvalidDevice;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let kind = if let Some(label) = text.strip_prefix("LABEL=") {
            if !label_ok(label) {
                return Err(InvalidDevice::Label(text));
            }
            DeviceKind::Label(label.to_owned())
        } else if let Some(uuid) = text.strip_prefix("UUID=") {
            if !uuid_ok(uuid) {
                return Err(InvalidDevice::Uuid(text));
            }
            DeviceKind::Uuid(uuid.to_ascii_lowercase())
        } else if text.starts_with('/') && text.len() > 1 && !text.contains('\0') {
            DeviceKind::Path(PathBuf::from(&text))
        } else {
            return Err(InvalidDevice::Form(text));
        };
        Ok(Self { text, kind })
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::try_from(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// `rancher.state.dev`: empty (as `rancher.state.dev=` on the command line
/// writes it) is not set.
pub(crate) fn optional_device<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DeviceSpec>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => DeviceSpec::try_from(text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<DeviceKind, InvalidDevice> {
        DeviceSpec::try_from(text.to_owned()).map(|s| s.kind().clone())
    }

    #[test]
    fn a_device_is_a_path_a_label_or_a_uuid() {
        assert_eq!(spec("/dev/vda1"), Ok(DeviceKind::Path("/dev/vda1".into())));
        assert_eq!(
            spec("LABEL=RANCHER_STATE"),
            Ok(DeviceKind::Label("RANCHER_STATE".into()))
        );
        assert_eq!(
            spec("UUID=AB000000-0000-0000-0000-000000000000"),
            Ok(DeviceKind::Uuid(
                "ab000000-0000-0000-0000-000000000000".into()
            ))
        );
        assert_eq!(
            spec("UUID=ABCD-1234"),
            Ok(DeviceKind::Uuid("abcd-1234".into()))
        );
    }

    #[test]
    fn what_the_boot_would_never_find_is_refused_by_its_form() {
        assert_eq!(spec("sda1"), Err(InvalidDevice::Form("sda1".into())));
        assert_eq!(spec("/"), Err(InvalidDevice::Form("/".into())));
        assert_eq!(spec("LABEL="), Err(InvalidDevice::Label("LABEL=".into())));
        assert_eq!(
            spec("LABEL=a/b"),
            Err(InvalidDevice::Label("LABEL=a/b".into()))
        );
        assert_eq!(spec("UUID="), Err(InvalidDevice::Uuid("UUID=".into())));
        assert_eq!(
            spec("UUID=not-a-uuid"),
            Err(InvalidDevice::Uuid("UUID=not-a-uuid".into()))
        );
    }
}
