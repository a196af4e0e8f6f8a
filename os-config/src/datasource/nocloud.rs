//! `nocloud[:PATH]`: a NoCloud seed, the disk labelled `cidata` (vfat or
//! iso9660) with `user-data` and `meta-data`; or those files under PATH.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_norway::Value;

use super::block::{BlockDevices, Mounter, find_by_label, with_mounted};
use super::file::read_optional;
use super::{BoxFuture, Datasource, DatasourceError, Environment};
use crate::userdata::{Metadata, Payload, UserData};

/// The filesystem label of a NoCloud seed.
pub const LABEL: &str = "cidata";

/// `nocloud[:PATH]`.
#[derive(Debug, Clone)]
pub struct NoCloud {
    path: Option<PathBuf>,
    block_devices: Arc<dyn BlockDevices>,
    mounter: Arc<dyn Mounter>,
    mount_point: PathBuf,
}

impl NoCloud {
    /// The source: PATH if given, else the labelled disk.
    pub fn new(path: Option<String>, env: &Environment) -> Self {
        Self {
            path: path.map(PathBuf::from),
            block_devices: Arc::clone(&env.block_devices),
            mounter: Arc::clone(&env.mounter),
            mount_point: env.mount_dir.join("nocloud"),
        }
    }
}

impl Datasource for NoCloud {
    fn name(&self) -> String {
        match &self.path {
            Some(path) => format!("nocloud:{}", path.display()),
            None => "nocloud".to_owned(),
        }
    }

    fn needs_network(&self) -> bool {
        false
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        Box::pin(async move {
            if let Some(path) = &self.path {
                return read_seed(path);
            }
            let found = find_by_label(self.block_devices.as_ref(), LABEL).map_err(|source| {
                DatasourceError::Io {
                    path: PathBuf::from("/sys/class/block"),
                    source,
                }
            })?;
            let Some((device, fs_type)) = found else {
                return Ok(None);
            };
            with_mounted(
                self.mounter.as_ref(),
                &device,
                fs_type,
                &self.mount_point,
                read_seed,
            )
            .map_err(|source| DatasourceError::Mount {
                device,
                target: self.mount_point.clone(),
                source,
            })?
        })
    }
}

/// Reads a NoCloud seed's files under `root`.
pub fn read_seed(root: &Path) -> Result<Option<UserData>, DatasourceError> {
    let user_data = read_optional(&root.join("user-data"))?;
    let meta_data = read_optional(&root.join("meta-data"))?;
    if user_data.is_none() && meta_data.is_none() {
        return Ok(None);
    }
    let payload = match user_data {
        Some(bytes) => Payload::from_bytes(&bytes)?,
        None => Payload::Empty,
    };
    let metadata = match meta_data {
        Some(bytes) => parse_meta_data(&bytes)?,
        None => Metadata::default(),
    };
    Ok(Some(UserData { payload, metadata }))
}

/// NoCloud `meta-data` (YAML): `instance-id`, `local-hostname` (or
/// `hostname`), `public-keys` as a string, a list or a map.
pub fn parse_meta_data(bytes: &[u8]) -> Result<Metadata, DatasourceError> {
    let error = |reason: String| DatasourceError::Metadata {
        path: "meta-data".to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| error(e.to_string()))?;
    let yaml: Value = serde_norway::from_str(text).map_err(|e| error(e.to_string()))?;
    let text = |key: &str| yaml.get(key).and_then(Value::as_str).map(str::to_owned);
    let public_keys = match yaml.get("public-keys") {
        Some(Value::String(key)) => vec![key.trim().to_owned()],
        Some(Value::Sequence(keys)) => keys
            .iter()
            .filter_map(Value::as_str)
            .map(|k| k.trim().to_owned())
            .collect(),
        Some(Value::Mapping(keys)) => keys
            .values()
            .filter_map(Value::as_str)
            .map(|k| k.trim().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    Ok(Metadata {
        hostname: text("local-hostname").or_else(|| text("hostname")),
        instance_id: text("instance-id"),
        local_ipv4: None,
        public_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meta_data_in_its_forms() {
        let metadata = parse_meta_data(
            b"instance-id: iid-local01\nlocal-hostname: cloudimg\npublic-keys: [ssh-rsa AAAA a]\n",
        )
        .unwrap();
        assert_eq!(metadata.instance_id.as_deref(), Some("iid-local01"));
        assert_eq!(metadata.hostname.as_deref(), Some("cloudimg"));
        assert_eq!(metadata.public_keys, ["ssh-rsa AAAA a"]);
        let single = parse_meta_data(b"hostname: h\npublic-keys: ssh-ed25519 BBBB b\n").unwrap();
        assert_eq!(
            (single.hostname.as_deref(), single.public_keys.len()),
            (Some("h"), 1)
        );
        assert!(matches!(
            parse_meta_data(b"a: [unclosed"),
            Err(DatasourceError::Metadata { .. })
        ));
    }
}
