//! From `rancher.services.<name>` (the compose-like definition of the
//! cloud-config) to a [`Service`]: every key checked, every problem
//! reported with the service and the key, nothing left to interpret.
//!
//! Files PID 1 wrote for a service (`write_files` entries with
//! `container: <name>`, under [`CONTAINER_FILES_DIR`]`/<name>`) become
//! read-only binds over the same paths in its root; links there share the
//! machine's own files and mounts with it (the console's view of
//! `write_files` without `container:` and of `mounts`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Capability;
use os_config::schema::{self, NetworkMode, Rancher, Scope, StringOrList};

use crate::root::Root;
use crate::service::{
    BindMount, Device, HostNamespaces, Limits, Service, ServiceName, Signal, User,
    default_capabilities,
};

/// Where service root directories are: `image: ros/<name>` is `<dir>/<name>`.
pub const IMAGES_DIR: &str = "/usr/lib/ros/images";
/// What `io.rancher.os.after` names for "once the network is online":
/// RancherOS's network service, here a milestone of the boot.
pub const NETWORK_MILESTONE: &str = "network";
/// The prefix of images shipped in the system.
pub const SHIPPED_PREFIX: &str = "ros/";
/// Where PID 1 writes the files of `write_files` entries that name a
/// service: `<dir>/<service>/<path in its root>`.
pub const CONTAINER_FILES_DIR: &str = "/run/ros/files";

/// One problem with one key of one service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service {service}: {key}: {problem}")]
pub struct DefinitionError {
    pub service: String,
    /// The key, as in the cloud-config (`image`, `labels.io.rancher.os.after`).
    pub key: String,
    pub problem: String,
}

/// Why the files PID 1 wrote for a service could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("reading {}: {source}", path.display())]
pub struct ContainerFilesError {
    /// The file or directory that could not be read.
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Why a command line does not split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellWordsError {
    /// A quote opened and never closed.
    #[error("unterminated {quote} in `{text}`")]
    Unterminated { quote: char, text: String },
    /// A backslash with nothing after it.
    #[error("a trailing \\ in `{text}`")]
    TrailingBackslash { text: String },
}

/// Why an `env_file` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("`{}` is not an absolute path", .0.display())]
    NotAbsolute(PathBuf),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} line {line}: `{text}` is not KEY=value", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

/// Every problem with a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionErrors(pub Vec<DefinitionError>);

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl std::error::Error for DefinitionErrors {}

/// What resolving needs besides the definition.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where `ros/<name>` images are.
    pub images_dir: PathBuf,
    /// `rancher.environment`: fills in `environment` entries given without a value.
    pub environment: BTreeMap<String, String>,
    /// `NAME=value` entries every service gets unless it sets NAME itself
    /// (the proxy settings of `rancher.network`).
    pub defaults: Vec<String>,
    /// Where the host's `resolv.conf`, `hosts` and `hostname` are, bound
    /// into the services that share its network or host name.
    pub etc_dir: PathBuf,
    /// [`CONTAINER_FILES_DIR`]: each service's own files below
    /// `<dir>/<service>`.
    pub files_dir: PathBuf,
}

impl Context {
    /// The running system's images, with `rancher.environment`.
    pub fn system(rancher: &Rancher) -> Self {
        Self {
            images_dir: PathBuf::from(IMAGES_DIR),
            environment: rancher.environment.clone(),
            defaults: rancher.network.proxy_environment(),
            etc_dir: PathBuf::from("/etc"),
            files_dir: PathBuf::from(CONTAINER_FILES_DIR),
        }
    }
}

/// A service of the configuration, resolved or not.
#[derive(Debug, Clone, PartialEq)]
pub struct Defined {
    /// Not disabled (and, for an optional service, included).
    pub enabled: bool,
    pub service: Result<Service, DefinitionErrors>,
    /// The image as written, for listing even a bad definition.
    pub image: String,
}

/// Every service the configuration defines, enabled or not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Definitions {
    pub services: BTreeMap<String, Defined>,
}

impl Definitions {
    /// Resolves every service of `rancher.services`, and lists the
    /// optional services in `available` that are not included as disabled.
    pub fn from_config(
        rancher: &Rancher,
        available: &BTreeMap<ServiceName, schema::Service>,
        context: &Context,
    ) -> Self {
        let mut services = BTreeMap::new();
        for (name, definition) in &rancher.services {
            services.insert(
                name.to_string(),
                Defined {
                    enabled: !rancher.disable.contains(name),
                    service: resolve(name, definition, &rancher.services, context),
                    image: definition.image.clone().unwrap_or_default(),
                },
            );
        }
        for (name, definition) in available {
            services.entry(name.to_string()).or_insert_with(|| Defined {
                enabled: false,
                service: resolve(name, definition, available, context),
                image: definition.image.clone().unwrap_or_default(),
            });
        }
        Self { services }
    }

    /// The enabled services whose definitions resolve.
    pub fn enabled(&self) -> Vec<Service> {
        self.services
            .values()
            .filter(|d| d.enabled)
            .filter_map(|d| d.service.as_ref().ok().cloned())
            .collect()
    }

    /// The problems of enabled services' definitions.
    pub fn problems(&self) -> Vec<&DefinitionErrors> {
        self.services
            .values()
            .filter(|d| d.enabled)
            .filter_map(|d| d.service.as_ref().err())
            .collect()
    }

    /// Whether `name` is defined at all (enabled or not, valid or not).
    pub fn is_defined(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Defined> {
        self.services.get(name)
    }
}

/// Collects the problems of one definition.
struct Problems<'a> {
    service: &'a str,
    found: Vec<DefinitionError>,
}

impl Problems<'_> {
    fn add(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.found.push(DefinitionError {
            service: self.service.to_string(),
            key: key.into(),
            problem: problem.into(),
        });
    }
}

/// Resolves one definition; `all` holds the definitions `volumes_from`
/// may name. The name was checked when the configuration was read.
pub fn resolve(
    name: &ServiceName,
    definition: &schema::Service,
    all: &BTreeMap<ServiceName, schema::Service>,
    context: &Context,
) -> Result<Service, DefinitionErrors> {
    let mut problems = Problems {
        service: name.as_str(),
        found: Vec::new(),
    };
    let root = root(definition, context, &mut problems);
    let entrypoint = command_line("entrypoint", definition.entrypoint.as_ref(), &mut problems);
    let command = command_line("command", definition.command.as_ref(), &mut problems);
    let env = environment(definition, context, &mut problems);

    // Labels.
    for problem in definition.label_problems() {
        let (key, text) = match &problem {
            schema::service::InvalidServiceValue::Label { label, reason } => {
                (format!("labels.{label}"), reason.clone())
            }
            other => ("labels".to_string(), other.to_string()),
        };
        problems.add(key, text);
    }
    if definition.scope() == Ok(Scope::User) {
        problems.add(
            format!("labels.{}", schema::service::SCOPE_LABEL),
            "`user`: this service is NOT run (RancherOS ran it in its user Docker; here run it \
             with `ros run` on the user containerd, or make it `system`)",
        );
    }
    let mut after = label_names(definition.after());
    // `network` is the network being online, not a service.
    let after_network = after.iter().any(|name| name.as_str() == NETWORK_MILESTONE);
    after.retain(|name| name.as_str() != NETWORK_MILESTONE);
    let before = label_names(definition.before());

    let mut mounts = volumes(&definition.volumes, "volumes", &mut problems);
    for other in &definition.volumes_from {
        match all.get(other) {
            Some(source) => mounts.extend(volumes(
                &source.volumes,
                &format!("volumes_from {other}"),
                &mut problems,
            )),
            None => problems.add("volumes_from", format!("{other} is not a defined service")),
        }
    }

    let mut host = HostNamespaces::default();
    match definition.network_mode() {
        Some(NetworkMode::Host) => host.net = true,
        Some(NetworkMode::None | NetworkMode::Own) | None => {}
        Some(NetworkMode::Container(other)) => problems.add(
            if definition.network_mode.is_some() {
                "network_mode"
            } else {
                "net"
            },
            format!("container:{other} is not supported (host, none or bridge)"),
        ),
    }
    host.pid = definition.pid.is_some();
    host.ipc = definition.ipc.is_some();
    host.uts = definition.uts.is_some();
    host.cgroup = definition.cgroup.is_some();

    // After the volumes: a file given for a path inside a bound
    // directory is mounted over it.
    match container_files(&context.files_dir.join(name.as_str())) {
        Ok(files) => {
            let shared = |file: &BindMount| already_shared(&mounts, file);
            let files: Vec<BindMount> = files.into_iter().filter(|f| !shared(f)).collect();
            mounts.extend(files);
        }
        Err(problem) => problems.add("write_files", problem.to_string()),
    }
    mounts.extend(host_names(host, &context.etc_dir, &mounts));
    let capabilities = capabilities(definition, &mut problems);
    let devices = devices(&definition.devices, &mut problems);
    let user = definition
        .user
        .as_deref()
        .and_then(|text| user(text, root.as_ref(), &mut problems));
    let working_dir = match &definition.working_dir {
        Some(dir) if dir.starts_with('/') => Some(PathBuf::from(dir)),
        Some(dir) => {
            problems.add("working_dir", format!("`{dir}` is not an absolute path"));
            None
        }
        None => None,
    };
    if let Some(shares) = definition.cpu_shares
        && !(2..=262_144).contains(&shares)
    {
        problems.add(
            "cpu_shares",
            format!("{shares} is outside 2..262144 (1024 is the default)"),
        );
    }
    let hostname = definition.hostname.as_ref().and_then(|name| {
        if host.uts {
            problems.add(
                "hostname",
                "a service with `uts: host` has the machine's host name; leave one of them out",
            );
            None
        } else {
            Some(name.as_str().to_owned())
        }
    });
    let rlimits = rlimits(definition, &mut problems);
    let restart = definition.restart.unwrap_or_default();

    let (Some(root), true) = (root, problems.found.is_empty()) else {
        return Err(DefinitionErrors(problems.found));
    };
    let service = Service {
        name: name.clone(),
        image: definition.image.clone().unwrap_or_default(),
        root,
        read_only_root: definition.read_only,
        entrypoint,
        command,
        env,
        working_dir,
        user,
        hostname,
        rlimits,
        host,
        privileged: definition.privileged,
        capabilities,
        mounts,
        devices,
        limits: Limits {
            memory: definition.mem_limit.map(schema::ByteSize::bytes),
            cpu_shares: definition.cpu_shares,
        },
        restart,
        stop_signal: definition.stop_signal.unwrap_or(Signal::TERM),
        after,
        after_network,
        before,
        detach: definition.detach().unwrap_or(true),
        create_only: definition.create_only().unwrap_or(false),
    };
    if let Root::Dir(_) = service.root
        && service.argv(None).is_empty()
    {
        // A shipped directory has no image config to fall back on.
        return Err(DefinitionErrors(vec![DefinitionError {
            service: service.name.to_string(),
            key: "command".into(),
            problem: "missing: an image shipped in the system has no default command".into(),
        }]));
    }
    Ok(service)
}

/// The host's name files for a service on the host's network (names
/// resolve as on the host: PID 1 rewrites them in place when DHCP changes
/// them, so the binds stay current) or with its host name; read-only,
/// and only those the host has and the service does not bind itself.
fn host_names(host: HostNamespaces, etc_dir: &Path, own: &[BindMount]) -> Vec<BindMount> {
    let files: &[&str] = match (host.net, host.uts) {
        (true, true) => &["resolv.conf", "hosts", "hostname"],
        (true, false) => &["resolv.conf", "hosts"],
        (false, true) => &["hostname"],
        (false, false) => &[],
    };
    files
        .iter()
        .map(|file| (etc_dir.join(file), Path::new("/etc").join(file)))
        .filter(|(source, destination)| {
            source.is_file() && !own.iter().any(|m| &m.destination == destination)
        })
        .map(|(source, destination)| BindMount {
            source,
            destination,
            read_only: true,
            propagation: None,
        })
        .collect()
}

/// Whether `file`, a path of the machine shared at the same path, is in
/// the service's view already through a writable volume of the same
/// directory (`/home:/home`): binding it again would only pin its inode.
fn already_shared(volumes: &[BindMount], file: &BindMount) -> bool {
    file.source == file.destination
        && volumes.iter().any(|volume| {
            volume.source == volume.destination
                && !volume.read_only
                && file.destination.starts_with(&volume.destination)
        })
}

/// A read-only bind for every file below `dir` (none when it does not
/// exist), over the same path in the service's root, in path order; a
/// symbolic link to an absolute path there binds that path of the
/// machine instead, read-write.
pub fn container_files(dir: &Path) -> Result<Vec<BindMount>, ContainerFilesError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContainerFilesError { path, source }
    };
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && current == dir => {
                return Ok(Vec::new());
            }
            Err(error) => return Err(failed(&current)(error)),
        };
        for entry in entries {
            let entry = entry.map_err(failed(&current))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(failed(&path))?;
            if kind.is_symlink()
                && let Ok(relative) = path.strip_prefix(dir)
            {
                // A link shares the machine's own file or directory there,
                // read-write (PID 1 makes these for the console).
                let target = std::fs::read_link(&path).map_err(failed(&path))?;
                // One gone since (removed on the machine) is left out: a
                // bind of nothing would keep the service from starting.
                if target.is_absolute() && target.exists() {
                    found.push(BindMount {
                        destination: Path::new("/").join(relative),
                        source: target,
                        read_only: false,
                        propagation: None,
                    });
                }
            } else if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file()
                && let Ok(relative) = path.strip_prefix(dir)
            {
                found.push(BindMount {
                    destination: Path::new("/").join(relative),
                    source: path,
                    read_only: true,
                    propagation: None,
                });
            }
        }
    }
    found.sort_by(|a, b| a.destination.cmp(&b.destination));
    Ok(found)
}

fn root(definition: &schema::Service, context: &Context, problems: &mut Problems) -> Option<Root> {
    let Some(image) = definition.image.as_deref() else {
        problems.add(
            "image",
            "missing: ros/<name> for an image shipped in the system, or a registry reference",
        );
        return None;
    };
    if let Some(shipped) = image.strip_prefix(SHIPPED_PREFIX) {
        let valid = !shipped.is_empty()
            && shipped
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !shipped.starts_with('.');
        let dir = context.images_dir.join(shipped);
        if !valid || !dir.is_dir() {
            problems.add(
                "image",
                format!(
                    "{image} is not shipped in this system (no directory {})",
                    dir.display()
                ),
            );
            return None;
        }
        return Some(Root::Dir(dir));
    }
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        problems.add("image", format!("`{image}` is not an image reference"));
        return None;
    }
    Some(Root::Image(image.to_string()))
}

fn command_line(
    key: &str,
    value: Option<&StringOrList>,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    match value? {
        StringOrList::List(list) => Some(list.clone()),
        StringOrList::String(text) => match shell_words(text) {
            Ok(words) => Some(words),
            Err(problem) => {
                problems.add(key, problem.to_string());
                None
            }
        },
    }
}

/// Splits a command line as a POSIX shell would, without expanding
/// anything: blanks separate words; single quotes keep everything;
/// double quotes keep all but `\"`, `\\`, `\$` and `` \` ``; a backslash
/// outside quotes keeps the next character.
pub fn shell_words(text: &str) -> Result<Vec<String>, ShellWordsError> {
    let unterminated = |quote| ShellWordsError::Unterminated {
        quote,
        text: text.to_owned(),
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unterminated('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(unterminated('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unterminated('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => {
                        return Err(ShellWordsError::TrailingBackslash {
                            text: text.to_owned(),
                        });
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn environment(
    definition: &schema::Service,
    context: &Context,
    problems: &mut Problems,
) -> Vec<String> {
    let mut env = Vec::new();
    let files = match &definition.env_file {
        None => Vec::new(),
        Some(StringOrList::String(file)) => vec![file.clone()],
        Some(StringOrList::List(files)) => files.clone(),
    };
    let mut from_files: Vec<(String, String)> = Vec::new();
    for file in files {
        match env_file(Path::new(&file)) {
            Ok(entries) => from_files.extend(entries),
            Err(problem) => problems.add("env_file", problem.to_string()),
        }
    }
    for (key, value) in &definition.environment.0 {
        if key.is_empty() || key.contains('=') {
            problems.add("environment", format!("`{key}` is not a variable name"));
            continue;
        }
        // Compose takes a bare name from its own environment; here that is
        // rancher.environment. Not set there: left out, as compose does.
        let value = value
            .clone()
            .or_else(|| context.environment.get(key).cloned());
        if let Some(value) = value {
            env.push(format!("{key}={value}"));
        }
    }
    let name = |entry: &str| entry.split('=').next().unwrap_or_default().to_string();
    // `environment` wins over the files; a later file over an earlier one.
    for (key, value) in from_files.into_iter().rev() {
        if !env.iter().any(|own| name(own) == key) {
            env.push(format!("{key}={value}"));
        }
    }
    for default in &context.defaults {
        if !env.iter().any(|own| name(own) == name(default)) {
            env.push(default.clone());
        }
    }
    env
}

/// The `KEY=value` lines of an env file, as Compose reads them: blank
/// lines and `#` comments skipped, the value taken as written.
fn env_file(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    if !path.is_absolute() {
        return Err(EnvFileError::NotAbsolute(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| EnvFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() && !key.contains(char::is_whitespace) => {
                entries.push((key.to_owned(), value.to_owned()));
            }
            _ => {
                return Err(EnvFileError::Line {
                    path: path.to_path_buf(),
                    line: number + 1,
                    text: line.to_owned(),
                });
            }
        }
    }
    Ok(entries)
}

/// The resource names `ulimits` takes: `RLIMIT_<NAME>`.
pub const RLIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn rlimits(definition: &schema::Service, problems: &mut Problems) -> Vec<crate::service::Rlimit> {
    definition
        .ulimits
        .iter()
        .filter_map(|(name, limit)| {
            if RLIMITS.contains(&name.as_str()) {
                Some(crate::service::Rlimit {
                    name: name.clone(),
                    soft: limit.soft,
                    hard: limit.hard,
                })
            } else {
                problems.add(
                    format!("ulimits.{name}"),
                    format!("not a resource limit ({})", RLIMITS.join(", ")),
                );
                None
            }
        })
        .collect()
}

/// The services a label names; a bad list is reported with the other
/// label problems.
fn label_names(
    names: Result<Vec<ServiceName>, schema::service::InvalidServiceValue>,
) -> Vec<ServiceName> {
    names.unwrap_or_default()
}

fn volumes(list: &[schema::Volume], key: &str, problems: &mut Problems) -> Vec<BindMount> {
    let mut mounts = Vec::new();
    for volume in list {
        let Some(host) = &volume.host else {
            problems.add(
                key,
                format!(
                    "`{}` has no host path; anonymous volumes are not supported (HOST:{0})",
                    volume.container
                ),
            );
            continue;
        };
        if !host.starts_with('/') {
            problems.add(
                key,
                format!("`{host}` is not an absolute host path; named volumes are not supported"),
            );
            continue;
        }
        let propagation = volume
            .options
            .iter()
            .find(|o| {
                matches!(
                    o.as_str(),
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
                )
            })
            .cloned();
        mounts.push(BindMount {
            source: PathBuf::from(host),
            destination: PathBuf::from(&volume.container),
            read_only: volume.read_only,
            propagation,
        });
    }
    mounts
}

fn capability(name: &str) -> Option<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

fn capabilities(definition: &schema::Service, problems: &mut Problems) -> HashSet<Capability> {
    let mut set = default_capabilities();
    for cap in &definition.cap_drop {
        match cap.as_str() {
            "ALL" => set.clear(),
            name => match capability(name) {
                Some(cap) => {
                    set.remove(&cap);
                }
                None => problems.add("cap_drop", format!("{name} is not a capability")),
            },
        }
    }
    for cap in &definition.cap_add {
        match cap.as_str() {
            "ALL" => set.extend(crate::spec::all_capabilities()),
            name => match capability(name) {
                Some(cap) => {
                    set.insert(cap);
                }
                None => problems.add("cap_add", format!("{name} is not a capability")),
            },
        }
    }
    set
}

fn devices(list: &[String], problems: &mut Problems) -> Vec<Device> {
    let mut devices = Vec::new();
    for text in list {
        let parts: Vec<&str> = text.split(':').collect();
        let (host, container, access) = match parts.as_slice() {
            [host] => (*host, *host, "rwm"),
            [host, container] => (*host, *container, "rwm"),
            [host, container, access] => (*host, *container, *access),
            _ => ("", "", ""),
        };
        let valid = host.starts_with('/')
            && container.starts_with('/')
            && !access.is_empty()
            && access.chars().all(|c| "rwm".contains(c));
        if !valid {
            problems.add(
                "devices",
                format!("`{text}` is not a device (HOST[:CONTAINER[:rwm]], absolute paths)"),
            );
            continue;
        }
        devices.push(Device {
            host: PathBuf::from(host),
            container: PathBuf::from(container),
            access: access.to_string(),
        });
    }
    devices
}

/// `uid[:gid]`, or names looked up in the shipped image's /etc/passwd and
/// /etc/group.
fn user(text: &str, root: Option<&Root>, problems: &mut Problems) -> Option<User> {
    let (user, group) = match text.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (text, None),
    };
    let dir = match root {
        Some(Root::Dir(dir)) => Some(dir.as_path()),
        _ => None,
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => {
            // A uid with a passwd entry gets its primary group, as Docker does.
            let gid = lookup(dir, "etc/passwd", 2, user)
                .and_then(|f| f.get(3).and_then(|g| g.parse().ok()));
            (uid, gid)
        }
        Err(_) => {
            let Some(dir) = dir else {
                problems.add(
                    "user",
                    format!("`{user}` is a name; for a registry image give UID[:GID]"),
                );
                return None;
            };
            let Some(fields) = lookup(Some(dir), "etc/passwd", 0, user) else {
                problems.add(
                    "user",
                    format!("no user `{user}` in {}", dir.join("etc/passwd").display()),
                );
                return None;
            };
            let uid = fields.get(2).and_then(|f| f.parse().ok());
            let gid = fields.get(3).and_then(|f| f.parse().ok());
            match uid {
                Some(uid) => (uid, gid),
                None => {
                    problems.add("user", format!("the passwd entry of `{user}` is malformed"));
                    return None;
                }
            }
        }
    };
    let gid = match group {
        None => primary_gid.unwrap_or(0),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let found = lookup(dir, "etc/group", 0, group)
                    .and_then(|f| f.get(2).and_then(|g| g.parse().ok()));
                match found {
                    Some(gid) => gid,
                    None => {
                        problems.add("user", format!("no group `{group}` in the image"));
                        return None;
                    }
                }
            }
        },
    };
    Some(User { uid, gid })
}

/// The fields of the first line of `dir/file` (passwd or group) whose
/// field `column` is `value`.
fn lookup(dir: Option<&Path>, file: &str, column: usize, value: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir?.join(file)).ok()?;
    text.lines()
        .map(|line| line.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|fields| fields.get(column).is_some_and(|n| n == value))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        context: Context,
    }

    /// An images directory with `ros/ntp` (with a passwd) and `ros/console`.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ntp = dir.path().join("ntp/etc");
        std::fs::create_dir_all(&ntp).unwrap();
        std::fs::write(
            ntp.join("passwd"),
            "root:x:0:0::/root:/bin/sh\nntp:x:101:102::/var/lib/ntp:/bin/false\n",
        )
        .unwrap();
        std::fs::write(ntp.join("group"), "root:x:0:\nntp:x:102:\nclock:x:55:\n").unwrap();
        std::fs::create_dir_all(dir.path().join("console")).unwrap();
        let etc = dir.path().join("host-etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "nameserver 10.0.2.3\n").unwrap();
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let context = Context {
            images_dir: dir.path().to_path_buf(),
            environment: [("HTTP_PROXY".to_string(), "http://proxy:3128".to_string())]
                .into_iter()
                .collect(),
            defaults: Vec::new(),
            etc_dir: etc,
            files_dir: dir.path().join("files"),
        };
        Fixture { _dir: dir, context }
    }

    fn definitions(yaml: &str) -> BTreeMap<ServiceName, schema::Service> {
        serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn resolve_one(yaml: &str) -> Result<Service, DefinitionErrors> {
        let fixture = fixture();
        let all = definitions(yaml);
        let (name, definition) = all.iter().next().unwrap();
        resolve(name, definition, &all, &fixture.context)
    }

    #[test]
    fn a_service_on_the_host_network_sees_the_hosts_names_read_only() {
        let f = fixture();
        let yaml = "s:\n  image: ros/console\n  command: [sh]\n  net: host\n  volumes: [/srv/hosts:/etc/hosts]\n";
        let all = definitions(yaml);
        let (name, def) = all.iter().next().unwrap();
        let service = resolve(name, def, &all, &f.context).unwrap();
        let binds: Vec<_> = service
            .mounts
            .iter()
            .map(|m| (m.source.clone(), m.destination.clone(), m.read_only))
            .collect();
        assert_eq!(
            binds,
            vec![
                ("/srv/hosts".into(), "/etc/hosts".into(), false),
                (
                    f.context.etc_dir.join("resolv.conf"),
                    "/etc/resolv.conf".into(),
                    true
                ),
            ],
            "its own /etc/hosts wins; the host has no hostname file to bind"
        );
    }

    #[test]
    fn files_written_for_a_service_are_bound_read_only_over_their_paths() {
        let f = fixture();
        let files = f.context.files_dir.join("ntp");
        std::fs::create_dir_all(files.join("etc/openntpd")).unwrap();
        std::fs::write(files.join("etc/openntpd/ntpd.conf"), "server 10.0.2.2\n").unwrap();
        std::fs::create_dir_all(files.join("var/lib/x")).unwrap();
        std::fs::write(files.join("var/lib/x/y"), "y").unwrap();
        // Another service's files are not its own.
        std::fs::create_dir_all(f.context.files_dir.join("console/etc")).unwrap();
        std::fs::write(f.context.files_dir.join("console/etc/motd"), "hi").unwrap();
        let yaml =
            "ntp:\n  image: ros/ntp\n  command: [ntpd]\n  volumes: [/var/lib/ros/x:/var/lib/x]\n";
        let all = definitions(yaml);
        let (name, def) = all.iter().next().unwrap();
        let service = resolve(name, def, &all, &f.context).unwrap();
        let binds: Vec<_> = service
            .mounts
            .iter()
            .map(|m| (m.source.clone(), m.destination.clone(), m.read_only))
            .collect();
        assert_eq!(
            binds,
            vec![
                ("/var/lib/ros/x".into(), "/var/lib/x".into(), false),
                (
                    files.join("etc/openntpd/ntpd.conf"),
                    "/etc/openntpd/ntpd.conf".into(),
                    true
                ),
                (files.join("var/lib/x/y"), "/var/lib/x/y".into(), true),
            ],
            "the file inside a bound directory comes after that directory's bind"
        );
    }

    #[test]
    fn links_share_the_machines_paths_read_write_unless_a_volume_shares_them_already() {
        let f = fixture();
        let files = f.context.files_dir.join("console");
        std::fs::create_dir_all(files.join("etc")).unwrap();
        std::fs::create_dir_all(files.join("mnt")).unwrap();
        // The machine's paths, in a temporary directory standing for `/`.
        let machine = f.context.images_dir.join("machine");
        std::fs::create_dir_all(machine.join("etc")).unwrap();
        std::fs::create_dir_all(machine.join("mnt/data")).unwrap();
        std::fs::write(machine.join("etc/motd"), "hi").unwrap();
        std::os::unix::fs::symlink(machine.join("etc/motd"), files.join("etc/motd")).unwrap();
        std::os::unix::fs::symlink(machine.join("mnt/data"), files.join("mnt/data")).unwrap();
        // Removed on the machine since: left out.
        std::os::unix::fs::symlink(machine.join("gone"), files.join("etc/gone")).unwrap();
        // Under a directory the console binds from the machine already
        // (as it does /home): the same path on both sides.
        let home = machine.join("home");
        std::fs::create_dir_all(home.join("rancher/a")).unwrap();
        let in_files = files.join(home.strip_prefix("/").unwrap()).join("rancher");
        std::fs::create_dir_all(&in_files).unwrap();
        std::os::unix::fs::symlink(home.join("rancher/a"), in_files.join("a")).unwrap();
        std::fs::write(files.join("etc/os-release"), "NAME=ros\n").unwrap();
        let yaml = format!(
            "console:\n  image: ros/console\n  command: [sh]\n  volumes: ['{0}:{0}']\n",
            home.display()
        );
        let all = definitions(&yaml);
        let (name, def) = all.iter().next().unwrap();
        let service = resolve(name, def, &all, &f.context).unwrap();
        let binds: Vec<_> = service
            .mounts
            .iter()
            .map(|m| (m.source.clone(), m.destination.clone(), m.read_only))
            .collect();
        assert_eq!(
            binds,
            vec![
                (home.clone(), home.clone(), false),
                (machine.join("etc/motd"), "/etc/motd".into(), false),
                (files.join("etc/os-release"), "/etc/os-release".into(), true),
                (machine.join("mnt/data"), "/mnt/data".into(), false),
            ]
        );
    }

    #[test]
    fn hostname_env_file_and_ulimits_are_applied() {
        let f = fixture();
        let env = f.context.images_dir.join("web.env");
        std::fs::write(&env, "# settings\nMODE=file\nFROM_FILE=yes\n\nEMPTY=\n").unwrap();
        let yaml = format!(
            "web:\n  image: ros/console\n  command: [sh]\n  hostname: web-1\n  env_file: {}\n  environment: {{MODE: own}}\n  ulimits: {{nofile: {{soft: 1024, hard: 4096}}, nproc: 500}}\n",
            env.display()
        );
        let all = definitions(&yaml);
        let (name, def) = all.iter().next().unwrap();
        let service = resolve(name, def, &all, &f.context).unwrap();
        assert_eq!(service.hostname.as_deref(), Some("web-1"));
        assert_eq!(service.env, ["MODE=own", "EMPTY=", "FROM_FILE=yes"]);
        assert_eq!(
            service.rlimits,
            [
                crate::service::Rlimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 4096
                },
                crate::service::Rlimit {
                    name: "nproc".into(),
                    soft: 500,
                    hard: 500
                },
            ]
        );
    }

    #[test]
    fn a_bad_env_file_ulimit_or_hostname_is_named_by_its_key() {
        let f = fixture();
        let env = f.context.images_dir.join("bad.env");
        std::fs::write(&env, "OK=1\nnot a setting\n").unwrap();
        let yaml = format!(
            "web:\n  image: ros/console\n  command: [sh]\n  uts: host\n  hostname: web-1\n  env_file: [{}, relative.env]\n  ulimits: {{files: 10}}\n",
            env.display()
        );
        let all = definitions(&yaml);
        let (name, def) = all.iter().next().unwrap();
        let errors = resolve(name, def, &all, &f.context).unwrap_err();
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["env_file", "env_file", "hostname", "ulimits.files"]);
        assert_eq!(
            errors.0[0].problem,
            format!("{} line 2: `not a setting` is not KEY=value", env.display())
        );
        assert_eq!(
            errors.0[1].problem,
            "`relative.env` is not an absolute path"
        );
    }

    #[test]
    fn a_service_without_files_gets_no_file_binds() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            container_files(&dir.path().join("none")).unwrap(),
            Vec::new()
        );
    }

    #[test]
    fn a_service_with_its_own_network_gets_no_host_names() {
        let f = fixture();
        let all = definitions("s:\n  image: ros/console\n  command: [sh]\n");
        let (name, def) = all.iter().next().unwrap();
        let service = resolve(name, def, &all, &f.context).unwrap();
        assert!(service.mounts.is_empty(), "{:?}", service.mounts);
    }

    /// The (service, key) of each problem, and the first problem's text.
    fn problems(yaml: &str) -> (Vec<(String, String)>, String) {
        let errors = resolve_one(yaml).unwrap_err().0;
        let text = errors[0].to_string();
        (
            errors.into_iter().map(|e| (e.service, e.key)).collect(),
            text,
        )
    }

    #[test]
    fn a_full_definition_resolves() {
        let fixture = fixture();
        let all = definitions(
            r#"
ntp:
  image: ros/ntp
  command: ntpd -d -n -p "pool ntp.org"
  environment: [TZ=UTC, HTTP_PROXY, UNSET]
  labels:
    io.rancher.os.after: udev, syslog
    io.rancher.os.before: console
    io.rancher.os.detach: "true"
  volumes: [/etc/ntp.conf:/etc/ntp.conf:ro, /run/ntp:/run/ntp:rshared]
  volumes_from: [keys]
  net: host
  uts: host
  cap_add: [sys_time]
  cap_drop: [chown]
  devices: ["/dev/rtc0:/dev/rtc:r"]
  read_only: true
  restart: on-failure:5
  user: ntp:clock
  working_dir: /var/lib/ntp
  mem_limit: 32m
  cpu_shares: 512
  stop_signal: SIGQUIT
keys:
  image: ros/console
  command: [/bin/true]
  volumes: [/var/lib/keys:/keys:ro]
"#,
        );
        let ntp = all.keys().find(|n| n.as_str() == "ntp").unwrap();
        let s = resolve(ntp, &all[ntp], &all, &fixture.context).unwrap();
        assert_eq!(s.name.as_str(), "ntp");
        assert_eq!(s.image, "ros/ntp");
        assert_eq!(s.root, Root::Dir(fixture.context.images_dir.join("ntp")));
        assert_eq!(
            s.command.as_deref().unwrap(),
            ["ntpd", "-d", "-n", "-p", "pool ntp.org"]
        );
        assert_eq!(s.entrypoint, None);
        assert_eq!(s.env, ["TZ=UTC", "HTTP_PROXY=http://proxy:3128"]);
        let names = |list: &[ServiceName]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&s.after), ["udev", "syslog"]);
        assert_eq!(names(&s.before), ["console"]);
        assert!(s.detach && !s.create_only);
        // Its three volumes, then the host's resolv.conf and hosts (on
        // the host network; the fixture's host has no hostname file).
        assert_eq!(s.mounts.len(), 5);
        assert_eq!(s.mounts[3].destination, Path::new("/etc/resolv.conf"));
        assert_eq!(s.mounts[4].destination, Path::new("/etc/hosts"));
        assert!(s.mounts[0].read_only);
        assert_eq!(s.mounts[1].propagation.as_deref(), Some("rshared"));
        assert_eq!(s.mounts[2].destination, Path::new("/keys"));
        assert_eq!(
            s.host,
            HostNamespaces {
                net: true,
                pid: false,
                ipc: false,
                uts: true,
                cgroup: false,
            }
        );
        assert!(s.capabilities.contains(&Capability::SysTime));
        assert!(!s.capabilities.contains(&Capability::Chown));
        assert!(s.capabilities.contains(&Capability::Kill));
        assert_eq!(s.devices[0].container, Path::new("/dev/rtc"));
        assert_eq!(s.devices[0].access, "r");
        assert!(s.read_only_root);
        assert_eq!(s.restart, schema::RestartPolicy::OnFailure(Some(5)));
        assert_eq!(s.user, Some(User { uid: 101, gid: 55 }));
        assert_eq!(s.working_dir.as_deref(), Some(Path::new("/var/lib/ntp")));
        assert_eq!(
            s.limits,
            Limits {
                memory: Some(32 << 20),
                cpu_shares: Some(512)
            }
        );
        assert_eq!(s.stop_signal.number(), 3);
        // Unless a definition names one, SIGTERM.
        let keys = all.keys().find(|n| n.as_str() == "keys").unwrap();
        let keys = resolve(keys, &all[keys], &all, &fixture.context).unwrap();
        assert_eq!(keys.stop_signal, Signal::TERM);
    }

    #[test]
    fn a_registry_image_keeps_its_reference_and_may_leave_the_command_to_it() {
        let s =
            resolve_one("web:\n  image: registry.local:5000/web:1.2\n  user: '1000'\n").unwrap();
        assert_eq!(s.root, Root::Image("registry.local:5000/web:1.2".into()));
        assert_eq!(s.command, None);
        assert_eq!(s.user, Some(User { uid: 1000, gid: 0 }));
    }

    #[test]
    fn privileged_and_all_capabilities() {
        let s = resolve_one("x:\n  image: ros/console\n  command: [sh]\n  privileged: true\n  cap_drop: [ALL]\n  cap_add: [NET_RAW]\n").unwrap();
        assert!(s.privileged);
        assert_eq!(s.capabilities, [Capability::NetRaw].into_iter().collect());
        let s =
            resolve_one("x:\n  image: ros/console\n  command: [sh]\n  cap_add: [ALL]\n").unwrap();
        assert!(s.capabilities.contains(&Capability::SysAdmin));
    }

    #[test]
    fn user_defaults_to_the_primary_group() {
        let s = resolve_one("n:\n  image: ros/ntp\n  command: [ntpd]\n  user: ntp\n").unwrap();
        assert_eq!(s.user, Some(User { uid: 101, gid: 102 }));
        let s = resolve_one("n:\n  image: ros/ntp\n  command: [ntpd]\n  user: '101'\n").unwrap();
        assert_eq!(s.user, Some(User { uid: 101, gid: 102 }));
    }

    #[test]
    fn a_missing_or_unknown_image_is_named() {
        let (found, text) = problems("web:\n  command: [run]\n");
        assert_eq!(found, [("web".into(), "image".into())]);
        assert!(text.starts_with("service web: image: missing"), "{text}");
        let (found, text) = problems("web:\n  image: ros/nothing\n  command: [run]\n");
        assert_eq!(found, [("web".into(), "image".into())]);
        assert!(
            text.contains("ros/nothing is not shipped in this system"),
            "{text}"
        );
        let (found, _) = problems("web:\n  image: ros/../etc\n  command: [run]\n");
        assert_eq!(found, [("web".into(), "image".into())]);
    }

    #[test]
    fn a_shipped_image_needs_a_command() {
        let (found, text) = problems("web:\n  image: ros/console\n");
        assert_eq!(found, [("web".into(), "command".into())]);
        assert!(text.contains("no default command"), "{text}");
    }

    #[test]
    fn a_user_scope_service_is_reported_as_not_run_naming_it() {
        let errors = resolve_one(
            "web:\n  image: ros/console\n  command: [sh]\n  labels: {io.rancher.os.scope: user}\n",
        )
        .unwrap_err();
        assert_eq!(
            errors.to_string(),
            "service web: labels.io.rancher.os.scope: `user`: this service is NOT run (RancherOS ran \
             it in its user Docker; here run it with `ros run` on the user containerd, or make it `system`)"
        );
    }

    #[test]
    fn every_bad_key_is_reported_with_its_name() {
        let (found, _) = problems(
            r#"
bad:
  image: ros/console
  command: "echo 'unterminated"
  labels:
    io.rancher.os.scope: user
    io.rancher.os.after: "Not A Name"
  volumes: [/data, data:/data]
  volumes_from: [nobody]
  network_mode: container:console
  devices: [sda]
  user: nobody
  working_dir: relative/dir
  cpu_shares: 1
"#,
        );
        let keys: Vec<&str> = found.iter().map(|(_, key)| key.as_str()).collect();
        assert!(found.iter().all(|(service, _)| service == "bad"));
        assert_eq!(
            keys,
            [
                "command",
                "labels.io.rancher.os.after",
                "labels.io.rancher.os.scope",
                "volumes",
                "volumes",
                "volumes_from",
                "network_mode",
                "devices",
                "user",
                "working_dir",
                "cpu_shares",
            ]
        );
    }

    #[test]
    fn a_user_name_needs_a_shipped_image() {
        let (found, text) = problems("web:\n  image: registry.local/web\n  user: www\n");
        assert_eq!(found, [("web".into(), "user".into())]);
        assert!(text.contains("give UID[:GID]"), "{text}");
    }

    #[test]
    fn a_name_or_capability_the_boot_would_refuse_does_not_get_this_far() {
        // The schema refuses them with their key paths (one definition of
        // a service name and of the capability list, shared with
        // `ros config validate`).
        for yaml in [
            "Web:\n  image: ros/console\n  command: [x]\n",
            "web:\n  image: ros/console\n  cap_add: [CAP_MAKE_COFFEE]\n",
        ] {
            let error = serde_norway::from_str::<BTreeMap<ServiceName, schema::Service>>(yaml)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("`Web` is not a valid service name")
                    || error.contains("`CAP_MAKE_COFFEE` is not a Linux capability"),
                "{error}"
            );
        }
    }

    #[test]
    fn shell_words_split_like_sh() {
        assert_eq!(
            shell_words(r#"a  'b c' "d \"e\" \n" f\ g"#).unwrap(),
            ["a", "b c", r#"d "e" \n"#, "f g"]
        );
        assert_eq!(shell_words("").unwrap(), Vec::<String>::new());
        assert_eq!(shell_words("''").unwrap(), [""]);
        assert_eq!(
            shell_words("\"open"),
            Err(ShellWordsError::Unterminated {
                quote: '"',
                text: "\"open".into()
            })
        );
        assert_eq!(
            shell_words("end\\").unwrap_err().to_string(),
            "a trailing \\ in `end\\`"
        );
    }

    #[test]
    fn definitions_list_enabled_disabled_and_optional_services() {
        let fixture = fixture();
        let rancher: Rancher = serde_norway::from_str(
            r#"
services:
  console: {image: ros/console, command: [sh]}
  ntp: {image: ros/ntp, command: [ntpd]}
  broken: {command: [x]}
disable: [ntp]
"#,
        )
        .unwrap();
        let available = definitions(
            "extra:\n  image: ros/console\n  command: [extra]\nntp:\n  image: ros/nothing\n",
        );
        let defs = Definitions::from_config(&rancher, &available, &fixture.context);
        let enabled: Vec<String> = defs.enabled().iter().map(|s| s.name.to_string()).collect();
        assert_eq!(enabled, ["console"]);
        assert!(!defs.get("ntp").unwrap().enabled);
        // The configured ntp wins over the optional one of the same name.
        let ntp = defs.get("ntp").unwrap().service.as_ref().unwrap();
        assert_eq!(ntp.image, "ros/ntp");
        let extra = defs.get("extra").unwrap();
        assert!(!extra.enabled);
        assert_eq!(extra.service.as_ref().unwrap().image, "ros/console");
        assert_eq!(defs.problems().len(), 1);
        assert_eq!(defs.problems()[0].0[0].service, "broken");
        assert!(defs.is_defined("broken") && !defs.is_defined("nope"));
    }
}
