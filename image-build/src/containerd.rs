//! containerd and its runc shim, compiled from Debian's source package
//! with only the plugins this system uses.
//!
//! Debian's binary package carries the CRI plugin and every snapshotter
//! (48 MB, 11 MB xz-compressed). Ours is the same source version, built
//! the way Debian builds it (GOPATH mode against the `golang-*-dev`
//! packages, cgo as Debian has it) but:
//! - with the build tags that leave out CRI and the snapshotters we do not
//!   ship ([`BUILD_TAGS`]): our clients speak the containerd API through
//!   containerd-client, and the cluster agent brings its own containerd;
//! - from a `main` package of our own whose imports are [`PLUGINS`], in
//!   place of `cmd/containerd`'s builtins (no cgroup metrics, restart
//!   monitor or `opt` service);
//! - `-trimpath -ldflags '-s -w'`.
//!
//! Cache layout under `<cache>/containerd/`, as the kernel's:
//! - `<key>/usr/bin/{containerd,containerd-shim-runc-v2}`: finished
//!   binaries, laid out as a root the image's file pool can take them
//!   from; `<key>` is the sha256 of every input ([`cache_key`]);
//! - `src/<version>/`: `apt-get source` output, never written to after;
//! - `build/<key>/`: the GOPATH a build works in (removed before each);
//! - `gocache/`: Go's build cache, shared by every build;
//! - `logs/<key>.log`: the output of the build that made `<key>`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::build_log::{self, BuildLog, InputsHash, cached_entry};
use crate::debian::Packages;

/// Bump when the build below changes what comes out.
const RECIPE_VERSION: u32 = 1;

/// The Debian source package (and binary package whose version it takes).
pub const SOURCE_PACKAGE: &str = "containerd";

/// The Go import path the source is built under.
const IMPORT_PATH: &str = "github.com/containerd/containerd";

/// Build tags read by `cmd/containerd/builtins_*.go` and the packages
/// behind them: no CRI, no btrfs/devmapper/zfs/aufs snapshotters, no
/// Intel RDT.
pub const BUILD_TAGS: &[&str] = &[
    "no_cri",
    "no_btrfs",
    "no_devmapper",
    "no_zfs",
    "no_aufs",
    "no_rdt",
];

/// The plugins compiled into our containerd (Go packages whose `init`
/// registers them). The gRPC services the Rust clients call (containers,
/// content, diff, images, leases, snapshots, tasks) and what they stand
/// on; version, namespaces, events, introspection and health for `ctr`
/// and probes. The v1 runtime stays because the tasks service refuses to
/// start without one; overlay is the snapshotter, native a fallback for
/// file systems overlayfs cannot sit on.
pub const PLUGINS: &[&str] = &[
    "diff/walking/plugin",
    "events/plugin",
    "gc/scheduler",
    "runtime/v1/linux",
    "runtime/v2",
    "runtime/v2/runc/options",
    "services/containers",
    "services/content",
    "services/diff",
    "services/events",
    "services/healthcheck",
    "services/images",
    "services/introspection",
    "services/leases",
    "services/namespaces",
    "services/snapshots",
    "services/tasks",
    "services/version",
    "snapshots/native/plugin",
    "snapshots/overlay/plugin",
];

/// Where our `main` package goes in the source tree.
const MAIN_PACKAGE: &str = "cmd/ros-containerd";

/// The binaries, with the command package each is built from.
const BINARIES: &[(&str, &str)] = &[
    ("containerd", MAIN_PACKAGE),
    ("containerd-shim-runc-v2", "cmd/containerd-shim-runc-v2"),
];

/// Where the Debian `golang-*-dev` packages keep their sources.
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// The inputs that decide what comes out of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    /// Debian version of the source package.
    version: String,
    /// `go version`.
    go: String,
    /// `name version` of every installed golang package (the compiler and
    /// every library the build links).
    go_packages: String,
}

/// Builds containerd and its shim (or takes them from the cache) and
/// returns the root holding them at `usr/bin/`.
pub fn build(cache: &Path, packages: &Packages) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let inputs = Inputs {
        version: packages.candidate(SOURCE_PACKAGE)?.version,
        go: go_version()?,
        go_packages: go_packages()?,
    };
    let key = cache_key(&inputs);
    let cache = cache.join("containerd");
    let (entry, hit) = cached_entry(&cache, &key, complete, || {
        build_uncached(&cache, &key, &inputs)
    })?;
    let sizes: Vec<String> = BINARIES
        .iter()
        .map(|(name, _)| {
            let size = std::fs::metadata(entry.join("usr/bin").join(name)).map_or(0, |m| m.len());
            format!("{name} {size} bytes")
        })
        .collect();
    eprintln!(
        "containerd: cache {} ({}), {SOURCE_PACKAGE} {}, {}, {:.1}s",
        if hit { "hit" } else { "miss, built" },
        &key[..12],
        inputs.version,
        sizes.join(", "),
        started.elapsed().as_secs_f64(),
    );
    Ok(entry)
}

/// A cache entry is complete when its last binary is there: they are
/// stored in order, each renamed into place.
fn complete(entry: &Path) -> bool {
    BINARIES
        .iter()
        .all(|(name, _)| entry.join("usr/bin").join(name).is_file())
}

/// The cache key: every input, labelled.
fn cache_key(inputs: &Inputs) -> String {
    let mut hash = InputsHash::new();
    hash.part("recipe", &RECIPE_VERSION.to_string());
    hash.part("version", &inputs.version);
    hash.part("tags", &BUILD_TAGS.join(" "));
    hash.part("plugins", &PLUGINS.join(" "));
    hash.part("go", &inputs.go);
    hash.part("go-packages", &inputs.go_packages);
    hash.hex()
}

fn go_version() -> anyhow::Result<String> {
    let output = Command::new("go")
        .arg("version")
        .output()
        .context("running `go version` (./dev setup installs containerd's build dependencies)")?;
    if !output.status.success() {
        bail!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The installed golang packages with their versions, sorted: a newer
/// library changes the binary as much as a newer compiler.
fn go_packages() -> anyhow::Result<String> {
    let output = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev} ${Package} ${Version}\n",
            "golang-*",
        ])
        .output()
        .context("running dpkg-query")?;
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("ii "))
        .map(|line| line.trim().to_owned())
        .collect();
    lines.sort();
    if lines.is_empty() {
        bail!(
            "no golang packages installed: run `apt-get build-dep {SOURCE_PACKAGE}` (./dev setup)"
        );
    }
    Ok(lines.join("\n"))
}

/// The cache miss: fetch the source, lay out a GOPATH, compile, store.
fn build_uncached(cache: &Path, key: &str, inputs: &Inputs) -> anyhow::Result<()> {
    let logs = cache.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log = BuildLog::create(logs.join(format!("{key}.log")))?;
    eprintln!(
        "containerd: cache miss, building {SOURCE_PACKAGE} {} from source (log: {})",
        inputs.version,
        log.path.display()
    );
    let source = build_log::debian_source(
        &cache.join("src"),
        SOURCE_PACKAGE,
        &inputs.version,
        &log,
        |tree| tree.join("cmd/containerd").is_dir(),
    )?;

    let build = cache.join("build").join(key);
    if build.exists() {
        std::fs::remove_dir_all(&build).with_context(|| format!("removing {}", build.display()))?;
    }
    let gopath = build.join("gopath");
    let tree = gopath.join("src").join(IMPORT_PATH);
    std::fs::create_dir_all(tree.parent().unwrap_or(&gopath))?;
    log.run(Command::new("cp").arg("-a").arg(&source).arg(&tree))?;
    write_main_package(&tree)?;

    let out = build.join("out");
    std::fs::create_dir_all(&out)?;
    let ldflags = format!(
        "-s -w -X {IMPORT_PATH}/version.Version={upstream} -X {IMPORT_PATH}/version.Revision={debian}",
        upstream = inputs.version.split('-').next().unwrap_or(&inputs.version),
        debian = inputs.version,
    );
    for (name, package) in BINARIES {
        log.run(
            Command::new("go")
                .current_dir(&tree)
                .env("GOPATH", format!("{}:{DEBIAN_GOPATH}", gopath.display()))
                .env("GO111MODULE", "off")
                .env("GOFLAGS", "")
                .env("GOCACHE", cache.join("gocache"))
                .args(["build", "-trimpath", "-tags"])
                .arg(BUILD_TAGS.join(" "))
                .arg("-ldflags")
                .arg(&ldflags)
                .arg("-o")
                .arg(out.join(name))
                .arg(format!("{IMPORT_PATH}/{package}")),
        )?;
    }
    let entry = cache.join(key).join("usr/bin");
    std::fs::create_dir_all(&entry).with_context(|| format!("creating {}", entry.display()))?;
    for (name, _) in BINARIES {
        let partial = entry.join(format!(".{name}.partial"));
        std::fs::copy(out.join(name), &partial)
            .with_context(|| format!("copying {name} to {}", partial.display()))?;
        std::fs::rename(&partial, entry.join(name))
            .with_context(|| format!("renaming {} into place", partial.display()))?;
    }
    std::fs::remove_dir_all(&build).with_context(|| format!("removing {}", build.display()))
}

/// Our `main` package: containerd's own `main.go`, and a builtins file
/// importing [`PLUGINS`] alone.
fn write_main_package(tree: &Path) -> anyhow::Result<()> {
    let dir = tree.join(MAIN_PACKAGE);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let main = tree.join("cmd/containerd/main.go");
    std::fs::copy(&main, dir.join("main.go"))
        .with_context(|| format!("copying {}", main.display()))?;
    let builtins = dir.join("builtins.go");
    std::fs::write(&builtins, builtins_go())
        .with_context(|| format!("writing {}", builtins.display()))
}

/// The Go file that compiles [`PLUGINS`] in.
fn builtins_go() -> String {
    let mut text = String::from(
        "// Written by image-build: the plugins the ros image uses.\n\npackage main\n\nimport (\n",
    );
    for plugin in PLUGINS {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "\t_ \"{IMPORT_PATH}/{plugin}\"");
    }
    text.push_str(")\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            version: "1.6.20~ds1-1+deb12u3".into(),
            go: "go version go1.19.8 linux/amd64".into(),
            go_packages: "golang-1.19-go 1.19.8-2\ngolang-google-grpc-dev 1.33.3-2".into(),
        }
    }

    #[test]
    fn the_cache_key_changes_with_the_source_the_compiler_and_the_libraries() {
        let base = cache_key(&inputs());
        assert_eq!(base.len(), 64);
        assert_eq!(base, cache_key(&inputs()));
        let newer = Inputs {
            version: "1.6.20~ds1-1+deb12u4".into(),
            ..inputs()
        };
        let go = Inputs {
            go: "go version go1.19.9 linux/amd64".into(),
            ..inputs()
        };
        let library = Inputs {
            go_packages: "golang-1.19-go 1.19.8-2\ngolang-google-grpc-dev 1.33.3-3".into(),
            ..inputs()
        };
        for changed in [newer, go, library] {
            assert_ne!(base, cache_key(&changed), "{changed:?}");
        }
    }

    #[test]
    fn the_builtins_file_imports_each_plugin_under_containerds_path() {
        let text = builtins_go();
        assert!(text.starts_with("// Written by image-build"));
        assert!(text.contains("package main\n"));
        assert!(text.contains("\t_ \"github.com/containerd/containerd/services/tasks\"\n"));
        assert_eq!(text.matches("\t_ \"").count(), PLUGINS.len());
        assert!(!text.contains("cri"), "no CRI plugin: {text}");
        assert!(text.ends_with(")\n"));
    }

    #[test]
    fn versions_become_path_safe_directory_names() {
        assert_eq!(
            build_log::path_safe("1.6.20~ds1-1+deb12u3"),
            "1.6.20_ds1-1+deb12u3"
        );
        assert_eq!(build_log::path_safe("1:2.0"), "1_2.0");
    }
}
