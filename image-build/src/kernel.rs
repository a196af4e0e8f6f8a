//! The kernel: Debian's linux-source-6.1, `tinyconfig` plus the fragments in
//! `kernel-config/`, built once per distinct set of inputs.
//!
//! Cache layout under `<cache>/kernel/`:
//! - `<key>/bzImage`, `<key>/config`: finished kernels, `<key>` being the
//!   sha256 of everything that goes into one (see [`cache_key`]);
//! - `src/<package>_<version>/`: the extracted tarball, shared by every
//!   build of that package version and never written to (builds use `O=`);
//! - `build/<package>_<version>/`: the `O=` build directory, kept so that a
//!   changed fragment rebuilds only what it touches;
//! - `logs/<key>.log`: the output of the build that made `<key>`.

mod fragments;
mod source;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::BuildDirs;
use crate::build_log::{BuildLog, InputsHash, cached_entry};
use crate::lock::Lock;
use fragments::Fragment;
use source::Source;

/// Bump when the build steps below change what comes out, so that kernels
/// cached by an older recipe are not reused. 2: fixed build stamps.
const RECIPE_VERSION: u32 = 2;

/// The user and host kbuild writes into the kernel (`uname -v`, the boot
/// banner) in place of the build machine's.
const BUILD_USER_HOST: &str = "ros";

/// kbuild's default `CC`; its version is part of the cache key.
const COMPILER: &str = "gcc";

/// Builds (or takes from the cache) the bzImage and copies it to `out/vmlinuz`.
pub fn build(dirs: &BuildDirs) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let config_dir = dirs.workspace.join("kernel-config");
    let source = installed_source(dirs)?;
    let pins = Lock::read()?;
    pins.check_installed(&source.package, &source.version, None)?;
    let fragments = fragments::load_all(&config_dir)?;
    let compiler = compiler_version()?;
    let key = cache_key(&source, &fragments, &compiler);
    let cache = dirs.cache.join("kernel");
    let (entry, hit) = cached_entry(
        &cache,
        &key,
        |entry| entry.join("bzImage").is_file(),
        || {
            pins.check_installed(&source.package, &source.version, Some(&source.tarball))?;
            build_uncached(&cache, &key, &source, &fragments)
        },
    )?;

    let vmlinuz = dirs.out.join("vmlinuz");
    copy_atomically(&entry.join("bzImage"), &vmlinuz)?;
    let size = std::fs::metadata(&vmlinuz)?.len();
    eprintln!(
        "kernel: cache {} ({}), {} {}, bzImage {size} bytes ({:.2} MiB), {:.1}s",
        if hit { "hit" } else { "miss, built" },
        &key[..12],
        source.package,
        source.version,
        size as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64(),
    );
    Ok(vmlinuz)
}

/// The kernel source package named in `kernel-config/source.toml`, as
/// installed.
pub fn installed_source(dirs: &BuildDirs) -> anyhow::Result<Source> {
    Source::installed(&dirs.workspace.join("kernel-config/source.toml"))
}

/// The cache key: sha256 over every input that changes the bzImage. Each
/// part is labelled and length-prefixed so no two input sets hash alike.
fn cache_key(source: &Source, fragments: &[Fragment], compiler: &str) -> String {
    let mut hash = InputsHash::new();
    hash.part("recipe", &RECIPE_VERSION.to_string());
    hash.part("package", &source.package);
    hash.part("version", &source.version);
    hash.part("compiler", compiler);
    for fragment in fragments {
        hash.part("fragment", &fragment.name);
        hash.part("contents", &fragment.contents);
    }
    hash.hex()
}

/// The first line of `gcc --version`: a compiler upgrade changes the code.
fn compiler_version() -> anyhow::Result<String> {
    let output = Command::new(COMPILER)
        .arg("--version")
        .output()
        .with_context(|| {
            format!("running `{COMPILER} --version` (apt-get install build-essential)")
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().next() {
        Some(line) if output.status.success() => Ok(line.trim().to_owned()),
        _ => bail!(
            "`{COMPILER} --version` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The cache miss: configure, check the configuration, compile, store.
fn build_uncached(
    cache: &Path,
    key: &str,
    source: &Source,
    fragments: &[Fragment],
) -> anyhow::Result<()> {
    let tree = source_tree(cache, source)?;
    let build = cache.join("build").join(source.dir_name());
    let logs = cache.join("logs");
    for dir in [&build, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = BuildLog::create(logs.join(format!("{key}.log")))?;
    eprintln!(
        "kernel: cache miss, building {} {} (log: {})",
        source.package,
        source.version,
        log.path.display()
    );

    let stamp = build_timestamp(&source.tarball)?;
    configure(&tree, &build, fragments, &log)?;
    verify(&build.join(".config"), fragments)?;
    let jobs = std::thread::available_parallelism().map_or(1, usize::from);
    log.run(
        fixed_stamps(&mut make(&tree, &build), &stamp)
            .arg(format!("-j{jobs}"))
            .arg("bzImage"),
    )?;
    store(&build, &cache.join(key))
}

/// The extracted source, unpacked once per package version. Extraction goes
/// to a temporary directory renamed into place, so a half-extracted tree is
/// never mistaken for a whole one.
fn source_tree(cache: &Path, source: &Source) -> anyhow::Result<PathBuf> {
    let src = cache.join("src");
    let done = src.join(source.dir_name());
    if !done.is_dir() {
        eprintln!("kernel: extracting {}", source.tarball.display());
        let partial = src.join(format!(".{}.partial", source.dir_name()));
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&source.tarball)
            .arg("-C")
            .arg(&partial)
            .status()
            .context("running tar")?;
        if !status.success() {
            bail!("extracting {} failed ({status})", source.tarball.display());
        }
        std::fs::rename(&partial, &done)
            .with_context(|| format!("renaming {} into place", partial.display()))?;
    }
    // The tarball holds one top-level directory (linux-source-6.1/).
    let mut entries = std::fs::read_dir(&done)?.collect::<Result<Vec<_>, _>>()?;
    match (entries.pop(), entries.is_empty()) {
        (Some(top), true) if top.path().join("Makefile").is_file() => Ok(top.path()),
        _ => bail!("{} does not hold exactly one kernel tree", done.display()),
    }
}

/// `make` in the source tree with the build directory as `O=`. ARCH goes in
/// the environment so the `make` inside merge_config.sh sees it too.
fn make(tree: &Path, build: &Path) -> Command {
    let mut command = Command::new("make");
    command
        .current_dir(tree)
        .env("ARCH", "x86_64")
        .arg(format!("O={}", build.display()));
    command
}

/// The kernel's build time, fixed by its inputs: the modification time
/// of the source tarball, which dpkg takes from the package, and which
/// Debian sets to the date of that package version. Not the commit's
/// date: that would change the kernel (and its cache key) on every commit.
fn build_timestamp(tarball: &Path) -> anyhow::Result<String> {
    let modified = std::fs::metadata(tarball)
        .and_then(|meta| meta.modified())
        .with_context(|| format!("reading the modification time of {}", tarball.display()))?;
    let seconds = modified
        .duration_since(std::time::UNIX_EPOCH)
        .with_context(|| format!("{} is dated before 1970", tarball.display()))?
        .as_secs();
    Ok(utc_date(seconds))
}

/// `seconds` since the epoch as `date -u` prints them (`Thu Nov 26
/// 17:12:56 UTC 2026`), a form kbuild's `date -d` reads back.
fn utc_date(seconds: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = seconds / 86_400;
    let time = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm),
    // for days >= 0 only.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{} {} {day:>2} {:02}:{:02}:{:02} UTC {year}",
        DAYS[usize::try_from(days % 7).unwrap_or(0)],
        MONTHS[usize::try_from(month - 1).unwrap_or(0)],
        time / 3600,
        time % 3600 / 60,
        time % 60,
    )
}

/// What kbuild would take from the build machine and the clock, fixed:
/// the same inputs give the same bzImage, on any machine, at any time.
/// `KBUILD_BUILD_VERSION` is the `#N` of `uname -v`, else counted up in
/// the kept build directory on every build.
fn fixed_stamps<'a>(command: &'a mut Command, stamp: &str) -> &'a mut Command {
    command
        .env("KBUILD_BUILD_TIMESTAMP", stamp)
        .env("KBUILD_BUILD_USER", BUILD_USER_HOST)
        .env("KBUILD_BUILD_HOST", BUILD_USER_HOST)
        .env("KBUILD_BUILD_VERSION", "1")
}

/// tinyconfig, then the fragments. merge_config.sh `-n` re-runs allnoconfig
/// with tinyconfig + fragments as the preset, so options no fragment names
/// stay off; plain olddefconfig would switch on every `default y` option
/// behind a newly enabled menu (wireless vendors, cpufreq, thermal, ...).
fn configure(
    tree: &Path,
    build: &Path,
    fragments: &[Fragment],
    log: &BuildLog,
) -> anyhow::Result<()> {
    log.run(make(tree, build).arg("tinyconfig"))?;
    // Run from the build directory (its Makefile forwards to the tree with
    // O=): merge_config.sh writes its temporary file into the current one.
    let mut merge = Command::new(tree.join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(build)
        .env("ARCH", "x86_64")
        .arg("-n")
        .arg(".config")
        .args(fragments.iter().map(|fragment| &fragment.path));
    log.run(&mut merge)?;
    log.run(make(tree, build).arg("olddefconfig"))
}

/// Fails, listing every option Kconfig dropped, when the final `.config`
/// lacks anything a fragment asked for.
fn verify(config: &Path, fragments: &[Fragment]) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let dropped = fragments::dropped_options(fragments, &text)?;
    if dropped.is_empty() {
        return Ok(());
    }
    let list: String = dropped
        .iter()
        .map(|option| format!("\n  {option}"))
        .collect();
    bail!(
        "{} option(s) from kernel-config/ did not make it into {} \
         (usually a dependency that is off: add it to the fragment too):{list}",
        dropped.len(),
        config.display()
    )
}

/// Copies the finished kernel into its cache entry. The bzImage goes last:
/// its presence is what marks the entry complete.
fn store(build: &Path, entry: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(entry).with_context(|| format!("creating {}", entry.display()))?;
    copy_atomically(&build.join(".config"), &entry.join("config"))?;
    copy_atomically(&build.join("arch/x86/boot/bzImage"), &entry.join("bzImage"))
}

/// Copy to a temporary name next to `to`, then rename: readers see the old
/// file or the new one, never a partial copy.
fn copy_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let name = to.file_name().context("copy target has no file name")?;
    let partial = to.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    std::fs::copy(from, &partial)
        .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    std::fs::rename(&partial, to).with_context(|| format!("renaming to {}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> (Source, Vec<Fragment>) {
        let source = Source {
            package: "linux-source-6.1".into(),
            version: "6.1.192-2".into(),
            tarball: PathBuf::from("/usr/src/linux-source-6.1.tar.xz"),
        };
        let fragment = |name: &str, contents: &str| Fragment {
            name: name.into(),
            path: PathBuf::from(name),
            contents: contents.into(),
        };
        let fragments = vec![
            fragment("base.config", "CONFIG_SMP=y\n"),
            fragment("net.config", "CONFIG_NET=y\n"),
        ];
        (source, fragments)
    }

    #[test]
    fn cache_key_is_a_stable_sha256() {
        let (source, fragments) = inputs();
        let key = cache_key(&source, &fragments, "gcc 12");
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(key, cache_key(&source, &fragments, "gcc 12"));
    }

    #[test]
    fn cache_key_changes_with_every_input() {
        let (source, fragments) = inputs();
        let base = cache_key(&source, &fragments, "gcc 12");

        let newer = Source {
            version: "6.1.193-1".into(),
            ..source.clone()
        };
        assert_ne!(base, cache_key(&newer, &fragments, "gcc 12"));
        assert_ne!(base, cache_key(&source, &fragments, "gcc 13"));

        let mut changed = fragments.clone();
        changed[1].contents.push_str("CONFIG_IPV6=y\n");
        assert_ne!(base, cache_key(&source, &changed, "gcc 12"));

        // Same text, moved to another fragment: a different input set.
        let mut renamed = fragments.clone();
        renamed[1].name = "network.config".into();
        assert_ne!(base, cache_key(&source, &renamed, "gcc 12"));
        let mut moved = fragments.clone();
        moved[0].contents = "CONFIG_SMP=y\nCONFIG_NET=y\n".into();
        moved[1].contents = String::new();
        assert_ne!(base, cache_key(&source, &moved, "gcc 12"));
    }

    #[test]
    fn build_dates_read_as_date_prints_them() {
        assert_eq!(utc_date(0), "Thu Jan  1 00:00:00 UTC 1970");
        // The linux-source-6.1 6.1.192-3 tarball's time stamp.
        assert_eq!(utc_date(1_795_713_176), "Thu Nov 26 17:12:56 UTC 2026");
        // A leap day, and the last second of a year.
        assert_eq!(utc_date(951_782_400), "Tue Feb 29 00:00:00 UTC 2000");
        assert_eq!(utc_date(1_704_067_199), "Sun Dec 31 23:59:59 UTC 2023");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(crate::build_log::tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(crate::build_log::tail("a\nb", 5), "a\nb");
        assert_eq!(crate::build_log::tail("", 3), "");
    }
}
