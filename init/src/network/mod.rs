//! The network, in-process: `lo` first (before containerd), then what
//! `rancher.network` describes, over netlink (links, bridges, bonds,
//! VLANs, addresses, routes), DHCP in background tasks, resolv.conf,
//! hosts and the host name, and a watch on link changes.
//!
//! [`start`] applies the static settings at once and returns; nothing on
//! the boot path waits for a lease. Who needs the network (datasources
//! like EC2) calls [`NetworkHandle::wait_online`].

pub mod addresses;
pub mod apply;
pub mod dhcp;
pub mod lease;
pub mod links;
pub mod loopback;
pub mod names;
pub mod netlink;
pub mod rtnl;
pub mod status;
pub mod step;
pub mod virtual_links;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use os_config::schema::{Hostname, Network};
use tokio::sync::{mpsc, watch as channel};
use tokio::task::JoinHandle;

use crate::host::Host;
use dhcp::{Control, DhcpLink, DhcpStatuses};
use netlink::{Link, Netlink};
use watch::{LinkTracker, Reaction};

/// How long shutdown waits for DHCP releases.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the network writes its files, under a root tests move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPaths {
    pub root: PathBuf,
}

impl NetworkPaths {
    /// The running system's.
    pub fn system() -> Self {
        Self {
            root: PathBuf::from("/"),
        }
    }
}

/// A running DHCP client.
#[derive(Debug)]
struct Client {
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

/// What the background tasks share.
#[derive(Debug)]
struct Shared<N> {
    netlink: Arc<N>,
    network: Network,
    hostname: Option<Hostname>,
    statuses: channel::Sender<DhcpStatuses>,
    clients: Mutex<BTreeMap<String, Client>>,
}

impl<N: Netlink> Shared<N> {
    fn clients(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts DHCP on `link` unless it runs already.
    fn start_dhcp(&self, link: Link) {
        let mut clients = self.clients();
        if clients.contains_key(&link.name) {
            return;
        }
        let (control, commands) = mpsc::unbounded_channel();
        let name = link.name.clone();
        tracing::info!("{name}: DHCP starts");
        let client = DhcpLink {
            config_mtu: self
                .network
                .config_for(&link.name, link.mac)
                .and_then(|c| c.mtu),
            link,
            netlink: Arc::clone(&self.netlink),
            statuses: self.statuses.clone(),
            hostname: self.hostname.as_ref().map(|h| h.as_str().to_owned()),
        };
        let task = tokio::spawn(client.run(commands));
        clients.insert(name, Client { control, task });
    }

    /// Applies the configuration (again) and starts DHCP where wanted.
    async fn configure(&self) {
        match apply::configure(&*self.netlink, &self.network).await {
            Ok(configured) => {
                for link in configured.dhcp {
                    self.start_dhcp(link);
                }
            }
            Err(error) => tracing::error!("network: {error}"),
        }
    }

    async fn watch(
        self: Arc<Self>,
        mut tracker: LinkTracker,
        mut events: mpsc::UnboundedReceiver<netlink::LinkEvent>,
    ) {
        while let Some(event) = events.recv().await {
            match tracker.update(event) {
                Reaction::Nothing => {}
                Reaction::CarrierUp(link) => {
                    tracing::info!("{}: carrier up", link.name);
                    if let Some(client) = self.clients().get(&link.name) {
                        let _ = client.control.send(Control::Restart);
                    }
                }
                Reaction::Appeared(link) => {
                    tracing::info!("{}: new link", link.name);
                    self.configure().await;
                }
                Reaction::Vanished(name) => {
                    tracing::info!("{name}: link gone");
                    if let Some(client) = self.clients().remove(&name) {
                        client.task.abort();
                    }
                    self.statuses.send_modify(|s| {
                        s.remove(&name);
                    });
                }
            }
        }
    }
}

/// Keeps names and the status file in step with the leases and the
/// configured host name.
async fn write_names(
    host: Arc<dyn Host>,
    paths: NetworkPaths,
    dns: os_config::schema::Dns,
    mut hostname: channel::Receiver<Option<Hostname>>,
    mut statuses: channel::Receiver<DhcpStatuses>,
) {
    let name_paths = names::NamePaths::under(&paths.root);
    let status_path = status::status_path(&paths.root);
    let mut written: Option<names::Names> = None;
    loop {
        let current = statuses.borrow_and_update().clone();
        let configured = hostname.borrow_and_update().clone();
        let wanted = names::names(&dns, configured.as_ref(), &current);
        match names::write(&*host, &name_paths, &wanted, written.as_ref()) {
            Ok(()) => written = Some(wanted),
            Err(error) => tracing::warn!("network: {error}"),
        }
        let file = status::StatusFile { dhcp: current };
        if let Err(error) = status::write_status(&status_path, &file) {
            tracing::warn!("network: writing {}: {error}", status_path.display());
        }
        let changed = tokio::select! {
            changed = statuses.changed() => changed,
            changed = hostname.changed() => changed,
        };
        if changed.is_err() {
            return;
        }
    }
}

/// Who has a lease after [`NetworkHandle::wait_online`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Online {
    /// Links with a lease.
    pub bound: Vec<String>,
    /// Links still without one.
    pub pending: Vec<String>,
}

/// The running network: wait for leases, release them at shutdown.
#[derive(Debug)]
pub struct NetworkHandle<N: Netlink> {
    shared: Arc<Shared<N>>,
    statuses: channel::Receiver<DhcpStatuses>,
    background: Vec<JoinHandle<()>>,
    status_path: PathBuf,
    hostname: channel::Sender<Option<Hostname>>,
}

/// Applies the static configuration now and starts DHCP, the name writer
/// and the link watch in the background. `hostname` is the configured one
/// (datasource metadata is already merged into the configuration).
pub async fn start<N: Netlink>(
    netlink: Arc<N>,
    host: Arc<dyn Host>,
    paths: NetworkPaths,
    network: &Network,
    hostname: Option<&Hostname>,
) -> NetworkHandle<N> {
    // Services bind the status directory; it exists before they start.
    let status_path = status::status_path(&paths.root);
    if let Some(dir) = status_path.parent()
        && let Err(error) = std::fs::create_dir_all(dir)
    {
        tracing::warn!("network: creating {}: {error}", dir.display());
    }
    let (statuses, receiver) = channel::channel(DhcpStatuses::new());
    let shared = Arc::new(Shared {
        netlink,
        network: network.clone(),
        hostname: hostname.cloned(),
        statuses,
        clients: Mutex::new(BTreeMap::new()),
    });
    // Names first: services that start next find resolv.conf and hosts.
    let (configured_hostname, hostname_changes) = channel::channel(hostname.cloned());
    let mut background = vec![tokio::spawn(write_names(
        host,
        paths,
        network.dns.clone(),
        hostname_changes,
        receiver.clone(),
    ))];
    // Subscribed and listed before configuring, so no link and no carrier
    // change is missed.
    let events = shared.netlink.watch_links();
    let tracker = match shared.netlink.links().await {
        Ok(links) => LinkTracker::new(&links),
        Err(_) => LinkTracker::default(),
    };
    shared.configure().await;
    match events {
        Ok(events) => background.push(tokio::spawn(Arc::clone(&shared).watch(tracker, events))),
        Err(error) => tracing::warn!("network: link changes are not watched: {error}"),
    }
    NetworkHandle {
        shared,
        statuses: receiver,
        background,
        status_path,
        hostname: configured_hostname,
    }
}

impl<N: Netlink> NetworkHandle<N> {
    /// `rancher.network.dhcp_timeout`.
    pub fn dhcp_timeout(&self) -> Duration {
        self.shared.network.dhcp_timeout()
    }

    /// Waits until every DHCP link has a lease, or `timeout`.
    pub async fn wait_online(&self, timeout: Duration) -> Online {
        self.online(timeout).await
    }

    /// [`Self::wait_online`] as a future of its own, for a task that
    /// outlives this borrow (services that start once the network is online).
    pub fn online(&self, timeout: Duration) -> impl Future<Output = Online> + Send + 'static {
        let links: Vec<String> = self.shared.clients().keys().cloned().collect();
        let mut statuses = self.statuses.clone();
        async move {
            let bound = |statuses: &DhcpStatuses, link: &String| {
                statuses.get(link).is_some_and(|s| s.lease.is_some())
            };
            let _ = tokio::time::timeout(
                timeout,
                statuses.wait_for(|s| links.iter().all(|link| bound(s, link))),
            )
            .await;
            let now = statuses.borrow().clone();
            let (bound, pending) = links.into_iter().partition(|link| bound(&now, link));
            Online { bound, pending }
        }
    }

    /// A host name configured after the start (user-data from a network
    /// datasource): names and files follow; DHCP keeps sending the old one
    /// until its next start.
    pub fn set_hostname(&self, hostname: Option<Hostname>) {
        self.hostname.send_replace(hostname);
    }

    /// Every link's DHCP now.
    pub fn dhcp(&self) -> DhcpStatuses {
        self.statuses.borrow().clone()
    }

    /// Releases every lease (bounded in time) and stops the tasks.
    pub async fn shutdown(self) {
        // Names stay as they are while the machine goes down.
        for task in self.background {
            task.abort();
        }
        let clients: Vec<Client> = std::mem::take(&mut *self.shared.clients())
            .into_values()
            .collect();
        let aborts: Vec<_> = clients.iter().map(|c| c.task.abort_handle()).collect();
        for client in &clients {
            let _ = client.control.send(Control::Release);
        }
        let release = async {
            for client in clients {
                let _ = client.task.await;
            }
        };
        if tokio::time::timeout(RELEASE_TIMEOUT, release)
            .await
            .is_err()
        {
            tracing::warn!("network: DHCP release timed out");
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
        let file = status::StatusFile {
            dhcp: self.statuses.borrow().clone(),
        };
        if let Err(error) = status::write_status(&self.status_path, &file) {
            tracing::warn!("network: writing {}: {error}", self.status_path.display());
        }
    }
}

/// PID 1's network: the real netlink, the real host, the system paths.
pub async fn start_system(
    network: &Network,
    hostname: Option<&Hostname>,
) -> Result<NetworkHandle<rtnl::RtNetlink>, netlink::NetlinkError> {
    let netlink = Arc::new(rtnl::RtNetlink::connect()?);
    Ok(start(
        netlink,
        Arc::new(crate::host::RealHost),
        NetworkPaths::system(),
        network,
        hostname,
    )
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostCall};
    use netlink::FakeNetlink;

    fn network(yaml: &str) -> Network {
        serde_norway::from_str(yaml).unwrap()
    }

    #[tokio::test]
    async fn static_network_names_and_status_without_dhcp() {
        let dir = tempfile::tempdir().unwrap();
        let netlink = Arc::new(FakeNetlink::new());
        netlink.add_link("eth0", None);
        let host = Arc::new(FakeHost::new());
        let network =
            network("{interfaces: {eth0: {address: 10.5.0.2/24}}, dns: {nameservers: [10.5.0.1]}}");
        let hostname = Hostname::try_from("box".to_owned()).unwrap();
        let handle = start(
            Arc::clone(&netlink),
            host.clone(),
            NetworkPaths {
                root: dir.path().into(),
            },
            &network,
            Some(&hostname),
        )
        .await;
        assert_eq!(
            netlink.addresses_of("eth0"),
            vec!["10.5.0.2/24".parse().unwrap()]
        );
        // No DHCP link: online at once.
        let online = handle.wait_online(Duration::from_secs(5)).await;
        assert_eq!(online, Online::default());
        // The writer runs in the background; give it its turn.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(host.calls(), vec![HostCall::Sethostname("box".into())]);
        let resolv = std::fs::read_to_string(dir.path().join("etc/resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 10.5.0.1"));
        assert!(
            status::read_status(&status::status_path(dir.path()))
                .unwrap()
                .is_some()
        );
        // A host name from user-data fetched later replaces it.
        handle.set_hostname(Some(Hostname::try_from("later".to_owned()).unwrap()));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            host.calls(),
            vec![
                HostCall::Sethostname("box".into()),
                HostCall::Sethostname("later".into())
            ]
        );
        let hosts = std::fs::read_to_string(dir.path().join("etc/hosts")).unwrap();
        assert!(hosts.contains("127.0.1.1\tlater"), "{hosts}");
        handle.shutdown().await;
    }

    #[tokio::test]
    async fn a_link_that_appears_later_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let netlink = Arc::new(FakeNetlink::new());
        let network = network("{interfaces: {eth1: {address: 10.6.0.2/24}}}");
        let handle = start(
            Arc::clone(&netlink),
            Arc::new(FakeHost::new()),
            NetworkPaths {
                root: dir.path().into(),
            },
            &network,
            None,
        )
        .await;
        let eth1 = netlink.add_link("eth1", None);
        // The fake tells watchers about carrier changes; a new index is new.
        netlink.set_carrier(eth1, false);
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            netlink.addresses_of("eth1"),
            vec!["10.6.0.2/24".parse().unwrap()]
        );
        assert!(netlink.link("eth1").unwrap().up);
        handle.shutdown().await;
    }
}
