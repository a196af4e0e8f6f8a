//! The first steps of PID 1: early mounts, the kernel command line, and the
//! switch from the initramfs to the real root.

pub mod counter;
pub mod grow;
pub mod loopdev;
pub mod medium;
pub mod mounts;
pub mod prefetch;
pub mod sequence;
pub mod state;
pub mod switch_root;

use std::path::Path;

/// The kernel command line, as the kernel gave it.
pub fn read_cmdline(proc_cmdline: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(proc_cmdline)?
        .trim_end()
        .to_string())
}
