//! What a registry or the content store hands back: an index (manifest
//! list) naming one manifest per platform, an image manifest naming a
//! config and layers, and the config with the layers' diff IDs and the
//! image's default process. Docker's schema 2 and OCI's media types are
//! both understood; schema 1 is not (registries stopped serving it).

use std::fmt;

use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The manifest media types asked for, in the `Accept` header.
pub const ACCEPTED: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// A content descriptor, as manifests hold them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// An image manifest: one platform's config and layers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An index (Docker: manifest list): a manifest per platform.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest and the media type it goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Index {
        media_type: String,
        index: Index,
    },
    Image {
        media_type: String,
        manifest: ImageManifest,
    },
}

/// Why a manifest or config could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} is not valid JSON of its kind: {message}")]
    Json { what: &'static str, message: String },
    #[error("schema version {0} manifests are not supported (only schema 2 and OCI)")]
    Schema(i64),
    #[error("media type {0:?} is neither an image manifest nor an index")]
    MediaType(String),
    #[error("no manifest for {wanted} in the index; it has {}", available.join(", "))]
    NoPlatform {
        wanted: Platform,
        available: Vec<String>,
    },
    #[error("the config lists {diff_ids} layer diff IDs but the manifest {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
}

/// Only the fields that tell which kind a manifest is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kind {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
}

fn json<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, ManifestError> {
    serde_json::from_slice(bytes).map_err(|e| ManifestError::Json {
        what,
        message: e.to_string(),
    })
}

impl Manifest {
    /// Parses a manifest or an index. The `mediaType` field decides; an
    /// OCI document without it is an index when it has `manifests`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let kind: Kind = json("the manifest", bytes)?;
        if let Some(version) = kind.schema_version
            && version != 2
        {
            return Err(ManifestError::Schema(version));
        }
        let media_type = match kind.media_type {
            Some(media_type) => media_type,
            None if kind.manifests.is_some() => OCI_INDEX.to_string(),
            None => OCI_MANIFEST.to_string(),
        };
        match media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(Self::Index {
                index: json("the index", bytes)?,
                media_type,
            }),
            OCI_MANIFEST | DOCKER_MANIFEST => Ok(Self::Image {
                manifest: json("the image manifest", bytes)?,
                media_type,
            }),
            _ => Err(ManifestError::MediaType(media_type)),
        }
    }

    pub fn media_type(&self) -> &str {
        match self {
            Self::Index { media_type, .. } | Self::Image { media_type, .. } => media_type,
        }
    }
}

/// An OS and CPU, in Go's names (`linux/amd64`, `linux/arm/v7`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The machine this runs on: Linux and Go's name for the CPU.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// The variant, with arm64's implied `v8` made explicit.
    fn variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            (_, variant) => variant,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The index entry to pull for `wanted`: the same OS and CPU, the same
/// variant when one is asked for, else the entry without a variant (then
/// the first). Entries without a platform (attestations) never match.
pub fn select<'a>(index: &'a Index, wanted: &Platform) -> Result<&'a Descriptor, ManifestError> {
    let candidates: Vec<(&Descriptor, &Platform)> = index
        .manifests
        .iter()
        .filter_map(|entry| entry.platform.as_ref().map(|p| (entry, p)))
        .filter(|(_, p)| p.os == wanted.os && p.architecture == wanted.architecture)
        .collect();
    let chosen = match wanted.variant() {
        Some(variant) => candidates
            .iter()
            .find(|(_, p)| p.variant() == Some(variant)),
        None => candidates
            .iter()
            .find(|(_, p)| p.variant.is_none())
            .or_else(|| candidates.first()),
    };
    chosen
        .map(|(entry, _)| *entry)
        .ok_or_else(|| ManifestError::NoPlatform {
            wanted: wanted.clone(),
            available: index
                .manifests
                .iter()
                .map(|e| match &e.platform {
                    Some(p) => p.to_string(),
                    None => format!("{} (no platform)", e.digest),
                })
                .collect(),
        })
}

/// The parts of an image config this system uses: the layers' diff IDs
/// and the process to run when a service names none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// Uncompressed layer digests, lowest first.
    pub diff_ids: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as in the image.
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    config: Option<RawProcess>,
    rootfs: RawRootfs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawProcess {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RawRootfs {
    diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Parses an OCI or Docker image config.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let raw: RawConfig = json("the image config", bytes)?;
        let process = raw.config.unwrap_or_default();
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(Self {
            diff_ids: raw.rootfs.diff_ids,
            entrypoint: process.entrypoint.unwrap_or_default(),
            cmd: process.cmd.unwrap_or_default(),
            env: process.env.unwrap_or_default(),
            working_dir: non_empty(process.working_dir),
            user: non_empty(process.user),
        })
    }

    /// The argv Docker would run: the entrypoint followed by `command`
    /// when the service gives one, else by the image's cmd.
    pub fn argv(&self, command: Option<&[String]>) -> Vec<String> {
        let mut argv = self.entrypoint.clone();
        argv.extend_from_slice(command.unwrap_or(&self.cmd));
        argv
    }

    /// Checks the config against its manifest: one diff ID per layer.
    pub fn check_layers(&self, manifest: &ImageManifest) -> Result<(), ManifestError> {
        if self.diff_ids.len() == manifest.layers.len() {
            Ok(())
        } else {
            Err(ManifestError::LayerCount {
                diff_ids: self.diff_ids.len(),
                layers: manifest.layers.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/image/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn index(name: &str) -> Index {
        match Manifest::parse(&fixture(name)).unwrap() {
            Manifest::Index { index, .. } => index,
            other => panic!("{name} is not an index: {other:?}"),
        }
    }

    fn platform(text: &str) -> Platform {
        let mut parts = text.split('/');
        Platform {
            os: parts.next().unwrap().into(),
            architecture: parts.next().unwrap().into(),
            variant: parts.next().map(Into::into),
        }
    }

    #[test]
    fn docker_manifest_list_selects_linux_amd64() {
        let list = index("docker-manifest-list.json");
        let chosen = select(&list, &platform("linux/amd64")).unwrap();
        assert_eq!(
            chosen.digest,
            "sha256:1111111111111111111111111111111111111111111111111111111111111111"
        );
        assert_eq!(chosen.media_type, DOCKER_MANIFEST);
    }

    #[test]
    fn arm_variants_are_told_apart_and_arm64_means_v8() {
        let list = index("docker-manifest-list.json");
        let v7 = select(&list, &platform("linux/arm/v7")).unwrap();
        assert!(v7.digest.starts_with("sha256:3333"), "{v7:?}");
        let v6 = select(&list, &platform("linux/arm/v6")).unwrap();
        assert!(v6.digest.starts_with("sha256:2222"), "{v6:?}");
        // The list says arm64 "v8"; asking for plain arm64 finds it.
        let arm64 = select(&list, &platform("linux/arm64")).unwrap();
        assert!(arm64.digest.starts_with("sha256:4444"), "{arm64:?}");
    }

    #[test]
    fn oci_index_skips_attestations_and_names_what_it_has() {
        let oci = index("oci-index-with-attestation.json");
        let chosen = select(&oci, &platform("linux/amd64")).unwrap();
        assert!(chosen.digest.starts_with("sha256:aaaa"), "{chosen:?}");
        let missing = select(&oci, &platform("linux/s390x")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no manifest for linux/s390x in the index; it has linux/amd64, \
             linux/arm64/v8, unknown/unknown"
        );
    }

    #[test]
    fn an_oci_index_without_media_type_is_recognised_by_its_manifests() {
        let parsed = Manifest::parse(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert_eq!(parsed.media_type(), OCI_INDEX);
        let image = Manifest::parse(
            br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":2},"layers":[]}"#,
        )
        .unwrap();
        assert_eq!(image.media_type(), OCI_MANIFEST);
    }

    #[test]
    fn schema_1_and_foreign_media_types_are_refused() {
        assert_eq!(
            Manifest::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#),
            Err(ManifestError::Schema(1))
        );
        let other = Manifest::parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#);
        assert_eq!(other, Err(ManifestError::MediaType("text/plain".into())));
        let broken = Manifest::parse(b"{").unwrap_err();
        assert!(matches!(
            broken,
            ManifestError::Json {
                what: "the manifest",
                ..
            }
        ));
    }

    #[test]
    fn docker_image_manifest_and_config() {
        let Manifest::Image {
            media_type,
            manifest,
        } = Manifest::parse(&fixture("docker-manifest.json")).unwrap()
        else {
            panic!("not an image manifest")
        };
        assert_eq!(media_type, DOCKER_MANIFEST);
        assert_eq!(manifest.layers.len(), 2);
        assert_eq!(
            manifest.layers[0].media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let config = ImageConfig::parse(&fixture("docker-config.json")).unwrap();
        config.check_layers(&manifest).unwrap();
        assert_eq!(config.entrypoint, ["/docker-entrypoint.sh"]);
        assert_eq!(config.cmd, ["nginx", "-g", "daemon off;"]);
        assert_eq!(
            config.env[0],
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        );
        assert_eq!(config.working_dir.as_deref(), Some("/srv"));
        assert_eq!(config.user.as_deref(), Some("101:101"));
        assert_eq!(
            config.argv(None),
            ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
        let own = vec!["sh".to_string()];
        assert_eq!(config.argv(Some(&own)), ["/docker-entrypoint.sh", "sh"]);
    }

    #[test]
    fn a_config_with_null_process_fields_has_empty_defaults() {
        let config = ImageConfig::parse(
            br#"{"architecture":"amd64","os":"linux",
                "config":{"Entrypoint":null,"Cmd":null,"WorkingDir":"","User":""},
                "rootfs":{"type":"layers","diff_ids":["sha256:d"]}}"#,
        )
        .unwrap();
        assert_eq!(config.diff_ids, ["sha256:d"]);
        assert!(config.argv(None).is_empty());
        assert_eq!(config.working_dir, None);
        assert_eq!(config.user, None);
        let manifest = ImageManifest {
            config: Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: "sha256:c".into(),
                size: 1,
                platform: None,
            },
            layers: vec![],
        };
        assert_eq!(
            config.check_layers(&manifest),
            Err(ManifestError::LayerCount {
                diff_ids: 1,
                layers: 0
            })
        );
    }
}
