//! Names: `/etc/resolv.conf` from `rancher.network.dns` or the leases, the
//! host name from the configuration (where datasource metadata already
//! landed), else a lease, else `rancher`, and `/etc/hosts` to match.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use os_config::schema::{Dns, Hostname};

use super::dhcp::DhcpStatuses;
use crate::host::{Host, HostError};

/// The host name when nothing else names the machine.
pub const DEFAULT_HOSTNAME: &str = "rancher";

/// The resolver reads at most three servers.
const MAX_NAMESERVERS: usize = 3;

/// What the machine's names are right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub hostname: String,
    pub resolv_conf: String,
    pub hosts: String,
}

/// Works out the names from the configuration and the current leases
/// (in link name order, so the result does not depend on lease timing).
pub fn names(dns: &Dns, configured: Option<&Hostname>, leases: &DhcpStatuses) -> Names {
    let leases: Vec<_> = leases.values().filter_map(|s| s.lease.as_ref()).collect();
    let hostname = configured.map(|h| h.as_str().to_owned()).or_else(|| {
        leases
            .iter()
            .filter_map(|l| l.hostname.clone())
            .find(|h| Hostname::try_from(h.clone()).is_ok())
    });
    let hostname = hostname.unwrap_or_else(|| DEFAULT_HOSTNAME.to_owned());
    let (servers, search): (Vec<IpAddr>, Vec<String>) = if dns.nameservers.is_empty() {
        (
            leases
                .iter()
                .flat_map(|l| l.dns.iter().map(|&a| IpAddr::V4(a)))
                .collect(),
            if dns.search.is_empty() {
                leases.iter().flat_map(|l| l.search.clone()).collect()
            } else {
                dns.search.iter().map(ToString::to_string).collect()
            },
        )
    } else {
        (
            dns.nameservers.clone(),
            dns.search.iter().map(ToString::to_string).collect(),
        )
    };
    Names {
        resolv_conf: resolv_conf(&servers, &search),
        hosts: hosts(&hostname),
        hostname,
    }
}

fn resolv_conf(servers: &[IpAddr], search: &[String]) -> String {
    let mut text = String::from("# Written by ros from rancher.network.dns or DHCP.\n");
    let mut seen = Vec::new();
    for server in servers {
        if !seen.contains(server) && seen.len() < MAX_NAMESERVERS {
            seen.push(*server);
            text.push_str(&format!("nameserver {server}\n"));
        }
    }
    let mut domains: Vec<&str> = Vec::new();
    for domain in search {
        if !domains.contains(&domain.as_str()) {
            domains.push(domain);
        }
    }
    if !domains.is_empty() {
        text.push_str(&format!("search {}\n", domains.join(" ")));
    }
    text
}

fn hosts(hostname: &str) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short == hostname {
        hostname.to_owned()
    } else {
        format!("{hostname} {short}")
    };
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{names}\n")
}

/// Where the name files live, under a root that tests move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePaths {
    pub root: PathBuf,
}

impl NamePaths {
    pub fn under(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn etc(&self, file: &str) -> PathBuf {
        self.root.join("etc").join(file)
    }
}

/// Writes what changed since `before` and sets the kernel's host name.
pub fn write(
    host: &dyn Host,
    paths: &NamePaths,
    names: &Names,
    before: Option<&Names>,
) -> Result<(), HostError> {
    let write_file = |file: &str, text: &str| {
        let path = paths.etc(file);
        write_in_place(&path, text).map_err(|source| HostError {
            op: "write",
            target: path.display().to_string(),
            source,
        })
    };
    if before.is_none_or(|b| b.resolv_conf != names.resolv_conf) {
        write_file("resolv.conf", &names.resolv_conf)?;
    }
    if before.is_none_or(|b| b.hostname != names.hostname) {
        tracing::info!("host name {}", names.hostname);
        host.sethostname(&names.hostname)?;
        write_file("hostname", &format!("{}\n", names.hostname))?;
        write_file("hosts", &names.hosts)?;
    }
    Ok(())
}

/// Makes the name files under `root`/etc that do not exist yet, with the
/// defaults, so services on the host network can bind them even when the
/// network did not start. Existing ones are left as they are.
pub fn ensure_files(root: &Path) -> io::Result<()> {
    let defaults = [
        ("resolv.conf", String::new()),
        ("hostname", format!("{DEFAULT_HOSTNAME}\n")),
        ("hosts", hosts(DEFAULT_HOSTNAME)),
    ];
    for (file, text) in defaults {
        let path = root.join("etc").join(file);
        if path.symlink_metadata().is_err() {
            write_in_place(&path, &text)?;
        }
    }
    Ok(())
}

/// Containers get these files bind-mounted, which pins the inode: a
/// rename would leave them the old file, so the file is rewritten where it
/// is (one small write; a reader at the wrong moment sees it empty).
fn write_in_place(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A symlink (Debian's resolv.conf can be one) is replaced, not followed.
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        std::fs::remove_file(path)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_name_files_are_made_and_existing_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/resolv.conf"), "nameserver 10.0.2.3\n").unwrap();
        ensure_files(dir.path()).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.path().join("etc").join(f)).unwrap();
        assert_eq!(read("resolv.conf"), "nameserver 10.0.2.3\n");
        assert_eq!(read("hostname"), "rancher\n");
        assert!(read("hosts").contains("localhost"), "{}", read("hosts"));
    }
    use crate::host::{FakeHost, HostCall};
    use crate::network::dhcp::{DhcpStatus, Lease, Phase};

    fn dns(yaml: &str) -> Dns {
        serde_norway::from_str(yaml).unwrap()
    }

    fn leases(hostname: Option<&str>) -> DhcpStatuses {
        let lease = Lease {
            address: [10, 0, 2, 15].into(),
            prefix_len: 24,
            dns: vec![[10, 0, 2, 3].into()],
            search: vec!["lan".into()],
            hostname: hostname.map(Into::into),
            ..Lease::default()
        };
        DhcpStatuses::from([(
            "eth0".to_owned(),
            DhcpStatus {
                phase: Phase::Bound,
                lease: Some(lease),
                bound_at: None,
                acquired_in_ms: None,
                renewals: 0,
            },
        )])
    }

    #[test]
    fn configured_dns_wins_over_the_lease() {
        let names = names(
            &dns("{nameservers: [1.1.1.1, '2606:4700::1111'], search: [corp]}"),
            None,
            &leases(None),
        );
        assert!(
            names
                .resolv_conf
                .contains("nameserver 1.1.1.1\nnameserver 2606:4700::1111\nsearch corp\n")
        );
        assert!(!names.resolv_conf.contains("10.0.2.3"));
    }

    #[test]
    fn the_lease_gives_dns_when_the_config_has_none() {
        let names = names(&Dns::default(), None, &leases(None));
        assert!(
            names
                .resolv_conf
                .ends_with("nameserver 10.0.2.3\nsearch lan\n")
        );
    }

    #[test]
    fn hostname_from_config_then_lease_then_default() {
        let configured = Hostname::try_from("box1".to_owned()).unwrap();
        assert_eq!(
            names(
                &Dns::default(),
                Some(&configured),
                &leases(Some("dhcpname"))
            )
            .hostname,
            "box1"
        );
        assert_eq!(
            names(&Dns::default(), None, &leases(Some("dhcpname"))).hostname,
            "dhcpname"
        );
        assert_eq!(
            names(&Dns::default(), None, &leases(Some("not a name!"))).hostname,
            "rancher"
        );
        assert_eq!(
            names(&Dns::default(), None, &DhcpStatuses::new()).hostname,
            "rancher"
        );
    }

    #[test]
    fn hosts_names_the_machine() {
        assert!(hosts("node1.lab.example").contains("127.0.1.1\tnode1.lab.example node1\n"));
        assert!(hosts("rancher").contains("127.0.0.1\tlocalhost\n"));
    }

    #[test]
    fn at_most_three_servers_without_duplicates() {
        let servers: Vec<IpAddr> = ["1.1.1.1", "1.1.1.1", "8.8.8.8", "9.9.9.9", "4.4.4.4"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(resolv_conf(&servers, &[]).matches("nameserver").count(), 3);
    }

    #[test]
    fn writes_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = NamePaths::under(dir.path());
        let host = FakeHost::new();
        let first = names(&Dns::default(), None, &DhcpStatuses::new());
        write(&host, &paths, &first, None).unwrap();
        assert_eq!(host.calls(), vec![HostCall::Sethostname("rancher".into())]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/hostname")).unwrap(),
            "rancher\n"
        );
        let second = names(&Dns::default(), None, &leases(None));
        write(&host, &paths, &second, Some(&first)).unwrap();
        // The lease brought DNS but no name: the host name was not set again.
        assert_eq!(host.calls().len(), 1);
        assert!(
            std::fs::read_to_string(dir.path().join("etc/resolv.conf"))
                .unwrap()
                .contains("10.0.2.3")
        );
    }

    #[test]
    fn a_symlinked_resolv_conf_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "old").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("etc/resolv.conf")).unwrap();
        write_in_place(&dir.path().join("etc/resolv.conf"), "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "old");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/resolv.conf")).unwrap(),
            "new\n"
        );
    }
}
