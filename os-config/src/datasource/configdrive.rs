//! `configdrive[:PATH]`: an OpenStack config drive, the disk labelled
//! `config-2` (vfat or iso9660) with `openstack/latest/user_data` and
//! `meta_data.json`; or those files under PATH when it is already mounted.

use super::DatasourceError;
use super::disk::DiskKind;
use crate::userdata::Metadata;

/// The config drive's names.
pub const CONFIG_DRIVE: DiskKind = DiskKind {
    name: "configdrive",
    label: "config-2",
    user_data: "openstack/latest/user_data",
    meta_data: "openstack/latest/meta_data.json",
    parse_meta_data: parse_meta_data_json,
};

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
    use crate::datasource::disk::read;
    use crate::userdata::Payload;

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
        assert!(read(&CONFIG_DRIVE, dir.path()).unwrap().is_none());
        let latest = dir.path().join("openstack/latest");
        std::fs::create_dir_all(&latest).unwrap();
        std::fs::write(latest.join("user_data"), "#!/bin/sh\necho hi\n").unwrap();
        let data = read(&CONFIG_DRIVE, dir.path()).unwrap().unwrap();
        assert_eq!(
            data.payload,
            Payload::Script(b"#!/bin/sh\necho hi\n".to_vec())
        );
        assert_eq!(data.metadata, Metadata::default());
    }
}
