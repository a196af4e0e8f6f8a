//! Networking for the user's containers, done in-process over netlink: no
//! CNI plugins, no `ip` or `nft` binaries.
//!
//! crun runs `ros net-hook up` as an OCI `createRuntime` hook (the
//! container's network namespace exists, its process has not started) and
//! `ros net-hook down` as a `poststop` hook; both hand the OCI state JSON to
//! [`hook`]. The container's annotations ([`ANNOTATION_BRIDGE`],
//! [`ANNOTATION_SUBNET`], [`ANNOTATION_PORTS`], [`ANNOTATION_MTU`]) say what
//! it wants; [`Settings`] reads them.
//!
//! `up`, step by step, each step named in its error:
//! 1. a process in the host's own network namespace is refused (the hook
//!    is for bridge mode);
//! 2. the published ports are claimed in the state directory
//!    ([`STATE_DIR`], one `O_EXCL` file per port, `ports/tcp-8080`) and
//!    checked free on the host (a DNAT rule would steal sshd's traffic);
//! 3. the lowest free address of the subnet is claimed the same way
//!    (`addresses/172.18.0.2`); [`address_of`] and [`port_owner`] read them;
//! 4. the bridge is made (or found) with the gateway address and brought
//!    up; IPv4 forwarding is switched on for the host namespace;
//! 5. a veth pair is made: the host side `veth<hash of id>` ([`veth_name`];
//!    its alias is the container id, so a name clash is noticed, not
//!    destroyed) joins the bridge; the peer is created directly in the
//!    container's namespace (`/proc/<pid>/ns/net`) as `eth0` — one request
//!    instead of create, move and rename;
//! 6. inside that namespace (a thread that `setns`es there; the process
//!    stays put), `eth0` gets the address, `eth0` and `lo` go up, the
//!    default route goes via the gateway;
//! 7. NAT, in one nftables batch (module `nft`, its own netlink encoding):
//!    one table of our own, `ip ros`, nothing else touched, with NAT base
//!    chains `prerouting`, `output` and `postrouting` and a filter chain
//!    `guard`. `postrouting` masquerades the subnet leaving by any
//!    interface but the bridge, and 127.0.0.0/8 entering the bridge, so
//!    `wget 127.0.0.1:8080` on the host works (with `route_localnet` on the
//!    bridge; `guard` then drops what a container sends to 127.0.0.0/8,
//!    which `route_localnet` would otherwise let reach the host's loopback
//!    services). Each published port is a DNAT rule in `prerouting`
//!    (arriving on any interface but the bridge, for one of the host's own
//!    addresses: `fib daddr type local`) and one in `output` (the host
//!    connecting to one of its own addresses).
//!
//! Rules of a container are tagged, not chained: each carries the comment
//! `ros container <id>` in its `NFTA_RULE_USERDATA` (`nft list` shows it).
//! `down` lists the table and deletes exactly those rules by handle, in one
//! batch. A chain per container would still need a tagged `jump` rule in
//! each base chain to find and delete, so tags alone are simpler. The
//! bridge's own rules (masquerade, guard) are added once and stay.
//!
//! `down` removes the container's rules, its veth (usually gone with its
//! namespace already), its port and address files, in that order: while a
//! rule may still send traffic to the address, the address stays taken.
//! Everything is keyed by the container id, so `down` twice, `down` after a
//! failed `up`, and `up` again after a crash without `down` all work; a
//! failed `up` undoes itself. Hooks take turns through a lock file in the
//! state directory; a hook gives up within [`HOOK_TIMEOUT`] (5 s).
//!
//! Not done: IPv6; a container reaching a published port through the
//! host's address (hairpin NAT); opening a `forward` policy of other
//! tables that drops forwarded traffic. Kernel needs: bridge, veth,
//! nf_tables with `nft_nat`, `nft_masq` and `nft_fib_ipv4`.

// Shipped code returns errors instead of panicking (tests may: clippy.toml)
// and never truncates silently: locked in while this crate is clean.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

mod links;
mod nft;
mod settings;
mod state;

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

pub use links::ContainerSideError;
pub use nft::NftError;
pub use settings::{
    ANNOTATION_BRIDGE, ANNOTATION_MTU, ANNOTATION_PORTS, ANNOTATION_SUBNET, DEFAULT_BRIDGE,
    DEFAULT_SUBNET, Proto, PublishedPort, Settings, SettingsError, Subnet, UnknownProto,
    parse_ports,
};
pub use state::{address_of, port_owner};

use nft::{Chain, Change, Nft};
use state::Claim;

/// Where the addresses and ports in use are recorded.
pub const STATE_DIR: &str = "/run/containerd/io.ros/net";

/// How long a hook may take, whatever it waits for.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Of [`HOOK_TIMEOUT`], what a failed `up` keeps for undoing itself.
const UNDO_TIME: Duration = Duration::from_secs(1);

/// Which OCI hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `createRuntime`: wire the new container.
    Up,
    /// `poststop`: unwire it.
    Down,
}

/// A hook phase other than `up` or `down`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase {0:?}; use up or down")]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "up" => Ok(Self::Up),
            "down" => Ok(Self::Down),
            other => Err(UnknownPhase(other.to_owned())),
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("{0}")]
    Netlink(String),
    #[error(transparent)]
    ContainerSide(#[from] ContainerSideError),
    #[error("no answer in time (the hook gives up after {} s)", HOOK_TIMEOUT.as_secs())]
    TimedOut,
}

impl From<rtnetlink::Error> for Cause {
    fn from(error: rtnetlink::Error) -> Self {
        match links::errno(&error) {
            Some(errno) if errno > 0 => Self::Io(io::Error::from_raw_os_error(errno)),
            _ => Self::Netlink(error.to_string()),
        }
    }
}

fn id_prefix(id: &Option<String>) -> String {
    id.as_ref().map(|id| format!("{id}: ")).unwrap_or_default()
}

/// A failed hook or check; each names the container and the step.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("reading the OCI container state: {0}")]
    State(#[source] serde_json::Error),
    #[error("{0:?} is not a container id (letters, digits and . _ -, at most 76)")]
    InvalidId(String),
    #[error("{id}: the OCI state has no pid; the hook must run as createRuntime")]
    NoPid { id: String },
    #[error("{id}: {source}")]
    Settings {
        id: String,
        #[source]
        source: SettingsError,
    },
    #[error("{id}: {proto} port {port} is already published by container {owner}")]
    PortTaken {
        id: String,
        proto: Proto,
        port: u16,
        owner: String,
    },
    #[error("{}{proto} port {port} is in use on the host: {source}", id_prefix(id))]
    HostPortInUse {
        id: Option<String>,
        proto: Proto,
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("{id}: no free address left in {subnet}")]
    SubnetFull { id: String, subnet: Subnet },
    #[error("{id}: link {veth} exists and belongs to {owner:?}, not to this container")]
    VethTaken {
        id: String,
        veth: String,
        owner: String,
    },
    #[error(
        "{id}: pid {pid} is in the host's network namespace; the hook is for bridge-mode containers only"
    )]
    HostNetns { id: String, pid: i32 },
    #[error("{id}: {step}: {source}")]
    Step {
        id: String,
        step: String,
        #[source]
        source: Cause,
    },
}

/// The OCI state crun passes on stdin; only what we use.
#[derive(Debug, serde::Deserialize)]
struct OciState {
    id: String,
    #[serde(default)]
    pid: Option<i32>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// Runs one OCI hook: reads the state JSON crun writes on stdin, then
/// wires (`Up`) or unwires (`Down`) that container.
pub fn hook(
    phase: Phase,
    state_json: &mut impl io::Read,
    state_dir: &Path,
) -> Result<(), NetError> {
    let state: OciState = serde_json::from_reader(state_json).map_err(NetError::State)?;
    match phase {
        Phase::Up => {
            let pid = state
                .pid
                .filter(|pid| *pid > 0)
                .ok_or_else(|| NetError::NoPid {
                    id: state.id.clone(),
                })?;
            let settings = Settings::from_annotations(&state.annotations).map_err(|source| {
                NetError::Settings {
                    id: state.id.clone(),
                    source,
                }
            })?;
            up(&state.id, pid, &settings, state_dir).map(|_| ())
        }
        Phase::Down => down(&state.id, state_dir),
    }
}

/// containerd's rule for ids: letters and digits, single `.`, `_` or `-`
/// between them, at most 76 characters. Ids become file names here.
fn check_id(id: &str) -> Result<(), NetError> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let valid = id.len() <= 76
        && alnum(id.chars().next())
        && alnum(id.chars().last())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !id
            .as_bytes()
            .windows(2)
            .any(|w| !w[0].is_ascii_alphanumeric() && !w[1].is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(NetError::InvalidId(id.to_string()))
    }
}

/// The host side of a container's veth pair: `veth` and 10 hex digits of
/// a hash of the id (14 characters; link names have at most 15).
pub fn veth_name(id: &str) -> String {
    // FNV-1a: stable across builds and versions, unlike `DefaultHasher`.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("veth{:010x}", hash >> 24)
}

/// Fails when a host process holds `port`/`proto` (sshd on 22): a DNAT
/// rule would silently take its traffic. Binds `0.0.0.0:port` in the
/// current network namespace and lets go at once.
pub fn check_host_port_free(proto: Proto, port: u16) -> Result<(), NetError> {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let bound = match proto {
        Proto::Tcp => TcpListener::bind(addr).map(drop),
        Proto::Udp => UdpSocket::bind(addr).map(drop),
    };
    bound.map_err(|source| NetError::HostPortInUse {
        id: None,
        proto,
        port,
        source,
    })
}

/// One hook's run: the container, the runtime, the time left.
struct Run<'a> {
    id: &'a str,
    deadline: Instant,
    runtime: tokio::runtime::Runtime,
}

impl<'a> Run<'a> {
    fn new(id: &'a str, deadline: Instant) -> Result<Self, NetError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Self::failed(id, "starting the netlink runtime", e))?;
        Ok(Self {
            id,
            deadline,
            runtime,
        })
    }

    fn failed(id: &str, step: impl fmt::Display, cause: impl Into<Cause>) -> NetError {
        NetError::Step {
            id: id.to_string(),
            step: step.to_string(),
            source: cause.into(),
        }
    }

    fn fail(&self, step: impl fmt::Display) -> impl FnOnce(Cause) -> NetError {
        let (id, step) = (self.id.to_string(), step.to_string());
        move |source| NetError::Step { id, step, source }
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs a netlink request, giving up at the deadline.
    fn wait<T, E: Into<Cause>>(
        &self,
        step: impl fmt::Display,
        request: impl Future<Output = Result<T, E>>,
    ) -> Result<T, NetError> {
        let left = self.left();
        // The timer needs the runtime: make it inside.
        match self
            .runtime
            .block_on(async { tokio::time::timeout(left, request).await })
        {
            Ok(result) => result.map_err(|e| self.fail(step)(e.into())),
            Err(_) => Err(self.fail(step)(Cause::TimedOut)),
        }
    }

    fn rtnetlink(&self) -> Result<rtnetlink::Handle, NetError> {
        self.wait("opening a route netlink socket", async { links::connect() })
    }

    fn nft(&self) -> Result<Nft, NetError> {
        Nft::open(self.left())
            .map_err(|e| self.fail("opening a netfilter netlink socket")(e.into()))
    }

    /// Takes the state directory's lock, waiting for other hooks.
    fn lock(&self, state_dir: &Path) -> Result<nix::fcntl::Flock<File>, NetError> {
        let step = || format!("locking {}", state_dir.join("lock").display());
        fs::create_dir_all(state_dir).map_err(|e| self.fail(step())(e.into()))?;
        let mut file =
            File::create(state_dir.join("lock")).map_err(|e| self.fail(step())(e.into()))?;
        loop {
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((back, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < self.deadline => {
                    file = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(self.fail(step())(Cause::TimedOut));
                }
                Err((_, errno)) => return Err(self.fail(step())(io::Error::from(errno).into())),
            }
        }
    }
}

/// Wires container `id`, whose process is `pid`, as `settings` ask;
/// returns the container's address. On failure, undoes what it did.
pub fn up(id: &str, pid: i32, settings: &Settings, state_dir: &Path) -> Result<Ipv4Addr, NetError> {
    check_id(id)?;
    off_runtime(|| up_now(id, pid, settings, state_dir))
}

/// Runs `f` on a thread of its own when called from inside a tokio
/// runtime (the `ros` CLI may be), where ours could not block; the thread
/// starts in the caller's network namespace.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn up_now(id: &str, pid: i32, settings: &Settings, state_dir: &Path) -> Result<Ipv4Addr, NetError> {
    let start = Instant::now();
    let run = Run::new(id, start + HOOK_TIMEOUT - UNDO_TIME)?;
    let _lock = run.lock(state_dir)?;
    let result = up_locked(&run, pid, settings, state_dir);
    if result.is_err() {
        let undo = Run {
            deadline: start + HOOK_TIMEOUT,
            ..run
        };
        if let Err(error) = down_locked(&undo, state_dir) {
            tracing::warn!("undoing a failed up: {error}");
        }
    } else {
        tracing::debug!("{id}: up in {} ms", start.elapsed().as_millis());
    }
    result
}

fn up_locked(
    run: &Run,
    pid: i32,
    settings: &Settings,
    state_dir: &Path,
) -> Result<Ipv4Addr, NetError> {
    let id = run.id;
    // Held open from here: the namespace stays even if the process dies.
    let netns_path = format!("/proc/{pid}/ns/net");
    let netns =
        File::open(&netns_path).map_err(|e| run.fail(format!("opening {netns_path}"))(e.into()))?;
    if same_file(&netns, "/proc/thread-self/ns/net") {
        return Err(NetError::HostNetns {
            id: id.to_string(),
            pid,
        });
    }
    for port in &settings.ports {
        let claim = state::claim_port(state_dir, port.proto, port.host, id).map_err(|e| {
            run.fail(format!(
                "recording {} port {} in {}",
                port.proto,
                port.host,
                state_dir.display()
            ))(e.into())
        })?;
        if let Claim::Theirs(owner) = claim {
            return Err(NetError::PortTaken {
                id: id.to_string(),
                proto: port.proto,
                port: port.host,
                owner,
            });
        }
        check_host_port_free(port.proto, port.host).map_err(|e| match e {
            NetError::HostPortInUse {
                proto,
                port,
                source,
                ..
            } => NetError::HostPortInUse {
                id: Some(id.to_string()),
                proto,
                port,
                source,
            },
            other => other,
        })?;
    }

    let subnet = settings.subnet;
    let address = state::allocate_address(state_dir, subnet, id)
        .map_err(|e| run.fail(format!("allocating an address in {subnet}"))(e.into()))?
        .ok_or_else(|| NetError::SubnetFull {
            id: id.to_string(),
            subnet,
        })?;

    fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| run.fail("turning on IPv4 forwarding")(e.into()))?;
    let handle = run.rtnetlink()?;
    let bridge = &settings.bridge;
    let bridge_index = run.wait(
        format!(
            "setting up bridge {bridge} with {}/{}",
            subnet.gateway, subnet.prefix_len
        ),
        links::ensure_bridge(
            &handle,
            bridge,
            subnet.gateway,
            subnet.prefix_len,
            settings.mtu,
        ),
    )?;
    // Lets the host's own 127.0.0.1:PORT be DNATed out of the bridge.
    let localnet = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    fs::write(&localnet, "1").map_err(|e| run.fail(format!("writing {localnet}"))(e.into()))?;

    let veth = veth_name(id);
    remove_veth(run, &handle, &veth)?;
    let veth_index = run.wait(
        format!("creating veth {veth} with its peer eth0 in the netns of pid {pid}"),
        links::create_veth(&handle, &veth, id, netns.as_fd(), settings.mtu),
    )?;
    run.wait(
        format!("attaching {veth} to {bridge}"),
        links::attach(&handle, veth_index, bridge_index),
    )?;
    configure_in_netns(run, &netns, pid, address, subnet)?;

    let mut nft = run.nft()?;
    let existing = nft
        .rules()
        .map_err(|e| run.fail("listing our nftables rules")(e.into()))?;
    let mut changes = vec![Change::Table];
    changes.extend(Chain::ALL.map(Change::Chain));
    for rule in [
        nft::masquerade_subnet(subnet.network(), subnet.prefix_len, bridge),
        nft::masquerade_localhost(bridge),
        nft::loopback_guard(bridge),
    ] {
        if !existing
            .iter()
            .any(|r| r.comment.as_deref() == Some(&rule.comment))
        {
            changes.push(Change::AddRule(rule));
        }
    }
    // Left over from an earlier `up` of the same id.
    changes.extend(delete_rules_of(id, &existing));
    for port in &settings.ports {
        for chain in [Chain::Prerouting, Chain::Output] {
            changes.push(Change::AddRule(nft::dnat(
                chain,
                bridge,
                port.proto.number(),
                port.host,
                address,
                port.container,
                id,
            )));
        }
    }
    nft.apply(&changes)
        .map_err(|e| run.fail("adding NAT rules to nftables table ip ros")(e.into()))?;
    Ok(address)
}

fn delete_rules_of(id: &str, existing: &[nft::ListedRule]) -> Vec<Change> {
    let tag = nft::container_comment(id);
    existing
        .iter()
        .filter(|rule| rule.comment.as_deref() == Some(tag.as_str()))
        .map(|rule| Change::DeleteRule {
            chain: rule.chain.clone(),
            handle: rule.handle,
        })
        .collect()
}

/// Whether `file` and `path` are the same inode (namespaces compare so).
fn same_file(file: &File, path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Removes the host side of the container's veth, if it is there and
/// says it is this container's.
fn remove_veth(run: &Run, handle: &rtnetlink::Handle, veth: &str) -> Result<(), NetError> {
    let Some(link) = run.wait(format!("looking for {veth}"), links::by_name(handle, veth))? else {
        return Ok(());
    };
    match links::alias(&link) {
        Some(owner) if owner == run.id => run.wait(
            format!("removing {veth}"),
            links::delete(handle, link.header.index),
        ),
        owner => Err(NetError::VethTaken {
            id: run.id.to_string(),
            veth: veth.to_string(),
            owner: owner.unwrap_or_default().to_string(),
        }),
    }
}

/// Configures `eth0`, `lo` and the default route from a thread that
/// joins the container's network namespace (the process stays put).
fn configure_in_netns(
    run: &Run,
    netns: &File,
    pid: i32,
    address: Ipv4Addr,
    subnet: Subnet,
) -> Result<(), NetError> {
    let step = format!("configuring eth0 in the netns of pid {pid}");
    let left = run.left();
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(), Cause> {
                nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let configure = async {
                        let handle = links::connect()?;
                        links::configure_container(
                            &handle,
                            address,
                            subnet.prefix_len,
                            subnet.gateway,
                        )
                        .await
                        .map_err(Cause::from)
                    };
                    tokio::time::timeout(left, configure)
                        .await
                        .unwrap_or(Err(Cause::TimedOut))
                })
            })
            .join()
    });
    match result {
        Ok(result) => result.map_err(run.fail(step)),
        Err(_) => Err(run.fail(step)(Cause::Netlink(
            "the netns thread panicked".into(),
        ))),
    }
}

/// Unwires container `id`: its NAT rules, its veth, its ports and its
/// address. Succeeds when there is nothing (left) to remove.
pub fn down(id: &str, state_dir: &Path) -> Result<(), NetError> {
    check_id(id)?;
    off_runtime(|| down_now(id, state_dir))
}

fn down_now(id: &str, state_dir: &Path) -> Result<(), NetError> {
    let start = Instant::now();
    let run = Run::new(id, start + HOOK_TIMEOUT)?;
    let _lock = run.lock(state_dir)?;
    down_locked(&run, state_dir)?;
    tracing::debug!("{id}: down in {} ms", start.elapsed().as_millis());
    Ok(())
}

/// Rules first: while a rule may still send traffic to the address, the
/// address and port stay recorded as taken.
fn down_locked(run: &Run, state_dir: &Path) -> Result<(), NetError> {
    let mut nft = run.nft()?;
    let existing = nft
        .rules()
        .map_err(|e| run.fail("listing our nftables rules")(e.into()))?;
    nft.apply(&delete_rules_of(run.id, &existing))
        .map_err(|e| run.fail("removing NAT rules from nftables table ip ros")(e.into()))?;
    let handle = run.rtnetlink()?;
    let veth = veth_name(run.id);
    match remove_veth(run, &handle, &veth) {
        // Not ours: leave it to its owner.
        Err(NetError::VethTaken { .. }) | Ok(()) => {}
        Err(other) => return Err(other),
    }
    state::release(state_dir, run.id).map_err(|e| {
        run.fail(format!(
            "releasing its address and ports in {}",
            state_dir.display()
        ))(e.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_differ() {
        let a = veth_name("web");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("veth"));
        assert_eq!(a, veth_name("web"));
        assert_ne!(a, veth_name("web2"));
    }

    #[test]
    fn container_ids_that_are_not_safe_file_names_are_refused() {
        for good in ["web", "a", "my-app_1.2", &"x".repeat(76)] {
            check_id(good).unwrap();
        }
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "-a",
            "a-",
            "a..b",
            "a b",
            &"x".repeat(77),
        ] {
            assert!(
                matches!(check_id(bad), Err(NetError::InvalidId(id)) if id == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_hook_names_the_container_in_settings_errors() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"ociVersion":"1.2.0","id":"web","status":"created","pid":1,
            "bundle":"/run/x","annotations":{"io.ros.net.ports":"0:80/tcp"}}"#;
        let error = hook(Phase::Up, &mut json.as_bytes(), dir.path()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "web: io.ros.net.ports: \"0:80/tcp\": the host port 0 is out of range 1-65535"
        );
        let error = hook(Phase::Up, &mut "{\"id\":\"web\"}".as_bytes(), dir.path()).unwrap_err();
        assert!(matches!(error, NetError::NoPid { .. }), "{error}");
        let error = hook(Phase::Down, &mut "not json".as_bytes(), dir.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("reading the OCI container state: "),
            "{error}"
        );
    }

    #[test]
    fn the_hook_may_be_called_from_inside_a_tokio_runtime() {
        let dir = tempfile::tempdir().unwrap();
        // A namespace of its own (root): `down` lists its nftables rules.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("unshare(CLONE_NEWNET) needs root");
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        let json = r#"{"ociVersion":"1.2.0","id":"web","status":"stopped"}"#;
                        hook(Phase::Down, &mut json.as_bytes(), dir.path()).unwrap();
                    });
                })
                .join()
                .unwrap();
        });
    }

    #[test]
    fn phases_parse() {
        assert_eq!("up".parse(), Ok(Phase::Up));
        assert_eq!("down".parse(), Ok(Phase::Down));
        let error = "sideways".parse::<Phase>().unwrap_err();
        assert_eq!(error, UnknownPhase("sideways".into()));
        assert_eq!(
            error.to_string(),
            "unknown phase \"sideways\"; use up or down"
        );
    }
}
