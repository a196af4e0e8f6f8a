//! The few netlink operations the network code needs, behind one trait:
//! the real one speaks rtnetlink ([`super::rtnl`]), the recording fake
//! here keeps a model of links, addresses and routes so the planning and
//! DHCP code is tested without root.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Mutex;

use os_config::schema::{BondOptions, IpCidr, MacAddr};
use tokio::sync::mpsc;

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// The lower layer is up: a cable, a peer (IFF_LOWER_UP).
    pub carrier: bool,
    pub mtu: u32,
    /// `bridge`, `bond`, `vlan`, `veth`…; `None` for plain hardware.
    pub kind: Option<String>,
    /// The bridge or bond this link is a port of.
    pub master: Option<u32>,
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub cidr: IpCidr,
    /// Seconds left; `None` is forever (static addresses).
    pub valid_secs: Option<u32>,
}

/// A route in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `0.0.0.0/0` or `::/0` for a default route.
    pub destination: IpCidr,
    pub gateway: Option<IpAddr>,
    /// The output link.
    pub index: u32,
    pub metric: u32,
}

impl Route {
    /// The default route of `gateway`'s family through link `index`.
    pub fn default_via(gateway: IpAddr, index: u32, metric: u32) -> Self {
        let any = match gateway {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        Self {
            destination: IpCidr {
                addr: any,
                prefix_len: 0,
            },
            gateway: Some(gateway),
            index,
            metric,
        }
    }
}

/// A virtual link to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewLink {
    Bridge { name: String },
    Bond { name: String, options: BondOptions },
    Vlan { name: String, parent: u32, id: u16 },
}

impl NewLink {
    pub fn name(&self) -> &str {
        match self {
            Self::Bridge { name } | Self::Bond { name, .. } | Self::Vlan { name, .. } => name,
        }
    }

    /// The kind the kernel reports for the created link.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bridge { .. } => "bridge",
            Self::Bond { .. } => "bond",
            Self::Vlan { .. } => "vlan",
        }
    }
}

/// What the link watcher hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link appeared or changed.
    Changed(Link),
    /// A link is gone.
    Removed(u32),
}

/// A failed netlink request, naming what was attempted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {target}: {message}")]
pub struct NetlinkError {
    pub op: &'static str,
    pub target: String,
    /// The kernel's errno, when it answered with one.
    pub errno: Option<i32>,
    pub message: String,
}

impl NetlinkError {
    pub fn new(
        op: &'static str,
        target: impl ToString,
        errno: Option<i32>,
        message: String,
    ) -> Self {
        Self {
            op,
            target: target.to_string(),
            errno,
            message,
        }
    }

    /// The kernel said the thing exists already.
    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc::EEXIST)
    }
}

pub type NetlinkResult<T> = Result<T, NetlinkError>;

/// The netlink operations of the network code.
pub trait Netlink: Send + Sync + 'static {
    fn links(&self) -> impl Future<Output = NetlinkResult<Vec<Link>>> + Send;
    fn addresses(&self) -> impl Future<Output = NetlinkResult<Vec<Address>>> + Send;
    /// Routes of the main table, IPv4 and IPv6.
    fn routes(&self) -> impl Future<Output = NetlinkResult<Vec<Route>>> + Send;
    fn create(&self, link: &NewLink) -> impl Future<Output = NetlinkResult<()>> + Send;
    /// Applies a bond's options to an existing one (the kernel makes a
    /// `bond0` of its own when bonding is built in).
    fn update(&self, link: &NewLink) -> impl Future<Output = NetlinkResult<()>> + Send;
    fn set_up(&self, index: u32, up: bool) -> impl Future<Output = NetlinkResult<()>> + Send;
    fn set_mtu(&self, index: u32, mtu: u32) -> impl Future<Output = NetlinkResult<()>> + Send;
    /// Makes `index` a port of the bridge or bond `master`.
    fn set_master(&self, index: u32, master: u32)
    -> impl Future<Output = NetlinkResult<()>> + Send;
    /// Adds or replaces an address; `valid_secs` makes the kernel drop it
    /// when a lease runs out.
    fn add_address(
        &self,
        index: u32,
        cidr: IpCidr,
        valid_secs: Option<u32>,
    ) -> impl Future<Output = NetlinkResult<()>> + Send;
    fn del_address(
        &self,
        index: u32,
        cidr: IpCidr,
    ) -> impl Future<Output = NetlinkResult<()>> + Send;
    /// Adds or replaces a route.
    fn add_route(&self, route: &Route) -> impl Future<Output = NetlinkResult<()>> + Send;
    fn del_route(&self, route: &Route) -> impl Future<Output = NetlinkResult<()>> + Send;
    /// Link changes from now on.
    fn watch_links(&self) -> NetlinkResult<mpsc::UnboundedReceiver<LinkEvent>>;
}

/// One recorded call on the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetlinkCall {
    Create(NewLink),
    Update(NewLink),
    SetUp {
        link: String,
        up: bool,
    },
    SetMtu {
        link: String,
        mtu: u32,
    },
    SetMaster {
        link: String,
        master: String,
    },
    AddAddress {
        link: String,
        cidr: IpCidr,
        valid_secs: Option<u32>,
    },
    DelAddress {
        link: String,
        cidr: IpCidr,
    },
    AddRoute(Route),
    DelRoute(Route),
}

/// A netlink that keeps links, addresses and routes in memory, records
/// every change, and can be told to fail.
#[derive(Debug, Default)]
pub struct FakeNetlink {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    links: BTreeMap<u32, Link>,
    addresses: Vec<Address>,
    routes: Vec<Route>,
    calls: Vec<NetlinkCall>,
    fail_next: usize,
    watchers: Vec<mpsc::UnboundedSender<LinkEvent>>,
}

impl FakeNetlink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plain link (down, no carrier) and returns its index.
    pub fn add_link(&self, name: &str, mac: Option<MacAddr>) -> u32 {
        self.add_link_of_kind(name, mac, None)
    }

    /// Adds a link of `kind` (`bond`…), as the kernel or a driver would.
    pub fn add_link_of_kind(&self, name: &str, mac: Option<MacAddr>, kind: Option<&str>) -> u32 {
        let mut state = self.lock();
        let index = state.links.keys().last().map_or(1, |last| last + 1);
        state.links.insert(
            index,
            Link {
                index,
                name: name.to_owned(),
                mac,
                up: false,
                carrier: false,
                mtu: 1500,
                kind: kind.map(str::to_owned),
                master: None,
            },
        );
        index
    }

    /// Changes a link's carrier, telling watchers like the kernel would.
    pub fn set_carrier(&self, index: u32, carrier: bool) {
        let mut state = self.lock();
        let Some(link) = state.links.get_mut(&index) else {
            return;
        };
        link.carrier = carrier;
        let event = LinkEvent::Changed(link.clone());
        state.watchers.retain(|w| w.send(event.clone()).is_ok());
    }

    pub fn link(&self, name: &str) -> Option<Link> {
        self.lock().links.values().find(|l| l.name == name).cloned()
    }

    pub fn addresses_of(&self, name: &str) -> Vec<IpCidr> {
        let state = self.lock();
        let Some(index) = state
            .links
            .values()
            .find(|l| l.name == name)
            .map(|l| l.index)
        else {
            return Vec::new();
        };
        state
            .addresses
            .iter()
            .filter(|a| a.index == index)
            .map(|a| a.cidr)
            .collect()
    }

    pub fn route_list(&self) -> Vec<Route> {
        self.lock().routes.clone()
    }

    /// Every change so far, in order.
    pub fn calls(&self) -> Vec<NetlinkCall> {
        self.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The next `n` changes fail with EBUSY.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FakeState {
    fn name(&self, index: u32) -> String {
        self.links
            .get(&index)
            .map_or_else(|| format!("#{index}"), |l| l.name.clone())
    }

    fn record(&mut self, call: NetlinkCall) -> NetlinkResult<()> {
        let target = format!("{call:?}");
        self.calls.push(call);
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(NetlinkError::new(
                "fake",
                target,
                Some(libc::EBUSY),
                "injected failure".into(),
            ));
        }
        Ok(())
    }

    fn link_mut(&mut self, index: u32, op: &'static str) -> NetlinkResult<&mut Link> {
        self.links.get_mut(&index).ok_or_else(|| {
            NetlinkError::new(op, index, Some(libc::ENODEV), "no such device".into())
        })
    }
}

impl Netlink for FakeNetlink {
    async fn links(&self) -> NetlinkResult<Vec<Link>> {
        Ok(self.lock().links.values().cloned().collect())
    }

    async fn addresses(&self) -> NetlinkResult<Vec<Address>> {
        Ok(self.lock().addresses.clone())
    }

    async fn routes(&self) -> NetlinkResult<Vec<Route>> {
        Ok(self.lock().routes.clone())
    }

    async fn create(&self, link: &NewLink) -> NetlinkResult<()> {
        let mut state = self.lock();
        state.record(NetlinkCall::Create(link.clone()))?;
        if state.links.values().any(|l| l.name == link.name()) {
            return Err(NetlinkError::new(
                "create",
                link.name(),
                Some(libc::EEXIST),
                "exists".into(),
            ));
        }
        let index = state.links.keys().last().map_or(1, |last| last + 1);
        state.links.insert(
            index,
            Link {
                index,
                name: link.name().to_owned(),
                mac: None,
                up: false,
                carrier: false,
                mtu: 1500,
                kind: Some(link.kind().to_owned()),
                master: None,
            },
        );
        Ok(())
    }

    async fn update(&self, link: &NewLink) -> NetlinkResult<()> {
        self.lock().record(NetlinkCall::Update(link.clone()))
    }

    async fn set_up(&self, index: u32, up: bool) -> NetlinkResult<()> {
        let mut state = self.lock();
        let link = state.name(index);
        state.record(NetlinkCall::SetUp { link, up })?;
        let link = state.link_mut(index, "set up")?;
        link.up = up;
        // Virtual links have a carrier as soon as they are up.
        if link.kind.is_some() {
            link.carrier = up;
        }
        Ok(())
    }

    async fn set_mtu(&self, index: u32, mtu: u32) -> NetlinkResult<()> {
        let mut state = self.lock();
        let link = state.name(index);
        state.record(NetlinkCall::SetMtu { link, mtu })?;
        state.link_mut(index, "set mtu")?.mtu = mtu;
        Ok(())
    }

    async fn set_master(&self, index: u32, master: u32) -> NetlinkResult<()> {
        let mut state = self.lock();
        let (link, master_name) = (state.name(index), state.name(master));
        state.record(NetlinkCall::SetMaster {
            link,
            master: master_name,
        })?;
        state.link_mut(index, "set master")?.master = Some(master);
        Ok(())
    }

    async fn add_address(
        &self,
        index: u32,
        cidr: IpCidr,
        valid_secs: Option<u32>,
    ) -> NetlinkResult<()> {
        let mut state = self.lock();
        let link = state.name(index);
        state.record(NetlinkCall::AddAddress {
            link,
            cidr,
            valid_secs,
        })?;
        state.link_mut(index, "add address")?;
        state
            .addresses
            .retain(|a| !(a.index == index && a.cidr == cidr));
        state.addresses.push(Address {
            index,
            cidr,
            valid_secs,
        });
        Ok(())
    }

    async fn del_address(&self, index: u32, cidr: IpCidr) -> NetlinkResult<()> {
        let mut state = self.lock();
        let link = state.name(index);
        state.record(NetlinkCall::DelAddress { link, cidr })?;
        state
            .addresses
            .retain(|a| !(a.index == index && a.cidr == cidr));
        Ok(())
    }

    async fn add_route(&self, route: &Route) -> NetlinkResult<()> {
        let mut state = self.lock();
        state.record(NetlinkCall::AddRoute(*route))?;
        state.routes.retain(|r| r != route);
        state.routes.push(*route);
        Ok(())
    }

    async fn del_route(&self, route: &Route) -> NetlinkResult<()> {
        let mut state = self.lock();
        state.record(NetlinkCall::DelRoute(*route))?;
        state.routes.retain(|r| r != route);
        Ok(())
    }

    fn watch_links(&self) -> NetlinkResult<mpsc::UnboundedReceiver<LinkEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().watchers.push(tx);
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_models_links_addresses_and_routes() {
        let netlink = FakeNetlink::new();
        let eth0 = netlink.add_link("eth0", None);
        netlink.set_up(eth0, true).await.unwrap();
        let cidr: IpCidr = "10.0.0.2/24".parse().unwrap();
        netlink.add_address(eth0, cidr, None).await.unwrap();
        let route = Route::default_via("10.0.0.1".parse().unwrap(), eth0, 0);
        netlink.add_route(&route).await.unwrap();
        netlink.add_route(&route).await.unwrap();
        assert!(netlink.link("eth0").unwrap().up);
        assert_eq!(netlink.addresses_of("eth0"), vec![cidr]);
        assert_eq!(netlink.route_list(), vec![route]);
        netlink
            .create(&NewLink::Bridge { name: "br0".into() })
            .await
            .unwrap();
        let again = netlink
            .create(&NewLink::Bridge { name: "br0".into() })
            .await
            .unwrap_err();
        assert!(again.is_exists());
        assert_eq!(netlink.link("br0").unwrap().kind.as_deref(), Some("bridge"));
    }

    #[tokio::test]
    async fn fake_fails_the_next_n_changes() {
        let netlink = FakeNetlink::new();
        let eth0 = netlink.add_link("eth0", None);
        netlink.fail_next(1);
        let error = netlink.set_up(eth0, true).await.unwrap_err();
        assert_eq!(error.errno, Some(libc::EBUSY));
        assert!(!netlink.link("eth0").unwrap().up);
        netlink.set_up(eth0, true).await.unwrap();
        assert_eq!(netlink.calls().len(), 2);
    }

    #[tokio::test]
    async fn watchers_hear_carrier_changes() {
        let netlink = FakeNetlink::new();
        let eth0 = netlink.add_link("eth0", None);
        let mut events = netlink.watch_links().unwrap();
        netlink.set_carrier(eth0, true);
        match events.recv().await {
            Some(LinkEvent::Changed(link)) => assert!(link.carrier),
            other => panic!("unexpected {other:?}"),
        }
    }
}
