//! `ros config`: read and change the machine's cloud-config.
//!
//! `get`, `export --full` and `keys` read; `set` and `merge` change
//! `/var/lib/rancher/conf/cloud-config.yml`, refusing anything that does not
//! check, and write it 0600 in a 0700 directory. Secrets (the cluster
//! token, the password, SSH host keys, registry credentials; see
//! [`os_config::export::redact`]) are shown only when asked for: `get`
//! redacts those below the key it is given but prints one given by its own
//! key, and `export` redacts them all unless `--private`. Paths are under
//! `--root` (or `ROS_CONFIG_ROOT`), `/` by default, so the command runs
//! against a test tree without root.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use os_config::check::check_document_dropping;
use os_config::parse::value::parse_value;
use os_config::schema::keys::{self, Support};
use os_config::{ConfigPaths, KeyPath, Layers, Store, Warning, check_document, check_key_path};
use serde_norway::Value;

/// The environment variable that moves the configuration root.
pub const ROOT_ENV: &str = "ROS_CONFIG_ROOT";

/// `ros config …`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Directory the configuration paths are under [env: ROS_CONFIG_ROOT] [default: /].
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a value of the merged configuration: scalars bare, maps and lists as YAML.
    ///
    /// Secrets below the key are shown as `<redacted>`; a secret is printed
    /// only when it is the key itself (`ros config get rancher.cluster.token`).
    Get {
        /// Key path, like `rancher.network.dns.nameservers` or `write_files[0].path`;
        /// without one, the whole merged configuration.
        key: Option<String>,
    },
    /// Set a value in cloud-config.yml; the value is YAML (`true`, `1500`, `[a,b]`).
    Set {
        /// Key path; quote segments with dots: `rancher.network.interfaces."eth0.100".dhcp`.
        key: String,
        /// The value.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Merge a cloud-config document into cloud-config.yml.
    Merge {
        /// Read the document from FILE instead of standard input.
        #[arg(short = 'i', long = "input", value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Print cloud-config.yml, or with --full every layer merged.
    Export {
        /// All layers merged, built-in defaults included.
        #[arg(long)]
        full: bool,
        /// Include secrets (passwords, tokens, SSH host keys).
        #[arg(long)]
        private: bool,
    },
    /// Check a cloud-config document; exit 1 listing every problem (each
    /// with its line and, for an unknown key, the nearest valid one).
    /// Warnings go to standard error and leave the exit status 0.
    Validate {
        /// Read the document from FILE instead of standard input.
        #[arg(short = 'i', long = "input", value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// List every valid key: RancherOS v1.5's (implemented, or accepted
    /// with a warning) and this system's own, with a note each.
    Keys,
}

/// Runs one `ros config` command.
pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let root = args
        .root
        .or_else(|| std::env::var_os(ROOT_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    let paths = ConfigPaths::under(root);
    match args.command {
        ConfigCommand::Get { key } => get(&paths, key.as_deref()),
        ConfigCommand::Set { key, value } => set(&paths, &key, &value),
        ConfigCommand::Merge { input } => merge(&paths, input),
        ConfigCommand::Export { full, private } => export(&paths, full, private),
        ConfigCommand::Validate { input } => validate(input),
        ConfigCommand::Keys => keys(),
    }
}

fn parse_key(key: &str) -> anyhow::Result<KeyPath> {
    let path = KeyPath::parse(key)?;
    check_key_path(&path)?;
    Ok(path)
}

fn get(paths: &ConfigPaths, key: Option<&str>) -> anyhow::Result<ExitCode> {
    let path = match key {
        Some(key) => parse_key(key)?,
        None => KeyPath::root(),
    };
    let layers = Layers::load(paths);
    report_layer_problems(&layers);
    let merged = layers.merged_value();
    let mut out = std::io::stdout().lock();
    match os_config::export::get_redacted(&merged, &path) {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => writeln!(out, "{text}")?,
        Some(Value::Bool(b)) => writeln!(out, "{b}")?,
        Some(Value::Number(n)) => writeln!(out, "{n}")?,
        Some(other) => write!(out, "{}", serde_norway::to_string(&other)?)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn set(paths: &ConfigPaths, key: &str, value: &str) -> anyhow::Result<ExitCode> {
    let path = parse_key(key)?;
    let value = parse_value(value)?;
    let warnings = Store::new(paths.clone()).set(&path, value)?;
    print_warnings(&warnings);
    Ok(ExitCode::SUCCESS)
}

fn merge(paths: &ConfigPaths, input: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let text = read_input(input)?;
    let checked = match check_document(&text) {
        Ok(checked) => checked,
        Err(errors) => bail!("refused, nothing was written:\n{errors}"),
    };
    let warnings = Store::new(paths.clone()).merge(checked.value)?;
    print_warnings(&warnings);
    Ok(ExitCode::SUCCESS)
}

fn export(paths: &ConfigPaths, full: bool, private: bool) -> anyhow::Result<ExitCode> {
    let value = if full {
        let layers = Layers::load(paths);
        report_layer_problems(&layers);
        layers.merged_value()
    } else {
        Store::new(paths.clone()).read()?
    };
    print!("{}", os_config::export::export(value, private)?);
    Ok(ExitCode::SUCCESS)
}

fn validate(input: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let text = read_input(input)?;
    // Every problem at once, as the boot finds them key by key; the
    // warnings of what is accepted are printed either way.
    match check_document_dropping(&text) {
        Ok(checked) => {
            print_warnings(&checked.warnings);
            for error in &checked.dropped {
                println!("{error}");
            }
            Ok(if checked.dropped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(errors) => {
            for error in errors.0 {
                println!("{error}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn keys() -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "# KEY\tSTATUS\tORIGIN: NOTE")?;
    for row in keys::rows() {
        let status = match row.support {
            Support::Implemented => "implemented",
            Support::Unimplemented => "not implemented (warning)",
        };
        let origin = if row.rancheros {
            "RancherOS"
        } else {
            "this system"
        };
        if row.note.is_empty() {
            writeln!(out, "{}\t{status}\t{origin}", row.pattern)?;
        } else {
            writeln!(out, "{}\t{status}\t{origin}: {}", row.pattern, row.note)?;
        }
    }
    let (known, implemented, warned) = os_config::schema::rancher_keys::counts();
    writeln!(
        out,
        "# RancherOS v1.5 keys: {known} known, {implemented} implemented, {warned} accepted with a warning"
    )?;
    Ok(ExitCode::SUCCESS)
}

fn read_input(input: Option<PathBuf>) -> anyhow::Result<String> {
    match input {
        Some(path) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display())),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            Ok(text)
        }
    }
}

fn print_warnings(warnings: &[Warning]) {
    for warning in warnings {
        eprintln!("ros: warning: {warning}");
    }
}

fn report_layer_problems(layers: &Layers) {
    for problem in &layers.problems {
        eprintln!("ros: warning: skipped: {problem}");
    }
}
