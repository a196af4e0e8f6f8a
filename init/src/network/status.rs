//! What `ros network` shows: links, addresses and routes read from the
//! kernel, and the DHCP leases PID 1 keeps in a status file (the console
//! runs `ros` in its own mount namespace, so the file is how it knows).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dhcp::{DhcpStatus, DhcpStatuses};
use super::netlink::{Address, Link, Route};

/// The status file, below the root.
pub const STATUS_FILE: &str = "run/ros/network/status.json";

/// The path of the status file under `root`.
pub fn status_path(root: &Path) -> PathBuf {
    root.join(STATUS_FILE)
}

/// What PID 1 writes for `ros network`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFile {
    pub dhcp: DhcpStatuses,
}

/// Writes the file whole (temp file, rename): readers never see half.
pub fn write_status(path: &Path, status: &StatusFile) -> io::Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let text = serde_json::to_vec_pretty(status).map_err(io::Error::other)?;
    os_config::store::write_atomically(path, &text)
}

/// Reads the file; `None` when PID 1 has written none (no network code ran).
pub fn read_status(path: &Path) -> io::Result<Option<StatusFile>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The status view: each link with its addresses and DHCP lease, then the
/// routes. `now` is Unix seconds, for the lease times left.
pub fn render(
    links: &[Link],
    addresses: &[Address],
    routes: &[Route],
    dhcp: &DhcpStatuses,
    now: u64,
) -> String {
    let mut out = String::new();
    let name_of = |index: u32| {
        links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| format!("#{index}"), |l| l.name.clone())
    };
    for link in links {
        let mut state = vec![if link.up { "up" } else { "down" }];
        if link.up {
            state.push(if link.carrier {
                "carrier"
            } else {
                "no carrier"
            });
        }
        let _ = write!(out, "{}: {}, mtu {}", link.name, state.join(", "), link.mtu);
        if let Some(mac) = link.mac {
            let _ = write!(out, ", mac {mac}");
        }
        if let Some(kind) = &link.kind {
            let _ = write!(out, ", {kind}");
        }
        if let Some(master) = link.master {
            let _ = write!(out, ", port of {}", name_of(master));
        }
        out.push('\n');
        for address in addresses.iter().filter(|a| a.index == link.index) {
            let family = if address.cidr.addr.is_ipv4() {
                "inet"
            } else {
                "inet6"
            };
            let _ = write!(out, "    {family} {}", address.cidr);
            match address.valid_secs {
                Some(secs) => {
                    let _ = writeln!(out, ", valid {secs} s");
                }
                None => out.push('\n'),
            }
        }
        if let Some(status) = dhcp.get(&link.name) {
            let _ = writeln!(out, "    dhcp: {}", describe_dhcp(status, now));
        }
    }
    out.push_str("routes:\n");
    for route in routes {
        let destination = if route.destination.prefix_len == 0 {
            "default".to_owned()
        } else {
            route.destination.to_string()
        };
        let _ = write!(out, "    {destination}");
        if let Some(gateway) = route.gateway {
            let _ = write!(out, " via {gateway}");
        }
        let _ = writeln!(out, " dev {} metric {}", name_of(route.index), route.metric);
    }
    out
}

fn describe_dhcp(status: &DhcpStatus, now: u64) -> String {
    let mut text = status.phase.to_string();
    if let Some(lease) = &status.lease {
        let _ = write!(text, " {} from {}", lease.cidr(), lease.server);
        if let Some(bound) = status.bound_at {
            let elapsed = now.saturating_sub(bound);
            let left = |secs: u32| u64::from(secs).saturating_sub(elapsed);
            let _ = write!(
                text,
                ", lease {} s: renew in {} s, rebind in {} s, expires in {} s",
                lease.lease_secs,
                left(lease.t1_secs),
                left(lease.t2_secs),
                left(lease.lease_secs)
            );
        }
    }
    if let Some(ms) = status.acquired_in_ms {
        let _ = write!(text, ", acquired in {:.2} s", ms as f64 / 1000.0);
    }
    if status.renewals > 0 {
        let _ = write!(text, ", renewed {} times", status.renewals);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::dhcp::{Lease, Phase};
    use os_config::schema::MacAddr;

    #[test]
    fn shows_links_addresses_leases_and_routes() {
        let links = [Link {
            index: 2,
            name: "eth0".into(),
            mac: Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            up: true,
            carrier: true,
            mtu: 1500,
            kind: None,
            master: None,
        }];
        let addresses = [Address {
            index: 2,
            cidr: "10.0.2.15/24".parse().unwrap(),
            valid_secs: Some(86390),
        }];
        let routes = [Route::default_via("10.0.2.2".parse().unwrap(), 2, 1002)];
        let dhcp = DhcpStatuses::from([(
            "eth0".to_owned(),
            DhcpStatus {
                phase: Phase::Bound,
                lease: Some(Lease {
                    address: [10, 0, 2, 15].into(),
                    prefix_len: 24,
                    server: [10, 0, 2, 2].into(),
                    lease_secs: 86400,
                    t1_secs: 43200,
                    t2_secs: 75600,
                    ..Lease::default()
                }),
                bound_at: Some(1000),
                acquired_in_ms: Some(1250),
                renewals: 1,
            },
        )]);
        let text = render(&links, &addresses, &routes, &dhcp, 1010);
        assert_eq!(
            text,
            "eth0: up, carrier, mtu 1500, mac 52:54:00:12:34:56\n\
             \x20   inet 10.0.2.15/24, valid 86390 s\n\
             \x20   dhcp: bound 10.0.2.15/24 from 10.0.2.2, lease 86400 s: renew in 43190 s, \
             rebind in 75590 s, expires in 86390 s, acquired in 1.25 s, renewed 1 times\n\
             routes:\n\
             \x20   default via 10.0.2.2 dev eth0 metric 1002\n"
        );
    }

    #[test]
    fn the_status_file_round_trips_and_may_be_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = status_path(dir.path());
        assert_eq!(read_status(&path).unwrap(), None);
        let status = StatusFile {
            dhcp: DhcpStatuses::from([(
                "eth0".to_owned(),
                DhcpStatus {
                    phase: Phase::Acquiring,
                    lease: None,
                    bound_at: None,
                    acquired_in_ms: None,
                    renewals: 0,
                },
            )]),
        };
        write_status(&path, &status).unwrap();
        assert_eq!(read_status(&path).unwrap(), Some(status));
    }
}
