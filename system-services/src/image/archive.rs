//! Image archives into containerd: what `docker save` writes
//! (`manifest.json` naming a config and `layer.tar`s by path) and OCI
//! image layouts (`index.json` naming manifests in `blobs/`), as a tar,
//! gzip-compressed or not (told by its magic bytes).
//!
//! The archive is read twice, so that memory stays bounded whatever the
//! layers weigh: [`scan`] lists its files and keeps the small JSON ones
//! (manifests, configs, indexes); [`plan`], a pure function, turns them
//! into the images to record and the layer blobs to copy, every digest
//! and size it can check checked; the second pass streams those layers,
//! hashed on the way, into the content store. Then, as a pull does, the
//! config and manifest are stored with the garbage collector's labels,
//! the layers unpacked ([`super::unpack::unpack`]) and the records
//! written, all under one lease. Records are written last: a load that
//! fails leaves no image listed.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tonic::Code;

use super::chain::sha256_digest;
use super::error::{Failure, ImageError};
use super::manifest::{
    DOCKER_MANIFEST, Descriptor, ImageConfig, ImageManifest, Index, Manifest, OCI_INDEX, Platform,
    select,
};
use super::pull::{ingest_kind, manifest_labels};
use super::reference::ImageRef;
use super::store::{Store, labels};
use super::unpack::{to_containerd, unpack};
use crate::containerd::Containerd;

/// What happened during a load, for a progress line per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadEvent {
    /// A layer blob is in the content store (`index` counts from 1 over
    /// the archive's distinct layers).
    Layer {
        index: usize,
        count: usize,
        digest: String,
        size: u64,
    },
    /// An image record was written (one per name).
    Image { name: String, digest: String },
}

/// Why an archive could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the archive is truncated: it ends inside {entry}")]
    Truncated { entry: String },
    #[error("it is not a tar archive, plain or gzip-compressed ({reason})")]
    NotTar { reason: String },
    #[error("the tar header after {after} is damaged: {reason}")]
    Damaged { after: String, reason: String },
    #[error(
        "it is neither a `docker save` archive (no manifest.json) nor an OCI image layout \
         (no index.json)"
    )]
    Format,
    #[error("{file} is not valid: {message}")]
    Json { file: String, message: String },
    #[error("the archive's JSON files pass {limit} bytes: too much to be manifests and configs")]
    TooMuchJson { limit: u64 },
    #[error("{what} {blob} is not in the archive")]
    Missing { what: &'static str, blob: String },
    #[error("{blob} hashes to {actual}, but {named_by} says {expected}")]
    Digest {
        blob: String,
        named_by: String,
        expected: String,
        actual: String,
    },
    #[error("{blob} is {actual} bytes, but {named_by} says {expected}")]
    Size {
        blob: String,
        named_by: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "image {manifest} has no name (no RepoTags, no io.containerd.image.name or \
         org.opencontainers.image.ref.name annotation)"
    )]
    NoName { manifest: String },
    #[error(
        "image {manifest} is named only {tag:?}, a tag of no repository; name it in full \
         (annotation io.containerd.image.name, or a ref.name such as \
         registry/repository:{tag})"
    )]
    BareTag { manifest: String, tag: String },
    #[error("image {manifest} is for {image}, not for this machine ({host})")]
    Platform {
        manifest: String,
        image: String,
        host: Platform,
    },
    #[error("{0}")]
    Manifest(super::manifest::ManifestError),
}

impl ArchiveError {
    /// The nearest gRPC code, for [`ImageError::code`].
    pub fn code(&self) -> Code {
        match self {
            Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => Code::NotFound,
            Self::Io { .. } => Code::Unavailable,
            Self::Platform { .. } => Code::FailedPrecondition,
            Self::Truncated { .. }
            | Self::Damaged { .. }
            | Self::Digest { .. }
            | Self::Size { .. } => Code::DataLoss,
            _ => Code::InvalidArgument,
        }
    }
}

/// Manifests, configs and indexes are read whole; larger ones are refused.
const JSON_LIMIT: u64 = 16 << 20;
/// All of an archive's JSON files together.
const JSON_TOTAL_LIMIT: u64 = 64 << 20;
/// Bytes per message from the archive reader, and per write to containerd.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the reader thread and containerd.
const IN_FLIGHT: usize = 4;
/// How long containerd keeps what a load wrote should the load die.
const LEASE_TTL: Duration = Duration::from_secs(3600);

/// The media types a `docker save` archive implies.
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The annotations an OCI layout names its images by.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What the first pass found.
#[derive(Debug, Default)]
pub(super) struct Contents {
    /// Regular files: path → size.
    files: HashMap<String, u64>,
    /// Symbolic and hard links: path → the path they name.
    links: HashMap<String, String>,
    /// The small JSON files, whole.
    json: HashMap<String, Vec<u8>>,
}

impl Contents {
    /// The regular file `path` names, following links.
    fn resolve(&self, path: &str) -> Option<(&str, u64)> {
        let mut path = path;
        for _ in 0..16 {
            if let Some((name, size)) = self.files.get_key_value(path) {
                return Some((name.as_str(), *size));
            }
            path = self.links.get(path)?;
        }
        None
    }

    /// A layer file: its name in the archive and size, or `Missing`.
    fn layer(&self, path: &str) -> Result<(&str, u64), ArchiveError> {
        self.resolve(path).ok_or_else(|| ArchiveError::Missing {
            what: "layer",
            blob: path.to_string(),
        })
    }

    fn json(&self, path: &str) -> Option<&[u8]> {
        let (file, _) = self.resolve(path)?;
        self.json.get(file).map(Vec::as_slice)
    }
}

/// An image the archive holds, checked and ready to record.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PlannedImage {
    /// Normalised names, one record each.
    pub names: Vec<String>,
    /// What the records point at: the manifest, or the index over it.
    pub target: Descriptor,
    pub manifest: ImageManifest,
    pub manifest_descriptor: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: ImageConfig,
    pub config_bytes: Vec<u8>,
    /// The index, and the position of the manifest in it.
    pub index: Option<(Vec<u8>, usize)>,
}

/// A layer blob to copy from the archive.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PlannedLayer {
    /// The regular file holding it.
    pub path: String,
    pub descriptor: Descriptor,
    pub diff_id: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Plan {
    pub images: Vec<PlannedImage>,
    /// Each distinct blob once.
    pub layers: Vec<PlannedLayer>,
}

/// The fields of an image config that say which machine it is for, and
/// when it was made.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ConfigHeader {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub created: Option<String>,
}

/// Loads a `docker save` archive or an OCI image-layout archive from
/// `path` into `containerd`'s namespace: blobs into the content store,
/// one image record per name, layers unpacked into overlayfs snapshots.
/// Returns the names loaded.
pub async fn load_archive(
    containerd: &Containerd,
    path: &Path,
    progress: &mut (dyn FnMut(LoadEvent) + Send),
) -> Result<Vec<String>, ImageError> {
    let archive = path.display().to_string();
    let fail = |step: &'static str| {
        let archive = archive.clone();
        move |e: ArchiveError| ImageError::new(&archive, step, Failure::Archive(e))
    };
    let owned = path.to_path_buf();
    let contents = tokio::task::spawn_blocking(move || scan(&owned))
        .await
        .map_err(|e| fail("reading the archive")(io_error(path, io::Error::other(e))))?
        .map_err(fail("reading the archive"))?;
    let plan = plan(&contents, &Platform::host()).map_err(fail("reading the archive"))?;
    drop(contents);

    let store = Store::new(containerd);
    let lease = store
        .lease("load", LEASE_TTL)
        .await
        .map_err(|s| ImageError::new(&archive, "taking a lease", s.into()))?;
    let loaded = store_plan(&lease.store, path, &plan, progress).await;
    // Whatever happened: what the records reference is kept by them, the
    // rest of a failed load is the garbage collector's.
    let released = store.delete_lease(&lease.id).await;
    let names = loaded?;
    released.map_err(|s| ImageError::new(&archive, "releasing the lease", s.into()))?;
    Ok(names)
}

fn io_error(path: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a tar is read from: the file, or its gzip decompression.
trait Source: Read + Seek + Send {}
impl<T: Read + Seek + Send> Source for T {}

/// An opened archive and, when it is a plain file, its length: tar skips
/// the data it is not asked for by seeking, and a seek past the end of
/// a plain file does not fail, so entries are checked against it.
struct Opened {
    source: Box<dyn Source>,
    plain_len: Option<u64>,
}

/// The archive's bytes, decompressed when they start as gzip does.
fn open(path: &Path) -> Result<Opened, ArchiveError> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut magic = [0u8; 2];
    let seen = read_full(&mut file, &mut magic).map_err(|e| io_error(path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error(path, e))?;
    let file = BufReader::with_capacity(256 << 10, file);
    if seen == 2 && magic == [0x1f, 0x8b] {
        Ok(Opened {
            source: Box::new(Forward {
                inner: flate2::read::MultiGzDecoder::new(file),
                position: 0,
            }),
            plain_len: None,
        })
    } else {
        Ok(Opened {
            source: Box::new(file),
            plain_len: Some(len),
        })
    }
}

/// A stream that "seeks" forward by reading through, as tar's skipping
/// over data needs; a gzip stream can do no better.
struct Forward<R> {
    inner: R,
    position: u64,
}

impl<R: Read> Read for Forward<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for Forward<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let ahead = match to {
            SeekFrom::Current(n) => u64::try_from(n).ok(),
            SeekFrom::Start(n) => n.checked_sub(self.position),
            SeekFrom::End(_) => None,
        };
        let Some(ahead) = ahead else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a compressed archive is only read forward",
            ));
        };
        let skipped = io::copy(&mut (&mut self.inner).take(ahead), &mut io::sink())
            .map_err(|e| io::Error::new(e.kind(), format!("{e} during skip")))?;
        self.position += skipped;
        if skipped < ahead {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "unexpected EOF during skip",
            ));
        }
        Ok(self.position)
    }
}

/// Checks an entry's data lies inside a plain file.
fn check_inside<R: Read>(
    entry: &tar::Entry<'_, R>,
    plain_len: Option<u64>,
    name: &str,
) -> Result<(), ArchiveError> {
    match plain_len {
        Some(len) if entry.raw_file_position().saturating_add(entry.size()) > len => {
            Err(ArchiveError::Truncated {
                entry: name.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// The error for a tar header that could not be read, after the entry
/// `last` (`None`: the first header).
fn header_error(path: &Path, error: io::Error, last: Option<&str>) -> ArchiveError {
    // tar skips the data of an entry not read when it reads the next
    // header: an end met there is inside that entry.
    let place = match last {
        Some(name) if error.to_string().contains("during skip") => name.to_string(),
        Some(name) => format!("the tar header after {name}"),
        None => "its first tar header".to_string(),
    };
    match read_error(path, error, &place) {
        ArchiveError::Io { source, .. } if source.kind() == io::ErrorKind::Other => {
            // tar's messages quote the bad field; a few words suffice.
            let mut reason = source.to_string();
            if let Some(cut) = reason.char_indices().nth(60).map(|(i, _)| i) {
                reason.truncate(cut);
                reason.push('…');
            }
            match last {
                Some(name) => ArchiveError::Damaged {
                    after: name.to_string(),
                    reason,
                },
                None => ArchiveError::NotTar { reason },
            }
        }
        other => other,
    }
}

/// A tar path as the manifests write it: no `./`, `/`-separated.
fn normalise(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// The first pass: every file's path and size, links, and the small JSON
/// files whole.
pub(super) fn scan(path: &Path) -> Result<Contents, ArchiveError> {
    let opened = open(path)?;
    let mut archive = tar::Archive::new(opened.source);
    let mut contents = Contents::default();
    let mut json_total = 0;
    let mut last: Option<String> = None;
    let entries = archive.entries_with_seek().map_err(|e| io_error(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| header_error(path, e, last.as_deref()))?;
        let name = normalise(&entry.path().map_err(|e| io_error(path, e))?);
        check_inside(&entry, opened.plain_len, &name)?;
        last = Some(name.clone());
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name().map_err(|e| io_error(path, e))? else {
                continue;
            };
            // A symbolic link is relative to its directory, a hard link
            // to the archive's top.
            let target = if kind.is_symlink() && !target.is_absolute() {
                let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                normalise(&dir.join(&target))
            } else {
                normalise(&target)
            };
            contents.links.insert(name, target);
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        contents.files.insert(name.clone(), size);
        if size > JSON_LIMIT || !(name.ends_with(".json") || name.starts_with("blobs/")) {
            continue;
        }
        // A `.json` file is kept; a blob when it starts as a JSON object
        // does (layers start with a gzip header or a file name).
        let mut first = [0u8; 1];
        let n = read_full(&mut entry, &mut first).map_err(|e| read_error(path, e, &name))?;
        if n == 0 || (!name.ends_with(".json") && first[0] != b'{') {
            continue;
        }
        json_total += size;
        if json_total > JSON_TOTAL_LIMIT {
            return Err(ArchiveError::TooMuchJson {
                limit: JSON_TOTAL_LIMIT,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        bytes.push(first[0]);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(path, e, &name))?;
        if bytes.len() as u64 != size {
            return Err(ArchiveError::Truncated { entry: name });
        }
        contents.json.insert(name, bytes);
    }
    Ok(contents)
}

/// An unexpected end of the data is a truncated archive; the rest are
/// read errors.
fn read_error(path: &Path, error: io::Error, entry: &str) -> ArchiveError {
    let truncated = error.kind() == io::ErrorKind::UnexpectedEof
        || error.to_string().contains("unexpected EOF")
        || error.to_string().contains("failed to read entire block");
    if truncated {
        ArchiveError::Truncated {
            entry: entry.to_string(),
        }
    } else {
        io_error(path, error)
    }
}

/// Reads until `buffer` is full or the input ends; returns the count.
fn read_full(input: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn parse_json<'a, T: Deserialize<'a>>(file: &str, bytes: &'a [u8]) -> Result<T, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|e| ArchiveError::Json {
        file: file.to_string(),
        message: e.to_string(),
    })
}

/// One image of a `docker save` archive's manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// index.json's entries, with the annotations that name them.
#[derive(Debug, Deserialize)]
struct LayoutIndex {
    manifests: Vec<LayoutEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutEntry {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// Where an OCI layout keeps the blob `digest`.
fn blob_path(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("blobs/{algorithm}/{hex}"),
        None => format!("blobs/{digest}"),
    }
}

/// The second pass's work: the images to record, the layers to copy.
pub(super) fn plan(contents: &Contents, host: &Platform) -> Result<Plan, ArchiveError> {
    let docker = match contents.json("manifest.json") {
        Some(bytes) => Some(parse_json::<Vec<DockerEntry>>("manifest.json", bytes)?),
        None => None,
    };
    let mut plan = Plan::default();
    if let Some(bytes) = contents.json("index.json") {
        let index: LayoutIndex = parse_json("index.json", bytes)?;
        for entry in &index.manifests {
            oci_image(contents, host, entry, docker.as_deref(), &mut plan)?;
        }
    } else if let Some(entries) = &docker {
        for entry in entries {
            docker_image(contents, host, entry, &mut plan)?;
        }
    } else {
        return Err(ArchiveError::Format);
    }
    Ok(plan)
}

/// A small blob of an OCI layout, checked against its descriptor.
fn small_blob<'a>(
    contents: &'a Contents,
    descriptor: &Descriptor,
    what: &'static str,
    named_by: &str,
) -> Result<&'a [u8], ArchiveError> {
    let path = blob_path(&descriptor.digest);
    let bytes = contents.json(&path).ok_or_else(|| ArchiveError::Missing {
        what,
        blob: path.clone(),
    })?;
    check_bytes(bytes, &path, descriptor, named_by)?;
    Ok(bytes)
}

fn check_bytes(
    bytes: &[u8],
    path: &str,
    descriptor: &Descriptor,
    named_by: &str,
) -> Result<(), ArchiveError> {
    let actual = sha256_digest(bytes);
    if actual != descriptor.digest {
        return Err(ArchiveError::Digest {
            blob: path.to_string(),
            named_by: named_by.to_string(),
            expected: descriptor.digest.clone(),
            actual,
        });
    }
    let expected = u64::try_from(descriptor.size).unwrap_or(0);
    if bytes.len() as u64 != expected {
        return Err(ArchiveError::Size {
            blob: path.to_string(),
            named_by: named_by.to_string(),
            expected,
            actual: bytes.len() as u64,
        });
    }
    Ok(())
}

/// The config's machine must be this one's, when it names one.
fn check_platform(
    config_bytes: &[u8],
    config_path: &str,
    manifest: &str,
    host: &Platform,
) -> Result<(), ArchiveError> {
    let header: ConfigHeader = parse_json(config_path, config_bytes)?;
    let differs = (!header.os.is_empty() && header.os != host.os)
        || (!header.architecture.is_empty() && header.architecture != host.architecture);
    if differs {
        return Err(ArchiveError::Platform {
            manifest: manifest.to_string(),
            image: format!("{}/{}", header.os, header.architecture),
            host: host.clone(),
        });
    }
    Ok(())
}

fn oci_image(
    contents: &Contents,
    host: &Platform,
    entry: &LayoutEntry,
    docker: Option<&[DockerEntry]>,
    plan: &mut Plan,
) -> Result<(), ArchiveError> {
    let top = Descriptor {
        media_type: entry.media_type.clone(),
        digest: entry.digest.clone(),
        size: entry.size,
        platform: None,
    };
    let top_bytes = small_blob(contents, &top, "the manifest", "index.json")?;
    let top_path = blob_path(&top.digest);
    let parsed = Manifest::parse(top_bytes).map_err(ArchiveError::Manifest)?;
    let (manifest, manifest_descriptor, manifest_bytes, index) = match parsed {
        Manifest::Image { manifest, .. } => (manifest, top.clone(), top_bytes.to_vec(), None),
        Manifest::Index { index, .. } => {
            let chosen = select(&index, host)
                .map_err(ArchiveError::Manifest)?
                .clone();
            let position = position_in(&index, &chosen.digest);
            let bytes = small_blob(contents, &chosen, "the platform's manifest", &top_path)?;
            match Manifest::parse(bytes).map_err(ArchiveError::Manifest)? {
                Manifest::Image { manifest, .. } => (
                    manifest,
                    chosen,
                    bytes.to_vec(),
                    Some((top_bytes.to_vec(), position)),
                ),
                Manifest::Index { media_type, .. } => {
                    return Err(ArchiveError::Manifest(
                        super::manifest::ManifestError::MediaType(media_type),
                    ));
                }
            }
        }
    };
    let manifest_path = blob_path(&manifest_descriptor.digest);
    let config_bytes = small_blob(contents, &manifest.config, "the config", &manifest_path)?;
    let config_path = blob_path(&manifest.config.digest);
    check_platform(
        config_bytes,
        &config_path,
        &manifest_descriptor.digest,
        host,
    )?;
    let config = ImageConfig::parse(config_bytes).map_err(ArchiveError::Manifest)?;
    config
        .check_layers(&manifest)
        .map_err(ArchiveError::Manifest)?;
    for (layer, diff_id) in manifest.layers.iter().zip(&config.diff_ids) {
        let path = blob_path(&layer.digest);
        add_layer(
            contents,
            plan,
            &path,
            layer.clone(),
            diff_id,
            &manifest_path,
        )?;
    }

    // Names: containerd's full one, a ref.name that is a reference, and
    // docker's RepoTags for the same config (docker 25 writes both files).
    let mut names = Vec::new();
    let mut bare_tag = None;
    if let Some(name) = entry.annotations.get(CONTAINERD_NAME) {
        names.push(name.clone());
    }
    if let Some(name) = entry.annotations.get(OCI_REF_NAME) {
        if name.contains(['/', ':', '@']) {
            names.push(name.clone());
        } else {
            bare_tag = Some(name.clone());
        }
    }
    for docker_entry in docker.unwrap_or_default() {
        if docker_entry.config == config_path {
            names.extend(docker_entry.repo_tags.iter().flatten().cloned());
        }
    }
    let names = normalise_names(names)?;
    if names.is_empty() {
        return Err(match bare_tag {
            Some(tag) => ArchiveError::BareTag {
                manifest: manifest_descriptor.digest.clone(),
                tag,
            },
            None => ArchiveError::NoName {
                manifest: manifest_descriptor.digest.clone(),
            },
        });
    }
    plan.images.push(PlannedImage {
        names,
        target: top,
        manifest,
        manifest_descriptor,
        manifest_bytes,
        config,
        config_bytes: config_bytes.to_vec(),
        index,
    });
    Ok(())
}

fn position_in(index: &Index, digest: &str) -> usize {
    index
        .manifests
        .iter()
        .position(|e| e.digest == digest)
        .unwrap_or(0)
}

/// Parses and normalises names, dropping repeats. A name that is not a
/// reference is refused: it would make a record nobody can name.
fn normalise_names(names: Vec<String>) -> Result<Vec<String>, ArchiveError> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let parsed = ImageRef::parse(&name).map_err(|e| ArchiveError::Json {
            file: "the image's name".into(),
            message: e.to_string(),
        })?;
        let name = parsed.to_string();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Adds a layer blob to copy, checking that the archive holds it with
/// the size the manifest says.
fn add_layer(
    contents: &Contents,
    plan: &mut Plan,
    path: &str,
    descriptor: Descriptor,
    diff_id: &str,
    named_by: &str,
) -> Result<(), ArchiveError> {
    let (file, size) = contents.layer(path)?;
    let expected = u64::try_from(descriptor.size).unwrap_or(0);
    if size != expected {
        return Err(ArchiveError::Size {
            blob: path.to_string(),
            named_by: named_by.to_string(),
            expected,
            actual: size,
        });
    }
    if !plan
        .layers
        .iter()
        .any(|l| l.descriptor.digest == descriptor.digest)
    {
        plan.layers.push(PlannedLayer {
            path: file.to_string(),
            descriptor,
            diff_id: diff_id.to_string(),
        });
    }
    Ok(())
}

/// `<hex>` of a docker config's file name (`<hex>.json` or
/// `blobs/sha256/<hex>`), when it is a digest.
fn digest_in_name(path: &str) -> Option<String> {
    let stem = path.strip_suffix(".json").unwrap_or(path);
    let hex = stem.rsplit('/').next().unwrap_or(stem);
    let is_digest = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    is_digest.then(|| format!("sha256:{hex}"))
}

fn docker_image(
    contents: &Contents,
    host: &Platform,
    entry: &DockerEntry,
    plan: &mut Plan,
) -> Result<(), ArchiveError> {
    let config_bytes = contents
        .json(&entry.config)
        .ok_or_else(|| ArchiveError::Missing {
            what: "the config",
            blob: entry.config.clone(),
        })?;
    let config_digest = sha256_digest(config_bytes);
    if let Some(named) = digest_in_name(&entry.config)
        && named != config_digest
    {
        return Err(ArchiveError::Digest {
            blob: entry.config.clone(),
            named_by: "its file name".into(),
            expected: named,
            actual: config_digest,
        });
    }
    check_platform(config_bytes, &entry.config, &config_digest, host)?;
    let config = ImageConfig::parse(config_bytes).map_err(ArchiveError::Manifest)?;
    if config.diff_ids.len() != entry.layers.len() {
        return Err(ArchiveError::Manifest(
            super::manifest::ManifestError::LayerCount {
                diff_ids: config.diff_ids.len(),
                layers: entry.layers.len(),
            },
        ));
    }
    // Docker writes layers uncompressed: the blob is its diff ID. A blob
    // named by another digest (docker with the containerd image store)
    // is the compressed original.
    let mut layers = Vec::with_capacity(entry.layers.len());
    for (path, diff_id) in entry.layers.iter().zip(&config.diff_ids) {
        let (_, size) = contents.layer(path)?;
        let (digest, media_type) = match digest_in_name(path) {
            Some(digest) if path.starts_with("blobs/") && digest != *diff_id => {
                (digest, DOCKER_LAYER_GZIP)
            }
            _ => (diff_id.clone(), DOCKER_LAYER),
        };
        let descriptor = Descriptor {
            media_type: media_type.into(),
            digest,
            size: i64::try_from(size).unwrap_or(i64::MAX),
            platform: None,
        };
        add_layer(
            contents,
            plan,
            path,
            descriptor.clone(),
            diff_id,
            "manifest.json",
        )?;
        layers.push(descriptor);
    }
    let manifest = ImageManifest {
        config: Descriptor {
            media_type: DOCKER_CONFIG.into(),
            digest: config_digest.clone(),
            size: config_bytes.len() as i64,
            platform: None,
        },
        layers,
    };
    let manifest_bytes = docker_manifest_json(&manifest);
    let manifest_descriptor = Descriptor {
        media_type: DOCKER_MANIFEST.into(),
        digest: sha256_digest(&manifest_bytes),
        size: manifest_bytes.len() as i64,
        platform: None,
    };
    let names = normalise_names(entry.repo_tags.clone().unwrap_or_default())?;
    if names.is_empty() {
        return Err(ArchiveError::NoName {
            manifest: config_digest,
        });
    }
    plan.images.push(PlannedImage {
        names,
        target: manifest_descriptor.clone(),
        manifest,
        manifest_descriptor,
        manifest_bytes,
        config,
        config_bytes: config_bytes.to_vec(),
        index: None,
    });
    Ok(())
}

/// The schema 2 manifest a `docker save` image gets (as containerd's own
/// importer makes): the same bytes for the same image, so loading twice
/// makes the same record.
fn docker_manifest_json(manifest: &ImageManifest) -> Vec<u8> {
    let descriptor = |d: &Descriptor| serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    let json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(&manifest.config),
        "layers": manifest.layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    // serde_json's map keeps its keys sorted: stable bytes.
    serde_json::to_vec(&json).unwrap_or_default()
}

/// What the reader thread sends.
enum Message {
    Start(String),
    Data(Vec<u8>),
    End,
    Failed(ArchiveError),
}

/// The second pass: sends the wanted files' bytes, in bounded chunks.
fn stream_files(path: &Path, wanted: &HashSet<String>, out: &tokio::sync::mpsc::Sender<Message>) {
    let send = |message| out.blocking_send(message).is_ok();
    let outcome = (|| -> Result<(), ArchiveError> {
        let opened = open(path)?;
        let mut archive = tar::Archive::new(opened.source);
        let entries = archive.entries_with_seek().map_err(|e| io_error(path, e))?;
        let mut left = wanted.len();
        let mut last: Option<String> = None;
        for entry in entries {
            if left == 0 {
                break;
            }
            let mut entry = entry.map_err(|e| header_error(path, e, last.as_deref()))?;
            let name = normalise(&entry.path().map_err(|e| io_error(path, e))?);
            last = Some(name.clone());
            if !entry.header().entry_type().is_file() || !wanted.contains(&name) {
                continue;
            }
            check_inside(&entry, opened.plain_len, &name)?;
            left -= 1;
            let size = entry.size();
            if !send(Message::Start(name.clone())) {
                return Ok(());
            }
            let mut sent = 0u64;
            loop {
                let mut buffer = vec![0u8; CHUNK];
                let n =
                    read_full(&mut entry, &mut buffer).map_err(|e| read_error(path, e, &name))?;
                if n == 0 {
                    break;
                }
                buffer.truncate(n);
                sent += n as u64;
                if !send(Message::Data(buffer)) {
                    return Ok(());
                }
            }
            if sent != size {
                return Err(ArchiveError::Truncated { entry: name });
            }
            if !send(Message::End) {
                return Ok(());
            }
        }
        Ok(())
    })();
    if let Err(error) = outcome {
        let _ = out.blocking_send(Message::Failed(error));
    }
}

/// `sha256:<hex>` of a finished hash.
fn hex_digest(hash: Sha256) -> String {
    use std::fmt::Write as _;
    let mut text = String::from("sha256:");
    for byte in hash.finalize().iter() {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Copies the missing layers, then stores, unpacks and records each image.
async fn store_plan(
    store: &Store,
    path: &Path,
    plan: &Plan,
    progress: &mut (dyn FnMut(LoadEvent) + Send),
) -> Result<Vec<String>, ImageError> {
    let archive = path.display().to_string();
    copy_layers(store, path, &plan.layers, progress).await?;
    let mut loaded = Vec::new();
    for image in &plan.images {
        let name = image.names.first().cloned().unwrap_or_default();
        let fail = |step: &str| {
            let name = name.clone();
            let step = step.to_string();
            move |s: tonic::Status| ImageError::new(&name, step, s.into())
        };
        // Parents after children, each labelled with what it references.
        let write = |descriptor: &Descriptor, bytes: &[u8], labels: HashMap<String, String>| {
            let reference = format!(
                "load-{}-{}",
                ingest_kind(&descriptor.media_type),
                descriptor.digest
            );
            let digest = descriptor.digest.clone();
            let bytes = bytes.to_vec();
            async move { store.write_blob(&reference, &bytes, &digest, labels).await }
        };
        write(&image.manifest.config, &image.config_bytes, HashMap::new())
            .await
            .map_err(fail("storing the config"))?;
        write(
            &image.manifest_descriptor,
            &image.manifest_bytes,
            manifest_labels(&image.manifest),
        )
        .await
        .map_err(fail("storing the manifest"))?;
        if let Some((bytes, position)) = &image.index {
            let label = HashMap::from([(
                format!("{}{position}", labels::REF_MANIFEST),
                image.manifest_descriptor.digest.clone(),
            )]);
            write(&image.target, bytes, label)
                .await
                .map_err(fail("storing the index"))?;
        }
        let mut quiet = |_| {};
        unpack(store, &name, &image.manifest, &image.config, &mut quiet).await?;
        let mut target = image.target.clone();
        if target.media_type.is_empty() {
            target.media_type = match image.index {
                Some(_) => OCI_INDEX.to_string(),
                None => image.manifest_descriptor.media_type.clone(),
            };
        }
        for name in &image.names {
            store
                .put_image(name, to_containerd(&target))
                .await
                .map_err(|s| ImageError::new(name, "recording the image", s.into()))?;
            progress(LoadEvent::Image {
                name: name.clone(),
                digest: target.digest.clone(),
            });
            loaded.push(name.clone());
        }
    }
    if loaded.is_empty() {
        return Err(ImageError::new(
            &archive,
            "reading the archive",
            Failure::Archive(ArchiveError::Format),
        ));
    }
    Ok(loaded)
}

/// Streams the layers containerd lacks from the archive into the content
/// store, each hashed on the way and refused on a mismatch.
async fn copy_layers(
    store: &Store,
    path: &Path,
    layers: &[PlannedLayer],
    progress: &mut (dyn FnMut(LoadEvent) + Send),
) -> Result<(), ImageError> {
    let archive = path.display().to_string();
    let count = layers.len();
    let step = |i: usize, layer: &PlannedLayer| {
        format!(
            "copying layer {}/{count} ({}, {})",
            i + 1,
            layer.path,
            layer.descriptor.digest
        )
    };
    let event = |i: usize, layer: &PlannedLayer| LoadEvent::Layer {
        index: i + 1,
        count,
        digest: layer.descriptor.digest.clone(),
        size: u64::try_from(layer.descriptor.size).unwrap_or(0),
    };
    let uncompressed = |layer: &PlannedLayer| {
        HashMap::from([(labels::UNCOMPRESSED.to_string(), layer.diff_id.clone())])
    };
    let mut wanted: HashMap<String, usize> = HashMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let present = store
            .content_info(&layer.descriptor.digest)
            .await
            .map_err(|s| ImageError::new(&archive, step(i, layer), s.into()))?;
        if present.is_some() {
            store
                .set_content_labels(&layer.descriptor.digest, uncompressed(layer))
                .await
                .map_err(|s| ImageError::new(&archive, step(i, layer), s.into()))?;
            progress(event(i, layer));
        } else {
            wanted.insert(layer.path.clone(), i);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }

    let (sender, mut receiver) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let paths: HashSet<String> = wanted.keys().cloned().collect();
    let owned = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || stream_files(&owned, &paths, &sender));
    let outcome = async {
        let mut current: Option<(usize, Option<super::store::ContentWriter>, Sha256, u64)> = None;
        while let Some(message) = receiver.recv().await {
            match message {
                Message::Start(name) => {
                    let Some(&i) = wanted.get(&name) else {
                        continue;
                    };
                    let layer = &layers[i];
                    let fail =
                        |s: tonic::Status| ImageError::new(&archive, step(i, layer), s.into());
                    let total = u64::try_from(layer.descriptor.size).unwrap_or(0);
                    let ingest = format!("layer-{}", layer.descriptor.digest);
                    let mut writer = store
                        .writer(&ingest, total, &layer.descriptor.digest)
                        .await
                        .map_err(fail)?;
                    if let Some(writer) = &mut writer {
                        writer.restart();
                    }
                    current = Some((i, writer, Sha256::new(), 0));
                }
                Message::Data(data) => {
                    let Some((i, writer, hash, count)) = &mut current else {
                        continue;
                    };
                    hash.update(&data);
                    *count += data.len() as u64;
                    if let Some(writer) = writer {
                        let layer = &layers[*i];
                        writer
                            .write(data)
                            .await
                            .map_err(|s| ImageError::new(&archive, step(*i, layer), s.into()))?;
                    }
                }
                Message::End => {
                    let Some((i, writer, hash, count)) = current.take() else {
                        continue;
                    };
                    let layer = &layers[i];
                    let fail = |f: Failure| ImageError::new(&archive, step(i, layer), f);
                    let ingest = format!("layer-{}", layer.descriptor.digest);
                    let actual = hex_digest(hash);
                    if actual != layer.descriptor.digest {
                        let _ = store.abort(&ingest).await;
                        return Err(fail(Failure::Archive(ArchiveError::Digest {
                            blob: layer.path.clone(),
                            named_by: "the manifest".into(),
                            expected: layer.descriptor.digest.clone(),
                            actual,
                        })));
                    }
                    if let Some(writer) = writer {
                        writer
                            .commit(count, &layer.descriptor.digest, uncompressed(layer))
                            .await
                            .map_err(|s| fail(s.into()))?;
                    }
                    wanted.remove(&layer.path);
                    progress(event(i, layer));
                }
                Message::Failed(error) => {
                    if let Some((i, _, _, _)) = current.take() {
                        let layer = &layers[i];
                        let _ = store
                            .abort(&format!("layer-{}", layer.descriptor.digest))
                            .await;
                    }
                    return Err(ImageError::new(
                        &archive,
                        "reading the archive",
                        Failure::Archive(error),
                    ));
                }
            }
        }
        match wanted.keys().next() {
            Some(missing) => Err(ImageError::new(
                &archive,
                "reading the archive",
                Failure::Archive(ArchiveError::Missing {
                    what: "layer",
                    blob: missing.clone(),
                }),
            )),
            None => Ok(()),
        }
    }
    .await;
    // Stops the reader if it is still going.
    drop(receiver);
    let _ = reader.await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD64: &str = r#""architecture":"amd64","os":"linux""#;

    fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    fn config(platform: &str, diff_id: &str) -> Vec<u8> {
        format!(
            r#"{{{platform},"created":"2024-01-02T03:04:05Z","config":{{"Cmd":["sh"]}},
               "rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        )
        .into_bytes()
    }

    /// A docker save archive's contents: one image, one layer.
    fn docker_contents(tags: &str, platform: &str) -> (Contents, String) {
        let layer = b"pretend this is a tar".to_vec();
        let diff_id = sha256_digest(&layer);
        let config = config(platform, &diff_id);
        let config_hex = sha256_digest(&config)[7..].to_string();
        let manifest = format!(
            r#"[{{"Config":"{config_hex}.json","RepoTags":{tags},"Layers":["abc/layer.tar"]}}]"#
        );
        let mut contents = Contents::default();
        contents
            .files
            .insert("abc/layer.tar".into(), layer.len() as u64);
        contents
            .files
            .insert(format!("{config_hex}.json"), config.len() as u64);
        contents.json.insert(format!("{config_hex}.json"), config);
        contents
            .files
            .insert("manifest.json".into(), manifest.len() as u64);
        contents
            .json
            .insert("manifest.json".into(), manifest.into_bytes());
        (contents, diff_id)
    }

    #[test]
    fn a_docker_archive_plans_its_layer_as_the_uncompressed_diff() {
        let (contents, diff_id) = docker_contents(r#"["busybox:load","me/x:1"]"#, AMD64);
        let plan = plan(&contents, &host()).unwrap();
        assert_eq!(plan.images.len(), 1);
        let image = &plan.images[0];
        assert_eq!(
            image.names,
            ["docker.io/library/busybox:load", "docker.io/me/x:1"]
        );
        assert_eq!(image.target.media_type, DOCKER_MANIFEST);
        assert_eq!(image.target.digest, sha256_digest(&image.manifest_bytes));
        assert_eq!(plan.layers.len(), 1);
        assert_eq!(plan.layers[0].path, "abc/layer.tar");
        assert_eq!(plan.layers[0].descriptor.digest, diff_id);
        assert_eq!(plan.layers[0].descriptor.media_type, DOCKER_LAYER);
        // The manifest made is the same each time.
        let again = super::plan(&contents, &host()).unwrap();
        assert_eq!(again.images[0].manifest_bytes, image.manifest_bytes);
    }

    #[test]
    fn a_docker_image_without_tags_is_refused() {
        let (contents, _) = docker_contents("null", AMD64);
        let error = plan(&contents, &host()).unwrap_err();
        assert!(matches!(error, ArchiveError::NoName { .. }), "{error}");
    }

    #[test]
    fn an_image_for_another_machine_is_refused() {
        let (contents, _) = docker_contents(r#"["x:1"]"#, r#""architecture":"arm64","os":"linux""#);
        let error = plan(&contents, &host()).unwrap_err();
        assert_eq!(
            error.to_string().split(" is for ").nth(1),
            Some("linux/arm64, not for this machine (linux/amd64)")
        );
    }

    #[test]
    fn a_config_whose_name_is_not_its_digest_is_refused() {
        let (mut contents, _) = docker_contents(r#"["x:1"]"#, AMD64);
        let name = contents
            .json
            .keys()
            .find(|k| *k != "manifest.json")
            .unwrap()
            .clone();
        contents.json.get_mut(&name).unwrap().push(b' ');
        let error = plan(&contents, &host()).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::Digest { blob, .. } if *blob == name),
            "{error}"
        );
    }

    /// An OCI layout: index.json → manifest → config and a gzip layer.
    fn oci_contents(annotations: &str) -> Contents {
        let layer_digest = sha256_digest(b"gzip bytes");
        let config = config(AMD64, &sha256_digest(b"tar bytes"));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},
               "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":10}}]}}"#,
            sha256_digest(&config),
            config.len()
        );
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "digest":"{}","size":{},"annotations":{{{annotations}}}}}]}}"#,
            sha256_digest(manifest.as_bytes()),
            manifest.len()
        );
        let mut contents = Contents::default();
        for bytes in [config, manifest.into_bytes()] {
            let path = blob_path(&sha256_digest(&bytes));
            contents.files.insert(path.clone(), bytes.len() as u64);
            contents.json.insert(path, bytes);
        }
        contents.files.insert(blob_path(&layer_digest), 10);
        contents
            .files
            .insert("index.json".into(), index.len() as u64);
        contents
            .json
            .insert("index.json".into(), index.into_bytes());
        contents
    }

    #[test]
    fn an_oci_layout_is_named_by_its_annotations() {
        let full = oci_contents(r#""org.opencontainers.image.ref.name":"busybox:oci""#);
        let plan = plan(&full, &host()).unwrap();
        assert_eq!(plan.images[0].names, ["docker.io/library/busybox:oci"]);
        assert_eq!(
            plan.layers[0].descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let both = oci_contents(
            r#""org.opencontainers.image.ref.name":"latest",
               "io.containerd.image.name":"127.0.0.1:5000/x/busybox:latest""#,
        );
        let plan = super::plan(&both, &host()).unwrap();
        assert_eq!(plan.images[0].names, ["127.0.0.1:5000/x/busybox:latest"]);
    }

    #[test]
    fn an_index_in_the_layout_resolves_to_this_machines_manifest() {
        let mut contents = oci_contents("");
        let index: serde_json::Value =
            serde_json::from_slice(&contents.json["index.json"]).unwrap();
        let amd64 = index["manifests"][0].clone();
        let platform =
            |architecture: &str| serde_json::json!({"os": "linux", "architecture": architecture});
        let mut entry = amd64.clone();
        entry["platform"] = platform("amd64");
        let other = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_digest(b"not in the archive"),
            "size": 18,
            "platform": platform("arm64"),
        });
        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [other, entry],
        }))
        .unwrap();
        let nested_digest = sha256_digest(&nested);
        let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_INDEX,
            "digest": nested_digest,
            "size": nested.len(),
            "annotations": {CONTAINERD_NAME: "multi:1"},
        }]});
        contents
            .json
            .insert(blob_path(&nested_digest), nested.clone());
        contents
            .files
            .insert(blob_path(&nested_digest), nested.len() as u64);
        contents
            .json
            .insert("index.json".into(), serde_json::to_vec(&top).unwrap());

        let plan = plan(&contents, &host()).unwrap();
        let image = &plan.images[0];
        assert_eq!(image.names, ["docker.io/library/multi:1"]);
        assert_eq!(
            image.target.digest, nested_digest,
            "the record names the index"
        );
        assert_eq!(image.manifest_descriptor.digest, amd64["digest"]);
        assert_eq!(image.index, Some((nested, 1)));
    }

    #[test]
    fn a_gzip_stream_seeks_forward_by_reading_and_fails_at_its_end() {
        let mut forward = Forward {
            inner: &b"0123456789"[..],
            position: 0,
        };
        assert_eq!(forward.seek(SeekFrom::Current(4)).unwrap(), 4);
        let mut next = [0u8; 2];
        forward.read_exact(&mut next).unwrap();
        assert_eq!(&next, b"45");
        assert!(forward.seek(SeekFrom::Start(1)).is_err(), "never backwards");
        let error = forward.seek(SeekFrom::Current(10)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(error.to_string().contains("during skip"));
    }

    #[test]
    fn docker_25_archives_take_their_names_from_manifest_json_too() {
        let mut contents = oci_contents(r#""org.opencontainers.image.ref.name":"latest""#);
        let config_path = contents
            .json
            .iter()
            .find(|(_, bytes)| bytes.starts_with(b"{\"architecture\""))
            .map(|(path, _)| path.clone())
            .unwrap();
        let manifest = format!(
            r#"[{{"Config":"{config_path}","RepoTags":["me/app:2"],"Layers":["blobs/sha256/x"]}}]"#
        );
        contents
            .files
            .insert("manifest.json".into(), manifest.len() as u64);
        contents
            .json
            .insert("manifest.json".into(), manifest.into_bytes());
        let plan = plan(&contents, &host()).unwrap();
        assert_eq!(plan.images.len(), 1, "index.json decides what is loaded");
        assert_eq!(plan.images[0].names, ["docker.io/me/app:2"]);
    }

    #[test]
    fn a_bare_tag_is_refused_without_a_full_name() {
        let bare = oci_contents(r#""org.opencontainers.image.ref.name":"latest""#);
        let error = plan(&bare, &host()).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::BareTag { tag, .. } if tag == "latest"),
            "{error}"
        );
        assert!(error.to_string().contains("io.containerd.image.name"));
    }

    #[test]
    fn a_missing_blob_and_a_wrong_size_are_named() {
        let mut contents = oci_contents(r#""io.containerd.image.name":"x:1""#);
        let layer = blob_path(&sha256_digest(b"gzip bytes"));
        contents.files.insert(layer.clone(), 11);
        let error = plan(&contents, &host()).unwrap_err();
        assert!(
            matches!(&error, ArchiveError::Size { blob, expected: 10, actual: 11, .. } if *blob == layer),
            "{error}"
        );
        contents.files.remove(&layer);
        let error = plan(&contents, &host()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("layer {layer} is not in the archive")
        );
    }

    #[test]
    fn links_are_followed_from_their_directory() {
        let mut contents = Contents::default();
        contents.files.insert("a/layer.tar".into(), 5);
        contents.links.insert(
            "b/layer.tar".into(),
            normalise(&Path::new("b").join("../a/layer.tar")),
        );
        assert_eq!(contents.resolve("b/layer.tar"), Some(("a/layer.tar", 5)));
        assert_eq!(normalise(Path::new("./blobs/sha256/ab")), "blobs/sha256/ab");
    }

    #[test]
    fn neither_manifest_nor_index_is_not_an_image_archive() {
        let error = plan(&Contents::default(), &host()).unwrap_err();
        assert!(matches!(error, ArchiveError::Format));
    }
}
