//! Registry pulls end to end: `test_images::LocalRegistry` (Debian's
//! `docker-registry` on a free local port, also with HTTPS or basic
//! auth), a private containerd, images built with `test-images` (busybox
//! in one layer, a file in a second) and pushed here with an OCI client
//! (it speaks HTTPS, basic auth and indexes, which `test-images`' own
//! push does not), pulled through `system_services::image` and run.
//! Needs root; skipped loudly otherwise.

mod common;
#[path = "common/images.rs"]
mod images;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::PrivateContainerd;
use containerd_client::with_namespace;
use images::{collect_garbage, run_image};
use oci_client::client::{ClientConfig, ClientProtocol, ImageLayer};
use oci_client::manifest::{
    ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex,
};
use oci_client::secrets::RegistryAuth;
use system_services::image::{
    self, Credentials, LayerStatus, PullEvent, PullOptions, RegistryOptions, sha256_digest,
};
use test_images::{Config, Layer, LocalRegistry, Pki, RegistrySettings};
use tonic::Request;

/// `docker-registry`'s htpasswd line for `ros:pull-test-secret` (bcrypt,
/// cost 4 to keep each request fast).
const HTPASSWD: &str = "ros:$2b$04$NIr4jpZf.m7i1gLKstbU0ulT4Od7EKK0aBakbxmuaqBjKr48QoENe";
const PASSWORD: &str = "pull-test-secret";

/// How the pulls reach `registry`: trusting its CA when it serves HTTPS,
/// over plain HTTP otherwise.
fn options(registry: &LocalRegistry) -> PullOptions {
    PullOptions {
        registry: match &registry.ca {
            Some(ca) => RegistryOptions {
                ca_certificates: vec![ca.clone()],
                ..RegistryOptions::default()
            },
            None => RegistryOptions {
                plain_http: vec![registry.address.clone()],
                ..RegistryOptions::default()
            },
        },
        platform: None,
    }
}

/// The config of the test images: `GREETING` in the environment and
/// `/etc` as the working directory, so a run shows both came through.
fn config(architecture: &str, layers: &[&Layer], cmd: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    Config {
        architecture: architecture.into(),
        env: vec!["PATH=/bin".into(), "GREETING=from-the-image".into()],
        working_dir: Some("/etc".into()),
        ..Config::new(cmd)
    }
    .to_json(&diff_ids)
}

fn push_client(registry: &LocalRegistry) -> oci_client::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match &registry.ca {
        Some(ca) => ClientConfig {
            extra_root_certificates: vec![oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: ca.clone().into_bytes(),
            }],
            ..ClientConfig::default()
        },
        None => ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![registry.address.clone()]),
            ..ClientConfig::default()
        },
    };
    oci_client::Client::try_from(config).unwrap()
}

/// Pushes an image; returns its manifest's digest and size.
async fn push(
    registry: &LocalRegistry,
    tag: &str,
    layers: &[&Layer],
    config: Vec<u8>,
) -> (String, i64) {
    push_as(registry, &RegistryAuth::Anonymous, tag, layers, config).await
}

async fn push_as(
    registry: &LocalRegistry,
    auth: &RegistryAuth,
    tag: &str,
    layers: &[&Layer],
    config: Vec<u8>,
) -> (String, i64) {
    let client = push_client(registry);
    let reference: oci_client::Reference = format!("{}/test/busybox:{tag}", registry.address)
        .parse()
        .unwrap();
    let layers: Vec<ImageLayer> = layers
        .iter()
        .map(|l| ImageLayer::oci_v1_gzip(l.gzip.clone(), None))
        .collect();
    let config = oci_client::client::Config::oci_v1(config, None);
    client
        .push(&reference, &layers, config, auth, None)
        .await
        .unwrap();
    let (bytes, digest) = client
        .pull_manifest_raw(&reference, auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .unwrap();
    (digest, bytes.len() as i64)
}

/// The two-layer test image as `test/busybox:<tag>`; returns its reference.
async fn push_test_image(registry: &LocalRegistry, tag: &str) -> String {
    push_test_image_as(registry, &RegistryAuth::Anonymous, tag)
        .await
        .0
}

/// Also returns the layers pushed.
async fn push_test_image_as(
    registry: &LocalRegistry,
    auth: &RegistryAuth,
    tag: &str,
) -> (String, [Layer; 2]) {
    // Busybox in one layer, a file in a second: proves layers stack.
    let busybox = Layer::busybox(&[]);
    let motd = Layer::files(&[("etc/motd", "hello from layer two\n")]);
    let cmd = ["/bin/sh", "-c", "cat /etc/motd; echo \"$GREETING in $PWD\""];
    push_as(
        registry,
        auth,
        tag,
        &[&busybox, &motd],
        config("amd64", &[&busybox, &motd], &cmd),
    )
    .await;
    (
        format!("{}/test/busybox:{tag}", registry.address),
        [busybox, motd],
    )
}

/// Every event of a pull, kept for checks afterwards.
#[derive(Default, Clone)]
struct Recorded(Arc<Mutex<Vec<PullEvent>>>);

impl Recorded {
    fn callback(&self) -> impl FnMut(PullEvent) + Send + 'static {
        let events = Arc::clone(&self.0);
        move |event| events.lock().unwrap().push(event)
    }

    fn events(&self) -> Vec<PullEvent> {
        self.0.lock().unwrap().clone()
    }

    fn layer_statuses(&self) -> Vec<(usize, LayerStatus)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                PullEvent::Layer { index, status, .. } => Some((index, status)),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_image_runs_as_a_container() {
    require_root!();
    let registry = LocalRegistry::start();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let reference = push_test_image(&registry, "v1").await;

    let recorded = Recorded::default();
    let started = Instant::now();
    let pulled = image::pull(
        &runtime,
        &reference,
        &options(&registry),
        &mut recorded.callback(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    eprintln!(
        "pulled {} ({} bytes, {} blobs) in {:?}",
        pulled.name,
        pulled.downloaded,
        pulled.fetched_blobs,
        started.elapsed()
    );
    assert_eq!(pulled.name, reference);
    assert_eq!(
        pulled.fetched_blobs, 3,
        "the config and two layers: {pulled:?}"
    );
    assert_eq!(pulled.config.cmd[0], "/bin/sh");

    let events = recorded.events();
    assert!(matches!(&events[0], PullEvent::Resolving { reference: r } if *r == reference));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PullEvent::Resolved { layers: 2, .. })),
        "{events:?}"
    );
    let complete: Vec<usize> = recorded
        .layer_statuses()
        .into_iter()
        .filter(|(_, s)| *s == LayerStatus::Complete)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(complete, [1, 2]);
    let unpacked = events
        .iter()
        .filter(|e| matches!(e, PullEvent::Unpacking { .. }))
        .count();
    assert_eq!(unpacked, 2);
    assert!(
        matches!(events.last(), Some(PullEvent::Done { .. })),
        "{events:?}"
    );

    // The lease is gone: only the record and its labels keep the blobs and
    // snapshots now. Collect garbage, then use them.
    collect_garbage(&daemon).await;
    let output = run_image(&daemon, &runtime, &reference).await;
    assert_eq!(output, "hello from layer two\nfrom-the-image in /etc\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_again_downloads_no_blob() {
    require_root!();
    let registry = LocalRegistry::start();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let reference = push_test_image(&registry, "again").await;
    let options = options(&registry);
    let first = image::pull(&runtime, &reference, &options, &mut |_| {})
        .await
        .unwrap();

    let recorded = Recorded::default();
    let started = Instant::now();
    let second = image::pull(&runtime, &reference, &options, &mut recorded.callback())
        .await
        .unwrap();
    eprintln!("second pull of {reference}: {:?}", started.elapsed());
    assert_eq!(second.fetched_blobs, 0, "{second:?}");
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.chain_id, first.chain_id);
    assert_eq!(
        recorded.layer_statuses(),
        [(1, LayerStatus::Present), (2, LayerStatus::Present)]
    );
    assert!(
        !recorded
            .events()
            .iter()
            .any(|e| matches!(e, PullEvent::Unpacking { .. })),
        "the snapshots were there already"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tag_is_a_clear_error_naming_the_reference() {
    require_root!();
    let registry = LocalRegistry::start();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    push_test_image(&registry, "v1").await;
    let missing = format!("{}/test/busybox:no-such-tag", registry.address);
    let error = image::pull(&runtime, &missing, &options(&registry), &mut |_| {})
        .await
        .unwrap_err();
    let message = error.to_string();
    eprintln!("{message}");
    assert!(error.is_not_found(), "{error:?}");
    assert!(message.contains(&missing), "{message}");
    assert!(message.contains("fetching the manifest"), "{message}");

    let unpulled = image::prepare_rootfs(&runtime, &missing, "never")
        .await
        .unwrap_err();
    assert!(
        matches!(unpulled.failure, image::Failure::NotPulled),
        "{unpulled}"
    );
    let still_missing = image::prepare_rootfs_pulling(
        &runtime,
        &missing,
        "never",
        &options(&registry),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(still_missing.is_not_found(), "{still_missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_resolves_to_this_machines_manifest() {
    require_root!();
    let registry = LocalRegistry::start();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let busybox = Layer::busybox(&[]);
    let arm = push(
        &registry,
        "arm64",
        &[&busybox],
        config("arm64", &[&busybox], &["echo", "wrong platform"]),
    )
    .await;
    let amd = push(
        &registry,
        "amd64",
        &[&busybox],
        config("amd64", &[&busybox], &["echo", "right platform"]),
    )
    .await;
    let entry = |(digest, size): (String, i64), architecture: &str| ImageIndexEntry {
        media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
        digest,
        size,
        platform: Some(
            serde_json::from_value(
                serde_json::json!({"architecture": architecture, "os": "linux"}),
            )
            .unwrap(),
        ),
        annotations: None,
        artifact_type: None,
    };
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests: vec![entry(arm, "arm64"), entry(amd.clone(), "amd64")],
        artifact_type: None,
        annotations: None,
    };
    let reference = format!("{}/test/busybox:multi", registry.address);
    push_client(&registry)
        .push_manifest_list(&reference.parse().unwrap(), &RegistryAuth::Anonymous, index)
        .await
        .unwrap();

    let pulled = image::pull(&runtime, &reference, &options(&registry), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, amd.0);
    assert_ne!(pulled.digest, amd.0, "the record points at the index");
    assert_eq!(pulled.config.argv(None), ["echo", "right platform"]);
    collect_garbage(&daemon).await;
    let config = image::image_config(&runtime, &reference).await.unwrap();
    assert_eq!(config.cmd, ["echo", "right platform"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_sent_and_a_refusal_is_clear() {
    require_root!();
    let registry = LocalRegistry::start_with(&RegistrySettings {
        htpasswd: Some(HTPASSWD.into()),
        tls: None,
    });
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let auth = RegistryAuth::Basic("ros".into(), PASSWORD.into());
    let (reference, _) = push_test_image_as(&registry, &auth, "private").await;

    let anonymous = image::pull(&runtime, &reference, &options(&registry), &mut |_| {})
        .await
        .unwrap_err();
    eprintln!("{anonymous}");
    assert!(
        matches!(anonymous.failure, image::Failure::Unauthorized(_)),
        "{anonymous:?}"
    );
    assert!(anonymous.to_string().contains(&reference), "{anonymous}");

    let mut options = options(&registry);
    options.registry.credentials = Credentials::Basic {
        username: "ros".into(),
        password: PASSWORD.into(),
    };
    let pulled = image::pull(&runtime, &reference, &options, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(pulled.fetched_blobs, 3);
}

/// Leaves the first `len` bytes of `data` in containerd as the ingest a
/// pull killed mid-layer would leave.
async fn leave_partial_ingest(daemon: &PrivateContainerd, data: &[u8], len: usize) {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::{WriteAction, WriteContentRequest};
    let digest = sha256_digest(data);
    let channel = containerd_client::connect(&daemon.config.socket)
        .await
        .unwrap();
    let (requests, stream) = futures::channel::mpsc::unbounded();
    requests
        .unbounded_send(WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: format!("layer-{digest}"),
            total: data.len() as i64,
            expected: digest,
            offset: 0,
            data: data[..len].to_vec(),
            ..Default::default()
        })
        .unwrap();
    let mut responses = ContentClient::new(channel)
        .write(with_namespace!(stream, daemon.namespace.as_str()))
        .await
        .unwrap()
        .into_inner();
    let written = responses.message().await.unwrap().unwrap();
    assert_eq!(written.offset, len as i64);
    drop(requests);
    while responses.message().await.unwrap().is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_layer_resumes_where_it_stopped() {
    require_root!();
    let registry = LocalRegistry::start();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let (reference, [busybox, _]) =
        push_test_image_as(&registry, &RegistryAuth::Anonymous, "resume").await;
    let half = busybox.gzip.len() / 2;
    leave_partial_ingest(&daemon, &busybox.gzip, half).await;

    let recorded = Recorded::default();
    let pulled = image::pull(
        &runtime,
        &reference,
        &options(&registry),
        &mut recorded.callback(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()));
    let first_layer_start = recorded.events().into_iter().find_map(|e| match e {
        PullEvent::Layer {
            index: 1,
            done,
            status: LayerStatus::Downloading,
            ..
        } => Some(done),
        _ => None,
    });
    assert_eq!(first_layer_start, Some(half as u64), "resumed at the half");
    let whole = busybox.gzip.len() as u64;
    assert!(
        pulled.downloaded < whole,
        "fetched {} bytes of an image whose first layer alone is {whole}",
        pulled.downloaded
    );
    // containerd checked the digest of the joined halves on commit; the
    // unpacked layer runs.
    let output = run_image(&daemon, &runtime, &reference).await;
    assert!(output.starts_with("hello from layer two"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_registry_with_a_private_ca_is_trusted_when_told() {
    require_root!();
    let scratch = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start_with(&RegistrySettings {
        htpasswd: None,
        tls: Some(Pki::for_loopback(scratch.path())),
    });
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let reference = push_test_image(&registry, "tls").await;

    let mut untrusting = options(&registry);
    untrusting.registry.ca_certificates.clear();
    let refused = image::pull(&runtime, &reference, &untrusting, &mut |_| {})
        .await
        .unwrap_err();
    eprintln!("{refused}");
    assert!(
        matches!(refused.failure, image::Failure::Registry(_)),
        "{refused:?}"
    );

    let started = Instant::now();
    let pulled = image::pull(&runtime, &reference, &options(&registry), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("pulled {reference} over HTTPS in {:?}", started.elapsed());
    assert_eq!(pulled.fetched_blobs, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_pulled_for_its_first_container() {
    require_root!();
    let registry = LocalRegistry::start();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let reference = push_test_image(&registry, "lazy").await;
    let recorded = Recorded::default();
    let rootfs = image::prepare_rootfs_pulling(
        &runtime,
        &reference,
        "lazy",
        &options(&registry),
        &mut recorded.callback(),
    )
    .await
    .unwrap();
    assert!(!rootfs.mounts.is_empty());
    assert_eq!(rootfs.snapshot_key, "lazy");
    assert!(matches!(
        recorded.events().last(),
        Some(PullEvent::Done { .. })
    ));
    // Prepared again (a restart): the same snapshot, no pull.
    let again = Recorded::default();
    let same = image::prepare_rootfs_pulling(
        &runtime,
        &reference,
        "lazy",
        &options(&registry),
        &mut again.callback(),
    )
    .await
    .unwrap();
    assert_eq!(same.mounts, rootfs.mounts);
    assert!(again.events().is_empty(), "{:?}", again.events());
    image::remove_rootfs(&runtime, "lazy").await.unwrap();
    image::remove_rootfs(&runtime, "lazy").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pulls_of_one_image_at_once_both_succeed() {
    require_root!();
    let registry = LocalRegistry::start();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let reference = push_test_image(&registry, "twice").await;
    let options = options(&registry);
    let (mut quiet, mut silent) = (|_| {}, |_| {});
    let (first, second) = tokio::join!(
        image::pull(&runtime, &reference, &options, &mut quiet),
        image::pull(&runtime, &reference, &options, &mut silent),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.chain_id, second.chain_id);
    assert!(
        first.fetched_blobs + second.fetched_blobs >= 3,
        "each blob fetched at least once: {first:?} {second:?}"
    );
    let output = run_image(&daemon, &runtime, &reference).await;
    assert!(output.starts_with("hello from layer two"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_moves_the_record() {
    require_root!();
    let registry = LocalRegistry::start();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let (reference, [busybox, _]) =
        push_test_image_as(&registry, &RegistryAuth::Anonymous, "moving").await;
    let options = options(&registry);
    let before = image::pull(&runtime, &reference, &options, &mut |_| {})
        .await
        .unwrap();
    push(
        &registry,
        "moving",
        &[&busybox],
        config("amd64", &[&busybox], &["echo", "second version"]),
    )
    .await;
    let after = image::pull(&runtime, &reference, &options, &mut |_| {})
        .await
        .unwrap();
    assert_ne!(after.digest, before.digest);
    assert_eq!(after.fetched_blobs, 1, "only the new config: {after:?}");
    let config = image::image_config(&runtime, &reference).await.unwrap();
    assert_eq!(config.argv(None), ["echo", "second version"]);
}
