//! Drives QEMU for the image tests: boot, serial console, commands, power off.
