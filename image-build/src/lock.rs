//! `image-build/debian.lock`: the Debian packages the image is built from,
//! pinned by name, version and the sha256 of the `.deb`, and the kernel
//! source tarball by its sha256.
//!
//! [`crate::debian::Packages`] takes versions from here instead of apt's
//! candidates and checks every download against the pinned sha256; the
//! kernel step checks the installed `linux-source` against its pin. So the
//! same commit builds from the same bytes whatever apt offers that day.
//! `image-build lock` (`./dev lock`) rewrites the file from what apt
//! offers now: the one command that moves the image to newer packages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::BuildDirs;
use crate::debian::Packages;
use crate::images::{CA_PACKAGE, HOST, SERVICES};

/// The lock file, in this crate's directory.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("debian.lock")
}

/// Packages taken one by one (their files, or only their version), not
/// with what they depend on: GRUB's tools and modules (boot_loader.rs),
/// ISOLINUX (iso.rs), the CA bundle's source (rootfs.rs) and the versions
/// of the source packages built here (containerd.rs, crun.rs,
/// dropbear.rs). A package asked for by name that is not here fails the
/// build, naming this list.
pub const SINGLE_PACKAGES: &[&str] = &[
    "grub-common",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "isolinux",
    "syslinux-common",
    CA_PACKAGE,
    crate::containerd::SOURCE_PACKAGE,
    crate::crun::SOURCE_PACKAGE,
    crate::dropbear::BINARY_PACKAGE,
];

/// One pinned `.deb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub version: String,
    pub sha256: String,
}

/// The whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// By package name.
    pub debs: BTreeMap<String, Pin>,
    /// Kernel source tarballs by path, with their sha256.
    pub tarballs: BTreeMap<PathBuf, String>,
}

const HEADER: &str = "\
# The Debian packages the image is built from: `deb <name> <version>
# <sha256 of the .deb>`, and the kernel source tarball: `tarball <path>
# <sha256>`. image-build uses these versions only and checks every
# download. Written by `./dev lock` (cargo run -p image-build -- lock),
# which moves every pin to what apt offers now; do not edit by hand.
";

impl Lock {
    /// Reads the lock file at [`path`].
    pub fn read() -> anyhow::Result<Self> {
        let path = path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (write it with `./dev lock`)", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lock = Self::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let line_no = number + 1;
            match fields.as_slice() {
                ["deb", name, version, sha256] => {
                    check_sha256(sha256).with_context(|| format!("line {line_no}"))?;
                    let pin = Pin {
                        version: (*version).to_owned(),
                        sha256: (*sha256).to_owned(),
                    };
                    if lock.debs.insert((*name).to_owned(), pin).is_some() {
                        bail!("line {line_no}: package {name} is pinned twice");
                    }
                }
                ["tarball", path, sha256] => {
                    check_sha256(sha256).with_context(|| format!("line {line_no}"))?;
                    if lock
                        .tarballs
                        .insert(PathBuf::from(path), (*sha256).to_owned())
                        .is_some()
                    {
                        bail!("line {line_no}: tarball {path} is pinned twice");
                    }
                }
                _ => bail!(
                    "line {line_no}: expected `deb <name> <version> <sha256>` or \
                     `tarball <path> <sha256>`, found {line:?}"
                ),
            }
        }
        Ok(lock)
    }

    /// The file's text: the header, then the pins in name order, so that
    /// a change of the lock reads as a small diff.
    pub fn to_text(&self) -> String {
        let mut text = String::from(HEADER);
        for (name, pin) in &self.debs {
            let _ = writeln!(text, "deb {name} {} {}", pin.version, pin.sha256);
        }
        for (path, sha256) in &self.tarballs {
            let _ = writeln!(text, "tarball {} {sha256}", path.display());
        }
        text
    }

    /// Fails unless `package` is installed at its pinned version; with
    /// `tarball`, also unless that file has its pinned sha256 (it is read
    /// whole: done before a kernel build, not on a cache hit).
    pub fn check_installed(
        &self,
        package: &str,
        installed: &str,
        tarball: Option<&Path>,
    ) -> anyhow::Result<()> {
        let pin = self.debs.get(package).with_context(|| {
            format!(
                "{package} is not pinned in {}: run `./dev lock`",
                path().display()
            )
        })?;
        if pin.version != installed {
            bail!(
                "{package} {installed} is installed, {} pins {}: \
                 `apt-get install {package}={}`, or `./dev lock` to build with {installed}",
                path().display(),
                pin.version,
                pin.version
            );
        }
        if let Some(tarball) = tarball {
            let pinned = self.tarballs.get(tarball).with_context(|| {
                format!(
                    "{} is not pinned in {}: run `./dev lock`",
                    tarball.display(),
                    path().display()
                )
            })?;
            let actual = sha256_file(tarball)?;
            if &actual != pinned {
                bail!(
                    "{} has sha256 {actual}, {} pins {pinned}: reinstall {package} \
                     (`apt-get install --reinstall {package}`)",
                    tarball.display(),
                    path().display()
                );
            }
        }
        Ok(())
    }
}

fn check_sha256(text: &str) -> anyhow::Result<()> {
    if text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        bail!("{text:?} is not a sha256 (64 lower-case hex digits)")
    }
}

/// The sha256 of a file, in lower-case hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// `image-build lock`: pins every package the image takes, at apt's
/// candidate versions, the kernel source at its installed version, and
/// writes the lock file. Prints what changed.
pub fn update(dirs: &BuildDirs) -> anyhow::Result<()> {
    let packages = Packages::resolving(&dirs.cache)?;
    let mut lock = Lock::default();
    let mut roots: Vec<&str> = HOST.packages.to_vec();
    for service in SERVICES {
        roots.extend(service.packages);
    }
    roots.sort_unstable();
    roots.dedup();
    let mut resolved = packages.closure(&roots)?;
    for name in SINGLE_PACKAGES {
        resolved.push(packages.candidate(name)?);
    }
    let kernel = crate::kernel::installed_source(dirs)?;
    resolved.push(packages.exact(&kernel.package, &kernel.version)?);
    for package in resolved {
        if package.sha256.is_empty() {
            bail!(
                "apt gives no sha256 for {} {} (installed from outside an apt repository?)",
                package.name,
                package.version
            );
        }
        lock.debs.insert(
            package.name,
            Pin {
                version: package.version,
                sha256: package.sha256,
            },
        );
    }
    lock.tarballs
        .insert(kernel.tarball.clone(), sha256_file(&kernel.tarball)?);

    let old = Lock::read().unwrap_or_default();
    let changes = changes(&old, &lock);
    let path = path();
    let partial = path.with_extension("lock.partial");
    std::fs::write(&partial, lock.to_text())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "lock: {} packages and {} tarball pinned in {}; {}",
        lock.debs.len(),
        lock.tarballs.len(),
        path.display(),
        if changes.is_empty() {
            "nothing changed".to_owned()
        } else {
            format!("changed:\n{}", changes.join("\n"))
        }
    );
    Ok(())
}

/// One line per package added, removed or moved to another version.
fn changes(old: &Lock, new: &Lock) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, pin) in &new.debs {
        match old.debs.get(name) {
            None => lines.push(format!("  + {name} {}", pin.version)),
            Some(before) if before.version != pin.version => {
                lines.push(format!("  ~ {name} {} -> {}", before.version, pin.version));
            }
            Some(before) if before.sha256 != pin.sha256 => {
                lines.push(format!("  ~ {name} {} (new sha256)", pin.version));
            }
            Some(_) => {}
        }
    }
    for (name, pin) in &old.debs {
        if !new.debs.contains_key(name) {
            lines.push(format!("  - {name} {}", pin.version));
        }
    }
    for (path, sha256) in &new.tarballs {
        if old.tarballs.get(path) != Some(sha256) {
            lines.push(format!("  ~ {} (new sha256)", path.display()));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744";
    const SHA_B: &str = "34bdcf1a097ec34da2e7b77b65fa351134702af775174af22555b16421709c51";

    fn sample() -> Lock {
        let mut lock = Lock::default();
        lock.debs.insert(
            "crun".into(),
            Pin {
                version: "1.8.1-1+deb12u1".into(),
                sha256: SHA_B.into(),
            },
        );
        lock.debs.insert(
            "busybox-static".into(),
            Pin {
                version: "1:1.35.0-4+deb12u1+b1".into(),
                sha256: SHA_A.into(),
            },
        );
        lock.tarballs
            .insert("/usr/src/linux-source-6.1.tar.xz".into(), SHA_A.into());
        lock
    }

    #[test]
    fn a_written_lock_reads_back_the_same_in_name_order() {
        let lock = sample();
        let text = lock.to_text();
        assert_eq!(Lock::parse(&text).unwrap(), lock);
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            vec![
                format!("deb busybox-static 1:1.35.0-4+deb12u1+b1 {SHA_A}"),
                format!("deb crun 1.8.1-1+deb12u1 {SHA_B}"),
                format!("tarball /usr/src/linux-source-6.1.tar.xz {SHA_A}"),
            ]
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        for (text, expected) in [
            ("deb crun 1.8.1\n", "line 1: expected"),
            ("# c\ndeb crun 1.8.1 abc\n", "line 2"),
            (
                &format!("deb crun 1 {}\n", SHA_A.to_uppercase()),
                "not a sha256",
            ),
            (
                &format!("deb crun 1 {SHA_A}\ndeb crun 2 {SHA_B}\n"),
                "pinned twice",
            ),
            ("tarball /x\n", "line 1: expected"),
        ] {
            let error = format!("{:#}", Lock::parse(text).unwrap_err());
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn an_installed_package_must_have_its_pinned_version_and_tarball() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("linux.tar.xz");
        std::fs::write(&tarball, "kernel").unwrap();
        let mut lock = sample();
        lock.debs.insert(
            "linux-source-6.1".into(),
            Pin {
                version: "6.1.192-3".into(),
                sha256: SHA_A.into(),
            },
        );
        lock.check_installed("linux-source-6.1", "6.1.192-3", None)
            .unwrap();

        let error = lock
            .check_installed("linux-source-6.1", "6.1.200-1", None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("6.1.200-1 is installed") && error.contains("pins 6.1.192-3"),
            "{error}"
        );
        let error = lock
            .check_installed("linux-source-6.2", "6.2.1-1", None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not pinned"), "{error}");

        let error = lock
            .check_installed("linux-source-6.1", "6.1.192-3", Some(&tarball))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not pinned"), "{error}");
        let actual = sha256_file(&tarball).unwrap();
        lock.tarballs.insert(tarball.clone(), SHA_B.into());
        let error = lock
            .check_installed("linux-source-6.1", "6.1.192-3", Some(&tarball))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&actual) && error.contains(SHA_B), "{error}");
        lock.tarballs.insert(tarball.clone(), actual);
        lock.check_installed("linux-source-6.1", "6.1.192-3", Some(&tarball))
            .unwrap();
    }

    #[test]
    fn file_hashes_are_sha256_in_hex() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "abc").unwrap();
        assert_eq!(
            sha256_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn changes_list_added_removed_and_moved_packages() {
        let old = sample();
        let mut new = sample();
        new.debs.remove("crun");
        new.debs.insert(
            "udev".into(),
            Pin {
                version: "252".into(),
                sha256: SHA_A.into(),
            },
        );
        if let Some(pin) = new.debs.get_mut("busybox-static") {
            pin.version = "1:1.36".into();
        }
        assert_eq!(
            changes(&old, &new),
            vec![
                "  ~ busybox-static 1:1.35.0-4+deb12u1+b1 -> 1:1.36",
                "  + udev 252",
                "  - crun 1.8.1-1+deb12u1",
            ]
        );
        assert!(changes(&old, &old).is_empty());
    }

    #[test]
    fn the_committed_lock_pins_every_single_package_and_the_kernel_source() {
        let lock = Lock::read().unwrap();
        for name in SINGLE_PACKAGES.iter().chain(HOST.packages) {
            assert!(lock.debs.contains_key(*name), "{name} is not pinned");
        }
        assert!(lock.debs.keys().any(|n| n.starts_with("linux-source-")));
        assert_eq!(lock.tarballs.len(), 1);
    }
}
