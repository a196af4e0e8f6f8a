//! Top-level cloud-config entries about files and commands: `write_files`,
//! `mounts`, `runcmd` and `bootcmd`.

use std::io::Read;

use base64::Engine as _;
use serde::Deserialize;

use super::newtypes::{AbsolutePath, FileMode};
use super::scalar::StringOrList;

/// Why `write_files` content does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The base64 text is not base64.
    #[error("content is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not gzip.
    #[error("content is not valid gzip: {0}")]
    Gzip(#[from] std::io::Error),
}

/// How `write_files` content is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// The content is the file.
    #[default]
    Plain,
    /// `b64`, `base64`.
    Base64,
    /// `gz`, `gzip`: gzip bytes, written as YAML `!!binary`.
    Gzip,
    /// `gz+b64`, `gzip+base64`, …: base64 of gzip.
    GzipBase64,
}

impl<'de> Deserialize<'de> for Encoding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "" | "text/plain" => Ok(Self::Plain),
            "b64" | "base64" => Ok(Self::Base64),
            "gz" | "gzip" => Ok(Self::Gzip),
            "gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64" => Ok(Self::GzipBase64),
            _ => Err(serde::de::Error::custom(format!(
                "`{text}` is not an encoding (b64, base64, gz, gzip, gz+b64, gz+base64, gzip+b64, gzip+base64)"
            ))),
        }
    }
}

/// One `write_files` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    /// Where the file goes.
    pub path: AbsolutePath,
    /// The (encoded) content.
    #[serde(default)]
    pub content: String,
    /// How `content` is encoded.
    #[serde(default)]
    pub encoding: Encoding,
    /// `user[:group]`, numbers or names the image has.
    #[serde(default)]
    pub owner: Option<super::owner::Owner>,
    /// Mode bits.
    #[serde(default)]
    pub permissions: Option<FileMode>,
    /// The service whose root gets the file instead of the machine's
    /// (RancherOS's `container:`): written under `/run/ros/files/<service>`
    /// and bound read-only over `path` when the service starts.
    #[serde(default)]
    pub container: Option<String>,
}

impl WriteFile {
    /// The bytes to write, decoded.
    pub fn decoded_content(&self) -> Result<Vec<u8>, DecodeError> {
        let base64 = |text: &str| {
            // Long base64 is often folded over lines in YAML.
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(compact)
        };
        let gunzip = |bytes: &[u8]| -> Result<Vec<u8>, DecodeError> {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
            Ok(out)
        };
        match self.encoding {
            Encoding::Plain => Ok(self.content.as_bytes().to_vec()),
            Encoding::Base64 => Ok(base64(&self.content)?),
            Encoding::Gzip => {
                // YAML `!!binary` reaches us as its base64 text.
                let raw = self.content.as_bytes();
                if raw.starts_with(&[0x1f, 0x8b]) {
                    gunzip(raw)
                } else {
                    gunzip(&base64(&self.content)?)
                }
            }
            Encoding::GzipBase64 => gunzip(&base64(&self.content)?),
        }
    }
}

/// One `mounts` entry: `[device, mountpoint, fstype, options]`, as
/// RancherOS read it: `swap` entries (any mount point, `none` included)
/// are turned on with swapon, `LABEL=`/`UUID=` sources name a filesystem,
/// type `auto` (or empty) is probed. cloud-init's fifth and sixth fields
/// are accepted and ignored (the checker warns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// What to mount (`/dev/vdb`, `LABEL=data`, `UUID=…`, `server:/export`).
    pub device: String,
    /// Where; ignored for swap; empty or `none` mounts nothing.
    pub mount_point: String,
    /// Filesystem type; `auto` or empty is probed; `swap` is swap.
    pub fstype: String,
    /// Mount options, comma-separated.
    pub options: String,
}

/// What a `mounts` entry's first field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A path or anything else, as written (`/dev/vdb`, `server:/export`,
    /// a directory to bind).
    Path(String),
    /// `LABEL=…`: the filesystem with this label.
    Label(String),
    /// `UUID=…`: the filesystem with this UUID.
    Uuid(String),
}

impl Mount {
    /// The source, `LABEL=` and `UUID=` told apart.
    pub fn source(&self) -> MountSource {
        if let Some(label) = self.device.strip_prefix("LABEL=") {
            MountSource::Label(label.to_owned())
        } else if let Some(uuid) = self.device.strip_prefix("UUID=") {
            MountSource::Uuid(uuid.to_owned())
        } else {
            MountSource::Path(self.device.clone())
        }
    }

    /// A swap entry: the source is turned on as swap, the mount point is
    /// not used.
    pub fn is_swap(&self) -> bool {
        self.fstype == "swap"
    }

    /// The filesystem type is to be found by probing the source.
    pub fn probes_fstype(&self) -> bool {
        self.fstype.is_empty() || self.fstype == "auto"
    }

    /// Not swap, and no mount point (empty or `none`): nothing to do.
    pub fn skipped(&self) -> bool {
        !self.is_swap() && (self.mount_point.is_empty() || self.mount_point == "none")
    }
}

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields: Vec<Option<super::scalar::ScalarText>> = Vec::deserialize(deserializer)?;
        let fields: Vec<String> = fields
            .into_iter()
            .map(|f| f.map(|super::scalar::ScalarText(t)| t).unwrap_or_default())
            .collect();
        if !(4..=6).contains(&fields.len()) {
            return Err(serde::de::Error::custom(format!(
                "a mount is a list of 4 entries [device, mountpoint, fstype, options], not {}",
                fields.len()
            )));
        }
        let mut fields = fields.into_iter();
        let mut next = || fields.next().unwrap_or_default();
        let (device, mount_point, fstype, options) = (next(), next(), next(), next());
        let nothing = mount_point.is_empty() || mount_point == "none";
        if !nothing && fstype != "swap" {
            if let Some(problem) = mount_point_problem(&mount_point) {
                return Err(serde::de::Error::custom(format!(
                    "mount point `{mount_point}` {problem}"
                )));
            }
            if device.is_empty() {
                return Err(serde::de::Error::custom(format!(
                    "nothing to mount on `{mount_point}`: the device is empty"
                )));
            }
        }
        if let Some(label) = device.strip_prefix("LABEL=")
            && !super::device::label_ok(label)
        {
            return Err(serde::de::Error::custom(
                super::device::InvalidDevice::Label(device),
            ));
        }
        if let Some(uuid) = device.strip_prefix("UUID=")
            && !super::device::uuid_ok(uuid)
        {
            return Err(serde::de::Error::custom(
                super::device::InvalidDevice::Uuid(device),
            ));
        }
        Ok(Self {
            device,
            mount_point,
            fstype,
            options,
        })
    }
}

/// What is wrong with a mount point, checked here rather than when the
/// boot mounts: a relative path would land wherever PID 1 stands, `..`
/// could climb out of where it seems to go, and `/` would hide the system.
fn mount_point_problem(mount_point: &str) -> Option<&'static str> {
    if !mount_point.starts_with('/') {
        Some("is not an absolute path (or empty or `none`)")
    } else if mount_point.contains('\0') {
        Some("contains a NUL byte")
    } else if mount_point
        .split('/')
        .any(|part| part == "." || part == "..")
    {
        Some("has a `.` or `..` component")
    } else if mount_point.trim_end_matches('/').is_empty() {
        Some("is the root: mounting there would hide the whole system")
    } else {
        None
    }
}

/// A `runcmd`/`bootcmd` entry: a string runs through `sh -c`, a list is an argv.
pub type Command = StringOrList;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn file(encoding: &str, content: &str) -> WriteFile {
        let yaml = format!("path: /etc/x\nencoding: {encoding}\ncontent: \"{content}\"");
        serde_norway::from_str(&yaml).unwrap()
    }

    #[test]
    fn decodes_every_encoding() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let gz_b64 = b64.encode(gzip(b"hello\n"));
        for (encoding, content) in [
            ("''", "hello\\n".to_owned()),
            ("b64", b64.encode("hello\n")),
            ("base64", b64.encode("hello\n")),
            ("gz+b64", gz_b64.clone()),
            ("gzip+base64", gz_b64.clone()),
            ("gz+base64", gz_b64.clone()),
            ("gzip+b64", gz_b64),
        ] {
            assert_eq!(
                file(encoding, &content).decoded_content().unwrap(),
                b"hello\n",
                "{encoding}"
            );
        }
    }

    #[test]
    fn refuses_unknown_encodings_and_bad_content() {
        let error = serde_norway::from_str::<WriteFile>("path: /x\nencoding: rot13").unwrap_err();
        assert!(error.to_string().contains("gz+b64"), "{error}");
        assert!(matches!(
            file("b64", "!!!").decoded_content(),
            Err(DecodeError::Base64(_))
        ));
        assert!(matches!(
            file("gz+b64", "aGVsbG8=").decoded_content(),
            Err(DecodeError::Gzip(_))
        ));
    }

    #[test]
    fn mounts_take_swap_labels_uuids_and_auto_as_rancheros_did() {
        let mount = |yaml: &str| serde_norway::from_str::<Mount>(yaml).unwrap();
        let swap = mount("[/dev/vdc, none, swap, sw]");
        assert!(swap.is_swap() && !swap.skipped());
        assert_eq!(swap.source(), MountSource::Path("/dev/vdc".into()));
        assert!(mount("[LABEL=SWAP, '', swap, '']").is_swap());
        let by_label = mount("[LABEL=data, /mnt/data, auto, defaults]");
        assert_eq!(by_label.source(), MountSource::Label("data".into()));
        assert!(by_label.probes_fstype() && !by_label.skipped());
        let by_uuid = mount("[UUID=0a1b-2c3d, /mnt/u, '', '', 0, 2]");
        assert_eq!(by_uuid.source(), MountSource::Uuid("0a1b-2c3d".into()));
        assert!(by_uuid.probes_fstype());
        assert!(mount("[/dev/vdb, none, ext4, '']").skipped());
        let error = serde_norway::from_str::<Mount>("[/dev/vdb, data, ext4, '']").unwrap_err();
        assert!(error.to_string().contains("absolute"), "{error}");
    }

    #[test]
    fn mounts_are_four_entries() {
        let mount: Mount = serde_norway::from_str("[/dev/vdb, /mnt/data, ext4, '']").unwrap();
        assert_eq!(mount.mount_point, "/mnt/data");
        let error = serde_norway::from_str::<Mount>("[/dev/vdb, /mnt/data]").unwrap_err();
        assert!(error.to_string().contains("4 entries"), "{error}");
    }

    #[test]
    fn a_mount_the_boot_could_not_make_is_refused_when_read() {
        let refused = |yaml: &str| {
            serde_norway::from_str::<Mount>(yaml)
                .unwrap_err()
                .to_string()
        };
        assert!(
            refused("[/dev/vdb, mnt, ext4, '']")
                .contains("mount point `mnt` is not an absolute path")
        );
        assert!(refused("[/dev/vdb, /mnt/../etc, ext4, '']").contains("`..` component"));
        assert!(refused("[/dev/vdb, /, ext4, '']").contains("is the root"));
        assert!(refused("['', /mnt/x, ext4, '']").contains("the device is empty"));
        assert!(refused("[LABEL=, /mnt/x, auto, '']").contains("a label is 1 to 255"));
        assert!(refused("[UUID=xyz, /mnt/x, auto, '']").contains("a UUID is hex digits"));
        // Swap and skipped entries keep whatever mount point RancherOS took.
        let read = |yaml: &str| serde_norway::from_str::<Mount>(yaml).unwrap();
        assert!(read("[/swapfile, swap, swap, sw]").is_swap());
        assert!(read("['', none, ext4, '']").skipped());
    }
}
