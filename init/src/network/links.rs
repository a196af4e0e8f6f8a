//! Which settings apply to which link, and the changes that bring each
//! link to them. Links are matched by name, glob or `mac=`
//! ([`Network::config_for`]); a link no entry matches is left alone.

use std::collections::BTreeSet;

use os_config::schema::{BridgeRole, InterfaceConfig, Network};

use super::addresses;
use super::netlink::{Address, Link, Route};
use super::step::{Step, Target};

/// The changes for every link, in the order they must happen, and the
/// links that want DHCP.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkPlan {
    pub steps: Vec<Step>,
    pub dhcp: Vec<Link>,
}

/// What a link is to the configuration.
enum Role<'a> {
    /// Not configured: left as it is.
    Unmanaged,
    /// A virtual link we made with no entry of its own: just up.
    Virtual,
    /// A port of a bond (true) or bridge: no addresses of its own.
    Port(&'a InterfaceConfig, &'a str, bool),
    /// A link with addresses, routes or DHCP.
    Host(&'a InterfaceConfig),
}

fn role<'a>(network: &'a Network, link: &Link, virtual_names: &BTreeSet<String>) -> Role<'a> {
    match network.config_for(&link.name, link.mac) {
        Some(config) => match (&config.bond, &config.bridge) {
            (Some(bond), _) => Role::Port(config, bond.as_str(), true),
            (None, Some(BridgeRole::PortOf(bridge))) => Role::Port(config, bridge.as_str(), false),
            _ => Role::Host(config),
        },
        None if virtual_names.contains(&link.name) => Role::Virtual,
        None => Role::Unmanaged,
    }
}

/// Plans every link: ports join their masters first, then links get their
/// MTU, come up and get addresses, and routes come last.
pub fn plan(
    network: &Network,
    links: &[Link],
    addresses: &[Address],
    routes: &[Route],
    virtual_names: &BTreeSet<String>,
) -> LinkPlan {
    let mut ports = Vec::new();
    let mut setup = Vec::new();
    let mut route_steps = Vec::new();
    let mut dhcp = Vec::new();
    for link in links {
        let target = Target::from(link);
        let config = match role(network, link, virtual_names) {
            Role::Unmanaged => continue,
            Role::Virtual => {
                if !link.up {
                    setup.push(Step::Up(target));
                }
                continue;
            }
            Role::Port(config, master_name, bond) => {
                match links.iter().find(|l| l.name == master_name) {
                    Some(master) if link.master != Some(master.index) => {
                        // The bonding driver refuses a port that is up.
                        if bond && link.up {
                            ports.push(Step::Down(target.clone()));
                        }
                        ports.push(Step::Master {
                            port: target.clone(),
                            master: Target::from(master),
                        });
                        ports.push(Step::Up(target.clone()));
                    }
                    Some(_) if !link.up => ports.push(Step::Up(target.clone())),
                    Some(_) => {}
                    None => tracing::warn!("{}: {master_name} does not exist", link.name),
                }
                if let Some(mtu) = config.mtu.filter(|&mtu| mtu != link.mtu) {
                    setup.push(Step::Mtu(target, mtu));
                }
                continue;
            }
            Role::Host(config) => config,
        };
        if let Some(mtu) = config.mtu.filter(|&mtu| mtu != link.mtu) {
            setup.push(Step::Mtu(target.clone(), mtu));
        }
        if !link.up {
            setup.push(Step::Up(target.clone()));
        }
        let (add, route) = addresses::static_steps(&target, config, addresses, routes);
        setup.extend(add);
        route_steps.extend(route);
        if config.dhcp {
            dhcp.push(link.clone());
        }
    }
    let mut steps = ports;
    steps.extend(setup);
    steps.extend(route_steps);
    LinkPlan { steps, dhcp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use os_config::schema::MacAddr;

    fn network(yaml: &str) -> Network {
        serde_norway::from_str(yaml).unwrap()
    }

    fn link(index: u32, name: &str, mac_last: u8) -> Link {
        Link {
            index,
            name: name.into(),
            mac: Some(MacAddr([0x52, 0x54, 0, 0, 0, mac_last])),
            up: false,
            carrier: false,
            mtu: 1500,
            kind: None,
            master: None,
        }
    }

    fn target(link: &Link) -> Target {
        Target::from(link)
    }

    #[test]
    fn matched_by_name_glob_or_mac_and_unmatched_left_alone() {
        let network = network(
            r#"
interfaces:
  "eth*": {dhcp: true}
  mac=52:54:00:00:00:07: {mtu: 9000}
  ens3: {address: 10.0.0.3/24}
"#,
        );
        let links = [
            link(2, "eth0", 2),
            link(3, "enp0s7", 7),
            link(4, "ens3", 4),
            link(5, "wlan0", 5),
        ];
        let plan = plan(&network, &links, &[], &[], &BTreeSet::new());
        assert_eq!(
            plan.steps,
            vec![
                Step::Up(target(&links[0])),
                Step::Mtu(target(&links[1]), 9000),
                Step::Up(target(&links[1])),
                Step::Up(target(&links[2])),
                Step::AddAddress(target(&links[2]), "10.0.0.3/24".parse().unwrap(), None),
            ]
        );
        assert_eq!(plan.dhcp, vec![links[0].clone()]);
    }

    #[test]
    fn bridge_ports_join_first_and_the_bridge_gets_the_address() {
        let network = network(
            r#"
interfaces:
  br0: {bridge: true, address: 10.9.0.1/24}
  eth0: {bridge: br0}
"#,
        );
        let mut eth0 = link(2, "eth0", 2);
        eth0.up = true;
        let mut br0 = link(3, "br0", 3);
        br0.kind = Some("bridge".into());
        let links = [eth0.clone(), br0.clone()];
        let plan = plan(&network, &links, &[], &[], &BTreeSet::from(["br0".into()]));
        assert_eq!(
            plan.steps,
            vec![
                Step::Master {
                    port: target(&eth0),
                    master: target(&br0)
                },
                Step::Up(target(&eth0)),
                Step::Up(target(&br0)),
                Step::AddAddress(target(&br0), "10.9.0.1/24".parse().unwrap(), None),
            ]
        );
        // Joined and up: nothing left to do for the port.
        let mut joined = eth0.clone();
        joined.master = Some(3);
        let again = super::plan(&network, &[joined], &[], &[], &BTreeSet::new());
        assert_eq!(again.steps, vec![]);
    }

    #[test]
    fn virtual_links_without_an_entry_come_up() {
        let network = network("interfaces: {eth0: {vlans: '100'}}");
        let mut eth0 = link(2, "eth0", 2);
        eth0.up = true;
        let vlan = link(3, "eth0.100", 3);
        let plan = plan(
            &network,
            &[eth0, vlan.clone()],
            &[],
            &[],
            &BTreeSet::from(["eth0.100".into()]),
        );
        assert_eq!(plan.steps, vec![Step::Up(target(&vlan))]);
    }
}
