//! What the agent is told: k3s's argv (`agent` and its flags), then the
//! `K3S_*` environment for whatever the flags left out.
//!
//! Parsing is split from the process: [`parse_flags`] takes argv,
//! [`Settings::resolve`] takes the flags with an environment lookup and
//! a file reader, so tests give both as plain closures.

use std::path::{Path, PathBuf};

use crate::token::{Token, TokenError};

/// Where the node password and the hostname come from on a real node.
pub const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// What argv said (flags override the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub labels: Vec<String>,
    pub taints: Vec<String>,
    pub node_name: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub server: Option<String>,
}

/// Argv that k3s would refuse too (exit code 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("the first argument must be the subcommand `agent` (as for k3s), got {0:?}")]
    NoAgentSubcommand(Option<String>),
    #[error(
        "unknown flag {0:?} (known: --node-label, --node-taint, --node-name, --token, --token-file, --server)"
    )]
    UnknownFlag(String),
    #[error("flag {0} needs a value")]
    MissingValue(String),
    #[error("--node-label {0:?} is not KEY=VALUE")]
    BadLabel(String),
    #[error(
        "--node-taint {0:?} is not KEY=VALUE:Effect with Effect one of NoSchedule, PreferNoSchedule, NoExecute"
    )]
    BadTaint(String),
}

/// Settings that are missing or unusable (exit code 1, like k3s).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("no server: set K3S_URL or --server (https://HOST:PORT)")]
    NoServer,
    #[error("server URL {0:?} is not https://HOST:PORT")]
    BadServer(String),
    #[error("no token: set K3S_TOKEN, K3S_TOKEN_FILE, --token or --token-file")]
    NoToken,
    #[error("reading the token file {path}: {error}")]
    TokenFile { path: PathBuf, error: String },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("no node name: set K3S_NODE_NAME or --node-name ({HOSTNAME_FILE}: {0})")]
    NoNodeName(String),
}

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Parses argv without the program name: `agent` then flags, each as
/// `--flag value` or `--flag=value`.
pub fn parse_flags(args: &[String]) -> Result<Flags, UsageError> {
    let mut args = args.iter();
    match args.next() {
        Some(first) if first == "agent" => {}
        other => return Err(UsageError::NoAgentSubcommand(other.cloned())),
    }
    let mut flags = Flags::default();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        if !matches!(
            name,
            "--node-label"
                | "--node-taint"
                | "--node-name"
                | "--token"
                | "-t"
                | "--token-file"
                | "--server"
                | "-s"
        ) {
            return Err(UsageError::UnknownFlag(arg.clone()));
        }
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .cloned()
                .ok_or_else(|| UsageError::MissingValue(name.to_string()))?,
        };
        match name {
            "--node-label" => {
                if value.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                    return Err(UsageError::BadLabel(value));
                }
                flags.labels.push(value);
            }
            "--node-taint" => {
                if !is_taint(&value) {
                    return Err(UsageError::BadTaint(value));
                }
                flags.taints.push(value);
            }
            "--node-name" => flags.node_name = Some(value),
            "--token" | "-t" => flags.token = Some(value),
            "--token-file" => flags.token_file = Some(PathBuf::from(value)),
            _ => flags.server = Some(value),
        }
    }
    Ok(flags)
}

/// `KEY=VALUE:Effect` or `KEY:Effect`, as kubelet's `--register-with-taints`.
fn is_taint(text: &str) -> bool {
    let Some((key_value, effect)) = text.rsplit_once(':') else {
        return false;
    };
    let key = key_value.split_once('=').map_or(key_value, |(k, _)| k);
    !key.is_empty() && TAINT_EFFECTS.contains(&effect)
}

/// The server: `https://HOST:PORT` (a path after it is ignored, as k3s does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// The host without brackets: a name, an IPv4 or an IPv6 address.
    pub host: String,
    pub port: u16,
}

impl ServerUrl {
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        let bad = || SettingsError::BadServer(text.to_string());
        let rest = text.strip_prefix("https://").ok_or_else(bad)?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
                (host, after.strip_prefix(':').ok_or_else(bad)?)
            }
            None => authority.rsplit_once(':').ok_or_else(bad)?,
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

/// Everything the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: ServerUrl,
    pub token: Token,
    pub node_name: String,
    pub labels: Vec<String>,
    pub taints: Vec<String>,
}

impl Settings {
    /// Flags first, then `K3S_URL`, `K3S_TOKEN_FILE` (wins over
    /// `K3S_TOKEN`), `K3S_TOKEN`, `K3S_NODE_NAME`, then the hostname.
    pub fn resolve(
        flags: Flags,
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Self, SettingsError> {
        let env = |name: &str| env(name).filter(|value| !value.is_empty());
        let server = flags
            .server
            .or_else(|| env("K3S_URL"))
            .ok_or(SettingsError::NoServer)?;
        let server = ServerUrl::parse(&server)?;
        let token_file = flags
            .token_file
            .or_else(|| env("K3S_TOKEN_FILE").map(PathBuf::from));
        let token = match (flags.token, token_file) {
            (Some(token), _) => token,
            (None, Some(path)) => read(&path).map_err(|error| SettingsError::TokenFile {
                path: path.clone(),
                error: error.to_string(),
            })?,
            (None, None) => env("K3S_TOKEN").ok_or(SettingsError::NoToken)?,
        };
        let token = Token::parse(token.trim_end_matches(['\n', '\r']))?;
        let node_name = match flags.node_name.or_else(|| env("K3S_NODE_NAME")) {
            Some(name) => name,
            None => {
                let hostname = read(Path::new(HOSTNAME_FILE))
                    .map_err(|error| SettingsError::NoNodeName(error.to_string()))?;
                let hostname = hostname.trim();
                if hostname.is_empty() {
                    return Err(SettingsError::NoNodeName("empty".into()));
                }
                hostname.to_string()
            }
        };
        Ok(Self {
            server,
            token,
            node_name,
            labels: flags.labels,
            taints: flags.taints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn argv(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    fn resolve(
        flags: &str,
        env: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Result<Settings, SettingsError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.to_string()))
            .collect();
        Settings::resolve(
            parse_flags(&argv(flags)).unwrap(),
            |name| env.get(name).cloned(),
            |path| {
                files
                    .get(path)
                    .cloned()
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
            },
        )
    }

    #[test]
    fn flags_are_taken_with_a_space_or_an_equals_sign_and_repeat() {
        let flags = parse_flags(&argv(
            "agent --node-label a=1 --node-label=b=2 --node-taint k=v:NoSchedule \
             --node-taint=gpu:NoExecute --node-name n1 --token-file=/t --server https://s:6443",
        ))
        .unwrap();
        assert_eq!(flags.labels, ["a=1", "b=2"]);
        assert_eq!(flags.taints, ["k=v:NoSchedule", "gpu:NoExecute"]);
        assert_eq!(flags.node_name.as_deref(), Some("n1"));
        assert_eq!(flags.token_file, Some(PathBuf::from("/t")));
        assert_eq!(flags.server.as_deref(), Some("https://s:6443"));
    }

    #[test]
    fn argv_without_the_agent_subcommand_is_refused() {
        assert_eq!(
            parse_flags(&argv("--node-name n1")),
            Err(UsageError::NoAgentSubcommand(Some("--node-name".into())))
        );
        assert_eq!(parse_flags(&[]), Err(UsageError::NoAgentSubcommand(None)));
    }

    #[test]
    fn an_unknown_flag_is_named_in_the_error() {
        let error = parse_flags(&argv("agent --node-name n1 --kubelet-arg x")).unwrap_err();
        assert_eq!(error, UsageError::UnknownFlag("--kubelet-arg".into()));
        assert!(error.to_string().contains("--kubelet-arg"), "{error}");
    }

    #[test]
    fn a_flag_without_its_value_is_refused() {
        assert_eq!(
            parse_flags(&argv("agent --node-name")),
            Err(UsageError::MissingValue("--node-name".into()))
        );
    }

    #[test]
    fn labels_and_taints_must_have_their_forms() {
        assert_eq!(
            parse_flags(&argv("agent --node-label novalue")),
            Err(UsageError::BadLabel("novalue".into()))
        );
        assert_eq!(
            parse_flags(&argv("agent --node-taint k=v:Sometimes")),
            Err(UsageError::BadTaint("k=v:Sometimes".into()))
        );
        assert_eq!(
            parse_flags(&argv("agent --node-taint k=v")),
            Err(UsageError::BadTaint("k=v".into()))
        );
    }

    #[test]
    fn server_urls_must_be_https_with_a_port() {
        assert_eq!(
            ServerUrl::parse("https://10.0.2.2:6443/").unwrap(),
            ServerUrl {
                host: "10.0.2.2".into(),
                port: 6443
            }
        );
        let v6 = ServerUrl::parse("https://[fd00::1]:443").unwrap();
        assert_eq!(v6.host, "fd00::1");
        assert_eq!(v6.to_string(), "https://[fd00::1]:443");
        for bad in [
            "http://s:6443",
            "https://s",
            "https://:6443",
            "https://s:0",
            "https://s:http",
            "s:6443",
        ] {
            assert_eq!(
                ServerUrl::parse(bad),
                Err(SettingsError::BadServer(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_environment_fills_what_the_flags_leave_out() {
        let settings = resolve(
            "agent",
            &[
                ("K3S_URL", "https://s:6443"),
                ("K3S_TOKEN", "secret"),
                ("K3S_NODE_NAME", "from-env"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(settings.server.to_string(), "https://s:6443");
        assert_eq!(settings.token.secret(), "secret");
        assert_eq!(settings.node_name, "from-env");
    }

    #[test]
    fn flags_override_the_environment() {
        let settings = resolve(
            "agent --server https://flag:1 --node-name from-flag --token-file /flag-token",
            &[
                ("K3S_URL", "https://env:2"),
                ("K3S_TOKEN", "env-secret"),
                ("K3S_NODE_NAME", "from-env"),
            ],
            &[("/flag-token", "flag-secret\n")],
        )
        .unwrap();
        assert_eq!(settings.server.host, "flag");
        assert_eq!(settings.token.secret(), "flag-secret");
        assert_eq!(settings.node_name, "from-flag");
    }

    #[test]
    fn the_token_file_wins_over_the_token_and_loses_its_newline() {
        let settings = resolve(
            "agent",
            &[
                ("K3S_URL", "https://s:6443"),
                ("K3S_TOKEN", "from-env"),
                ("K3S_TOKEN_FILE", "/run/token"),
                ("K3S_NODE_NAME", "n"),
            ],
            &[("/run/token", "from-file\n")],
        )
        .unwrap();
        assert_eq!(settings.token.secret(), "from-file");
    }

    #[test]
    fn an_unreadable_token_file_is_named() {
        let error = resolve(
            "agent",
            &[
                ("K3S_URL", "https://s:6443"),
                ("K3S_TOKEN_FILE", "/missing"),
            ],
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&error, SettingsError::TokenFile { path, .. } if path == Path::new("/missing")),
            "{error}"
        );
    }

    #[test]
    fn the_node_name_defaults_to_the_trimmed_hostname() {
        let settings = resolve(
            "agent",
            &[("K3S_URL", "https://s:6443"), ("K3S_TOKEN", "t")],
            &[(HOSTNAME_FILE, "rancher\n")],
        )
        .unwrap();
        assert_eq!(settings.node_name, "rancher");
    }

    #[test]
    fn a_missing_server_or_token_is_said_so() {
        assert_eq!(
            resolve("agent", &[("K3S_TOKEN", "t")], &[]),
            Err(SettingsError::NoServer)
        );
        assert_eq!(
            resolve(
                "agent",
                &[("K3S_URL", "https://s:1"), ("K3S_TOKEN", "")],
                &[]
            ),
            Err(SettingsError::NoToken)
        );
    }
}
