//! Debian packages as the source of every file in the image: the candidate
//! version from apt's lists, downloaded (and verified) by apt, unpacked with
//! dpkg-deb, all cached.
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

/// One binary package, as apt knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
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
}

impl Packages {
    pub fn new(cache: &Path) -> anyhow::Result<Self> {
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

    /// The candidate version of one package, without its dependencies.
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
            .args(&missing)
            .output()
            .context("running apt-cache (is this Debian?)")?;
        // apt-cache fails only when it found none of them: all virtual.
        let found = parse_stanzas(&String::from_utf8_lossy(&output.stdout));
        let mut known = self.known.borrow_mut();
        for name in missing {
            known.insert(name.clone(), found.get(name).cloned());
        }
        Ok(())
    }

    /// The package's files, unpacked into a directory of their own.
    pub fn unpacked(&self, package: &Package) -> anyhow::Result<PathBuf> {
        let dir = self.unpacked.join(package.stem());
        let done = dir.join(".unpacked");
        if done.exists() {
            return Ok(dir);
        }
        let deb = self.downloaded(package)?;
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
    }

    #[test]
    fn one_answer_about_several_packages_is_split_by_name() {
        let text = "Package: crun\nVersion: 1.8.1\nDepends: libc6\n\n\
                    Package: libc6\nVersion: 2.36\n\n\
                    Package: crun\nVersion: 0.1\n";
        let packages = parse_stanzas(text);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages["crun"].version, "1.8.1", "the first stanza wins");
        assert_eq!(packages["crun"].depends, vec!["libc6"]);
        assert_eq!(packages["libc6"].version, "2.36");
        assert!(parse_stanzas("").is_empty());
    }

    #[test]
    fn epochs_are_kept_file_name_safe() {
        let p = Package {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            depends: vec![],
        };
        assert_eq!(p.stem(), "busybox-static_1%3a1.35.0-4");
    }
}
