//! The root file system: assembled from packages into a staging
//! directory, then packed into a squashfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::BuildDirs;
use crate::containerd;
use crate::crun;
use crate::debian::{Packages, run};
use crate::dropbear;
use crate::images::{
    Built, CA_BUNDLE, CA_BUNDLE_IMAGES, CA_CERTS_DIR, CA_PACKAGE, HOST, ImageDef, MOUNT_POINTS,
    NAME_FILES, SERVICE_IMAGES_DIR, SERVICES, SUDO,
};
use crate::tree::{Pool, Tree};

/// The glibc target the library stubs are built for: udev and rsyslog
/// are Debian's glibc programs.
const GLIBC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// A stand-in library built from a crate of the workspace.
#[derive(Debug, Clone, Copy)]
struct Stub {
    /// The crate.
    package: &'static str,
    /// The file cargo makes.
    built: &'static str,
    /// Where it goes: where Debian's package has the soname, so that it
    /// is found before the package's.
    path: &'static str,
}

/// udev's libkmod, which finds no modules.
const KMOD_STUB: Stub = Stub {
    package: "kmod-stub",
    built: "libkmod.so",
    path: "usr/lib/x86_64-linux-gnu/libkmod.so.2",
};

/// rsyslog's libsystemd, on a machine systemd did not boot.
const SYSTEMD_STUB: Stub = Stub {
    package: "systemd-stub",
    built: "libsystemd.so",
    path: "usr/lib/x86_64-linux-gnu/libsystemd.so.0",
};

/// Assembles the host root with every service image inside it.
pub fn assemble(dirs: &BuildDirs) -> anyhow::Result<Tree> {
    let packages = Packages::new(&dirs.cache)?;
    build_stubs(dirs, &[KMOD_STUB, SYSTEMD_STUB])?;
    let built = BuiltRoots {
        containerd: containerd::build(&dirs.cache, &packages)?,
        crun: crun::build(&dirs.cache, &packages)?,
        dropbear: dropbear::build(&dirs.cache, &packages)?,
        kmod_stub: dirs.out.join(KMOD_STUB.package),
        systemd_stub: dirs.out.join(SYSTEMD_STUB.package),
    };
    let repo_files = dirs.workspace.join("image-build/images");
    let mut host = Tree::create(&dirs.out.join("rootfs"))?;
    fill(&mut host, &HOST, &packages, &built, &repo_files)?;
    for service in SERVICES {
        let mut tree = Tree::create(&host.root().join(SERVICE_IMAGES_DIR).join(service.name))?;
        fill(&mut tree, service, &packages, &built, &repo_files)?;
    }
    install_sudo(
        &dirs.out.join("sudo"),
        &host.root().join(SERVICE_IMAGES_DIR),
    )?;
    // `ros install` writes these to the disk it installs to.
    crate::boot_loader::install(&crate::boot_loader::disk_loaders(dirs)?, host.root())?;
    Ok(host)
}

/// The roots holding what this build makes, laid out as the image has
/// it: put first in an image's file pool, each file there replaces the
/// package's at the same path.
#[derive(Debug)]
struct BuiltRoots {
    containerd: PathBuf,
    crun: PathBuf,
    dropbear: PathBuf,
    kmod_stub: PathBuf,
    systemd_stub: PathBuf,
}

impl BuiltRoots {
    fn root(&self, built: Built) -> PathBuf {
        match built {
            Built::Containerd => self.containerd.clone(),
            Built::KmodStub => self.kmod_stub.clone(),
            Built::Crun => self.crun.clone(),
            Built::Dropbear => self.dropbear.clone(),
            Built::SystemdStub => self.systemd_stub.clone(),
        }
    }
}

/// One `cargo build` of the stub crates for glibc; each library is
/// copied to `out/<crate>/` + its path, the root the image's file pool
/// takes it from. They have a target directory of their own: they build
/// in a second and need not wait for the workspace's build lock.
fn build_stubs(dirs: &BuildDirs, stubs: &[Stub]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = dirs.workspace.join("target/kmod-stub");
    let mut command = Command::new(cargo);
    command.args(["build", "--release", "--locked"]);
    // The workspace's release profile unwinds (for `ros`); the stubs are
    // no_std only when built to abort.
    command.args(["--config", "profile.release.panic=\"abort\""]);
    for stub in stubs {
        command.args(["-p", stub.package]);
    }
    run(command
        .arg("--target")
        .arg(GLIBC_TARGET)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&dirs.workspace))
    .context("building the library stubs")?;
    for stub in stubs {
        let built = target_dir
            .join(GLIBC_TARGET)
            .join("release")
            .join(stub.built);
        let root = dirs.out.join(stub.package);
        let target = root.join(stub.path);
        std::fs::create_dir_all(target.parent().unwrap_or(&root))
            .with_context(|| format!("creating the directory of {}", target.display()))?;
        std::fs::copy(&built, &target)
            .with_context(|| format!("copying {} to {}", built.display(), target.display()))?;
    }
    Ok(())
}

/// The `sudo` built with `ros`, setuid root in its image (mksquashfs
/// keeps the mode; `-all-root` makes root its owner).
fn install_sudo(built: &Path, images: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (image, path) = SUDO;
    let target = images.join(image).join(path);
    std::fs::copy(built, &target).with_context(|| {
        format!(
            "copying {} (built by the ros step) to {}",
            built.display(),
            target.display()
        )
    })?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o4755))
        .with_context(|| format!("making {} setuid", target.display()))
}

fn fill(
    tree: &mut Tree,
    def: &ImageDef,
    packages: &Packages,
    built: &BuiltRoots,
    repo_files: &Path,
) -> anyhow::Result<()> {
    let closure = packages
        .closure(def.packages)
        .with_context(|| format!("packages of image {}", def.name))?;
    // What is built here comes first: it replaces the packages' files.
    let mut roots: Vec<PathBuf> = def.built.iter().map(|b| built.root(*b)).collect();
    for package in &closure {
        roots.push(packages.unpacked(package)?);
    }
    let pool = Pool::new(roots);
    tree.dirs(MOUNT_POINTS)?;
    tree.dirs(def.dirs)?;
    // The host's own are written by PID 1.
    for file in NAME_FILES.iter().filter(|_| def.name != HOST.name) {
        let path = tree.root().join(file);
        if path.symlink_metadata().is_err() {
            std::fs::write(&path, "").with_context(|| format!("writing {}", path.display()))?;
        }
    }
    for program in def.programs {
        tree.program(&pool, program)
            .with_context(|| format!("image {}", def.name))?;
    }
    for path in def.files {
        tree.data(&pool, path)
            .with_context(|| format!("image {}", def.name))?;
    }
    if def.busybox_links {
        link_busybox_applets(tree)?;
    }
    if CA_BUNDLE_IMAGES.contains(&def.name) {
        let package = packages.unpacked(&packages.candidate(CA_PACKAGE)?)?;
        let target = tree.root().join(CA_BUNDLE);
        std::fs::create_dir_all(target.parent().unwrap_or(tree.root()))?;
        std::fs::write(&target, ca_bundle(&package.join(CA_CERTS_DIR))?)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    let own_files = repo_files.join(def.name);
    if own_files.exists() {
        tree.overlay(&own_files)?;
    }
    Ok(())
}

/// Every `.crt` file of `dir` in name order, as one PEM bundle.
fn ca_bundle(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut certs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    certs.sort();
    anyhow::ensure!(!certs.is_empty(), "no certificates in {}", dir.display());
    let mut bundle = Vec::new();
    for cert in certs {
        bundle.extend(std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?);
        if !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    Ok(bundle)
}

/// A link for every applet, as the busybox in the tree lists them.
fn link_busybox_applets(tree: &Tree) -> anyhow::Result<()> {
    let busybox = tree.root().join("bin/busybox");
    let output = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .context("listing busybox applets")?;
    for applet in String::from_utf8_lossy(&output.stdout).lines() {
        if applet != "bin/busybox" {
            tree.symlink("/bin/busybox", applet)?;
        }
    }
    Ok(())
}

/// Packs the tree with zstd. xz with the x86 filter is 2 MB smaller, but
/// the boot reads containerd and its shim (39 MB) through the kernel's
/// decompressor, and xz takes ten times zstd's CPU time for that: seconds
/// of a boot under TCG. The kernel decompresses only the blocks that are
/// read.
pub fn squash(tree: &Tree, image: &Path) -> anyhow::Result<()> {
    run(Command::new("mksquashfs")
        // Time stamps clamped to the last commit's: builds repeat.
        .env("SOURCE_DATE_EPOCH", crate::epoch::source_date_epoch()?)
        .arg(tree.root())
        .arg(image)
        .args([
            "-noappend",
            "-all-root",
            "-no-progress",
            "-quiet",
            "-comp",
            "zstd",
            "-Xcompression-level",
            "19",
            "-b",
            "1M",
        ]))
    .context("mksquashfs (apt-get install squashfs-tools)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_bundle_joins_certificates_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.crt"), "B\n").unwrap();
        std::fs::write(dir.path().join("a.crt"), "A").unwrap();
        std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
        assert_eq!(ca_bundle(dir.path()).unwrap(), b"A\nB\n");
        let empty = tempfile::tempdir().unwrap();
        let error = ca_bundle(empty.path()).unwrap_err().to_string();
        assert!(error.contains("no certificates"), "{error}");
    }
}
