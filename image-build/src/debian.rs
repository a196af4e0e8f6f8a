//! Debian packages as the source of every file in the image: the version
//! pinned in `debian.lock` ([`crate::lock`]), downloaded by apt, checked
//! against the pinned sha256, unpacked with dpkg-deb, all cached. Only
//! `image-build lock` takes apt's candidate versions, to pin them.
//!
//! apt-cache parses every list on each call unless it may keep its binary
//! cache (Debian's container images forbid that in docker-clean), and the
//! lists are large (deb-src ones too, for containerd's source): seconds a
//! call. So packages are looked up a breadth of the dependency graph per
//! call, each answer is remembered, and apt-cache keeps its binary cache
//! under the build cache.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::lock::{self, Lock};

/// One binary package, as apt knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// The `.deb`'s sha256: pinned, or (when resolving) apt's index's.
    pub sha256: String,
    /// First alternatives of Depends and Pre-Depends.
    pub depends: Vec<String>,
}

impl Package {
    /// A file-name-safe `name_version`.
    fn stem(&self) -> String {
        format!("{}_{}", self.name, self.version.replace(':', "%3a"))
    }
}

/// The package cache under the build cache.
#[derive(Debug)]
pub struct Packages {
    debs: PathBuf,
    unpacked: PathBuf,
    /// Where apt-cache keeps its binary caches.
    apt_cache: PathBuf,
    /// Every package looked up so far; `None` for a virtual one.
    known: RefCell<BTreeMap<String, Option<Package>>>,
    /// The lock file's pins; `None` when resolving apt's candidates.
    lock: Option<Lock>,
}

impl Packages {
    /// The packages pinned in `debian.lock`: what every build uses.
    pub fn new(cache: &Path) -> anyhow::Result<Self> {
        Self::with_lock(cache, Some(Lock::read()?))
    }

    /// apt's candidate versions, for `image-build lock` to pin.
    pub fn resolving(cache: &Path) -> anyhow::Result<Self> {
        Self::with_lock(cache, None)
    }

    fn with_lock(cache: &Path, lock: Option<Lock>) -> anyhow::Result<Self> {
        let debs = cache.join("debian/debs");
        let unpacked = cache.join("debian/unpacked");
        let apt_cache = cache.join("debian/apt");
        for dir in [&debs, &unpacked, &apt_cache] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Self {
            debs,
            unpacked,
            apt_cache,
            known: RefCell::new(BTreeMap::new()),
            lock,
        })
    }

    /// `names` and everything they depend on. Virtual packages (which no
    /// file comes from) are left out.
    pub fn closure(&self, names: &[&str]) -> anyhow::Result<Vec<Package>> {
        let mut found: BTreeMap<String, Package> = BTreeMap::new();
        let mut seen: BTreeSet<String> = names.iter().map(|n| (*n).to_string()).collect();
        let mut queue: VecDeque<String> = seen.iter().cloned().collect();
        while !queue.is_empty() {
            // One apt-cache call for the whole breadth.
            let level: Vec<String> = queue.drain(..).collect();
            self.look_up(&level)?;
            for name in level {
                let Some(package) = self.known.borrow().get(&name).cloned().flatten() else {
                    if names.contains(&name.as_str()) {
                        bail!("package {name} is not known to apt (apt-get update? a typo?)");
                    }
                    continue;
                };
                for dep in &package.depends {
                    if seen.insert(dep.clone()) {
                        queue.push_back(dep.clone());
                    }
                }
                found.insert(name, package);
            }
        }
        Ok(found.into_values().collect())
    }

    /// One package at `version` as apt's index has it (sha256 included),
    /// pinned or not.
    pub fn exact(&self, name: &str, version: &str) -> anyhow::Result<Package> {
        self.apt_show(&[format!("{name}={version}")])?
            .remove(name)
            .with_context(|| format!("apt does not offer {name} {version} (apt-get update?)"))
    }

    /// The pinned (or, when resolving, candidate) version of one package,
    /// without its dependencies.
    pub fn candidate(&self, name: &str) -> anyhow::Result<Package> {
        self.look_up(&[name.to_string()])?;
        self.known
            .borrow()
            .get(name)
            .cloned()
            .flatten()
            .with_context(|| {
                format!("package {name} is not known to apt (apt-get update? a typo?)")
            })
    }

    /// Asks apt-cache, in one call, about those of `names` not known yet.
    fn look_up(&self, names: &[String]) -> anyhow::Result<()> {
        let missing: Vec<&String> = names
            .iter()
            .filter(|name| !self.known.borrow().contains_key(*name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Pinned packages are asked for at their version; the others
        // only to tell virtual packages from unpinned real ones.
        let pins = self.lock.as_ref().map(|lock| &lock.debs);
        let pin = |name: &str| pins.and_then(|pins| pins.get(name));
        let queries: Vec<String> = missing
            .iter()
            .map(|name| match pin(name) {
                Some(pin) => format!("{name}={}", pin.version),
                None => (*name).clone(),
            })
            .collect();
        let found = self.apt_show(&queries)?;
        let mut unpinned = Vec::new();
        let mut known = self.known.borrow_mut();
        for name in missing {
            let package = match (pins, pin(name), found.get(name)) {
                (_, Some(pin), Some(package)) => {
                    if package.sha256 != pin.sha256 && !package.sha256.is_empty() {
                        bail!(
                            "apt's index gives sha256 {} for {name} {}, {} pins {}: \
                             the archive changed a released package; run `./dev lock` \
                             if that is expected",
                            package.sha256,
                            pin.version,
                            lock::path().display(),
                            pin.sha256
                        );
                    }
                    Some(Package {
                        sha256: pin.sha256.clone(),
                        ..package.clone()
                    })
                }
                (_, Some(pin), None) => bail!(
                    "{} pins {name} {}, which apt does not offer: `apt-get update`, \
                     or if Debian dropped that version, `./dev lock` to pin what it has now",
                    lock::path().display(),
                    pin.version
                ),
                (Some(_), None, Some(_)) => {
                    unpinned.push(name.clone());
                    None
                }
                (_, None, package) => package.cloned(),
            };
            known.insert(name.clone(), package);
        }
        if !unpinned.is_empty() {
            bail!(
                "not pinned in {}: {} (a new package, or one that changed its \
                 dependencies: `./dev lock`; a package taken by name alone also \
                 goes into lock::SINGLE_PACKAGES)",
                lock::path().display(),
                unpinned.join(", ")
            );
        }
        Ok(())
    }

    /// One `apt-cache show` call: the stanzas it prints, by package name.
    fn apt_show(&self, queries: &[String]) -> anyhow::Result<BTreeMap<String, Package>> {
        let output = Command::new("apt-cache")
            .arg("-o")
            .arg(format!(
                "Dir::Cache::pkgcache={}",
                self.apt_cache.join("pkgcache.bin").display()
            ))
            .arg("-o")
            .arg(format!(
                "Dir::Cache::srcpkgcache={}",
                self.apt_cache.join("srcpkgcache.bin").display()
            ))
            .args(["show", "--no-all-versions"])
            .args(queries)
            .output()
            .context("running apt-cache (is this Debian?)")?;
        // apt-cache fails only when it found none of them: all virtual.
        Ok(parse_stanzas(&String::from_utf8_lossy(&output.stdout)))
    }

    /// The package's files, unpacked into a directory of their own.
    pub fn unpacked(&self, package: &Package) -> anyhow::Result<PathBuf> {
        let dir = self.unpacked.join(package.stem());
        let done = dir.join(".unpacked");
        if done.exists() {
            return Ok(dir);
        }
        let deb = self.downloaded(package)?;
        self.check_sha256(package, &deb)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
        std::fs::write(&done, "")?;
        Ok(dir)
    }

    fn downloaded(&self, package: &Package) -> anyhow::Result<PathBuf> {
        let deb = self.debs.join(format!("{}.deb", package.stem()));
        if deb.exists() {
            return Ok(deb);
        }
        // apt names the file itself; a scratch directory makes it the only one.
        let scratch = tempfile::tempdir_in(&self.debs)?;
        run(Command::new("apt-get")
            .args(["download", "-q"])
            .arg(format!("{}={}", package.name, package.version))
            .current_dir(scratch.path()))?;
        let fetched = std::fs::read_dir(scratch.path())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {} left no .deb", package.name))?;
        std::fs::rename(&fetched, &deb)?;
        Ok(deb)
    }

    /// Fails (and removes the file) unless `deb` has the package's sha256.
    fn check_sha256(&self, package: &Package, deb: &Path) -> anyhow::Result<()> {
        let actual = lock::sha256_file(deb)?;
        if actual == package.sha256 {
            return Ok(());
        }
        let _ = std::fs::remove_file(deb);
        bail!(
            "{} has sha256 {actual}, but {} {} is pinned at {} ({}): removed it; \
             a mirror serving other bytes under the same version?",
            deb.display(),
            package.name,
            package.version,
            package.sha256,
            if self.lock.is_some() {
                lock::path().display().to_string()
            } else {
                "apt's index".to_owned()
            }
        )
    }
}

/// Every stanza of `apt-cache show` output by package name; the first
/// one of a name wins.
fn parse_stanzas(text: &str) -> BTreeMap<String, Package> {
    let mut packages = BTreeMap::new();
    for stanza in text.split("\n\n") {
        if let Some(package) = parse_show(stanza) {
            packages.entry(package.name.clone()).or_insert(package);
        }
    }
    packages
}

/// The first stanza of `apt-cache show` output.
fn parse_show(text: &str) -> Option<Package> {
    let stanza = text.split("\n\n").next()?;
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    let mut current: Option<&str> = None;
    for line in stanza.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            if let Some(key) = current {
                fields.entry(key).or_default().push_str(rest);
            }
        } else if let Some((key, value)) = line.split_once(':') {
            current = Some(key);
            fields.insert(key, value.trim().to_string());
        }
    }
    let mut depends = Vec::new();
    for key in ["Pre-Depends", "Depends"] {
        if let Some(value) = fields.get(key) {
            depends.extend(parse_depends(value));
        }
    }
    Some(Package {
        name: fields.get("Package")?.clone(),
        version: fields.get("Version")?.clone(),
        sha256: fields.get("SHA256").cloned().unwrap_or_default(),
        depends,
    })
}

/// Package names of a Depends field: the first of each set of
/// alternatives, without version constraints or architecture qualifiers.
fn parse_depends(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|clause| clause.split('|').next())
        .map(|alt| alt.split(['(', ' ']).find(|s| !s.is_empty()).unwrap_or(""))
        .map(|name| name.split(':').next().unwrap_or(name).to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Runs a command, failing with its output.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_keep_first_alternatives_without_versions() {
        assert_eq!(
            parse_depends(
                "libc6 (>= 2.34), libseccomp2 (>= 2.5.0), debconf | debconf-2.0, libgcc-s1:any"
            ),
            vec!["libc6", "libseccomp2", "debconf", "libgcc-s1"]
        );
        assert_eq!(parse_depends(""), Vec::<String>::new());
    }

    #[test]
    fn show_output_is_read_with_continuation_lines() {
        let text = "Package: crun\nVersion: 1.8.1-1+deb12u1\nPre-Depends: libc6 (>= 2.17)\n\
                    Depends: libcap2 (>= 1:2.10),\n libyajl2 (>= 2.0.4)\nDescription: x\n long text\n\n\
                    Package: crun\nVersion: 0.1\n";
        let package = parse_show(text).unwrap();
        assert_eq!(package.name, "crun");
        assert_eq!(package.version, "1.8.1-1+deb12u1");
        assert_eq!(package.depends, vec!["libc6", "libcap2", "libyajl2"]);
        assert_eq!(package.sha256, "", "no SHA256 field");
    }

    #[test]
    fn one_answer_about_several_packages_is_split_by_name() {
        let text = "Package: crun\nVersion: 1.8.1\nDepends: libc6\nSHA256: ab12\n\n\
                    Package: libc6\nVersion: 2.36\n\n\
                    Package: crun\nVersion: 0.1\n";
        let packages = parse_stanzas(text);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages["crun"].version, "1.8.1", "the first stanza wins");
        assert_eq!(packages["crun"].depends, vec!["libc6"]);
        assert_eq!(packages["crun"].sha256, "ab12");
        assert_eq!(packages["libc6"].version, "2.36");
        assert!(parse_stanzas("").is_empty());
    }

    #[test]
    fn a_download_with_another_sha256_is_refused_and_removed() {
        let cache = tempfile::tempdir().unwrap();
        let packages = Packages::with_lock(cache.path(), Some(Lock::default())).unwrap();
        let deb = cache.path().join("crun.deb");
        std::fs::write(&deb, "abc").unwrap();
        let mut package = Package {
            name: "crun".into(),
            version: "1.8.1".into(),
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
            depends: vec![],
        };
        packages.check_sha256(&package, &deb).unwrap();
        assert!(deb.exists());

        package.sha256 = "0".repeat(64);
        let error = packages
            .check_sha256(&package, &deb)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("sha256 ba7816bf") && error.contains("debian.lock"),
            "{error}"
        );
        assert!(!deb.exists(), "the bad download is removed");
    }

    #[test]
    fn epochs_are_kept_file_name_safe() {
        let p = Package {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            sha256: String::new(),
            depends: vec![],
        };
        assert_eq!(p.stem(), "busybox-static_1%3a1.35.0-4");
    }
}
