//! What PID 1 does once booted: reap every child, keep the system
//! containerd running, and turn signals into an orderly shutdown.

pub mod containerd;
pub mod reaper;
pub mod shutdown;
