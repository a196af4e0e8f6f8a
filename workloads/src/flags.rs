//! The values `ros run` takes, as Docker writes them, parsed into types.
//! Every error names the flag and the value, so a person sees which of
//! several `-p` was wrong.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use system_services::service::{RestartPolicy, ServiceName, User};

/// A flag's value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {value:?}: {reason}")]
pub struct FlagError {
    /// As the user types it: `-p`, `-v`, `--restart`...
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

impl FlagError {
    pub fn new(flag: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            flag,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// A published port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// `-p HOST:CONTAINER[/PROTO]`; shown (and stored in labels) as
/// `8080:80/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub host: u16,
    pub container: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.container, self.proto)
    }
}

impl FromStr for PortMapping {
    type Err = FlagError;

    fn from_str(text: &str) -> Result<Self, FlagError> {
        parse_port(text)
    }
}

/// `-p HOST:CONTAINER[/tcp|/udp]`.
pub fn parse_port(text: &str) -> Result<PortMapping, FlagError> {
    let fail = |reason: &str| FlagError::new("-p", text, reason);
    let (ports, proto) = match text.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, Proto::Tcp),
        Some((ports, "udp")) => (ports, Proto::Udp),
        Some((_, other)) => {
            return Err(fail(&format!("unknown protocol {other:?}: tcp or udp")));
        }
        None => (text, Proto::Tcp),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let [host, container] = parts[..] else {
        let reason = if parts.len() == 1 {
            "expected HOST:CONTAINER[/PROTO]; a port is only reachable when published on a host port"
        } else {
            "expected HOST:CONTAINER[/PROTO]; binding to one host address is not supported"
        };
        return Err(fail(reason));
    };
    let port = |what: &str, p: &str| -> Result<u16, FlagError> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(fail(&format!(
                "{what} port {p:?} is not a number in 1-65535"
            ))),
            Ok(n) => Ok(n),
        }
    };
    Ok(PortMapping {
        host: port("host", host)?,
        container: port("container", container)?,
        proto,
    })
}

/// The `io.ros.ports` label: mappings, comma separated.
pub fn ports_label(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads an `io.ros.ports` label back; what does not parse is skipped.
pub fn ports_from_label(label: &str) -> Vec<PortMapping> {
    label
        .split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| parse_port(p).ok())
        .collect()
}

/// Where a `-v` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// An absolute host path.
    Host(PathBuf),
    /// A named volume: a directory under `DATA_DIR/volumes`.
    Named(String),
}

/// `-v SOURCE:TARGET[:ro|:rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: VolumeSource,
    pub target: PathBuf,
    pub read_only: bool,
}

/// `-v HOST:CONTAINER[:ro]` or `-v NAME:CONTAINER[:ro]`. Host paths are
/// checked against the allowed roots when the container is made
/// ([`check_host_path`]).
pub fn parse_volume(text: &str) -> Result<Volume, FlagError> {
    let fail = |reason: &str| FlagError::new("-v", text, reason);
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, read_only) = match parts[..] {
        [source, target] => (source, target, false),
        [source, target, "ro"] => (source, target, true),
        [source, target, "rw"] => (source, target, false),
        [_, _, mode] => return Err(fail(&format!("unknown mode {mode:?}: ro or rw"))),
        _ => {
            return Err(fail(
                "expected HOST-PATH:CONTAINER-PATH[:ro] or NAME:CONTAINER-PATH[:ro]",
            ));
        }
    };
    if !target.starts_with('/') {
        return Err(fail(&format!(
            "the container path {target:?} must be absolute"
        )));
    }
    if target == "/" {
        return Err(fail("the container's root cannot be a volume"));
    }
    let source = if source.starts_with('/') {
        VolumeSource::Host(PathBuf::from(source))
    } else if valid_volume_name(source) {
        VolumeSource::Named(source.to_string())
    } else {
        return Err(fail(&format!(
            "{source:?} is neither an absolute host path nor a volume name \
             (letters, digits, '_', '.', '-')"
        )));
    };
    Ok(Volume {
        source,
        target: PathBuf::from(target),
        read_only,
    })
}

fn valid_volume_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A host path of `-v` must stay under one of `roots` (the directories
/// the console and the user containerd's container share): anything
/// else would name a different file on each side.
pub fn check_host_path(text: &str, path: &Path, roots: &[PathBuf]) -> Result<(), FlagError> {
    let fail = |reason: String| FlagError::new("-v", text, reason);
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(fail(format!(
            "{} must not contain '.' or '..'",
            path.display()
        )));
    }
    if roots
        .iter()
        .any(|root| path.starts_with(root) && path != root)
    {
        return Ok(());
    }
    let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(fail(format!(
        "host path {} is not under {}",
        path.display(),
        roots.join(", ")
    )))
}

/// `-e KEY=VALUE`, or `-e KEY` for the caller's own value (skipped when
/// unset, as Docker does).
pub fn parse_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, FlagError> {
    let key = text.split('=').next().unwrap_or_default();
    if key.is_empty() {
        return Err(FlagError::new(
            "-e",
            text,
            "expected KEY=VALUE: the key is empty",
        ));
    }
    if key.contains(|c: char| c.is_whitespace() || c == '\0') {
        return Err(FlagError::new("-e", text, "the key contains white space"));
    }
    if text.contains('=') {
        return Ok(Some(text.to_string()));
    }
    Ok(lookup(key).map(|value| format!("{key}={value}")))
}

/// `--restart no|always|on-failure[:N]|unless-stopped`.
pub fn parse_restart(text: &str) -> Result<RestartPolicy, FlagError> {
    match text {
        "no" | "" => Ok(RestartPolicy::No),
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        "on-failure" => Ok(RestartPolicy::OnFailure(None)),
        other => match other.strip_prefix("on-failure:") {
            Some(count) => count
                .parse::<u32>()
                .map(|n| RestartPolicy::OnFailure(Some(n)))
                .map_err(|_| {
                    FlagError::new(
                        "--restart",
                        text,
                        format!("the retry count {count:?} is not a number"),
                    )
                }),
            None => Err(FlagError::new(
                "--restart",
                text,
                "expected no, always, on-failure[:N] or unless-stopped",
            )),
        },
    }
}

/// `--net bridge|host|none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetMode {
    /// Its own network namespace on the bridge, set up by the hooks.
    #[default]
    Bridge,
    /// The host's network namespace.
    Host,
    /// Its own network namespace with only `lo`.
    None,
}

impl NetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Host => "host",
            Self::None => "none",
        }
    }
}

impl fmt::Display for NetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn parse_net(text: &str) -> Result<NetMode, FlagError> {
    match text {
        "bridge" | "default" => Ok(NetMode::Bridge),
        "host" => Ok(NetMode::Host),
        "none" => Ok(NetMode::None),
        _ => Err(FlagError::new(
            "--net",
            text,
            "expected bridge, host or none",
        )),
    }
}

/// `-u UID[:GID]`: numbers only (a name would need the image's
/// /etc/passwd).
pub fn parse_user(text: &str) -> Result<User, FlagError> {
    let number = |part: &str| part.parse::<u32>().ok();
    let user = match text.split_once(':') {
        Some((uid, gid)) => number(uid)
            .zip(number(gid))
            .map(|(uid, gid)| User { uid, gid }),
        None => number(text).map(|uid| User { uid, gid: 0 }),
    };
    user.ok_or_else(|| {
        FlagError::new(
            "-u",
            text,
            "expected UID[:GID] as numbers; user names are not looked up",
        )
    })
}

/// `-u`'s value: numbers, or a name (`NAME[:GROUP]`) looked up in the
/// image's `/etc/passwd` and `/etc/group` when the container is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFlag {
    Id(User),
    Name(String),
}

pub fn parse_user_flag(text: &str) -> Result<UserFlag, FlagError> {
    if let Ok(user) = parse_user(text) {
        return Ok(UserFlag::Id(user));
    }
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    let ok = match text.split_once(':') {
        Some((user, group)) => valid(user) && valid(group),
        None => valid(text),
    };
    if ok {
        Ok(UserFlag::Name(text.to_string()))
    } else {
        Err(FlagError::new(
            "-u",
            text,
            "expected UID[:GID] or NAME[:GROUP]",
        ))
    }
}

/// `--name`: also the containerd container id, the cgroup and the log
/// file name, so kept to what all accept.
pub fn parse_name(text: &str) -> Result<ServiceName, FlagError> {
    ServiceName::new(text).map_err(|e| FlagError::new("--name", text, e.reason))
}

/// `--hostname`: a DNS label or name.
pub fn parse_hostname(text: &str) -> Result<String, FlagError> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(text.to_string())
    } else {
        Err(FlagError::new(
            "--hostname",
            text,
            "expected a host name: labels of letters, digits and '-', dot separated",
        ))
    }
}

/// A name for a container run without `--name`: the image's last path
/// part and six hex digits, e.g. `busybox-3f9a1c`.
pub fn generated_name(image: &str, random: u32) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split(['@', ':']).next().unwrap_or(base);
    let base: String = base
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(40)
        .collect();
    let base = base.trim_start_matches(['-', '_', '.']);
    let suffix = random & 0x00ff_ffff;
    if base.is_empty() {
        format!("ctr-{suffix:06x}")
    } else {
        format!("{base}-{suffix:06x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_as_docker_writes_them() {
        assert_eq!(
            parse_port("8080:80").unwrap(),
            PortMapping {
                host: 8080,
                container: 80,
                proto: Proto::Tcp
            }
        );
        assert_eq!(parse_port("53:5353/udp").unwrap().proto, Proto::Udp);
        assert_eq!(parse_port("1:2/tcp").unwrap().to_string(), "1:2/tcp");
        let cases = [
            ("80", "expected HOST:CONTAINER"),
            ("127.0.0.1:80:80", "binding to one host address"),
            ("80:80/sctp", "unknown protocol \"sctp\""),
            ("0:80", "host port \"0\""),
            ("80:70000", "container port \"70000\""),
            ("x:80", "host port \"x\""),
        ];
        for (text, reason) in cases {
            let err = parse_port(text).unwrap_err();
            assert_eq!((err.flag, err.value.as_str()), ("-p", text));
            assert!(err.reason.contains(reason), "{text}: {err}");
            assert!(
                err.to_string().starts_with(&format!("-p {text:?}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_ports_label_round_trips() {
        let ports = vec![
            parse_port("8080:80").unwrap(),
            parse_port("53:53/udp").unwrap(),
        ];
        let label = ports_label(&ports);
        assert_eq!(label, "8080:80/tcp,53:53/udp");
        assert_eq!(ports_from_label(&label), ports);
        assert!(ports_from_label("").is_empty());
    }

    #[test]
    fn volumes_are_host_paths_or_names() {
        let v = parse_volume("/home/rancher/site:/usr/share/nginx/html:ro").unwrap();
        assert_eq!(v.source, VolumeSource::Host("/home/rancher/site".into()));
        assert_eq!(v.target, Path::new("/usr/share/nginx/html"));
        assert!(v.read_only);
        let v = parse_volume("pgdata:/var/lib/postgresql/data").unwrap();
        assert_eq!(v.source, VolumeSource::Named("pgdata".into()));
        assert!(!v.read_only);
        assert!(!parse_volume("db:/data:rw").unwrap().read_only);
        let cases = [
            ("/srv/a", "expected HOST-PATH:CONTAINER-PATH"),
            ("/srv/a:data", "must be absolute"),
            ("/srv/a:/data:rx", "unknown mode \"rx\""),
            (
                "./here:/data",
                "neither an absolute host path nor a volume name",
            ),
            ("/srv/a:/", "root cannot be a volume"),
        ];
        for (text, reason) in cases {
            let err = parse_volume(text).unwrap_err();
            assert_eq!(err.flag, "-v");
            assert!(err.reason.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn host_paths_must_stay_under_the_shared_roots() {
        let roots: Vec<PathBuf> = VOLUME_ROOTS_FOR_TEST.iter().map(PathBuf::from).collect();
        let ok = |p: &str| check_host_path(p, Path::new(p), &roots);
        ok("/home/rancher/site").unwrap();
        ok("/srv/www").unwrap();
        let err = ok("/etc/ssh").unwrap_err();
        assert!(
            err.to_string()
                .contains("/etc/ssh is not under /home, /opt"),
            "{err}"
        );
        ok("/home").unwrap_err(); // the root itself is not a volume
        assert!(ok("/home/../etc").unwrap_err().reason.contains(".."));
        ok("/homework/x").unwrap_err();
    }

    const VOLUME_ROOTS_FOR_TEST: &[&str] = crate::VOLUME_ROOTS;

    #[test]
    fn env_takes_pairs_or_the_callers_value() {
        let lookup = |key: &str| (key == "HOME").then(|| "/home/rancher".to_string());
        assert_eq!(
            parse_env("A=b=c", lookup).unwrap().as_deref(),
            Some("A=b=c")
        );
        assert_eq!(parse_env("A=", lookup).unwrap().as_deref(), Some("A="));
        assert_eq!(
            parse_env("HOME", lookup).unwrap().as_deref(),
            Some("HOME=/home/rancher")
        );
        assert_eq!(parse_env("UNSET", lookup).unwrap(), None);
        let err = parse_env("=x", lookup).unwrap_err();
        assert_eq!(err.flag, "-e");
        assert!(err.reason.contains("key is empty"));
        parse_env("A B=c", lookup).unwrap_err();
    }

    #[test]
    fn restart_policies_read_as_docker_writes_them() {
        assert_eq!(parse_restart("no").unwrap(), RestartPolicy::No);
        assert_eq!(parse_restart("always").unwrap(), RestartPolicy::Always);
        assert_eq!(
            parse_restart("unless-stopped").unwrap(),
            RestartPolicy::UnlessStopped
        );
        assert_eq!(
            parse_restart("on-failure").unwrap(),
            RestartPolicy::OnFailure(None)
        );
        assert_eq!(
            parse_restart("on-failure:3").unwrap(),
            RestartPolicy::OnFailure(Some(3))
        );
        for policy in ["always", "on-failure:3", "unless-stopped", "no"] {
            assert_eq!(parse_restart(policy).unwrap().to_string(), policy);
        }
        let err = parse_restart("on-failure:x").unwrap_err();
        assert_eq!(err.flag, "--restart");
        assert!(err.reason.contains("\"x\""));
        assert!(
            parse_restart("sometimes")
                .unwrap_err()
                .to_string()
                .contains("--restart \"sometimes\"")
        );
    }

    #[test]
    fn net_users_names_and_hostnames() {
        assert_eq!(parse_net("host").unwrap(), NetMode::Host);
        assert_eq!(parse_net("none").unwrap(), NetMode::None);
        assert_eq!(parse_net("bridge").unwrap(), NetMode::Bridge);
        assert_eq!(parse_net("container:x").unwrap_err().flag, "--net");
        assert_eq!(parse_user("1000").unwrap(), User { uid: 1000, gid: 0 });
        assert_eq!(parse_user("1000:50").unwrap(), User { uid: 1000, gid: 50 });
        assert_eq!(parse_user("nginx").unwrap_err().flag, "-u");
        assert_eq!(
            parse_user_flag("1000:50").unwrap(),
            UserFlag::Id(User { uid: 1000, gid: 50 })
        );
        assert_eq!(
            parse_user_flag("nginx:www-data").unwrap(),
            UserFlag::Name("nginx:www-data".into())
        );
        assert_eq!(parse_user_flag("a b").unwrap_err().flag, "-u");
        assert_eq!(parse_name("web-1").unwrap().as_str(), "web-1");
        let err = parse_name("Web").unwrap_err();
        assert_eq!(err.flag, "--name");
        assert!(err.reason.contains("lowercase"));
        assert_eq!(parse_hostname("db.lab").unwrap(), "db.lab");
        parse_hostname("-x").unwrap_err();
        parse_hostname("a b").unwrap_err();
    }

    #[test]
    fn generated_names_come_from_the_image() {
        assert_eq!(generated_name("busybox", 0x3f9a1c), "busybox-3f9a1c");
        assert_eq!(
            generated_name("127.0.0.1:5000/test/Busy_Box:1.36", 0xff00_0001),
            "busy_box-000001"
        );
        assert_eq!(generated_name("nginx@sha256:abc", 1), "nginx-000001");
        parse_name(&generated_name("registry.lab:5000/x/app:1", 42)).unwrap();
    }
}
