//! One change to a link, as a value: what [`super::links`] and
//! [`super::addresses`] plan and [`super::apply`] runs. Its own module so
//! that planning and running do not need each other.

use os_config::schema::IpCidr;

use super::netlink::{Link, Route};

/// A link named for the log, by its index for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub index: u32,
    pub name: String,
}

impl From<&Link> for Target {
    fn from(link: &Link) -> Self {
        Self {
            index: link.index,
            name: link.name.clone(),
        }
    }
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Up(Target),
    Down(Target),
    Mtu(Target, u32),
    Master { port: Target, master: Target },
    AddAddress(Target, IpCidr, Option<u32>),
    DelAddress(Target, IpCidr),
    AddRoute(Target, Route),
    DelRoute(Target, Route),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Up(t) => write!(f, "{}: up", t.name),
            Self::Down(t) => write!(f, "{}: down", t.name),
            Self::Mtu(t, mtu) => write!(f, "{}: mtu {mtu}", t.name),
            Self::Master { port, master } => write!(f, "{}: port of {}", port.name, master.name),
            Self::AddAddress(t, cidr, _) => write!(f, "{}: add {cidr}", t.name),
            Self::DelAddress(t, cidr) => write!(f, "{}: remove {cidr}", t.name),
            Self::AddRoute(t, route) => write!(f, "{}: add route {}", t.name, describe(route)),
            Self::DelRoute(t, route) => {
                write!(f, "{}: remove route {}", t.name, describe(route))
            }
        }
    }
}

fn describe(route: &Route) -> String {
    let destination = if route.destination.prefix_len == 0 {
        "default".to_owned()
    } else {
        route.destination.to_string()
    };
    match route.gateway {
        Some(gateway) => format!("{destination} via {gateway} metric {}", route.metric),
        None => format!("{destination} metric {}", route.metric),
    }
}
