//! Registry pulls end to end: Debian's `docker-registry` on a free local
//! port, a private containerd, images built and pushed here (busybox in
//! one layer, a file in a second), pulled through `system_services::image`
//! and run. Needs root; skipped loudly otherwise.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::PrivateContainerd;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest,
};
use containerd_client::with_namespace;
use oci_client::client::{ClientConfig, ClientProtocol, ImageLayer};
use oci_client::manifest::{
    ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex,
};
use oci_client::secrets::RegistryAuth;
use system_services::containerd::Containerd;
use system_services::image::{
    self, Credentials, LayerStatus, PullEvent, PullOptions, RegistryOptions, sha256_digest,
};
use system_services::root::Root;
use system_services::runtime::ContainerRuntime;
use system_services::service::{Service, ServiceName};
use tonic::Request;

/// `docker-registry`'s htpasswd line for `ros:pull-test-secret` (bcrypt,
/// cost 4 to keep each request fast).
const HTPASSWD: &str = "ros:$2b$04$NIr4jpZf.m7i1gLKstbU0ulT4Od7EKK0aBakbxmuaqBjKr48QoENe";
const PASSWORD: &str = "pull-test-secret";

/// Debian's `docker-registry` (distribution 2.8), storing in a temp dir.
struct LocalRegistry {
    _dir: tempfile::TempDir,
    child: Child,
    address: String,
    /// The CA of its certificate when it serves HTTPS.
    ca: Option<String>,
}

/// A CA and a certificate it signed for 127.0.0.1, made with openssl.
struct TestPki {
    ca: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl from Debian's openssl package");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn test_pki(dir: &Path) -> TestPki {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ];
    openssl(
        dir,
        &[ca.concat(), vec!["-days", "1", "-subj", "/CN=ros test CA"]].concat(),
    );
    let csr = [
        &["req"][..],
        &ec,
        &["-keyout", "leaf.key", "-out", "leaf.csr"],
    ];
    openssl(
        dir,
        &[csr.concat(), vec!["-subj", "/CN=127.0.0.1"]].concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
        ],
    );
    TestPki {
        ca: std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        cert: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    }
}

impl LocalRegistry {
    /// `htpasswd`: one `user:bcrypt-hash` line to require basic auth.
    fn start(htpasswd: Option<&str>) -> Self {
        Self::start_with(htpasswd, None)
    }

    /// `tls`: serve HTTPS with this certificate.
    fn start_with(htpasswd: Option<&str>, tls: Option<&TestPki>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let auth = match htpasswd {
            Some(line) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{line}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: ros-test\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        let ca = tls.map(|pki| pki.ca.clone());
        let tls = match tls {
            Some(pki) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                pki.cert.display(),
                pki.key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {address}\n{tls}{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry from Debian's docker-registry package");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            _dir: dir,
            child,
            address,
            ca,
        }
    }

    fn options(&self) -> PullOptions {
        PullOptions {
            registry: match &self.ca {
                Some(ca) => RegistryOptions {
                    ca_certificates: vec![ca.clone()],
                    ..RegistryOptions::default()
                },
                None => RegistryOptions {
                    plain_http: vec![self.address.clone()],
                    ..RegistryOptions::default()
                },
            },
            platform: None,
        }
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gzipped layer: the tar of `dir` and its diff ID.
struct Layer {
    gzip: Vec<u8>,
    diff_id: String,
}

fn layer_of(dir: &Path) -> Layer {
    let tar = Command::new("tar")
        .args([
            "--sort=name",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-C",
        ])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar.stdout).unwrap();
    Layer {
        gzip: encoder.finish().unwrap(),
        diff_id: sha256_digest(&tar.stdout),
    }
}

/// Busybox with a few applet links and the usual mount points.
fn busybox_layer(scratch: &Path) -> Layer {
    let root = scratch.join("busybox-layer");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for dir in ["proc", "sys", "dev", "etc", "tmp", "run"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    layer_of(&root)
}

/// A second layer with one file: proves layers stack.
fn motd_layer(scratch: &Path, text: &str) -> Layer {
    let root = scratch.join("motd-layer");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/motd"), text).unwrap();
    layer_of(&root)
}

fn config(architecture: &str, layers: &[&Layer], cmd: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Cmd": cmd,
            "Env": ["PATH=/bin", "GREETING=from-the-image"],
            "WorkingDir": "/etc",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
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
async fn push_test_image(registry: &LocalRegistry, scratch: &Path, tag: &str) -> String {
    push_test_image_as(registry, &RegistryAuth::Anonymous, scratch, tag)
        .await
        .0
}

/// Also returns the layers pushed.
async fn push_test_image_as(
    registry: &LocalRegistry,
    auth: &RegistryAuth,
    scratch: &Path,
    tag: &str,
) -> (String, [Layer; 2]) {
    let busybox = busybox_layer(scratch);
    let motd = motd_layer(scratch, "hello from layer two\n");
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

/// Runs containerd's garbage collector now: deleting a lease with `sync`
/// collects before answering.
async fn collect_garbage(daemon: &PrivateContainerd) {
    let channel = containerd_client::connect(&daemon.config.socket)
        .await
        .unwrap();
    let mut leases = LeasesClient::new(channel);
    let id = "ros-test-gc-trigger".to_string();
    leases
        .create(with_namespace!(
            CreateLeaseRequest {
                id: id.clone(),
                labels: Default::default(),
            },
            daemon.namespace.as_str()
        ))
        .await
        .unwrap();
    leases
        .delete(with_namespace!(
            DeleteLeaseRequest { id, sync: true },
            daemon.namespace.as_str()
        ))
        .await
        .unwrap();
}

/// Runs the image's default command as the engine would: the driver
/// prepares the root (a snapshot of the image), the spec takes the image's
/// defaults, the task runs on the snapshot; returns what it printed.
async fn run_image(daemon: &PrivateContainerd, runtime: &Containerd, image: &str) -> String {
    let id = "pulled";
    let root = Root::Image(image.to_string());
    let prepared = runtime.prepare_root(id, &root).await.unwrap();
    assert!(!prepared.mounts.is_empty());
    let mut service = Service::new(ServiceName::new(id).unwrap(), "unused", Vec::new());
    service.command = None;
    service.root = root.clone();
    let spec = system_services::spec::build(&service, &prepared).unwrap();
    runtime.create_container(id, &spec).await.unwrap();

    let log = daemon.dir.path().join("pulled.log");
    runtime
        .start_task(id, &log, &prepared.mounts)
        .await
        .unwrap_or_else(|e| panic!("start task: {e}\n{}", daemon.log()));
    let exit = tokio::time::timeout(Duration::from_secs(30), runtime.wait_task(id))
        .await
        .expect("the container exits")
        .unwrap();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(exit, 0, "exit status; output {output:?}");
    runtime.delete_task(id).await.unwrap();
    runtime.delete_container(id).await.unwrap();
    runtime.release_root(id, &root).await.unwrap();
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_image_runs_as_a_container() {
    require_root!();
    let registry = LocalRegistry::start(None);
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    let reference = push_test_image(&registry, scratch.path(), "v1").await;

    let recorded = Recorded::default();
    let started = Instant::now();
    let pulled = image::pull(
        &runtime,
        &reference,
        &registry.options(),
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
    let registry = LocalRegistry::start(None);
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    let reference = push_test_image(&registry, scratch.path(), "again").await;
    let options = registry.options();
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
    let registry = LocalRegistry::start(None);
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    push_test_image(&registry, scratch.path(), "v1").await;
    let missing = format!("{}/test/busybox:no-such-tag", registry.address);
    let error = image::pull(&runtime, &missing, &registry.options(), &mut |_| {})
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
        &registry.options(),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(still_missing.is_not_found(), "{still_missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_resolves_to_this_machines_manifest() {
    require_root!();
    let registry = LocalRegistry::start(None);
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    let busybox = busybox_layer(scratch.path());
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

    let pulled = image::pull(&runtime, &reference, &registry.options(), &mut |_| {})
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
    let registry = LocalRegistry::start(Some(HTPASSWD));
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    let auth = RegistryAuth::Basic("ros".into(), PASSWORD.into());
    let (reference, _) = push_test_image_as(&registry, &auth, scratch.path(), "private").await;

    let anonymous = image::pull(&runtime, &reference, &registry.options(), &mut |_| {})
        .await
        .unwrap_err();
    eprintln!("{anonymous}");
    assert!(
        matches!(anonymous.failure, image::Failure::Unauthorized(_)),
        "{anonymous:?}"
    );
    assert!(anonymous.to_string().contains(&reference), "{anonymous}");

    let mut options = registry.options();
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
    let registry = LocalRegistry::start(None);
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    let (reference, [busybox, _]) = push_test_image_as(
        &registry,
        &RegistryAuth::Anonymous,
        scratch.path(),
        "resume",
    )
    .await;
    let half = busybox.gzip.len() / 2;
    leave_partial_ingest(&daemon, &busybox.gzip, half).await;

    let recorded = Recorded::default();
    let pulled = image::pull(
        &runtime,
        &reference,
        &registry.options(),
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
    let pki = test_pki(scratch.path());
    let registry = LocalRegistry::start_with(None, Some(&pki));
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let reference = push_test_image(&registry, scratch.path(), "tls").await;

    let mut untrusting = registry.options();
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
    let pulled = image::pull(&runtime, &reference, &registry.options(), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("pulled {reference} over HTTPS in {:?}", started.elapsed());
    assert_eq!(pulled.fetched_blobs, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_pulled_for_its_first_container() {
    require_root!();
    let registry = LocalRegistry::start(None);
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    let reference = push_test_image(&registry, scratch.path(), "lazy").await;
    let recorded = Recorded::default();
    let rootfs = image::prepare_rootfs_pulling(
        &runtime,
        &reference,
        "lazy",
        &registry.options(),
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
        &registry.options(),
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
    let registry = LocalRegistry::start(None);
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    let reference = push_test_image(&registry, scratch.path(), "twice").await;
    let options = registry.options();
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
    let registry = LocalRegistry::start(None);
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    let (reference, [busybox, _]) = push_test_image_as(
        &registry,
        &RegistryAuth::Anonymous,
        scratch.path(),
        "moving",
    )
    .await;
    let options = registry.options();
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
