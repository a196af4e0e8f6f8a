//! The root file system: assembled from packages into a staging
//! directory, then packed into a squashfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::BuildDirs;
use crate::debian::{Packages, run};
use crate::images::{
    CA_BUNDLE, CA_BUNDLE_IMAGES, CA_CERTS_DIR, CA_PACKAGE, HOST, ImageDef, MOUNT_POINTS,
    NAME_FILES, SERVICE_IMAGES_DIR, SERVICES, SUDO,
};
use crate::tree::{Pool, Tree};

/// Assembles the host root with every service image inside it.
pub fn assemble(dirs: &BuildDirs) -> anyhow::Result<Tree> {
    let packages = Packages::new(&dirs.cache)?;
    let repo_files = dirs.workspace.join("image-build/images");
    let mut host = Tree::create(&dirs.out.join("rootfs"))?;
    fill(&mut host, &HOST, &packages, &repo_files)?;
    for service in SERVICES {
        let mut tree = Tree::create(&host.root().join(SERVICE_IMAGES_DIR).join(service.name))?;
        fill(&mut tree, service, &packages, &repo_files)?;
    }
    install_sudo(
        &dirs.out.join("sudo"),
        &host.root().join(SERVICE_IMAGES_DIR),
    )?;
    Ok(host)
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
    repo_files: &Path,
) -> anyhow::Result<()> {
    let closure = packages
        .closure(def.packages)
        .with_context(|| format!("packages of image {}", def.name))?;
    let roots = closure
        .iter()
        .map(|p| packages.unpacked(p))
        .collect::<anyhow::Result<Vec<PathBuf>>>()?;
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

/// Packs the tree. xz with the x86 filter gives the smallest image; the
/// kernel decompresses only the blocks that are read.
pub fn squash(tree: &Tree, image: &Path) -> anyhow::Result<()> {
    run(Command::new("mksquashfs")
        .arg(tree.root())
        .arg(image)
        .args([
            "-noappend",
            "-all-root",
            "-no-progress",
            "-quiet",
            "-comp",
            "xz",
            "-Xbcj",
            "x86",
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
