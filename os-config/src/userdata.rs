//! What a datasource delivers: user-data (`#cloud-config` YAML, a `#!`
//! script, or gzip of either) and metadata (host name, instance id, SSH
//! keys). Metadata fills `hostname` and `ssh_authorized_keys` when the
//! user-data does not set them.

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_norway::Value;

use crate::check::{ConfigError, ConfigErrors, Warning, check_document_dropping, check_value};
use crate::layers::ConfigPaths;
use crate::schema::Hostname;
use crate::store::{Access, private_dir, write_file};

/// The largest user-data (or metadata file) accepted from any source, in
/// bytes, and the most gzip user-data may unpack to. The clouds' own caps
/// are far below it (EC2 16 KiB, Azure 64 KiB, GCE 256 KiB per value,
/// OpenStack 64 KiB); a cloud-config of 10^5 keys still fits. Past it the
/// source is reported and skipped and the boot goes on without it; no
/// source is read beyond it.
pub const MAX_USER_DATA: usize = 1 << 20;

/// Why user-data cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UserDataError {
    /// gzip that does not decompress.
    #[error("user-data looks like gzip but does not decompress: {0}")]
    Gzip(std::io::Error),
    /// gzip that unpacks to more than user-data may be.
    #[error("gzip user-data unpacks to more than {limit} bytes (the user-data cap); refused")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not a `#cloud-config` document or a `#!` script.
    #[error(
        "user-data is neither `#cloud-config` YAML nor a `#!` script (it starts with {start:?})"
    )]
    Unrecognised {
        /// Its first bytes.
        start: String,
    },
    /// `#cloud-config` text that is not UTF-8.
    #[error("#cloud-config user-data is not UTF-8")]
    NotUtf8,
    /// A cloud-config that does not check.
    #[error("user-data cloud-config is invalid:\n{0}")]
    Invalid(ConfigErrors),
    /// Saving it failed.
    #[error("cannot save user-data to {}: {source}", path.display())]
    Save {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The user-data part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Nothing (metadata only).
    Empty,
    /// A `#cloud-config` document.
    CloudConfig(String),
    /// A `#!` script, saved and run at `runcmd` time.
    Script(Vec<u8>),
}

impl Payload {
    /// Classifies raw user-data, decompressing gzip first.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, UserDataError> {
        let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
            let limit = MAX_USER_DATA;
            let mut out = Vec::new();
            // One byte past the limit tells a payload that is too large
            // from one that fits exactly.
            flate2::read::GzDecoder::new(bytes)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(UserDataError::Gzip)?;
            if out.len() > limit {
                return Err(UserDataError::TooLarge { limit });
            }
            out
        } else {
            bytes.to_vec()
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::Empty);
        }
        if bytes.starts_with(b"#!") {
            return Ok(Self::Script(bytes));
        }
        let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        if first_line.trim_ascii_end() == b"#cloud-config" {
            return String::from_utf8(bytes)
                .map(Self::CloudConfig)
                .map_err(|_| UserDataError::NotUtf8);
        }
        Err(UserDataError::Unrecognised {
            start: String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned(),
        })
    }
}

/// Facts about the instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Metadata {
    /// The host name the platform gave.
    pub hostname: Option<String>,
    /// The instance id.
    pub instance_id: Option<String>,
    /// The private IPv4 address.
    pub local_ipv4: Option<IpAddr>,
    /// SSH public keys.
    pub public_keys: Vec<String>,
}

/// What one datasource delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    /// The user-data.
    pub payload: Payload,
    /// The metadata.
    pub metadata: Metadata,
}

/// User-data made ready for the layers.
#[derive(Debug, Clone, PartialEq)]
pub struct UserConfig {
    /// The cloud-config tree, metadata filled in.
    pub value: Value,
    /// A script to run at `runcmd` time.
    pub script: Option<Vec<u8>>,
    /// What the checker warned about.
    pub warnings: Vec<Warning>,
    /// Invalid or unknown keys left out (with their lines in the
    /// user-data as delivered); the rest is saved and applies.
    pub dropped: Vec<ConfigError>,
}

impl UserData {
    /// Checks the cloud-config and fills `hostname` and
    /// `ssh_authorized_keys` from the metadata where the user did not.
    pub fn to_user_config(&self) -> Result<UserConfig, UserDataError> {
        let (checked, script) = match &self.payload {
            // Each invalid key is left out alone (and reported by the
            // caller from `dropped`); text that is no YAML mapping is
            // refused, so the user-data saved before stays.
            Payload::CloudConfig(text) => (
                check_document_dropping(text).map_err(UserDataError::Invalid)?,
                None,
            ),
            Payload::Script(script) => (
                check_value(Value::Null).map_err(UserDataError::Invalid)?,
                Some(script.clone()),
            ),
            Payload::Empty => (
                check_value(Value::Null).map_err(UserDataError::Invalid)?,
                None,
            ),
        };
        let mut value = checked.value;
        let Value::Mapping(map) = &mut value else {
            unreachable!("a checked document is a mapping");
        };
        if checked.config.hostname.is_none() {
            let valid = self
                .metadata
                .hostname
                .as_ref()
                .filter(|name| Hostname::try_from((*name).clone()).is_ok());
            if let Some(name) = valid {
                map.insert(Value::from("hostname"), Value::from(name.clone()));
            }
        }
        if checked.config.ssh_authorized_keys.is_empty() && !self.metadata.public_keys.is_empty() {
            let keys = self
                .metadata
                .public_keys
                .iter()
                .cloned()
                .map(Value::from)
                .collect();
            map.insert(Value::from("ssh_authorized_keys"), Value::Sequence(keys));
        }
        Ok(UserConfig {
            value,
            script,
            warnings: checked.warnings,
            dropped: checked.dropped,
        })
    }

    /// Saves the user-data where the layers and `runcmd` find it: the
    /// cloud-config as `cloud-config.d/user-data.yml`, a script as
    /// `cloud-config-script`, the metadata as JSON. They may hold secrets
    /// (the join token, passwords), so the files are created 0600 (the
    /// script 0700) in directories only root enters.
    pub fn save(&self, paths: &ConfigPaths) -> Result<UserConfig, UserDataError> {
        let user_config = self.to_user_config()?;
        let save = |path: PathBuf, bytes: &[u8], access: Access| {
            write_file(&path, bytes, access).map_err(|source| UserDataError::Save { path, source })
        };
        // The conf directory first: user-data.yml is a level below it.
        let conf_dir = paths.conf_dir();
        private_dir(&conf_dir).map_err(|source| UserDataError::Save {
            path: conf_dir,
            source,
        })?;
        let text = serde_norway::to_string(&user_config.value).unwrap_or_default();
        save(paths.user_data_file(), text.as_bytes(), Access::Private)?;
        let script_path = paths.user_script_file();
        if let Some(script) = &user_config.script {
            save(script_path, script, Access::PrivateExecutable)?;
        } else if let Err(source) = std::fs::remove_file(&script_path)
            // The script of earlier user-data would otherwise still run.
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(UserDataError::Save {
                path: script_path,
                source,
            });
        }
        let metadata = serde_json::to_vec_pretty(&self.metadata).unwrap_or_default();
        save(paths.metadata_file(), &metadata, Access::Private)?;
        Ok(user_config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn classifies_user_data() {
        let cloud = b"#cloud-config\nhostname: a\n";
        assert_eq!(
            Payload::from_bytes(cloud).unwrap(),
            Payload::CloudConfig(String::from_utf8(cloud.to_vec()).unwrap())
        );
        assert_eq!(
            Payload::from_bytes(&gzip(cloud)).unwrap(),
            Payload::from_bytes(cloud).unwrap()
        );
        let script = b"#!/bin/sh\necho hi\n";
        assert_eq!(
            Payload::from_bytes(&gzip(script)).unwrap(),
            Payload::Script(script.to_vec())
        );
        assert_eq!(Payload::from_bytes(b" \n").unwrap(), Payload::Empty);
        assert!(matches!(
            Payload::from_bytes(b"hostname: a"),
            Err(UserDataError::Unrecognised { .. })
        ));
        assert!(matches!(
            Payload::from_bytes(&[0x1f, 0x8b, 0, 1]),
            Err(UserDataError::Gzip(_))
        ));
    }

    #[test]
    fn gzip_that_unpacks_past_the_limit_is_refused_not_cut_short() {
        let limit = MAX_USER_DATA;
        let mut script = b"#!/bin/sh\n".to_vec();
        script.resize(limit, b'#');
        assert_eq!(
            Payload::from_bytes(&gzip(&script)).unwrap(),
            Payload::Script(script.clone())
        );
        script.push(b'#');
        let error = Payload::from_bytes(&gzip(&script)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "gzip user-data unpacks to more than {limit} bytes (the user-data cap); refused"
            )
        );
    }

    fn with_unknown_keys(count: usize) -> (UserConfig, std::time::Duration) {
        let mut text = String::from("#cloud-config\nhostname: kept\n");
        text.extend((0..count).map(|i| format!("u{i}: 0\n")));
        let data = UserData {
            payload: Payload::from_bytes(text.as_bytes()).unwrap(),
            metadata: Metadata::default(),
        };
        let started = std::time::Instant::now();
        let config = data.to_user_config().unwrap();
        (config, started.elapsed())
    }

    #[test]
    fn user_data_with_a_hundred_thousand_unknown_keys_applies_the_rest_in_brief() {
        let (config, took) = with_unknown_keys(100_000);
        let expected: Value = serde_norway::from_str("hostname: kept").unwrap();
        assert_eq!(config.value, expected);
        // 50 listed with their lines, one more says how many others.
        assert_eq!(config.dropped.len(), crate::check::MAX_LISTED + 1);
        assert_eq!(config.dropped[0].to_string(), "line 3: unknown key `u0`");
        assert_eq!(
            config.dropped[50].to_string(),
            "line 53: `u50`: and 99950 more unknown keys from here on, left out without being listed"
        );
        // Linear in the number of keys: ten times the keys, about ten
        // times the time (it was quadratic: a line search and a removal
        // per key, 90 s here unoptimised).
        let (_, tenth) = with_unknown_keys(10_000);
        assert!(
            took < tenth * 30,
            "{took:?} for 10^5 keys, {tenth:?} for 10^4"
        );
    }

    #[test]
    fn an_alias_bomb_in_user_data_is_refused_with_what_it_is() {
        let mut text = format!("#cloud-config\nhostname: &a {}\nx: [", "x".repeat(60_000));
        text.push_str(&"*a,".repeat(100_000));
        text.push_str("]\n");
        let data = UserData {
            payload: Payload::from_bytes(text.as_bytes()).unwrap(),
            metadata: Metadata::default(),
        };
        let error = data.to_user_config().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "user-data cloud-config is invalid:\nYAML syntax error: the document expands to more than {} bytes of text through 69 aliases; refused (an alias bomb, or far too large)",
                crate::parse::yaml::MAX_TEXT
            )
        );
    }

    #[test]
    fn metadata_fills_what_the_user_left_out() {
        let metadata = Metadata {
            hostname: Some("ip-10-0-0-5".into()),
            public_keys: vec!["ssh-ed25519 AAAA meta".into()],
            ..Metadata::default()
        };
        let from_metadata = UserData {
            payload: Payload::CloudConfig("#cloud-config\nrancher: {debug: true}\n".into()),
            metadata: metadata.clone(),
        };
        let expected: Value = serde_norway::from_str(
            "rancher: {debug: true}\nhostname: ip-10-0-0-5\nssh_authorized_keys: [ssh-ed25519 AAAA meta]",
        )
        .unwrap();
        assert_eq!(from_metadata.to_user_config().unwrap().value, expected);

        let user_wins = UserData {
            payload: Payload::CloudConfig(
                "#cloud-config\nhostname: mine\nssh_authorized_keys: [ssh-rsa BBBB me]\n".into(),
            ),
            metadata,
        };
        let expected: Value =
            serde_norway::from_str("hostname: mine\nssh_authorized_keys: [ssh-rsa BBBB me]")
                .unwrap();
        assert_eq!(user_wins.to_user_config().unwrap().value, expected);
    }

    #[test]
    fn saves_cloud_config_script_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths::under(dir.path());
        let data = UserData {
            payload: Payload::Script(b"#!/bin/sh\ntrue\n".to_vec()),
            metadata: Metadata {
                hostname: Some("node-7".into()),
                ..Metadata::default()
            },
        };
        data.save(&paths).unwrap();
        assert_eq!(
            std::fs::read(paths.user_script_file()).unwrap(),
            b"#!/bin/sh\ntrue\n"
        );
        assert_eq!(
            std::fs::read_to_string(paths.user_data_file()).unwrap(),
            "hostname: node-7\n"
        );
        let metadata: serde_json::Value =
            serde_json::from_slice(&std::fs::read(paths.metadata_file()).unwrap()).unwrap();
        assert_eq!(metadata["hostname"], "node-7");
        // The saved file is a layer like any other.
        let layers = crate::layers::Layers::load_with_cmdline(&paths, None);
        assert_eq!(
            layers.merged().unwrap().config.hostname.unwrap().as_str(),
            "node-7"
        );
        // Cloud-config saved later: the earlier script goes.
        let later = UserData {
            payload: Payload::CloudConfig("#cloud-config\nhostname: node-8\n".into()),
            metadata: Metadata::default(),
        };
        later.save(&paths).unwrap();
        assert!(!paths.user_script_file().exists());
    }
}
