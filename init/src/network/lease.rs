//! What a DHCP server gave, in our terms: written by [`super::dhcp`],
//! read by [`super::addresses`] (the steps that put it on a link) and by
//! the status and name code. Its own module so that the planning of
//! addresses does not depend on the client that runs it.

use std::net::Ipv4Addr;

use os_config::schema::IpCidr;
use serde::{Deserialize, Serialize};

/// A route of option 121 (RFC 3442).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClasslessRoute {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    /// 0.0.0.0 for a route on the link itself.
    pub router: Ipv4Addr,
}

/// What a server gave, in our terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub server: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub classless_routes: Vec<ClasslessRoute>,
    pub dns: Vec<Ipv4Addr>,
    /// Search domains: option 119, else the domain name (option 15).
    pub search: Vec<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            address: Ipv4Addr::UNSPECIFIED,
            prefix_len: 32,
            server: Ipv4Addr::UNSPECIFIED,
            routers: Vec::new(),
            classless_routes: Vec::new(),
            dns: Vec::new(),
            search: Vec::new(),
            hostname: None,
            mtu: None,
            lease_secs: 0,
            t1_secs: 0,
            t2_secs: 0,
        }
    }
}

impl Lease {
    /// The address with its prefix, as it goes on the link.
    pub fn cidr(&self) -> IpCidr {
        IpCidr {
            addr: self.address.into(),
            prefix_len: self.prefix_len,
        }
    }
}
