//! The configuration layers, lowest first: built-in defaults < OEM <
//! `cloud-config.d/*.yml` (lexical) < `cloud-config.yml` < kernel cmdline.
//! Maps merge deeply; scalars and lists replace (see [`crate::tree::merge`]).
//!
//! Each layer is checked key by key: an invalid or unknown key is reported
//! ([`LayerProblem::DroppedKey`], with its line) and left out alone, the
//! rest of its layer applies. A layer that is not a YAML mapping at all is
//! reported and left out whole, so one bad file never stops the boot.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::check::{
    Checked, ConfigError, ConfigErrors, Warning, check_document, check_document_dropping,
    check_value, check_value_dropping,
};
use crate::parse::cmdline::{CmdlineConfig, CmdlineProblem, config_from_cmdline};
use crate::schema::{Service, ServiceName};
use crate::tree;

/// The built-in layer, in merge order. To add a built-in service, add a
/// file under `src/defaults/services/` and a line here.
pub static BUILT_IN: &[(&str, &str)] = &[
    ("base.yml", include_str!("defaults/base.yml")),
    (
        "services/udev.yml",
        include_str!("defaults/services/udev.yml"),
    ),
    (
        "services/syslog.yml",
        include_str!("defaults/services/syslog.yml"),
    ),
    (
        "services/ntp.yml",
        include_str!("defaults/services/ntp.yml"),
    ),
    (
        "services/acpid.yml",
        include_str!("defaults/services/acpid.yml"),
    ),
    (
        "services/console.yml",
        include_str!("defaults/services/console.yml"),
    ),
];

/// Optional services shipped in the image, off unless
/// `rancher.services_include.<name>` is true; then the file is merged just
/// above the built-in layer, so every other layer can still change it. To
/// add one, add a file under `src/defaults/optional/` and a line here.
pub static OPTIONAL: &[(&str, &str)] = &[(
    "user-containerd",
    include_str!("defaults/optional/user-containerd.yml"),
)];

/// The definitions of the optional services, by name: what `ros service
/// list` shows as available and `ros service enable` turns on.
pub fn optional_services() -> BTreeMap<ServiceName, Service> {
    let mut services = BTreeMap::new();
    for (_, text) in OPTIONAL {
        if let Ok(checked) = check_document(text) {
            services.extend(checked.config.rancher.services);
        }
    }
    services
}

/// The optional services `merged` includes (`services_include.<name>: true`).
fn included_optional(merged: &Value) -> Vec<&'static str> {
    let include = merged
        .get("rancher")
        .and_then(|r| r.get("services_include"))
        .and_then(Value::as_mapping);
    let Some(include) = include else {
        return Vec::new();
    };
    OPTIONAL
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            include.get(*name).is_some_and(|on| match on {
                Value::Bool(on) => *on,
                Value::String(text) => crate::schema::scalar::parse_bool_word(text) == Some(true),
                _ => false,
            })
        })
        .collect()
}

/// Where the configuration files live, under a root that tests move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPaths {
    root: PathBuf,
}

impl ConfigPaths {
    /// The paths of the running system.
    pub fn system() -> Self {
        Self::under("/")
    }

    /// The same layout below `root`.
    pub fn under(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root everything is under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `/var/lib/rancher/conf`.
    pub fn conf_dir(&self) -> PathBuf {
        self.root.join("var/lib/rancher/conf")
    }

    /// `cloud-config.yml`, the file `ros config set` writes.
    pub fn cloud_config_file(&self) -> PathBuf {
        self.conf_dir().join("cloud-config.yml")
    }

    /// `cloud-config.d/`, where saved user-data and drop-ins go.
    pub fn cloud_config_dir(&self) -> PathBuf {
        self.conf_dir().join("cloud-config.d")
    }

    /// Where user-data from a datasource is saved, as a cloud-config.d file.
    pub fn user_data_file(&self) -> PathBuf {
        self.cloud_config_dir().join("user-data.yml")
    }

    /// Where a user-data `#!` script is saved for `runcmd` time.
    pub fn user_script_file(&self) -> PathBuf {
        self.conf_dir().join("cloud-config-script")
    }

    /// Where datasource metadata is saved (JSON).
    pub fn metadata_file(&self) -> PathBuf {
        self.conf_dir().join("metadata")
    }

    /// `/usr/share/ros/oem/oem-config.yml`.
    pub fn oem_file(&self) -> PathBuf {
        self.root.join("usr/share/ros/oem/oem-config.yml")
    }

    /// `/proc/cmdline`.
    pub fn cmdline_file(&self) -> PathBuf {
        self.root.join("proc/cmdline")
    }
}

/// Where a layer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// Compiled in.
    BuiltIn(&'static str),
    /// The OEM file.
    Oem(PathBuf),
    /// A `cloud-config.d` file.
    CloudConfigD(PathBuf),
    /// `cloud-config.yml`.
    CloudConfig(PathBuf),
    /// The kernel command line.
    Cmdline,
}

impl fmt::Display for LayerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BuiltIn(name) => write!(f, "built-in {name}"),
            Self::Oem(path) | Self::CloudConfigD(path) | Self::CloudConfig(path) => {
                write!(f, "{}", path.display())
            }
            Self::Cmdline => f.write_str("kernel command line"),
        }
    }
}

/// One checked layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Where it came from.
    pub source: LayerSource,
    /// Its tree.
    pub value: Value,
    /// What was accepted with a warning.
    pub warnings: Vec<Warning>,
}

/// A layer that was left out, and why.
#[derive(Debug, thiserror::Error)]
pub enum LayerProblem {
    /// The file exists but cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file does not check.
    #[error("{source_name}: {errors}")]
    Invalid {
        /// The layer.
        source_name: LayerSource,
        /// Every problem in it.
        errors: ConfigErrors,
    },
    /// One key of a layer was left out; the rest of the layer applies.
    #[error("{source_name}: {error}; left out, the rest of this layer applies")]
    DroppedKey {
        /// The layer.
        source_name: LayerSource,
        /// What was wrong with the key.
        error: ConfigError,
    },
    /// A kernel parameter that was skipped.
    #[error(transparent)]
    Cmdline(#[from] CmdlineProblem),
}

/// All layers that loaded, and the problems with those that did not.
#[derive(Debug, Default)]
pub struct Layers {
    /// Lowest first.
    pub layers: Vec<Layer>,
    /// Layers or parameters left out.
    pub problems: Vec<LayerProblem>,
}

impl Layers {
    /// Loads every layer under `paths`, the cmdline from `paths.cmdline_file()`.
    pub fn load(paths: &ConfigPaths) -> Self {
        let cmdline = std::fs::read_to_string(paths.cmdline_file()).ok();
        Self::load_with_cmdline(paths, cmdline.as_deref())
    }

    /// Loads every layer, with the kernel command line given.
    pub fn load_with_cmdline(paths: &ConfigPaths, cmdline: Option<&str>) -> Self {
        Self::load_parts(paths, cmdline.map(config_from_cmdline), None)
    }

    /// Loads every layer, with the kernel command line parsed already.
    pub fn load_with_parsed_cmdline(paths: &ConfigPaths, cmdline: &crate::Cmdline) -> Self {
        Self::load_parts(paths, Some(cmdline.config().clone()), None)
    }

    /// Loads every layer, with `cloud_config` (already checked) standing in
    /// for the file: what the machine would run after a store.
    pub fn load_with_cloud_config(paths: &ConfigPaths, cloud_config: Checked) -> Self {
        let cmdline = std::fs::read_to_string(paths.cmdline_file()).ok();
        Self::load_parts(
            paths,
            cmdline.as_deref().map(config_from_cmdline),
            Some(cloud_config),
        )
    }

    fn load_parts(
        paths: &ConfigPaths,
        cmdline: Option<CmdlineConfig>,
        cloud_config: Option<Checked>,
    ) -> Self {
        let mut layers = Self::default();
        for (name, text) in BUILT_IN {
            layers.add_text(LayerSource::BuiltIn(name), text);
        }
        layers.add_file(LayerSource::Oem(paths.oem_file()));
        for path in cloud_config_d_files(&paths.cloud_config_dir(), &mut layers.problems) {
            layers.add_file(LayerSource::CloudConfigD(path));
        }
        let source = LayerSource::CloudConfig(paths.cloud_config_file());
        match cloud_config {
            Some(checked) => layers.push(source, checked),
            None => layers.add_file(source),
        }
        if let Some(found) = cmdline {
            layers
                .problems
                .extend(found.problems.into_iter().map(LayerProblem::from));
            layers.add_value(LayerSource::Cmdline, found.value);
        }
        layers
    }

    /// Adds a layer on top, from text; its invalid keys are left out one
    /// by one, text that is not a YAML mapping whole.
    pub fn add_text(&mut self, source: LayerSource, text: &str) {
        match check_document_dropping(text) {
            Ok(checked) => self.push(source, checked),
            Err(errors) => self.problems.push(LayerProblem::Invalid {
                source_name: source,
                errors,
            }),
        }
    }

    /// Adds a layer on top, from a tree with no text; invalid keys are
    /// left out one by one.
    pub fn add_value(&mut self, source: LayerSource, value: Value) {
        match check_value_dropping(value) {
            Ok(checked) => self.push(source, checked),
            Err(errors) => self.problems.push(LayerProblem::Invalid {
                source_name: source,
                errors,
            }),
        }
    }

    fn add_file(&mut self, source: LayerSource) {
        let (LayerSource::Oem(path)
        | LayerSource::CloudConfigD(path)
        | LayerSource::CloudConfig(path)) = &source
        else {
            return;
        };
        match crate::parse::yaml::read_document(path) {
            Ok(text) => self.add_text(source, &text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => self.problems.push(LayerProblem::Read {
                path: path.clone(),
                source: error,
            }),
        }
    }

    fn push(&mut self, source: LayerSource, checked: Checked) {
        self.problems.extend(
            checked
                .dropped
                .into_iter()
                .map(|error| LayerProblem::DroppedKey {
                    source_name: source.clone(),
                    error,
                }),
        );
        self.layers.push(Layer {
            source,
            value: checked.value,
            warnings: checked.warnings,
        });
    }

    /// All layers merged into one tree, with the optional services they
    /// include merged just above the built-in layer, and the cluster agent
    /// `rancher.cluster` asks for under the `cluster-agent` they define.
    pub fn merged_value(&self) -> Value {
        let mut merged = Value::Mapping(Default::default());
        for layer in &self.layers {
            tree::merge(&mut merged, layer.value.clone());
        }
        let included = included_optional(&merged);
        if included.is_empty() {
            crate::cluster::add_agent(&mut merged);
            return merged;
        }
        let mut merged = Value::Mapping(Default::default());
        let built_in = self
            .layers
            .iter()
            .take_while(|layer| matches!(layer.source, LayerSource::BuiltIn(_)));
        for layer in built_in {
            tree::merge(&mut merged, layer.value.clone());
        }
        for (name, text) in OPTIONAL {
            if included.contains(name)
                && let Ok(value) = serde_norway::from_str::<Value>(text)
            {
                tree::merge(&mut merged, value);
            }
        }
        for layer in &self.layers {
            if !matches!(layer.source, LayerSource::BuiltIn(_)) {
                tree::merge(&mut merged, layer.value.clone());
            }
        }
        crate::cluster::add_agent(&mut merged);
        merged
    }

    /// All layers merged and checked as one configuration.
    pub fn merged(&self) -> Result<Checked, ConfigErrors> {
        check_value(self.merged_value())
    }

    /// Every warning of every layer, with the layer it came from.
    pub fn warnings(&self) -> impl Iterator<Item = (&LayerSource, &Warning)> {
        self.layers
            .iter()
            .flat_map(|layer| layer.warnings.iter().map(move |w| (&layer.source, w)))
    }
}

/// `*.yml` (and `*.yaml`) in `dir`, sorted by name.
fn cloud_config_d_files(dir: &Path, problems: &mut Vec<LayerProblem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            problems.push(LayerProblem::Read {
                path: dir.to_owned(),
                source: error,
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yml" | "yaml")
                )
        })
        .collect();
    files.sort();
    files
}

/// The built-in layer alone, merged: what a machine with no configuration runs.
pub fn built_in_value() -> Value {
    let mut merged = Value::Mapping(Default::default());
    for (_, text) in BUILT_IN {
        if let Ok(value) = serde_norway::from_str::<Value>(text) {
            tree::merge(&mut merged, value);
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{NetworkMode, RestartPolicy, ServiceName};

    #[test]
    fn optional_services_check_and_come_in_only_when_included() {
        // The user containerd is included by the built-in layer itself.
        for (name, text) in OPTIONAL {
            let checked = check_document(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(checked.warnings, vec![], "{name}");
            let names: Vec<&str> = checked
                .config
                .rancher
                .services
                .keys()
                .map(ServiceName::as_str)
                .collect();
            assert_eq!(names, [*name], "each optional file defines its own service");
        }
        assert!(optional_services().contains_key(&"user-containerd".parse().unwrap()));

        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths::under(dir.path());
        let without = Layers::load_with_cmdline(
            &paths,
            Some("rancher.services_include.user-containerd=false"),
        );
        let config = without.merged().unwrap().config;
        assert!(
            !config
                .rancher
                .services
                .contains_key(&"user-containerd".parse().unwrap())
        );

        // Included by default, changed by cloud-config.yml: the optional
        // file sits below it.
        std::fs::create_dir_all(paths.conf_dir()).unwrap();
        std::fs::write(
            paths.cloud_config_file(),
            "rancher:\n  services:\n    user-containerd:\n      environment: {EXTRA: '1'}\n",
        )
        .unwrap();
        let with = Layers::load_with_cmdline(&paths, Some(""));
        let config = with.merged().unwrap().config;
        let user = &config.rancher.services[&"user-containerd".parse::<ServiceName>().unwrap()];
        assert_eq!(user.image.as_deref(), Some("ros/user-containerd"));
        assert_eq!(user.environment.get("EXTRA"), Some("1"));
        assert!(user.privileged);
    }

    #[test]
    fn built_in_defaults_check_and_define_the_console() {
        for (name, text) in BUILT_IN {
            let checked = check_document(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(checked.warnings, vec![], "{name}");
        }
        let config = check_value(built_in_value()).unwrap().config;
        let console = &config.rancher.services[&"console".parse::<ServiceName>().unwrap()];
        assert_eq!(console.image.as_deref(), Some("ros/console"));
        assert_eq!(console.network_mode(), Some(&NetworkMode::Host));
        assert!(console.pid.is_some() && console.ipc.is_some() && console.uts.is_some());
        assert!(console.privileged);
        assert_eq!(console.restart, Some(RestartPolicy::Always));
        assert_eq!(config.rancher.network.dhcp_timeout().as_secs(), 10);
        assert_eq!(
            config.rancher.system_containerd.address.as_str(),
            "/run/system-containerd/containerd.sock"
        );
    }
}
