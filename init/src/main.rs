//! `ros`: PID 1 when the kernel starts it, the command line otherwise.
//!
//! As PID 1 the boot is [`ros::boot::sequence`]: mount_early,
//! read_cmdline, start_logging, switch_root, become_subreaper, then
//! (asynchronously) start_reaper, loopback_up, mount_state, count_boot,
//! load_config, apply_early, start_containerd, start_network,
//! join_network_user_data, containerd_answering, connect_runtime,
//! start_services (`ros: ready`), start_late_commands; on a shutdown
//! request, stop, then kill, sync, unmount and reboot(2).

// Shipped code returns errors instead of panicking (tests may: clippy.toml):
// locked in while this crate is clean.
#![warn(clippy::unwrap_used, clippy::expect_used)]
// No silent truncation (see lib.rs).
#![deny(clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;

use ros::host::RealHost;
use ros::{console, timeline};

fn main() -> std::process::ExitCode {
    if runs_as_init() {
        boot();
    }
    ros::cli::run(std::env::args_os())
}

/// PID 1, or started as `init` (the initramfs's /init). The user
/// containerd's container starts `ros user-containerd` as PID 1 of its own
/// PID namespace: that is not the machine's init.
fn runs_as_init() -> bool {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let in_container = args.next().is_some_and(|arg| arg == "user-containerd");
    (std::process::id() == 1 && !in_container)
        || Path::new(&argv0)
            .file_name()
            .is_some_and(|name| name == "init")
}

/// PID 1 never returns: whatever happens ends in an orderly shutdown.
fn boot() -> ! {
    // First: the timeline starts where the kernel handed over.
    timeline::start();
    install_panic_hook();
    ros::boot::sequence::run(Arc::new(RealHost))
}

/// A panic in PID 1 would panic the kernel: log it, sync, and reboot.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        use std::io::Write;
        // A parser on untrusted input: it unwinds to its caller, which
        // makes it an error for that input (ros::untrusted).
        if ros::untrusted::inside() {
            if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
                let _ = write!(kmsg, "<3>ros: parser panicked on untrusted input: {info}");
            }
            return;
        }
        if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            let _ = write!(kmsg, "<0>ros: PID 1 panicked: {info}");
        }
        console::line(&format!("ros: PID 1 panicked: {info}"));
        nix::unistd::sync();
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    }));
}
