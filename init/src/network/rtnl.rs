//! The real [`Netlink`]: rtnetlink requests on a tokio netlink socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, CacheInfo};
use netlink_packet_route::link::{
    BondLacpRate, BondMode as KernelBondMode, BondXmitHashPolicy, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use os_config::schema::{BondMode, IpCidr, LacpRate, MacAddr, XmitHashPolicy};
use rtnetlink::{
    Handle, LinkBond, LinkBridge, LinkUnspec, LinkVlan, MulticastGroup, RouteMessageBuilder,
};
use tokio::sync::mpsc;

use super::netlink::{
    Address, Link, LinkEvent, Netlink, NetlinkError, NetlinkResult, NewLink, Route,
};

/// A netlink route socket, its connection driven by a tokio task.
#[derive(Debug, Clone)]
pub struct RtNetlink {
    handle: Handle,
}

impl RtNetlink {
    /// Opens the socket; needs a tokio runtime.
    pub fn connect() -> NetlinkResult<Self> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
            NetlinkError::new("open", "netlink socket", e.raw_os_error(), e.to_string())
        })?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }
}

fn error(op: &'static str, target: impl ToString, error: rtnetlink::Error) -> NetlinkError {
    let errno = match &error {
        // The kernel sends errors as negative errno values.
        rtnetlink::Error::NetlinkError(message) => Some(-message.raw_code()),
        _ => None,
    };
    NetlinkError::new(op, target, errno, error.to_string())
}

/// Our view of a kernel link message.
fn link_from(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        up: message.header.flags.contains(LinkFlags::Up),
        carrier: message.header.flags.contains(LinkFlags::LowerUp),
        mtu: 0,
        kind: None,
        master: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Address(bytes) => {
                link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
            }
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Controller(master) => link.master = Some(*master),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn address_from(message: &AddressMessage) -> Option<Address> {
    let mut address = None;
    let mut local = None;
    let mut valid_secs = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Address(addr) => address = Some(*addr),
            AddressAttribute::Local(addr) => local = Some(*addr),
            // u32::MAX is "forever".
            AddressAttribute::CacheInfo(info) if info.ifa_valid != u32::MAX => {
                valid_secs = Some(info.ifa_valid);
            }
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
    Some(Address {
        index: message.header.index,
        cidr: IpCidr {
            addr: local.or(address)?,
            prefix_len: message.header.prefix_len,
        },
        valid_secs,
    })
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_from(message: &RouteMessage) -> Option<Route> {
    let mut table = u32::from(message.header.table);
    let mut destination = None;
    let mut gateway = None;
    let mut index = None;
    let mut metric = 0;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => destination = route_address(a),
            RouteAttribute::Gateway(a) => gateway = route_address(a),
            RouteAttribute::Oif(i) => index = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || message.header.kind != RouteType::Unicast {
        return None;
    }
    let any = if message.header.address_family == netlink_packet_route::AddressFamily::Inet6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    Some(Route {
        destination: IpCidr {
            addr: destination.unwrap_or(any),
            prefix_len: message.header.destination_prefix_length,
        },
        gateway,
        index: index?,
        metric,
    })
}

/// A route the kernel's message cannot carry (rtnetlink does not export
/// its own error type, so this names what was refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum RouteMessageError {
    #[error("{0} is not a destination prefix")]
    Destination(IpCidr),
    #[error("gateway {gateway} cannot be given for {destination}")]
    Gateway {
        gateway: IpAddr,
        destination: IpCidr,
    },
}

fn route_message(route: &Route) -> Result<RouteMessage, RouteMessageError> {
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(route.destination.addr, route.destination.prefix_len)
        .map_err(|_| RouteMessageError::Destination(route.destination))?
        .output_interface(route.index)
        .priority(route.metric);
    if let Some(gateway) = route.gateway {
        builder = builder
            .gateway(gateway)
            .map_err(|_| RouteMessageError::Gateway {
                gateway,
                destination: route.destination,
            })?;
    } else {
        builder = builder.scope(netlink_packet_route::route::RouteScope::Link);
    }
    Ok(builder.build())
}

fn bond_message(name: &str, options: &os_config::schema::BondOptions) -> LinkMessage {
    let mut bond = LinkBond::new(name);
    if let Some(mode) = options.mode {
        bond = bond.mode(match mode {
            BondMode::BalanceRr => KernelBondMode::BalanceRr,
            BondMode::ActiveBackup => KernelBondMode::ActiveBackup,
            BondMode::BalanceXor => KernelBondMode::BalanceXor,
            BondMode::Broadcast => KernelBondMode::Broadcast,
            BondMode::Ieee8023Ad => KernelBondMode::Ieee8023Ad,
            BondMode::BalanceTlb => KernelBondMode::BalanceTlb,
            BondMode::BalanceAlb => KernelBondMode::BalanceAlb,
        });
    }
    if let Some(miimon) = options.miimon {
        bond = bond.miimon(miimon);
    }
    if let Some(updelay) = options.updelay {
        bond = bond.updelay(updelay);
    }
    if let Some(downdelay) = options.downdelay {
        bond = bond.downdelay(downdelay);
    }
    if let Some(rate) = options.lacp_rate {
        bond = bond.ad_lacp_rate(match rate {
            LacpRate::Slow => BondLacpRate::Slow,
            LacpRate::Fast => BondLacpRate::Fast,
        });
    }
    if let Some(policy) = options.xmit_hash_policy {
        bond = bond.xmit_hash_policy(match policy {
            XmitHashPolicy::Layer2 => BondXmitHashPolicy::Layer2,
            XmitHashPolicy::Layer34 => BondXmitHashPolicy::Layer34,
            XmitHashPolicy::Layer23 => BondXmitHashPolicy::Layer23,
            XmitHashPolicy::Encap23 => BondXmitHashPolicy::Encap23,
            XmitHashPolicy::Encap34 => BondXmitHashPolicy::Encap34,
        });
    }
    bond.build()
}

impl Netlink for RtNetlink {
    async fn links(&self) -> NetlinkResult<Vec<Link>> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| error("list", "links", e))?;
        Ok(messages.iter().map(link_from).collect())
    }

    async fn addresses(&self) -> NetlinkResult<Vec<Address>> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| error("list", "addresses", e))?;
        Ok(messages.iter().filter_map(address_from).collect())
    }

    async fn routes(&self) -> NetlinkResult<Vec<Route>> {
        let mut routes = Vec::new();
        for request in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let messages: Vec<RouteMessage> = self
                .handle
                .route()
                .get(request)
                .execute()
                .try_collect()
                .await
                .map_err(|e| error("list", "routes", e))?;
            routes.extend(messages.iter().filter_map(route_from));
        }
        Ok(routes)
    }

    async fn create(&self, link: &NewLink) -> NetlinkResult<()> {
        let message = match link {
            NewLink::Bridge { name } => LinkBridge::new(name).build(),
            NewLink::Bond { name, options } => bond_message(name, options),
            NewLink::Vlan { name, parent, id } => LinkVlan::new(name, *parent, *id).build(),
        };
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| error("create", link.name(), e))
    }

    async fn update(&self, link: &NewLink) -> NetlinkResult<()> {
        // Only a bond has options worth changing after the fact.
        let NewLink::Bond { name, options } = link else {
            return Ok(());
        };
        self.handle
            .link()
            .change(bond_message(name, options))
            .execute()
            .await
            .map_err(|e| error("set bond options", name, e))
    }

    async fn set_up(&self, index: u32, up: bool) -> NetlinkResult<()> {
        let builder = LinkUnspec::new_with_index(index);
        let message = if up { builder.up() } else { builder.down() }.build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| error(if up { "up" } else { "down" }, format!("link {index}"), e))
    }

    async fn set_mtu(&self, index: u32, mtu: u32) -> NetlinkResult<()> {
        let message = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| error("set mtu", format!("link {index}"), e))
    }

    async fn set_master(&self, index: u32, master: u32) -> NetlinkResult<()> {
        let message = LinkUnspec::new_with_index(index).controller(master).build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| error("set master", format!("link {index}"), e))
    }

    async fn add_address(
        &self,
        index: u32,
        cidr: IpCidr,
        valid_secs: Option<u32>,
    ) -> NetlinkResult<()> {
        let mut request = self
            .handle
            .address()
            .add(index, cidr.addr, cidr.prefix_len)
            .replace();
        if let Some(secs) = valid_secs {
            let mut lifetime = CacheInfo::default();
            lifetime.ifa_preferred = secs;
            lifetime.ifa_valid = secs;
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::CacheInfo(lifetime));
        }
        request
            .execute()
            .await
            .map_err(|e| error("add address", cidr, e))
    }

    async fn del_address(&self, index: u32, cidr: IpCidr) -> NetlinkResult<()> {
        let mut message = AddressMessage::default();
        message.header.index = index;
        message.header.prefix_len = cidr.prefix_len;
        message.header.family = match cidr.addr {
            IpAddr::V4(_) => netlink_packet_route::AddressFamily::Inet,
            IpAddr::V6(_) => netlink_packet_route::AddressFamily::Inet6,
        };
        message
            .attributes
            .push(AddressAttribute::Address(cidr.addr));
        if cidr.addr.is_ipv4() {
            message.attributes.push(AddressAttribute::Local(cidr.addr));
        }
        self.handle
            .address()
            .del(message)
            .execute()
            .await
            .map_err(|e| error("remove address", cidr, e))
    }

    async fn add_route(&self, route: &Route) -> NetlinkResult<()> {
        let message = route_message(route)
            .map_err(|e| NetlinkError::new("add route", route.destination, None, e.to_string()))?;
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|e| error("add route", route.destination, e))
    }

    async fn del_route(&self, route: &Route) -> NetlinkResult<()> {
        let message = route_message(route).map_err(|e| {
            NetlinkError::new("remove route", route.destination, None, e.to_string())
        })?;
        self.handle
            .route()
            .del(message)
            .execute()
            .await
            .map_err(|e| error("remove route", route.destination, e))
    }

    fn watch_links(&self) -> NetlinkResult<mpsc::UnboundedReceiver<LinkEvent>> {
        let (connection, _handle, mut messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).map_err(|e| {
                NetlinkError::new(
                    "open",
                    "netlink link monitor",
                    e.raw_os_error(),
                    e.to_string(),
                )
            })?;
        tokio::spawn(connection);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some((message, _)) = messages.next().await {
                let event = match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                        LinkEvent::Changed(link_from(&link))
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                        LinkEvent::Removed(link.header.index)
                    }
                    _ => continue,
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(destination: &str, prefix_len: u8, gateway: Option<&str>) -> Route {
        Route {
            destination: IpCidr {
                addr: destination.parse().unwrap(),
                prefix_len,
            },
            gateway: gateway.map(|g| g.parse().unwrap()),
            index: 2,
            metric: 100,
        }
    }

    #[test]
    fn a_route_becomes_one_message_and_a_prefix_too_long_is_named() {
        let message = route_message(&route("0.0.0.0", 0, Some("10.0.2.2"))).unwrap();
        assert!(
            message
                .attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                    10, 0, 2, 2
                )))),
            "{message:?}"
        );
        assert!(message.attributes.contains(&RouteAttribute::Oif(2)));
        let error = route_message(&route("10.0.0.0", 40, None)).unwrap_err();
        assert_eq!(error.to_string(), "10.0.0.0/40 is not a destination prefix");
    }
}
