//! containerd's side of images: the content store (blobs by digest), the
//! image records (name → target descriptor), snapshots (layers unpacked,
//! by chain ID), the diff service (applies a layer to a snapshot) and
//! leases (keep what a pull wrote from the garbage collector until the
//! image record and its labels reference it). Every call carries the
//! namespace header, and the lease header while a pull holds one.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, Info as SnapshotInfo, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, ApplyRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest,
    DeleteImageRequest, DeleteRequest as DeleteLeaseRequest, GetImageRequest, Image,
    Info as ContentInfo, InfoRequest, ListImagesRequest, ReadContentRequest, UpdateImageRequest,
    UpdateRequest as UpdateContentRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use containerd_client::types::{Descriptor, Mount};
use futures::channel::mpsc::{UnboundedSender, unbounded};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use crate::containerd::{Containerd, NamespaceInterceptor};

/// The snapshotter images are unpacked with: the kernel has overlayfs.
pub const SNAPSHOTTER: &str = "overlayfs";

/// Labels containerd's garbage collector follows (docs/garbage-collection.md).
pub mod labels {
    /// On a lease: when containerd may drop it (RFC 3339).
    pub const EXPIRE: &str = "containerd.io/gc.expire";
    /// On a snapshot: keep it even when nothing references it.
    pub const ROOT: &str = "containerd.io/gc.root";
    /// On a layer blob: its uncompressed digest (diff ID).
    pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";
    /// On an index: `…m.<i>` names the manifests kept.
    pub const REF_MANIFEST: &str = "containerd.io/gc.ref.content.m.";
    /// On a manifest: the config blob.
    pub const REF_CONFIG: &str = "containerd.io/gc.ref.content.config";
    /// On a manifest: `…l.<i>` names the layers.
    pub const REF_LAYER: &str = "containerd.io/gc.ref.content.l.";
    /// On a config: the top snapshot of the unpacked image.
    pub fn ref_snapshot(snapshotter: &str) -> String {
        format!("containerd.io/gc.ref.snapshot.{snapshotter}")
    }
}

/// Sends the namespace, and the lease when there is one.
#[derive(Debug, Clone)]
pub struct Headers {
    namespace: NamespaceInterceptor,
    lease: Option<AsciiMetadataValue>,
}

impl Interceptor for Headers {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let mut request = self.namespace.call(request)?;
        if let Some(lease) = &self.lease {
            request
                .metadata_mut()
                .insert("containerd-lease", lease.clone());
        }
        Ok(request)
    }
}

type Client = InterceptedService<Channel, Headers>;

/// containerd's image-related services, through one namespace.
#[derive(Debug, Clone)]
pub struct Store {
    channel: Channel,
    headers: Headers,
}

/// A lease: what is written under it survives garbage collection until
/// it is deleted (or expires, should this process die first).
#[derive(Debug)]
pub struct Lease {
    pub id: String,
    /// The store with the lease header on every call.
    pub store: Store,
}

impl Store {
    pub fn new(containerd: &Containerd) -> Self {
        Self {
            channel: containerd.channel().clone(),
            headers: Headers {
                namespace: containerd.namespace().clone(),
                lease: None,
            },
        }
    }

    fn content(&self) -> ContentClient<Client> {
        ContentClient::with_interceptor(self.channel.clone(), self.headers.clone())
    }

    fn images(&self) -> ImagesClient<Client> {
        ImagesClient::with_interceptor(self.channel.clone(), self.headers.clone())
    }

    fn snapshots(&self) -> SnapshotsClient<Client> {
        SnapshotsClient::with_interceptor(self.channel.clone(), self.headers.clone())
    }

    fn diff(&self) -> DiffClient<Client> {
        DiffClient::with_interceptor(self.channel.clone(), self.headers.clone())
    }

    fn leases(&self) -> LeasesClient<Client> {
        LeasesClient::with_interceptor(self.channel.clone(), self.headers.clone())
    }

    /// Takes a lease that expires after `ttl` unless deleted before.
    pub async fn lease(&self, purpose: &str, ttl: Duration) -> Result<Lease, Status> {
        let now = SystemTime::now();
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = format!("ros-{purpose}-{}-{nanos}", std::process::id());
        let labels = HashMap::from([(labels::EXPIRE.to_string(), rfc3339(now + ttl))]);
        self.leases()
            .create(CreateLeaseRequest {
                id: id.clone(),
                labels,
            })
            .await?;
        let header = id
            .parse()
            .map_err(|_| Status::invalid_argument(format!("lease id {id:?} is not ASCII")))?;
        let mut store = self.clone();
        store.headers.lease = Some(header);
        Ok(Lease { id, store })
    }

    pub async fn delete_lease(&self, id: &str) -> Result<(), Status> {
        self.leases()
            .delete(DeleteLeaseRequest {
                id: id.to_string(),
                sync: false,
            })
            .await?;
        Ok(())
    }

    /// The blob's info, or `None` when the store lacks it.
    pub async fn content_info(&self, digest: &str) -> Result<Option<ContentInfo>, Status> {
        let request = InfoRequest {
            digest: digest.to_string(),
        };
        match self.content().info(request).await {
            Ok(response) => Ok(response.into_inner().info),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// A whole blob; for manifests and configs, which are small.
    pub async fn read_content(&self, digest: &str) -> Result<Vec<u8>, Status> {
        let mut stream = self
            .content()
            .read(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            })
            .await?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await? {
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }

    /// Sets `labels` on a blob, leaving its other labels alone.
    pub async fn set_content_labels(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.content()
            .update(UpdateContentRequest {
                info: Some(ContentInfo {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            })
            .await?;
        Ok(())
    }

    /// Opens a write of the blob `expected` of `total` bytes, resuming an
    /// ingest of the same `reference` left by an interrupted pull. `None`
    /// when the store has the blob already.
    ///
    /// Another pull writing the same blob holds its ingest locked; this
    /// waits for it, and then finds the blob present.
    pub async fn writer(
        &self,
        reference: &str,
        total: u64,
        expected: &str,
    ) -> Result<Option<ContentWriter>, Status> {
        let mut delay = Duration::from_millis(50);
        let deadline = std::time::Instant::now() + LOCKED_WAIT;
        loop {
            match self.open_writer(reference, total, expected).await {
                Err(status) if is_locked(&status) && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    async fn open_writer(
        &self,
        reference: &str,
        total: u64,
        expected: &str,
    ) -> Result<Option<ContentWriter>, Status> {
        let (requests, stream) = unbounded();
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.to_string(),
            total: to_i64(total),
            expected: expected.to_string(),
            ..Default::default()
        };
        send(&requests, stat)?;
        let responses = match self.content().write(stream).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::AlreadyExists => return Ok(None),
            Err(status) => return Err(status),
        };
        let mut writer = ContentWriter {
            requests,
            responses,
            offset: 0,
        };
        match writer.response().await {
            Ok(status) => {
                writer.offset = u64::try_from(status.offset).unwrap_or(0);
                Ok(Some(writer))
            }
            Err(status) if status.code() == Code::AlreadyExists => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// Drops the ingest `reference`: its bytes were wrong.
    pub async fn abort(&self, reference: &str) -> Result<(), Status> {
        self.content()
            .abort(AbortRequest {
                r#ref: reference.to_string(),
            })
            .await?;
        Ok(())
    }

    /// The image record called `name`, or `None`.
    pub async fn image(&self, name: &str) -> Result<Option<Image>, Status> {
        let request = GetImageRequest {
            name: name.to_string(),
        };
        match self.images().get(request).await {
            Ok(response) => Ok(response.into_inner().image),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// Every image record of the namespace, in containerd's order.
    pub async fn images_list(&self) -> Result<Vec<Image>, Status> {
        let response = self
            .images()
            .list(ListImagesRequest { filters: vec![] })
            .await?;
        Ok(response.into_inner().images)
    }

    /// Deletes the record `name` (NotFound when there is none). With
    /// `sync`, containerd collects what it alone kept before answering.
    pub async fn delete_image(&self, name: &str, sync: bool) -> Result<(), Status> {
        self.images()
            .delete(DeleteImageRequest {
                name: name.to_string(),
                sync,
                target: None,
            })
            .await?;
        Ok(())
    }

    /// Writes a small blob held in memory under the ingest `reference`,
    /// or, when the store has it, sets `labels` on it.
    pub async fn write_blob(
        &self,
        reference: &str,
        bytes: &[u8],
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        match self.writer(reference, bytes.len() as u64, digest).await? {
            Some(mut writer) => {
                writer.restart();
                for chunk in bytes.chunks(1 << 20) {
                    writer.write(chunk.to_vec()).await?;
                }
                writer.commit(bytes.len() as u64, digest, labels).await
            }
            None if labels.is_empty() => Ok(()),
            None => self.set_content_labels(digest, labels).await,
        }
    }

    /// Creates the record `name → target`, or points an existing one at
    /// `target`.
    pub async fn put_image(&self, name: &str, target: Descriptor) -> Result<(), Status> {
        let image = Image {
            name: name.to_string(),
            target: Some(target),
            ..Default::default()
        };
        let created = self
            .images()
            .create(CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            })
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {
                self.images()
                    .update(UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".to_string()],
                        }),
                        source_date_epoch: None,
                    })
                    .await?;
                Ok(())
            }
            Err(status) => Err(status),
        }
    }

    /// The snapshot `key`, or `None`.
    pub async fn snapshot(&self, key: &str) -> Result<Option<SnapshotInfo>, Status> {
        let request = StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: key.to_string(),
        };
        match self.snapshots().stat(request).await {
            Ok(response) => Ok(response.into_inner().info),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// A new writable snapshot `key` on top of `parent` ("" for none).
    pub async fn prepare(
        &self,
        key: &str,
        parent: &str,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>, Status> {
        let response = self
            .snapshots()
            .prepare(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
                parent: parent.to_string(),
                labels,
            })
            .await?;
        Ok(response.into_inner().mounts)
    }

    /// The mounts of an existing active snapshot.
    pub async fn mounts(&self, key: &str) -> Result<Vec<Mount>, Status> {
        let response = self
            .snapshots()
            .mounts(MountsRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            })
            .await?;
        Ok(response.into_inner().mounts)
    }

    /// Turns the active snapshot `key` into the read-only `name`.
    pub async fn commit(&self, name: &str, key: &str) -> Result<(), Status> {
        self.snapshots()
            .commit(CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                name: name.to_string(),
                key: key.to_string(),
                labels: HashMap::new(),
            })
            .await?;
        Ok(())
    }

    pub async fn remove_snapshot(&self, key: &str) -> Result<(), Status> {
        self.snapshots()
            .remove(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Applies the layer blob `layer` to the mounted snapshot; returns
    /// the descriptor of what was applied (its digest is the diff ID).
    pub async fn apply(&self, layer: Descriptor, mounts: Vec<Mount>) -> Result<Descriptor, Status> {
        let response = self
            .diff()
            .apply(ApplyRequest {
                diff: Some(layer),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            })
            .await?;
        response
            .into_inner()
            .applied
            .ok_or_else(|| Status::internal("the diff service returned no descriptor"))
    }
}

/// An open write of one blob into the content store. Each request gets one
/// response; containerd checks size and digest on commit.
#[derive(Debug)]
pub struct ContentWriter {
    requests: UnboundedSender<WriteContentRequest>,
    responses: Streaming<WriteContentResponse>,
    offset: u64,
}

fn send(
    requests: &UnboundedSender<WriteContentRequest>,
    request: WriteContentRequest,
) -> Result<(), Status> {
    requests
        .unbounded_send(request)
        .map_err(|_| Status::unavailable("the content write stream closed"))
}

/// How long to wait for another writer of the same blob.
const LOCKED_WAIT: Duration = Duration::from_secs(600);

/// containerd's answer while another writer holds an ingest:
/// `ref … locked for …` (Unavailable).
fn is_locked(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().contains("locked")
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl ContentWriter {
    /// Bytes already in the ingest (from an interrupted earlier write).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    async fn response(&mut self) -> Result<WriteContentResponse, Status> {
        self.responses
            .message()
            .await?
            .ok_or_else(|| Status::aborted("containerd closed the content write stream"))
    }

    /// Starts the blob over: the next write truncates the ingest.
    pub fn restart(&mut self) {
        self.offset = 0;
    }

    /// Appends `data` at the current offset.
    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), Status> {
        let len = data.len() as u64;
        send(
            &self.requests,
            WriteContentRequest {
                action: WriteAction::Write as i32,
                offset: to_i64(self.offset),
                data,
                ..Default::default()
            },
        )?;
        let response = self.response().await?;
        let expected = self.offset + len;
        if u64::try_from(response.offset).ok() != Some(expected) {
            return Err(Status::data_loss(format!(
                "containerd is at offset {} after a write that should end at {expected}",
                response.offset
            )));
        }
        self.offset = expected;
        Ok(())
    }

    /// Commits the blob with its labels. containerd refuses it unless the
    /// bytes hash to `expected` and number `total`.
    pub async fn commit(
        mut self,
        total: u64,
        expected: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        send(
            &self.requests,
            WriteContentRequest {
                action: WriteAction::Commit as i32,
                offset: to_i64(self.offset),
                total: to_i64(total),
                expected: expected.to_string(),
                labels,
                ..Default::default()
            },
        )?;
        match self.response().await {
            Ok(_) => Ok(()),
            // Another pull committed the same blob first.
            Err(status) if status.code() == Code::AlreadyExists => Ok(()),
            Err(status) => Err(status),
        }
    }
}

/// `time` as RFC 3339 in UTC, as containerd's `gc.expire` label wants.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_locked_ingest_is_waited_for() {
        let locked = Status::unavailable(
            "ref ros-test/1/layer-sha256:ab locked for 1.2s (since 2024-01-01): unavailable",
        );
        assert!(is_locked(&locked));
        assert!(!is_locked(&Status::unavailable("connection refused")));
        assert!(!is_locked(&Status::already_exists("locked")));
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400` (a leap day) and `date -u -d @1735689599`.
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
    }
}
