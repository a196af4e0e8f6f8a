//! A RancherOS user's configuration, from the outside: user-data with a
//! misspelled key still applies everything else (the key is reported on
//! the console with its line), and `cloud-config-url=` on the kernel
//! command line alone is fetched once the network is up and applied.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use qemu_tests::{Image, VmBuilder, config_drive, tail};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const RUNCMD_TIMEOUT: Duration = Duration::from_secs(60);

fn with_network(vm: VmBuilder) -> VmBuilder {
    vm.args([
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0",
    ])
}

/// Line 14 is the misspelled `netwrok`.
const USER_DATA_WITH_A_TYPO: &str = r#"#cloud-config
# A RancherOS user-data with one misspelled key: the rest applies.
hostname: compat-node
write_files:
  - path: /etc/compat/written
    permissions: "0644"
    content: |
      written by write_files
runcmd:
  - [sh, -c, "echo runcmd ran > /var/log/ros/compat-runcmd.out"]
rancher:
  upgrade:
    url: https://releases.rancher.com/os/releases.yml
  netwrok:
    dns:
      nameservers: [1.1.1.1]
"#;

#[test]
fn a_misspelled_key_is_reported_with_its_line_and_the_rest_applies() {
    let dir = tempfile::tempdir().unwrap();
    let drive = config_drive(dir.path(), USER_DATA_WITH_A_TYPO);
    let mut vm = VmBuilder::kernel(Image::built(), "").drive(&drive).start();
    vm.wait_ready();
    let reported = "line 14: unknown key `rancher.netwrok` (did you mean `rancher.network`?)";
    let output = vm.output();
    assert!(
        output.contains(reported),
        "not reported on the console:\n{}",
        tail(&output, 60)
    );
    vm.wait_for_shell(SHELL_TIMEOUT);
    // The host name, the file and the command: everything else applied.
    assert_eq!(vm.check("hostname").trim(), "compat-node");
    assert_eq!(vm.check("ros config get hostname").trim(), "compat-node");
    assert_eq!(
        vm.check("cat /proc/1/root/etc/compat/written"),
        "written by write_files\n"
    );
    vm.check(&format!(
        "for i in $(seq {}); do [ -s /var/log/ros/compat-runcmd.out ] && break; sleep 1; done",
        RUNCMD_TIMEOUT.as_secs()
    ));
    assert_eq!(
        vm.check("cat /var/log/ros/compat-runcmd.out").trim(),
        "runcmd ran"
    );
    // The misspelled key went nowhere; the RancherOS key is only warned.
    assert_eq!(vm.check("ros config get rancher.network.dns").trim(), "");
    // The kernel log has the report too.
    let kernel_log = vm.check("dmesg | grep -c 'rancher.netwrok' || true");
    assert!(
        kernel_log.trim().parse::<u32>().unwrap_or(0) >= 1,
        "not in the kernel log: {kernel_log}"
    );
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());
}

/// Serves `body` to every GET on a loopback port (10.0.2.2 from the
/// guest); each request line is sent on the channel.
fn serve(body: &'static str) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            // The headers, up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = tx.send(request.trim().to_owned());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/cloud-config\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, rx)
}

const URL_USER_DATA: &str = r#"#cloud-config
hostname: from-url
write_files:
  - path: /etc/compat/from-url
    content: "fetched by cloud-config-url\n"
"#;

#[test]
fn cloud_config_url_on_the_kernel_command_line_alone_is_applied() {
    let (port, requests) = serve(URL_USER_DATA);
    // What follows `--` is read as RancherOS read it: as configuration,
    // and as EXTRA_CMDLINE.
    let append = format!(
        "cloud-config-url=http://10.0.2.2:{port}/user-data -- rancher.environment.FROM_INIT=yes"
    );
    let mut vm = with_network(VmBuilder::kernel(Image::built(), &append)).start();
    vm.wait_ready();
    let request = requests
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| {
            panic!(
                "the URL was not fetched before ros: ready:\n{}",
                tail(&vm.output(), 60)
            )
        });
    assert_eq!(request, "GET /user-data HTTP/1.1");
    vm.wait_for_shell(SHELL_TIMEOUT);
    assert_eq!(vm.check("hostname").trim(), "from-url");
    assert_eq!(
        vm.check("cat /proc/1/root/etc/compat/from-url"),
        "fetched by cloud-config-url\n"
    );
    vm.check("grep -q from-url /var/lib/rancher/conf/cloud-config.d/user-data.yml");
    assert_eq!(
        vm.check("ros config get rancher.environment.FROM_INIT")
            .trim(),
        "yes"
    );
    assert_eq!(
        vm.check("ros config get rancher.environment.EXTRA_CMDLINE")
            .trim(),
        "/init rancher.environment.FROM_INIT=yes"
    );
    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(120)).success());
}
