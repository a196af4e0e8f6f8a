//! The hook against the real kernel, in network namespaces. Each test
//! makes a "host" namespace (where the hook runs, as crun would run it)
//! joined by a veth pair to an "outside" namespace: host `eth0`
//! 192.0.2.1/24, outside `out0` 192.0.2.2/24, the outside being the
//! host's gateway. A "container" is `unshare -n sleep` started from the
//! host namespace: its own network namespace, reached as
//! `/proc/<pid>/ns/net`. Traffic comes from sockets opened by threads that
//! `setns` into a namespace (a socket stays in the namespace it was made
//! in). Names carry the pid and a counter, so tests run in parallel; a
//! guard kills the containers and deletes the namespaces, also on failure.
//!
//! Needs root, `ip` (iproute2), `unshare`/`nsenter` (util-linux) and
//! `nft` (nftables, only to show and check what the kernel holds).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use container_net::{
    ANNOTATION_BRIDGE, ANNOTATION_MTU, ANNOTATION_PORTS, ANNOTATION_SUBNET, NetError, Phase, Proto,
    address_of, hook, port_owner, veth_name,
};

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (apt-get install iproute2 util-linux nftables)"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread inside the network namespace at `ns`.
fn in_ns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    let ns = File::open(ns).unwrap_or_else(|e| panic!("{}: {e}", ns.display()));
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const TIMEOUT: Duration = Duration::from_secs(3);

/// A container: a process in its own network namespace.
struct Container {
    id: String,
    child: Child,
}

impl Container {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// The state crun passes: annotations as the CLI writes them, plus
    /// one of containerd's own.
    fn state_json(&self, annotations: &[(&str, &str)]) -> String {
        let mut all: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string().into()))
            .collect();
        all.insert("io.containerd.image.name".into(), "busybox".into());
        serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "status": "creating",
            "pid": self.pid(),
            "bundle": "/run/containerd/io.containerd.runtime.v2.task/ros/x",
            "annotations": all,
        })
        .to_string()
    }

    /// Runs a command in the container's network namespace.
    fn run(&self, args: &[&str]) -> String {
        let net = format!("--net={}", self.netns().display());
        let mut all = vec!["nsenter", &net];
        all.extend_from_slice(args);
        output(&all)
    }
}

struct Lab {
    host: String,
    outside: String,
    state: tempfile::TempDir,
    containers: Vec<Container>,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    fn new() -> Self {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let lab = Self {
            host: format!("rcn-h-{id}"),
            outside: format!("rcn-o-{id}"),
            state: tempfile::tempdir().unwrap(),
            containers: Vec::new(),
        };
        output(&["ip", "netns", "add", &lab.host]);
        output(&["ip", "netns", "add", &lab.outside]);
        lab.in_host(&[
            "ip",
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "out0",
            "netns",
            &lab.outside,
        ]);
        lab.in_host(&["ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"]);
        lab.in_outside(&["ip", "addr", "add", "192.0.2.2/24", "dev", "out0"]);
        for args in [
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", "eth0", "up"],
        ] {
            lab.in_host(&args);
        }
        for args in [
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "set", "out0", "up"],
        ] {
            lab.in_outside(&args);
        }
        lab.in_host(&["ip", "route", "add", "default", "via", "192.0.2.2"]);
        lab
    }

    fn exec(ns: &str, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", ns];
        all.extend_from_slice(args);
        output(&all)
    }

    fn in_host(&self, args: &[&str]) -> String {
        Self::exec(&self.host, args)
    }

    fn in_outside(&self, args: &[&str]) -> String {
        Self::exec(&self.outside, args)
    }

    fn host_ns(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.host)
    }

    fn outside_ns(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.outside)
    }

    fn state(&self) -> &Path {
        self.state.path()
    }

    /// Starts a container named `id` (made unique per lab).
    fn container(&mut self, id: &str) -> usize {
        self.process(id, &["unshare", "--net", "sleep", "120"])
    }

    /// Starts `args` (ending in `sleep`) from the host namespace as the
    /// process of container `id`.
    fn process(&mut self, id: &str, args: &[&str]) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.host])
            .args(args)
            .spawn()
            .expect("ip netns exec … unshare");
        // `ip netns exec` and `unshare` exec in place: the pid is sleep's
        // once sleep runs, in its own namespace by then.
        let started = Instant::now();
        let exe = format!("/proc/{}/exe", child.id());
        while !std::fs::read_link(&exe).is_ok_and(|p| p.ends_with("sleep")) {
            assert!(started.elapsed() < TIMEOUT, "the container did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.containers.push(Container {
            id: format!("{id}-{}", self.host),
            child,
        });
        self.containers.len() - 1
    }

    fn c(&self, n: usize) -> &Container {
        &self.containers[n]
    }

    /// Runs the hook as crun would, from the host namespace.
    fn hook(&self, phase: Phase, n: usize, ports: &str) -> Result<(), NetError> {
        self.hook_with(phase, n, &[(ANNOTATION_PORTS, ports)])
    }

    fn hook_with(
        &self,
        phase: Phase,
        n: usize,
        annotations: &[(&str, &str)],
    ) -> Result<(), NetError> {
        let json = self.c(n).state_json(annotations);
        let state = self.state().to_path_buf();
        in_ns(&self.host_ns(), move || {
            hook(phase, &mut json.as_bytes(), &state)
        })
    }

    fn up(&self, n: usize, ports: &str) {
        self.hook(Phase::Up, n, ports)
            .unwrap_or_else(|e| panic!("up: {e}"));
    }

    fn down(&self, n: usize) {
        self.hook(Phase::Down, n, "")
            .unwrap_or_else(|e| panic!("down: {e}"));
    }

    /// Stops container `n`: its namespace (and veth peer) goes with it.
    fn kill(&mut self, n: usize) {
        let child = &mut self.containers[n].child;
        let _ = child.kill();
        let _ = child.wait();
    }

    fn nft_rules(&self) -> String {
        self.in_host(&["nft", "list", "table", "ip", "ros"])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for container in &mut self.containers {
            let _ = container.child.kill();
            let _ = container.child.wait();
        }
        for ns in [&self.host, &self.outside] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A TCP server answering each connection with `greeting` and the peer
/// address it saw; runs until the listener's namespace is gone.
fn serve(listener: TcpListener, greeting: &'static str) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let peer = stream
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let _ = write!(stream, "{greeting} {peer}");
        }
    });
}

/// Connects from namespace `ns` to `to` and reads the whole answer.
fn fetch(ns: &Path, to: SocketAddr) -> std::io::Result<String> {
    let mut stream = in_ns(ns, || TcpStream::connect_timeout(&to, TIMEOUT))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn c_addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 18, 0, last)
}

#[test]
fn a_container_gets_eth0_and_reaches_the_gateway_and_the_outside_masqueraded() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    lab.up(web, "");
    let id = &lab.c(web).id;
    assert_eq!(address_of(lab.state(), id), Some(c_addr(2)));

    let addresses = lab.c(web).run(&["ip", "-4", "-o", "addr", "show"]);
    assert!(
        addresses.contains("eth0    inet 172.18.0.2/16"),
        "{addresses}"
    );
    assert!(addresses.contains("lo    inet 127.0.0.1/8"), "{addresses}");
    let routes = lab.c(web).run(&["ip", "route"]);
    assert!(
        routes.contains("default via 172.18.0.1 dev eth0"),
        "{routes}"
    );
    let bridge = lab.in_host(&["ip", "-4", "-o", "addr", "show", "dev", "ros0"]);
    assert!(bridge.contains("inet 172.18.0.1/16"), "{bridge}");
    let veth = lab.in_host(&["ip", "-d", "link", "show", &veth_name(id)]);
    assert!(
        veth.contains("master ros0") && veth.contains(&format!("alias {id}")),
        "{veth}"
    );

    // The gateway: a server on the host's bridge address.
    let gateway = in_ns(&lab.host_ns(), || TcpListener::bind("172.18.0.1:7000")).unwrap();
    serve(gateway, "gateway");
    let answer = fetch(&lab.c(web).netns(), addr(c_addr(1), 7000)).unwrap();
    assert_eq!(answer, "gateway 172.18.0.2");

    // The outside sees the host's address, not the container's.
    let outside = in_ns(&lab.outside_ns(), || TcpListener::bind("192.0.2.2:9000")).unwrap();
    serve(outside, "outside");
    let answer = fetch(&lab.c(web).netns(), addr(OUTSIDE, 9000)).unwrap();
    assert_eq!(answer, "outside 192.0.2.1");

    // Forwarding is on in the host namespace only.
    let forward = in_ns(&lab.host_ns(), || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
    });
    assert_eq!(forward.trim(), "1");
}

#[test]
fn a_published_port_reaches_the_container_from_outside_and_from_the_host() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    lab.up(web, "8080:80/tcp,5353:53/udp");
    let netns = lab.c(web).netns();
    serve(
        in_ns(&netns, || TcpListener::bind("0.0.0.0:80")).unwrap(),
        "web",
    );
    let udp = in_ns(&netns, || UdpSocket::bind("0.0.0.0:53")).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 64];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });

    // From the outside: DNAT to the container, the client's address kept.
    let answer = fetch(&lab.outside_ns(), addr(HOST, 8080)).unwrap();
    assert_eq!(answer, "web 192.0.2.2");
    let echo = in_ns(&lab.outside_ns(), || {
        let socket = UdpSocket::bind("192.0.2.2:0").unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        socket.send_to(b"ping", "192.0.2.1:5353").unwrap();
        let mut buf = [0; 64];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    });
    assert_eq!(echo, (b"ping".to_vec(), addr(HOST, 5353)));

    // From the host itself, to its own address and to 127.0.0.1.
    let answer = fetch(&lab.host_ns(), addr(HOST, 8080)).unwrap();
    assert!(answer.starts_with("web "), "{answer}");
    let answer = fetch(&lab.host_ns(), addr(Ipv4Addr::LOCALHOST, 8080)).unwrap();
    assert_eq!(answer, "web 172.18.0.1");

    // Port 8080 to another address (not the host's) is not taken.
    assert_eq!(
        port_owner(lab.state(), Proto::Tcp, 8080).as_deref(),
        Some(lab.c(web).id.as_str())
    );
    assert_eq!(
        port_owner(lab.state(), Proto::Udp, 5353).as_deref(),
        Some(lab.c(web).id.as_str())
    );
}

#[test]
fn a_second_container_gets_the_next_address_and_cannot_take_a_published_port() {
    let mut lab = Lab::new();
    let first = lab.container("first");
    let second = lab.container("second");
    let third = lab.container("third");
    lab.up(first, "8080:80/tcp");
    lab.up(second, "8081:80/tcp");
    assert_eq!(address_of(lab.state(), &lab.c(second).id), Some(c_addr(3)));
    let routes = lab
        .c(second)
        .run(&["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(routes.contains("inet 172.18.0.3/16"), "{routes}");

    let error = lab
        .hook(Phase::Up, third, "9090:90/tcp,8080:80/tcp")
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: tcp port 8080 is already published by container {}",
            lab.c(third).id,
            lab.c(first).id
        )
    );
    // The failed up left nothing: no address, no port, no veth.
    assert_eq!(address_of(lab.state(), &lab.c(third).id), None);
    assert_eq!(port_owner(lab.state(), Proto::Tcp, 9090), None);
    let links = lab.in_host(&["ip", "link", "show"]);
    assert!(!links.contains(&veth_name(&lab.c(third).id)), "{links}");
    // Containers on the bridge talk directly, their addresses kept.
    serve(
        in_ns(&lab.c(second).netns(), || TcpListener::bind("0.0.0.0:81")).unwrap(),
        "second",
    );
    assert_eq!(
        fetch(&lab.c(first).netns(), addr(c_addr(3), 81)).unwrap(),
        "second 172.18.0.2"
    );
    // The first container still holds its port, and it still works.
    serve(
        in_ns(&lab.c(first).netns(), || TcpListener::bind("0.0.0.0:80")).unwrap(),
        "first",
    );
    assert_eq!(
        fetch(&lab.outside_ns(), addr(HOST, 8080)).unwrap(),
        "first 192.0.2.2"
    );
}

#[test]
fn down_removes_rules_address_port_and_veth_and_may_run_twice() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    lab.up(web, "8080:80/tcp");
    serve(
        in_ns(&lab.c(web).netns(), || TcpListener::bind("0.0.0.0:80")).unwrap(),
        "web",
    );
    assert_eq!(
        fetch(&lab.outside_ns(), addr(HOST, 8080)).unwrap(),
        "web 192.0.2.2"
    );
    let id = lab.c(web).id.clone();

    lab.down(web);
    let error = fetch(&lab.outside_ns(), addr(HOST, 8080)).unwrap_err();
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{error}"
    );
    assert_eq!(address_of(lab.state(), &id), None);
    assert_eq!(port_owner(lab.state(), Proto::Tcp, 8080), None);
    let links = lab.in_host(&["ip", "link", "show"]);
    assert!(!links.contains(&veth_name(&id)), "{links}");
    let rules = lab.nft_rules();
    assert!(!rules.contains(&id), "{rules}");
    assert!(
        rules.contains("masquerade"),
        "the bridge's rules stay: {rules}"
    );

    lab.down(web);
    lab.kill(web);
    lab.down(web);

    // Address and port are free for the next container.
    let next = lab.container("next");
    lab.up(next, "8080:80/tcp");
    assert_eq!(address_of(lab.state(), &lab.c(next).id), Some(c_addr(2)));
    serve(
        in_ns(&lab.c(next).netns(), || TcpListener::bind("0.0.0.0:80")).unwrap(),
        "next",
    );
    assert_eq!(
        fetch(&lab.outside_ns(), addr(HOST, 8080)).unwrap(),
        "next 192.0.2.2"
    );
}

#[test]
fn up_again_after_a_crash_without_down_works() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    lab.up(web, "8080:80/tcp");
    // The same id, a new process: crun was restarted after a crash.
    let again = lab.container("web");
    lab.kill(web);
    lab.up(again, "8080:80/tcp");
    let id = lab.c(again).id.clone();
    assert_eq!(address_of(lab.state(), &id), Some(c_addr(2)));
    serve(
        in_ns(&lab.c(again).netns(), || TcpListener::bind("0.0.0.0:80")).unwrap(),
        "again",
    );
    assert_eq!(
        fetch(&lab.outside_ns(), addr(HOST, 8080)).unwrap(),
        "again 192.0.2.2"
    );
    // Not twice: one DNAT rule in prerouting and one in output.
    let rules = lab.nft_rules();
    assert_eq!(
        rules.matches(&format!("ros container {id}")).count(),
        2,
        "{rules}"
    );
    assert_eq!(rules.matches("ros masquerade").count(), 1, "{rules}");

    // An `up` that ran while the container still had its veth, too.
    lab.up(again, "8080:80/tcp");
    let rules = lab.nft_rules();
    assert_eq!(
        rules.matches(&format!("ros container {id}")).count(),
        2,
        "{rules}"
    );
}

#[test]
fn a_port_a_host_process_holds_is_refused() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    let _sshd = in_ns(&lab.host_ns(), || TcpListener::bind("0.0.0.0:2222")).unwrap();
    let error = lab.hook(Phase::Up, web, "2222:22/tcp").unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "{}: tcp port 2222 is in use on the host: ",
            lab.c(web).id
        )),
        "{message}"
    );
    assert_eq!(port_owner(lab.state(), Proto::Tcp, 2222), None);
    // What the CLI asks before it makes a container: tcp is held, udp not.
    let check = |proto| {
        in_ns(&lab.host_ns(), || {
            container_net::check_host_port_free(proto, 2222)
        })
    };
    assert_eq!(
        check(Proto::Tcp).unwrap_err().to_string(),
        "tcp port 2222 is in use on the host: Address already in use (os error 98)"
    );
    check(Proto::Udp).unwrap();
}

#[test]
fn the_kernel_lists_our_rules_as_nft_would_write_them() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    lab.up(web, "8080:80/tcp,5353:53/udp");
    let id = &lab.c(web).id;
    let rules = lab.nft_rules();
    for line in [
        "type nat hook prerouting priority dstnat; policy accept;".to_string(),
        "type nat hook output priority -100; policy accept;".to_string(),
        "type nat hook postrouting priority srcnat; policy accept;".to_string(),
        format!(
            "iifname != \"ros0\" fib daddr type local tcp dport 8080 dnat to 172.18.0.2:80 comment \"ros container {id}\""
        ),
        format!(
            "iifname != \"ros0\" fib daddr type local udp dport 5353 dnat to 172.18.0.2:53 comment \"ros container {id}\""
        ),
        format!(
            "fib daddr type local tcp dport 8080 dnat to 172.18.0.2:80 comment \"ros container {id}\""
        ),
        "ip saddr 172.18.0.0/16 oifname != \"ros0\" masquerade comment \"ros masquerade 172.18.0.0/16 via ros0\"".to_string(),
        "ip saddr 127.0.0.0/8 oifname \"ros0\" masquerade comment \"ros localhost to ros0\"".to_string(),
        "type filter hook prerouting priority raw; policy accept;".to_string(),
        "iifname \"ros0\" ip daddr 127.0.0.0/8 drop comment \"ros loopback guard for ros0\"".to_string(),
    ] {
        assert!(rules.contains(&line), "missing {line:?} in\n{rules}");
    }
    // Only our table: the hook made nothing else.
    let tables = lab.in_host(&["nft", "list", "tables"]);
    assert_eq!(tables.trim(), "table ip ros");
}

#[test]
fn up_and_down_are_quick() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    // The first up also makes the bridge and the table.
    let started = Instant::now();
    lab.up(web, "8080:80/tcp");
    let first_up = started.elapsed();
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    for n in 0..10 {
        let next = lab.container(&format!("next{n}"));
        let started = Instant::now();
        lab.up(next, "8081:80/tcp,5353:53/udp");
        ups.push(started.elapsed());
        let started = Instant::now();
        lab.down(next);
        downs.push(started.elapsed());
        lab.kill(next);
    }
    ups.sort();
    downs.sort();
    eprintln!(
        "first up (bridge, table) {} ms; up median {} ms, max {} ms; down median {} ms, max {} ms",
        first_up.as_millis(),
        ups[5].as_millis(),
        ups[9].as_millis(),
        downs[5].as_millis(),
        downs[9].as_millis()
    );
    assert!(first_up < Duration::from_secs(1) && ups[9] < Duration::from_secs(1));
    assert!(downs[9] < Duration::from_secs(1));
}

#[test]
fn a_hook_that_cannot_get_the_lock_gives_up_within_five_seconds() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    // Another hook holds the state directory.
    let lock = File::create(lab.state().join("lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let started = Instant::now();
    let error = lab.hook(Phase::Down, web, "").unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_millis(5800),
        "{waited:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}: locking ", lab.c(web).id))
            && message.contains("no answer in time"),
        "{message}"
    );
}

/// `route_localnet` on the bridge (for the host's `127.0.0.1:PORT`) must
/// not open the host's loopback services to a container that sends to
/// 127.0.0.0/8 through its gateway (as CAP_NET_RAW alone allows).
#[test]
fn a_container_cannot_reach_the_hosts_loopback_through_the_bridge() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    lab.up(web, "8080:80/tcp");
    serve(
        in_ns(&lab.host_ns(), || TcpListener::bind("127.0.0.53:7001")).unwrap(),
        "loopback",
    );
    let container = lab.c(web);
    container.run(&[
        "ip",
        "route",
        "del",
        "local",
        "127.0.0.0/8",
        "dev",
        "lo",
        "table",
        "local",
    ]);
    container.run(&[
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet; echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet",
    ]);
    container.run(&[
        "ip",
        "route",
        "add",
        "127.0.0.53/32",
        "via",
        "172.18.0.1",
        "dev",
        "eth0",
    ]);
    let error = fetch(&container.netns(), addr(Ipv4Addr::new(127, 0, 0, 53), 7001)).unwrap_err();
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        "{error}"
    );
}

#[test]
fn the_annotations_choose_bridge_subnet_and_mtu() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    lab.hook_with(
        Phase::Up,
        web,
        &[
            (ANNOTATION_BRIDGE, "br-apps"),
            (ANNOTATION_SUBNET, "10.99.0.1/24"),
            (ANNOTATION_MTU, "1400"),
            (ANNOTATION_PORTS, "8080:80/tcp"),
        ],
    )
    .unwrap();
    let id = lab.c(web).id.clone();
    assert_eq!(
        address_of(lab.state(), &id),
        Some(Ipv4Addr::new(10, 99, 0, 2))
    );
    let eth0 = lab.c(web).run(&["ip", "-o", "addr", "show", "eth0"]);
    assert!(eth0.contains("inet 10.99.0.2/24"), "{eth0}");
    let eth0 = lab.c(web).run(&["ip", "link", "show", "eth0"]);
    assert!(eth0.contains("mtu 1400"), "{eth0}");
    let bridge = lab.in_host(&["ip", "-o", "addr", "show", "br-apps"]);
    assert!(bridge.contains("inet 10.99.0.1/24"), "{bridge}");
    let veth = lab.in_host(&["ip", "link", "show", &veth_name(&id)]);
    assert!(
        veth.contains("mtu 1400") && veth.contains("master br-apps"),
        "{veth}"
    );
    serve(
        in_ns(&lab.c(web).netns(), || TcpListener::bind("0.0.0.0:80")).unwrap(),
        "web",
    );
    assert_eq!(
        fetch(&lab.outside_ns(), addr(HOST, 8080)).unwrap(),
        "web 192.0.2.2"
    );
    let outside = in_ns(&lab.outside_ns(), || TcpListener::bind("192.0.2.2:9000")).unwrap();
    serve(outside, "outside");
    assert_eq!(
        fetch(&lab.c(web).netns(), addr(OUTSIDE, 9000)).unwrap(),
        "outside 192.0.2.1"
    );
    // `down` needs no annotations: the poststop state may lack them.
    lab.down(web);
    assert_eq!(address_of(lab.state(), &id), None);
    let rules = lab.nft_rules();
    assert!(!rules.contains(&id), "{rules}");
}

#[test]
fn containers_wired_at_the_same_time_all_work() {
    let mut lab = Lab::new();
    let all: Vec<usize> = (0..4).map(|n| lab.container(&format!("c{n}"))).collect();
    let lab = &lab;
    std::thread::scope(|scope| {
        for &n in &all {
            scope.spawn(move || lab.up(n, &format!("{}:80/tcp", 8080 + n)));
        }
    });
    let mut addresses: Vec<Ipv4Addr> = all
        .iter()
        .map(|&n| address_of(lab.state(), &lab.c(n).id).unwrap())
        .collect();
    for &n in &all {
        let greeting: &'static str = ["c0", "c1", "c2", "c3"][n];
        serve(
            in_ns(&lab.c(n).netns(), || TcpListener::bind("0.0.0.0:80")).unwrap(),
            greeting,
        );
        let port = 8080 + u16::try_from(n).unwrap();
        assert_eq!(
            fetch(&lab.outside_ns(), addr(HOST, port)).unwrap(),
            format!("{greeting} 192.0.2.2")
        );
    }
    addresses.sort();
    assert_eq!(addresses, (2..6).map(c_addr).collect::<Vec<_>>());
}

#[test]
fn a_process_in_the_hosts_namespace_is_refused() {
    let mut lab = Lab::new();
    let host_mode = lab.process("host-mode", &["sleep", "120"]);
    let error = lab.hook(Phase::Up, host_mode, "8080:80/tcp").unwrap_err();
    let id = &lab.c(host_mode).id;
    assert_eq!(
        error.to_string(),
        format!(
            "{id}: pid {} is in the host's network namespace; the hook is for bridge-mode containers only",
            lab.c(host_mode).pid()
        )
    );
    assert_eq!(port_owner(lab.state(), Proto::Tcp, 8080), None);
    let links = lab.in_host(&["ip", "link", "show"]);
    assert!(
        !links.contains("ros0") && !links.contains("veth"),
        "{links}"
    );
}

/// A failure at the last step (NAT) undoes the veth, the address and the
/// ports made before it.
#[test]
fn an_up_that_fails_late_leaves_nothing_behind() {
    let mut lab = Lab::new();
    let web = lab.container("web");
    // A chain of ours with the wrong type: the NAT batch cannot be applied.
    lab.in_host(&["nft", "add", "table", "ip", "ros"]);
    lab.in_host(&[
        "nft",
        "add chain ip ros prerouting { type filter hook prerouting priority 0; }",
    ]);
    let error = lab.hook(Phase::Up, web, "8080:80/tcp").unwrap_err();
    let id = lab.c(web).id.clone();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "{id}: adding NAT rules to nftables table ip ros: creating chain ip ros prerouting: "
        )),
        "{message}"
    );
    assert_eq!(address_of(lab.state(), &id), None);
    assert_eq!(port_owner(lab.state(), Proto::Tcp, 8080), None);
    let links = lab.in_host(&["ip", "link", "show"]);
    assert!(!links.contains(&veth_name(&id)), "{links}");
    let eth0 = lab.c(web).run(&["ip", "link", "show"]);
    assert!(!eth0.contains("eth0"), "{eth0}");
    // Once the chain is right, the same container comes up.
    lab.in_host(&["nft", "delete", "table", "ip", "ros"]);
    lab.up(web, "8080:80/tcp");
    assert_eq!(address_of(lab.state(), &id), Some(c_addr(2)));
}

/// Not a test of its own: the OCI runtime in
/// `a_real_oci_runtime_wires_and_unwires_a_container_through_the_hooks`
/// runs this test binary as its hook, as it will run `ros net-hook`.
#[test]
fn oci_hook_entry() {
    let Ok(phase) = std::env::var("ROS_NET_TEST_HOOK") else {
        return;
    };
    let state = std::env::var("ROS_NET_TEST_STATE_DIR").unwrap_or_default();
    let phase: Phase = phase.parse().unwrap_or_else(|e| panic!("{e}"));
    match hook(phase, &mut std::io::stdin(), Path::new(&state)) {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            eprintln!("ros net-hook: {error}");
            std::process::exit(1);
        }
    }
}

/// crun needs a pure cgroup2 host (as the OS is); elsewhere runc, which
/// runs OCI hooks the same way.
fn oci_runtime() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "crun"
    } else {
        "runc"
    }
}

/// Deletes the runtime's container, also when the test fails.
struct RuntimeContainer {
    runtime: &'static str,
    root: PathBuf,
    id: String,
    /// Where the runtime runs, so its hooks run there too.
    netns: PathBuf,
}

impl RuntimeContainer {
    fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .arg(self.runtime)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.runtime))
    }
}

impl Drop for RuntimeContainer {
    fn drop(&mut self) {
        let _ = self.command(&["delete", "--force", &self.id]);
    }
}

#[test]
fn a_real_oci_runtime_wires_and_unwires_a_container_through_the_hooks() {
    let lab = Lab::new();
    let runtime = oci_runtime();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    // busybox-static: one file is the whole image.
    std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
    std::fs::write(rootfs.join("www/index.html"), "hello from the runtime\n").unwrap();
    output(&[runtime, "spec", "--bundle", bundle.to_str().unwrap()]);
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let exe = std::env::current_exe().unwrap().display().to_string();
    let hook = |phase: &str| {
        serde_json::json!([{
            "path": exe,
            "args": [exe, "--exact", "oci_hook_entry", "--nocapture", "--test-threads=1"],
            "env": [
                format!("ROS_NET_TEST_HOOK={phase}"),
                format!("ROS_NET_TEST_STATE_DIR={}", lab.state().display()),
            ],
        }])
    };
    config["process"]["terminal"] = false.into();
    config["process"]["args"] =
        serde_json::json!(["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]);
    config["hooks"] = serde_json::json!({
        "createRuntime": hook("up"),
        "poststop": hook("down"),
    });
    config["annotations"] = serde_json::json!({ ANNOTATION_PORTS: "8080:80/tcp" });
    std::fs::write(&config_path, config.to_string()).unwrap();

    let container = RuntimeContainer {
        runtime,
        root: dir.path().join("runtime"),
        id: format!("web-{}", lab.host),
        netns: lab.host_ns(),
    };
    // Run from the host namespace, as the user containerd's shim would.
    let log = dir.path().join("runtime.log");
    // (`nsenter`: `ip netns exec` would hide the cgroup mounts.)
    let status = Command::new("nsenter")
        .arg(format!("--net={}", lab.host_ns().display()))
        .args([runtime, "--root"])
        .arg(&container.root)
        .args(["run", "--detach", "--bundle"])
        .arg(&bundle)
        .arg(&container.id)
        .stdin(std::process::Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(&log).unwrap())
        .status()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{runtime} run: {}", log_text());

    assert_eq!(address_of(lab.state(), &container.id), Some(c_addr(2)));
    let get = || -> std::io::Result<String> {
        let mut stream = in_ns(&lab.outside_ns(), || {
            TcpStream::connect_timeout(&addr(HOST, 8080), TIMEOUT)
        })?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    // httpd may still be starting.
    let started = Instant::now();
    let answer = loop {
        match get() {
            Ok(answer) => break answer,
            Err(_) if started.elapsed() < TIMEOUT => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("GET from the outside: {e}; {runtime}: {}", log_text()),
        }
    };
    assert!(answer.contains("hello from the runtime"), "{answer}");

    // Stop and delete: the poststop hook unwires it.
    container.command(&["kill", &container.id, "KILL"]);
    let started = Instant::now();
    while !String::from_utf8_lossy(&container.command(&["state", &container.id]).stdout)
        .contains("\"stopped\"")
    {
        assert!(started.elapsed() < TIMEOUT, "the container did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let deleted = container.command(&["delete", &container.id]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert_eq!(address_of(lab.state(), &container.id), None);
    assert_eq!(port_owner(lab.state(), Proto::Tcp, 8080), None);
    let rules = lab.nft_rules();
    assert!(!rules.contains(&container.id), "{rules}");
    let error = get().unwrap_err();
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{error}"
    );
}
