//! Links, addresses and routes over rtnetlink: the bridge, the veth pair,
//! and the container's side of it.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::Cause;
use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

/// The kernel's errno in an rtnetlink error.
pub(crate) fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(-message.raw_code()),
        _ => None,
    }
}

/// Opens an rtnetlink socket in the calling thread's network namespace;
/// its connection runs on the current tokio runtime.
pub(crate) fn connect() -> std::io::Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The link named `name`, if there is one.
pub(crate) async fn by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, rtnetlink::Error> {
    match handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn alias(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(alias) => Some(alias.as_str()),
        _ => None,
    })
}

/// Makes sure the bridge exists with `gateway/prefix_len` and is up;
/// returns its index.
pub(crate) async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    prefix_len: u8,
    mtu: Option<u32>,
) -> Result<u32, Cause> {
    if by_name(handle, name).await?.is_none() {
        match handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
        {
            // Another hook made it meanwhile.
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            other => other?,
        }
    }
    let index = by_name(handle, name)
        .await?
        .map(|link| link.header.index)
        .ok_or_else(|| Cause::Netlink(format!("{name} vanished once made")))?;
    let mut up = LinkUnspec::new_with_index(index).up();
    if let Some(mtu) = mtu {
        up = up.mtu(mtu);
    }
    handle.link().set(up.build()).execute().await?;
    // `replace` makes a second `up` a no-op.
    handle
        .address()
        .add(index, IpAddr::V4(gateway), prefix_len)
        .replace()
        .execute()
        .await?;
    Ok(index)
}

/// Creates the veth pair: `host` here, tagged with the container id as
/// its alias, and its peer already in the container's network namespace
/// `netns` under the name `eth0`.
pub(crate) async fn create_veth(
    handle: &Handle,
    host: &str,
    id: &str,
    netns: BorrowedFd<'_>,
    mtu: Option<u32>,
) -> Result<u32, Cause> {
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name("eth0".to_string())
        .setns_by_fd(netns.as_raw_fd());
    let mut veth = LinkVeth::new(host, "eth0");
    if let Some(mtu) = mtu {
        peer = peer.mtu(mtu);
        veth = veth.mtu(mtu);
    }
    let mut message = veth.build();
    // Swap in the peer that names the namespace.
    set_veth_peer(&mut message, peer.build());
    handle.link().add(message).execute().await?;
    let index = by_name(handle, host)
        .await?
        .map(|link| link.header.index)
        .ok_or_else(|| Cause::Netlink(format!("{host} vanished once made")))?;
    // The kernel ignores an alias in a new link's message: set it after.
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).alias(id).build())
        .execute()
        .await?;
    Ok(index)
}

fn set_veth_peer(message: &mut LinkMessage, peer: LinkMessage) {
    use netlink_packet_route::link::{InfoData, InfoVeth, LinkInfo};
    for attribute in &mut message.attributes {
        if let LinkAttribute::LinkInfo(infos) = attribute {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(old))) = info {
                    *old = peer.clone();
                }
            }
        }
    }
}

/// Makes `index` a port of `bridge` and brings it up.
pub(crate) async fn attach(
    handle: &Handle,
    index: u32,
    bridge: u32,
) -> Result<(), rtnetlink::Error> {
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
}

pub(crate) async fn delete(handle: &Handle, index: u32) -> Result<(), rtnetlink::Error> {
    match handle.link().del(index).execute().await {
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        other => other,
    }
}

/// Why the container's side of the veth could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ContainerSideError {
    /// The namespace has no such link (the veth end was not moved in).
    #[error("{link} is missing")]
    Missing {
        /// `eth0` or `lo`.
        link: &'static str,
    },
    /// A netlink request failed; `step` names the link, address or route.
    #[error("{step}: {source}")]
    Netlink {
        /// What was being done, with its target.
        step: String,
        /// The kernel's answer (boxed: [`Cause`] can hold this error).
        #[source]
        source: Box<Cause>,
    },
}

/// Inside the container's namespace: `eth0` gets `address/prefix_len`
/// and goes up with `lo`; the default route goes via `gateway`.
pub(crate) async fn configure_container(
    handle: &Handle,
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> Result<(), ContainerSideError> {
    let step = |what: &str| {
        let step = what.to_string();
        move |e: rtnetlink::Error| ContainerSideError::Netlink {
            step,
            source: Box::new(Cause::from(e)),
        }
    };
    let eth0 = by_name(handle, "eth0")
        .await
        .map_err(step("finding eth0"))?
        .ok_or(ContainerSideError::Missing { link: "eth0" })?
        .header
        .index;
    let lo = by_name(handle, "lo")
        .await
        .map_err(step("finding lo"))?
        .ok_or(ContainerSideError::Missing { link: "lo" })?
        .header
        .index;
    handle
        .address()
        .add(eth0, IpAddr::V4(address), prefix_len)
        .replace()
        .execute()
        .await
        .map_err(step(&format!("adding {address}/{prefix_len} to eth0")))?;
    for (index, name) in [(lo, "lo"), (eth0, "eth0")] {
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(step(&format!("bringing {name} up")))?;
    }
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(eth0)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(step(&format!("adding the default route via {gateway}")))
}
