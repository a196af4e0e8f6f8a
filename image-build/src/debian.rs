//! Debian packages as the source of every file in the image: the candidate
//! version from apt's lists, downloaded (and verified) by apt, unpacked with
//! dpkg-deb, all cached.

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
}

impl Packages {
    pub fn new(cache: &Path) -> anyhow::Result<Self> {
        let debs = cache.join("debian/debs");
        let unpacked = cache.join("debian/unpacked");
        for dir in [&debs, &unpacked] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Self { debs, unpacked })
    }

    /// `names` and everything they depend on. Virtual packages (which no
    /// file comes from) are left out.
    pub fn closure(&self, names: &[&str]) -> anyhow::Result<Vec<Package>> {
        let mut found: BTreeMap<String, Package> = BTreeMap::new();
        let mut seen: BTreeSet<String> = names.iter().map(|n| (*n).to_string()).collect();
        let mut queue: VecDeque<String> = seen.iter().cloned().collect();
        while let Some(name) = queue.pop_front() {
            let Some(package) = show(&name)? else {
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
        Ok(found.into_values().collect())
    }

    /// The candidate version of one package, without its dependencies.
    pub fn candidate(&self, name: &str) -> anyhow::Result<Package> {
        show(name)?.with_context(|| {
            format!("package {name} is not known to apt (apt-get update? a typo?)")
        })
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

/// The candidate version of `name`, or `None` for a purely virtual package.
fn show(name: &str) -> anyhow::Result<Option<Package>> {
    let output = Command::new("apt-cache")
        .args(["show", "--no-all-versions", name])
        .output()
        .context("running apt-cache (is this Debian?)")?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(parse_show(&String::from_utf8_lossy(&output.stdout)))
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
    fn epochs_are_kept_file_name_safe() {
        let p = Package {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            depends: vec![],
        };
        assert_eq!(p.stem(), "busybox-static_1%3a1.35.0-4");
    }
}
