//! The machine's description: the RancherOS-style cloud-config schema, the
//! parsers for the kernel command line and key paths, the layering of
//! configuration sources, the atomic on-disk store and the datasources that
//! deliver user-data.

pub mod check;
pub mod datasource;
pub mod export;
pub mod layers;
pub mod parse;
mod rules;
pub mod schema;
pub mod store;
pub mod tree;
pub mod userdata;

pub use check::{
    Checked, ConfigError, ConfigErrors, ErrorKind, Warning, check_document, check_key_path,
    check_value,
};
pub use layers::{ConfigPaths, Layers};
pub use parse::keypath::{KeyPath, Segment};
pub use schema::CloudConfig;
pub use store::Store;
