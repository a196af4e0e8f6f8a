//! The parts of `image-build` other crates use: the initrd's cpio format
//! and ELF inspection (the QEMU tests build small initrds of their own).

pub mod cpio;
pub mod elf;
