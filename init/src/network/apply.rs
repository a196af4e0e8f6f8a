//! Turning a plan into netlink requests, and the whole static pass:
//! create virtual links, then enslave ports, set MTU, bring links up, add
//! addresses, and add routes last (a gateway is reachable only once its
//! link is up and addressed).

use std::collections::BTreeSet;
use std::net::IpAddr;

use os_config::schema::Network;

use super::links::{self, LinkPlan};
use super::netlink::{Link, Netlink, NetlinkError, NetlinkResult, NewLink, Route};
use super::step::{Step, Target};
use super::virtual_links;

/// Runs one step.
pub async fn run<N: Netlink>(netlink: &N, step: &Step) -> NetlinkResult<()> {
    let result = match step {
        Step::Up(t) => netlink.set_up(t.index, true).await,
        Step::Down(t) => netlink.set_up(t.index, false).await,
        Step::Mtu(t, mtu) => netlink.set_mtu(t.index, *mtu).await,
        Step::Master { port, master } => netlink.set_master(port.index, master.index).await,
        Step::AddAddress(t, cidr, valid) => netlink.add_address(t.index, *cidr, *valid).await,
        Step::DelAddress(t, cidr) => netlink.del_address(t.index, *cidr).await,
        Step::AddRoute(_, route) => netlink.add_route(route).await,
        Step::DelRoute(_, route) => netlink.del_route(route).await,
    };
    match result {
        // Adding what is there already is what we wanted.
        Err(error) if error.is_exists() => Ok(()),
        other => other,
    }
}

/// Runs every step; one that fails is logged and the rest still run, so
/// one bad link does not leave the others unconfigured.
pub async fn run_all<N: Netlink>(netlink: &N, steps: &[Step]) -> Vec<NetlinkError> {
    let mut errors = Vec::new();
    for step in steps {
        tracing::debug!("network: {step}");
        if let Err(error) = run(netlink, step).await {
            tracing::warn!("network: {step}: {error}");
            errors.push(error);
        }
    }
    errors
}

/// What the static pass did.
#[derive(Debug, Default)]
pub struct Configured {
    /// The links to run DHCP on.
    pub dhcp: Vec<Link>,
    /// Every request that failed.
    pub errors: Vec<NetlinkError>,
}

/// Applies `network` to the links there are: idempotent, so it runs again
/// when a link appears.
pub async fn configure<N: Netlink>(netlink: &N, network: &Network) -> NetlinkResult<Configured> {
    let mut errors = Vec::new();
    let mut virtual_names = BTreeSet::new();
    let mut created = BTreeSet::new();
    let mut wanted_bonds = Vec::new();
    // Bonds and bridges first, then VLANs whose parent is one of them.
    for _round in 0..3 {
        let links = netlink.links().await?;
        let wanted = virtual_links::wanted(network, &links);
        virtual_names.extend(wanted.iter().map(|w| w.name().to_owned()));
        wanted_bonds = wanted
            .iter()
            .filter(|w| matches!(w, NewLink::Bond { .. }))
            .cloned()
            .collect();
        let missing: Vec<_> = wanted
            .into_iter()
            .filter(|w| !links.iter().any(|l| l.name == w.name()))
            .collect();
        if missing.is_empty() {
            break;
        }
        for link in missing {
            tracing::info!("network: creating {} {}", link.kind(), link.name());
            match netlink.create(&link).await {
                Ok(()) => {
                    created.insert(link.name().to_owned());
                }
                Err(error) if error.is_exists() => {}
                Err(error) => {
                    tracing::warn!("network: creating {}: {error}", link.name());
                    errors.push(error);
                }
            }
        }
    }
    let links = netlink.links().await?;
    // A bond we did not make (the kernel's own bond0) gets our options
    // while it is still down and has no ports: later the kernel refuses.
    for bond in &wanted_bonds {
        let fresh = links
            .iter()
            .find(|l| l.name == bond.name())
            .is_some_and(|l| !l.up && !links.iter().any(|port| port.master == Some(l.index)));
        if fresh && !created.contains(bond.name()) {
            tracing::info!("network: setting options of {}", bond.name());
            if let Err(error) = netlink.update(bond).await {
                tracing::warn!("network: {error}");
                errors.push(error);
            }
        }
    }
    let addresses = netlink.addresses().await?;
    let routes = netlink.routes().await?;
    let LinkPlan { steps, dhcp } =
        links::plan(network, &links, &addresses, &routes, &virtual_names);
    for step in &steps {
        tracing::info!("network: {step}");
    }
    errors.extend(run_all(netlink, &steps).await);
    Ok(Configured { dhcp, errors })
}

/// The routes of `gateway` on `target`, for logs and plans.
pub fn default_route(target: &Target, gateway: IpAddr, metric: u32) -> Step {
    Step::AddRoute(
        target.clone(),
        Route::default_via(gateway, target.index, metric),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::netlink::{FakeNetlink, NetlinkCall};
    use os_config::schema::{BondOptions, IpCidr};

    fn network(yaml: &str) -> Network {
        serde_norway::from_str(yaml).unwrap()
    }

    fn cidr(text: &str) -> IpCidr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn static_addresses_and_gateway_in_order() {
        let netlink = FakeNetlink::new();
        let eth0 = netlink.add_link("eth0", None);
        let network = network(
            "interfaces: {eth0: {address: 10.1.0.2/24, addresses: [fd00::2/64], \
             gateway: 10.1.0.1, gateway_ipv6: 'fd00::1', mtu: 1400}}",
        );
        let configured = configure(&netlink, &network).await.unwrap();
        assert!(configured.dhcp.is_empty());
        assert!(configured.errors.is_empty());
        assert_eq!(
            netlink.calls(),
            vec![
                NetlinkCall::SetMtu {
                    link: "eth0".into(),
                    mtu: 1400
                },
                NetlinkCall::SetUp {
                    link: "eth0".into(),
                    up: true
                },
                NetlinkCall::AddAddress {
                    link: "eth0".into(),
                    cidr: cidr("10.1.0.2/24"),
                    valid_secs: None
                },
                NetlinkCall::AddAddress {
                    link: "eth0".into(),
                    cidr: cidr("fd00::2/64"),
                    valid_secs: None
                },
                NetlinkCall::AddRoute(Route::default_via("10.1.0.1".parse().unwrap(), eth0, 0)),
                NetlinkCall::AddRoute(Route::default_via("fd00::1".parse().unwrap(), eth0, 1024)),
            ]
        );
        // A second pass finds everything in place and changes nothing.
        netlink.clear_calls();
        configure(&netlink, &network).await.unwrap();
        assert_eq!(netlink.calls(), vec![]);
    }

    #[tokio::test]
    async fn bond_with_members_and_a_vlan_on_top() {
        let netlink = FakeNetlink::new();
        let eth0 = netlink.add_link("eth0", None);
        netlink.add_link("eth1", None);
        netlink.set_up(eth0, true).await.unwrap();
        netlink.clear_calls();
        let network = network(
            r#"
interfaces:
  eth0: {bond: bond0}
  eth1: {bond: bond0}
  bond0: {bond_opts: {mode: 1}, address: 10.2.0.2/24, vlans: "100"}
  bond0.100: {address: 10.3.0.2/24}
"#,
        );
        let configured = configure(&netlink, &network).await.unwrap();
        assert!(configured.errors.is_empty(), "{:?}", configured.errors);
        let calls = netlink.calls();
        assert_eq!(
            calls[..2],
            [
                NetlinkCall::Create(NewLink::Bond {
                    name: "bond0".into(),
                    options: BondOptions {
                        mode: Some(os_config::schema::BondMode::ActiveBackup),
                        ..BondOptions::default()
                    }
                }),
                NetlinkCall::Create(NewLink::Vlan {
                    name: "bond0.100".into(),
                    parent: 3,
                    id: 100
                }),
            ]
        );
        // A member goes down before it joins (the kernel insists), then up.
        let eth0 = |up| NetlinkCall::SetUp {
            link: "eth0".into(),
            up,
        };
        let down = calls.iter().position(|c| *c == eth0(false)).unwrap();
        let join = calls
            .iter()
            .position(|c| {
                *c == NetlinkCall::SetMaster {
                    link: "eth0".into(),
                    master: "bond0".into(),
                }
            })
            .unwrap();
        let up = calls.iter().position(|c| *c == eth0(true)).unwrap();
        assert!(down < join && join < up);
        assert_eq!(netlink.link("eth1").unwrap().master, Some(3));
        assert!(netlink.link("bond0").unwrap().up);
        assert!(netlink.link("bond0.100").unwrap().up);
        assert_eq!(netlink.addresses_of("bond0"), vec![cidr("10.2.0.2/24")]);
        assert_eq!(netlink.addresses_of("bond0.100"), vec![cidr("10.3.0.2/24")]);
        assert!(netlink.addresses_of("eth0").is_empty());
    }

    #[tokio::test]
    async fn rancheros_bridge_and_vlan_test_configuration_in_one_pass() {
        // tests/assets/test_09 of RancherOS: br0 exists only because a
        // VLAN port names it, and carries a VLAN of its own.
        let netlink = FakeNetlink::new();
        netlink.add_link("eth0", None);
        netlink.add_link("eth1", None);
        let network = network(
            r#"
interfaces:
  br0: {vlans: 100}
  eth1: {vlans: "100,200:foobar"}
  eth1.100: {bridge: br0}
  br0.100: {address: 123.123.123.123/32}
"#,
        );
        let configured = configure(&netlink, &network).await.unwrap();
        assert!(configured.errors.is_empty(), "{:?}", configured.errors);
        let br0 = netlink.link("br0").unwrap();
        assert_eq!(br0.kind.as_deref(), Some("bridge"));
        assert!(br0.up);
        let port = netlink.link("eth1.100").unwrap();
        assert_eq!(port.kind.as_deref(), Some("vlan"));
        assert_eq!(port.master, Some(br0.index));
        assert!(port.up);
        assert!(netlink.link("foobar").unwrap().up);
        let vlan = netlink.link("br0.100").unwrap();
        assert!(vlan.up);
        assert_eq!(
            netlink.addresses_of("br0.100"),
            vec![cidr("123.123.123.123/32")]
        );
        // Nothing is missing the second time.
        netlink.clear_calls();
        configure(&netlink, &network).await.unwrap();
        assert!(
            !netlink
                .calls()
                .iter()
                .any(|c| matches!(c, NetlinkCall::Create(_))),
            "{:?}",
            netlink.calls()
        );
    }

    #[tokio::test]
    async fn the_kernels_own_bond0_gets_our_options() {
        let netlink = FakeNetlink::new();
        netlink.add_link("eth1", None);
        netlink.add_link_of_kind("bond0", None, Some("bond"));
        let network = network("interfaces: {eth1: {bond: bond0}, bond0: {bond_opts: {mode: 1}}}");
        configure(&netlink, &network).await.unwrap();
        let calls = netlink.calls();
        let options = BondOptions {
            mode: Some(os_config::schema::BondMode::ActiveBackup),
            ..BondOptions::default()
        };
        assert_eq!(
            calls[0],
            NetlinkCall::Update(NewLink::Bond {
                name: "bond0".into(),
                options
            })
        );
        assert!(calls.contains(&NetlinkCall::SetMaster {
            link: "eth1".into(),
            master: "bond0".into()
        }));
        // Up and with a port: its options are not touched again.
        netlink.clear_calls();
        configure(&netlink, &network).await.unwrap();
        assert!(
            !netlink
                .calls()
                .iter()
                .any(|c| matches!(c, NetlinkCall::Update(_)))
        );
    }

    #[tokio::test]
    async fn a_failing_step_does_not_stop_the_others() {
        let netlink = FakeNetlink::new();
        netlink.add_link("eth0", None);
        netlink.add_link("eth1", None);
        let network =
            network("interfaces: {eth0: {address: 10.1.0.2/24}, eth1: {address: 10.2.0.2/24}}");
        netlink.fail_next(1);
        let configured = configure(&netlink, &network).await.unwrap();
        assert_eq!(configured.errors.len(), 1);
        assert_eq!(netlink.addresses_of("eth0"), vec![cidr("10.1.0.2/24")]);
        assert_eq!(netlink.addresses_of("eth1"), vec![cidr("10.2.0.2/24")]);
    }

    #[test]
    fn steps_read_well_in_the_log() {
        let target = Target {
            index: 2,
            name: "eth0".into(),
        };
        assert_eq!(
            default_route(&target, "10.0.2.2".parse().unwrap(), 1002).to_string(),
            "eth0: add route default via 10.0.2.2 metric 1002"
        );
    }
}
