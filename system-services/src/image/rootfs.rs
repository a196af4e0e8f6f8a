//! A container's root file system from a pulled image: a writable
//! overlayfs snapshot on top of the image's layers, keyed by the
//! container ID, and the image's default process.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use containerd_client::types::Mount;
use tonic::Code;

use super::error::{Failure, ImageError};
use super::manifest::{ImageConfig, ImageManifest, Manifest, Platform, select};
use super::progress::PullEvent;
use super::pull::{PullOptions, pull};
use super::reference::ImageRef;
use super::store::{Store, labels, rfc3339};
use super::unpack::unpack;
use crate::containerd::Containerd;

/// What a container needs from its image.
#[derive(Debug, Clone, PartialEq)]
pub struct Rootfs {
    /// For the task's `rootfs`: the shim mounts them as the bundle's
    /// `rootfs` directory (so the spec's `root.path` is `rootfs`).
    pub mounts: Vec<Mount>,
    /// For the container record's `snapshot_key` (snapshotter
    /// [`SNAPSHOTTER`](super::store::SNAPSHOTTER)).
    pub snapshot_key: String,
    /// The image's default process, environment, directory and user.
    pub config: ImageConfig,
}

/// Unpacks `image` if needed and gives the container `container_id` a
/// writable snapshot on top of it. The snapshot survives restarts of the
/// container (its writes are kept, as with Docker) until
/// [`remove_rootfs`]; an existing one made from another image version is
/// replaced.
pub async fn prepare_rootfs(
    containerd: &Containerd,
    image: &str,
    container_id: &str,
) -> Result<Rootfs, ImageError> {
    let (name, manifest, config) = stored_image(containerd, image).await?;
    let fail = |step: &str| {
        let name = name.clone();
        let step = format!("{step} for container {container_id}");
        move |failure: Failure| ImageError::new(&name, step, failure)
    };
    let store = Store::new(containerd);
    let lease = store
        .lease("rootfs", Duration::from_secs(600))
        .await
        .map_err(|s| fail("taking a lease")(s.into()))?;
    let mut ignore = |_: PullEvent| {};
    let top = unpack(&lease.store, &name, &manifest, &config, &mut ignore).await?;
    let mounts = writable_snapshot(&lease.store, container_id, &top)
        .await
        .map_err(|s| fail("preparing the snapshot")(s.into()))?;
    store
        .delete_lease(&lease.id)
        .await
        .map_err(|s| fail("releasing the lease")(s.into()))?;
    Ok(Rootfs {
        mounts,
        snapshot_key: container_id.to_string(),
        config,
    })
}

/// [`prepare_rootfs`], pulling `image` first when containerd does not
/// have it (Docker's "pull if missing"): what starting a service with a
/// registry image does.
pub async fn prepare_rootfs_pulling(
    containerd: &Containerd,
    image: &str,
    container_id: &str,
    options: &PullOptions,
    progress: &mut (dyn FnMut(PullEvent) + Send),
) -> Result<Rootfs, ImageError> {
    match prepare_rootfs(containerd, image, container_id).await {
        Err(error) if matches!(error.failure, Failure::NotPulled) => {
            pull(containerd, image, options, progress).await?;
            prepare_rootfs(containerd, image, container_id).await
        }
        other => other,
    }
}

/// The snapshot `key` on `parent`: the existing one when it has that
/// parent, else a new one. It is a garbage collection root: it lives
/// until removed, whether or not a container record points at it yet.
async fn writable_snapshot(
    store: &Store,
    key: &str,
    parent: &str,
) -> Result<Vec<Mount>, tonic::Status> {
    if let Some(existing) = store.snapshot(key).await? {
        if existing.parent == parent {
            return store.mounts(key).await;
        }
        store.remove_snapshot(key).await?;
    }
    let labels = HashMap::from([(labels::ROOT.to_string(), rfc3339(SystemTime::now()))]);
    store.prepare(key, parent, labels).await
}

/// Removes the container's writable snapshot; absent is fine.
pub async fn remove_rootfs(containerd: &Containerd, container_id: &str) -> Result<(), ImageError> {
    match Store::new(containerd).remove_snapshot(container_id).await {
        Ok(()) => Ok(()),
        Err(status) if status.code() == Code::NotFound => Ok(()),
        Err(status) => Err(ImageError::new(
            container_id,
            "removing the container's snapshot",
            status.into(),
        )),
    }
}

/// The default process, environment, directory and user of a pulled image.
pub async fn image_config(containerd: &Containerd, image: &str) -> Result<ImageConfig, ImageError> {
    stored_image(containerd, image)
        .await
        .map(|(_, _, config)| config)
}

/// The image record, followed to this machine's manifest and the config.
async fn stored_image(
    containerd: &Containerd,
    image: &str,
) -> Result<(String, ImageManifest, ImageConfig), ImageError> {
    let name = ImageRef::parse(image)
        .map_err(|e| ImageError::new(image, "reading the reference", Failure::Reference(e)))?
        .to_string();
    let fail = |step: &str| {
        let name = name.clone();
        let step = step.to_string();
        move |failure: Failure| ImageError::new(&name, step, failure)
    };
    let store = Store::new(containerd);
    let record = store
        .image(&name)
        .await
        .map_err(|s| fail("looking up the image")(s.into()))?
        .ok_or_else(|| fail("looking up the image")(Failure::NotPulled))?;
    let target = record
        .target
        .ok_or_else(|| fail("looking up the image")(Failure::NotPulled))?;
    let read = |digest: String| {
        let store = store.clone();
        async move { store.read_content(&digest).await }
    };
    let top = read(target.digest.clone())
        .await
        .map_err(|s| fail("reading the manifest")(s.into()))?;
    let manifest =
        match Manifest::parse(&top).map_err(|e| fail("reading the manifest")(e.into()))? {
            Manifest::Image { manifest, .. } => manifest,
            Manifest::Index { index, .. } => {
                let entry = select(&index, &Platform::host())
                    .map_err(|e| fail("choosing a platform")(e.into()))?;
                let bytes = read(entry.digest.clone())
                    .await
                    .map_err(|s| fail("reading the platform's manifest")(s.into()))?;
                match Manifest::parse(&bytes)
                    .map_err(|e| fail("reading the platform's manifest")(e.into()))?
                {
                    Manifest::Image { manifest, .. } => manifest,
                    Manifest::Index { media_type, .. } => {
                        return Err(fail("reading the platform's manifest")(Failure::Manifest(
                            super::manifest::ManifestError::MediaType(media_type),
                        )));
                    }
                }
            }
        };
    let config_bytes = read(manifest.config.digest.clone())
        .await
        .map_err(|s| fail("reading the config")(s.into()))?;
    let config =
        ImageConfig::parse(&config_bytes).map_err(|e| fail("reading the config")(e.into()))?;
    config
        .check_layers(&manifest)
        .map_err(|e| fail("checking the config")(e.into()))?;
    Ok((name, manifest, config))
}
