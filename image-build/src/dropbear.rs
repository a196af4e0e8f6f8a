//! dropbear, the console's SSH server, compiled from Debian's source
//! package as one multi-call binary with its own libtom.
//!
//! Debian's dropbear-bin links the system libtomcrypt, which brings
//! libtommath and libgmp (for math descriptors dropbear never selects):
//! 1.9 MB for dropbear, dropbearkey and dropbearconvert, 0.7 MB in the
//! squashfs. Ours is the same source version with Debian's options
//! (`debian/localoptions.h`, its hardening flags) but:
//! - the libtom copies bundled with dropbear, compiled in with only the
//!   algorithms dropbear's options enable, in place of the shared ones;
//! - the three programs as one binary ([`PROGRAMS`], upstream's `MULTI`),
//!   `/usr/sbin/dropbear`, which the other two link to: it picks the
//!   program by the name it is run as.
//!
//! What it still does is checked on every build: it makes host keys of
//! the kinds `ros` generates ([`KEY_KINDS`]).
//!
//! Cache layout under `<cache>/dropbear/`, as crun's:
//! - `<key>/`: the binary and links, laid out as a root the image's file
//!   pool can take them from ([`LAYOUT`]); renamed into place whole;
//! - `src/<version>/`, `build/<key>/`, `logs/<key>.log`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::build_log::{
    BuildLog, InputsHash, cached_entry, debian_flags, debian_source, installed_versions,
};
use crate::debian::Packages;

/// Bump when the build below changes what comes out.
const RECIPE_VERSION: u32 = 1;

/// The Debian source package.
pub const SOURCE_PACKAGE: &str = "dropbear";

/// The binary package whose version the source is taken at (the console
/// image still takes the libraries it needs from its dependencies).
pub const BINARY_PACKAGE: &str = "dropbear-bin";

/// The programs in the multi-call binary.
pub const PROGRAMS: &[&str] = &["dropbear", "dropbearkey", "dropbearconvert"];

/// What `./configure` gets besides Debian's flags: the bundled libtom.
pub const CONFIGURE: &[&str] = &["--enable-bundled-libtom"];

/// The installed packages whose files the build compiles or links.
pub const BUILD_PACKAGES: &[&str] = &["gcc", "libc6-dev", "libcrypt-dev", "zlib1g-dev"];

/// Host key kinds the built binary must make (`ros`'s generated kinds).
pub const KEY_KINDS: &[&str] = &["ed25519", "ecdsa"];

/// Libraries the built binary must not link: what this build is for.
pub const REMOVED_LIBRARIES: &[&str] = &["libtomcrypt.so.1", "libtommath.so.1", "libgmp.so.10"];

/// The image's paths: the binary, then links to it (relative, so they
/// resolve inside any root).
pub const LAYOUT: &[(&str, Option<&str>)] = &[
    ("usr/sbin/dropbear", None),
    ("usr/bin/dropbearkey", Some("../sbin/dropbear")),
    ("usr/bin/dropbearconvert", Some("../sbin/dropbear")),
];

/// The inputs that decide what comes out of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    /// Debian version of the source package.
    version: String,
    /// `name version` of every [`BUILD_PACKAGES`] package.
    build_packages: String,
}

/// Builds dropbear (or takes it from the cache) and returns the root
/// holding it as [`LAYOUT`] says.
pub fn build(cache: &Path, packages: &Packages) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let inputs = Inputs {
        version: packages.candidate(BINARY_PACKAGE)?.version,
        build_packages: installed_versions(BUILD_PACKAGES, SOURCE_PACKAGE)?,
    };
    let key = cache_key(&inputs);
    let cache = cache.join("dropbear");
    let (entry, hit) = cached_entry(&cache, &key, Path::is_dir, || {
        build_uncached(&cache, &key, &inputs)
    })?;
    let size = std::fs::metadata(entry.join(LAYOUT[0].0)).map_or(0, |m| m.len());
    eprintln!(
        "dropbear: cache {} ({}), {SOURCE_PACKAGE} {}, {size} bytes, {:.1}s",
        if hit { "hit" } else { "miss, built" },
        &key[..12],
        inputs.version,
        started.elapsed().as_secs_f64(),
    );
    Ok(entry)
}

/// The cache key: every input, labelled.
fn cache_key(inputs: &Inputs) -> String {
    let mut hash = InputsHash::new();
    hash.part("recipe", &RECIPE_VERSION.to_string());
    hash.part("version", &inputs.version);
    hash.part("configure", &CONFIGURE.join(" "));
    hash.part("programs", &PROGRAMS.join(" "));
    hash.part("build-packages", &inputs.build_packages);
    hash.hex()
}

/// The cache miss: fetch the source, configure, compile, check, store.
fn build_uncached(cache: &Path, key: &str, inputs: &Inputs) -> anyhow::Result<()> {
    let logs = cache.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log = BuildLog::create(logs.join(format!("{key}.log")))?;
    eprintln!(
        "dropbear: cache miss, building {SOURCE_PACKAGE} {} from source (log: {})",
        inputs.version,
        log.path.display()
    );
    let source = debian_source(
        &cache.join("src"),
        SOURCE_PACKAGE,
        &inputs.version,
        &log,
        |tree| tree.join("dbmulti.c").is_file(),
    )?;

    let build = cache.join("build").join(key);
    if build.exists() {
        std::fs::remove_dir_all(&build).with_context(|| format!("removing {}", build.display()))?;
    }
    std::fs::create_dir_all(&build).with_context(|| format!("creating {}", build.display()))?;
    let tree = build.join("dropbear");
    log.run(Command::new("cp").arg("-a").arg(&source).arg(&tree))?;
    // As debian/rules does before building: Debian's option overrides.
    let options = tree.join("debian/localoptions.h");
    std::fs::copy(&options, tree.join("localoptions.h"))
        .with_context(|| format!("copying {}", options.display()))?;

    let mut configure = Command::new("./configure");
    configure.current_dir(&tree).arg("-q").args(CONFIGURE);
    for (variable, value) in debian_flags(&tree)? {
        // debian/rules adds these for the position-independent binary.
        let value = if variable == "LDFLAGS" {
            format!("{value} -fPIE -pie")
        } else {
            value
        };
        configure.arg(format!("{variable}={value}"));
    }
    log.run(&mut configure)?;
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    log.run(
        Command::new("make")
            .current_dir(&tree)
            .arg(format!("-j{jobs}"))
            .arg(format!("PROGRAMS={}", PROGRAMS.join(" ")))
            .arg("MULTI=1"),
    )?;
    let built = tree.join("dropbearmulti");
    log.run(
        Command::new("strip")
            .args(["--strip-all", "--remove-section=.comment"])
            .arg(&built),
    )?;
    check_needs(&built)?;
    check_keys(&built, &build.join("keys"), &log)?;

    let partial = cache.join(format!(".{key}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    for (path, link) in LAYOUT {
        let target = partial.join(path);
        let dir = target.parent().unwrap_or(&partial);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        match link {
            None => std::fs::copy(&built, &target)
                .map(|_| ())
                .with_context(|| format!("copying {} to {}", built.display(), target.display()))?,
            Some(link) => symlink(link, &target)
                .with_context(|| format!("linking {} to {link}", target.display()))?,
        }
    }
    std::fs::rename(&partial, cache.join(key))
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    std::fs::remove_dir_all(&build).with_context(|| format!("removing {}", build.display()))
}

/// Fails when the built binary links one of [`REMOVED_LIBRARIES`].
fn check_needs(binary: &Path) -> anyhow::Result<()> {
    let needs = image_build::elf::needs(binary)?
        .with_context(|| format!("{} is not an ELF file", binary.display()))?;
    let linked = linked_of(&needs.libraries, REMOVED_LIBRARIES);
    if !linked.is_empty() {
        bail!(
            "{} still links {linked:?}: is libtom bundled?",
            binary.display()
        );
    }
    Ok(())
}

/// Those of `libraries` that are in `unwanted`.
fn linked_of<'a>(libraries: &'a [String], unwanted: &[&str]) -> Vec<&'a str> {
    libraries
        .iter()
        .map(String::as_str)
        .filter(|library| unwanted.contains(library))
        .collect()
}

/// Makes a host key of each of [`KEY_KINDS`] with the multi-call binary
/// run as dropbearkey.
fn check_keys(binary: &Path, dir: &Path, log: &BuildLog) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for kind in KEY_KINDS {
        let key = dir.join(kind);
        log.run(
            Command::new(binary)
                .args(["dropbearkey", "-t", kind, "-f"])
                .arg(&key),
        )
        .with_context(|| format!("the built dropbear cannot make an {kind} key"))?;
        if !key.is_file() {
            bail!("dropbearkey -t {kind} left no {}", key.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            version: "2022.83-1+deb12u3".into(),
            build_packages: "gcc 4:12.2.0-3\nzlib1g-dev 1:1.2.13.dfsg-1".into(),
        }
    }

    #[test]
    fn the_cache_key_changes_with_the_source_and_the_build_packages() {
        let base = cache_key(&inputs());
        assert_eq!(base.len(), 64);
        assert_eq!(base, cache_key(&inputs()));
        let newer = Inputs {
            version: "2022.83-1+deb12u4".into(),
            ..inputs()
        };
        let library = Inputs {
            build_packages: "gcc 4:12.2.0-3\nzlib1g-dev 1:1.2.13.dfsg-2".into(),
            ..inputs()
        };
        for changed in [newer, library] {
            assert_ne!(base, cache_key(&changed), "{changed:?}");
        }
    }

    #[test]
    fn every_program_is_in_the_layout_and_links_to_the_one_binary() {
        let (binary, none) = LAYOUT[0];
        assert_eq!((binary, none), ("usr/sbin/dropbear", None));
        for program in PROGRAMS {
            assert!(
                LAYOUT
                    .iter()
                    .any(|(path, _)| path.ends_with(&format!("/{program}"))),
                "{program} is not in {LAYOUT:?}"
            );
        }
        for (path, link) in &LAYOUT[1..] {
            let link = link.unwrap();
            let parent = Path::new(path).parent().unwrap();
            let resolved: PathBuf =
                parent
                    .join(link)
                    .components()
                    .fold(PathBuf::new(), |mut out, part| {
                        match part {
                            std::path::Component::ParentDir => {
                                out.pop();
                            }
                            other => out.push(other),
                        }
                        out
                    });
            assert_eq!(resolved, Path::new(binary), "{path} -> {link}");
        }
    }

    #[test]
    fn only_the_libtom_and_gmp_libraries_are_refused() {
        let libraries: Vec<String> = [
            "libz.so.1",
            "libcrypt.so.1",
            "libtomcrypt.so.1",
            "libtommath.so.1",
            "libgmp.so.10",
            "libc.so.6",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            linked_of(&libraries, REMOVED_LIBRARIES),
            vec!["libtomcrypt.so.1", "libtommath.so.1", "libgmp.so.10"]
        );
        check_needs(Path::new("/bin/ls")).unwrap();
    }
}
