//! `ros`: PID 1 of the machine and the `ros` command line, one binary.

pub mod cli;
