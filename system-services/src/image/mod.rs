//! Registry images for services that name one (`image: registry/...`).
//! containerd 1.6 has no Transfer service, so the pull happens here:
//! oci-client talks to the registry; containerd's content, images,
//! snapshots, diff and leases services store and unpack what it fetches.
//!
//! - [`pull`] fetches a reference (normalised like Docker's:
//!   `busybox` is `docker.io/library/busybox:latest`) for this machine's
//!   platform, skipping blobs containerd has and resuming interrupted
//!   ones, and unpacks it into overlayfs snapshots named by chain ID;
//!   progress arrives as [`PullEvent`]s.
//! - [`prepare_rootfs`] gives a container a writable snapshot on the
//!   image and the image's default process ([`ImageConfig`]);
//!   [`prepare_rootfs_pulling`] pulls first when the image is missing.
//!   [`remove_rootfs`] drops the snapshot with the container.
//! - [`load_archive`] loads a `docker save` or OCI-layout archive (`ros
//!   load`) through the same content store, labels and unpack step as a
//!   pull; [`preload_dir`] loads a directory's archives once each, by
//!   content; [`list_images`] and [`remove_image`] are `ros images` and
//!   `ros rmi`.

mod archive;
mod catalog;
mod chain;
mod error;
mod manifest;
mod preload;
mod progress;
mod pull;
mod reference;
mod registry;
mod rootfs;
mod store;
mod unpack;

pub use archive::{ArchiveError, LoadEvent, load_archive};
pub use catalog::{ImageSummary, list_images, remove_image};
pub use chain::sha256_digest;
pub use error::{Failure, ImageError};
pub use manifest::{ImageConfig, ManifestError, Platform};
pub use preload::{PreloadOutcome, preload_dir};
pub use progress::{LayerStatus, PullEvent, size};
pub use pull::{PullOptions, PulledImage, pull};
pub use reference::{ImageRef, InvalidPart, ReferenceError};
pub use registry::{Credentials, RegistryOptions};
pub use rootfs::{Rootfs, image_config, prepare_rootfs, prepare_rootfs_pulling, remove_rootfs};
pub use store::rfc3339;
