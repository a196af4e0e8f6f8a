//! crun, the OCI runtime, compiled from Debian's source package without
//! what this system never uses.
//!
//! Debian's crun links libsystemd for its systemd cgroup manager, and
//! libsystemd brings libgcrypt, libgpg-error, libzstd, liblz4 and liblzma:
//! 3.4 MB beside a 0.5 MB crun. Our containerds drive crun with the
//! cgroupfs manager (cgroup v2 written directly), so ours is the same
//! source version, configured as Debian configures it (its hardening
//! flags, the OCI specs from the `golang-github-opencontainers-*`
//! packages in place of the bundled ones), but with [`CONFIGURE`]:
//! - no systemd: no libsystemd;
//! - no libgcrypt: crun hashes seccomp profiles with it only to cache
//!   compiled filters, which it does not do without;
//! - no CRIU (checkpoint/restore) and no dlopen'd handlers (wasm, krun).
//!
//! What stays, checked on every build ([`check_features`]): libseccomp
//! (every system service has a seccomp profile), libcap, and eBPF, which
//! is how crun enforces device rules under cgroup v2.
//!
//! Cache layout under `<cache>/crun/`, as containerd's:
//! - `<key>/usr/bin/crun`: the finished binary, laid out as a root the
//!   image's file pool can take it from; `<key>` is the sha256 of every
//!   input ([`cache_key`]);
//! - `src/<version>/`: `apt-get source` output, never written to after;
//! - `build/<key>/`: the tree a build configures and compiles in
//!   (removed before each build and after a successful one);
//! - `logs/<key>.log`: the output of the build that made `<key>`.

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

/// The Debian source package (and binary package whose version it takes).
pub const SOURCE_PACKAGE: &str = "crun";

/// What `./configure` gets besides the prefix and Debian's flags. The
/// last line is an autoconf cache answer: "no libgcrypt here".
pub const CONFIGURE: &[&str] = &[
    "--disable-systemd",
    "--disable-criu",
    "--disable-dl",
    "ac_cv_search_gcry_check_version=no",
];

/// Features `crun --version` must list: capabilities, seccomp and eBPF
/// (cgroup v2 device control).
pub const REQUIRED_FEATURES: &[&str] = &["+CAP", "+SECCOMP", "+EBPF"];

/// Features that must be gone, with the libraries that must not be
/// linked: what this build is for.
pub const REMOVED_FEATURES: &[&str] = &["+SYSTEMD", "+CRIU"];
pub const REMOVED_LIBRARIES: &[&str] = &["libsystemd.so.0", "libgcrypt.so.20", "libcriu.so.2"];

/// The installed packages whose files the build compiles or links: the
/// compiler and C library, the libraries crun links, the OCI specs its
/// parser is generated from, and gperf. Their versions are in the cache
/// key.
pub const BUILD_PACKAGES: &[&str] = &[
    "gcc",
    "libc6-dev",
    "libseccomp-dev",
    "libcap-dev",
    "libyajl-dev",
    "gperf",
    "python3",
    "golang-github-opencontainers-specs-dev",
    "golang-github-opencontainers-image-spec-dev",
];

/// Where the OCI spec packages keep the schemas, per directory of the
/// bundled libocispec that Debian's rules replace with them.
const SPECS: &[(&str, &str)] = &[
    (
        "image-spec",
        "/usr/share/gocode/src/github.com/opencontainers/image-spec",
    ),
    (
        "runtime-spec",
        "/usr/share/gocode/src/github.com/opencontainers/runtime-spec",
    ),
];

/// Where the binary goes, in the cache entry and in the image.
const BINARY: &str = "usr/bin/crun";

/// The inputs that decide what comes out of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    /// Debian version of the source package.
    version: String,
    /// `name version` of every [`BUILD_PACKAGES`] package.
    build_packages: String,
}

/// Builds crun (or takes it from the cache) and returns the root holding
/// it at `usr/bin/crun`.
pub fn build(cache: &Path, packages: &Packages) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let inputs = Inputs {
        version: packages.candidate(SOURCE_PACKAGE)?.version,
        build_packages: installed_versions(BUILD_PACKAGES, SOURCE_PACKAGE)?,
    };
    let key = cache_key(&inputs);
    let cache = cache.join("crun");
    let (entry, hit) = cached_entry(
        &cache,
        &key,
        |entry| entry.join(BINARY).is_file(),
        || build_uncached(&cache, &key, &inputs),
    )?;
    let size = std::fs::metadata(entry.join(BINARY)).map_or(0, |m| m.len());
    eprintln!(
        "crun: cache {} ({}), {SOURCE_PACKAGE} {}, {size} bytes, {:.1}s",
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
    hash.part("build-packages", &inputs.build_packages);
    hash.hex()
}

/// The cache miss: fetch the source, configure, compile, check, store.
fn build_uncached(cache: &Path, key: &str, inputs: &Inputs) -> anyhow::Result<()> {
    let logs = cache.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log = BuildLog::create(logs.join(format!("{key}.log")))?;
    eprintln!(
        "crun: cache miss, building {SOURCE_PACKAGE} {} from source (log: {})",
        inputs.version,
        log.path.display()
    );
    let source = debian_source(
        &cache.join("src"),
        SOURCE_PACKAGE,
        &inputs.version,
        &log,
        |tree| tree.join("src/crun.c").is_file(),
    )?;

    let build = cache.join("build").join(key);
    if build.exists() {
        std::fs::remove_dir_all(&build).with_context(|| format!("removing {}", build.display()))?;
    }
    std::fs::create_dir_all(&build).with_context(|| format!("creating {}", build.display()))?;
    let tree = build.join("crun");
    log.run(Command::new("cp").arg("-a").arg(&source).arg(&tree))?;
    // As debian/rules does after configure: the packaged OCI specs in
    // place of the bundled ones.
    for (dir, packaged) in SPECS {
        let bundled = tree.join("libocispec").join(dir);
        if bundled.exists() {
            std::fs::remove_dir_all(&bundled)
                .with_context(|| format!("removing {}", bundled.display()))?;
        }
        log.run(Command::new("cp").arg("-a").arg(packaged).arg(&bundled))
            .with_context(|| format!("{packaged} comes with its golang package"))?;
    }

    let mut configure = Command::new("./configure");
    configure.current_dir(&tree).args(["-q", "--prefix=/usr"]);
    configure.args(CONFIGURE);
    for (variable, value) in debian_flags(&tree)? {
        configure.arg(format!("{variable}={value}"));
    }
    log.run(&mut configure)?;
    // Debian's rules generate these two first; git-version.h is a
    // BUILT_SOURCE that `make crun` alone does not make.
    log.run(Command::new("make").current_dir(&tree).args([
        "generate-signals.c",
        "generate-mount_flags.c",
        "git-version.h",
    ]))?;
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    log.run(
        Command::new("make")
            .current_dir(&tree)
            .arg(format!("-j{jobs}"))
            .arg("crun"),
    )?;
    let built = tree.join("crun");
    // As dh_strip does, with the symbol table too: nothing debugs it here.
    log.run(
        Command::new("strip")
            .args(["--strip-all", "--remove-section=.comment"])
            .arg(&built),
    )?;
    check_needs(&built)?;
    check_features(&version_text(&built)?)?;

    let target = cache.join(key).join(BINARY);
    let dir = target.parent().unwrap_or(cache);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = dir.join(".crun.partial");
    std::fs::copy(&built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    std::fs::remove_dir_all(&build).with_context(|| format!("removing {}", build.display()))
}

/// Fails when the built crun links one of [`REMOVED_LIBRARIES`].
fn check_needs(binary: &Path) -> anyhow::Result<()> {
    let needs = image_build::elf::needs(binary)?
        .with_context(|| format!("{} is not an ELF file", binary.display()))?;
    let linked: Vec<&String> = needs
        .libraries
        .iter()
        .filter(|library| REMOVED_LIBRARIES.contains(&library.as_str()))
        .collect();
    if !linked.is_empty() {
        bail!(
            "{} still links {linked:?}: check CONFIGURE against configure.ac",
            binary.display()
        );
    }
    Ok(())
}

/// What `crun --version` prints.
fn version_text(binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} --version failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Fails unless the feature line of `crun --version` has every one of
/// [`REQUIRED_FEATURES`] and none of [`REMOVED_FEATURES`].
fn check_features(version: &str) -> anyhow::Result<()> {
    let features: Vec<&str> = version
        .lines()
        .find(|line| line.starts_with('+') || line.starts_with('-'))
        .map(|line| line.split_whitespace().collect())
        .unwrap_or_default();
    let missing: Vec<&str> = REQUIRED_FEATURES
        .iter()
        .filter(|f| !features.contains(f))
        .copied()
        .collect();
    let kept: Vec<&str> = REMOVED_FEATURES
        .iter()
        .filter(|f| features.contains(f))
        .copied()
        .collect();
    if !missing.is_empty() || !kept.is_empty() {
        bail!(
            "crun's features are {features:?}: missing {missing:?}, not removed {kept:?}\n{version}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            version: "1.8.1-1+deb12u1".into(),
            build_packages: "gcc 4:12.2.0-3\nlibseccomp-dev 2.5.4-1+deb12u1".into(),
        }
    }

    #[test]
    fn the_cache_key_changes_with_the_source_and_the_build_packages() {
        let base = cache_key(&inputs());
        assert_eq!(base.len(), 64);
        assert_eq!(base, cache_key(&inputs()));
        let newer = Inputs {
            version: "1.8.1-1+deb12u2".into(),
            ..inputs()
        };
        let library = Inputs {
            build_packages: "gcc 4:12.2.0-3\nlibseccomp-dev 2.5.4-1+deb12u2".into(),
            ..inputs()
        };
        for changed in [newer, library] {
            assert_ne!(base, cache_key(&changed), "{changed:?}");
        }
    }

    #[test]
    fn configure_leaves_out_systemd_and_gcrypt_but_keeps_seccomp_and_ebpf() {
        assert!(CONFIGURE.contains(&"--disable-systemd"));
        assert!(CONFIGURE.contains(&"ac_cv_search_gcry_check_version=no"));
        for kept in ["seccomp", "bpf", "caps"] {
            assert!(
                !CONFIGURE.iter().any(|flag| flag.contains(kept)),
                "{kept} must stay: {CONFIGURE:?}"
            );
        }
    }

    #[test]
    fn the_feature_check_wants_seccomp_and_ebpf_without_systemd() {
        let ours = "crun version 1.8.1\ncommit: f8a0\nrundir: /run/crun\nspec: 1.0.0\n\
                    +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL\n";
        check_features(ours).unwrap();
        let debians = ours.replace("+SELINUX", "+SYSTEMD +SELINUX");
        let error = check_features(&debians).unwrap_err().to_string();
        assert!(error.contains("not removed [\"+SYSTEMD\"]"), "{error}");
        let no_bpf = ours.replace(" +EBPF", "");
        let error = check_features(&no_bpf).unwrap_err().to_string();
        assert!(error.contains("missing [\"+EBPF\"]"), "{error}");
        let error = check_features("crun version 1.8.1\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("missing [\"+CAP\", \"+SECCOMP\", \"+EBPF\"]"),
            "{error}"
        );
    }

    #[test]
    fn debians_crun_fails_the_library_check_and_ls_passes_it() {
        // ./dev setup installs Debian's crun for the host tests.
        let error = check_needs(Path::new("/usr/bin/crun"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("libsystemd.so.0"), "{error}");
        check_needs(Path::new("/bin/ls")).unwrap();
    }
}
