//! `ros`: PID 1 of the machine and the `ros` command line, one binary.

pub mod apply;
pub mod boot;
pub mod cli;
pub mod config;
pub mod console;
pub mod host;
pub mod log;
pub mod network;
pub mod services;
pub mod supervise;
