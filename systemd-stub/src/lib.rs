//! A stand-in `libsystemd.so.0` for rsyslog, which runs here as a
//! container on a machine that systemd did not boot.
//!
//! Debian's rsyslogd and its `imuxsock` module link libsystemd for four
//! functions (`objdump -T`): `sd_booted`, `sd_listen_fds`,
//! `sd_is_socket_unix` (socket activation of `/dev/log`) and `sd_notify`
//! (readiness). libsystemd brings libgcrypt, libgpg-error, libzstd, liblz4
//! and liblzma: 3.4 MB uncompressed, 1.2 MB in the squashfs, for answers
//! that are fixed in our containers. This library exports those four
//! functions under the same soname and symbol version (`LIBSYSTEMD_209`,
//! see `build.rs` and `libsystemd.map`) and answers as libsystemd does in
//! such a container:
//! - `sd_booted`: 0, no `/run/systemd/system` (nothing here is systemd);
//! - `sd_listen_fds`: 0, no `LISTEN_PID`/`LISTEN_FDS` (ros passes no
//!   sockets: rsyslog opens `/dev/log` itself);
//! - `sd_notify`: 0, no `NOTIFY_SOCKET` (ros watches the task, not a
//!   readiness message);
//! - `sd_is_socket_unix`: `-EBADF` for a negative descriptor, as
//!   libsystemd; else 0 ("not such a socket"). rsyslog asks it only about
//!   descriptors `sd_listen_fds` handed over, and there are none.
//!
//! Built with `panic = "abort"` (image-build builds it in release) the
//! library is `no_std` and needs nothing from libc; with unwinding (tests,
//! debug builds) std provides the panic runtime.

#![cfg_attr(panic = "abort", no_std)]

use core::ffi::{c_char, c_int};

/// `EBADF`, negated as libsystemd returns errors.
const EBADF: c_int = 9;

/// Whether systemd booted the machine: never, here.
#[unsafe(no_mangle)]
pub extern "C" fn sd_booted() -> c_int {
    0
}

/// How many sockets were passed by socket activation: none. With
/// `unset_environment` libsystemd also removes the variables, which are
/// not set here.
#[unsafe(no_mangle)]
pub extern "C" fn sd_listen_fds(_unset_environment: c_int) -> c_int {
    0
}

/// Whether `fd` is a Unix socket of the given kind: never asked about a
/// passed socket (there are none), so the answer is "no", after the
/// check libsystemd makes first.
#[unsafe(no_mangle)]
pub extern "C" fn sd_is_socket_unix(
    fd: c_int,
    _kind: c_int,
    _listening: c_int,
    _path: *const c_char,
    _length: usize,
) -> c_int {
    if fd < 0 { -EBADF } else { 0 }
}

/// Sends a readiness message to the service manager: there is no
/// `NOTIFY_SOCKET`, which libsystemd answers with 0 (nothing sent).
#[unsafe(no_mangle)]
pub extern "C" fn sd_notify(_unset_environment: c_int, _state: *const c_char) -> c_int {
    0
}

// Each function under the version its callers ask for (the version
// script makes everything else local).
core::arch::global_asm!(
    ".symver sd_booted, sd_booted@@LIBSYSTEMD_209",
    ".symver sd_listen_fds, sd_listen_fds@@LIBSYSTEMD_209",
    ".symver sd_is_socket_unix, sd_is_socket_unix@@LIBSYSTEMD_209",
    ".symver sd_notify, sd_notify@@LIBSYSTEMD_209",
);

/// Nothing here can panic; a panic handler is still required without std.
#[cfg(all(panic = "abort", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_was_not_booted_by_systemd_and_no_socket_was_passed() {
        assert_eq!(sd_booted(), 0);
        assert_eq!(sd_listen_fds(0), 0);
        assert_eq!(sd_listen_fds(1), 0);
    }

    #[test]
    fn readiness_goes_nowhere_as_without_a_notify_socket() {
        assert_eq!(sd_notify(0, c"READY=1".as_ptr()), 0);
        assert_eq!(sd_notify(1, core::ptr::null()), 0);
    }

    #[test]
    fn a_negative_descriptor_is_ebadf_and_any_other_is_not_a_passed_socket() {
        assert_eq!(sd_is_socket_unix(-1, 1, 1, core::ptr::null(), 0), -EBADF);
        assert_eq!(sd_is_socket_unix(3, 1, 1, core::ptr::null(), 0), 0);
    }
}
