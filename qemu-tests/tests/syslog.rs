//! The system log and the clock, from the outside: rsyslog collects the
//! console's and the kernel's lines into /var/log and forwards them to a
//! UDP and a TCP receiver on the host (`rancher.syslog.forward`); a
//! `write_files` entry with `container: ntp` points OpenNTPD at an NTP
//! server on the host (chrony), which steps a clock started an hour wrong.
//! The guest reaches the host as 10.0.2.2 (QEMU user networking).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qemu_tests::{Image, VmBuilder, config_drive};

const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// A NIC on QEMU's user network: the host is 10.0.2.2.
const USER_NET: [&str; 4] = [
    "-netdev",
    "user,id=n0",
    "-device",
    "virtio-net-pci,netdev=n0",
];

/// Everything received, by any receiver, as text.
type Received = Arc<Mutex<String>>;

/// A UDP receiver on 127.0.0.1 in the background; its port.
fn udp_receiver(received: &Received) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let received = Arc::clone(received);
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = socket.recv(&mut buf) {
            let mut all = received.lock().unwrap();
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push('\n');
        }
    });
    port
}

/// A TCP receiver on 127.0.0.1 in the background, any number of
/// connections (rsyslog reconnects); its port.
fn tcp_receiver(received: &Received) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::clone(received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let received = Arc::clone(&received);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut all = received.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
    });
    port
}

fn wait_until_received(received: &Received, what: &str, needle: &str) {
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    while !received.lock().unwrap().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "`{needle}` never reached the {what} receiver; it got:\n{}",
            received.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn console_and_kernel_lines_land_in_var_log_and_reach_udp_and_tcp_receivers() {
    let udp: Received = Arc::default();
    let tcp: Received = Arc::default();
    let udp_port = udp_receiver(&udp);
    let tcp_port = tcp_receiver(&tcp);
    let dir = tempfile::tempdir().unwrap();
    let drive = config_drive(
        dir.path(),
        &format!(
            r#"#cloud-config
write_files:
  - path: /etc/rsyslog.d/60-local3.conf
    container: syslog
    permissions: "0644"
    content: |
      local3.*  /var/log/local3.log
rancher:
  syslog:
    forward: [udp://10.0.2.2:{udp_port}, tcp://10.0.2.2:{tcp_port}]
"#
        ),
    );
    let mut vm = VmBuilder::kernel(Image::built(), "")
        .args(USER_NET)
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", drive.display()))
        .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    // The console may run before syslog under load.
    vm.wait_for_services_settled(SHELL_TIMEOUT);

    // /dev/log is a link to the service's socket; the service itself has
    // no host /dev (its /dev is the runtime's tmpfs).
    assert_eq!(vm.check("readlink /dev/log").trim(), "/run/ros/syslog/log");
    let pid = vm.check("pidof rsyslogd").trim().to_string();
    assert!(!pid.is_empty(), "rsyslogd is not running");
    let dev = vm.check(&format!(
        "awk '$5 == \"/dev\" {{print $9}}' /proc/{pid}/mountinfo"
    ));
    assert_eq!(dev.trim(), "tmpfs", "rsyslogd's /dev");

    // rsyslogd's socket exists once its imuxsock runs: what is logged
    // before is lost.
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    while vm.run("test -S /run/ros/syslog/log").status != 0 {
        assert!(Instant::now() < deadline, "no syslog socket");
        std::thread::sleep(Duration::from_millis(500));
    }
    vm.check("logger -t qemu-test hello-from-console");
    vm.check("echo '<6>kmsg-marker' > /dev/kmsg");
    vm.check("logger -p local3.info -t qemu-test local3-line");
    // In /var/log/syslog; and Debian's split files: the kernel's own lines
    // in kern.log, the user facility's in user.log; the dropped-in rule
    // wrote its own file.
    let expected = [
        ("syslog", "qemu-test: hello-from-console"),
        ("syslog", "kmsg-marker"),
        ("kern.log", "kernel:"),
        ("user.log", "hello-from-console"),
        ("local3.log", "local3-line"),
    ];
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    for (file, line) in expected {
        loop {
            let text = vm.run(&format!("cat /var/log/{file}")).output;
            if text.contains(line) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/var/log/{file} lacks `{line}`:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    for (what, received) in [("UDP", &udp), ("TCP", &tcp)] {
        wait_until_received(received, what, "hello-from-console");
        wait_until_received(received, what, "kmsg-marker");
    }

    // What the log costs: memory in use after boot, rsyslogd's own.
    let meminfo = vm.check("grep -E '^(MemTotal|MemAvailable):' /proc/meminfo");
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {meminfo}"))
    };
    let rss = vm.check(&format!("grep VmRSS /proc/{pid}/status"));
    eprintln!(
        "memory used after boot: {} KiB (MemTotal - MemAvailable); rsyslogd {}",
        kib("MemTotal:") - kib("MemAvailable:"),
        rss.trim()
    );

    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(60)).success());
}

/// chronyd serving its own clock on 127.0.0.1:123 (the guest's
/// 10.0.2.2:123), never setting the host's; stopped on drop.
struct NtpServer(Child);

impl NtpServer {
    fn start(dir: &Path) -> Self {
        let conf = dir.join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "port 123\nbindaddress 127.0.0.1\nlocal stratum 8\nallow all\ncmdport 0\npidfile {}\n",
                dir.join("chronyd.pid").display()
            ),
        )
        .unwrap();
        let child = Command::new("chronyd")
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("chronyd: {e} (apt-get install chrony)"));
        let mut server = Self(child);
        // Serving once it bound its port.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string("/proc/net/udp")
            .unwrap()
            .contains("0100007F:007B")
        {
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("chronyd ended: {status} (is port 123 taken?)");
            }
            assert!(
                Instant::now() < deadline,
                "chronyd never bound 127.0.0.1:123"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for NtpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `2006-06-17T16:01:21` for `-rtc base=`, UTC.
fn rtc_base(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn host_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn rtc_base_is_utc_in_qemus_format() {
    assert_eq!(rtc_base(0), "1970-01-01T00:00:00");
    assert_eq!(rtc_base(1_150_560_081), "2006-06-17T16:01:21");
    assert_eq!(rtc_base(951_782_400), "2000-02-29T00:00:00");
}

#[test]
fn an_ntp_server_from_write_files_steps_a_clock_an_hour_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let _server = NtpServer::start(dir.path());
    let drive = config_drive(
        dir.path(),
        r#"#cloud-config
write_files:
  - path: /etc/openntpd/ntpd.conf
    container: ntp
    content: |
      server 10.0.2.2
"#,
    );
    let mut vm = VmBuilder::kernel(Image::built(), "")
        .args(USER_NET)
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", drive.display()))
        .arg("-rtc")
        .arg(format!("base={}", rtc_base(host_now() - 3600)))
        .start();
    vm.wait_ready();
    vm.wait_for_shell(SHELL_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = 0;
    loop {
        let guest: i64 = vm.check("date +%s").trim().parse().unwrap();
        let offset = guest - host_now() as i64;
        if offset.abs() <= 2 {
            break;
        }
        last = offset;
        assert!(
            Instant::now() < deadline,
            "the guest's clock is {offset} s off the host's; ntp's log:\n{}",
            vm.check("ros service logs ntp")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let log = vm.check("ros service logs ntp");
    assert!(
        log.contains("10.0.2.2") && log.contains("set local clock"),
        "ntp did not step the clock from 10.0.2.2 (last offset {last} s):\n{log}"
    );
    // It stepped the clock by the hour it started wrong (and the seconds
    // a guest under TCG loses while it boots).
    let step = log
        .lines()
        .find(|l| l.contains("set local clock"))
        .unwrap_or_default();
    let offset: f64 = step
        .split("(offset ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in `{step}`"));
    assert!((3590.0..3660.0).contains(&offset), "{step}");
    eprintln!("ntp: {step}");

    vm.send_line("ros poweroff");
    assert!(vm.wait_exit(Duration::from_secs(60)).success());
}
