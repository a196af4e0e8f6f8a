//! The network of the booted image, over QEMU user-mode networking: QEMU's
//! own DHCP server, and one TCP service this test runs on the host's
//! loopback, which the guest reaches as 10.0.2.2 (QEMU's host address).
//! The guest talks to nothing else.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use qemu_tests::{Image, VmBuilder};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);

/// A TCP service on the host's loopback: answers `pong` to one line and
/// hands the line it got to the test.
fn tcp_service() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).unwrap_or(0);
            let _ = stream.write_all(b"pong\n");
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    (port, rx)
}

/// User-mode networking on a virtio NIC. `restrict=on` isolates it from
/// the host too (QEMU's DHCP then gives no router and no DNS server).
fn user_net(id: &str, restrict: bool, extra: &str) -> [String; 4] {
    let restrict = if restrict { "on" } else { "off" };
    [
        "-netdev".into(),
        format!("user,id={id},restrict={restrict}{extra}"),
        "-device".into(),
        format!("virtio-net-pci,netdev={id}"),
    ]
}

/// Polls `command` in the guest until it succeeds (DHCP runs in the
/// background; the console may come up before the lease).
fn eventually(vm: &mut qemu_tests::Vm, command: &str, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let result = vm.run(command);
        if result.status == 0 {
            return result.output;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{command}` kept failing: {}",
            result.output
        );
        thread::sleep(Duration::from_secs(1));
    }
}

/// One line to the host's service and its answer.
fn talk_to_the_host(vm: &mut qemu_tests::Vm, port: u16) -> String {
    vm.check(&format!("echo ping | nc -w 10 10.0.2.2 {port}"))
}

#[test]
fn dhcp_from_user_networking_and_a_tcp_service_on_the_host() {
    let (port, received) = tcp_service();
    let mut builder = VmBuilder::kernel(Image::built(), "");
    for arg in user_net("n0", false, ",hostname=qemu-guest") {
        builder = builder.arg(arg);
    }
    let mut vm = builder.start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);

    let status = eventually(
        &mut vm,
        "ros network | grep -q 'dhcp: bound' && ros network",
        Duration::from_secs(60),
    );
    eprintln!("ros network:\n{status}");
    assert!(status.contains("inet 10.0.2.15/24"), "{status}");
    assert!(
        status.contains("dhcp: bound 10.0.2.15/24 from 10.0.2.2"),
        "{status}"
    );
    let acquired = status
        .split("acquired in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("the lease time in `ros network`");
    eprintln!("QEMU DHCP: lease in {acquired} s (guest clock, from the client start)");

    // The kernel's view, through busybox.
    let addresses = vm.check("ip -4 addr show eth0");
    assert!(addresses.contains("10.0.2.15/24"), "{addresses}");
    let routes = vm.check("ip route");
    assert!(routes.contains("default via 10.0.2.2 dev eth0"), "{routes}");
    // Host name and name server from the lease (PID 1's /etc).
    assert_eq!(vm.check("hostname").trim(), "qemu-guest");
    let resolv = vm.check("cat /proc/1/root/etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.0.2.3"), "{resolv}");
    assert!(
        vm.check("cat /proc/1/root/etc/hosts")
            .contains("qemu-guest")
    );

    // A TCP service on the host, reached from the guest.
    let reply = talk_to_the_host(&mut vm, port);
    assert!(reply.contains("pong"), "{reply}");
    let got = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the host service heard nothing");
    assert_eq!(got.trim(), "ping");
}

#[test]
fn static_configuration_from_the_kernel_cmdline_with_a_bond_and_a_vlan() {
    let (port, received) = tcp_service();
    let append = [
        "rancher.network.interfaces.eth0.address=10.0.2.20/24",
        "rancher.network.interfaces.eth0.gateway=10.0.2.2",
        "rancher.network.interfaces.eth1.bond=bond0",
        "rancher.network.interfaces.eth2.bond=bond0",
        "rancher.network.interfaces.bond0.bond_opts.mode=active-backup",
        "rancher.network.interfaces.bond0.bond_opts.miimon=100",
        "rancher.network.interfaces.bond0.address=10.9.0.5/24",
        "rancher.network.interfaces.bond0.vlans=100",
    ]
    .join(" ");
    let mut builder = VmBuilder::kernel(Image::built(), &append);
    for arg in user_net("n0", false, "")
        .into_iter()
        .chain(user_net("n1", true, ""))
        .chain(user_net("n2", true, ""))
    {
        builder = builder.arg(arg);
    }
    let mut vm = builder.start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);

    // The named entry wins over the built-in `eth*` DHCP: static only.
    let addresses = vm.check("ip -4 addr show eth0");
    assert!(addresses.contains("10.0.2.20/24"), "{addresses}");
    assert!(!addresses.contains("10.0.2.15"), "{addresses}");
    let routes = vm.check("ip route");
    assert!(routes.contains("default via 10.0.2.2 dev eth0"), "{routes}");
    let reply = talk_to_the_host(&mut vm, port);
    assert!(reply.contains("pong"), "{reply}");
    assert_eq!(
        received
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .trim(),
        "ping"
    );

    // The bond, its ports and its VLAN.
    let mode = vm.check("cat /sys/class/net/bond0/bonding/mode");
    assert_eq!(mode.trim(), "active-backup 1");
    let ports = vm.check("cat /sys/class/net/bond0/bonding/slaves");
    assert_eq!(ports.trim(), "eth1 eth2");
    assert!(vm.check("ip -4 addr show bond0").contains("10.9.0.5/24"));
    vm.check("test -d /sys/class/net/bond0.100");
    let status = vm.check("ros network");
    assert!(status.contains("bond0.100: up"), "{status}");
    assert!(status.contains("port of bond0"), "{status}");
}

/// An HTTP server on the host's loopback that answers every GET with
/// `body` and hands each request line to the test.
fn user_data_server(body: &'static str) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let _ = tx.send(text.lines().next().unwrap_or_default().to_string());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, rx)
}

#[test]
fn user_data_from_a_url_joins_once_dhcp_has_a_lease() {
    // What a RancherOS user puts behind `url:`: a name, a file, commands.
    const USER_DATA: &str = "#cloud-config
hostname: from-the-url
write_files:
  - path: /etc/from-the-url
    content: |
      written from url user-data
bootcmd:
  - echo bootcmd >> /run/url-test-bootcmd
runcmd:
  - echo runcmd >> /run/url-test-runcmd
";
    let (port, requests) = user_data_server(USER_DATA);
    let mut builder = VmBuilder::kernel(
        Image::built(),
        &format!("rancher.cloud_init.datasources=[url:http://10.0.2.2:{port}/user-data]"),
    );
    // The lease names the machine too: the configured name wins over it.
    for arg in user_net("n0", false, ",hostname=from-the-lease") {
        builder = builder.arg(arg);
    }
    let mut vm = builder.start();
    let ready = vm.wait_ready();
    eprintln!("ready in {ready:?} with user-data from a URL (lease and fetch included)");
    vm.wait_for_shell(SHELL_TIMEOUT);

    assert_eq!(
        requests.recv_timeout(Duration::from_secs(5)).unwrap(),
        "GET /user-data HTTP/1.1"
    );
    assert_eq!(vm.check("hostname").trim(), "from-the-url");
    assert!(
        vm.check("cat /proc/1/root/etc/hosts")
            .contains("from-the-url")
    );
    assert_eq!(
        vm.check("cat /proc/1/root/etc/from-the-url").trim(),
        "written from url user-data"
    );
    // Saved as a layer: `ros config` sees it.
    assert_eq!(vm.check("ros config get hostname").trim(), "from-the-url");
    // bootcmd ran once, before the services; runcmd once, at the end.
    assert_eq!(
        vm.check("cat /proc/1/root/run/url-test-bootcmd").trim(),
        "bootcmd"
    );
    let runcmd = eventually(
        &mut vm,
        "cat /proc/1/root/run/url-test-runcmd",
        Duration::from_secs(60),
    );
    assert_eq!(runcmd.trim(), "runcmd");
    // Fetched once per boot.
    assert_eq!(requests.try_recv().ok(), None);
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());
}
