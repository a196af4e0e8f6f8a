//! The machine's description: the RancherOS-style cloud-config schema, the
//! parsers for the kernel command line and key paths, the layering of
//! configuration sources, the atomic on-disk store and the datasources that
//! deliver user-data.
//!
//! How the rest of the system uses it:
//!
//! - PID 1 at boot: [`Layers::load`] (defaults < OEM < `cloud-config.d` <
//!   `cloud-config.yml` < kernel cmdline), then [`Layers::merged`] for the
//!   typed [`CloudConfig`]. Each layer is checked key by key: an invalid
//!   or unknown key is in [`Layers::problems`] (with its line and the
//!   nearest valid key) and left out alone, the rest of its layer applies;
//!   only a layer that is not a YAML mapping is left out whole. Every key
//!   RancherOS v1.5 had is known ([`schema::rancher_keys`]): applied, or
//!   accepted with a warning. With the configured datasources
//!   ([`datasource::from_specs`], [`datasource::fetch_first`]) it saves the
//!   user-data ([`userdata::UserData::save`]) as a `cloud-config.d` layer and
//!   loads the layers again.
//! - The network code reads `config.rancher.network`
//!   ([`schema::Network::config_for`] picks a link's settings).
//! - The services code reads `config.rancher.enabled_services()`.
//! - `ros config` reads and writes through [`Store`].

// Shipped code returns errors instead of panicking (tests may: clippy.toml)
// and never truncates silently.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod check;
pub mod cluster;
pub mod cmdline;
pub mod datasource;
pub mod export;
pub mod layers;
pub mod parse;
pub mod problem;
mod rules;
pub mod schema;
pub mod store;
pub mod tree;
pub mod userdata;

pub use check::{
    Checked, ConfigError, ConfigErrors, ErrorKind, Warning, check_document, check_key_path,
    check_value,
};
pub use cmdline::Cmdline;
pub use layers::{ConfigPaths, Layers};
pub use parse::keypath::{KeyPath, Segment};
pub use schema::CloudConfig;
pub use store::Store;
