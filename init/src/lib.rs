//! `ros`: PID 1 of the machine and the `ros` command line, one binary.

// Shipped code returns errors instead of panicking (tests may: clippy.toml):
// locked in while this crate is clean.
#![warn(clippy::unwrap_used, clippy::expect_used)]
// No silent truncation: a cast that may lose bits is a `try_from` with an
// error, or a one-line `allow` saying why the value fits. (Here, not in
// Cargo.toml: a crate's `[lints]` cannot add to `workspace = true`.)
#![deny(clippy::cast_possible_truncation)]

pub mod apply;
pub mod boot;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod host;
pub mod install;
pub mod log;
pub mod login;
pub mod network;
pub mod services;
pub mod supervise;
pub mod timeline;
pub mod untrusted;
pub mod user_containerd;

/// This binary in the root image: the shims run it to write logs, crun
/// runs it as the network hook, the user containerd's container starts it.
pub const ROS_BINARY: &str = "/usr/bin/ros";
