//! Every system service is a container of the system containerd. This crate
//! turns service definitions into OCI specs, drives containerd, and keeps
//! the services running.
//!
//! How the parts fit:
//!
//! - [`definition`]: `rancher.services.<name>` (compose keys and the
//!   `io.rancher.os.*` labels) to a [`service::Service`], every problem
//!   named by service and key;
//! - [`order`]: the start order from the after/before labels; cycles and
//!   missing services are reported and left out, the rest start;
//! - [`spec`] (with [`seccomp`]): the OCI spec, least privilege by default;
//! - [`supervisor`]: one service kept running: create or re-attach,
//!   restart with [`restart::Backoff`], stop with SIGTERM then SIGKILL;
//! - [`engine`]: the set of services, started as their dependencies settle,
//!   stopped in reverse;
//! - [`containerd`] behind [`runtime::ContainerRuntime`] ([`fake`] for
//!   tests); [`logs`] for the rotated per-service logs `ros log-pipe`
//!   writes; [`control`] for `ros service` talking to PID 1.
//!
//! Exits are seen with containerd's `Tasks.Wait`, one call per running
//! task, not the `/tasks/exit` event stream: Wait is answered from the
//! same exit event, so it is no slower, and it survives a restart of
//! containerd better: a Wait on a task that exited while containerd was
//! down returns at once with its exit status, whereas events sent while
//! nobody was subscribed are gone.
//!
//! Measured on the development host (2 shared cores, runc, private
//! containerd 1.6; `cargo test -p ros --test services_containerd --
//! --nocapture`): one service created and started in 130–180 ms; a crashed
//! service running again 230–270 ms after the SIGKILL (100 ms of it the
//! first backoff); re-attach to a task that survived containerd being
//! killed, 105 ms after containerd answers again, same pid, no new shim.

// Shipped code returns errors instead of panicking (tests may: clippy.toml)
// and never truncates silently: locked in while this crate is clean.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod containerd;
pub mod control;
pub mod daemon;
pub mod definition;
pub mod engine;
pub mod fake;
pub mod image;
pub mod logs;
pub mod order;
pub mod restart;
pub mod root;
pub mod runtime;
pub mod seccomp;
pub mod service;
pub mod spec;
pub mod supervisor;
