//! The image records of a namespace, as `ros images` lists them and
//! `ros rmi` removes them. Removing drops only the record: containerd's
//! garbage collector then frees the blobs and snapshots that nothing else
//! references (the labels pull and load set are its map).

use std::collections::HashMap;

use super::archive::ConfigHeader;
use super::error::{Failure, ImageError};
use super::manifest::{Manifest, Platform, select};
use super::reference::ImageRef;
use super::store::Store;
use crate::containerd::Containerd;

/// One image record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The normalised name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// What the record points at: the manifest, or the index over it.
    pub digest: String,
    /// Bytes of this machine's image as stored: the index (if any), the
    /// manifest, the config and the layers as they were fetched or loaded
    /// (compressed or not), as `ctr images ls` counts.
    pub size: u64,
    /// When the image was made (RFC 3339, from the config), if it says.
    pub created: Option<String>,
}

/// Every image record of `containerd`'s namespace, sorted by name. An
/// image whose content is incomplete is listed with what could be read.
pub async fn list_images(containerd: &Containerd) -> Result<Vec<ImageSummary>, ImageError> {
    let store = Store::new(containerd);
    let records = store
        .images_list()
        .await
        .map_err(|s| ImageError::new("*", "listing the images", s.into()))?;
    let mut summaries = Vec::with_capacity(records.len());
    let mut cache: HashMap<String, (u64, Option<String>)> = HashMap::new();
    for record in records {
        let Some(target) = record.target else {
            continue;
        };
        let (size, created) = match cache.get(&target.digest) {
            Some(known) => known.clone(),
            None => {
                let found = measure(&store, &target.digest, target.size).await;
                cache.insert(target.digest.clone(), found.clone());
                found
            }
        };
        summaries.push(ImageSummary {
            name: record.name,
            digest: target.digest,
            size,
            created,
        });
    }
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(summaries)
}

/// The stored size of the image under `digest` for this machine, and its
/// creation time; what cannot be read counts for nothing.
async fn measure(store: &Store, digest: &str, size: i64) -> (u64, Option<String>) {
    let bytes = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut total = bytes(size);
    let Ok(top) = store.read_content(digest).await else {
        return (total, None);
    };
    let manifest = match Manifest::parse(&top) {
        Ok(Manifest::Image { manifest, .. }) => manifest,
        Ok(Manifest::Index { index, .. }) => {
            let Ok(entry) = select(&index, &Platform::host()) else {
                return (total, None);
            };
            total += bytes(entry.size);
            let Ok(Manifest::Image { manifest, .. }) = store
                .read_content(&entry.digest)
                .await
                .map_err(|_| ())
                .and_then(|b| Manifest::parse(&b).map_err(|_| ()))
            else {
                return (total, None);
            };
            manifest
        }
        Err(_) => return (total, None),
    };
    total += bytes(manifest.config.size);
    total += manifest.layers.iter().map(|l| bytes(l.size)).sum::<u64>();
    let created = store
        .read_content(&manifest.config.digest)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<ConfigHeader>(&b).ok())
        .and_then(|header| header.created);
    (total, created)
}

/// Removes the image record `name` (normalised as pull does: `busybox` is
/// `docker.io/library/busybox:latest`). containerd collects what only it
/// kept before answering. An unknown image is an error naming it, with
/// code NotFound.
pub async fn remove_image(containerd: &Containerd, name: &str) -> Result<(), ImageError> {
    let normalised = ImageRef::parse(name)
        .map_err(|e| ImageError::new(name, "reading the reference", Failure::Reference(e)))?
        .to_string();
    Store::new(containerd)
        .delete_image(&normalised, true)
        .await
        .map_err(|s| ImageError::new(&normalised, "removing the image", s.into()))
}
