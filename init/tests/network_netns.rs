//! The network code against the real kernel, in network namespaces: each
//! test makes a "machine" namespace (the test thread joins it, so netlink
//! and DHCP sockets open there) and a "peer" namespace at the other end
//! of a veth pair, where dnsmasq serves DHCP. Names carry the pid and a
//! counter; a guard deletes them and stops dnsmasq, also on failure.
//!
//! Needs root, `ip` (iproute2) and `dnsmasq`; without root every test says
//! so loudly and passes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use os_config::schema::Network;
use ros::host::{FakeHost, HostCall};
use ros::network::dhcp::Phase;
use ros::network::netlink::{Link, Netlink};
use ros::network::rtnl::RtNetlink;
use ros::network::{NetworkPaths, start, status};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! needs_root {
    () => {
        if !is_root() {
            // In CI a skip would read as a pass.
            assert!(
                !std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0"),
                "{} needs root (network namespaces, dnsmasq): CI must run it as root",
                module_path!()
            );
            eprintln!(
                "\n*** SKIPPED: {} needs root (network namespaces, dnsmasq) ***\n",
                module_path!()
            );
            return;
        }
    };
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (apt-get install iproute2 dnsmasq)"));
    assert!(status.success(), "{args:?} failed");
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A machine namespace and a peer namespace joined by a veth pair
/// (`eth0` in the machine, `peer0` in the peer), torn down on drop.
struct Lab {
    machine: String,
    peer: String,
    dnsmasq: Option<Child>,
    dir: tempfile::TempDir,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

/// The MAC of the machine's `eth0`, so dnsmasq can name it.
const MAC: &str = "02:00:5e:00:00:02";

impl Lab {
    fn new() -> Self {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let lab = Self {
            machine: format!("ros-m-{id}"),
            peer: format!("ros-p-{id}"),
            dnsmasq: None,
            dir: tempfile::tempdir().unwrap(),
        };
        sh(&["ip", "netns", "add", &lab.machine]);
        sh(&["ip", "netns", "add", &lab.peer]);
        lab.in_machine(&[
            "ip", "link", "add", "eth0", "address", MAC, "type", "veth", "peer", "name", "peer0",
            "netns", &lab.peer,
        ]);
        lab.in_machine(&["ip", "link", "set", "lo", "up"]);
        lab.in_peer(&["ip", "link", "set", "lo", "up"]);
        lab.in_peer(&["ip", "addr", "add", "10.78.0.1/24", "dev", "peer0"]);
        lab.in_peer(&["ip", "link", "set", "peer0", "up"]);
        lab
    }

    fn in_machine(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.machine];
        all.extend_from_slice(args);
        sh(&all);
    }

    fn in_peer(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.peer];
        all.extend_from_slice(args);
        sh(&all);
    }

    fn machine_output(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.machine];
        all.extend_from_slice(args);
        output(&all)
    }

    fn lease_file(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.leases")
    }

    /// dnsmasq on `peer0`: 2 minute leases (its minimum) with renewal
    /// after `t1` seconds, router and DNS 10.78.0.1, our MAC named.
    fn serve_dhcp(&mut self, t1: u32) {
        let log = File::create(self.dir.path().join("dnsmasq.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.peer,
                "dnsmasq",
                "--keep-in-foreground",
            ])
            .args([
                "--conf-file=/dev/null",
                "--port=0",
                "--log-dhcp",
                "--log-facility=-",
            ])
            .args([
                "--interface=peer0",
                "--bind-interfaces",
                "--dhcp-authoritative",
            ])
            .arg("--dhcp-range=10.78.0.50,10.78.0.90,255.255.255.0,2m")
            .arg(format!("--dhcp-host={MAC},10.78.0.55,lab-node"))
            .arg("--dhcp-option=option:router,10.78.0.1")
            .arg("--dhcp-option=option:dns-server,10.78.0.1")
            .arg("--dhcp-option=option:domain-name,lab.test")
            .arg(format!("--dhcp-option=option:T1,{t1}"))
            .arg(format!("--dhcp-option=option:T2,{}", t1 + 30))
            .arg(format!("--dhcp-leasefile={}", self.lease_file().display()))
            // Its own pid file: the default one is shared by every dnsmasq.
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("dnsmasq.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        self.dnsmasq = Some(child);
    }

    fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// Runs `body` on a thread inside the machine namespace, on a
    /// current-thread runtime like PID 1's.
    fn run<T: Send + 'static>(
        &self,
        body: impl FnOnce(PathBuf) -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
    ) -> T {
        let ns = File::open(Path::new("/var/run/netns").join(&self.machine)).unwrap();
        let root = self.dir.path().join("root");
        std::thread::spawn(move || {
            // What the network code logs shows with a failing test.
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_test_writer()
                .try_init();
            // Only this thread moves; the test harness stays where it is.
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(body(root))
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.machine, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn network(yaml: &str) -> Network {
    serde_norway::from_str(yaml).unwrap()
}

fn link<'a>(links: &'a [Link], name: &str) -> &'a Link {
    links
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no link {name} in {links:?}"))
}

#[test]
fn static_addresses_routes_and_mtu() {
    needs_root!();
    let lab = Lab::new();
    let config = network(
        r#"
interfaces:
  eth0:
    address: 10.78.0.2/24
    addresses: [fd78::2/64]
    gateway: 10.78.0.1
    gateway_ipv6: fd78::1
    mtu: 1400
dns: {nameservers: [10.78.0.1], search: [lab.test]}
"#,
    );
    let (links, addresses, routes) = lab.run(move |root| {
        Box::pin(async move {
            let netlink = Arc::new(RtNetlink::connect().unwrap());
            let host = Arc::new(FakeHost::new());
            let handle = start(
                Arc::clone(&netlink),
                host,
                NetworkPaths { root },
                &config,
                None,
            )
            .await;
            let seen = (
                netlink.links().await.unwrap(),
                netlink.addresses().await.unwrap(),
                netlink.routes().await.unwrap(),
            );
            handle.shutdown().await;
            seen
        })
    });
    let eth0 = link(&links, "eth0");
    assert!(eth0.up);
    assert_eq!(eth0.mtu, 1400);
    let on_eth0: Vec<String> = addresses
        .iter()
        .filter(|a| a.index == eth0.index)
        .map(|a| a.cidr.to_string())
        .collect();
    assert!(on_eth0.contains(&"10.78.0.2/24".to_owned()), "{on_eth0:?}");
    assert!(on_eth0.contains(&"fd78::2/64".to_owned()), "{on_eth0:?}");
    let defaults: Vec<String> = routes
        .iter()
        .filter(|r| r.destination.prefix_len == 0 && r.index == eth0.index)
        .map(|r| format!("{:?}", r.gateway))
        .collect();
    assert!(
        defaults.contains(&"Some(10.78.0.1)".to_owned()),
        "{routes:?}"
    );
    assert!(defaults.contains(&"Some(fd78::1)".to_owned()), "{routes:?}");
    // The kernel routes to the gateway through eth0, from our address.
    let via = lab.machine_output(&["ip", "route", "get", "10.78.0.1"]);
    assert!(via.contains("dev eth0 src 10.78.0.2"), "{via}");
    let resolv = std::fs::read_to_string(lab.dir.path().join("root/etc/resolv.conf")).unwrap();
    assert!(
        resolv.contains("nameserver 10.78.0.1\nsearch lab.test\n"),
        "{resolv}"
    );
}

#[test]
fn dhcp_lease_renewal_hostname_dns_and_release() {
    needs_root!();
    let mut lab = Lab::new();
    lab.serve_dhcp(6);
    let config = network("interfaces: {eth0: {dhcp: true}}");
    let host = Arc::new(FakeHost::new());
    let host_in = Arc::clone(&host);
    let (online, acquired_ms, renewed_after, addresses, routes, index, resolv) =
        lab.run(move |root| {
            Box::pin(async move {
                let netlink = Arc::new(RtNetlink::connect().unwrap());
                let handle = start(
                    Arc::clone(&netlink),
                    host_in,
                    NetworkPaths { root: root.clone() },
                    &config,
                    None,
                )
                .await;
                let online = handle.wait_online(Duration::from_secs(20)).await;
                let acquired_ms = handle.dhcp()["eth0"].acquired_in_ms;
                // The writer runs on its own; give it a moment for the lease.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let resolv = std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap();
                let addresses = netlink.addresses().await.unwrap();
                let routes = netlink.routes().await.unwrap();
                let index = link(&netlink.links().await.unwrap(), "eth0").index;
                // T1 is 6 s: wait for the renewal.
                let started = Instant::now();
                let mut renewed_after = None;
                while started.elapsed() < Duration::from_secs(40) {
                    let status = handle.dhcp()["eth0"].clone();
                    if status.renewals > 0 && status.phase == Phase::Bound {
                        renewed_after = Some(started.elapsed());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let last = format!("{:?}", handle.dhcp());
                handle.shutdown().await;
                (
                    online,
                    acquired_ms,
                    renewed_after.ok_or(last),
                    addresses,
                    routes,
                    index,
                    resolv,
                )
            })
        });
    assert_eq!(
        online.bound,
        vec!["eth0".to_owned()],
        "{}",
        lab.dnsmasq_log()
    );
    let acquired_ms = acquired_ms.expect("lease time recorded");
    eprintln!("namespace DHCP: lease in {acquired_ms} ms");
    let lease = addresses
        .iter()
        .find(|a| a.index == index && a.cidr.to_string() == "10.78.0.55/24")
        .unwrap_or_else(|| panic!("no lease address in {addresses:?}"));
    // The address lives only as long as the lease (120 s).
    assert!(lease.valid_secs.is_some_and(|s| s <= 120), "{lease:?}");
    assert!(
        routes.iter().any(|r| r.destination.prefix_len == 0
            && r.gateway == Some("10.78.0.1".parse().unwrap())
            && r.metric == 1000 + index),
        "{routes:?}"
    );
    let renewed_after = renewed_after
        .unwrap_or_else(|last| panic!("no renewal; DHCP: {last}\n{}", lab.dnsmasq_log()));
    eprintln!("namespace DHCP: renewed {renewed_after:?} after binding");
    // Hostname and DNS from the lease.
    assert!(
        host.calls()
            .contains(&HostCall::Sethostname("lab-node".into()))
    );
    let root = lab.dir.path().join("root");
    assert!(
        resolv.contains("nameserver 10.78.0.1\nsearch lab.test\n"),
        "{resolv}"
    );
    assert!(
        std::fs::read_to_string(root.join("etc/hosts"))
            .unwrap()
            .contains("lab-node")
    );
    // Released at shutdown: the address is gone and dnsmasq forgot it.
    assert!(
        !lab.machine_output(&["ip", "-4", "addr", "show", "eth0"])
            .contains("10.78.0.55")
    );
    let log = lab.dnsmasq_log();
    assert!(log.contains("DHCPRELEASE(peer0) 10.78.0.55"), "{log}");
    let status = status::read_status(&status::status_path(&root))
        .unwrap()
        .unwrap();
    assert_eq!(status.dhcp["eth0"].phase, Phase::Released);
}

#[test]
fn dhcp_starts_over_when_the_link_comes_back() {
    needs_root!();
    let mut lab = Lab::new();
    lab.serve_dhcp(100);
    let config = network("interfaces: {eth0: {dhcp: true}}");
    let peer = lab.peer.clone();
    let (before, after) = lab.run(move |root| {
        Box::pin(async move {
            let netlink = Arc::new(RtNetlink::connect().unwrap());
            let handle = start(
                netlink,
                Arc::new(FakeHost::new()),
                NetworkPaths { root },
                &config,
                None,
            )
            .await;
            assert_eq!(
                handle.wait_online(Duration::from_secs(20)).await.bound,
                vec!["eth0".to_owned()]
            );
            let before = handle.dhcp()["eth0"].renewals;
            // Cable pulled and plugged: the peer end goes down and up.
            sh(&[
                "ip", "netns", "exec", &peer, "ip", "link", "set", "peer0", "down",
            ]);
            // Longer than the kernel's link-watch delay (1 s), which would
            // fold a shorter flap into no change at all.
            tokio::time::sleep(Duration::from_secs(2)).await;
            sh(&[
                "ip", "netns", "exec", &peer, "ip", "link", "set", "peer0", "up",
            ]);
            let started = Instant::now();
            let mut after = before;
            while started.elapsed() < Duration::from_secs(20) && after == before {
                tokio::time::sleep(Duration::from_millis(200)).await;
                after = handle.dhcp()["eth0"].renewals;
            }
            handle.shutdown().await;
            (before, after)
        })
    });
    // T1 is 100 s away: only the restart can have confirmed the lease.
    assert_eq!(before, 0);
    assert_eq!(after, 1, "{}", lab.dnsmasq_log());
}

#[test]
fn no_dhcp_server_times_out_within_the_limit() {
    needs_root!();
    let lab = Lab::new();
    let config = network("{dhcp_timeout: 2, interfaces: {eth0: {dhcp: true}}}");
    let (start_took, online, waited) = lab.run(move |root| {
        Box::pin(async move {
            let begin = Instant::now();
            let handle = start(
                Arc::new(RtNetlink::connect().unwrap()),
                Arc::new(FakeHost::new()),
                NetworkPaths { root },
                &config,
                None,
            )
            .await;
            let start_took = begin.elapsed();
            let begin = Instant::now();
            let online = handle.wait_online(handle.dhcp_timeout()).await;
            let waited = begin.elapsed();
            handle.shutdown().await;
            (start_took, online, waited)
        })
    });
    // Starting never waits for a lease; waiting stops at dhcp_timeout.
    assert!(
        start_took < Duration::from_secs(1),
        "start took {start_took:?}"
    );
    assert_eq!(online.pending, vec!["eth0".to_owned()]);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2500),
        "waited {waited:?}"
    );
}

#[test]
fn bridge_with_a_port() {
    needs_root!();
    let lab = Lab::new();
    // A second veth pair inside the machine: one end becomes a port.
    lab.in_machine(&[
        "ip", "link", "add", "port0", "type", "veth", "peer", "name", "port1",
    ]);
    let config = network(
        r#"
interfaces:
  br0: {bridge: true, address: 10.80.0.1/24}
  port0: {bridge: br0}
"#,
    );
    let (links, addresses) = lab.run(move |root| {
        Box::pin(async move {
            let netlink = Arc::new(RtNetlink::connect().unwrap());
            let handle = start(
                Arc::clone(&netlink),
                Arc::new(FakeHost::new()),
                NetworkPaths { root },
                &config,
                None,
            )
            .await;
            let seen = (
                netlink.links().await.unwrap(),
                netlink.addresses().await.unwrap(),
            );
            handle.shutdown().await;
            seen
        })
    });
    let br0 = link(&links, "br0");
    assert_eq!(br0.kind.as_deref(), Some("bridge"));
    assert!(br0.up);
    let port = link(&links, "port0");
    assert_eq!(port.master, Some(br0.index));
    assert!(port.up);
    assert!(
        addresses
            .iter()
            .any(|a| a.index == br0.index && a.cidr.to_string() == "10.80.0.1/24")
    );
}

/// Whether the kernel here has the bonding and 802.1Q drivers (the test
/// machine's may be built without them; the image's kernel has both, and
/// the QEMU tests cover them there).
fn has_driver(lab: &Lab, kind: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.machine,
            "ip",
            "link",
            "add",
            "probe0",
            "type",
            kind,
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("ip")
            .args(["netns", "exec", &lab.machine, "ip", "link", "del", "probe0"])
            .status()
            .is_ok_and(|s| s.success())
}

#[test]
fn bond_and_vlans() {
    needs_root!();
    let lab = Lab::new();
    if !has_driver(&lab, "bond") {
        eprintln!(
            "\n*** SKIPPED: bond_and_vlans: this kernel has no bonding driver \
             (qemu-tests/tests/network.rs covers bonds and VLANs) ***\n"
        );
        return;
    }
    lab.in_machine(&[
        "ip", "link", "add", "m0", "type", "veth", "peer", "name", "m1",
    ]);
    lab.in_machine(&[
        "ip", "link", "add", "m2", "type", "veth", "peer", "name", "m3",
    ]);
    let config = network(
        r#"
interfaces:
  m0: {bond: bond0}
  m2: {bond: bond0}
  bond0: {bond_opts: {mode: active-backup, miimon: 100}, address: 10.81.0.1/24, vlans: "100,200:storage"}
  bond0.100: {address: 10.82.0.1/24}
"#,
    );
    let links = lab.run(move |root| {
        Box::pin(async move {
            let netlink = Arc::new(RtNetlink::connect().unwrap());
            let handle = start(
                Arc::clone(&netlink),
                Arc::new(FakeHost::new()),
                NetworkPaths { root },
                &config,
                None,
            )
            .await;
            let links = netlink.links().await.unwrap();
            handle.shutdown().await;
            links
        })
    });
    let bond = link(&links, "bond0");
    assert_eq!(bond.kind.as_deref(), Some("bond"));
    assert_eq!(link(&links, "m0").master, Some(bond.index));
    assert_eq!(link(&links, "m2").master, Some(bond.index));
    assert_eq!(link(&links, "bond0.100").kind.as_deref(), Some("vlan"));
    assert_eq!(link(&links, "storage").kind.as_deref(), Some("vlan"));
    let details = lab.machine_output(&["ip", "-d", "link", "show", "bond0"]);
    assert!(details.contains("mode active-backup"), "{details}");
    assert!(details.contains("miimon 100"), "{details}");
    let vlan = lab.machine_output(&["ip", "-d", "link", "show", "storage"]);
    assert!(vlan.contains("id 200"), "{vlan}");
    let addresses = lab.machine_output(&["ip", "-4", "addr", "show", "bond0.100"]);
    assert!(addresses.contains("10.82.0.1/24"), "{addresses}");
}

/// Whether this kernel makes 802.1Q VLANs (probed on the lab's `eth0`).
fn has_vlans(lab: &Lab) -> bool {
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &lab.machine, "ip"])
            .args(args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ip(&[
        "link", "add", "link", "eth0", "name", "probe0", "type", "vlan", "id", "9",
    ]) && ip(&["link", "del", "probe0"])
}

/// RancherOS's network test, on a real kernel: `br0` exists only because a
/// VLAN port names it, and has a VLAN of its own; a named VLAN.
#[test]
fn a_bridge_named_by_a_vlan_port_with_a_vlan_of_its_own() {
    needs_root!();
    let lab = Lab::new();
    if !has_vlans(&lab) {
        eprintln!(
            "\n*** SKIPPED: a_bridge_named_by_a_vlan_port_with_a_vlan_of_its_own: this kernel \
             has no 802.1Q driver (qemu-tests/tests/rancher_compat.rs covers it) ***\n"
        );
        return;
    }
    let config = network(
        r#"
interfaces:
  br0: {vlans: 100}
  eth0: {vlans: "100,200:foobar"}
  eth0.100: {bridge: br0}
  br0.100: {address: 10.83.0.1/24}
"#,
    );
    let links = lab.run(move |root| {
        Box::pin(async move {
            let netlink = Arc::new(RtNetlink::connect().unwrap());
            let handle = start(
                Arc::clone(&netlink),
                Arc::new(FakeHost::new()),
                NetworkPaths { root },
                &config,
                None,
            )
            .await;
            let links = netlink.links().await.unwrap();
            handle.shutdown().await;
            links
        })
    });
    let br0 = link(&links, "br0");
    assert_eq!(br0.kind.as_deref(), Some("bridge"));
    let port = link(&links, "eth0.100");
    assert_eq!(port.kind.as_deref(), Some("vlan"));
    assert_eq!(port.master, Some(br0.index));
    assert_eq!(link(&links, "foobar").kind.as_deref(), Some("vlan"));
    let details = lab.machine_output(&["ip", "-d", "link", "show", "br0.100"]);
    assert!(details.contains("br0.100@br0"), "{details}");
    assert!(details.contains("id 100"), "{details}");
    let foobar = lab.machine_output(&["ip", "-d", "link", "show", "foobar"]);
    assert!(
        foobar.contains("foobar@eth0") && foobar.contains("id 200"),
        "{foobar}"
    );
    let addresses = lab.machine_output(&["ip", "-4", "addr", "show", "br0.100"]);
    assert!(addresses.contains("10.83.0.1/24"), "{addresses}");
}

/// `bridge: br1` on a port is enough: br1 has no entry of its own.
#[test]
fn a_bridge_named_only_by_its_port_is_made() {
    needs_root!();
    let lab = Lab::new();
    lab.in_machine(&[
        "ip", "link", "add", "port2", "type", "veth", "peer", "name", "port3",
    ]);
    let config = network("interfaces: {port2: {bridge: br1}}");
    let links = lab.run(move |root| {
        Box::pin(async move {
            let netlink = Arc::new(RtNetlink::connect().unwrap());
            let handle = start(
                Arc::clone(&netlink),
                Arc::new(FakeHost::new()),
                NetworkPaths { root },
                &config,
                None,
            )
            .await;
            let links = netlink.links().await.unwrap();
            handle.shutdown().await;
            links
        })
    });
    let br1 = link(&links, "br1");
    assert_eq!(br1.kind.as_deref(), Some("bridge"));
    assert!(br1.up, "a bridge without an entry still comes up");
    let port = link(&links, "port2");
    assert_eq!(port.master, Some(br1.index));
    assert!(port.up);
}
