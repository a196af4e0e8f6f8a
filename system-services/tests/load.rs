//! Image archives end to end, against a private containerd: `docker
//! save` archives and OCI layouts (plain and gzip-compressed) of a
//! busybox image made with `test-images` are loaded through
//! `system_services::image`, listed, run, removed and preloaded. Needs
//! root; skipped loudly otherwise.

mod common;
#[path = "common/images.rs"]
mod images;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::PrivateContainerd;
use containerd_client::services::v1::InfoRequest;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::with_namespace;
use images::{collect_garbage, run_image};
use system_services::containerd::Containerd;
use system_services::image::{
    self, ArchiveError, Failure, ImageSummary, LoadEvent, PreloadOutcome, sha256_digest,
};
use test_images::{Config, Image, Layer};
use tonic::{Code, Request};

const CREATED: &str = "2024-05-06T07:08:09Z";

/// The archive tests' config: `GREETING` and `/etc` as the working
/// directory, so a run shows both came through; `created` for listings.
fn config(cmd: &[&str]) -> Config {
    Config {
        created: Some(CREATED.into()),
        env: vec!["PATH=/bin".into(), "GREETING=from-the-archive".into()],
        working_dir: Some("/etc".into()),
        ..Config::new(cmd)
    }
}

/// Busybox and a motd in one layer, running `CMD`.
fn busybox_image() -> Image {
    let layer = Layer::busybox(&[("etc/motd", "loaded from an archive\n")]);
    Image::new(vec![layer], &config(CMD))
}

const CMD: &[&str] = &["/bin/sh", "-c", "cat /etc/motd; echo \"$GREETING in $PWD\""];
const OUTPUT: &str = "loaded from an archive\nfrom-the-archive in /etc\n";

/// Appends a file to an archive being built.
fn append(builder: &mut tar::Builder<impl std::io::Write>, path: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, bytes).unwrap();
}

/// What each test starts from: a private containerd, a client of it, a
/// scratch directory and the busybox image.
async fn setup() -> (PrivateContainerd, Containerd, tempfile::TempDir, Image) {
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    (
        daemon,
        runtime,
        tempfile::tempdir().unwrap(),
        busybox_image(),
    )
}

/// What `docker save` writes for `image` with these tags, in `dir`.
fn docker_archive(dir: &Path, tags: &[&str], image: &Image) -> PathBuf {
    let path = dir.join(format!(
        "docker-{}.tar",
        tags.join("-").replace(['/', ':'], "_")
    ));
    image.docker_save_tags(tags, &path);
    path
}

/// The record containerd gets for a docker archive: the schema 2
/// manifest made from manifest.json, keys sorted (serde_json's map).
fn docker_manifest(image: &Image) -> Vec<u8> {
    let (config, layer) = (&image.config, &image.layers[0]);
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": sha256_digest(config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
            "digest": layer.diff_id,
            "size": layer.tar.len(),
        }],
    }))
    .unwrap()
}

/// An OCI image layout of `image` as `dir/file`, its manifest annotated
/// with `annotations`; the whole archive gzipped when `compress`.
/// Returns the archive and the manifest's bytes.
fn oci_archive(
    dir: &Path,
    file: &str,
    annotations: serde_json::Value,
    image: &Image,
    compress: bool,
) -> (PathBuf, Vec<u8>) {
    let path = dir.join(file);
    let manifest = image.oci_layout(annotations, compress, &path);
    (path, manifest)
}

/// Whether containerd's content store has the blob `digest`.
async fn has_blob(daemon: &PrivateContainerd, digest: &str) -> bool {
    let channel = containerd_client::connect(&daemon.config.socket)
        .await
        .unwrap();
    let request = InfoRequest {
        digest: digest.to_string(),
    };
    match ContentClient::new(channel)
        .info(with_namespace!(request, daemon.namespace.as_str()))
        .await
    {
        Ok(_) => true,
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => panic!("content info {digest}: {status}"),
    }
}

async fn load(runtime: &Containerd, path: &Path) -> (Vec<String>, Vec<LoadEvent>) {
    let mut events = Vec::new();
    let names = image::load_archive(runtime, path, &mut |e| events.push(e))
        .await
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    (names, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_save_archive_loads_is_listed_and_runs() {
    require_root!();
    let (daemon, runtime, scratch, busybox) = setup().await;
    let layer = &busybox.layers[0];
    let archive = docker_archive(scratch.path(), &["ros-test/busybox:docker"], &busybox);
    let archive_size = std::fs::metadata(&archive).unwrap().len();

    let started = Instant::now();
    let (names, events) = load(&runtime, &archive).await;
    let elapsed = started.elapsed();
    eprintln!(
        "loaded a {archive_size}-byte docker archive in {elapsed:?} ({:.1} MB/s of archive)",
        archive_size as f64 / 1e6 / elapsed.as_secs_f64()
    );
    let name = "docker.io/ros-test/busybox:docker";
    assert_eq!(names, [name]);
    let manifest = docker_manifest(&busybox);
    let digest = sha256_digest(&manifest);
    assert_eq!(
        events,
        [
            LoadEvent::Layer {
                index: 1,
                count: 1,
                digest: layer.diff_id.clone(),
                size: layer.tar.len() as u64,
            },
            LoadEvent::Image {
                name: name.into(),
                digest: digest.clone(),
            },
        ]
    );

    let config = busybox.config.clone();
    assert_eq!(
        image::list_images(&runtime).await.unwrap(),
        [ImageSummary {
            name: name.into(),
            digest,
            size: (manifest.len() + config.len() + layer.tar.len()) as u64,
            created: Some(CREATED.into()),
        }]
    );
    // The lease is gone: the record and its labels alone keep the blobs
    // and snapshots now.
    collect_garbage(&daemon).await;
    assert_eq!(run_image(&daemon, &runtime, name).await, OUTPUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oci_layout_loads_plain_and_gzip_compressed_and_runs() {
    require_root!();
    let (daemon, runtime, scratch, busybox) = setup().await;
    let layer = &busybox.layers[0];

    // A ref.name that is a reference is a name of its own.
    let (plain, manifest) = oci_archive(
        scratch.path(),
        "plain.tar",
        serde_json::json!({"org.opencontainers.image.ref.name": "ros-test/busybox:oci"}),
        &busybox,
        false,
    );
    let (names, _) = load(&runtime, &plain).await;
    assert_eq!(names, ["docker.io/ros-test/busybox:oci"]);

    // Docker 25's pair: a bare tag, and containerd's full name.
    let (compressed, same) = oci_archive(
        scratch.path(),
        "compressed.tar.gz",
        serde_json::json!({
            "org.opencontainers.image.ref.name": "gz",
            "io.containerd.image.name": "127.0.0.1:5000/ros-test/busybox:gz",
        }),
        &busybox,
        true,
    );
    assert_eq!(manifest, same);
    let started = Instant::now();
    let (names, events) = load(&runtime, &compressed).await;
    eprintln!("gzip OCI archive loaded in {:?}", started.elapsed());
    assert_eq!(names, ["127.0.0.1:5000/ros-test/busybox:gz"]);
    let gz = layer.gzip.clone();
    assert!(
        matches!(&events[0], LoadEvent::Layer { digest, size, .. }
            if *digest == sha256_digest(&gz) && *size == gz.len() as u64),
        "{events:?}"
    );

    let listed = image::list_images(&runtime).await.unwrap();
    let config = busybox.config.clone();
    let size = (manifest.len() + config.len() + gz.len()) as u64;
    let names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "127.0.0.1:5000/ros-test/busybox:gz",
            "docker.io/ros-test/busybox:oci"
        ],
        "sorted by name"
    );
    for summary in &listed {
        assert_eq!(summary.digest, sha256_digest(&manifest));
        assert_eq!(summary.size, size);
        assert_eq!(summary.created.as_deref(), Some(CREATED));
    }
    collect_garbage(&daemon).await;
    assert_eq!(
        run_image(&daemon, &runtime, "127.0.0.1:5000/ros-test/busybox:gz").await,
        OUTPUT
    );
    assert_eq!(
        run_image(&daemon, &runtime, "ros-test/busybox:oci").await,
        OUTPUT
    );

    // A bare tag alone names no repository: refused, nothing recorded.
    let (bare, _) = oci_archive(
        scratch.path(),
        "bare.tar",
        serde_json::json!({"org.opencontainers.image.ref.name": "latest"}),
        &busybox,
        false,
    );
    let error = image::load_archive(&runtime, &bare, &mut |_| {})
        .await
        .unwrap_err();
    eprintln!("{error}");
    assert!(
        matches!(&error.failure, Failure::Archive(ArchiveError::BareTag { tag, .. }) if tag == "latest"),
        "{error:?}"
    );
    assert_eq!(image::list_images(&runtime).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_twice_is_harmless() {
    require_root!();
    let (daemon, runtime, scratch, busybox) = setup().await;
    let archive = docker_archive(scratch.path(), &["ros-test/busybox:twice"], &busybox);
    let (first, _) = load(&runtime, &archive).await;
    let before = image::list_images(&runtime).await.unwrap();
    collect_garbage(&daemon).await;

    let started = Instant::now();
    let (second, events) = load(&runtime, &archive).await;
    eprintln!("second load of the same archive: {:?}", started.elapsed());
    assert_eq!(first, second);
    assert_eq!(image::list_images(&runtime).await.unwrap(), before);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        run_image(&daemon, &runtime, "ros-test/busybox:twice").await,
        OUTPUT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_layer_and_a_truncated_archive_are_refused_and_leave_nothing_listed() {
    require_root!();
    let (daemon, runtime, scratch, busybox) = setup().await;
    let layer = &busybox.layers[0];

    // One byte of busybox changed: the tar is still a tar, its digest
    // no longer the config's diff ID.
    let mut corrupted = layer.tar.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    let mut bad = busybox.clone();
    bad.layers[0].tar = corrupted.clone();
    let archive = docker_archive(scratch.path(), &["ros-test/busybox:bad"], &bad);
    let error = image::load_archive(&runtime, &archive, &mut |_| {})
        .await
        .unwrap_err();
    let message = error.to_string();
    eprintln!("{message}");
    let blob = format!("{}/layer.tar", &layer.diff_id[7..]);
    assert!(
        matches!(&error.failure, Failure::Archive(ArchiveError::Digest { blob: b, expected, .. })
            if *b == blob && *expected == layer.diff_id),
        "{error:?}"
    );
    assert!(message.contains(&blob), "{message}");
    assert!(
        message.contains(&archive.display().to_string()),
        "{message}"
    );
    assert_eq!(error.code(), Code::DataLoss);
    collect_garbage(&daemon).await;
    assert!(!has_blob(&daemon, &sha256_digest(&corrupted)).await);
    assert!(!has_blob(&daemon, &layer.diff_id).await);

    // Cut inside the layer, as a copy that stopped half way.
    let whole = docker_archive(scratch.path(), &["ros-test/busybox:cut"], &busybox);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = scratch.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let error = image::load_archive(&runtime, &cut, &mut |_| {})
        .await
        .unwrap_err();
    eprintln!("{error}");
    assert!(
        matches!(
            &error.failure,
            Failure::Archive(ArchiveError::Truncated { .. })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("truncated"), "{error}");

    // The same, gzip-compressed.
    let (gz, _) = oci_archive(
        scratch.path(),
        "cut.tar.gz",
        serde_json::json!({"io.containerd.image.name": "ros-test/busybox:cutgz"}),
        &busybox,
        true,
    );
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let error = image::load_archive(&runtime, &gz, &mut |_| {})
        .await
        .unwrap_err();
    eprintln!("{error}");
    assert!(error.to_string().contains("truncated"), "{error:?}");

    // Not an archive at all.
    let junk = scratch.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let error = image::load_archive(&runtime, &junk, &mut |_| {})
        .await
        .unwrap_err();
    eprintln!("{error}");
    assert!(error.to_string().contains("junk.tar"), "{error}");

    assert_eq!(image::list_images(&runtime).await.unwrap(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_image_is_gone_with_its_content_and_an_unknown_one_is_named() {
    require_root!();
    let (daemon, runtime, scratch, busybox) = setup().await;
    let layer = &busybox.layers[0];
    let archive = docker_archive(scratch.path(), &["ros-test/busybox:rm"], &busybox);
    load(&runtime, &archive).await;
    assert!(has_blob(&daemon, &layer.diff_id).await);

    image::remove_image(&runtime, "ros-test/busybox:rm")
        .await
        .unwrap();
    assert_eq!(image::list_images(&runtime).await.unwrap(), []);
    assert!(
        !has_blob(&daemon, &layer.diff_id).await,
        "the collector freed the layer"
    );

    let error = image::remove_image(&runtime, "ros-test/busybox:rm")
        .await
        .unwrap_err();
    eprintln!("{error}");
    assert_eq!(error.code(), Code::NotFound);
    assert!(
        error
            .to_string()
            .starts_with("image docker.io/ros-test/busybox:rm: removing the image: "),
        "{error}"
    );
    let error = image::remove_image(&runtime, "Not A Name")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preload_directory_loads_each_archive_once_by_content() {
    require_root!();
    let (_daemon, runtime, scratch, busybox) = setup().await;
    let dir = scratch.path().join("preload");
    let record = scratch.path().join("state/preloaded");
    assert_eq!(image::preload_dir(&runtime, &dir, &record).await, []);

    std::fs::create_dir(&dir).unwrap();
    let docker = docker_archive(scratch.path(), &["ros-test/busybox:pre1"], &busybox);
    std::fs::rename(&docker, dir.join("a.tar")).unwrap();
    oci_archive(
        &dir,
        "b.tar.gz",
        serde_json::json!({"io.containerd.image.name": "ros-test/busybox:pre2"}),
        &busybox,
        true,
    );
    std::fs::write(dir.join("README.txt"), "archives here are loaded at boot\n").unwrap();
    std::fs::write(dir.join("broken.tar"), vec![b'x'; 2048]).unwrap();
    std::fs::create_dir(dir.join("sub.tar")).unwrap();

    let outcomes = image::preload_dir(&runtime, &dir, &record).await;
    eprintln!("{outcomes:#?}");
    let [readme, a, b, broken, sub] = &outcomes[..] else {
        panic!("{outcomes:?}");
    };
    assert!(
        matches!(readme, PreloadOutcome::Skipped { file, reason }
            if file.ends_with("README.txt") && reason.contains(".tar.gz")),
        "{readme:?}"
    );
    assert_eq!(
        *a,
        PreloadOutcome::Loaded {
            file: dir.join("a.tar"),
            images: vec!["docker.io/ros-test/busybox:pre1".into()],
        }
    );
    assert_eq!(
        *b,
        PreloadOutcome::Loaded {
            file: dir.join("b.tar.gz"),
            images: vec!["docker.io/ros-test/busybox:pre2".into()],
        }
    );
    assert!(
        matches!(broken, PreloadOutcome::Failed { file, error }
            if file.ends_with("broken.tar") && error.contains("broken.tar")),
        "{broken:?}"
    );
    assert!(
        matches!(sub, PreloadOutcome::Skipped { reason, .. } if reason == "not a regular file"),
        "{sub:?}"
    );
    let names: Vec<String> = image::list_images(&runtime)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(
        names,
        [
            "docker.io/ros-test/busybox:pre1",
            "docker.io/ros-test/busybox:pre2"
        ]
    );

    // Removed images are not brought back, and a renamed archive is
    // known by its content: nothing loads again.
    for name in &names {
        image::remove_image(&runtime, name).await.unwrap();
    }
    std::fs::rename(dir.join("a.tar"), dir.join("renamed.tar")).unwrap();
    let again = image::preload_dir(&runtime, &dir, &record).await;
    eprintln!("{again:#?}");
    assert_eq!(again.len(), 5);
    assert_eq!(
        again[1],
        PreloadOutcome::AlreadyLoaded {
            file: dir.join("b.tar.gz")
        }
    );
    assert!(matches!(again[2], PreloadOutcome::Failed { .. }));
    assert_eq!(
        again[3],
        PreloadOutcome::AlreadyLoaded {
            file: dir.join("renamed.tar")
        }
    );
    assert_eq!(image::list_images(&runtime).await.unwrap(), []);
}

/// A memory figure of this process from /proc/self/status, in kB:
/// `VmRSS` now, `VmHWM` the peak since `reset_peak`.
fn memory_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_layer_streams_through_bounded_memory() {
    require_root!();
    let daemon = PrivateContainerd::start();
    let runtime = daemon.client().await;
    let scratch = tempfile::tempdir().unwrap();
    // 128 MiB that does not compress, beside busybox.
    let root = scratch.path().join("big-layer");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let status = Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=128", "status=none"])
        .arg(format!("of={}", root.join("random").display()))
        .status()
        .unwrap();
    assert!(status.success());
    let layer_path = scratch.path().join("layer.tar");
    let status = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&layer_path)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let output = Command::new("sha256sum").arg(&layer_path).output().unwrap();
    let diff_id = format!(
        "sha256:{}",
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    );
    let layer_size = std::fs::metadata(&layer_path).unwrap().len();
    let config = config(&["/bin/sh", "-c", "echo big"]).to_json(&[&diff_id]);
    let config_name = format!("{}.json", &sha256_digest(&config)[7..]);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["ros-test/big:1"],
        "Layers": ["big/layer.tar"],
    }]))
    .unwrap();
    let archive = scratch.path().join("big.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    builder
        .append_path_with_name(&layer_path, "big/layer.tar")
        .unwrap();
    append(&mut builder, &config_name, &config);
    append(&mut builder, "manifest.json", &manifest);
    builder.finish().unwrap();
    drop(builder);

    reset_peak();
    let before = memory_kb("VmRSS");
    let started = Instant::now();
    let mut layer_done = None;
    image::load_archive(&runtime, &archive, &mut |e| {
        if matches!(e, LoadEvent::Layer { .. }) {
            layer_done = Some(started.elapsed());
        }
    })
    .await
    .unwrap();
    let total = started.elapsed();
    let copied = layer_done.unwrap();
    let peak = memory_kb("VmHWM");
    eprintln!(
        "{layer_size}-byte layer: copied into containerd in {copied:?} ({:.1} MB/s, both \
         passes), whole load with unpack {total:?}; peak RSS {peak} kB (RSS before: {before} kB)",
        layer_size as f64 / 1e6 / copied.as_secs_f64()
    );
    assert!(
        peak < before + 64 * 1024,
        "peak RSS {peak} kB (from {before} kB) while loading a {layer_size}-byte layer"
    );
    assert_eq!(
        run_image(&daemon, &runtime, "ros-test/big:1").await,
        "big\n"
    );
}

/// The CLI and PID 1 may spawn these: their futures must be `Send`
/// (checked when this compiles; never run).
#[allow(dead_code)]
fn the_futures_are_send(runtime: &Containerd, path: &Path) {
    fn send<T: Send>(_: T) {}
    let mut quiet = |_: LoadEvent| {};
    send(image::load_archive(runtime, path, &mut quiet));
    send(image::list_images(runtime));
    send(image::remove_image(runtime, "x"));
    send(image::preload_dir(runtime, path, path));
}
