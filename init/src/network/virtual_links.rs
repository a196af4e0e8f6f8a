//! Bridges, bonds and VLANs the configuration asks for.
//!
//! A bridge is an entry named like the link with `bridge: true`, or any
//! name a port's entry gives with `bridge: br0` (that alone makes it). A
//! bond exists when a link says `bond: bond0` (or an entry named `bond0`
//! has `bond_opts`); its options come from that entry. VLANs hang off the
//! link whose entry lists them (a NIC, a bond or a bridge), named
//! `<parent>.<id>` unless named in the list.

use os_config::schema::{BondOptions, BridgeRole, InterfaceKey, InterfaceName, Network};

use super::netlink::{Link, NewLink};

/// Every virtual link the configuration wants, given the links there are
/// now. VLANs on a bond appear once the bond exists, so callers create
/// what is missing and ask again.
pub fn wanted(network: &Network, links: &[Link]) -> Vec<NewLink> {
    let mut wanted = Vec::new();
    let mut push = |link: NewLink| {
        if !wanted.iter().any(|w: &NewLink| w.name() == link.name()) {
            wanted.push(link);
        }
    };
    for (key, config) in &network.interfaces {
        match (key, &config.bridge) {
            (InterfaceKey::Name(name), Some(BridgeRole::IsBridge)) => push(NewLink::Bridge {
                name: name.to_string(),
            }),
            // As RancherOS did: naming a bridge makes it, whether or not it
            // has an entry of its own, and whether or not a link matches
            // the port's entry yet (a VLAN port appears a round later).
            (_, Some(BridgeRole::PortOf(bridge))) => push(NewLink::Bridge {
                name: bridge.to_string(),
            }),
            _ => {}
        }
    }
    let mut bonds: Vec<String> = links
        .iter()
        .filter_map(|link| network.config_for(&link.name, link.mac)?.bond.as_ref())
        .map(ToString::to_string)
        .collect();
    for (key, config) in &network.interfaces {
        if let InterfaceKey::Name(name) = key
            && !config.bond_opts.is_empty()
        {
            bonds.push(name.to_string());
        }
    }
    for name in bonds {
        let options = network
            .config_for(&name, None)
            .map(|config| {
                // The checker refused invalid options before boot got here.
                BondOptions::from_map(&config.bond_opts).unwrap_or_else(|error| {
                    tracing::warn!("{name}: {error}; using the kernel's defaults");
                    BondOptions::default()
                })
            })
            .unwrap_or_default();
        push(NewLink::Bond { name, options });
    }
    for link in links {
        // No VLANs on VLANs: `eth*` would otherwise match `eth0.100` too.
        if link.kind.as_deref() == Some("vlan") {
            continue;
        }
        let Some(config) = network.config_for(&link.name, link.mac) else {
            continue;
        };
        for vlan in &config.vlans.0 {
            let name = match &vlan.name {
                Some(name) => name.to_string(),
                None => format!("{}.{}", link.name, vlan.id),
            };
            if InterfaceName::try_from(name.clone()).is_err() {
                tracing::warn!("{name}: too long for an interface name; VLAN not created");
                continue;
            }
            push(NewLink::Vlan {
                name,
                parent: link.index,
                id: vlan.id,
            });
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use os_config::schema::{BondMode, MacAddr};

    fn network(yaml: &str) -> Network {
        serde_norway::from_str(yaml).unwrap()
    }

    fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link {
            index,
            name: name.into(),
            mac: Some(MacAddr([2, 0, 0, 0, 0, u8::try_from(index).unwrap()])),
            up: false,
            carrier: false,
            mtu: 1500,
            kind: kind.map(Into::into),
            master: None,
        }
    }

    #[test]
    fn bridges_bonds_and_vlans_from_the_configuration() {
        let network = network(
            r#"
interfaces:
  br0: {bridge: true}
  eth0: {bridge: br0}
  eth1: {bond: bond0}
  eth2: {bond: bond0}
  bond0: {bond_opts: {mode: active-backup, miimon: 100}, vlans: "100"}
  eth3: {vlans: "10,20:storage"}
"#,
        );
        let links = [
            link(2, "eth0", None),
            link(3, "eth1", None),
            link(4, "eth2", None),
            link(5, "eth3", None),
        ];
        assert_eq!(
            wanted(&network, &links),
            vec![
                NewLink::Bridge { name: "br0".into() },
                NewLink::Bond {
                    name: "bond0".into(),
                    options: BondOptions {
                        mode: Some(BondMode::ActiveBackup),
                        miimon: Some(100),
                        ..BondOptions::default()
                    }
                },
                NewLink::Vlan {
                    name: "eth3.10".into(),
                    parent: 5,
                    id: 10
                },
                NewLink::Vlan {
                    name: "storage".into(),
                    parent: 5,
                    id: 20
                },
            ]
        );
        // Once bond0 exists, its VLAN is wanted too.
        let mut with_bond = links.to_vec();
        with_bond.push(link(6, "bond0", Some("bond")));
        assert!(wanted(&network, &with_bond).contains(&NewLink::Vlan {
            name: "bond0.100".into(),
            parent: 6,
            id: 100
        }));
    }

    #[test]
    fn a_bridge_named_only_by_its_port_is_made_and_gets_its_vlans_once_it_exists() {
        // RancherOS's own network test: br0 has no `bridge: true`, only
        // the VLAN port that names it, and a VLAN of its own.
        let network = network(
            r#"
interfaces:
  br0: {vlans: 100}
  eth1: {vlans: "100,200:foobar"}
  eth1.100: {bridge: br0}
  br0.100: {address: 123.123.123.123/32}
"#,
        );
        let links = [link(2, "eth0", None), link(3, "eth1", None)];
        assert_eq!(
            wanted(&network, &links),
            vec![
                NewLink::Bridge { name: "br0".into() },
                NewLink::Vlan {
                    name: "eth1.100".into(),
                    parent: 3,
                    id: 100
                },
                NewLink::Vlan {
                    name: "foobar".into(),
                    parent: 3,
                    id: 200
                },
            ]
        );
        let mut made = links.to_vec();
        made.push(link(4, "br0", Some("bridge")));
        made.push(link(5, "eth1.100", Some("vlan")));
        made.push(link(6, "foobar", Some("vlan")));
        assert!(wanted(&network, &made).contains(&NewLink::Vlan {
            name: "br0.100".into(),
            parent: 4,
            id: 100
        }));
    }

    #[test]
    fn a_glob_port_entry_names_its_bridge_too() {
        let network = network("interfaces: {'eth*': {bridge: br-lan}}");
        assert_eq!(
            wanted(&network, &[link(2, "eth0", None)]),
            vec![NewLink::Bridge {
                name: "br-lan".into()
            }]
        );
    }

    #[test]
    fn no_vlans_on_vlans_and_no_names_too_long() {
        let network = network(
            r#"
interfaces:
  "eth*": {vlans: "100"}
  ethernet12345: {vlans: "4000"}
"#,
        );
        let links = [
            link(2, "eth0", None),
            link(3, "eth0.100", Some("vlan")),
            link(4, "ethernet12345", None),
        ];
        assert_eq!(
            wanted(&network, &links),
            vec![NewLink::Vlan {
                name: "eth0.100".into(),
                parent: 2,
                id: 100
            }]
        );
    }

    #[test]
    fn nothing_virtual_in_the_defaults() {
        let network = network("interfaces: {lo: {address: 127.0.0.1/8}, 'eth*': {dhcp: true}}");
        assert!(wanted(&network, &[link(1, "lo", None), link(2, "eth0", None)]).is_empty());
    }
}
