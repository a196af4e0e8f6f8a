//! Layers into snapshots: each layer is applied by containerd's diff
//! service onto a fresh snapshot whose parent is the layers below, then
//! committed under its chain ID. A chain ID already there is skipped, so
//! images sharing lower layers share their snapshots.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use containerd_client::types::Descriptor as ContainerdDescriptor;
use tonic::Code;

use super::chain::chain_ids;
use super::error::{Failure, ImageError};
use super::manifest::{Descriptor, ImageConfig, ImageManifest};
use super::progress::PullEvent;
use super::store::{SNAPSHOTTER, Store, labels};

pub(crate) fn to_containerd(descriptor: &Descriptor) -> ContainerdDescriptor {
    ContainerdDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        annotations: HashMap::new(),
    }
}

/// Unpacks the image's layers (those not unpacked yet) and labels the
/// config so the snapshots live as long as the image. Returns the top
/// chain ID. `store` should hold a lease; the caller has checked `config`
/// against `manifest` (`ImageConfig::check_layers`).
pub(crate) async fn unpack(
    store: &Store,
    reference: &str,
    manifest: &ImageManifest,
    config: &ImageConfig,
    progress: &mut (dyn FnMut(PullEvent) + Send),
) -> Result<String, ImageError> {
    let chain = chain_ids(&config.diff_ids);
    let count = chain.len();
    for (i, (layer, chain_id)) in manifest.layers.iter().zip(&chain).enumerate() {
        let step = || format!("unpacking layer {}/{count} ({})", i + 1, layer.digest);
        let fail = |failure: Failure| ImageError::new(reference, step(), failure);
        if store
            .snapshot(chain_id)
            .await
            .map_err(|s| fail(s.into()))?
            .is_some()
        {
            continue;
        }
        progress(PullEvent::Unpacking {
            index: i + 1,
            count,
            digest: layer.digest.clone(),
        });
        let parent = if i == 0 { "" } else { chain[i - 1].as_str() };
        apply_layer(store, layer, &config.diff_ids[i], parent, chain_id)
            .await
            .map_err(fail)?;
    }
    let top = chain.last().cloned().unwrap_or_default();
    if !top.is_empty() {
        let label = HashMap::from([(labels::ref_snapshot(SNAPSHOTTER), top.clone())]);
        store
            .set_content_labels(&manifest.config.digest, label)
            .await
            .map_err(|s| ImageError::new(reference, "labelling the config", s.into()))?;
    }
    Ok(top)
}

/// One layer: prepare, apply, check the diff ID, commit. The temporary
/// snapshot is removed on any failure.
async fn apply_layer(
    store: &Store,
    layer: &Descriptor,
    diff_id: &str,
    parent: &str,
    chain_id: &str,
) -> Result<(), Failure> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let key = format!("extract-{nanos}-{chain_id}");
    let mounts = store.prepare(&key, parent, HashMap::new()).await?;
    let outcome = async {
        let applied = store.apply(to_containerd(layer), mounts).await?;
        if applied.digest != diff_id {
            return Err(Failure::DiffId {
                expected: diff_id.to_string(),
                actual: applied.digest,
            });
        }
        match store.commit(chain_id, &key).await {
            Ok(()) => Ok(()),
            // Unpacked meanwhile by another pull of an image sharing it.
            Err(status) if status.code() == Code::AlreadyExists => {
                let _ = store.remove_snapshot(&key).await;
                Ok(())
            }
            Err(status) => Err(status.into()),
        }
    }
    .await;
    if outcome.is_err() {
        let _ = store.remove_snapshot(&key).await;
    }
    outcome
}
