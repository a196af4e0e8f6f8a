//! The hand-written parsers (nom): kernel command line, key paths, values.

pub mod cmdline;
pub mod keypath;
pub mod value;
pub mod yaml;
