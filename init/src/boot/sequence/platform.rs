//! What the boot's steps start besides [`Host`](crate::host::Host)'s
//! syscalls: the log, the reaper, the loopback link, the system
//! containerd and the network. On the machine each is the real thing
//! ([`RealPlatform`]); a test of the sequence gives a fake that spawns
//! nothing, so the steps' own logic runs without root, processes or
//! netlink.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use os_config::schema::{Hostname, Network};
use system_services::daemon::DaemonConfig;

use crate::network::NetworkHandle;
use crate::network::rtnl::RtNetlink;
use crate::supervise::containerd::Supervised;
use crate::supervise::reaper::Reaper;
use crate::{log, network};

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The parts of the machine the boot starts and keeps running.
pub trait Platform: Send + Sync {
    /// PID 1's log, at debug level when `debug`.
    fn start_logging(&self, debug: bool) -> io::Result<()>;
    /// The one owner of `waitpid(-1)`; inside the tokio runtime.
    fn start_reaper(&self) -> io::Result<Arc<Reaper>>;
    /// `lo` up.
    fn loopback_up(&self) -> io::Result<()>;
    /// Reads the programs the boot starts ahead, on the other CPUs.
    fn start_prefetch(&self);
    /// The system containerd, spawned through `reaper` and supervised.
    fn start_containerd(&self, reaper: Arc<Reaper>, daemon: DaemonConfig) -> Supervised;
    /// Links, addresses and DHCP as `network` says, in the background.
    fn start_network<'a>(
        &'a self,
        network: &'a Network,
        hostname: Option<&'a Hostname>,
    ) -> BoxFuture<'a, Result<NetworkHandle<RtNetlink>, network::netlink::NetlinkError>>;
}

/// The machine's: /dev/kmsg, SIGCHLD, rtnetlink, `/usr/bin/containerd`.
#[derive(Debug, Default)]
pub struct RealPlatform;

impl Platform for RealPlatform {
    fn start_logging(&self, debug: bool) -> io::Result<()> {
        log::init_kmsg(debug)
    }

    fn start_reaper(&self) -> io::Result<Arc<Reaper>> {
        Reaper::start()
    }

    fn loopback_up(&self) -> io::Result<()> {
        network::loopback::up()
    }

    fn start_prefetch(&self) {
        crate::boot::prefetch::start(crate::boot::prefetch::BOOT_PROGRAMS);
    }

    fn start_containerd(&self, reaper: Arc<Reaper>, daemon: DaemonConfig) -> Supervised {
        Supervised::start(reaper, daemon)
    }

    fn start_network<'a>(
        &'a self,
        network: &'a Network,
        hostname: Option<&'a Hostname>,
    ) -> BoxFuture<'a, Result<NetworkHandle<RtNetlink>, network::netlink::NetlinkError>> {
        Box::pin(network::start_system(network, hostname))
    }
}
