//! `nocloud[:PATH]`: a NoCloud seed, the disk labelled `cidata` (vfat or
//! iso9660) with `user-data` and `meta-data`; or those files under PATH.

use serde_norway::Value;

use super::DatasourceError;
use super::disk::DiskKind;
use crate::userdata::Metadata;

/// The NoCloud seed's names.
pub const NO_CLOUD: DiskKind = DiskKind {
    name: "nocloud",
    label: "cidata",
    user_data: "user-data",
    meta_data: "meta-data",
    parse_meta_data,
};

/// NoCloud `meta-data` (YAML): `instance-id`, `local-hostname` (or
/// `hostname`), `public-keys` as a string, a list or a map.
pub fn parse_meta_data(bytes: &[u8]) -> Result<Metadata, DatasourceError> {
    let error = |reason: String| DatasourceError::Metadata {
        path: "meta-data".to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| error(e.to_string()))?;
    crate::parse::yaml::scan(text).map_err(|e| error(e.to_string()))?;
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
        let bomb = format!(
            "big: &a {}\nkeys: [{}]",
            "k".repeat(50_000),
            "*a,".repeat(100)
        );
        let error = parse_meta_data(bomb.as_bytes()).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "meta-data: metadata does not parse: the document expands to more than"
            ),
            "{error}"
        );
    }
}
