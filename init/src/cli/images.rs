//! `ros images`, `ros rmi` and `ros load`: the user containerd's images,
//! as `docker images|rmi|load` show and change them. Pulling is
//! `ros pull` ([`super::workload`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::Args;
use system_services::image::{ImageRef, ImageSummary, LoadEvent};
use workloads::Engine;
use workloads::status::human_duration;

use super::pull::size;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only the image IDs.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove also an image a container was made from.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive (`docker save` or an OCI image layout; tar, or tar.gz)
    /// [default: standard input].
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
}

/// `ros images`: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE, as Docker.
pub async fn images(engine: &Engine, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let images = system_services::image::list_images(engine.containerd()).await?;
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for image in &images {
            writeln!(out, "{}", image_id(&image.digest))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = images
        .iter()
        .map(|image| row(image, SystemTime::now()))
        .collect();
    write!(out, "{}", table(&rows))?;
    Ok(ExitCode::SUCCESS)
}

/// The columns of one image.
fn row(image: &ImageSummary, now: SystemTime) -> [String; 5] {
    let (repository, tag) = match image.name.rsplit_once(':') {
        // A colon after the last slash separates the tag, not a port.
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image.name.as_str(), "<none>"),
    };
    let created = image
        .created
        .as_deref()
        .and_then(parse_rfc3339)
        .and_then(|at| now.duration_since(at).ok())
        .map_or_else(
            || "N/A".to_string(),
            |ago| format!("{} ago", human_duration(ago)),
        );
    [
        repository.to_string(),
        tag.to_string(),
        image_id(&image.digest),
        created,
        size(image.size),
    ]
}

fn table(rows: &[[String; 5]]) -> String {
    let header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("   ").trim_end());
        text.push('\n');
    }
    text
}

/// Docker's image ID: 12 hex digits of the digest.
fn image_id(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    hex.get(..12).unwrap_or(hex).to_string()
}

/// `2026-01-01T00:00:00Z` (what image configs carry; fractions and
/// offsets other than `Z` are read too) as a time.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>());
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let time_end = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(time_end);
    let mut clock = clock.split(':');
    let hour: i64 = clock.next()?.parse().ok()?;
    let minute: i64 = clock.next()?.parse().ok()?;
    let second: f64 = clock.next()?.parse().ok()?;
    let offset = match zone.as_bytes().first() {
        None | Some(b'Z') => 0,
        Some(sign) => {
            let (h, m) = zone.get(1..)?.split_once(':')?;
            let minutes = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?;
            if *sign == b'-' {
                -minutes * 60
            } else {
                minutes * 60
            }
        }
    };
    // Days since 1970-01-01 (Howard Hinnant's civil calendar algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 - offset;
    let seconds = u64::try_from(seconds).ok()?;
    Some(
        SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(seconds)
            + std::time::Duration::from_secs_f64(second.max(0.0)),
    )
}

/// `ros rmi IMAGE...`: each removed, or refused with the containers made
/// from it (unless `-f`); every failure named, exit 1 if any.
pub async fn rmi(engine: &Engine, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let records = engine.records().list().await?;
    let mut failed = false;
    for name in &args.images {
        let normalised = ImageRef::parse(name).map_or_else(|_| name.clone(), |r| r.to_string());
        let users: Vec<&str> = records
            .iter()
            .filter(|r| r.image == normalised)
            .map(|r| r.name.as_str())
            .collect();
        if !users.is_empty() && !args.force {
            eprintln!(
                "ros: image {name} is used by container {}: remove it first, or use -f",
                users.join(", ")
            );
            failed = true;
            continue;
        }
        match system_services::image::remove_image(engine.containerd(), name).await {
            Ok(()) => println!("Untagged: {normalised}"),
            Err(error) => {
                eprintln!("ros: {error}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `ros load [-i FILE]`: an archive loaded, `Loaded image: NAME` per
/// image. Standard input is first kept in a file next to the images (an
/// archive is read twice: its small JSON files, then its layers).
pub async fn load(engine: &Engine, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let spooled = match &args.input {
        Some(_) => None,
        None => Some(spool_stdin(&engine.settings().data_dir.join("tmp"))?),
    };
    let path = match (&args.input, &spooled) {
        (Some(path), _) => path.clone(),
        (None, Some(spooled)) => spooled.0.clone(),
        (None, None) => bail!("ros load: no archive"),
    };
    let quiet = args.quiet;
    let mut progress = |event: LoadEvent| {
        if let LoadEvent::Layer {
            index,
            count,
            digest,
            size: bytes,
        } = event
            && !quiet
        {
            println!(
                "layer {index}/{count} {} {}",
                image_id(&digest),
                size(bytes)
            );
        }
    };
    let names = system_services::image::load_archive(engine.containerd(), &path, &mut progress)
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    for name in names {
        println!("Loaded image: {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A file removed when dropped.
struct Spooled(PathBuf);

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Standard input, kept in a file of `dir`.
fn spool_stdin(dir: &std::path::Path) -> anyhow::Result<Spooled> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("ros load: give the archive with -i FILE, or on standard input");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let spooled = Spooled(dir.join(format!("load-{}.tar", std::process::id())));
    let mut file = std::fs::File::create(&spooled.0)
        .with_context(|| format!("creating {}", spooled.0.display()))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file)
        .context("reading the archive from standard input")?;
    Ok(spooled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_times_read_as_the_seconds_they_name() {
        let at = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_secs(1_767_225_600)
        );
        let offset = parse_rfc3339("2026-01-01T02:00:00.5+02:00").unwrap();
        assert_eq!(
            offset.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_767_225_600_500)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn a_row_splits_the_tag_but_not_a_registry_port() {
        let image = ImageSummary {
            name: "10.0.2.2:5000/test/web:1".into(),
            digest: "sha256:0123456789abcdef0123".into(),
            size: 2_100_000,
            created: Some("2026-01-01T00:00:00Z".into()),
        };
        let now = parse_rfc3339("2026-01-01T00:05:00Z").unwrap();
        let [repository, tag, id, created, size] = row(&image, now);
        assert_eq!(repository, "10.0.2.2:5000/test/web");
        assert_eq!(tag, "1");
        assert_eq!(id, "0123456789ab");
        assert_eq!(created, "5 minutes ago");
        assert_eq!(size, "2.1 MB");
        let untagged = ImageSummary {
            name: "10.0.2.2:5000/test/web".into(),
            ..image
        };
        assert_eq!(row(&untagged, now)[1], "<none>");
    }

    #[test]
    fn the_table_lines_columns_up() {
        let text = table(&[[
            "docker.io/library/busybox".into(),
            "latest".into(),
            "0123456789ab".into(),
            "N/A".into(),
            "2.1 MB".into(),
        ]]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("TAG"), lines[1].find("latest"));
    }
}
