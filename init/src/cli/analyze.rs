//! `ros analyze`: the boot's timeline as PID 1 recorded it (see
//! [`crate::timeline`]) — a table like `systemd-analyze blame`, or with
//! `--svg FILE` a drawing like `systemd-analyze plot`: a bar per phase and
//! per service on a time axis, written by hand as plain SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::timeline::{self, Entry, Kind, Timeline};

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Draw the timeline as SVG into FILE (`-` or /dev/stdout: standard output).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Longest first, as `systemd-analyze blame` (default: in the order things began).
    #[arg(long)]
    blame: bool,
    /// Print the timeline as recorded (JSON).
    #[arg(long, conflicts_with = "svg")]
    json: bool,
    /// Read another recorded timeline.
    #[arg(long, value_name = "FILE", default_value = timeline::FILE)]
    file: PathBuf,
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let recorded = Timeline::read(&args.file)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&recorded)?);
    } else if let Some(file) = &args.svg {
        let drawing = svg(&recorded);
        if file == Path::new("-") {
            print!("{drawing}");
        } else {
            std::fs::write(file, drawing).with_context(|| format!("writing {}", file.display()))?;
        }
    } else {
        print!("{}", table(&recorded, args.blame));
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds with milliseconds, from microseconds.
fn seconds(us: u64) -> String {
    format!("{}.{:03}s", us / 1_000_000, (us % 1_000_000) / 1000)
}

/// The entries in the order to show: by start (phases before services
/// before marks at the same instant), or longest first for `blame`.
fn sorted(recorded: &Timeline, blame: bool) -> Vec<&Entry> {
    let mut entries: Vec<&Entry> = recorded.entries.iter().collect();
    if blame {
        entries.sort_by_key(|e| (std::cmp::Reverse(e.duration_us()), e.start_us));
    } else {
        entries.sort_by_key(|e| (e.start_us, e.kind, e.end_us));
    }
    entries
}

/// The table: start, duration, what, and a service's steps relative to its start.
pub fn table(recorded: &Timeline, blame: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>9}  {:>9}  {:<7}  WHAT",
        "START", "DURATION", "KIND"
    );
    for entry in sorted(recorded, blame) {
        let kind = match entry.kind {
            Kind::Phase => "phase",
            Kind::Service => "service",
            Kind::Mark => "",
        };
        let duration = match (entry.kind, entry.duration_us()) {
            (Kind::Mark, _) => String::new(),
            (_, Some(us)) => seconds(us),
            (_, None) => "running".to_owned(),
        };
        let mut what = entry.name.clone();
        let steps: Vec<String> = ["created", "started"]
            .iter()
            .filter_map(|step| {
                let at = entry.steps.get(*step)?;
                Some(format!(
                    "{step} +{}",
                    seconds(at.saturating_sub(entry.start_us))
                ))
            })
            .collect();
        if !steps.is_empty() {
            let _ = write!(what, " ({})", steps.join(", "));
        }
        let _ = writeln!(
            out,
            "{:>9}  {:>9}  {kind:<7}  {what}",
            seconds(entry.start_us),
            duration
        );
    }
    if let Some(ready) = recorded.ready_us() {
        let _ = writeln!(out, "ready {} after the kernel started", seconds(ready));
    }
    out
}

/// Pixels: the labels' column, the bars' width, a row, the axis' band.
const LABEL_WIDTH: u64 = 260;
const BARS_WIDTH: u64 = 900;
const ROW: u64 = 22;
const AXIS: u64 = 30;

/// A tick every this many microseconds: 1, 2 or 5 times a power of ten,
/// so that `total` gets at most 10 ticks.
fn tick_step(total_us: u64) -> u64 {
    let mut step = 1_000;
    loop {
        for factor in [1, 2, 5] {
            if total_us / (step * factor) <= 10 {
                return step * factor;
            }
        }
        step *= 10;
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The timeline drawn: a row per phase and service in the order they
/// began, a vertical line per mark (ready), seconds along the top.
pub fn svg(recorded: &Timeline) -> String {
    let entries = sorted(recorded, false);
    let last = entries
        .iter()
        .map(|e| e.end_us.unwrap_or(e.start_us))
        .max()
        .unwrap_or(0);
    let step = tick_step(last.max(1));
    // Up to the next tick, so the last bar does not touch the edge.
    let total = (last / step + 1) * step;
    let x = |us: u64| LABEL_WIDTH + us.min(total) * BARS_WIDTH / total;
    let rows: Vec<&&Entry> = entries.iter().filter(|e| e.kind != Kind::Mark).collect();
    let height = AXIS + ROW * (rows.len() as u64 + 1);
    let width = LABEL_WIDTH + BARS_WIDTH + 120;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        "<title>Boot timeline ({}, seconds since the kernel started)</title>",
        escape(&recorded.clock)
    );
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    // The axis: a line and a label per tick, a faint guide down the rows.
    let mut tick = 0;
    while tick <= total {
        let at = x(tick);
        let _ = writeln!(
            out,
            r##"<line class="tick" x1="{at}" y1="{}" x2="{at}" y2="{height}" stroke="#dddddd"/>"##,
            AXIS - 6
        );
        let label = if step.is_multiple_of(1_000_000) {
            format!("{}s", tick / 1_000_000)
        } else {
            format!("{:.1}s", tick as f64 / 1e6)
        };
        let _ = writeln!(
            out,
            r#"<text x="{at}" y="{}" text-anchor="middle">{label}</text>"#,
            AXIS - 10
        );
        tick += step;
    }
    for (row, entry) in rows.iter().enumerate() {
        let y = AXIS + ROW * row as u64 + 4;
        let start = x(entry.start_us);
        let end = x(entry.end_us.unwrap_or(last)).max(start + 1);
        let (fill, light) = match entry.kind {
            Kind::Phase => ("#4e79a7", "#a0bcd8"),
            _ => ("#59a14f", "#b5dcae"),
        };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL_WIDTH - 8,
            y + 13,
            escape(&entry.name)
        );
        // A service is light until its task started, full once it runs.
        let solid_from = entry
            .steps
            .get("started")
            .map_or(start, |started| x(*started).min(end));
        if solid_from > start {
            let _ = writeln!(
                out,
                r#"<rect class="bar" x="{start}" y="{y}" width="{}" height="{}" fill="{light}"><title>{} waiting for its root, container and task</title></rect>"#,
                solid_from - start,
                ROW - 6,
                escape(&entry.name)
            );
        }
        let _ = writeln!(
            out,
            r#"<rect class="bar" x="{solid_from}" y="{y}" width="{}" height="{}" fill="{fill}"><title>{}</title></rect>"#,
            (end - solid_from).max(1),
            ROW - 6,
            escape(&entry.name)
        );
        let duration = entry
            .duration_us()
            .map_or_else(|| "running".to_owned(), seconds);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">{duration}</text>"#,
            end + 4,
            y + 13
        );
    }
    for mark in entries.iter().filter(|e| e.kind == Kind::Mark) {
        let at = x(mark.start_us);
        let _ = writeln!(
            out,
            r##"<line class="mark" x1="{at}" y1="{AXIS}" x2="{at}" y2="{height}" stroke="#e15759" stroke-dasharray="4 3"/>"##
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" fill="#e15759">{} {}</text>"##,
            at + 3,
            height - 6,
            escape(&mark.name),
            seconds(mark.start_us)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn entry(name: &str, kind: Kind, start_ms: u64, end_ms: Option<u64>) -> Entry {
        Entry {
            name: name.to_owned(),
            kind,
            start_us: start_ms * 1000,
            end_us: end_ms.map(|ms| ms * 1000),
            steps: BTreeMap::new(),
        }
    }

    /// A boot as PID 1 records one, in the order it records it.
    fn fixed() -> Timeline {
        let mut udev = entry("udev", Kind::Service, 5000, Some(5600));
        udev.steps.insert("created".into(), 5_300_000);
        udev.steps.insert("started".into(), 5_500_000);
        Timeline {
            clock: "CLOCK_BOOTTIME".into(),
            entries: vec![
                entry("kernel", Kind::Phase, 0, Some(1320)),
                entry("init started", Kind::Mark, 1320, Some(1320)),
                entry("state mounted", Kind::Phase, 1320, Some(2370)),
                entry("containerd", Kind::Phase, 2400, Some(4990)),
                entry("containerd answering", Kind::Phase, 2370, Some(4990)),
                udev,
                entry("console <tty>", Kind::Service, 5600, None),
                entry("ready", Kind::Mark, 8200, Some(8200)),
            ],
        }
    }

    #[test]
    fn the_table_lists_everything_by_start_with_the_steps_of_services() {
        assert_eq!(
            table(&fixed(), false),
            "    START   DURATION  KIND     WHAT
   0.000s     1.320s  phase    kernel
   1.320s     1.050s  phase    state mounted
   1.320s                      init started
   2.370s     2.620s  phase    containerd answering
   2.400s     2.590s  phase    containerd
   5.000s     0.600s  service  udev (created +0.300s, started +0.500s)
   5.600s    running  service  console <tty>
   8.200s                      ready
ready 8.200s after the kernel started
"
        );
    }

    #[test]
    fn blame_puts_the_longest_first() {
        let blamed = table(&fixed(), true);
        let names: Vec<&str> = blamed
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(3))
            .collect();
        assert_eq!(
            names[..4],
            ["containerd", "containerd", "kernel", "state"],
            "{blamed}"
        );
    }

    #[test]
    fn the_svg_has_a_bar_per_phase_and_service_ticks_and_marks() {
        let drawing = svg(&fixed());
        assert!(drawing.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(drawing.ends_with("</svg>\n"));
        // 6 rows; udev has a light part before its task started.
        assert_eq!(drawing.matches(r#"class="bar""#).count(), 7);
        // 8.2 s at a tick every second: 0..9 s.
        assert_eq!(drawing.matches(r#"class="tick""#).count(), 10);
        assert!(drawing.contains(">0s</text>") && drawing.contains(">9s</text>"));
        assert_eq!(drawing.matches(r#"class="mark""#).count(), 2);
        assert!(drawing.contains(">ready 8.200s</text>"));
        // Names are escaped; the running console reaches the last time.
        assert!(drawing.contains("console &lt;tty&gt;"));
        assert!(!drawing.contains("<tty>"));
        // The kernel's bar: from the labels' edge, 1.32 s of 9 s of 900 px.
        assert!(
            drawing.contains(r#"<rect class="bar" x="260" y="34" width="132""#),
            "{drawing}"
        );
    }

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(8_200_000), 1_000_000);
        assert_eq!(tick_step(20_000_000), 2_000_000);
        assert_eq!(tick_step(35_000_000), 5_000_000);
        assert_eq!(tick_step(900_000), 100_000);
        assert_eq!(tick_step(1), 1_000);
    }
}
