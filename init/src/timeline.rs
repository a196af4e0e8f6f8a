//! The boot timeline: PID 1 records when each phase of the boot and each
//! service's start happened, `ros analyze` shows them.
//!
//! Times are CLOCK_BOOTTIME, which starts at zero when the kernel starts
//! (and, unlike CLOCK_MONOTONIC, keeps counting through a suspend; at
//! boot the two are the same). PID 1 calls [`start`] first thing, then
//! [`step`], [`begin`]/[`end`], [`mark`] and [`service`] as the boot goes
//! on; each call rewrites [`FILE`] (a few hundred bytes on a tmpfs,
//! written to a temporary name and renamed, so a reader never sees half
//! of it). The console container sees `/run`, so `ros analyze` there
//! reads the same file. Without [`start`] (the CLI, tests) the calls do
//! nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where PID 1 keeps the timeline of this boot.
pub const FILE: &str = "/run/ros/boot-timeline.json";
/// The clock the times are read from.
pub const CLOCK: &str = "CLOCK_BOOTTIME";

/// What an entry of the timeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A part of the boot sequence, or something running beside it
    /// (containerd starting, DHCP).
    Phase,
    /// A system service's start, from its dependencies settled to itself settled.
    Service,
    /// An instant: init started, ready.
    Mark,
}

/// One phase, service or instant; times in microseconds since the kernel started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub start_us: u64,
    /// None while it runs.
    pub end_us: Option<u64>,
    /// A service's steps between start and end: `created`, `started`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, u64>,
}

impl Entry {
    /// How long it took; None while it runs.
    pub fn duration_us(&self) -> Option<u64> {
        self.end_us.map(|end| end.saturating_sub(self.start_us))
    }
}

/// Everything recorded in one boot, in the order it was recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub clock: String,
    pub entries: Vec<Entry>,
}

/// Why the timeline cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("reading the boot timeline {path}: {source} (is this machine booted by ros?)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the boot timeline {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Timeline {
    /// Reads the timeline PID 1 wrote at `path`.
    pub fn read(path: &Path) -> Result<Self, TimelineError> {
        let text = std::fs::read(path).map_err(|source| TimelineError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| TimelineError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The entry named `name` of `kind`, if recorded.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|entry| entry.kind == kind && entry.name == name)
    }

    /// When the machine was ready, if it was.
    pub fn ready_us(&self) -> Option<u64> {
        self.get(Kind::Mark, READY).map(|entry| entry.start_us)
    }
}

/// The mark `ros: ready` sets.
pub const READY: &str = "ready";

/// Records a timeline as the boot goes: [`Recorder::now`] comes from the
/// clock it was given, so tests use a fake one.
#[derive(Debug)]
pub struct Recorder {
    clock: fn() -> Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    timeline: Timeline,
    /// Where the sequential steps have got to.
    last_step_us: u64,
    file: Option<PathBuf>,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    /// A recorder reading `clock`; its first sequential step starts at 0
    /// (the kernel's start).
    pub fn new(clock: fn() -> Duration) -> Self {
        Self {
            clock,
            state: Mutex::new(State {
                timeline: Timeline {
                    clock: CLOCK.to_owned(),
                    entries: Vec::new(),
                },
                ..State::default()
            }),
        }
    }

    fn now(&self) -> u64 {
        micros((self.clock)())
    }

    fn with<T>(&self, change: impl FnOnce(&mut State, u64) -> T) -> T {
        let now = self.now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let result = change(&mut state, now);
        if let Some(file) = &state.file
            && let Err(error) = write(file, &state.timeline)
        {
            tracing::debug!(file = %file.display(), %error, "cannot write the boot timeline");
        }
        result
    }

    /// From now on, every change rewrites `file` (and it is written now
    /// with what was recorded so far): once `/run` is there.
    pub fn write_to(&self, file: &Path) {
        self.with(|state, _| state.file = Some(file.to_owned()));
    }

    /// A step of the boot sequence done now: it began where the previous
    /// one ended.
    pub fn step(&self, name: &str) {
        self.with(|state, now| {
            let start = state.last_step_us.min(now);
            state.last_step_us = now;
            state.timeline.entries.push(Entry {
                name: name.to_owned(),
                kind: Kind::Phase,
                start_us: start,
                end_us: Some(now),
                steps: BTreeMap::new(),
            });
        });
    }

    /// Something beside the boot sequence begins now (containerd, DHCP).
    pub fn begin(&self, name: &str) {
        self.with(|state, now| {
            if state.timeline.get(Kind::Phase, name).is_none() {
                state.timeline.entries.push(Entry {
                    name: name.to_owned(),
                    kind: Kind::Phase,
                    start_us: now,
                    end_us: None,
                    steps: BTreeMap::new(),
                });
            }
        });
    }

    /// What [`Recorder::begin`] began ends now (the first time only).
    pub fn end(&self, name: &str) {
        self.with(|state, now| {
            if let Some(entry) = (state.timeline.entries.iter_mut())
                .find(|e| e.kind == Kind::Phase && e.name == name && e.end_us.is_none())
            {
                entry.end_us = Some(now);
            }
        });
    }

    /// An instant (the first time only).
    pub fn mark(&self, name: &str) {
        self.with(|state, now| {
            if state.timeline.get(Kind::Mark, name).is_none() {
                state.timeline.entries.push(Entry {
                    name: name.to_owned(),
                    kind: Kind::Mark,
                    start_us: now,
                    end_us: Some(now),
                    steps: BTreeMap::new(),
                });
            }
        });
    }

    /// A step of a service's first start: `begun` opens its entry,
    /// `settled` closes it, the others are noted in between. Later
    /// restarts change nothing: this is the boot's timeline.
    pub fn service(&self, name: &str, step: &str) {
        self.with(|state, now| {
            let entries = &mut state.timeline.entries;
            let found = entries
                .iter_mut()
                .find(|e| e.kind == Kind::Service && e.name == name);
            match (found, step) {
                (None, _) => entries.push(Entry {
                    name: name.to_owned(),
                    kind: Kind::Service,
                    start_us: now,
                    end_us: (step == SETTLED).then_some(now),
                    steps: BTreeMap::new(),
                }),
                (Some(entry), _) if entry.end_us.is_some() => {}
                (Some(entry), SETTLED) => entry.end_us = Some(now),
                (Some(_), BEGUN) => {}
                (Some(entry), other) => {
                    entry.steps.entry(other.to_owned()).or_insert(now);
                }
            }
        });
    }

    /// What was recorded so far.
    pub fn timeline(&self) -> Timeline {
        self.with(|state, _| state.timeline.clone())
    }
}

const BEGUN: &str = "begun";
const SETTLED: &str = "settled";

/// Writes `timeline` to `file` through a temporary name.
fn write(file: &Path, timeline: &Timeline) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = file.with_extension("json.new");
    let json = serde_json::to_vec(timeline).map_err(std::io::Error::other)?;
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, file)
}

/// Time since the kernel started.
pub fn since_boot() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| {
            Duration::new(
                u64::try_from(t.tv_sec()).unwrap_or(0),
                u32::try_from(t.tv_nsec()).unwrap_or(0),
            )
        })
        .unwrap_or_default()
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

/// PID 1's recorder, started: the kernel's part is recorded as the first
/// step, and `init started` as a mark.
pub fn start() {
    let recorder = RECORDER.get_or_init(|| Recorder::new(since_boot));
    recorder.step("kernel");
    recorder.mark("init started");
}

fn recorder() -> Option<&'static Recorder> {
    RECORDER.get()
}

/// See [`Recorder::write_to`].
pub fn write_to(file: &Path) {
    if let Some(recorder) = recorder() {
        recorder.write_to(file);
    }
}

/// See [`Recorder::step`].
pub fn step(name: &str) {
    if let Some(recorder) = recorder() {
        recorder.step(name);
    }
}

/// See [`Recorder::begin`].
pub fn begin(name: &str) {
    if let Some(recorder) = recorder() {
        recorder.begin(name);
    }
}

/// See [`Recorder::end`].
pub fn end(name: &str) {
    if let Some(recorder) = recorder() {
        recorder.end(name);
    }
}

/// See [`Recorder::mark`].
pub fn mark(name: &str) {
    if let Some(recorder) = recorder() {
        recorder.mark(name);
    }
}

/// See [`Recorder::service`].
pub fn service(name: &str, step: &str) {
    if let Some(recorder) = recorder() {
        recorder.service(name, step);
    }
}

/// An [`system_services::supervisor::Observer`] recording into PID 1's timeline.
pub fn service_observer() -> system_services::supervisor::Observer {
    std::sync::Arc::new(|name, milestone| service(name.as_str(), milestone.word()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    static NOW_MS: AtomicU64 = AtomicU64::new(0);

    fn fake_clock() -> Duration {
        Duration::from_millis(NOW_MS.load(Ordering::SeqCst))
    }

    fn at(ms: u64) {
        NOW_MS.store(ms, Ordering::SeqCst);
    }

    #[test]
    fn steps_follow_each_other_and_services_keep_their_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run/ros/boot-timeline.json");
        let recorder = Recorder::new(fake_clock);
        at(1300);
        recorder.step("kernel");
        recorder.mark("init started");
        // Nothing written before write_to: /run is not there yet.
        assert!(!file.exists());
        at(1500);
        recorder.step("root switched");
        recorder.write_to(&file);
        recorder.begin("containerd");
        at(2000);
        recorder.service("udev", "begun");
        at(2100);
        recorder.service("udev", "created");
        at(2300);
        recorder.service("udev", "started");
        recorder.service("udev", "settled");
        recorder.end("containerd");
        at(2600);
        // A restart later is not the boot's start.
        recorder.service("udev", "begun");
        recorder.service("udev", "settled");
        recorder.end("containerd");
        recorder.mark(READY);

        let written = Timeline::read(&file).unwrap();
        assert_eq!(written, recorder.timeline());
        assert_eq!(written.clock, "CLOCK_BOOTTIME");
        let kernel = written.get(Kind::Phase, "kernel").unwrap();
        assert_eq!((kernel.start_us, kernel.end_us), (0, Some(1_300_000)));
        let switched = written.get(Kind::Phase, "root switched").unwrap();
        assert_eq!(switched.duration_us(), Some(200_000));
        let containerd = written.get(Kind::Phase, "containerd").unwrap();
        assert_eq!(
            (containerd.start_us, containerd.end_us),
            (1_500_000, Some(2_300_000))
        );
        let udev = written.get(Kind::Service, "udev").unwrap();
        assert_eq!((udev.start_us, udev.end_us), (2_000_000, Some(2_300_000)));
        assert_eq!(udev.steps["created"], 2_100_000);
        assert_eq!(udev.steps["started"], 2_300_000);
        assert_eq!(written.ready_us(), Some(2_600_000));
        assert!(!dir.path().join("run/ros/boot-timeline.json.new").exists());
    }

    #[test]
    fn a_missing_or_broken_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("boot-timeline.json");
        let missing = Timeline::read(&file).unwrap_err();
        assert!(missing.to_string().contains("boot-timeline.json"));
        assert!(matches!(missing, TimelineError::Read { .. }));
        std::fs::write(&file, "{").unwrap();
        assert!(matches!(
            Timeline::read(&file),
            Err(TimelineError::Parse { .. })
        ));
    }
}
