//! `ros ps`: what a container is doing, in Docker's words, and the
//! table.

use std::time::{Duration, SystemTime};

use system_services::runtime::TaskStatus;

use crate::flags::PortMapping;
use crate::record::{Record, Task};

/// A span of time as Docker words it: `Less than a second`, `5 seconds`,
/// `About a minute`, `3 minutes`, `About an hour`, `5 hours`, `2 days`,
/// `3 weeks`, `4 months`, `2 years`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    // Hours are rounded half up, as Docker does (in whole seconds: the
    // fraction cannot move a rounding at a half hour).
    let hours = seconds.saturating_add(1800) / 3600;
    match () {
        () if seconds < 1 => "Less than a second".into(),
        () if seconds == 1 => "1 second".into(),
        () if seconds < 60 => format!("{seconds} seconds"),
        () if minutes == 1 => "About a minute".into(),
        () if minutes < 60 => format!("{minutes} minutes"),
        () if hours == 1 => "About an hour".into(),
        () if hours < 48 => format!("{hours} hours"),
        () if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        () if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        () if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        () => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

fn since(time: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(time).unwrap_or_default()
}

/// What a container is doing, from its record and task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never started, or its last exit is not known.
    Created,
    Running {
        since: Option<SystemTime>,
    },
    Paused,
    Exited {
        code: u32,
        at: Option<SystemTime>,
    },
}

impl State {
    pub fn of(record: &Record, task: Option<&Task>) -> Self {
        match task.map(|t| (t.status, t.exited_at)) {
            Some((TaskStatus::Running, _)) => Self::Running {
                since: record.started(),
            },
            Some((TaskStatus::Paused, _)) => Self::Paused,
            Some((TaskStatus::Stopped { exit_code }, at)) => Self::Exited {
                code: exit_code,
                at,
            },
            Some((TaskStatus::Created | TaskStatus::Unknown, _)) | None => {
                match record.last_exit() {
                    Some((code, at)) => Self::Exited { code, at },
                    None => Self::Created,
                }
            }
        }
    }

    pub fn is_running(self) -> bool {
        matches!(self, Self::Running { .. } | Self::Paused)
    }

    /// `ps`'s STATUS: `Up 3 minutes`, `Exited (0) 5 seconds ago`, `Created`.
    pub fn text(self, now: SystemTime) -> String {
        match self {
            Self::Created => "Created".into(),
            Self::Running { since: Some(t) } => format!("Up {}", human_duration(since(t, now))),
            Self::Running { since: None } => "Up".into(),
            Self::Paused => "Up (Paused)".into(),
            Self::Exited { code, at: Some(t) } => {
                format!("Exited ({code}) {} ago", human_duration(since(t, now)))
            }
            Self::Exited { code, at: None } => format!("Exited ({code})"),
        }
    }
}

/// One row of `ps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub created: Option<SystemTime>,
    pub state: State,
    pub ports: Vec<PortMapping>,
}

impl Row {
    pub fn of(record: &Record, task: Option<&Task>) -> Self {
        Self {
            name: record.name.clone(),
            image: record.image_name().to_string(),
            command: record.command(),
            created: record.created(),
            state: State::of(record, task),
            ports: record.ports(),
        }
    }
}

/// The command quoted and cut to 20 characters, as Docker shows it.
fn command_text(argv: &[String]) -> String {
    let joined = argv.join(" ");
    let cut: String = if joined.chars().count() > 20 {
        let mut head: String = joined.chars().take(19).collect();
        head.push('…');
        head
    } else {
        joined
    };
    format!("\"{cut}\"")
}

fn ports_text(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| format!("0.0.0.0:{}->{}/{}", p.host, p.container, p.proto))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `ps` table: NAME, IMAGE, COMMAND, CREATED, STATUS, PORTS.
pub fn table(rows: &[Row], now: SystemTime) -> String {
    let header = ["NAME", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"];
    let mut cells: Vec<[String; 6]> = vec![header.map(String::from)];
    for row in rows {
        cells.push([
            row.name.clone(),
            row.image.clone(),
            command_text(&row.command),
            row.created
                .map(|t| format!("{} ago", human_duration(since(t, now))))
                .unwrap_or_default(),
            row.state.text(now),
            ports_text(&row.ports),
        ]);
    }
    let mut widths = [0usize; 6];
    for line in &cells {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &cells {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < line.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::record::labels;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn durations_read_as_dockers() {
        let cases = [
            (Duration::from_millis(300), "Less than a second"),
            (S(1), "1 second"),
            (S(59), "59 seconds"),
            (S(60), "About a minute"),
            (S(119), "About a minute"),
            (S(180), "3 minutes"),
            (S(3599), "59 minutes"),
            (S(3600), "About an hour"),
            (S(5399), "About an hour"),
            (Duration::from_millis(5_399_999), "About an hour"),
            (S(5400), "2 hours"),
            (S(5 * 3600), "5 hours"),
            (S(47 * 3600), "47 hours"),
            (S(3 * 86400), "3 days"),
            (S(15 * 86400), "2 weeks"),
            (S(90 * 86400), "3 months"),
            (S(800 * 86400), "2 years"),
        ];
        for (d, text) in cases {
            assert_eq!(human_duration(d), text, "{d:?}");
        }
    }

    fn record(extra: &[(&str, &str)]) -> Record {
        let mut map: HashMap<String, String> =
            [(labels::STARTED, "1000"), (labels::CREATED, "900")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        for (k, v) in extra {
            map.insert(k.to_string(), v.to_string());
        }
        Record {
            name: "web".into(),
            image: "docker.io/library/busybox:latest".into(),
            labels: map,
            spec: serde_json::json!({"process": {"args": ["sh", "-c", "while true; do sleep 1; done"]}}),
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + S(secs)
    }

    #[test]
    fn status_text_follows_the_task_then_the_recorded_exit() {
        let now = at(1180);
        let running = Task {
            pid: 5,
            status: TaskStatus::Running,
            exited_at: None,
        };
        assert_eq!(
            State::of(&record(&[]), Some(&running)).text(now),
            "Up 3 minutes"
        );
        let stopped = Task {
            pid: 5,
            status: TaskStatus::Stopped { exit_code: 0 },
            exited_at: Some(at(1175)),
        };
        assert_eq!(
            State::of(&record(&[]), Some(&stopped)).text(now),
            "Exited (0) 5 seconds ago"
        );
        let exited = record(&[(labels::EXIT_CODE, "137"), (labels::FINISHED, "1120")]);
        assert_eq!(
            State::of(&exited, None).text(now),
            "Exited (137) About a minute ago"
        );
        assert_eq!(State::of(&record(&[]), None).text(now), "Created");
        assert!(!State::of(&exited, None).is_running());
    }

    #[test]
    fn the_table_lines_up_and_cuts_long_commands() {
        let now = at(1180);
        let rows = vec![
            Row {
                ports: vec![crate::flags::parse_port("8080:80").unwrap()],
                ..Row::of(
                    &record(&[]),
                    Some(&Task {
                        pid: 5,
                        status: TaskStatus::Running,
                        exited_at: None,
                    }),
                )
            },
            Row {
                name: "a-much-longer-name".into(),
                ..Row::of(&record(&[]), None)
            },
        ];
        let text = table(&rows, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let column = |line: &str, word: &str| line[..line.find(word).unwrap()].chars().count();
        assert_eq!(column(lines[0], "IMAGE"), column(lines[1], "docker.io"));
        assert_eq!(column(lines[0], "STATUS"), column(lines[1], "Up 3 minutes"));
        assert!(
            lines[1].contains("\"sh -c while true; d…\""),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("0.0.0.0:8080->80/tcp"));
        assert!(lines[2].contains("4 minutes ago"));
        assert!(lines[2].ends_with("Created"));
    }
}
