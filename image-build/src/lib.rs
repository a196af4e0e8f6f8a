//! The parts of `image-build` other crates use: the initrd's cpio format
//! and ELF inspection (the QEMU tests build small initrds of their own).

// Shipped code returns errors instead of panicking (tests may: clippy.toml)
// and never truncates silently: locked in while this crate is clean.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod cpio;
pub mod elf;
