//! `configdrive[:PATH]`: an OpenStack config drive, the disk labelled
//! `config-2` (vfat or iso9660) with `openstack/latest/user_data` and
//! `meta_data.json`; or those files under PATH when it is already mounted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::{BlockDevices, Mounter, find_by_label, with_mounted};
use super::file::read_optional;
use super::{BoxFuture, Datasource, DatasourceError, Environment};
use crate::userdata::{Metadata, Payload, UserData};

/// The filesystem label of a config drive.
pub const LABEL: &str = "config-2";

/// `configdrive[:PATH]`.
#[derive(Debug, Clone)]
pub struct ConfigDrive {
    path: Option<PathBuf>,
    block_devices: Arc<dyn BlockDevices>,
    mounter: Arc<dyn Mounter>,
    mount_point: PathBuf,
}

impl ConfigDrive {
    /// The source: PATH if given, else the labelled disk.
    pub fn new(path: Option<String>, env: &Environment) -> Self {
        Self {
            path: path.map(PathBuf::from),
            block_devices: Arc::clone(&env.block_devices),
            mounter: Arc::clone(&env.mounter),
            mount_point: env.mount_dir.join("configdrive"),
        }
    }
}

impl Datasource for ConfigDrive {
    fn name(&self) -> String {
        match &self.path {
            Some(path) => format!("configdrive:{}", path.display()),
            None => "configdrive".to_owned(),
        }
    }

    fn needs_network(&self) -> bool {
        false
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        Box::pin(async move {
            if let Some(path) = &self.path {
                return read_config_drive(path);
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
                read_config_drive,
            )
            .map_err(|source| DatasourceError::Mount {
                device,
                target: self.mount_point.clone(),
                source,
            })?
        })
    }
}

/// Reads a config drive's files under `root`.
pub fn read_config_drive(root: &Path) -> Result<Option<UserData>, DatasourceError> {
    let latest = root.join("openstack/latest");
    let user_data = read_optional(&latest.join("user_data"))?;
    let meta_data = read_optional(&latest.join("meta_data.json"))?;
    if user_data.is_none() && meta_data.is_none() {
        return Ok(None);
    }
    let payload = match user_data {
        Some(bytes) => Payload::from_bytes(&bytes)?,
        None => Payload::Empty,
    };
    let metadata = match meta_data {
        Some(bytes) => parse_meta_data_json(&bytes)?,
        None => Metadata::default(),
    };
    Ok(Some(UserData { payload, metadata }))
}

/// OpenStack `meta_data.json`: `hostname`, `uuid`, `public_keys` (a map of
/// name to key).
pub fn parse_meta_data_json(bytes: &[u8]) -> Result<Metadata, DatasourceError> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DatasourceError::Metadata {
            path: "openstack/latest/meta_data.json".to_owned(),
            reason: e.to_string(),
        })?;
    let text = |key: &str| json.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let public_keys = match json.get("public_keys") {
        Some(serde_json::Value::Object(keys)) => keys
            .values()
            .filter_map(|key| key.as_str())
            .map(|key| key.trim().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    Ok(Metadata {
        hostname: text("hostname"),
        instance_id: text("uuid"),
        local_ipv4: None,
        public_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meta_data_json() {
        let metadata = parse_meta_data_json(
            br#"{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "vm-1.novalocal",
                "public_keys": {"mykey": "ssh-rsa AAAA me\n"}, "name": "vm-1"}"#,
        )
        .unwrap();
        assert_eq!(metadata.hostname.as_deref(), Some("vm-1.novalocal"));
        assert_eq!(
            metadata.instance_id.as_deref(),
            Some("83679162-1378-4288-a2d4-70e13ec132aa")
        );
        assert_eq!(metadata.public_keys, ["ssh-rsa AAAA me"]);
        assert!(matches!(
            parse_meta_data_json(b"{not json"),
            Err(DatasourceError::Metadata { .. })
        ));
    }

    #[test]
    fn reads_a_mounted_directory_and_nothing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_config_drive(dir.path()).unwrap().is_none());
        let latest = dir.path().join("openstack/latest");
        std::fs::create_dir_all(&latest).unwrap();
        std::fs::write(latest.join("user_data"), "#!/bin/sh\necho hi\n").unwrap();
        let data = read_config_drive(dir.path()).unwrap().unwrap();
        assert_eq!(
            data.payload,
            Payload::Script(b"#!/bin/sh\necho hi\n".to_vec())
        );
        assert_eq!(data.metadata, Metadata::default());
    }
}
