//! `./dev bench`: how fast the built image boots, how much memory it
//! uses and how big it is, measured the same way every time.
//!
//! It boots the image (`-kernel/-initrd`, 512 MiB, KVM or TCG as the
//! machine gives) `--runs N` times (default 5), each followed by the
//! *floor*: the same kernel with an initrd of busybox alone that prints a
//! marker. Absolute times drift on a shared machine; the ratio of ours to
//! the floor is the figure that matters. After each of our boots it asks
//! the guest for its timeline (`ros analyze`) and its memory.
//!
//! Memory is measured on a boot from the ISO (`-cdrom`), as a machine
//! runs: there the root image is read from the medium, while the
//! `-kernel` initrd carries it and keeps its 16.5 MB in RAM. After the
//! timed boots, one ISO boot gives MemTotal − MemAvailable, each
//! service's cgroup `memory.current` and the RSS of PID 1, containerd and
//! its shims; then ISO boots bisect the smallest `-m` at which `ros:
//! ready` is still reached. Last, the image's parts.
//!
//! The image is `$ROS_IMAGE_DIR`, else `target/image/`.
//!
//! Writes `target/bench/bench.md` (Markdown tables),
//! `target/bench/bench.json` and `target/bench/boot-timeline.svg` (the
//! timeline of the boot nearest the median); a progress line goes to
//! standard error.
//!
//! Options: `--runs N`, `--out DIR`, `--no-memory-search`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::{self, IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use qemu_tests::{
    Boot as How, Image, TEST_APPEND, VmBuilder, WaitError, accelerator, image_dir, tail,
};

/// What the floor's /init prints.
const FLOOR_MARKER: &str = "ros-bench: floor reached";
/// What ours prints.
const READY_MARKER: &str = "ros: ready in ";
/// The memory every timed boot gets.
const MEMORY_MIB: u32 = 512;
/// The bisection's bounds and how close it gets.
const MEMORY_FLOOR_MIB: u32 = 64;
const MEMORY_STEP_MIB: u32 = 16;
/// How long one boot may take before it counts as failed.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Debug)]
struct Args {
    runs: usize,
    out: PathBuf,
    memory_search: bool,
}

/// A command line that is refused (exit 2); `--help` is one too.
#[derive(Debug, PartialEq, Eq)]
enum ArgsError {
    Usage,
    Runs,
    Out,
    Unknown(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage => f.write_str("usage: bench [--runs N] [--out DIR] [--no-memory-search]"),
            Self::Runs => f.write_str("--runs takes a number above 0"),
            Self::Out => f.write_str("--out takes a directory"),
            Self::Unknown(arg) => write!(f, "unknown argument {arg:?} (see --help)"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Why a bench run stopped (exit 1), naming the boot or the file.
#[derive(Debug)]
enum BenchError {
    /// A boot did not print its marker; `which` is ours or the floor's.
    Boot {
        which: &'static str,
        source: WaitError,
    },
    /// `ros analyze` answered without its table.
    NoTimeline { analyze: String },
    /// The floor's initrd needs the host's static busybox.
    Busybox(io::Error),
    /// A result or the floor's initrd could not be written.
    Write { path: PathBuf, source: io::Error },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Boot { which, source } => write!(f, "{which}: {source}"),
            Self::NoTimeline { analyze } => {
                write!(f, "`ros analyze` printed no timeline:\n{analyze}")
            }
            Self::Busybox(e) => write!(f, "/bin/busybox: {e} (apt-get install busybox-static)"),
            Self::Write { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Boot { source, .. } => Some(source),
            Self::Busybox(source) | Self::Write { source, .. } => Some(source),
            Self::NoTimeline { .. } => None,
        }
    }
}

/// `std::fs::write`, naming the file when it fails.
fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), BenchError> {
    std::fs::write(path, contents).map_err(|source| BenchError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The options after the program name.
fn parse_args(mut given: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut args = Args {
        runs: 5,
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
        memory_search: true,
    };
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--runs" => {
                args.runs = given
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or(ArgsError::Runs)?;
            }
            "--out" => args.out = given.next().ok_or(ArgsError::Out)?.into(),
            "--no-memory-search" => args.memory_search = false,
            "-h" | "--help" => {
                return Err(ArgsError::Usage);
            }
            other => return Err(ArgsError::Unknown(other.to_owned())),
        }
    }
    Ok(args)
}

/// One line on standard error, rewritten in place on a terminal.
fn progress(line: &str) {
    let mut err = io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[K{line}");
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

/// One row of `ros analyze`: start, duration (None for a mark or while
/// running), kind, name; in seconds.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    start: f64,
    duration: Option<f64>,
    kind: String,
    name: String,
}

/// Reads the table `ros analyze` prints: fixed columns, times as `1.234s`.
fn parse_analyze(text: &str) -> Vec<Row> {
    let secs = |field: &str| field.trim().strip_suffix('s')?.parse::<f64>().ok();
    text.lines()
        .filter(|line| line.len() > 31 && !line.starts_with("    START"))
        .filter_map(|line| {
            let start = secs(line.get(0..9)?)?;
            let duration = secs(line.get(11..20)?);
            let kind = line.get(22..29)?.trim();
            let what = line.get(31..)?.trim();
            // A service's steps follow its name in parentheses.
            let name = what.split(" (").next().unwrap_or(what);
            Some(Row {
                start,
                duration,
                kind: if kind.is_empty() { "mark" } else { kind }.to_owned(),
                name: name.to_owned(),
            })
        })
        .collect()
}

/// What one of our boots measured.
#[derive(Debug, Default, Clone)]
struct Boot {
    /// From QEMU's start to `ros: ready` on the console, seconds.
    to_ready: f64,
    /// What the guest said (`ready in X s`, since the kernel started).
    guest_ready: f64,
    rows: Vec<Row>,
    /// `ros analyze --svg -` of this boot.
    svg: String,
    mem_total_kib: u64,
    mem_available_kib: u64,
    /// memory.current of each service's cgroup, bytes.
    cgroups: BTreeMap<String, u64>,
    /// RSS summed by process name, KiB, with the count of processes.
    rss: BTreeMap<String, (u64, u32)>,
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The shell line that lists the services' cgroup memory and the RSS of
/// the processes that are not services.
const MEMORY_PROBE: &str = "for d in /sys/fs/cgroup/ros/*/; do n=${d%/}; echo \"cg ${n##*/} $(cat $d/memory.current 2>/dev/null || echo 0)\"; done; \
for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null); case \"$c\" in ros|containerd|containerd-shim*) echo \"rss $c $(grep VmRSS $p/status | tr -s ' ' | cut -d' ' -f2)\";; esac; done";

/// How one of our boots starts: `-kernel/-initrd` (timed) or the ISO as
/// a CD (memory: the root image stays on the medium).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootFrom {
    Kernel,
    Iso,
}

fn vm(image: &Image, from: BootFrom) -> VmBuilder {
    match from {
        BootFrom::Kernel => VmBuilder::kernel(image.clone(), ""),
        BootFrom::Iso => VmBuilder::new(image.clone(), How::Cdrom),
    }
}

fn boot_ours(image: &Image, from: BootFrom) -> Result<Boot, BenchError> {
    let mut vm = vm(image, from).memory_mib(MEMORY_MIB).start();
    let out = vm
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .map_err(|source| BenchError::Boot {
            which: "our boot",
            source,
        })?;
    let to_ready = vm.elapsed().as_secs_f64();
    let guest_ready = vm
        .wait_for_since(out.len(), " s", Duration::from_secs(5))
        .ok()
        .and_then(|end| vm.output()[out.len()..end - 2].trim().parse().ok())
        .unwrap_or(0.0);
    vm.wait_for_shell(Duration::from_secs(120));
    let analyze = vm.check("ros analyze");
    let svg = vm.check("ros analyze --svg -");
    let meminfo = vm.check("cat /proc/meminfo");
    let probe = vm.check(MEMORY_PROBE);
    let mut boot = Boot {
        to_ready,
        guest_ready,
        rows: parse_analyze(&analyze),
        svg: svg.trim_start().to_owned(),
        mem_total_kib: number_after(&meminfo, "MemTotal:").unwrap_or(0),
        mem_available_kib: number_after(&meminfo, "MemAvailable:").unwrap_or(0),
        ..Boot::default()
    };
    for line in probe.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            ["cg", name, bytes] => {
                boot.cgroups
                    .insert(name.to_owned(), bytes.parse().unwrap_or(0));
            }
            ["rss", name, kib] => {
                let entry = boot.rss.entry(name.to_owned()).or_default();
                entry.0 += kib.parse::<u64>().unwrap_or(0);
                entry.1 += 1;
            }
            _ => {}
        }
    }
    if boot.rows.is_empty() {
        return Err(BenchError::NoTimeline { analyze });
    }
    Ok(boot)
}

/// The floor's initrd: busybox as /bin/busybox and an /init that prints
/// the marker and powers off.
fn floor_initrd(dir: &Path) -> Result<PathBuf, BenchError> {
    let busybox = std::fs::read("/bin/busybox").map_err(BenchError::Busybox)?;
    let init = format!(
        "#!/bin/busybox sh\n/bin/busybox echo '{FLOOR_MARKER}'\n/bin/busybox poweroff -f\n"
    );
    let mut archive = Vec::new();
    cpio_entry(&mut archive, "bin", 0o040_755, &[]);
    cpio_entry(&mut archive, "bin/busybox", 0o100_755, &busybox);
    cpio_entry(&mut archive, "init", 0o100_755, init.as_bytes());
    cpio_entry(&mut archive, "TRAILER!!!", 0, &[]);
    let path = dir.join("floor-initrd.cpio");
    write_file(&path, archive)?;
    Ok(path)
}

/// One entry of a newc cpio archive (what the kernel unpacks).
fn cpio_entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    let name_size = name.len() + 1;
    let fields = [
        0,
        mode,
        0,
        0,
        1,
        0,
        u32::try_from(data.len()).unwrap_or(u32::MAX),
        0,
        0,
        0,
        0,
        u32::try_from(name_size).unwrap_or(0),
        0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn boot_floor(initrd: &Path) -> Result<f64, BenchError> {
    let mut vm = VmBuilder::own_initrd(initrd, TEST_APPEND)
        .memory_mib(MEMORY_MIB)
        .start();
    vm.wait_for(FLOOR_MARKER, BOOT_TIMEOUT)
        .map_err(|source| BenchError::Boot {
            which: "the floor's boot",
            source,
        })?;
    let seconds = vm.elapsed().as_secs_f64();
    vm.kill();
    Ok(seconds)
}

/// Whether ours, booted from the ISO, reaches `ros: ready` with `mib`
/// of memory within `timeout`.
fn ready_with(image: &Image, mib: u32, timeout: Duration) -> bool {
    let mut vm = vm(image, BootFrom::Iso).memory_mib(mib).start();
    let ready = vm.wait_for(READY_MARKER, timeout).is_ok();
    vm.kill();
    ready
}

/// The smallest memory (to [`MEMORY_STEP_MIB`]) between the floor and
/// [`MEMORY_MIB`] at which ready is reached, with each size tried.
fn smallest_memory(image: &Image, timeout: Duration) -> (Option<u32>, Vec<(u32, bool)>) {
    let mut tried = Vec::new();
    let mut try_size = |mib: u32| {
        progress(&format!("bench: smallest memory: trying -m {mib}"));
        let ready = ready_with(image, mib, timeout);
        tried.push((mib, ready));
        ready
    };
    if try_size(MEMORY_FLOOR_MIB) {
        return (Some(MEMORY_FLOOR_MIB), tried);
    }
    let (mut fails, mut works) = (MEMORY_FLOOR_MIB, MEMORY_MIB);
    while works - fails > MEMORY_STEP_MIB {
        let middle = (fails + works) / 2 / MEMORY_STEP_MIB * MEMORY_STEP_MIB;
        let middle = middle.max(fails + MEMORY_STEP_MIB);
        if try_size(middle) {
            works = middle;
        } else {
            fails = middle;
        }
    }
    (Some(works), tried)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if !n.is_multiple_of(2) => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// The median start and duration of each phase and service over `boots`,
/// by median start.
fn phases(boots: &[Boot]) -> Vec<(String, String, f64, Option<f64>)> {
    let mut seen: BTreeMap<(String, String), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for row in boots.iter().flat_map(|b| &b.rows) {
        let entry = seen
            .entry((row.kind.clone(), row.name.clone()))
            .or_default();
        entry.0.push(row.start);
        if let Some(duration) = row.duration {
            entry.1.push(duration);
        }
    }
    let mut rows: Vec<_> = seen
        .into_iter()
        .map(|((kind, name), (starts, durations))| {
            let duration = (!durations.is_empty()).then(|| median(&durations));
            (kind, name, median(&starts), duration)
        })
        .collect();
    rows.sort_by(|a, b| a.2.total_cmp(&b.2));
    rows
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_numbers(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
    format!("[{}]", items.join(", "))
}

/// The image's parts and their sizes, bytes.
fn parts(dir: &Path) -> Vec<(String, u64)> {
    [
        "vmlinuz",
        "initrd",
        "initrd-media",
        "rootfs.squashfs",
        "ros",
        "ros.iso",
    ]
    .iter()
    .filter_map(|name| {
        let size = std::fs::metadata(dir.join(name)).ok()?.len();
        Some(((*name).to_owned(), size))
    })
    .collect()
}

/// The largest files of the root file system, from image-build's size report.
fn largest_files(dir: &Path, count: usize) -> Vec<String> {
    let report = std::fs::read_to_string(dir.join("size-report.txt")).unwrap_or_default();
    report
        .lines()
        .skip_while(|line| !line.starts_with("largest files"))
        .skip(1)
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .take(count)
        .collect()
}

struct Results {
    accel: String,
    ours: Vec<f64>,
    guest: Vec<f64>,
    floor: Vec<f64>,
    boots: Vec<Boot>,
    /// The ISO boots memory is measured on.
    iso_boots: Vec<Boot>,
    memory: (Option<u32>, Vec<(u32, bool)>),
    parts: Vec<(String, u64)>,
    largest: Vec<String>,
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let (ours_min, ours_max) = min_max(&r.ours);
    let (floor_min, floor_max) = min_max(&r.floor);
    let ratio = median(&r.ours) / median(&r.floor);
    let _ = writeln!(
        md,
        "Boots: {} of each, alternating; `-kernel/-initrd`, {MEMORY_MIB} MiB, 2 CPUs, {}.\n",
        r.ours.len(),
        r.accel
    );
    md.push_str("| from QEMU start to | median | min | max |\n|---|---:|---:|---:|\n");
    let _ = writeln!(
        md,
        "| `ros: ready` (ours) | {:.2} s | {ours_min:.2} s | {ours_max:.2} s |",
        median(&r.ours)
    );
    let _ = writeln!(
        md,
        "| the floor's marker (kernel + busybox initrd) | {:.2} s | {floor_min:.2} s | {floor_max:.2} s |",
        median(&r.floor)
    );
    let _ = writeln!(
        md,
        "| **ratio ours / floor** | **{ratio:.2}×** | | |\n\nThe guest's own clock says ready at {:.2} s after the kernel started (median).\n",
        median(&r.guest)
    );

    md.push_str("Phases (`ros analyze` in the guest, median over the boots; seconds since the kernel started):\n\n");
    md.push_str("| kind | phase / service | start | duration |\n|---|---|---:|---:|\n");
    for (kind, name, start, duration) in phases(&r.boots) {
        let duration = duration.map_or_else(String::new, |d| format!("{d:.3} s"));
        let _ = writeln!(md, "| {kind} | {name} | {start:.3} s | {duration} |");
    }

    let used = |boots: &[Boot]| -> f64 {
        let used: Vec<f64> = boots
            .iter()
            .map(|b| (b.mem_total_kib.saturating_sub(b.mem_available_kib) * 1024) as f64)
            .collect();
        median(&used)
    };
    // The ISO boot when there is one: the root image stays on the medium.
    let (mem_boots, from) = if r.iso_boots.is_empty() {
        (&r.boots, "`-kernel/-initrd`")
    } else {
        (&r.iso_boots, "the ISO")
    };
    let _ = writeln!(
        md,
        "\nMemory after boot from {from} ({MEMORY_MIB} MiB VM, {} boot(s)): MemTotal − MemAvailable **{:.1} MiB** (median; MemTotal {:.1} MiB). The `-kernel/-initrd` boots, whose initrd keeps the root image in RAM: {:.1} MiB.\n",
        mem_boots.len(),
        mib(used(mem_boots)),
        mib(mem_boots.first().map_or(0, |b| b.mem_total_kib * 1024) as f64),
        mib(used(&r.boots))
    );
    md.push_str("| cgroup / process | memory (median) |\n|---|---:|\n");
    let mut names: Vec<&String> = mem_boots.iter().flat_map(|b| b.cgroups.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let values: Vec<f64> = mem_boots
            .iter()
            .filter_map(|b| b.cgroups.get(name).map(|v| *v as f64))
            .collect();
        let _ = writeln!(
            md,
            "| service {name} (memory.current) | {:.1} MiB |",
            mib(median(&values))
        );
    }
    let mut names: Vec<&String> = mem_boots.iter().flat_map(|b| b.rss.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let values: Vec<f64> = mem_boots
            .iter()
            .filter_map(|b| b.rss.get(name).map(|v| (v.0 * 1024) as f64))
            .collect();
        let count = mem_boots
            .first()
            .and_then(|b| b.rss.get(name))
            .map_or(0, |v| v.1);
        let _ = writeln!(
            md,
            "| `{name}` processes ({count}, RSS summed) | {:.1} MiB |",
            mib(median(&values))
        );
    }
    let (smallest, tried) = &r.memory;
    match smallest {
        Some(mib) if !tried.is_empty() => {
            let tried: Vec<String> = tried
                .iter()
                .map(|(m, ok)| format!("{m} {}", if *ok { "ready" } else { "not ready" }))
                .collect();
            let _ = writeln!(
                md,
                "\nSmallest `-m` reaching ready: **{mib} MiB** (tried: {}).",
                tried.join(", ")
            );
        }
        _ => md.push_str("\nSmallest `-m`: not searched.\n"),
    }
    md.push_str("\n| image part | bytes | MB |\n|---|---:|---:|\n");
    for (name, bytes) in &r.parts {
        let _ = writeln!(md, "| {name} | {bytes} | {:.2} |", *bytes as f64 / 1e6);
    }
    if !r.largest.is_empty() {
        md.push_str("\nLargest files of the root file system (uncompressed bytes):\n\n```\n");
        for line in &r.largest {
            let _ = writeln!(md, "{line}");
        }
        md.push_str("```\n");
    }
    md
}

fn json(r: &Results) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"accelerator\": {},", json_string(&r.accel));
    let _ = writeln!(out, "  \"memory_mib\": {MEMORY_MIB},");
    for (key, values) in [("ours_s", &r.ours), ("floor_s", &r.floor)] {
        let (min, max) = min_max(values);
        let _ = writeln!(
            out,
            "  {}: {{\"median\": {:.3}, \"min\": {min:.3}, \"max\": {max:.3}, \"runs\": {}}},",
            json_string(key),
            median(values),
            json_numbers(values)
        );
    }
    let _ = writeln!(
        out,
        "  \"ratio\": {:.3},\n  \"guest_ready_s\": {},",
        median(&r.ours) / median(&r.floor),
        json_numbers(&r.guest)
    );
    let phases: Vec<String> = phases(&r.boots)
        .into_iter()
        .map(|(kind, name, start, duration)| {
            format!(
                "    {{\"kind\": {}, \"name\": {}, \"start_s\": {start:.3}, \"duration_s\": {}}}",
                json_string(&kind),
                json_string(&name),
                duration.map_or_else(|| "null".to_owned(), |d| format!("{d:.3}"))
            )
        })
        .collect();
    let _ = writeln!(out, "  \"phases\": [\n{}\n  ],", phases.join(",\n"));
    let boots = r
        .boots
        .iter()
        .map(|b| ("kernel", b))
        .chain(r.iso_boots.iter().map(|b| ("iso", b)));
    let used: Vec<String> = boots
        .map(|(from, b)| {
            let cgroups: Vec<String> = b
                .cgroups
                .iter()
                .map(|(name, bytes)| format!("{}: {bytes}", json_string(name)))
                .collect();
            let rss: Vec<String> = b
                .rss
                .iter()
                .map(|(name, (kib, n))| {
                    format!(
                        "{}: {{\"kib\": {kib}, \"processes\": {n}}}",
                        json_string(name)
                    )
                })
                .collect();
            format!(
                "    {{\"boot\": {}, \"mem_total_kib\": {}, \"mem_available_kib\": {}, \"used_kib\": {}, \"cgroup_bytes\": {{{}}}, \"rss\": {{{}}}}}",
                json_string(from),
                b.mem_total_kib,
                b.mem_available_kib,
                b.mem_total_kib.saturating_sub(b.mem_available_kib),
                cgroups.join(", "),
                rss.join(", ")
            )
        })
        .collect();
    let _ = writeln!(out, "  \"memory\": [\n{}\n  ],", used.join(",\n"));
    let tried: Vec<String> = r
        .memory
        .1
        .iter()
        .map(|(m, ok)| format!("{{\"mib\": {m}, \"ready\": {ok}}}"))
        .collect();
    let _ = writeln!(
        out,
        "  \"smallest_memory_mib\": {},\n  \"memory_tried\": [{}],",
        r.memory
            .0
            .filter(|_| !r.memory.1.is_empty())
            .map_or_else(|| "null".to_owned(), |m| m.to_string()),
        tried.join(", ")
    );
    let parts: Vec<String> = r
        .parts
        .iter()
        .map(|(name, bytes)| format!("{}: {bytes}", json_string(name)))
        .collect();
    let _ = writeln!(out, "  \"parts_bytes\": {{{}}}", parts.join(", "));
    out.push_str("}\n");
    out
}

fn run(args: &Args) -> Result<(), BenchError> {
    let image = Image::built();
    std::fs::create_dir_all(&args.out).map_err(|source| BenchError::Write {
        path: args.out.clone(),
        source,
    })?;
    let initrd = floor_initrd(&args.out)?;
    let accel = accelerator(&image).to_owned();
    let mut results = Results {
        accel,
        ours: Vec::new(),
        guest: Vec::new(),
        floor: Vec::new(),
        boots: Vec::new(),
        iso_boots: Vec::new(),
        memory: (None, Vec::new()),
        parts: parts(&image_dir()),
        largest: largest_files(&image_dir(), 12),
    };
    for run in 1..=args.runs {
        progress(&format!("bench: run {run}/{}: booting ours", args.runs));
        let boot = boot_ours(&image, BootFrom::Kernel)?;
        progress(&format!(
            "bench: run {run}/{}: ours {:.2} s; booting the floor",
            args.runs, boot.to_ready
        ));
        let floor = boot_floor(&initrd)?;
        progress(&format!(
            "bench: run {run}/{}: ours {:.2} s, floor {floor:.2} s",
            args.runs, boot.to_ready
        ));
        results.ours.push(boot.to_ready);
        results.guest.push(boot.guest_ready);
        results.floor.push(floor);
        results.boots.push(boot);
    }
    progress("bench: booting the ISO for memory");
    let started = std::time::Instant::now();
    results.iso_boots.push(boot_ours(&image, BootFrom::Iso)?);
    let iso_boot = started.elapsed().as_secs_f64();
    // Written now and again after the memory search, which is long.
    write_results(args, &results)?;
    if args.memory_search {
        // Slower than a normal boot counts as not ready: swapless
        // thrashing is not a machine anyone wants.
        let timeout = Duration::from_secs_f64((iso_boot * 3.0).max(90.0));
        results.memory = smallest_memory(&image, timeout);
    }
    let md = write_results(args, &results)?;
    progress(&format!(
        "bench: ours {:.2} s, floor {:.2} s: {:.2}× the floor; wrote {}",
        median(&results.ours),
        median(&results.floor),
        median(&results.ours) / median(&results.floor),
        args.out.join("bench.md").display()
    ));
    eprintln!();
    print!("{md}");
    Ok(())
}

/// Writes bench.md, bench.json and the SVG; returns the Markdown.
fn write_results(args: &Args, results: &Results) -> Result<String, BenchError> {
    let md = markdown(results);
    let md_path = args.out.join("bench.md");
    let json_path = args.out.join("bench.json");
    write_file(&md_path, &md)?;
    write_file(&json_path, json(results))?;
    // The timeline of the boot closest to the median, to look at.
    let typical = median(&results.ours);
    if let Some(boot) = results.boots.iter().min_by(|a, b| {
        (a.to_ready - typical)
            .abs()
            .total_cmp(&(b.to_ready - typical).abs())
    }) {
        let svg_path = args.out.join("boot-timeline.svg");
        write_file(&svg_path, &boot.svg)?;
    }
    Ok(md)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nbench: {}", tail(&error.to_string(), 60));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Args, ArgsError> {
        parse_args(words.iter().map(|w| (*w).to_owned()))
    }

    #[test]
    fn options_are_read_and_bad_ones_named() {
        let args = parse(&["--runs", "3", "--out", "/tmp/b", "--no-memory-search"]).unwrap();
        assert_eq!(args.runs, 3);
        assert_eq!(args.out, PathBuf::from("/tmp/b"));
        assert!(!args.memory_search);
        assert_eq!(parse(&["--runs", "0"]).unwrap_err(), ArgsError::Runs);
        assert_eq!(parse(&["--out"]).unwrap_err(), ArgsError::Out);
        assert_eq!(parse(&["--help"]).unwrap_err(), ArgsError::Usage);
        let unknown = parse(&["--fast"]).unwrap_err();
        assert_eq!(unknown, ArgsError::Unknown("--fast".into()));
        assert_eq!(
            unknown.to_string(),
            "unknown argument \"--fast\" (see --help)"
        );
    }

    #[test]
    fn a_failed_write_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/bench.md");
        let error = write_file(&path, "x").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: ", path.display())),
            "{error}"
        );
    }

    #[test]
    fn the_analyze_table_reads_back() {
        let text = "    START   DURATION  KIND     WHAT
   0.000s     1.320s  phase    kernel
   1.320s                      init started
   5.000s     0.600s  service  udev (created +0.300s, started +0.500s)
   5.600s    running  service  console
ready 8.200s after the kernel started
";
        let rows = parse_analyze(text);
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(
            rows[2],
            Row {
                start: 5.0,
                duration: Some(0.6),
                kind: "service".into(),
                name: "udev".into()
            }
        );
        assert_eq!((rows[1].kind.as_str(), rows[1].duration), ("mark", None));
        assert_eq!(rows[3].duration, None);
    }

    #[test]
    fn a_cpio_entry_is_newc_and_padded() {
        let mut out = Vec::new();
        cpio_entry(&mut out, "init", 0o100_755, b"abc");
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        // 110 header + "init\0" padded to 116, then 3 bytes padded to 4.
        assert_eq!(out.len(), 120);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-9);
    }
}
