//! DHCPv4 in-process: one tokio task per link runs a mozim client, which
//! does DISCOVER/REQUEST, renewal at T1 and rebinding at T2; this task
//! puts each lease on the link (address with the lease's lifetime, routes,
//! MTU), takes an expired one off, restarts on request (the link came up
//! again) and releases the lease on shutdown.
//!
//! Boot never waits here: [`super::NetworkHandle::wait_online`] is how
//! someone who needs the network waits, bounded by `dhcp_timeout`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mozim::{DhcpV4Client, DhcpV4Config, DhcpV4Lease, DhcpV4State};
use os_config::schema::IpCidr;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::addresses;
use super::apply;
use super::netlink::{Link, Netlink};

/// How long to wait before a client that failed starts over.
const RETRY_DELAY: Duration = Duration::from_secs(5);

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

impl From<&DhcpV4Lease> for Lease {
    fn from(lease: &DhcpV4Lease) -> Self {
        let search = match (&lease.domain_search, &lease.domain_name) {
            (Some(list), _) if !list.is_empty() => list.clone(),
            (_, Some(domain)) if !domain.is_empty() => vec![domain.clone()],
            _ => Vec::new(),
        };
        Self {
            address: lease.yiaddr,
            prefix_len: lease.prefix_length(),
            server: lease.srv_id,
            routers: lease.gateways.clone().unwrap_or_default(),
            classless_routes: lease
                .classless_routes
                .iter()
                .flatten()
                .map(|r| ClasslessRoute {
                    destination: r.destination,
                    prefix_len: r.prefix_length,
                    router: r.router,
                })
                .collect(),
            dns: lease.dns_srvs.clone().unwrap_or_default(),
            search,
            hostname: lease.host_name.clone().filter(|h| !h.is_empty()),
            mtu: lease.mtu,
            lease_secs: lease.lease_time_sec,
            t1_secs: lease.t1_sec,
            t2_secs: lease.t2_sec,
        }
    }
}

/// Where a link's client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Looking for a server.
    Acquiring,
    Bound,
    /// T1 passed: asking our server to extend.
    Renewing,
    /// T2 passed: asking any server to extend.
    Rebinding,
    /// Given back at shutdown.
    Released,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Acquiring => "acquiring",
            Self::Bound => "bound",
            Self::Renewing => "renewing",
            Self::Rebinding => "rebinding",
            Self::Released => "released",
        })
    }
}

/// One link's DHCP, as `ros network` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpStatus {
    pub phase: Phase,
    pub lease: Option<Lease>,
    /// Unix seconds of the last ACK: the lease times count from here.
    pub bound_at: Option<u64>,
    /// How long the first lease took since the client started.
    pub acquired_in_ms: Option<u64>,
    /// Leases extended since the first one.
    pub renewals: u32,
}

impl DhcpStatus {
    fn acquiring() -> Self {
        Self {
            phase: Phase::Acquiring,
            lease: None,
            bound_at: None,
            acquired_in_ms: None,
            renewals: 0,
        }
    }
}

/// Every link's DHCP, by link name.
pub type DhcpStatuses = BTreeMap<String, DhcpStatus>;

/// What the rest of the network code can ask of a running client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The link came up again: verify the lease or find a new one.
    Restart,
    /// Give the lease back and stop.
    Release,
}

/// One link's client and what it needs.
#[derive(Debug)]
pub struct DhcpLink<N> {
    pub link: Link,
    pub netlink: Arc<N>,
    pub statuses: watch::Sender<DhcpStatuses>,
    /// The configured MTU, which wins over the lease's.
    pub config_mtu: Option<u32>,
    /// Sent to the server (option 12), when the configuration has one.
    pub hostname: Option<String>,
}

impl<N: Netlink> DhcpLink<N> {
    /// Runs until told to release (or the control channel closes).
    pub async fn run(self, mut control: mpsc::UnboundedReceiver<Control>) {
        let name = self.link.name.clone();
        // The lease on the link now, as mozim needs it to renew or release.
        let mut held: Option<DhcpV4Lease> = None;
        self.set_status(|s| *s = DhcpStatus::acquiring());
        loop {
            let started = Instant::now();
            let mut client = match DhcpV4Client::init(self.client_config(), held.clone()).await {
                Ok(client) => client,
                Err(error) => {
                    tracing::warn!("{name}: DHCP: {error}");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            };
            loop {
                let event = tokio::select! {
                    state = client.run() => Ok(state),
                    command = control.recv() => Err(command),
                };
                match event {
                    Ok(Ok(DhcpV4State::Done(lease))) => {
                        self.bound(&lease, held.as_ref(), started).await;
                        held = Some(*lease);
                    }
                    Ok(Ok(DhcpV4State::Renewing)) => self.set_status(|s| s.phase = Phase::Renewing),
                    Ok(Ok(DhcpV4State::Rebinding)) => {
                        self.set_status(|s| s.phase = Phase::Rebinding);
                    }
                    Ok(Ok(DhcpV4State::InitReboot | DhcpV4State::Selecting)) => {
                        // Rebinding found no server before the lease ran out.
                        if let Some(expired) = held.take() {
                            tracing::warn!("{name}: DHCP lease of {} expired", expired.yiaddr);
                            self.remove(&Lease::from(&expired)).await;
                            self.set_status(|s| *s = DhcpStatus::acquiring());
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::warn!("{name}: DHCP: {error}; starting over");
                        tokio::time::sleep(RETRY_DELAY).await;
                        break;
                    }
                    Err(Some(Control::Restart)) => {
                        tracing::info!("{name}: link up, DHCP starts over");
                        self.set_status(|s| s.phase = Phase::Acquiring);
                        break;
                    }
                    Err(Some(Control::Release) | None) => {
                        if let Some(lease) = held.take() {
                            if let Err(error) = client.release(&lease).await {
                                tracing::warn!("{name}: DHCP release: {error}");
                            }
                            tracing::info!("{name}: released {}", lease.yiaddr);
                            self.remove(&Lease::from(&lease)).await;
                        }
                        self.set_status(|s| {
                            s.phase = Phase::Released;
                            s.lease = None;
                        });
                        return;
                    }
                }
            }
        }
    }

    fn client_config(&self) -> DhcpV4Config {
        let mut config = DhcpV4Config::new(&self.link.name);
        config.set_iface_index(self.link.index);
        if let Some(mac) = self.link.mac {
            // Six bytes always fit; mozim refuses only other lengths.
            let _ = config.set_iface_mac_raw(&mac.0);
        }
        if let Some(hostname) = &self.hostname {
            config.set_host_name(hostname);
        }
        config
    }

    /// Puts a new or extended lease on the link.
    async fn bound(&self, lease: &DhcpV4Lease, old: Option<&DhcpV4Lease>, started: Instant) {
        let name = &self.link.name;
        let new = Lease::from(lease);
        let old = old.map(Lease::from);
        // The MTU may have changed since the link was listed.
        let link = match self.netlink.links().await {
            Ok(links) => links
                .into_iter()
                .find(|l| l.index == self.link.index)
                .unwrap_or_else(|| self.link.clone()),
            Err(_) => self.link.clone(),
        };
        let steps = addresses::lease_steps(&link, &new, old.as_ref(), self.config_mtu);
        let errors = apply::run_all(&*self.netlink, &steps).await;
        let took = started.elapsed();
        let renewal = old.is_some();
        if renewal {
            tracing::info!("{name}: DHCP lease of {} extended", new.address);
        } else {
            tracing::info!(
                "{name}: DHCP lease {} from {} for {} s, in {:.2} s",
                new.cidr(),
                new.server,
                new.lease_secs,
                took.as_secs_f64()
            );
        }
        if !errors.is_empty() {
            tracing::warn!("{name}: {} changes of the lease failed", errors.len());
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.set_status(|s| {
            if renewal {
                s.renewals += 1;
            } else if s.acquired_in_ms.is_none() {
                s.acquired_in_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            }
            s.phase = Phase::Bound;
            s.lease = Some(new);
            s.bound_at = Some(now);
        });
    }

    async fn remove(&self, lease: &Lease) {
        let steps = addresses::lease_removal_steps(&self.link, lease);
        apply::run_all(&*self.netlink, &steps).await;
    }

    fn set_status(&self, change: impl FnOnce(&mut DhcpStatus)) {
        self.statuses.send_modify(|all| {
            change(
                all.entry(self.link.name.clone())
                    .or_insert_with(DhcpStatus::acquiring),
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mozim_lease_in_our_terms() {
        let mut lease = DhcpV4Lease::default();
        lease.yiaddr = [192, 168, 7, 20].into();
        lease.subnet_mask = [255, 255, 255, 0].into();
        lease.srv_id = [192, 168, 7, 1].into();
        lease.gateways = Some(vec![[192, 168, 7, 1].into()]);
        lease.dns_srvs = Some(vec![[192, 168, 7, 1].into(), [9, 9, 9, 9].into()]);
        lease.domain_name = Some("lab.example".into());
        lease.host_name = Some("node7".into());
        lease.mtu = Some(1450);
        lease.lease_time_sec = 120;
        lease.t1_sec = 60;
        lease.t2_sec = 105;
        let ours = Lease::from(&lease);
        assert_eq!(ours.cidr().to_string(), "192.168.7.20/24");
        assert_eq!(ours.server, Ipv4Addr::new(192, 168, 7, 1));
        assert_eq!(ours.routers, vec![Ipv4Addr::new(192, 168, 7, 1)]);
        assert_eq!(ours.dns.len(), 2);
        assert_eq!(ours.search, vec!["lab.example".to_owned()]);
        assert_eq!(ours.hostname.as_deref(), Some("node7"));
        assert_eq!(ours.mtu, Some(1450));
        assert_eq!(
            (ours.lease_secs, ours.t1_secs, ours.t2_secs),
            (120, 60, 105)
        );
        // Option 119 wins over the domain name, and an empty host name is none.
        lease.domain_search = Some(vec!["a.example".into(), "b.example".into()]);
        lease.host_name = Some(String::new());
        let ours = Lease::from(&lease);
        assert_eq!(
            ours.search,
            vec!["a.example".to_owned(), "b.example".to_owned()]
        );
        assert_eq!(ours.hostname, None);
    }

    #[test]
    fn status_round_trips_through_json() {
        let status = DhcpStatus {
            phase: Phase::Bound,
            lease: Some(Lease {
                address: [10, 0, 2, 15].into(),
                prefix_len: 24,
                lease_secs: 86400,
                ..Lease::default()
            }),
            bound_at: Some(1_700_000_000),
            acquired_in_ms: Some(812),
            renewals: 2,
        };
        let text = serde_json::to_string(&status).unwrap();
        assert!(text.contains("\"phase\":\"bound\""));
        assert_eq!(serde_json::from_str::<DhcpStatus>(&text).unwrap(), status);
    }
}
