//! `ros service pull NAME|REFERENCE`: pulls a registry image into the
//! system containerd, printing a line per step:
//!
//! ```text
//! resolving docker.io/library/busybox:latest
//! manifest sha256:3fbc63216742… 1 layer 2.2 MB
//! layer 1/1 sha256:a46fbb00284b… 1.0/2.2 MB
//! layer 1/1 sha256:a46fbb00284b… 2.2/2.2 MB done
//! unpacking layer 1/1 sha256:a46fbb00284b…
//! pulled docker.io/library/busybox:latest sha256:3fbc63216742… 2.2 MB in 1.4s
//! ```
//!
//! NAME is a service of the configuration whose `image` is a registry
//! reference; anything else is taken as a reference.
//!
//! Credentials, as `docker login` takes them: `--user USER` names the
//! account and the password comes from standard input
//! (`--password-stdin`) or a file (`--password-file`), never from the
//! command line, where `ps` and the shell history show it to anyone. The
//! older `--user USER:PASSWORD` still works, with a warning, so scripts
//! written for it keep pulling while they are changed (Docker keeps
//! `login -p` the same way).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use os_config::{ConfigPaths, Layers};
use system_services::containerd::Containerd;
use system_services::daemon::DaemonConfig;

use crate::services::{NAMESPACE, OCI_RUNTIME};
use system_services::definition::SHIPPED_PREFIX;
use system_services::image::{
    self, Credentials, PullEvent, PullOptions, PulledImage, RegistryOptions,
};

/// `ros service pull …`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// A service whose `image` is a registry reference, or a reference
    /// (`busybox`, `registry.example.com/team/app:1.2`).
    pub image: String,
    /// The registry account; the password comes from --password-stdin or
    /// --password-file (USER:PASSWORD still works, with a warning: the
    /// password is then visible in `ps` and the shell history).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Read the registry password from standard input (one line).
    #[arg(long, requires = "user", conflicts_with = "password_file")]
    pub password_stdin: bool,
    /// Read the registry password from FILE (its first line).
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
    /// A registry (HOST:PORT) reached over plain HTTP; may be repeated.
    #[arg(long, value_name = "HOST:PORT")]
    pub plain_http: Vec<String>,
    /// A CA certificate (PEM) to trust besides the system's; may be repeated.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
    /// The containerd socket [default: the system containerd's].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The containerd namespace.
    #[arg(long, default_value = NAMESPACE)]
    pub namespace: String,
}

/// Runs `ros service pull`.
pub fn run(args: PullArgs, paths: &ConfigPaths) -> anyhow::Result<ExitCode> {
    let reference = resolve_name(&args.image, paths)?;
    let password = if args.password_stdin {
        PasswordSource::Stdin
    } else if let Some(file) = &args.password_file {
        PasswordSource::File(file)
    } else {
        PasswordSource::None
    };
    let credentials = credentials(args.user.as_deref(), password, std::io::stdin().lock())?;
    let ca_certificates = args
        .ca_cert
        .iter()
        .map(|path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    let options = PullOptions {
        registry: RegistryOptions {
            credentials,
            plain_http: args.plain_http,
            ca_certificates,
        },
        platform: None,
    };
    let socket = args.socket.unwrap_or_else(|| DaemonConfig::system().socket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let containerd = Containerd::connect(&socket, &args.namespace, OCI_RUNTIME).await?;
        pull_printing(&containerd, &reference, &options, std::io::stdout()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Where the registry password comes from.
#[derive(Debug, Clone, Copy)]
pub enum PasswordSource<'a> {
    /// Not given apart: only `USER:PASSWORD` (deprecated) carries one.
    None,
    /// Standard input, its first line.
    Stdin,
    /// A file, its first line.
    File(&'a std::path::Path),
}

/// The credentials `--user` and the password options give; `stdin` is
/// read only for [`PasswordSource::Stdin`]. The password is the first
/// line, without its line ending (`echo "$PW" | ros service pull ...`).
pub fn credentials(
    user: Option<&str>,
    password: PasswordSource<'_>,
    mut stdin: impl std::io::Read,
) -> anyhow::Result<Credentials> {
    let Some(user) = user else {
        return Ok(Credentials::Anonymous);
    };
    let given = match password {
        PasswordSource::None => None,
        PasswordSource::Stdin => {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("reading the registry password from standard input")?;
            Some(text)
        }
        PasswordSource::File(path) => {
            Some(std::fs::read_to_string(path).with_context(|| {
                format!("reading the registry password from {}", path.display())
            })?)
        }
    };
    let (username, password) = match (given, user.split_once(':')) {
        (Some(_), Some(_)) => {
            bail!("--user takes USER alone when the password comes from stdin or a file")
        }
        (Some(text), None) => {
            let line = text.lines().next().unwrap_or_default();
            if line.is_empty() {
                bail!("the registry password is empty");
            }
            (user.to_string(), line.to_string())
        }
        (None, Some((username, password))) => {
            eprintln!(
                "ros: warning: a password on the command line is visible in ps and the shell \
                 history; use --user {username} --password-stdin (or --password-file FILE)"
            );
            (username.to_string(), password.to_string())
        }
        (None, None) => {
            bail!("--user {user} needs a password: --password-stdin or --password-file FILE")
        }
    };
    Ok(Credentials::Basic { username, password })
}

/// Pulls `reference`, writing a progress line per event to `out`. For any
/// command that pulls (`ros service pull`, `ros service up`).
pub async fn pull_printing(
    containerd: &Containerd,
    reference: &str,
    options: &PullOptions,
    out: impl Write + Send,
) -> Result<PulledImage, image::ImageError> {
    let mut printer = ProgressPrinter::new(out);
    image::pull(containerd, reference, options, &mut |event| {
        printer.print(&event)
    })
    .await
}

/// NAME when it is a configured service with an image, else the argument.
fn resolve_name(argument: &str, paths: &ConfigPaths) -> anyhow::Result<String> {
    let Ok(checked) = Layers::load(paths).merged() else {
        // A broken configuration does not stop a pull by reference.
        return Ok(argument.to_string());
    };
    let service = checked
        .config
        .rancher
        .services
        .iter()
        .find(|(name, _)| name.as_str() == argument);
    match service {
        None => Ok(argument.to_string()),
        Some((_, service)) => match &service.image {
            Some(image) if image.starts_with(SHIPPED_PREFIX) => bail!(
                "service {argument} runs from {image}, a directory shipped in the system: \
                 there is nothing to pull"
            ),
            Some(image) => Ok(image.clone()),
            None => bail!("service {argument} names no image"),
        },
    }
}

/// Writes pull events as lines: `layer 2/3 sha256:abcd… 1.2/3.4 MB`.
#[derive(Debug)]
pub struct ProgressPrinter<W> {
    out: W,
}

impl<W: Write> ProgressPrinter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Prints one event; a closed output (a pipe to `head`) is ignored.
    pub fn print(&mut self, event: &PullEvent) {
        let _ = writeln!(self.out, "{}", line(event));
        let _ = self.out.flush();
    }
}

/// The line for one event.
pub fn line(event: &PullEvent) -> String {
    event.to_string()
}

pub(crate) use system_services::image::size;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use system_services::image::LayerStatus;

    const DIGEST: &str = "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    fn layer(done: u64, total: u64, status: LayerStatus) -> PullEvent {
        PullEvent::Layer {
            index: 2,
            count: 3,
            digest: DIGEST.into(),
            done,
            total,
            status,
        }
    }

    #[test]
    fn lines_read_as_progress() {
        assert_eq!(
            line(&layer(1_200_000, 3_400_000, LayerStatus::Downloading)),
            "layer 2/3 sha256:abcdef012345… 1.2/3.4 MB"
        );
        assert_eq!(
            line(&layer(3_400_000, 3_400_000, LayerStatus::Complete)),
            "layer 2/3 sha256:abcdef012345… 3.4/3.4 MB done"
        );
        assert_eq!(
            line(&layer(812_000, 812_000, LayerStatus::Present)),
            "layer 2/3 sha256:abcdef012345… already present"
        );
        assert_eq!(
            line(&PullEvent::Resolved {
                digest: DIGEST.into(),
                layers: 1,
                bytes: 2_200_000
            }),
            "manifest sha256:abcdef012345… 1 layer 2.2 MB"
        );
        assert_eq!(
            line(&PullEvent::Unpacking {
                index: 1,
                count: 3,
                digest: DIGEST.into()
            }),
            "unpacking layer 1/3 sha256:abcdef012345…"
        );
        assert_eq!(
            line(&PullEvent::Done {
                reference: "docker.io/library/busybox:latest".into(),
                digest: DIGEST.into(),
                downloaded: 40_500,
                elapsed: Duration::from_millis(1430),
            }),
            "pulled docker.io/library/busybox:latest sha256:abcdef012345… 40.5 kB in 1.4s"
        );
    }

    #[test]
    fn the_printer_writes_one_line_per_event() {
        let mut out = Vec::new();
        let mut printer = ProgressPrinter::new(&mut out);
        printer.print(&PullEvent::Resolving {
            reference: "docker.io/library/busybox:latest".into(),
        });
        printer.print(&layer(1, 2, LayerStatus::Downloading));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("resolving docker.io/library/busybox:latest\n"));
    }

    #[test]
    fn a_configured_service_name_resolves_to_its_image() {
        let root = tempfile::tempdir().unwrap();
        let paths = ConfigPaths::under(root.path());
        let file = paths.cloud_config_file();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            file,
            "rancher:\n  services:\n    tools:\n      image: registry.example.com/tools:1\n",
        )
        .unwrap();
        assert_eq!(
            resolve_name("tools", &paths).unwrap(),
            "registry.example.com/tools:1"
        );
        assert_eq!(
            resolve_name("busybox:1.36", &paths).unwrap(),
            "busybox:1.36"
        );
        // Built-in services run from directories of the system: never
        // taken for docker.io/ros/<name>.
        let error = resolve_name("syslog", &paths).unwrap_err().to_string();
        assert!(error.contains("nothing to pull"), "{error}");
    }

    fn basic(credentials: Credentials) -> (String, String) {
        match credentials {
            Credentials::Basic { username, password } => (username, password),
            Credentials::Anonymous => panic!("expected credentials, got none"),
        }
    }

    #[test]
    fn the_password_comes_from_stdin_without_its_line_ending() {
        let got = credentials(Some("deploy"), PasswordSource::Stdin, &b"s3cret\n"[..]).unwrap();
        assert_eq!(basic(got), ("deploy".into(), "s3cret".into()));
        let got = credentials(Some("deploy"), PasswordSource::Stdin, &b"s3cret\r\n"[..]).unwrap();
        assert_eq!(basic(got).1, "s3cret");
    }

    #[test]
    fn the_password_comes_from_the_first_line_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        let got = credentials(Some("deploy"), PasswordSource::File(&file), &b""[..]).unwrap();
        assert_eq!(basic(got), ("deploy".into(), "from-file".into()));
        let missing = dir.path().join("absent");
        let error = credentials(Some("deploy"), PasswordSource::File(&missing), &b""[..])
            .unwrap_err()
            .to_string();
        assert!(error.contains("absent"), "{error}");
    }

    #[test]
    fn a_user_without_a_password_source_is_refused_with_the_options_named() {
        let error = credentials(Some("deploy"), PasswordSource::None, &b""[..])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--password-stdin"), "{error}");
        let error = credentials(Some("deploy"), PasswordSource::Stdin, &b"\n"[..])
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty"), "{error}");
        let error = credentials(Some("deploy:pw"), PasswordSource::Stdin, &b"x\n"[..])
            .unwrap_err()
            .to_string();
        assert!(error.contains("USER alone"), "{error}");
    }

    #[test]
    fn the_old_user_colon_password_form_still_works() {
        let got = credentials(Some("deploy:a:b"), PasswordSource::None, &b""[..]).unwrap();
        assert_eq!(basic(got), ("deploy".into(), "a:b".into()));
        assert!(matches!(
            credentials(None, PasswordSource::None, &b""[..]).unwrap(),
            Credentials::Anonymous
        ));
    }

    #[test]
    fn the_password_options_parse_and_need_a_user() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            pull: PullArgs,
        }
        let cli =
            Cli::try_parse_from(["pull", "--user", "u", "--password-stdin", "busybox"]).unwrap();
        assert!(cli.pull.password_stdin);
        assert!(Cli::try_parse_from(["pull", "--password-stdin", "busybox"]).is_err());
        assert!(
            Cli::try_parse_from([
                "pull",
                "--user",
                "u",
                "--password-stdin",
                "--password-file",
                "f",
                "busybox"
            ])
            .is_err()
        );
    }
}
