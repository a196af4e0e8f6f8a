//! What a pull reports while it runs, as typed events for a callback: the
//! CLI prints them as lines, PID 1 logs them.

use std::fmt;
use std::time::Duration;

/// One step of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// Asking the registry what the reference names.
    Resolving { reference: String },
    /// The image manifest for this machine is known.
    Resolved {
        /// The digest the image record points at (index or manifest).
        digest: String,
        layers: usize,
        /// The compressed size of all layers.
        bytes: u64,
    },
    /// A layer's download (`index` counts from 1).
    Layer {
        index: usize,
        count: usize,
        digest: String,
        done: u64,
        total: u64,
        status: LayerStatus,
    },
    /// A layer is being applied to its snapshot (`index` counts from 1).
    Unpacking {
        index: usize,
        count: usize,
        digest: String,
    },
    /// The image is stored and unpacked.
    Done {
        reference: String,
        digest: String,
        /// Bytes fetched from the registry by this pull.
        downloaded: u64,
        elapsed: Duration,
    },
}

/// Where one layer's download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerStatus {
    /// The content store has it already: nothing fetched.
    Present,
    /// Bytes are arriving (`done` includes any resumed part).
    Downloading,
    /// All bytes are in the content store and their digest checked.
    Complete,
}

/// One line per event: what `ros service pull` prints and what a
/// service's log shows while its image is pulled.
impl fmt::Display for PullEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = match self {
            PullEvent::Resolving { reference } => format!("resolving {reference}"),
            PullEvent::Resolved {
                digest,
                layers,
                bytes,
            } => format!(
                "manifest {} {layers} layer{} {}",
                short(digest),
                if *layers == 1 { "" } else { "s" },
                size(*bytes)
            ),
            PullEvent::Layer {
                index,
                count,
                digest,
                done,
                total,
                status,
            } => {
                let head = format!("layer {index}/{count} {}", short(digest));
                match status {
                    LayerStatus::Present => format!("{head} already present"),
                    LayerStatus::Downloading => format!("{head} {}", fraction(*done, *total)),
                    LayerStatus::Complete => format!("{head} {} done", fraction(*done, *total)),
                }
            }
            PullEvent::Unpacking {
                index,
                count,
                digest,
            } => format!("unpacking layer {index}/{count} {}", short(digest)),
            PullEvent::Done {
                reference,
                digest,
                downloaded,
                elapsed,
            } => format!(
                "pulled {reference} {} {} in {:.1}s",
                short(digest),
                size(*downloaded),
                elapsed.as_secs_f64()
            ),
        };
        f.write_str(&line)
    }
}

/// `sha256:` and the first 12 hex digits.
fn short(digest: &str) -> String {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("", digest));
    match hex.get(..12) {
        Some(head) if head.len() < hex.len() => format!("{algorithm}:{head}…"),
        _ => digest.to_string(),
    }
}

/// Decimal units, one decimal place: `3.4 MB`, `812.0 kB`.
pub fn size(bytes: u64) -> String {
    let (value, unit) = unit_of(bytes);
    format!("{:.1} {unit}", bytes as f64 / value)
}

/// `1.2/3.4 MB`: both in the total's unit.
fn fraction(done: u64, total: u64) -> String {
    let (value, unit) = unit_of(total);
    format!(
        "{:.1}/{:.1} {unit}",
        done as f64 / value,
        total as f64 / value
    )
}

fn unit_of(bytes: u64) -> (f64, &'static str) {
    match bytes {
        0..1_000_000 => (1e3, "kB"),
        1_000_000..1_000_000_000 => (1e6, "MB"),
        _ => (1e9, "GB"),
    }
}

/// Report progress at most once per this many bytes, so a large layer
/// makes a few dozen lines, not one per network read.
pub const REPORT_EVERY: u64 = 1 << 20;

/// Counts one blob's bytes: what was already in containerd's ingest from
/// an earlier, interrupted pull, and what this pull fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    total: u64,
    resumed: u64,
    fetched: u64,
    reported: u64,
}

impl Transfer {
    /// A transfer of `total` bytes of which `resumed` are already stored.
    pub fn new(total: u64, resumed: u64) -> Self {
        Self {
            total,
            resumed,
            fetched: 0,
            reported: resumed,
        }
    }

    /// Bytes stored so far, resumed ones included.
    pub fn done(&self) -> u64 {
        self.resumed + self.fetched
    }

    /// Bytes this pull fetched from the registry.
    #[cfg(test)]
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// The registry sent the whole blob instead of the resumed range:
    /// the ingest starts over.
    pub fn restart(&mut self) {
        self.resumed = 0;
        self.fetched = 0;
        self.reported = 0;
    }

    /// Counts `n` more bytes; true when that is worth reporting (a step
    /// of [`REPORT_EVERY`] passed, or the end was reached).
    pub fn advance(&mut self, n: u64) -> bool {
        self.fetched += n;
        let done = self.done();
        let report =
            done >= self.reported + REPORT_EVERY || (done >= self.total && done > self.reported);
        if report {
            self.reported = done;
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_pick_the_totals_unit() {
        assert_eq!(fraction(0, 999_999), "0.0/1000.0 kB");
        assert_eq!(fraction(500_000_000, 2_000_000_000), "0.5/2.0 GB");
        assert_eq!(short("sha256:abc"), "sha256:abc");
    }

    #[test]
    fn reports_once_per_step_and_at_the_end() {
        let total = 3 * REPORT_EVERY + REPORT_EVERY / 2;
        let mut transfer = Transfer::new(total, 0);
        let chunk = 64 * 1024;
        let mut reports = Vec::new();
        let mut sent = 0;
        while sent < total {
            let n = chunk.min(total - sent);
            sent += n;
            if transfer.advance(n) {
                reports.push(transfer.done());
            }
        }
        assert_eq!(
            reports,
            [REPORT_EVERY, 2 * REPORT_EVERY, 3 * REPORT_EVERY, total]
        );
        assert_eq!(transfer.fetched(), total);
    }

    #[test]
    fn resumed_bytes_count_as_done_but_not_as_fetched() {
        let mut transfer = Transfer::new(1000, 600);
        assert_eq!(transfer.done(), 600);
        assert!(!transfer.advance(100));
        assert!(transfer.advance(300), "the end is always reported");
        assert_eq!(transfer.done(), 1000);
        assert_eq!(transfer.fetched(), 400);
        assert!(!transfer.advance(0), "the end is reported once");
    }

    #[test]
    fn a_full_response_to_a_range_request_starts_over() {
        let mut transfer = Transfer::new(1000, 600);
        transfer.restart();
        assert_eq!(transfer.done(), 0);
        assert!(transfer.advance(1000));
        assert_eq!(transfer.fetched(), 1000);
    }
}
