//! A pull: resolve the reference at the registry, choose this machine's
//! manifest, copy config and layers into containerd's content store
//! (skipping blobs it has, resuming ingests it started), record the image
//! and unpack it. A lease covers it all so containerd's garbage collector
//! cannot take a blob between its write and the record that references it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::chain::sha256_digest;
use super::error::{Failure, ImageError};
use super::manifest::{Descriptor, ImageConfig, ImageManifest, Manifest, Platform, select};
use super::progress::{LayerStatus, PullEvent, Transfer};
use super::reference::ImageRef;
use super::registry::{Registry, RegistryOptions};
use super::store::{Store, labels};
use super::unpack::{to_containerd, unpack};
use crate::containerd::Containerd;

/// How long containerd keeps what a pull wrote should the pull die: long
/// enough for a retry to find and reuse it.
const LEASE_TTL: Duration = Duration::from_secs(3600);

/// Bytes sent to containerd per write message (gRPC's limit is 4 MiB).
const WRITE_CHUNK: usize = 1 << 20;

/// Manifests and configs are read whole; larger ones are refused.
const SMALL_BLOB_LIMIT: i64 = 16 << 20;

/// What to pull for and how to reach the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    pub registry: RegistryOptions,
    /// The platform to pull for; this machine's when `None`.
    pub platform: Option<Platform>,
}

/// A pulled, unpacked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The normalised reference: the name of containerd's image record.
    pub name: String,
    /// The record's target: the index, or the manifest when there is none.
    pub digest: String,
    /// This platform's image manifest.
    pub manifest_digest: String,
    pub config: ImageConfig,
    /// The snapshot holding every layer.
    pub chain_id: String,
    /// Blobs fetched from the registry (an index's platform manifest, the
    /// config, layers); the others were in containerd already. The
    /// manifest a tag names is always asked for: tags move.
    pub fetched_blobs: usize,
    /// Bytes fetched from the registry, the top manifest included.
    pub downloaded: u64,
}

/// Pulls `reference` into `containerd`'s namespace and unpacks it with
/// the overlayfs snapshotter, reporting each step to `progress`.
pub async fn pull(
    containerd: &Containerd,
    reference: &str,
    options: &PullOptions,
    progress: &mut (dyn FnMut(PullEvent) + Send),
) -> Result<PulledImage, ImageError> {
    let started = Instant::now();
    let image = ImageRef::parse(reference)
        .map_err(|e| ImageError::new(reference, "reading the reference", Failure::Reference(e)))?;
    let name = image.to_string();
    progress(PullEvent::Resolving {
        reference: name.clone(),
    });
    let registry = Registry::new(&options.registry)
        .map_err(|e| ImageError::new(&name, "setting up the registry client", e.into()))?;
    let store = Store::new(containerd);
    let lease = store
        .lease("pull", LEASE_TTL)
        .await
        .map_err(|s| ImageError::new(&name, "taking a lease", s.into()))?;
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let mut pull = Pull {
        store: &lease.store,
        registry: &registry,
        image: &image,
        name: &name,
        progress,
        fetched_blobs: 0,
        downloaded: 0,
    };
    // On failure the lease is left to expire: a retry within the hour
    // finds the blobs already fetched.
    let pulled = pull.run(&platform).await?;
    store
        .delete_lease(&lease.id)
        .await
        .map_err(|s| ImageError::new(&name, "releasing the lease", s.into()))?;
    progress(PullEvent::Done {
        reference: name.clone(),
        digest: pulled.digest.clone(),
        downloaded: pulled.downloaded,
        elapsed: started.elapsed(),
    });
    Ok(pulled)
}

struct Pull<'a> {
    store: &'a Store,
    registry: &'a Registry,
    image: &'a ImageRef,
    name: &'a str,
    progress: &'a mut (dyn FnMut(PullEvent) + Send),
    fetched_blobs: usize,
    downloaded: u64,
}

impl Pull<'_> {
    fn error(&self, step: impl Into<String>) -> impl FnOnce(Failure) -> ImageError + '_ {
        let step = step.into();
        move |failure| ImageError::new(self.name, step, failure)
    }

    async fn run(&mut self, platform: &Platform) -> Result<PulledImage, ImageError> {
        let (top_bytes, top_digest) = self
            .registry
            .manifest(self.image)
            .await
            .map_err(|e| ImageError::new(self.name, "fetching the manifest", e.into()))?;
        self.downloaded += top_bytes.len() as u64;
        let top = Manifest::parse(&top_bytes)
            .map_err(|e| ImageError::new(self.name, "reading the manifest", e.into()))?;
        let top_descriptor = Descriptor {
            media_type: top.media_type().to_string(),
            digest: top_digest.clone(),
            size: top_bytes.len() as i64,
            platform: None,
        };
        let (manifest, manifest_descriptor, manifest_bytes, index) = match top {
            Manifest::Image { manifest, .. } => {
                (manifest, top_descriptor.clone(), top_bytes.clone(), None)
            }
            Manifest::Index { index, .. } => {
                let entry = select(&index, platform)
                    .map_err(|e| ImageError::new(self.name, "choosing a platform", e.into()))?
                    .clone();
                let position = index
                    .manifests
                    .iter()
                    .position(|e| e.digest == entry.digest)
                    .unwrap_or(0);
                let step = format!("fetching the {platform} manifest {}", entry.digest);
                let bytes = self.small_blob(&entry, &step).await?;
                let manifest =
                    match Manifest::parse(&bytes).map_err(|e| self.error(&step)(e.into()))? {
                        Manifest::Image { manifest, .. } => manifest,
                        Manifest::Index { .. } => {
                            return Err(self.error(step)(Failure::Manifest(
                                super::manifest::ManifestError::MediaType(
                                    "an index inside an index".into(),
                                ),
                            )));
                        }
                    };
                (manifest, entry, bytes, Some((top_bytes.clone(), position)))
            }
        };

        let config_bytes = self
            .small_blob(&manifest.config, "fetching the config")
            .await?;
        let config = ImageConfig::parse(&config_bytes)
            .map_err(|e| ImageError::new(self.name, "reading the config", e.into()))?;
        config
            .check_layers(&manifest)
            .map_err(|e| ImageError::new(self.name, "checking the config", e.into()))?;
        (self.progress)(PullEvent::Resolved {
            digest: top_digest.clone(),
            layers: manifest.layers.len(),
            bytes: manifest
                .layers
                .iter()
                .map(|l| u64::try_from(l.size).unwrap_or(0))
                .sum(),
        });

        for (i, layer) in manifest.layers.iter().enumerate() {
            let labels =
                HashMap::from([(labels::UNCOMPRESSED.to_string(), config.diff_ids[i].clone())]);
            self.layer(i, manifest.layers.len(), layer, labels).await?;
        }

        // Parents after children, each labelled with what it references,
        // so that without the lease the record keeps everything alive.
        self.store_small(
            &manifest.config,
            &config_bytes,
            HashMap::new(),
            "storing the config",
        )
        .await?;
        self.store_small(
            &manifest_descriptor,
            &manifest_bytes,
            manifest_labels(&manifest),
            "storing the manifest",
        )
        .await?;
        if let Some((index_bytes, position)) = &index {
            let labels = HashMap::from([(
                format!("{}{position}", labels::REF_MANIFEST),
                manifest_descriptor.digest.clone(),
            )]);
            self.store_small(&top_descriptor, index_bytes, labels, "storing the index")
                .await?;
        }

        let chain_id = unpack(self.store, self.name, &manifest, &config, self.progress).await?;
        self.store
            .put_image(self.name, to_containerd(&top_descriptor))
            .await
            .map_err(|s| ImageError::new(self.name, "recording the image", s.into()))?;
        Ok(PulledImage {
            name: self.name.to_string(),
            digest: top_digest,
            manifest_digest: manifest_descriptor.digest.clone(),
            config,
            chain_id,
            fetched_blobs: self.fetched_blobs,
            downloaded: self.downloaded,
        })
    }

    /// A manifest or config: from the content store when it is there,
    /// else from the registry, its digest checked here.
    async fn small_blob(
        &mut self,
        descriptor: &Descriptor,
        step: &str,
    ) -> Result<Vec<u8>, ImageError> {
        if descriptor.size > SMALL_BLOB_LIMIT {
            return Err(self.error(step)(Failure::Transfer(std::io::Error::other(
                format!(
                    "{} is {} bytes, more than a manifest or config may be",
                    descriptor.digest, descriptor.size
                ),
            ))));
        }
        let present = self
            .store
            .content_info(&descriptor.digest)
            .await
            .map_err(|s| self.error(step)(s.into()))?;
        if present.is_some() {
            return self
                .store
                .read_content(&descriptor.digest)
                .await
                .map_err(|s| self.error(step)(s.into()));
        }
        let bytes = if descriptor.media_type.contains("manifest") {
            let pinned = self.image.with_digest(&descriptor.digest);
            let (bytes, _) = self
                .registry
                .manifest(&pinned)
                .await
                .map_err(|e| self.error(step)(e.into()))?;
            bytes
        } else {
            let (mut stream, _) = self
                .registry
                .blob(self.image, descriptor, 0)
                .await
                .map_err(|e| self.error(step)(e.into()))?;
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.error(step)(Failure::Transfer(e)))?;
                bytes.extend_from_slice(&chunk);
            }
            bytes
        };
        let actual = sha256_digest(&bytes);
        if actual != descriptor.digest {
            return Err(self.error(step)(Failure::Transfer(std::io::Error::other(
                format!(
                    "the registry sent content hashing to {actual}, not {}",
                    descriptor.digest
                ),
            ))));
        }
        self.fetched_blobs += 1;
        self.downloaded += bytes.len() as u64;
        Ok(bytes)
    }

    /// Writes a small blob held in memory, or labels it when present.
    async fn store_small(
        &mut self,
        descriptor: &Descriptor,
        bytes: &[u8],
        labels: HashMap<String, String>,
        step: &str,
    ) -> Result<(), ImageError> {
        let fail = |s: tonic::Status| ImageError::new(self.name, step, s.into());
        let reference = format!(
            "{}-{}",
            ingest_kind(&descriptor.media_type),
            descriptor.digest
        );
        match self
            .store
            .writer(&reference, bytes.len() as u64, &descriptor.digest)
            .await
            .map_err(fail)?
        {
            Some(mut writer) => {
                writer.restart();
                for chunk in bytes.chunks(WRITE_CHUNK) {
                    writer.write(chunk.to_vec()).await.map_err(fail)?;
                }
                writer
                    .commit(bytes.len() as u64, &descriptor.digest, labels)
                    .await
                    .map_err(fail)
            }
            None if labels.is_empty() => Ok(()),
            None => self
                .store
                .set_content_labels(&descriptor.digest, labels)
                .await
                .map_err(fail),
        }
    }

    /// One layer, streamed from the registry into the content store.
    async fn layer(
        &mut self,
        i: usize,
        count: usize,
        layer: &Descriptor,
        labels: HashMap<String, String>,
    ) -> Result<(), ImageError> {
        let step = format!("fetching layer {}/{count} ({})", i + 1, layer.digest);
        let total = u64::try_from(layer.size).unwrap_or(0);
        let event = |transfer: &Transfer, status| PullEvent::Layer {
            index: i + 1,
            count,
            digest: layer.digest.clone(),
            done: transfer.done(),
            total,
            status,
        };
        let ingest = format!("layer-{}", layer.digest);
        let writer = self
            .store
            .writer(&ingest, total, &layer.digest)
            .await
            .map_err(|s| self.error(&step)(s.into()))?;
        let Some(mut writer) = writer else {
            // Present: make sure it carries its diff ID (a blob another
            // client stored may lack the label).
            self.store
                .set_content_labels(&layer.digest, labels)
                .await
                .map_err(|s| self.error(&step)(s.into()))?;
            (self.progress)(event(&Transfer::new(total, total), LayerStatus::Present));
            return Ok(());
        };
        let mut transfer = Transfer::new(total, writer.offset().min(total));
        // containerd may have every byte already: a finished ingest, or
        // the blob stored for another namespace.
        let fetch = writer.offset() < total;
        if fetch {
            let (mut stream, partial) = self
                .registry
                .blob(self.image, layer, writer.offset())
                .await
                .map_err(|e| self.error(&step)(e.into()))?;
            if !partial && writer.offset() > 0 {
                writer.restart();
                transfer.restart();
            }
            (self.progress)(event(&transfer, LayerStatus::Downloading));
            let mut buffer = Vec::with_capacity(WRITE_CHUNK);
            loop {
                let chunk = stream.next().await;
                let end = chunk.is_none();
                if let Some(chunk) = chunk {
                    let chunk = chunk.map_err(|e| self.error(&step)(Failure::Transfer(e)))?;
                    buffer.extend_from_slice(&chunk);
                }
                if buffer.len() >= WRITE_CHUNK || (end && !buffer.is_empty()) {
                    let n = buffer.len() as u64;
                    let data = std::mem::replace(&mut buffer, Vec::with_capacity(WRITE_CHUNK));
                    writer
                        .write(data)
                        .await
                        .map_err(|s| self.error(&step)(s.into()))?;
                    self.downloaded += n;
                    if transfer.advance(n) && transfer.done() < total {
                        (self.progress)(event(&transfer, LayerStatus::Downloading));
                    }
                }
                if end {
                    break;
                }
            }
        }
        let committed = writer.commit(total, &layer.digest, labels).await;
        if let Err(status) = committed {
            // A bad ingest (wrong bytes) must not be resumed next time.
            let _ = self.store.abort(&ingest).await;
            return Err(self.error(&step)(status.into()));
        }
        if fetch {
            self.fetched_blobs += 1;
            (self.progress)(event(&transfer, LayerStatus::Complete));
        } else {
            (self.progress)(event(&transfer, LayerStatus::Present));
        }
        Ok(())
    }
}

/// The ingest name prefix containerd's own client uses per kind of blob.
pub(super) fn ingest_kind(media_type: &str) -> &'static str {
    if media_type.contains("index") || media_type.contains("list") {
        "index"
    } else if media_type.contains("manifest") {
        "manifest"
    } else if media_type.contains("config") {
        "config"
    } else {
        "layer"
    }
}

/// The garbage collector's references from a manifest to its blobs.
pub(super) fn manifest_labels(manifest: &ImageManifest) -> HashMap<String, String> {
    let mut map = HashMap::from([(
        labels::REF_CONFIG.to_string(),
        manifest.config.digest.clone(),
    )]);
    for (i, layer) in manifest.layers.iter().enumerate() {
        map.insert(format!("{}{i}", labels::REF_LAYER), layer.digest.clone());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::DOCKER_MANIFEST_LIST;

    #[test]
    fn manifests_reference_config_and_every_layer() {
        let descriptor = |digest: &str| Descriptor {
            media_type: String::new(),
            digest: digest.into(),
            size: 1,
            platform: None,
        };
        let manifest = ImageManifest {
            config: descriptor("sha256:c"),
            layers: vec![descriptor("sha256:l0"), descriptor("sha256:l1")],
        };
        let labels = manifest_labels(&manifest);
        assert_eq!(labels.len(), 3);
        assert_eq!(labels["containerd.io/gc.ref.content.config"], "sha256:c");
        assert_eq!(labels["containerd.io/gc.ref.content.l.0"], "sha256:l0");
        assert_eq!(labels["containerd.io/gc.ref.content.l.1"], "sha256:l1");
    }

    #[test]
    fn ingest_names_follow_containerd() {
        assert_eq!(ingest_kind(DOCKER_MANIFEST_LIST), "index");
        assert_eq!(ingest_kind(crate::image::manifest::OCI_INDEX), "index");
        assert_eq!(
            ingest_kind(crate::image::manifest::OCI_MANIFEST),
            "manifest"
        );
        assert_eq!(
            ingest_kind("application/vnd.oci.image.config.v1+json"),
            "config"
        );
        assert_eq!(
            ingest_kind("application/vnd.oci.image.layer.v1.tar+gzip"),
            "layer"
        );
    }
}
