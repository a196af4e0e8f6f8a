//! The problems a check finds: errors that leave a key out (or refuse a
//! document) and warnings that accept it. Their own module so that
//! [`crate::check`] (the walk and the typed read) and [`crate::rules`]
//! (the checks across fields) both use them without needing each other.

use std::fmt;

use crate::parse::keypath::KeyPath;

/// What kind of problem a [`ConfigError`] is; tests match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not YAML.
    Syntax,
    /// The document is not a mapping.
    NotAMapping,
    /// A key the schema does not have.
    UnknownKey,
    /// A value of the wrong type or form.
    InvalidValue,
    /// Values that do not fit together.
    Inconsistent,
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|line| format!("line {line}: "))
        .unwrap_or_default()
}

fn did_you_mean(suggestion: &Option<KeyPath>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// One problem with a cloud-config document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not YAML.
    #[error("{}YAML syntax error: {message}", at_line(.line))]
    Syntax {
        /// Where, if the parser said.
        line: Option<usize>,
        /// What the YAML parser said.
        message: String,
    },
    /// The document is a scalar or a list.
    #[error("a cloud-config document is a mapping of keys, not {found}")]
    NotAMapping {
        /// What it is instead.
        found: &'static str,
    },
    /// A key the schema does not have.
    #[error("{}unknown key `{path}`{}", at_line(.line), did_you_mean(.suggestion))]
    UnknownKey {
        /// The full key path.
        path: KeyPath,
        /// Its line.
        line: Option<usize>,
        /// The nearest valid key.
        suggestion: Option<KeyPath>,
    },
    /// A value of the wrong type or form.
    #[error("{}`{path}`: {message}", at_line(.line))]
    InvalidValue {
        /// The key path of the value.
        path: KeyPath,
        /// Its line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Values that do not fit together.
    #[error("{}`{path}`: {message}", at_line(.line))]
    Inconsistent {
        /// The key path of the value at fault.
        path: KeyPath,
        /// Its line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The kind, for matching.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Syntax { .. } => ErrorKind::Syntax,
            Self::NotAMapping { .. } => ErrorKind::NotAMapping,
            Self::UnknownKey { .. } => ErrorKind::UnknownKey,
            Self::InvalidValue { .. } => ErrorKind::InvalidValue,
            Self::Inconsistent { .. } => ErrorKind::Inconsistent,
        }
    }

    /// The key path at fault, when there is one.
    pub fn path(&self) -> Option<&KeyPath> {
        match self {
            Self::UnknownKey { path, .. }
            | Self::InvalidValue { path, .. }
            | Self::Inconsistent { path, .. } => Some(path),
            Self::Syntax { .. } | Self::NotAMapping { .. } => None,
        }
    }

    /// The 1-based line, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Syntax { line, .. }
            | Self::UnknownKey { line, .. }
            | Self::InvalidValue { line, .. }
            | Self::Inconsistent { line, .. } => *line,
            Self::NotAMapping { .. } => None,
        }
    }

    /// The same error without its line: for a document generated from a
    /// tree, whose lines mean nothing to the person who asked.
    pub fn without_line(mut self) -> Self {
        self.set_line(None);
        self
    }

    pub(crate) fn set_line(&mut self, found: Option<usize>) {
        match self {
            Self::UnknownKey { line, .. }
            | Self::InvalidValue { line, .. }
            | Self::Inconsistent { line, .. } => *line = found,
            Self::Syntax { .. } | Self::NotAMapping { .. } => {}
        }
    }
}

/// Every problem found in one document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Something accepted that will not do what the user may expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// A RancherOS key this system reads but does not apply.
    #[error("{}`{path}` is a RancherOS key this system does not implement; it is ignored", at_line(.line))]
    Unimplemented {
        /// The key.
        path: KeyPath,
        /// Its line.
        line: Option<usize>,
    },
    /// Something RancherOS accepted that this system would have refused:
    /// accepted, with what happens instead.
    #[error("{}`{path}`: {message}", at_line(.line))]
    Accepted {
        /// The key.
        path: KeyPath,
        /// Its line.
        line: Option<usize>,
        /// What was accepted and what it means here.
        message: String,
    },
    /// A RancherOS datasource this system does not have.
    #[error("{}`{path}`: datasource `{name}` is not supported here; it is skipped", at_line(.line))]
    UnsupportedDatasource {
        /// Where it is listed.
        path: KeyPath,
        /// Its line.
        line: Option<usize>,
        /// The datasource.
        name: String,
    },
}

impl Warning {
    pub(crate) fn place(&mut self) -> (&mut KeyPath, &mut Option<usize>) {
        match self {
            Self::Unimplemented { path, line }
            | Self::Accepted { path, line, .. }
            | Self::UnsupportedDatasource { path, line, .. } => (path, line),
        }
    }

    /// The key path it is about.
    pub fn path(&self) -> &KeyPath {
        match self {
            Self::Unimplemented { path, .. }
            | Self::Accepted { path, .. }
            | Self::UnsupportedDatasource { path, .. } => path,
        }
    }
}
