//! DHCPv4 in-process: one tokio task per link runs a mozim client, which
//! does DISCOVER/REQUEST, renewal at T1 and rebinding at T2; this task
//! puts each lease on the link (address with the lease's lifetime, routes,
//! MTU), takes an expired one off, restarts on request (the link came up
//! again) and releases the lease on shutdown.
//!
//! Boot never waits here: [`super::NetworkHandle::wait_online`] is how
//! someone who needs the network waits, bounded by `dhcp_timeout`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mozim::{DhcpV4Client, DhcpV4Config, DhcpV4Lease, DhcpV4State};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::addresses;
use super::apply;
use super::netlink::{Link, Netlink};

/// How long to wait before a client that failed starts over.
const RETRY_DELAY: Duration = Duration::from_secs(5);

// The lease is a value of its own module: the address planning reads it
// without depending on the client.
pub use super::lease::{ClasslessRoute, Lease};

impl From<&DhcpV4Lease> for Lease {
    fn from(lease: &DhcpV4Lease) -> Self {
        let search = match (&lease.domain_search, &lease.domain_name) {
            (Some(list), _) if !list.is_empty() => valid_domains(list),
            (_, Some(domain)) if !domain.is_empty() => valid_domains(std::slice::from_ref(domain)),
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
            hostname: lease.host_name.clone().filter(|h| valid_hostname(h)),
            mtu: lease.mtu,
            lease_secs: lease.lease_time_sec,
            t1_secs: lease.t1_sec,
            t2_secs: lease.t2_sec,
        }
    }
}

/// The search domains of a lease that are domain names (RFC 1035 labels):
/// they go into `resolv.conf` as they are, so a server's newline or blank
/// would add a line of its own (`nameserver` of its choosing). Each one
/// left out is logged, named in Rust's escaped form.
fn valid_domains(domains: &[String]) -> Vec<String> {
    domains
        .iter()
        .filter(|domain| {
            let valid = os_config::schema::DomainName::try_from((*domain).clone()).is_ok();
            if !valid {
                tracing::warn!("DHCP: search domain {domain:?} is not a domain name; left out");
            }
            valid
        })
        .cloned()
        .collect()
}

/// Whether a lease's host name may be the machine's (it goes into
/// `/etc/hostname` and `/etc/hosts`); an empty one is none.
fn valid_hostname(name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let valid = os_config::schema::Hostname::try_from(name.to_owned()).is_ok();
    if !valid {
        tracing::warn!("DHCP: host name {name:?} is not a host name; left out");
    }
    valid
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
                // mozim parses the server's packets in here: a panic on
                // one is this client's failure, not PID 1's.
                let run = crate::untrusted::Contained::new(format!("DHCP on {name}"), client.run());
                let event = tokio::select! {
                    state = run => Ok(state),
                    command = control.recv() => Err(command),
                };
                let event = match event {
                    Ok(Err(panicked)) => {
                        tracing::warn!("{panicked}; the client starts over");
                        tokio::time::sleep(RETRY_DELAY).await;
                        break;
                    }
                    Ok(Ok(state)) => Ok(state),
                    Err(command) => Err(command),
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
    use std::net::Ipv4Addr;

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
    fn search_domains_and_host_names_that_are_no_names_are_left_out() {
        let mut lease = DhcpV4Lease::default();
        lease.domain_search = Some(vec![
            "good.example".into(),
            "evil.example\nnameserver 6.6.6.6".into(),
            "has space.example".into(),
            "tab\t.example".into(),
            "-dash.example".into(),
            format!("{}.example", "a".repeat(64)),
            "fine-too.example.".into(),
        ]);
        lease.host_name = Some("bad\nname".into());
        let ours = Lease::from(&lease);
        assert_eq!(ours.search, ["good.example", "fine-too.example."]);
        assert_eq!(ours.hostname, None);
        // Option 15 is checked the same way.
        lease.domain_search = None;
        lease.domain_name = Some("lab.example\nsearch evil".into());
        assert!(Lease::from(&lease).search.is_empty());
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
