//! Every system service is a container of the system containerd. This crate
//! turns service definitions into OCI specs, drives containerd, and keeps
//! the services running.

pub mod containerd;
pub mod control;
pub mod daemon;
pub mod definition;
pub mod engine;
pub mod fake;
pub mod logs;
pub mod order;
pub mod restart;
pub mod root;
pub mod runtime;
pub mod seccomp;
pub mod service;
pub mod spec;
pub mod supervisor;
