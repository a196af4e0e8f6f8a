//! Datasources against real things: config-drive and NoCloud images built
//! here (vfat with mkfs.vfat + mtools, iso9660 with genisoimage), and local
//! HTTP servers for `url:`, `cmdline` and EC2 IMDSv2 (which refuses reads
//! without a token, as EC2 does).
//!
//! Without root, images are "mounted" by extracting them with mtools or
//! xorriso; as root (CI), the same images are attached to loop devices,
//! found by label through /sys/class/block and mounted for real.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use os_config::datasource::block::{BlockDevices, Mounter, SysBlockDevices, SystemMounter};
use os_config::datasource::http::{CaBundleError, HttpClient, HttpError};
use os_config::datasource::label::FsType;
use os_config::datasource::{
    BoxFuture, Datasource, DatasourceError, Environment, Strategy, fetch_first, from_specs,
};
use os_config::schema::DatasourceSpec;
use os_config::userdata::{Payload, UserData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CLOUD_CONFIG: &str = "#cloud-config\nrancher:\n  debug: true\n";

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds a filesystem image labelled `label` holding `files`.
fn build_image(dir: &Path, fs_type: FsType, label: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let tree = dir.join(format!("tree-{label}"));
    for (path, content) in files {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let image = dir.join(format!("{label}.{}", fs_type.mount_name()));
    match fs_type {
        FsType::Vfat => {
            run(Command::new("truncate").arg("-s").arg("4M").arg(&image));
            run(Command::new("mkfs.vfat").args(["-n", label]).arg(&image));
            let mut mcopy = Command::new("mcopy");
            mcopy.arg("-s").arg("-i").arg(&image);
            for entry in std::fs::read_dir(&tree).unwrap() {
                mcopy.arg(entry.unwrap().path());
            }
            run(mcopy.arg("::/"));
        }
        FsType::Iso9660 => run(Command::new("genisoimage")
            .args(["-quiet", "-J", "-r", "-V", label, "-o"])
            .arg(&image)
            .arg(&tree)),
        FsType::Ext4 => run(Command::new("mkfs.ext4")
            .args(["-q", "-L", label, "-d"])
            .arg(&tree)
            .arg(&image)
            .arg("8M")),
    }
    image
}

/// Block devices that are image files.
#[derive(Debug)]
struct ImageFiles(Vec<PathBuf>);

impl BlockDevices for ImageFiles {
    fn list(&self) -> io::Result<Vec<PathBuf>> {
        Ok(self.0.clone())
    }
}

/// "Mounts" an image by extracting it with mtools or xorriso, so the test
/// needs no root; records every call.
#[derive(Debug, Default)]
struct ExtractingMounter {
    calls: Mutex<Vec<String>>,
}

impl Mounter for ExtractingMounter {
    fn mount_read_only(&self, device: &Path, target: &Path, fs_type: FsType) -> io::Result<()> {
        self.calls.lock().unwrap().push(format!(
            "mount {} {}",
            device.display(),
            fs_type.mount_name()
        ));
        match fs_type {
            FsType::Vfat => run(Command::new("mcopy")
                .arg("-s")
                .arg("-i")
                .arg(device)
                .arg("::/")
                .arg(target)),
            FsType::Iso9660 => run(Command::new("xorriso")
                .args(["-osirrox", "on", "-indev"])
                // `stdio:` lets xorriso read a block device (a loop device) too.
                .arg(format!("stdio:{}", device.display()))
                .args(["-extract", "/"])
                .arg(target)),
            FsType::Ext4 => run(Command::new("debugfs")
                .arg("-R")
                .arg(format!("rdump / {}", target.display()))
                .arg(device)),
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        self.calls.lock().unwrap().push("unmount".to_owned());
        std::fs::remove_dir_all(target)?;
        std::fs::create_dir_all(target)
    }
}

fn environment(
    dir: &Path,
    devices: Arc<dyn BlockDevices>,
    mounter: Arc<dyn Mounter>,
) -> Environment {
    Environment {
        cmdline: os_config::Cmdline::default(),
        block_devices: devices,
        mounter,
        mount_dir: dir.join("mnt"),
        ec2_base_url: "http://127.0.0.1:9".to_owned(),
        http: quick_http(),
    }
}

fn quick_http() -> HttpClient {
    HttpClient {
        timeout: Duration::from_secs(2),
        attempts: 3,
        backoff: Duration::from_millis(20),
        ..HttpClient::default()
    }
}

fn config_drive_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("openstack/latest/user_data", CLOUD_CONFIG.as_bytes()),
        (
            "openstack/latest/meta_data.json",
            br#"{"uuid": "d8e02d56", "hostname": "drive-host", "public_keys": {"k": "ssh-ed25519 AAAA drive"}}"#,
        ),
    ]
}

fn nocloud_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("user-data", b"#!/bin/sh\necho seeded\n"),
        (
            "meta-data",
            b"instance-id: iid-01\nlocal-hostname: seed-host\n",
        ),
    ]
}

async fn fetch_one(spec: &str, env: &Environment) -> Result<Option<UserData>, DatasourceError> {
    let sources = from_specs(&[spec.parse::<DatasourceSpec>().unwrap()], env);
    sources[0].fetch().await
}

#[tokio::test]
async fn config_drive_and_nocloud_images_are_found_by_label_and_read() {
    let dir = tempfile::tempdir().unwrap();
    for fs_type in [FsType::Vfat, FsType::Iso9660, FsType::Ext4] {
        let drive = build_image(dir.path(), fs_type, "config-2", &config_drive_files());
        let seed = build_image(dir.path(), fs_type, "cidata", &nocloud_files());
        let decoy = build_image(dir.path(), fs_type, "DATA", &[("x", b"y")]);
        let mounter = Arc::new(ExtractingMounter::default());
        let env = environment(
            dir.path(),
            Arc::new(ImageFiles(vec![decoy, drive.clone(), seed.clone()])),
            mounter.clone(),
        );

        let data = fetch_one("configdrive", &env)
            .await
            .unwrap()
            .expect("config drive found");
        assert_eq!(data.payload, Payload::CloudConfig(CLOUD_CONFIG.to_owned()));
        assert_eq!(data.metadata.hostname.as_deref(), Some("drive-host"));
        assert_eq!(data.metadata.instance_id.as_deref(), Some("d8e02d56"));
        assert_eq!(data.metadata.public_keys, ["ssh-ed25519 AAAA drive"]);

        let data = fetch_one("nocloud", &env)
            .await
            .unwrap()
            .expect("seed found");
        assert_eq!(
            data.payload,
            Payload::Script(b"#!/bin/sh\necho seeded\n".to_vec())
        );
        assert_eq!(data.metadata.hostname.as_deref(), Some("seed-host"));

        let name = fs_type.mount_name();
        assert_eq!(
            *mounter.calls.lock().unwrap(),
            [
                format!("mount {} {name}", drive.display()),
                "unmount".to_owned(),
                format!("mount {} {name}", seed.display()),
                "unmount".to_owned(),
            ]
        );
    }
}

#[tokio::test]
async fn a_missing_disk_is_nothing_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let decoy = build_image(dir.path(), FsType::Vfat, "OTHER", &[("x", b"y")]);
    let env = environment(
        dir.path(),
        Arc::new(ImageFiles(vec![decoy, dir.path().join("vanished")])),
        Arc::new(ExtractingMounter::default()),
    );
    assert!(fetch_one("configdrive", &env).await.unwrap().is_none());
    assert!(fetch_one("nocloud", &env).await.unwrap().is_none());
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(
        fetch_one(&format!("configdrive:{}", empty.display()), &env)
            .await
            .unwrap()
            .is_none()
    );
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A loop device attached to an image, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(image: &Path) -> Self {
        let output = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(image)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(String::from_utf8(output.stdout).unwrap().trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn kernel_supports(fs_type: FsType) -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|list| {
        list.lines()
            .any(|line| line.split_whitespace().last() == Some(fs_type.mount_name()))
    })
}

#[tokio::test]
async fn as_root_loop_devices_are_found_in_sysfs_and_mounted() {
    if !is_root() {
        // In CI a skip would read as a pass.
        assert!(
            !std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0"),
            "as_root_loop_devices_are_found_in_sysfs_and_mounted needs root: CI must run it as root"
        );
        eprintln!(
            "SKIPPED as_root_loop_devices_are_found_in_sysfs_and_mounted: needs root (loop devices, mount)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let drive = build_image(
        dir.path(),
        FsType::Iso9660,
        "config-2",
        &config_drive_files(),
    );
    let seed = build_image(dir.path(), FsType::Vfat, "cidata", &nocloud_files());
    let _drive_loop = Loop::attach(&drive);
    let _seed_loop = Loop::attach(&seed);

    // The scan through /sys/class/block and the label read from /dev/loopN
    // are real; mounting is real where this kernel has the filesystems.
    let real_mount = kernel_supports(FsType::Iso9660) && kernel_supports(FsType::Vfat);
    let mounter: Arc<dyn Mounter> = if real_mount {
        Arc::new(SystemMounter)
    } else {
        eprintln!(
            "SKIPPED the real mount(2) in as_root_loop_devices_are_found_in_sysfs_and_mounted: \
             this kernel lacks vfat or iso9660 (see /proc/filesystems); extracting instead"
        );
        Arc::new(ExtractingMounter::default())
    };
    let env = environment(dir.path(), Arc::new(SysBlockDevices::default()), mounter);

    let data = fetch_one("configdrive", &env)
        .await
        .unwrap()
        .expect("config drive on a loop device");
    assert_eq!(data.metadata.hostname.as_deref(), Some("drive-host"));
    let data = fetch_one("nocloud", &env)
        .await
        .unwrap()
        .expect("seed on a loop device");
    assert_eq!(data.metadata.hostname.as_deref(), Some("seed-host"));
    // Unmounted again: the mount points are empty directories.
    for sub in ["configdrive", "nocloud"] {
        let target = dir.path().join("mnt").join(sub);
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            0,
            "{} still mounted",
            target.display()
        );
    }
}

/// One scripted answer of a test server.
#[derive(Clone)]
struct Route {
    status: u16,
    body: Vec<u8>,
}

/// A local HTTP/1.1 server: `routes` by "METHOD /path"; with `token`, it
/// behaves as IMDSv2 and refuses reads without `X-aws-ec2-metadata-token`.
struct TestServer {
    base_url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    async fn start(routes: HashMap<String, Route>, token: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buffer).into_owned();
                let mut lines = head.lines();
                let request_line = lines.next().unwrap_or_default();
                let key: String = request_line
                    .split(' ')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                };
                seen.lock().unwrap().push(key.clone());
                let route = match token {
                    Some(token) if key == "PUT /latest/api/token" => {
                        if header("x-aws-ec2-metadata-token-ttl-seconds").is_some() {
                            Route {
                                status: 200,
                                body: token.as_bytes().to_vec(),
                            }
                        } else {
                            Route {
                                status: 400,
                                body: b"missing ttl".to_vec(),
                            }
                        }
                    }
                    Some(token) if header("x-aws-ec2-metadata-token").as_deref() != Some(token) => {
                        Route {
                            status: 401,
                            body: b"Unauthorized".to_vec(),
                        }
                    }
                    _ => routes.get(&key).cloned().unwrap_or(Route {
                        status: 404,
                        body: b"Not Found".to_vec(),
                    }),
                };
                let response = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    route.status,
                    route.body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.write_all(&route.body).await;
            }
        });
        Self { base_url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn route(status: u16, body: &[u8]) -> Route {
    Route {
        status,
        body: body.to_vec(),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn imds_routes() -> HashMap<String, Route> {
    HashMap::from([
        (
            "GET /latest/user-data".to_owned(),
            route(200, &gzip(CLOUD_CONFIG.as_bytes())),
        ),
        (
            "GET /latest/meta-data/hostname".to_owned(),
            route(200, b"ip-172-31-5-6.ec2.internal"),
        ),
        (
            "GET /latest/meta-data/instance-id".to_owned(),
            route(200, b"i-0123456789abcdef0"),
        ),
        (
            "GET /latest/meta-data/local-ipv4".to_owned(),
            route(200, b"172.31.5.6"),
        ),
        (
            "GET /latest/meta-data/public-keys/0/openssh-key".to_owned(),
            route(200, b"ssh-rsa AAAAB3 my-ec2-key\n"),
        ),
    ])
}

#[tokio::test]
async fn ec2_uses_an_imdsv2_token_for_every_read() {
    let server = TestServer::start(imds_routes(), Some("tok-123")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = environment(
        dir.path(),
        Arc::new(ImageFiles(vec![])),
        Arc::new(ExtractingMounter::default()),
    );
    env.ec2_base_url = server.base_url.clone();

    let data = fetch_one("ec2", &env)
        .await
        .unwrap()
        .expect("IMDS answered");
    assert_eq!(data.payload, Payload::CloudConfig(CLOUD_CONFIG.to_owned()));
    assert_eq!(
        data.metadata.hostname.as_deref(),
        Some("ip-172-31-5-6.ec2.internal")
    );
    assert_eq!(
        data.metadata.instance_id.as_deref(),
        Some("i-0123456789abcdef0")
    );
    assert_eq!(
        data.metadata.local_ipv4.map(|ip| ip.to_string()).as_deref(),
        Some("172.31.5.6")
    );
    assert_eq!(data.metadata.public_keys, ["ssh-rsa AAAAB3 my-ec2-key"]);
    assert_eq!(server.requests()[0], "PUT /latest/api/token");

    // The metadata fills what the user-data left out.
    let user = data.to_user_config().unwrap();
    let hostname = user.value.get("hostname").and_then(|v| v.as_str());
    assert_eq!(hostname, Some("ip-172-31-5-6.ec2.internal"));

    // The server really refuses a read without the token, as EC2 does.
    let refused = quick_http()
        .get(&format!("{}/latest/user-data", server.base_url), &[])
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn ec2_without_user_data_still_gives_metadata_and_off_ec2_is_nothing() {
    let mut routes = imds_routes();
    routes.remove("GET /latest/user-data");
    let server = TestServer::start(routes, Some("t")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = environment(
        dir.path(),
        Arc::new(ImageFiles(vec![])),
        Arc::new(ExtractingMounter::default()),
    );
    env.ec2_base_url = server.base_url.clone();
    let data = fetch_one("ec2", &env).await.unwrap().unwrap();
    assert_eq!(data.payload, Payload::Empty);
    assert_eq!(
        data.metadata.instance_id.as_deref(),
        Some("i-0123456789abcdef0")
    );

    // Nothing listening: not EC2.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    env.ec2_base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    assert!(fetch_one("ec2", &env).await.unwrap().is_none());
}

#[tokio::test]
async fn a_url_answer_past_the_user_data_cap_is_refused_once_naming_the_cap() {
    let big = vec![b'#'; os_config::userdata::MAX_USER_DATA + 1];
    let routes = HashMap::from([("GET /huge".to_owned(), route(200, &big))]);
    let server = TestServer::start(routes, None).await;
    let dir = tempfile::tempdir().unwrap();
    let env = environment(
        dir.path(),
        Arc::new(ImageFiles(vec![])),
        Arc::new(ExtractingMounter::default()),
    );
    let url = format!("{}/huge", server.base_url);
    let error = fetch_one(&format!("url:{url}"), &env).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{url}: the answer is larger than {} bytes (the user-data cap); refused",
            os_config::userdata::MAX_USER_DATA
        )
    );
    // The same server would send the same again: not retried.
    assert_eq!(server.requests(), ["GET /huge"]);
}

#[tokio::test]
async fn url_and_cmdline_fetch_over_http() {
    let routes = HashMap::from([
        (
            "GET /user-data".to_owned(),
            route(200, &gzip(b"#!/bin/sh\necho url\n")),
        ),
        ("GET /broken".to_owned(), route(500, b"oops")),
    ]);
    let server = TestServer::start(routes, None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = environment(
        dir.path(),
        Arc::new(ImageFiles(vec![])),
        Arc::new(ExtractingMounter::default()),
    );

    let data = fetch_one(&format!("url:{}/user-data", server.base_url), &env)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        data.payload,
        Payload::Script(b"#!/bin/sh\necho url\n".to_vec())
    );
    assert!(
        fetch_one(&format!("url:{}/absent", server.base_url), &env)
            .await
            .unwrap()
            .is_none()
    );

    // 5xx is retried, a bounded number of times, then reported.
    let error = fetch_one(&format!("url:{}/broken", server.base_url), &env)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DatasourceError::Status { status: 500, .. }),
        "{error}"
    );
    let broken = server
        .requests()
        .iter()
        .filter(|r| *r == "GET /broken")
        .count();
    assert_eq!(broken, 3);

    env.cmdline = os_config::Cmdline::parse(&format!(
        "quiet cloud-config-url={}/user-data rancher.debug",
        server.base_url
    ));
    let sources = from_specs(&[DatasourceSpec::Cmdline], &env);
    assert!(sources[0].needs_network());
    let data = sources[0].fetch().await.unwrap().unwrap();
    assert_eq!(
        data.payload,
        Payload::Script(b"#!/bin/sh\necho url\n".to_vec())
    );
    env.cmdline = os_config::Cmdline::parse("quiet");
    assert!(fetch_one("cmdline", &env).await.unwrap().is_none());
}

/// A source that answers after a delay, counting its calls.
#[derive(Debug)]
struct Scripted {
    name: &'static str,
    delay: Duration,
    answer: fn() -> Result<Option<UserData>, DatasourceError>,
    calls: AtomicUsize,
}

impl Datasource for Scripted {
    fn name(&self) -> String {
        self.name.to_owned()
    }

    fn needs_network(&self) -> bool {
        false
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<UserData>, DatasourceError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            (self.answer)()
        })
    }
}

fn scripted(
    name: &'static str,
    delay_ms: u64,
    answer: fn() -> Result<Option<UserData>, DatasourceError>,
) -> Arc<Scripted> {
    Arc::new(Scripted {
        name,
        delay: Duration::from_millis(delay_ms),
        answer,
        calls: AtomicUsize::new(0),
    })
}

fn found() -> Result<Option<UserData>, DatasourceError> {
    Ok(Some(UserData {
        payload: Payload::CloudConfig(CLOUD_CONFIG.to_owned()),
        metadata: Default::default(),
    }))
}

fn nothing() -> Result<Option<UserData>, DatasourceError> {
    Ok(None)
}

fn broken() -> Result<Option<UserData>, DatasourceError> {
    Err(DatasourceError::Unsupported("broken".into()))
}

#[tokio::test]
async fn in_order_the_first_with_something_wins_and_failures_are_reported() {
    let (bad, empty, good, never) = (
        scripted("bad", 0, broken),
        scripted("empty", 0, nothing),
        scripted("good", 0, found),
        scripted("never", 0, found),
    );
    let sources: Vec<Arc<dyn Datasource>> =
        vec![bad.clone(), empty.clone(), good.clone(), never.clone()];
    let report = fetch_first(&sources, Strategy::InOrder).await;
    assert_eq!(report.found.map(|(name, _)| name).as_deref(), Some("good"));
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].0, "bad");
    assert_eq!(
        never.calls.load(Ordering::SeqCst),
        0,
        "sources after the winner are not tried"
    );
}

#[tokio::test]
async fn in_parallel_the_fastest_answer_wins_and_the_deadline_holds() {
    let sources: Vec<Arc<dyn Datasource>> = vec![
        scripted("slow", 5_000, found),
        scripted("bad", 0, broken),
        scripted("fast", 50, found),
    ];
    let started = std::time::Instant::now();
    let report = fetch_first(
        &sources,
        Strategy::Parallel {
            timeout: Duration::from_secs(2),
        },
    )
    .await;
    assert_eq!(report.found.map(|(name, _)| name).as_deref(), Some("fast"));
    assert_eq!(report.errors.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));

    let sources: Vec<Arc<dyn Datasource>> = vec![
        scripted("slow", 5_000, found),
        scripted("empty", 0, nothing),
    ];
    let report = fetch_first(
        &sources,
        Strategy::Parallel {
            timeout: Duration::from_millis(200),
        },
    )
    .await;
    assert!(report.found.is_none());
    assert_eq!(report.timed_out, ["slow"]);
}

/// `openssl s_server -WWW` serving `dir` over TLS on 127.0.0.1, with a
/// self-signed certificate for that address (`cert.pem` in `dir`).
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

/// `cert.pem` and `key.pem` in `dir`: self-signed, for 127.0.0.1.
fn self_signed(dir: &Path) {
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .current_dir(dir));
}

impl TlsServer {
    fn start(dir: &Path) -> Self {
        self_signed(dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args([
                "s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem",
            ])
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("openssl from Debian's openssl package");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "openssl s_server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn url_over_https_trusts_the_ca_bundle_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user-data"), CLOUD_CONFIG).unwrap();
    let server = TlsServer::start(dir.path());
    let url = format!("url:https://127.0.0.1:{}/user-data", server.port);
    let mut env = environment(
        dir.path(),
        Arc::new(ImageFiles(vec![])),
        Arc::new(ExtractingMounter::default()),
    );

    // The server's certificate in the bundle: fetched.
    env.http.ca_bundle = dir.path().join("cert.pem");
    let data = fetch_one(&url, &env).await.unwrap().unwrap();
    assert_eq!(data.payload, Payload::CloudConfig(CLOUD_CONFIG.to_owned()));

    // A bundle without it: the handshake fails, and says why.
    let other = tempfile::tempdir().unwrap();
    self_signed(other.path());
    env.http.ca_bundle = other.path().join("cert.pem");
    let error = fetch_one(&url, &env).await.unwrap_err();
    eprintln!("untrusted: {error}");
    assert!(error.to_string().contains("certificate"), "{error}");

    // No bundle at all: named.
    env.http.ca_bundle = dir.path().join("absent.pem");
    let error = fetch_one(&url, &env).await.unwrap_err();
    assert!(
        matches!(
            error,
            DatasourceError::Http(HttpError::CaCertificates {
                reason: CaBundleError::Pem(_),
                ..
            })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("absent.pem"), "{error}");

    // A bundle with no certificate in it: named, and said so.
    env.http.ca_bundle = dir.path().join("empty.pem");
    std::fs::write(&env.http.ca_bundle, "not a certificate\n").unwrap();
    let error = fetch_one(&url, &env).await.unwrap_err();
    assert!(
        matches!(
            error,
            DatasourceError::Http(HttpError::CaCertificates {
                reason: CaBundleError::Empty,
                ..
            })
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("empty.pem: no certificate in it"),
        "{error}"
    );
}
