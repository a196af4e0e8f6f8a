//! Logging for PID 1 goes to the kernel log: /dev/kmsg stamps and orders it
//! with the kernel's own messages, `dmesg` shows it, and the console shows
//! it (unless booted `quiet`) up to `ros: ready`, then its warnings and
//! errors only (see `boot::sequence::announce_ready`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Writes each event as one kmsg record with its syslog priority.
#[derive(Debug, Clone)]
struct Kmsg {
    file: Arc<File>,
}

struct KmsgRecord<'a> {
    file: &'a File,
    priority: u8,
    line: Vec<u8>,
}

impl Write for KmsgRecord<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The kernel refuses (EINVAL) a /dev/kmsg write past 1024 bytes, so a
/// long event would vanish whole: each line goes as its own record, cut
/// into pieces of at most this many bytes.
const KMSG_PIECE: usize = 900;

impl Drop for KmsgRecord<'_> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        for line in text.trim_end().lines() {
            for piece in pieces(line, KMSG_PIECE) {
                let record = format!("<{}>ros: {piece}\n", self.priority);
                // One write() per record; a full log is not worth failing over.
                let _ = (&*self.file).write(record.as_bytes());
            }
        }
    }
}

/// `line` in pieces of at most `max` bytes, cut at character boundaries.
fn pieces(line: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = line;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, after) = rest.split_at(cut);
        pieces.push(piece);
        rest = after;
    }
    pieces.push(rest);
    pieces
}

/// The syslog priority of a tracing level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl<'a> MakeWriter<'a> for Kmsg {
    type Writer = KmsgRecord<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        KmsgRecord {
            file: &self.file,
            priority: 6,
            line: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        KmsgRecord {
            file: &self.file,
            priority: priority(meta.level()),
            line: Vec::new(),
        }
    }
}

/// PID 1: log to /dev/kmsg, info and up (debug with `rancher.debug`).
pub fn init_kmsg(debug: bool) -> io::Result<()> {
    // The kernel drops all but 10 lines per 5 s written to /dev/kmsg by
    // default; PID 1's log would lose what services say at boot.
    let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    let file = OpenOptions::new().write(true).open("/dev/kmsg")?;
    let level = if debug { Level::DEBUG } else { Level::INFO };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(Kmsg {
            file: Arc::new(file),
        })
        .with_max_level(level)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_level(false)
        .finish()
        .with(our_crates_at(level));
    subscriber.init();
    Ok(())
}

/// `rancher.debug` is for our own code: the dependencies (h2, hyper,
/// tonic, netlink) stay at info, or their per-frame debug lines would fill
/// the kernel's small ring buffer within seconds of boot.
fn our_crates_at(level: Level) -> Targets {
    const OURS: [&str; 5] = [
        "ros",
        "os_config",
        "system_services",
        "workloads",
        "container_net",
    ];
    OURS.iter()
        .fold(Targets::new().with_default(Level::INFO), |targets, name| {
            targets.with_target(*name, level)
        })
}

/// The command line: warnings and errors to stderr.
pub fn init_stderr() {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(Level::WARN)
        .without_time()
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_logging_is_for_our_crates_and_dependencies_stay_at_info() {
        let targets = our_crates_at(Level::DEBUG);
        assert!(targets.would_enable("ros::boot::sequence", &Level::DEBUG));
        assert!(targets.would_enable("os_config::layers", &Level::DEBUG));
        assert!(!targets.would_enable("h2::codec::framed_read", &Level::DEBUG));
        assert!(!targets.would_enable("tonic::transport", &Level::DEBUG));
        assert!(targets.would_enable("h2::proto", &Level::INFO));
        assert!(!our_crates_at(Level::INFO).would_enable("ros::boot", &Level::DEBUG));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }

    #[test]
    fn a_record_is_written_once_with_its_priority() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        let file = File::create(&path).unwrap();
        {
            let mut record = KmsgRecord {
                file: &file,
                priority: 4,
                line: Vec::new(),
            };
            write!(record, "containerd died; ").unwrap();
            writeln!(record, "restarting").unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "<4>ros: containerd died; restarting\n"
        );
    }

    #[test]
    fn a_long_event_goes_line_by_line_in_pieces_the_kernel_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        let file = File::create(&path).unwrap();
        let long = "é".repeat(1000);
        {
            let mut record = KmsgRecord {
                file: &file,
                priority: 7,
                line: Vec::new(),
            };
            write!(
                record,
                "configuration:\nrancher:\n  password: <redacted>\n{long}"
            )
            .unwrap();
        }
        let written = std::fs::read_to_string(&path).unwrap();
        let records: Vec<&str> = written.lines().collect();
        assert_eq!(
            records[..3],
            [
                "<7>ros: configuration:",
                "<7>ros: rancher:",
                "<7>ros:   password: <redacted>"
            ]
        );
        assert_eq!(
            records.len(),
            6,
            "2000 bytes of é in pieces of at most 900: {records:?}"
        );
        assert!(records.iter().all(|r| r.len() < 1024));
        assert_eq!(
            records[3..]
                .iter()
                .map(|r| r.trim_start_matches("<7>ros: "))
                .collect::<String>(),
            long
        );
    }
}
