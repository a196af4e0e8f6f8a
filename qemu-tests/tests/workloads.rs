//! The user's containers, as a user runs them on the console: images
//! pulled from a registry on the host (Debian's `docker-registry`, which
//! the guest reaches at 10.0.2.2), `ros run` with a published port that the
//! host fetches a page from through a QEMU port forward, `docker` as
//! another name for the same commands, containers and images that come
//! back after a reboot with a state partition, archives preloaded at boot
//! without a network, and a user container that cannot reach what runs
//! the system.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::{Image, Vm, VmBuilder, blank_disk};
use test_images::{Image as TestImage, LocalRegistry};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);
/// What the web server's page says.
const PAGE: &str = "hello from a container of the user\n";

/// busybox httpd serving [`PAGE`] on port 80, logging each request.
fn web_image() -> TestImage {
    TestImage::busybox(
        &[("www/index.html", PAGE)],
        &["httpd", "-f", "-vv", "-p", "80", "-h", "/www"],
    )
}

/// A name server on the host's loopback port 53 (the guest's 10.0.2.2:53)
/// that answers `registry.test` with 10.0.2.2; stopped when dropped.
struct NameServer(std::process::Child);

impl NameServer {
    fn start() -> Self {
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--port=53",
                "--address=/registry.test/10.0.2.2",
            ])
            .spawn()
            .expect("dnsmasq from Debian's dnsmasq-base");
        let server = Self(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind("127.0.0.1:53").is_ok() {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not take 127.0.0.1:53"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on the host's loopback for a QEMU port forward.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// User networking on a virtio NIC, `host_port` on the host's loopback
/// forwarded to the guest's port 8080; `restrict` cuts the guest off
/// from everything but that forward.
fn with_network(vm: VmBuilder, host_port: u16, restrict: bool) -> VmBuilder {
    let restrict = if restrict { "on" } else { "off" };
    vm.arg("-netdev")
        .arg(format!(
            "user,id=n0,restrict={restrict},hostfwd=tcp:127.0.0.1:{host_port}-:8080"
        ))
        .arg("-device")
        .arg("virtio-net-pci,netdev=n0")
}

/// The body of `GET /` at `127.0.0.1:port`, retried until `timeout`
/// (the container may still be starting).
fn fetch_page(port: u16, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match get(port) {
            Ok(body) if body.contains(PAGE.trim()) => return Ok(body),
            Ok(body) => last = format!("unexpected answer: {body}"),
            Err(error) => last = error.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(last)
}

fn get(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Polls `command` in the guest until it succeeds.
fn eventually(vm: &mut Vm, command: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let result = vm.run(command);
        if result.status == 0 {
            return result.output;
        }
        assert!(
            Instant::now() < deadline,
            "`{command}` kept failing: {}",
            result.output
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn boot(vm: VmBuilder) -> Vm {
    let mut vm = vm.start();
    let ready = vm.wait_ready();
    eprintln!(
        "ros: ready in {ready:?}, {:?} since QEMU started",
        vm.elapsed()
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    vm
}

fn power_off(mut vm: Vm) {
    vm.send_line("ros poweroff");
    let status = vm.wait_exit(POWEROFF_TIMEOUT);
    assert!(status.success(), "QEMU exited with {status}");
}

#[test]
fn a_pulled_web_server_serves_a_published_port_and_stays_apart_from_the_system() {
    let registry = LocalRegistry::start();
    let web = format!("10.0.2.2:{}/test/web:1", registry.port);
    registry.push("test/web", "1", &web_image());
    let hello = format!("10.0.2.2:{}/test/hello:1", registry.port);
    registry.push(
        "test/hello",
        "1",
        &TestImage::busybox(
            &[],
            &[
                "sh",
                "-c",
                "echo hello from a pulled service; exec sleep 100000",
            ],
        ),
    );
    let host_port = free_port();
    let _names = NameServer::start();
    // A system service from a registry image too: pulled in the machine.
    // Names come from the host's name server.
    let append = format!(
        "rancher.network.dns.nameservers=[10.0.2.2] \
         rancher.docker.insecure_registry=[10.0.2.2:{port}] \
         rancher.system_docker.insecure_registry=[10.0.2.2:{port}] \
         rancher.services.hello.image={hello} rancher.services.hello.restart=always",
        port = registry.port
    );
    let mut vm = boot(with_network(
        VmBuilder::kernel(Image::built(), &append),
        host_port,
        false,
    ));

    // Typed as soon as the console is up: the command waits for the user
    // containerd, which runs by default, with Docker's socket.
    let pulled = vm.check_within(&format!("ros pull {web}"), Duration::from_secs(150));
    assert!(pulled.contains("pulled"), "{pulled}");
    vm.check("test -S /run/containerd/containerd.sock");
    let started = Instant::now();
    let name = vm.check(&format!("ros run -d --name web -p 8080:80 {web}"));
    assert_eq!(name.trim(), "web");
    let page = fetch_page(host_port, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("no page through the published port: {e}"));
    eprintln!(
        "ros run -d to the page through the published port: {:?}",
        started.elapsed()
    );
    assert!(page.contains("200"), "{page}");
    let logs = eventually(
        &mut vm,
        "ros logs web | grep -q url:/ && ros logs web",
        Duration::from_secs(60),
    );
    assert!(logs.contains("response:200"), "{logs}");
    let ps = vm.check("ros ps");
    assert!(ps.contains("web") && ps.contains("Up"), "{ps}");
    assert!(ps.contains("8080->80/tcp"), "{ps}");

    // `docker` is another name for the same commands.
    let hi = vm.check(&format!("docker run --rm {web} echo hi"));
    assert_eq!(hi.trim(), "hi");
    let unsupported = vm.run("docker swarm init");
    assert_eq!(unsupported.status, 2, "{}", unsupported.output);
    assert!(
        unsupported.output.contains("swarm"),
        "{}",
        unsupported.output
    );

    // Names: the console has the host's, a container gets a resolv.conf
    // that works from its network.
    let resolv = vm.check("cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.0.2.2"), "{resolv}");
    vm.check("grep -q \"$(hostname)\" /etc/hosts");
    let from_console = vm.check(&format!(
        "wget -q -O - http://registry.test:{}/v2/",
        registry.port
    ));
    assert!(from_console.contains("{}"), "{from_console}");
    let inside = vm.check(&format!("ros run --rm {web} cat /etc/resolv.conf"));
    assert!(inside.contains("nameserver 10.0.2.2"), "{inside}");
    // And the outside world is reached by name from a container, through
    // the bridge's masquerade (the registry on the host).
    let fetched = vm.check(&format!(
        "ros run --rm {web} wget -q -O - http://registry.test:{}/v2/",
        registry.port
    ));
    assert!(fetched.contains("{}"), "{fetched}");

    // A user container sees neither the system containerd nor PID 1's
    // control socket, and cannot signal the system services.
    let system = vm.run(&format!(
        "ros run --rm {web} ls /run/system-containerd /run/ros"
    ));
    assert_ne!(system.status, 0, "{}", system.output);
    assert!(system.output.contains("No such file"), "{}", system.output);

    // The pulled system service runs.
    let logs = eventually(
        &mut vm,
        "ros service logs hello | grep 'hello from a pulled service'",
        Duration::from_secs(60),
    );
    assert!(!logs.is_empty());

    // Stopped, the page is gone; removed, the container is gone.
    vm.check("ros stop web");
    assert!(get(host_port).map_or(true, |a| !a.contains(PAGE.trim())));
    vm.check("ros rm web");
    assert!(!vm.check("ros ps -a").contains("web"));

    // Removing every user container leaves the system running.
    vm.check(&format!("ros run -d --name a {web} sleep 1000"));
    vm.check(&format!("ros run -d --name b {web} sleep 1000"));
    vm.check("ros rm -f $(ros ps -qa)");
    assert_eq!(vm.check("ros ps -qa").trim(), "");
    let services = vm.check("ros service list");
    for service in [
        "console",
        "udev",
        "syslog",
        "ntp",
        "user-containerd",
        "hello",
    ] {
        let row = services
            .lines()
            .find(|l| l.split_whitespace().next() == Some(service))
            .unwrap_or_else(|| panic!("no {service} in\n{services}"));
        assert!(row.contains("running"), "{row}");
    }
    power_off(vm);
}

fn with_disk(vm: VmBuilder, disk: &Path) -> VmBuilder {
    vm.drive(disk)
}

#[test]
fn with_a_state_partition_the_image_and_an_always_container_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let disk = blank_disk(dir.path());
    let host_port = free_port();
    let web = {
        let registry = LocalRegistry::start();
        let web = format!("10.0.2.2:{}/test/web:1", registry.port);
        registry.push("test/web", "1", &web_image());
        let append = format!(
            "rancher.docker.insecure_registry=[10.0.2.2:{}]",
            registry.port
        );
        let mut vm = boot(with_disk(
            with_network(VmBuilder::kernel(Image::built(), &append), host_port, false),
            &disk,
        ));
        vm.check(&format!(
            "ros run -d --name keep --restart always -p 8080:80 {web}"
        ));
        fetch_page(host_port, Duration::from_secs(60)).expect("the page before the reboot");
        power_off(vm);
        web
        // The registry is gone from here on: nothing can be pulled again.
    };
    let mut vm = boot(with_disk(
        with_network(VmBuilder::kernel(Image::built(), ""), host_port, true),
        &disk,
    ));
    let images = vm.check("ros images");
    assert!(images.contains("test/web"), "{images}");
    eventually(
        &mut vm,
        "ros ps | grep keep | grep -q Up",
        Duration::from_secs(60),
    );
    fetch_page(host_port, Duration::from_secs(60)).expect("the page after the reboot");
    assert!(vm.check("ros ps").contains(&web));
    power_off(vm);
}

#[test]
fn an_archive_preloaded_on_the_state_partition_runs_without_a_network() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("state");
    let preload = tree.join("var/lib/rancher/preload/docker");
    std::fs::create_dir_all(&preload).unwrap();
    web_image().docker_save("test/preloaded:1", &preload.join("web.tar"));
    let disk = dir.path().join("state.img");
    let made = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-L", "RANCHER_STATE", "-d"])
        .arg(&tree)
        .arg(&disk)
        .arg("256M")
        .status()
        .expect("mke2fs from e2fsprogs");
    assert!(made.success());
    // rancher.preload_wait: ready only once the archive is loaded.
    let mut vm = boot(with_disk(
        with_network(
            VmBuilder::kernel(Image::built(), "rancher.preload_wait=true"),
            free_port(),
            true,
        ),
        &disk,
    ));
    let images = vm.check("ros images");
    assert!(images.contains("test/preloaded"), "{images}");
    let page = vm.check("ros run --rm --net none test/preloaded:1 cat /www/index.html");
    assert_eq!(page, PAGE);
    let logs = vm.check("ros service logs user-containerd");
    assert!(logs.contains("web.tar: loaded"), "{logs}");
    power_off(vm);
}
