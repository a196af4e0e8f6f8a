//! Turning YAML text into a checked [`CloudConfig`]: syntax, unknown keys
//! (with the nearest valid one), types, then the rules that span fields.
//! Every problem names its key path, and its line when there is text.
//!
//! Problems are found key by key: each unknown or invalid key (a list
//! entry, for a problem inside one) is taken out and the rest read again,
//! so [`check_document_dropping`] (the boot) keeps everything else and
//! lists what it left out, while [`check_document`] (`ros config
//! validate/set`) refuses the document with every problem listed. Keys
//! RancherOS had that are not applied here, and values RancherOS accepted
//! that may not do what was meant, are [`Warning`]s.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_norway::Value;

use crate::parse::keypath::{KeyPath, Segment};
use crate::schema::keys::{self, ANY_NAME, Support};
use crate::schema::{CloudConfig, DatasourceSpec};

pub use crate::problem::{ConfigError, ConfigErrors, ErrorKind, Warning};

/// A document that was checked: what applies, and what was dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The document as a tree, for merging and export, without the keys
    /// in `dropped`.
    pub value: Value,
    /// The typed configuration.
    pub config: CloudConfig,
    /// What was accepted with a warning.
    pub warnings: Vec<Warning>,
    /// Keys that were invalid or unknown, each left out alone (empty
    /// from the strict [`check_document`] and [`check_value`]).
    pub dropped: Vec<ConfigError>,
}

/// Checks YAML text. An empty document is an empty configuration. Any
/// problem refuses the whole document: for `ros config validate/set`.
pub fn check_document(text: &str) -> Result<Checked, ConfigErrors> {
    strict(check_document_dropping(text)?)
}

/// Checks a tree that has no text (a merge of layers); any problem refuses it.
pub fn check_value(value: Value) -> Result<Checked, ConfigErrors> {
    strict(check(value, None)?)
}

/// Checks YAML text for the boot: each invalid or unknown key is left out
/// alone and listed in [`Checked::dropped`] with its line; the rest
/// applies. Only text that is not a YAML mapping is refused whole.
pub fn check_document_dropping(text: &str) -> Result<Checked, ConfigErrors> {
    // Measured before it is read: an alias bomb is refused unexpanded.
    crate::parse::yaml::scan(text).map_err(|limit| {
        ConfigErrors(vec![ConfigError::Syntax {
            line: None,
            message: limit.to_string(),
        }])
    })?;
    let value: Value = serde_norway::from_str(text).map_err(|error| {
        ConfigErrors(vec![ConfigError::Syntax {
            line: error.location().map(|l| l.line()),
            message: error.to_string(),
        }])
    })?;
    check(value, Some(text))
}

/// [`check_document_dropping`] for a tree without text.
pub fn check_value_dropping(value: Value) -> Result<Checked, ConfigErrors> {
    check(value, None)
}

fn strict(checked: Checked) -> Result<Checked, ConfigErrors> {
    if checked.dropped.is_empty() {
        Ok(checked)
    } else {
        Err(ConfigErrors(checked.dropped))
    }
}

/// More problems than this in one document and the rest are not looked
/// for one by one: each costs a typed read of the whole document.
const MAX_DROPPED: usize = 256;

/// Unknown keys listed one by one; past this many, one more problem says
/// how many others were left out. 10^5 unknown keys are 10^5 console
/// lines otherwise.
pub const MAX_LISTED: usize = 50;

/// `errors` (unknown keys, in the order of the text) with those past
/// [`MAX_LISTED`] told as one problem at the first of them.
fn listed(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    if errors.len() <= MAX_LISTED {
        return errors;
    }
    let more = errors.len() - MAX_LISTED;
    let first_unlisted = errors.swap_remove(MAX_LISTED);
    errors.truncate(MAX_LISTED);
    if let Some(path) = first_unlisted.path() {
        errors.push(ConfigError::InvalidValue {
            path: path.clone(),
            line: None,
            message: format!(
                "and {} more unknown keys from here on, left out without being listed",
                more
            ),
        });
    }
    errors
}

fn check(value: Value, text: Option<&str>) -> Result<Checked, ConfigErrors> {
    let value = match value {
        Value::Null => Value::Mapping(Default::default()),
        Value::Tagged(tagged) => tagged.value,
        other => other,
    };
    let found = match &value {
        Value::Mapping(_) => None,
        Value::Sequence(_) => Some("a list"),
        _ => Some("a scalar"),
    };
    if let Some(found) = found {
        return Err(ConfigErrors(vec![ConfigError::NotAMapping { found }]));
    }
    // Keys the table does not know: each is reported and taken out, all
    // in one walk of the tree. Lines are found at the end, all in one
    // parse of the text.
    let mut value = value;
    let mut walk = Walk::default();
    walk.value(&value, &KeyPath::root(), "");
    let unknown: Vec<KeyPath> = walk
        .errors
        .iter()
        .filter_map(|e| e.path().cloned())
        .collect();
    crate::tree::remove_keys(&mut value, &unknown);
    let mut dropped = listed(walk.errors);

    // Then the typed read and the rules across fields: the first problem
    // is reported with its original path, its key taken out, and the rest
    // read again, until the document reads cleanly.
    let mut value = normalize(value, "");
    let mut removed: Vec<KeyPath> = Vec::new();
    let (config, mut warnings) = loop {
        let (input, relaxed) = typing_input(&value);
        let problem = match typed(&input) {
            Err(problem) => problem,
            Ok(config) => match crate::rules::cross_field_problems(&config)
                .into_iter()
                .next()
            {
                Some(problem) => problem,
                None => break (config, relaxed),
            },
        };
        let Some(path) = problem.path().cloned() else {
            dropped.push(problem);
            return Err(ConfigErrors(dropped));
        };
        let original = original_path(&path, &removed);
        dropped.push(with_path(problem, original));
        // A problem inside a list entry takes the entry: a file or mount
        // without one of its fields is not the one that was meant.
        let entry = match path
            .segments()
            .iter()
            .rposition(|s| matches!(s, Segment::Index(_)))
        {
            Some(last) => KeyPath::from_segments(path.segments()[..=last].to_vec()),
            None => path,
        };
        match crate::tree::remove(&mut value, &entry) {
            Some(taken) if dropped.len() < MAX_DROPPED => removed.push(taken),
            // Nothing left to take out, or too much wrong: refused whole.
            _ => return Err(ConfigErrors(dropped)),
        }
    };
    // The walk's warnings have the document's paths already; the others
    // were found in the tree with entries taken out.
    let mut all = walk.warnings;
    warnings.extend(datasource_warnings(&config));
    warnings.extend(bond_option_warnings(&config));
    warnings.extend(crate::rules::cross_field_warnings(&config));
    warnings.extend(mount_length_warnings(&value));
    warnings.extend(services_include_warnings(&config));
    for warning in &mut warnings {
        let (path, line) = warning.place();
        *path = original_path(path, &removed);
        *line = None;
    }
    all.append(&mut warnings);
    if let Some(text) = text {
        let paths = dropped
            .iter()
            .filter_map(ConfigError::path)
            .chain(all.iter().map(Warning::path));
        let lines = crate::parse::yaml::lines_of(text, paths);
        for problem in &mut dropped {
            let line = problem.path().and_then(|path| lines.get(path).copied());
            problem.set_line(line);
        }
        for warning in &mut all {
            let (path, line) = warning.place();
            *line = lines.get(path).copied();
        }
    }
    // In the order of the text, as a person reads it.
    dropped.sort_by_key(|problem| problem.line().unwrap_or(usize::MAX));
    Ok(Checked {
        value,
        config,
        warnings: all,
        dropped,
    })
}

/// `path` (in the tree after `removed` were taken out, in that order) as
/// it was in the document: list entries after a removed one move back.
fn original_path(path: &KeyPath, removed: &[KeyPath]) -> KeyPath {
    let mut segments = path.segments().to_vec();
    for taken in removed.iter().rev() {
        let Some((Segment::Index(gone), list)) = taken.segments().split_last() else {
            continue;
        };
        if segments.len() > list.len()
            && segments[..list.len()] == *list
            && let Segment::Index(index) = &mut segments[list.len()]
            && *index >= *gone
        {
            *index += 1;
        }
    }
    KeyPath::from_segments(segments)
}

fn with_path(problem: ConfigError, found: KeyPath) -> ConfigError {
    match problem {
        ConfigError::UnknownKey {
            line, suggestion, ..
        } => ConfigError::UnknownKey {
            path: found,
            line,
            suggestion,
        },
        ConfigError::InvalidValue { line, message, .. } => ConfigError::InvalidValue {
            path: found,
            line,
            message,
        },
        ConfigError::Inconsistent { line, message, .. } => ConfigError::Inconsistent {
            path: found,
            line,
            message,
        },
        other => other,
    }
}

/// What the typed read gets: the tree without the RancherOS keys that
/// have no field here (warned about already) and without the interface
/// entries whose key is no interface name (RancherOS took those as
/// literal names, which no link can have: warned about and ignored).
fn typing_input(value: &Value) -> (Value, Vec<Warning>) {
    let mut input = strip_untyped(value.clone(), "");
    let mut warnings = Vec::new();
    let interfaces_path = KeyPath::root()
        .key("rancher")
        .key("network")
        .key("interfaces");
    let interfaces = input
        .get_mut("rancher")
        .and_then(|r| r.get_mut("network"))
        .and_then(|n| n.get_mut("interfaces"))
        .and_then(Value::as_mapping_mut);
    if let Some(interfaces) = interfaces {
        let bad: Vec<Value> = interfaces
            .keys()
            .filter(|key| {
                scalar_key(key)
                    .parse::<crate::schema::InterfaceKey>()
                    .is_err()
            })
            .cloned()
            .collect();
        for key in bad {
            let name = scalar_key(&key);
            interfaces.remove(&key);
            warnings.push(Warning::Accepted {
                path: interfaces_path.key(name.clone()),
                line: None,
                message: format!(
                    "`{name}` is not an interface name, glob or mac= (RancherOS took it as a literal \
                     name, which no link can have); the entry is ignored"
                ),
            });
        }
    }
    (input, warnings)
}

/// The tree without the keys the typed schema has no field for.
fn strip_untyped(value: Value, pattern: &str) -> Value {
    match value {
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .filter_map(|(key, child)| {
                    let name = scalar_key(&key);
                    match child_pattern(pattern, &name) {
                        Some(child_pattern) => match keys::find(&child_pattern) {
                            Some(spec) if !spec.typed => None,
                            Some(spec) if spec.free_form => Some((key, child)),
                            _ => Some((key, strip_untyped(child, &child_pattern))),
                        },
                        None => Some((key, child)),
                    }
                })
                .collect(),
        ),
        Value::Sequence(list) if keys::has_entry_keys(pattern) => {
            let entry_pattern = format!("{pattern}[]");
            Value::Sequence(
                list.into_iter()
                    .map(|entry| strip_untyped(entry, &entry_pattern))
                    .collect(),
            )
        }
        other => other,
    }
}

/// `services_include` turning on a RancherOS service this image does not
/// ship (`kernel-headers`, `open-vm-tools`, …): RancherOS pulled those from
/// its service repositories; here nothing starts. The one check of these
/// names: the boot shows the same warnings on the console.
pub fn services_include_warnings(config: &CloudConfig) -> Vec<Warning> {
    let path = KeyPath::root().key("rancher").key("services_include");
    config
        .rancher
        .services_include
        .iter()
        .filter(|(name, on)| {
            on.0 && !crate::layers::OPTIONAL
                .iter()
                .any(|(own, _)| *own == name.as_str())
        })
        .map(|(name, _)| Warning::Accepted {
            path: path.key(name.as_str()),
            line: None,
            message: format!(
                "`{name}` is not a service this image ships (RancherOS pulled it from its \
                 service repositories); nothing is started (available: {})",
                crate::layers::OPTIONAL
                    .iter()
                    .map(|(own, _)| *own)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect()
}

/// `mounts` entries with cloud-init's fifth and sixth fields (dump and
/// pass): RancherOS used the first four.
fn mount_length_warnings(value: &Value) -> Vec<Warning> {
    let Some(Value::Sequence(mounts)) = value.get("mounts") else {
        return Vec::new();
    };
    mounts
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| match entry {
            Value::Sequence(fields) if fields.len() > 4 => Some(Warning::Accepted {
                path: KeyPath::root().key("mounts").index(index),
                line: None,
                message: format!(
                    "{} fields: the first four (device, mount point, type, options) are used, \
                     the rest ignored, as RancherOS did",
                    fields.len()
                ),
            }),
            _ => None,
        })
        .collect()
}

/// Whether `path` names a key the schema has (for `ros config get/set`),
/// with the nearest valid key when it does not.
pub fn check_key_path(path: &KeyPath) -> Result<(), ConfigError> {
    // Any index is valid as far as the schema goes; probe with [0].
    let probe_path = KeyPath::from_segments(
        path.segments()
            .iter()
            .map(|segment| match segment {
                Segment::Index(_) => Segment::Index(0),
                key => key.clone(),
            })
            .collect(),
    );
    let mut probe = Value::Null;
    crate::tree::set(&mut probe, &probe_path, Value::Null).map_err(|error| {
        ConfigError::InvalidValue {
            path: path.clone(),
            line: None,
            message: error.to_string(),
        }
    })?;
    let mut walk = Walk::default();
    walk.value(&probe, &KeyPath::root(), "");
    match walk.errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn typed(value: &Value) -> Result<CloudConfig, ConfigError> {
    serde_path_to_error::deserialize(value.clone()).map_err(|error| {
        let path = key_path_of(error.path());
        ConfigError::InvalidValue {
            path,
            line: None,
            message: strip_location(&error.into_inner().to_string()),
        }
    })
}

/// The tree as the typed schema reads it: YAML tags dropped (`!!binary`
/// content is its base64 text) and keys set to null left out, so an empty
/// `write_files:` means the same as no `write_files` at all. Free-form
/// sections keep their nulls (`environment: {HOME: }` inherits HOME).
fn normalize(value: Value, pattern: &str) -> Value {
    match value {
        Value::Tagged(tagged) => normalize(tagged.value, pattern),
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .filter_map(|(key, child)| {
                    let name = scalar_key(&key);
                    let child_pattern = child_pattern(pattern, &name);
                    let free_form = child_pattern
                        .as_deref()
                        .and_then(keys::find)
                        .is_none_or(|spec| spec.free_form);
                    // A tag on a null (`key: !tag`) leaves a null.
                    let child = untag(child);
                    match (child, child_pattern) {
                        (Value::Null, _) if !free_form => None,
                        (child, Some(child_pattern)) if !free_form => {
                            Some((key, normalize(child, &child_pattern)))
                        }
                        (child, _) => Some((key, strip_tags(child))),
                    }
                })
                .collect(),
        ),
        Value::Sequence(list) if keys::has_entry_keys(pattern) => {
            let entry_pattern = format!("{pattern}[]");
            Value::Sequence(
                list.into_iter()
                    .map(|entry| normalize(entry, &entry_pattern))
                    .collect(),
            )
        }
        other => strip_tags(other),
    }
}

fn untag(value: Value) -> Value {
    match value {
        Value::Tagged(tagged) => untag(tagged.value),
        other => other,
    }
}

fn strip_tags(value: Value) -> Value {
    match value {
        Value::Tagged(tagged) => strip_tags(tagged.value),
        Value::Mapping(map) => {
            Value::Mapping(map.into_iter().map(|(k, v)| (k, strip_tags(v))).collect())
        }
        Value::Sequence(list) => Value::Sequence(list.into_iter().map(strip_tags).collect()),
        other => other,
    }
}

/// The key-table pattern of `name` under `parent`: exact, else the wildcard.
fn child_pattern(parent: &str, name: &str) -> Option<String> {
    let join = |segment: &str| {
        if parent.is_empty() {
            segment.to_owned()
        } else {
            format!("{parent}.{segment}")
        }
    };
    let exact = join(name);
    if keys::find(&exact).is_some() {
        return Some(exact);
    }
    let wildcard = join(ANY_NAME);
    keys::find(&wildcard).is_some().then_some(wildcard)
}

/// serde_norway puts the path before the message and " at line L column
/// C" after it; the error carries both already.
fn strip_location(message: &str) -> String {
    let message = match message.find(" at line ") {
        Some(index) => &message[..index],
        None => message,
    };
    match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => rest.to_owned(),
        _ => message.to_owned(),
    }
}

fn key_path_of(path: &serde_path_to_error::Path) -> KeyPath {
    let segments = path
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Segment::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect();
    KeyPath::from_segments(segments)
}

fn datasource_warnings(config: &CloudConfig) -> Vec<Warning> {
    let path = KeyPath::root()
        .key("rancher")
        .key("cloud_init")
        .key("datasources");
    config
        .rancher
        .cloud_init
        .datasources
        .iter()
        .enumerate()
        .filter_map(|(index, spec)| match spec {
            DatasourceSpec::Unsupported(name) => Some(Warning::UnsupportedDatasource {
                path: path.index(index),
                line: None,
                name: name.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// `bond_opts` keys RancherOS wrote to sysfs that this system does not set.
fn bond_option_warnings(config: &CloudConfig) -> Vec<Warning> {
    let interfaces = KeyPath::root()
        .key("rancher")
        .key("network")
        .key("interfaces");
    let mut warnings = Vec::new();
    for (key, interface) in &config.rancher.network.interfaces {
        for option in interface.bond_opts.keys() {
            if !crate::schema::network::BOND_OPTIONS.contains(&option.as_str()) {
                warnings.push(Warning::Unimplemented {
                    path: interfaces
                        .key(key.to_string())
                        .key("bond_opts")
                        .key(option.clone()),
                    line: None,
                });
            }
        }
    }
    warnings
}

/// Walks the tree against the key table.
#[derive(Default)]
struct Walk {
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
}

impl Walk {
    fn value(&mut self, value: &Value, path: &KeyPath, pattern: &str) {
        match value {
            Value::Mapping(map) => {
                for (key, child) in map {
                    let name = scalar_key(key);
                    self.entry(&name, child, path, pattern);
                }
            }
            Value::Sequence(list) if keys::has_entry_keys(pattern) => {
                let entry_pattern = format!("{pattern}[]");
                for (index, entry) in list.iter().enumerate() {
                    self.value(entry, &path.index(index), &entry_pattern);
                }
            }
            Value::Tagged(tagged) => self.value(&tagged.value, path, pattern),
            _ => {}
        }
    }

    fn entry(&mut self, name: &str, child: &Value, parent: &KeyPath, parent_pattern: &str) {
        let path = parent.key(name);
        let join = |segment: &str| {
            if parent_pattern.is_empty() {
                segment.to_owned()
            } else {
                format!("{parent_pattern}.{segment}")
            }
        };
        let exact = join(name);
        let wildcard = join(ANY_NAME);
        let (pattern, spec) = match (keys::find(&exact), keys::find(&wildcard)) {
            (Some(spec), _) => (exact, spec),
            (None, Some(spec)) => (wildcard, spec),
            (None, None) => {
                // A suggestion costs a search of the key table: only for
                // the keys that are listed.
                let listed = self.errors.len() < MAX_LISTED;
                self.errors.push(ConfigError::UnknownKey {
                    suggestion: listed
                        .then(|| suggest(name, parent, parent_pattern))
                        .flatten(),
                    path,
                    line: None,
                });
                return;
            }
        };
        // One warning per unimplemented section, not one per key inside it.
        let parent_unimplemented =
            keys::find(parent_pattern).is_some_and(|p| p.support == Support::Unimplemented);
        if spec.support == Support::Unimplemented && !parent_unimplemented {
            self.warnings.push(Warning::Unimplemented {
                path: path.clone(),
                line: None,
            });
        }
        if !spec.free_form {
            self.value(child, &path, &pattern);
        }
    }
}

fn scalar_key(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".to_owned(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// The nearest valid key: a sibling with a close spelling, or the same
/// name elsewhere in the schema (`network` at the top → `rancher.network`).
fn suggest(name: &str, parent: &KeyPath, parent_pattern: &str) -> Option<KeyPath> {
    let siblings = keys::known_children(parent_pattern);
    let close = siblings
        .iter()
        .filter(|s| s.as_str() != ANY_NAME)
        .map(|s| (strsim::damerau_levenshtein(name, s), s))
        .filter(|(distance, s)| *distance <= (s.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance);
    if let Some((_, sibling)) = close {
        return Some(parent.key(sibling.clone()));
    }
    let elsewhere = keys::all_patterns().into_iter().find(|pattern| {
        !pattern.contains(ANY_NAME)
            && !pattern.contains("[]")
            && pattern.rsplit('.').next() == Some(name)
    })?;
    KeyPath::parse(&elsewhere).ok()
}

/// The 1-based line of the key or list entry at `path` in `text`.
///
/// serde_norway marks errors with the position of the event being read, so
/// this walks the document with a visitor that fails exactly at the target.
pub fn locate(text: &str, path: &KeyPath) -> Option<usize> {
    if path.is_root() {
        return None;
    }
    let deserializer = serde_norway::Deserializer::from_str(text);
    match (Seek {
        rest: path.segments(),
    })
    .deserialize(deserializer)
    {
        Err(error) if error.to_string().contains(FOUND) => error.location().map(|l| l.line()),
        _ => None,
    }
}

const FOUND: &str = "found the located key";

struct Seek<'p> {
    rest: &'p [Segment],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(target), rest)) = self.rest.split_first() else {
            return Ok(());
        };
        while let Some(hit) = map.next_key_seed(KeyMatch {
            target,
            last: rest.is_empty(),
        })? {
            if hit {
                return map.next_value_seed(Seek { rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(target), rest)) = self.rest.split_first() else {
            return Ok(());
        };
        for _ in 0..*target {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        if rest.is_empty() {
            seq.next_element_seed(FailHere)?;
        } else {
            seq.next_element_seed(Seek { rest })?;
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!!binary`): look inside.
        let (IgnoredAny, variant) = data.variant()?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

/// Reads a map key; fails at it when it is the last segment of the target.
struct KeyMatch<'p> {
    target: &'p str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl KeyMatch<'_> {
    fn compare<E: de::Error>(&self, key: &str) -> Result<bool, E> {
        match (key == self.target, self.last) {
            (true, true) => Err(E::custom(FOUND)),
            (hit, _) => Ok(hit),
        }
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        self.compare(key)
    }
    fn visit_bool<E: de::Error>(self, key: bool) -> Result<bool, E> {
        self.compare(&key.to_string())
    }
    fn visit_i64<E: de::Error>(self, key: i64) -> Result<bool, E> {
        self.compare(&key.to_string())
    }
    fn visit_u64<E: de::Error>(self, key: u64) -> Result<bool, E> {
        self.compare(&key.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.compare("null")
    }
}

struct FailHere;

impl<'de> DeserializeSeed<'de> for FailHere {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(FailVisitor)
    }
}

struct FailVisitor;

impl<'de> Visitor<'de> for FailVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bond_options_warn_when_unknown_and_fail_when_invalid() {
        let checked = check_document(
            "rancher: {network: {interfaces: {bond0: {bond_opts: {mode: 1, arp_interval: 10}}}}}",
        )
        .unwrap();
        assert_eq!(
            checked.warnings,
            vec![Warning::Unimplemented {
                path: "rancher.network.interfaces.bond0.bond_opts.arp_interval"
                    .parse()
                    .unwrap(),
                line: Some(1),
            }]
        );
        let errors =
            check_document("rancher: {network: {interfaces: {bond0: {bond_opts: {mode: 9}}}}}")
                .unwrap_err();
        assert_eq!(
            errors.0[0].path().map(ToString::to_string).as_deref(),
            Some("rancher.network.interfaces.bond0.bond_opts.mode")
        );
    }

    #[test]
    fn key_paths_are_checked_against_the_schema() {
        for good in [
            "hostname",
            "rancher.network.interfaces.\"eth0.100\".dhcp",
            "rancher.services.web.image",
            "write_files[3].path",
            "rancher.sysctl.\"net.ipv4.ip_forward\"",
            "rancher.docker.engine",
        ] {
            assert_eq!(check_key_path(&good.parse().unwrap()), Ok(()), "{good}");
        }
        let error = check_key_path(&"rancher.netwrok.dns".parse().unwrap()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownKey);
        assert_eq!(
            error.to_string(),
            "unknown key `rancher.netwrok` (did you mean `rancher.network`?)"
        );
    }

    #[test]
    fn an_empty_section_means_the_same_as_no_section_and_exports_so() {
        // Found by the cloud_config fuzz target: `interfaces:` (empty) was
        // accepted but exported as `interfaces: null`, which was not.
        let checked =
            check_document("rancher:\n  network:\n    interfaces:\n  services:\n    web:\n")
                .unwrap();
        let exported = crate::export::export(checked.value.clone(), true).unwrap();
        assert_eq!(exported, "rancher:\n  network: {}\n  services: {}\n");
        assert_eq!(check_document(&exported).unwrap().config, checked.config);
        // A tagged null is a null (found by the fuzz target too).
        let checked = check_document("rancher:\n  services:\n    web: !x\n").unwrap();
        let exported = crate::export::export(checked.value.clone(), true).unwrap();
        assert_eq!(check_document(&exported).unwrap().config, checked.config);
        assert!(checked.config.rancher.services.is_empty());
        // Free-form maps keep their nulls.
        let checked =
            check_document("rancher: {services: {web: {image: x, environment: {HOME: }}}}")
                .unwrap();
        let web = &checked.config.rancher.services[&"web".parse().unwrap()];
        assert_eq!(web.environment.0, [("HOME".to_owned(), None)]);
    }

    #[test]
    fn locates_keys_and_list_entries() {
        let text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 1\n    - f: 2\n";
        for (path, line) in [
            ("a", Some(1)),
            ("b.c", Some(3)),
            ("b.d[1]", Some(6)),
            ("b.d[1].f", Some(6)),
            ("b.zz", None),
        ] {
            assert_eq!(locate(text, &path.parse().unwrap()), line, "{path}");
        }
    }
}
