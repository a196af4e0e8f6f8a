//! `ros log-pipe FILE`: run by containerd's shim for each service task
//! (the `binary://` log URI), with the task's stdout on fd 3, its stderr
//! on fd 4, and fd 5 to close once ready. Copies both into FILE, rotating
//! it by size, until the task and everything holding its output are gone.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::signal::{SigHandler, Signal, signal};
use system_services::logs::{self, RotatingFile, Rotation, Sink};

const STDOUT_FD: RawFd = 3;
const STDERR_FD: RawFd = 4;
const READY_FD: RawFd = 5;

/// Takes ownership of an inherited descriptor, if it is open.
fn inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails (EBADF)
    // when nothing is open there.
    let open = fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        FcntlArg::F_GETFD,
    )
    .is_ok();
    // SAFETY: the descriptor is open, was given to this process by the
    // shim for this purpose, and nothing else in it owns it.
    open.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let (Some(stdout), Some(stderr), Some(ready)) = (
        inherited(STDOUT_FD),
        inherited(STDERR_FD),
        inherited(READY_FD),
    ) else {
        bail!("log-pipe is run by containerd's shim, with a task's output on fds 3 and 4");
    };
    // The shim sends SIGTERM when the task is deleted, right after closing
    // its ends of the pipes: what is still in them is written first, and
    // the end of the pipes ends this process.
    // SAFETY: ignoring a signal installs no handler code.
    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }?;
    let sink = match RotatingFile::open(file, Rotation::default()) {
        Ok(file) => Sink::File(file),
        Err(err) => {
            // Still read the pipes: a task writing into a pipe nobody
            // reads would block, or die of SIGPIPE.
            eprintln!("ros log-pipe: {}: {err}; output is dropped", file.display());
            Sink::Discard
        }
    };
    // The shim waits for this before it starts the task.
    drop(ready);
    logs::copy_streams(vec![File::from(stdout), File::from(stderr)], sink)?;
    Ok(ExitCode::SUCCESS)
}
