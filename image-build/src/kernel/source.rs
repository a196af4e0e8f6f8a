//! The pinned kernel source: `kernel-config/source.toml` names a Debian
//! package; the installed package provides the version and the tarball.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The installed kernel source package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Debian package name, e.g. `linux-source-6.1`.
    pub package: String,
    /// Installed Debian version, e.g. `6.1.192-2`.
    pub version: String,
    /// `/usr/src/<package>.tar.xz`.
    pub tarball: PathBuf,
}

impl Source {
    /// Reads the pin file and asks dpkg which version of it is installed.
    pub fn installed(pin_file: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(pin_file)
            .with_context(|| format!("reading {}", pin_file.display()))?;
        let package = parse_pin(&text).with_context(|| format!("in {}", pin_file.display()))?;
        let install_hint = format!("run `apt-get install {package}`");
        let tarball = PathBuf::from(format!("/usr/src/{package}.tar.xz"));
        if !tarball.is_file() {
            bail!(
                "the kernel source {} is missing: {install_hint}",
                tarball.display()
            );
        }
        let version = installed_version(&package).with_context(|| install_hint.clone())?;
        Ok(Self {
            package,
            version,
            tarball,
        })
    }

    /// A directory name for this package version. Debian versions may hold
    /// `:` (epoch) and `~`, which are kept out of paths.
    pub fn dir_name(&self) -> String {
        let version: String = self
            .version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "+-.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}_{version}", self.package)
    }
}

/// The pin file is a TOML subset: comments and one `package = "..."` line.
fn parse_pin(text: &str) -> anyhow::Result<String> {
    let mut package = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let value = line
            .split_once('=')
            .filter(|(key, _)| key.trim() == "package")
            .and_then(|(_, value)| value.trim().strip_prefix('"')?.strip_suffix('"'))
            .filter(|name| is_package_name(name))
            .with_context(|| {
                format!("expected `package = \"<debian package>\"`, found {line:?}")
            })?;
        if package.replace(value.to_owned()).is_some() {
            bail!("`package` is given twice");
        }
    }
    package.context("no `package = \"...\"` line")
}

/// Debian package names: lower case letters, digits, `+ - .`.
fn is_package_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn installed_version(package: &str) -> anyhow::Result<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .context("running dpkg-query (the kernel is built from a Debian package)")?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || version.is_empty() {
        bail!(
            "{package} is not installed (dpkg-query: {})",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_the_package() {
        let pin = "# comment\n\npackage = \"linux-source-6.1\"\n";
        assert_eq!(parse_pin(pin).unwrap(), "linux-source-6.1");
    }

    #[test]
    fn the_repository_pin_file_parses() {
        let text = include_str!("../../../kernel-config/source.toml");
        assert_eq!(parse_pin(text).unwrap(), "linux-source-6.1");
    }

    #[test]
    fn dir_name_keeps_odd_version_characters_out() {
        let source = Source {
            package: "linux-source-6.1".into(),
            version: "1:6.1.192-2~bpo/1".into(),
            tarball: PathBuf::new(),
        };
        assert_eq!(source.dir_name(), "linux-source-6.1_1_6.1.192-2_bpo_1");
    }

    #[test]
    fn bad_pins_are_rejected() {
        for bad in [
            "",
            "# only a comment",
            "package = linux-source-6.1",
            "pkg = \"linux-source-6.1\"",
            "package = \"../etc/passwd\"",
            "package = \"a\"\npackage = \"b\"",
        ] {
            assert!(parse_pin(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
