//! Link changes: a cable plugged in (carrier up) restarts that link's DHCP,
//! so a machine moved to another network gets an address there; a link
//! that appears (hotplug, a late driver) is configured like the others.

use std::collections::BTreeMap;

use super::netlink::{Link, LinkEvent};

/// What an event means to the network code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    Nothing,
    /// The link has a carrier again (or for the first time).
    CarrierUp(Link),
    /// A link we had not seen.
    Appeared(Link),
    /// The link is gone.
    Vanished(String),
}

/// The last carrier state of every link, to see transitions.
#[derive(Debug, Default)]
pub struct LinkTracker {
    links: BTreeMap<u32, Link>,
}

impl LinkTracker {
    pub fn new(links: &[Link]) -> Self {
        Self {
            links: links.iter().map(|l| (l.index, l.clone())).collect(),
        }
    }

    /// Notes `event` and says what it means.
    pub fn update(&mut self, event: LinkEvent) -> Reaction {
        match event {
            LinkEvent::Removed(index) => self
                .links
                .remove(&index)
                .map_or(Reaction::Nothing, |gone| Reaction::Vanished(gone.name)),
            LinkEvent::Changed(link) => {
                let before = self.links.insert(link.index, link.clone());
                match before {
                    None => Reaction::Appeared(link),
                    // A rename (udev) is a new link to the configuration.
                    Some(before) if before.name != link.name => Reaction::Appeared(link),
                    Some(before) if !before.carrier && link.carrier && link.up => {
                        Reaction::CarrierUp(link)
                    }
                    Some(_) => Reaction::Nothing,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, up: bool, carrier: bool) -> Link {
        Link {
            index,
            name: name.into(),
            mac: None,
            up,
            carrier,
            mtu: 1500,
            kind: None,
            master: None,
        }
    }

    #[test]
    fn carrier_transitions_restart_only_on_the_way_up() {
        let mut tracker = LinkTracker::new(&[link(2, "eth0", true, true)]);
        // Still up: nothing.
        assert_eq!(
            tracker.update(LinkEvent::Changed(link(2, "eth0", true, true))),
            Reaction::Nothing
        );
        // Cable pulled: nothing to do yet.
        assert_eq!(
            tracker.update(LinkEvent::Changed(link(2, "eth0", true, false))),
            Reaction::Nothing
        );
        // Plugged again: DHCP starts over.
        assert_eq!(
            tracker.update(LinkEvent::Changed(link(2, "eth0", true, true))),
            Reaction::CarrierUp(link(2, "eth0", true, true))
        );
    }

    #[test]
    fn new_renamed_and_removed_links() {
        let mut tracker = LinkTracker::new(&[link(2, "eth0", false, false)]);
        assert_eq!(
            tracker.update(LinkEvent::Changed(link(3, "eth1", false, false))),
            Reaction::Appeared(link(3, "eth1", false, false))
        );
        assert_eq!(
            tracker.update(LinkEvent::Changed(link(3, "ens4", false, false))),
            Reaction::Appeared(link(3, "ens4", false, false))
        );
        assert_eq!(
            tracker.update(LinkEvent::Removed(3)),
            Reaction::Vanished("ens4".into())
        );
        assert_eq!(tracker.update(LinkEvent::Removed(3)), Reaction::Nothing);
    }
}
