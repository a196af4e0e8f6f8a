//! Addresses and routes: the static ones of the configuration, and those a
//! DHCP lease brings (which come and go with the lease).

use std::net::{IpAddr, Ipv4Addr};

use os_config::schema::{InterfaceConfig, IpCidr};

use super::lease::Lease;
use super::netlink::{Address, Link, Route};
use super::step::{Step, Target};

/// The kernel gives an IPv6 route without a metric 1024 and reports it so;
/// saying it keeps "is it there already" exact.
const STATIC_METRIC_V6: u32 = 1024;

/// DHCP routes get 1000 + the link's index, as RancherOS's dhcpcd did:
/// two links with leases both get a default route, the first link wins,
/// and a static gateway (metric 0) beats them all.
pub fn dhcp_metric(index: u32) -> u32 {
    1000 + index
}

/// The static addresses of `config` missing on the link, and its gateway
/// routes missing from the table (routes are run after every link is up).
pub fn static_steps(
    target: &Target,
    config: &InterfaceConfig,
    addresses: &[Address],
    routes: &[Route],
) -> (Vec<Step>, Vec<Step>) {
    let add = config
        .all_addresses()
        .into_iter()
        .filter(|cidr| {
            !addresses
                .iter()
                .any(|a| a.index == target.index && a.cidr == *cidr)
        })
        .map(|cidr| Step::AddAddress(target.clone(), cidr, None))
        .collect();
    let gateways = config
        .gateway
        .map(|gw| Route::default_via(IpAddr::V4(gw), target.index, 0))
        .into_iter()
        .chain(
            config
                .gateway_ipv6
                .map(|gw| Route::default_via(IpAddr::V6(gw), target.index, STATIC_METRIC_V6)),
        );
    let route = gateways
        .filter(|route| !routes.contains(route))
        .map(|route| Step::AddRoute(target.clone(), route))
        .collect();
    (add, route)
}

/// The routes a lease gives: its classless routes (RFC 3442 says to ignore
/// the routers then), else a default route through the first router.
pub fn lease_routes(lease: &Lease, index: u32) -> Vec<Route> {
    let metric = dhcp_metric(index);
    if !lease.classless_routes.is_empty() {
        return lease
            .classless_routes
            .iter()
            .map(|r| Route {
                destination: IpCidr {
                    addr: IpAddr::V4(r.destination),
                    prefix_len: r.prefix_len,
                },
                // 0.0.0.0 means "on this link".
                gateway: (r.router != Ipv4Addr::UNSPECIFIED).then_some(IpAddr::V4(r.router)),
                index,
                metric,
            })
            .collect();
    }
    lease
        .routers
        .first()
        .map(|&gw| Route::default_via(IpAddr::V4(gw), index, metric))
        .into_iter()
        .collect()
}

/// The changes that put `lease` on `link`, replacing `old`: the address is
/// given the lease's lifetime, so the kernel drops it if renewal fails and
/// nobody is left to. The lease's MTU applies unless the config sets one.
pub fn lease_steps(
    link: &Link,
    lease: &Lease,
    old: Option<&Lease>,
    config_mtu: Option<u32>,
) -> Vec<Step> {
    let target = Target::from(link);
    let mut steps = Vec::new();
    let new_routes = lease_routes(lease, link.index);
    if let Some(old) = old {
        for route in lease_routes(old, link.index) {
            if !new_routes.contains(&route) {
                steps.push(Step::DelRoute(target.clone(), route));
            }
        }
        if old.cidr() != lease.cidr() {
            steps.push(Step::DelAddress(target.clone(), old.cidr()));
        }
    }
    if config_mtu.is_none()
        && let Some(mtu) = lease
            .mtu
            .map(u32::from)
            .filter(|&mtu| mtu != link.mtu && mtu >= 68)
    {
        steps.push(Step::Mtu(target.clone(), mtu));
    }
    steps.push(Step::AddAddress(
        target.clone(),
        lease.cidr(),
        Some(lease.lease_secs),
    ));
    steps.extend(
        new_routes
            .into_iter()
            .map(|route| Step::AddRoute(target.clone(), route)),
    );
    steps
}

/// The changes that take a lease off `link` (released or expired).
pub fn lease_removal_steps(link: &Link, lease: &Lease) -> Vec<Step> {
    let target = Target::from(link);
    let mut steps: Vec<Step> = lease_routes(lease, link.index)
        .into_iter()
        .map(|route| Step::DelRoute(target.clone(), route))
        .collect();
    steps.push(Step::DelAddress(target, lease.cidr()));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::lease::ClasslessRoute;

    fn link() -> Link {
        Link {
            index: 2,
            name: "eth0".into(),
            mac: None,
            up: true,
            carrier: true,
            mtu: 1500,
            kind: None,
            master: None,
        }
    }

    fn lease(address: [u8; 4]) -> Lease {
        Lease {
            address: address.into(),
            prefix_len: 24,
            server: [10, 0, 2, 2].into(),
            routers: vec![[10, 0, 2, 2].into()],
            lease_secs: 86400,
            t1_secs: 43200,
            t2_secs: 75600,
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_brings_address_lifetime_default_route_and_mtu() {
        let mut lease = lease([10, 0, 2, 15]);
        lease.mtu = Some(1400);
        let target = Target::from(&link());
        assert_eq!(
            lease_steps(&link(), &lease, None, None),
            vec![
                Step::Mtu(target.clone(), 1400),
                Step::AddAddress(target.clone(), "10.0.2.15/24".parse().unwrap(), Some(86400)),
                Step::AddRoute(
                    target.clone(),
                    Route::default_via("10.0.2.2".parse().unwrap(), 2, 1002)
                ),
            ]
        );
        // The configured MTU wins over the lease's.
        assert!(
            !lease_steps(&link(), &lease, None, Some(9000))
                .iter()
                .any(|s| matches!(s, Step::Mtu(..)))
        );
    }

    #[test]
    fn a_new_address_replaces_the_old_one() {
        let target = Target::from(&link());
        let steps = lease_steps(
            &link(),
            &lease([10, 0, 2, 16]),
            Some(&lease([10, 0, 2, 15])),
            None,
        );
        assert_eq!(
            steps[0],
            Step::DelAddress(target.clone(), "10.0.2.15/24".parse().unwrap())
        );
        // A renewal with the same address only refreshes it.
        let renewed = lease_steps(
            &link(),
            &lease([10, 0, 2, 15]),
            Some(&lease([10, 0, 2, 15])),
            None,
        );
        assert!(
            !renewed
                .iter()
                .any(|s| matches!(s, Step::DelAddress(..) | Step::DelRoute(..)))
        );
    }

    #[test]
    fn classless_routes_replace_the_router_option() {
        let mut lease = lease([10, 0, 2, 15]);
        lease.classless_routes = vec![
            ClasslessRoute {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                router: [10, 0, 2, 1].into(),
            },
            ClasslessRoute {
                destination: [192, 168, 5, 0].into(),
                prefix_len: 24,
                router: Ipv4Addr::UNSPECIFIED,
            },
        ];
        let routes = lease_routes(&lease, 2);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].gateway, Some("10.0.2.1".parse().unwrap()));
        assert_eq!(routes[1].gateway, None);
        assert_eq!(routes[1].destination.to_string(), "192.168.5.0/24");
    }

    #[test]
    fn removal_takes_routes_then_the_address() {
        let target = Target::from(&link());
        assert_eq!(
            lease_removal_steps(&link(), &lease([10, 0, 2, 15])),
            vec![
                Step::DelRoute(
                    target.clone(),
                    Route::default_via("10.0.2.2".parse().unwrap(), 2, 1002)
                ),
                Step::DelAddress(target, "10.0.2.15/24".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn static_steps_skip_what_is_there() {
        let config: InterfaceConfig =
            serde_norway::from_str("{address: 10.0.0.2/24, gateway: 10.0.0.1}").unwrap();
        let target = Target::from(&link());
        let present = [Address {
            index: 2,
            cidr: "10.0.0.2/24".parse().unwrap(),
            valid_secs: None,
        }];
        let route = Route::default_via("10.0.0.1".parse().unwrap(), 2, 0);
        assert_eq!(
            static_steps(&target, &config, &present, &[route]),
            (vec![], vec![])
        );
        assert_eq!(
            static_steps(&target, &config, &[], &[]),
            (
                vec![Step::AddAddress(
                    target.clone(),
                    "10.0.0.2/24".parse().unwrap(),
                    None
                )],
                vec![Step::AddRoute(target, route)]
            )
        );
    }
}
