//! For tests only: small container images made from the host's static
//! busybox, written as a `docker save` archive or an OCI image layout
//! archive, or pushed to a local registry (Debian's `docker-registry`).
//! The host tests of `system-services` and `workloads` pull and load
//! them; the QEMU tests serve them to the guest, which reaches the
//! host's loopback as 10.0.2.2.
//!
//! How the parts fit: a [`Layer`] is the tar of a directory (busybox,
//! or a few files); a [`Config`] is the image config's process part; an
//! [`Image`] is layers plus the config's bytes, and writes itself as
//! either archive or is pushed by [`LocalRegistry::push`]. The registry
//! can require basic auth (an htpasswd line) and serve HTTPS with a
//! throwaway CA ([`Pki`]); our own pushes speak plain HTTP only, so tests
//! of an HTTPS registry push with an OCI client of their own.
//!
//! Layers are made with GNU tar (sorted, numeric owners, mtime 0) so the
//! same tree gives the same digest; pushes are the registry API's
//! monolithic uploads over a plain TCP stream, with no HTTP client
//! library.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

mod cluster;
pub use cluster::{HOST_FROM_GUEST, Registration, RegistrationServer, agent_binary, agent_image};

/// The OCI media types used here.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `bytes` gzipped (default level, so the same bytes give the same gzip).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// One layer: its tar, the gzip of it, and the tar's digest (diff ID).
#[derive(Debug, Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub gzip: Vec<u8>,
    pub diff_id: String,
}

impl Layer {
    /// The tar of everything below `dir`.
    pub fn from_dir(dir: &Path) -> Self {
        let tar = tar_dir(dir);
        Self {
            gzip: gzip(&tar),
            diff_id: sha256_digest(&tar),
            tar,
        }
    }

    /// Busybox with a link for every applet it has, the usual mount
    /// points (`proc sys dev etc tmp run var/log`), and `files`.
    pub fn busybox(files: &[(&str, &str)]) -> Self {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let root = scratch.path();
        std::fs::create_dir_all(root.join("bin")).expect("making bin");
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox from Debian's busybox-static");
        let list = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                    .expect("linking an applet");
            }
        }
        for dir in ["proc", "sys", "dev", "etc", "tmp", "run", "var/log"] {
            std::fs::create_dir_all(root.join(dir)).expect("making a mount point");
        }
        write_files(root, files);
        Self::from_dir(root)
    }

    /// A layer of `files` alone (to stack on another).
    pub fn files(files: &[(&str, &str)]) -> Self {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        write_files(scratch.path(), files);
        Self::from_dir(scratch.path())
    }
}

/// Writes each (path below `root`, content); a path ending in `/` is an
/// empty directory (a mount point the image must have).
fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path_in_root = root.join(path.trim_start_matches('/'));
        if path.ends_with('/') {
            std::fs::create_dir_all(&path_in_root).expect("making a directory");
            continue;
        }
        std::fs::create_dir_all(path_in_root.parent().expect("a file below the root"))
            .expect("making a directory");
        std::fs::write(&path_in_root, text).expect("writing an image file");
    }
}

/// What an image config says beside its layers: the platform, when it
/// was made, and the process (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`,
/// `User`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub architecture: String,
    pub created: Option<String>,
    /// Left out of the JSON when empty.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl Config {
    /// linux/amd64 running `cmd` with `PATH=/bin`, nothing else set.
    pub fn new(cmd: &[&str]) -> Self {
        Self {
            architecture: "amd64".into(),
            created: None,
            entrypoint: Vec::new(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            working_dir: None,
            user: None,
        }
    }

    /// The config's JSON for layers with these diff IDs (keys sorted, so
    /// the same config gives the same digest).
    pub fn to_json(&self, diff_ids: &[&str]) -> Vec<u8> {
        let mut process = serde_json::json!({"Cmd": self.cmd, "Env": self.env});
        if !self.entrypoint.is_empty() {
            process["Entrypoint"] = self.entrypoint.clone().into();
        }
        if let Some(dir) = &self.working_dir {
            process["WorkingDir"] = dir.as_str().into();
        }
        if let Some(user) = &self.user {
            process["User"] = user.as_str().into();
        }
        let mut config = serde_json::json!({
            "architecture": self.architecture,
            "os": "linux",
            "config": process,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(created) = &self.created {
            config["created"] = created.as_str().into();
        }
        serde_json::to_vec(&config).expect("JSON in memory")
    }
}

/// An image: its layers and config.
#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
}

impl Image {
    /// `layers`, bottom first, under `config`.
    pub fn new(layers: Vec<Layer>, config: &Config) -> Self {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let config = config.to_json(&diff_ids);
        Self { layers, config }
    }

    /// One layer: [`Layer::busybox`] with `files`; `cmd` is the image's
    /// command, in `/` with `PATH=/bin`.
    pub fn busybox(files: &[(&str, &str)], cmd: &[&str]) -> Self {
        let config = Config {
            created: Some("2026-01-01T00:00:00Z".into()),
            working_dir: Some("/".into()),
            ..Config::new(cmd)
        };
        Self::new(vec![Layer::busybox(files)], &config)
    }

    /// The OCI manifest (gzip layers) of the image.
    pub fn manifest(&self) -> Vec<u8> {
        let layers: Vec<_> = self
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": OCI_LAYER_GZIP,
                    "digest": sha256_digest(&l.gzip),
                    "size": l.gzip.len(),
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256_digest(&self.config),
                "size": self.config.len(),
            },
            "layers": layers,
        });
        serde_json::to_vec(&manifest).expect("JSON in memory")
    }

    /// Writes what `docker save` writes for `tag` (`name:tag`).
    pub fn docker_save(&self, tag: &str, out: &Path) {
        self.docker_save_tags(&[tag], out);
    }

    /// Writes what `docker save` writes for an image with these tags (the
    /// classic layout): `manifest.json`, the config as `<hex>.json`, and
    /// per layer `<diff-id hex>/layer.tar` (the layer's `tar`, whatever
    /// its `diff_id` says) with a `VERSION` beside it.
    pub fn docker_save_tags(&self, tags: &[&str], out: &Path) {
        let staging = tempfile::tempdir().expect("a temporary directory");
        let dir = staging.path();
        let config_name = format!("{}.json", hex(&sha256_digest(&self.config)));
        std::fs::write(dir.join(&config_name), &self.config).expect("writing the config");
        let mut layer_paths = Vec::new();
        for layer in &self.layers {
            let name = hex(&layer.diff_id);
            std::fs::create_dir_all(dir.join(name)).expect("making a layer directory");
            std::fs::write(dir.join(name).join("VERSION"), "1.0").expect("writing VERSION");
            std::fs::write(dir.join(name).join("layer.tar"), &layer.tar).expect("writing a layer");
            layer_paths.push(format!("{name}/layer.tar"));
        }
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": tags,
            "Layers": layer_paths,
        }]);
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&manifest).expect("JSON in memory"),
        )
        .expect("writing manifest.json");
        std::fs::write(out, tar_dir(dir)).expect("writing the archive");
    }

    /// Writes an OCI image layout archive naming the image `name`
    /// (`registry/repository:tag`) in its index.
    pub fn oci_archive(&self, name: &str, out: &Path) {
        self.oci_layout(
            serde_json::json!({"io.containerd.image.name": name}),
            false,
            out,
        );
    }

    /// Writes an OCI image layout archive whose index gives the manifest
    /// these `annotations` (`org.opencontainers.image.ref.name`,
    /// `io.containerd.image.name`...), the whole archive gzipped when
    /// `compress`. Returns the manifest's bytes.
    pub fn oci_layout(
        &self,
        annotations: serde_json::Value,
        compress: bool,
        out: &Path,
    ) -> Vec<u8> {
        let staging = tempfile::tempdir().expect("a temporary directory");
        let dir = staging.path();
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("making blobs/sha256");
        let put = |bytes: &[u8]| {
            let digest = sha256_digest(bytes);
            std::fs::write(blobs.join(hex(&digest)), bytes).expect("writing a blob");
            digest
        };
        put(&self.config);
        for layer in &self.layers {
            put(&layer.gzip);
        }
        let manifest = self.manifest();
        let digest = put(&manifest);
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("writing oci-layout");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": manifest.len(),
                "annotations": annotations,
            }],
        });
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&index).expect("JSON in memory"),
        )
        .expect("writing index.json");
        let mut bytes = tar_dir(dir);
        if compress {
            bytes = gzip(&bytes);
        }
        std::fs::write(out, bytes).expect("writing the archive");
        manifest
    }
}

/// The hex part of a `sha256:` digest.
fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// The tar of everything below `dir`: sorted, owned by 0:0, mtime 0,
/// so the same tree gives the same bytes.
fn tar_dir(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args([
            "--sort=name",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--mtime=@0",
            "-C",
        ])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "tar of {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A throwaway CA and a certificate it signed for some IP addresses,
/// made with openssl in a directory the caller keeps.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// Makes the CA and the 127.0.0.1 certificate (P-256, valid a day)
    /// in `dir`.
    pub fn for_loopback(dir: &Path) -> Self {
        Self::for_addresses(dir, &[IpAddr::from([127, 0, 0, 1])])
    }

    /// Makes the CA and a certificate for `addresses` (its subject
    /// alternative names; the first is also its CN), P-256, valid a
    /// day, in `dir`.
    pub fn for_addresses(dir: &Path, addresses: &[IpAddr]) -> Self {
        let first = addresses.first().expect("at least one address");
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
        let subject = format!("/CN={first}");
        openssl(dir, &[csr.concat(), vec!["-subj", &subject]].concat());
        let names: Vec<String> = addresses.iter().map(|a| format!("IP:{a}")).collect();
        std::fs::write(
            dir.join("leaf.ext"),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
                names.join(",")
            ),
        )
        .expect("writing leaf.ext");
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
        Self {
            ca: std::fs::read_to_string(dir.join("ca.pem")).expect("reading ca.pem"),
            cert: dir.join("leaf.pem"),
            key: dir.join("leaf.key"),
        }
    }
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

/// How a [`LocalRegistry`] serves: plain HTTP and anonymous unless told.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// One `user:bcrypt-hash` line: requires basic auth.
    pub htpasswd: Option<String>,
    /// Serve HTTPS with this certificate.
    pub tls: Option<Pki>,
}

/// Debian's `docker-registry` (distribution 2.8) on a free port of the
/// loopback, storing in a temporary directory; stopped when dropped.
#[derive(Debug)]
pub struct LocalRegistry {
    _dir: tempfile::TempDir,
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    pub port: u16,
    /// The CA of its certificate when it serves HTTPS.
    pub ca: Option<String>,
}

impl LocalRegistry {
    /// Plain HTTP, anonymous.
    pub fn start() -> Self {
        Self::start_with(&RegistrySettings::default())
    }

    pub fn start_with(settings: &RegistrySettings) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let auth = match &settings.htpasswd {
            Some(line) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{line}\n")).expect("writing htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: ros-test\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        let tls = match &settings.tls {
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
        std::fs::write(&config_path, config).expect("writing the registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("/usr/bin/docker-registry from Debian's docker-registry package");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            _dir: dir,
            child,
            address,
            port,
            ca: settings.tls.as_ref().map(|pki| pki.ca.clone()),
        }
    }

    /// `address/repository:tag`, the reference a client pulls.
    pub fn reference(&self, repository: &str, tag: &str) -> String {
        format!("{}/{repository}:{tag}", self.address)
    }

    /// Pushes `image` as `repository:tag` (plain HTTP, anonymous);
    /// returns the manifest digest.
    pub fn push(&self, repository: &str, tag: &str, image: &Image) -> String {
        assert!(
            self.ca.is_none(),
            "this push speaks plain HTTP: push to an HTTPS registry with an OCI client"
        );
        for layer in &image.layers {
            self.put_blob(repository, &layer.gzip);
        }
        self.put_blob(repository, &image.config);
        let manifest = image.manifest();
        let (status, _, _) = self.request(
            "PUT",
            &format!("/v2/{repository}/manifests/{tag}"),
            &[("Content-Type", OCI_MANIFEST)],
            &manifest,
        );
        assert_eq!(status, 201, "pushing the manifest of {repository}:{tag}");
        sha256_digest(&manifest)
    }

    /// A monolithic upload: a POST opens the upload, one PUT with the
    /// digest carries every byte.
    fn put_blob(&self, repository: &str, bytes: &[u8]) {
        let digest = sha256_digest(bytes);
        let (status, head, _) = self.request(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            &[],
        );
        assert_eq!(status, 202, "opening an upload to {repository}");
        let location = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_string())
            })
            .expect("the upload's Location");
        let path = location
            .strip_prefix(&format!("http://{}", self.address))
            .unwrap_or(&location);
        let separator = if path.contains('?') { '&' } else { '?' };
        let (status, _, _) = self.request(
            "PUT",
            &format!("{path}{separator}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        assert_eq!(status, 201, "uploading {digest} to {repository}");
    }

    /// One HTTP/1.1 request; returns the status, the head and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.address).expect("connecting to the registry");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.address,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .expect("sending to the registry");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .expect("reading the registry's answer");
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(response.len());
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let body = response.get(split + 4..).unwrap_or_default().to_vec();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        (status, head, body)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_image_is_served_back_by_the_registry() {
        let registry = LocalRegistry::start();
        let image = Image::busybox(&[("www/index.html", "hello\n")], &["/bin/sh"]);
        let digest = registry.push("test/web", "1", &image);
        let (status, _, body) = registry.request(
            "GET",
            "/v2/test/web/manifests/1",
            &[("Accept", OCI_MANIFEST)],
            &[],
        );
        assert_eq!(status, 200);
        assert_eq!(sha256_digest(&body), digest);
    }

    #[test]
    fn a_docker_save_archive_lists_its_tag_and_layers() {
        let dir = tempfile::tempdir().unwrap();
        let image = Image::busybox(&[], &["/bin/sh"]);
        let out = dir.path().join("image.tar");
        image.docker_save("web:1", &out);
        let listing = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("./manifest.json"), "{listing}");
        assert!(listing.contains("/layer.tar"), "{listing}");
    }

    #[test]
    fn an_oci_layout_names_the_image_and_is_gzipped_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let image = Image::new(
            vec![Layer::busybox(&[]), Layer::files(&[("etc/motd", "hi\n")])],
            &Config::new(&["cat", "/etc/motd"]),
        );
        let out = dir.path().join("image.tar.gz");
        let manifest = image.oci_layout(
            serde_json::json!({"org.opencontainers.image.ref.name": "web:1"}),
            true,
            &out,
        );
        assert_eq!(manifest, image.manifest());
        let listing = Command::new("tar").arg("-tzf").arg(&out).output().unwrap();
        assert!(listing.status.success());
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("./index.json"), "{listing}");
        let manifest_path = format!("./blobs/sha256/{}", hex(&sha256_digest(&manifest)));
        assert!(listing.contains(&manifest_path), "{listing}");
        let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(
            config["config"]["Cmd"],
            serde_json::json!(["cat", "/etc/motd"])
        );
    }

    #[test]
    fn a_registry_with_an_htpasswd_line_refuses_anonymous_requests() {
        let registry = LocalRegistry::start_with(&RegistrySettings {
            htpasswd: Some(
                "ros:$2b$04$NIr4jpZf.m7i1gLKstbU0ulT4Od7EKK0aBakbxmuaqBjKr48QoENe".into(),
            ),
            tls: None,
        });
        let (status, head, _) = registry.request("GET", "/v2/", &[], &[]);
        assert_eq!(status, 401, "{head}");
        assert!(head.contains("Basic realm=\"ros-test\""), "{head}");
    }
}
