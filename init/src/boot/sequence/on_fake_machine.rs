//! [`System`]'s own steps, run through [`boot`] on a fake machine: a
//! [`FakeHost`] for every syscall, a platform that spawns nothing (no log
//! file, no reaper loop, no netlink, a containerd that answers at once),
//! fake block devices, and a temporary directory as the machine's root.
//! Only `connect_runtime` and `start_services`, which talk to a real
//! containerd, run the services on a [`FakeRuntime`] instead. The tests
//! check what the host saw, in order, from the first mount to reboot(2).

use std::sync::Mutex;

use nix::mount::MsFlags;
use nix::sys::signal::Signal;
use system_services::fake::FakeRuntime;

use super::*;
use crate::boot::mounts::EARLY_MOUNTS;
use crate::host::{FakeHost, HostCall};

/// What the steps asked of the platform, as lines.
#[derive(Debug, Default)]
struct FakePlatform {
    calls: Mutex<Vec<String>>,
}

impl FakePlatform {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Platform for FakePlatform {
    fn start_logging(&self, debug: bool) -> std::io::Result<()> {
        self.record(format!("logging, debug {debug}"));
        Ok(())
    }

    fn start_reaper(&self) -> std::io::Result<Arc<Reaper>> {
        self.record("reaper".to_owned());
        // Registers children but never waits: nothing is spawned here.
        Ok(Arc::default())
    }

    fn loopback_up(&self) -> std::io::Result<()> {
        self.record("lo up".to_owned());
        Ok(())
    }

    fn start_prefetch(&self) {
        self.record("prefetch".to_owned());
    }

    fn start_containerd(&self, _: Arc<Reaper>, daemon: DaemonConfig) -> containerd::Supervised {
        self.record(format!("containerd on {}", daemon.socket.display()));
        containerd::Supervised::already_up()
    }

    fn start_network<'a>(
        &'a self,
        _: &'a os_config::schema::Network,
        hostname: Option<&'a os_config::schema::Hostname>,
    ) -> BoxFuture<'a, Result<NetworkHandle<RtNetlink>, network::netlink::NetlinkError>> {
        let hostname = hostname.map_or("none", |name| name.as_str());
        self.record(format!("network, hostname {hostname}"));
        Box::pin(async {
            Err(network::netlink::NetlinkError::new(
                "connect",
                "rtnetlink",
                None,
                "no netlink in a unit test".to_owned(),
            ))
        })
    }
}

/// One disk, `/dev/vdb`, holding a file system (not blank).
#[derive(Debug)]
struct OneDisk;

const STATE_DISK: &str = "/dev/vdb";

impl BlockDevices for OneDisk {
    fn list(&self) -> std::io::Result<Vec<PathBuf>> {
        Ok(vec![PathBuf::from(STATE_DISK)])
    }

    fn read_head(&self, device: &Path, len: usize) -> std::io::Result<Vec<u8>> {
        if device == Path::new(STATE_DISK) {
            Ok(vec![0x5a; len])
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }
}

/// [`System`] on the fake machine; the services on a [`FakeRuntime`].
struct OnFakeMachine {
    system: System,
    host: Arc<FakeHost>,
    platform: Arc<FakePlatform>,
    root: tempfile::TempDir,
    requests: watch::Sender<Option<Shutdown>>,
    engine: Option<Arc<Engine<FakeRuntime>>>,
}

impl OnFakeMachine {
    /// A machine booted with `cmdline` (`ROOT` stands for its root), the
    /// root image in its initramfs and `user_data` in a file.
    fn new(cmdline: &str, user_data: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let file = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let cmdline = cmdline.replace("ROOT", &root.path().display().to_string());
        file("proc/cmdline", &format!("{cmdline}\n"));
        file("rootfs.squashfs", "");
        file("user-data", user_data);
        std::fs::create_dir_all(root.path().join("dev")).unwrap();
        let host = Arc::new(FakeHost::new());
        let platform = Arc::new(FakePlatform::default());
        let machine = Machine {
            root: root.path().to_owned(),
            paths: ConfigPaths::under(root.path()),
            state: StatePaths {
                mount: root.path().join("run/ros/state"),
                root: root.path().to_owned(),
                grow: None,
            },
            block_devices: Arc::new(OneDisk),
            platform: Arc::clone(&platform) as Arc<dyn Platform>,
        };
        Self {
            system: System::on(Arc::clone(&host) as Arc<dyn Host>, machine),
            host,
            platform,
            root,
            requests: watch::channel(None).0,
            engine: None,
        }
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.path().join(path)
    }
}

impl Steps for OnFakeMachine {
    fn mount_early(&mut self) -> Result<(), BootError> {
        self.system.mount_early()
    }

    fn read_cmdline(&mut self) -> Result<Cmdline, BootError> {
        self.system.read_cmdline()
    }

    fn start_logging(&mut self) -> Result<(), BootError> {
        self.system.start_logging()
    }

    fn switch_root(&mut self) -> Result<(), BootError> {
        self.system.switch_root()
    }

    fn become_subreaper(&mut self) -> Result<(), BootError> {
        self.system.become_subreaper()
    }

    fn run_async(&mut self) -> Result<Shutdown, BootError> {
        // As System's, without the process's signal handlers.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let requests = self.requests.subscribe();
        runtime.block_on(run_system(self, requests))
    }

    fn start_reaper(&mut self) -> Result<(), BootError> {
        self.system.start_reaper()
    }

    fn loopback_up(&mut self) -> Result<(), BootError> {
        self.system.loopback_up()
    }

    async fn mount_state(&mut self) -> Result<(), BootError> {
        self.system.mount_state().await
    }

    fn count_boot(&mut self) {
        self.system.count_boot();
    }

    async fn load_config(&mut self) {
        self.system.load_config().await;
    }

    async fn apply_early(&mut self) {
        self.system.apply_early().await;
    }

    fn start_containerd(&mut self) {
        self.system.start_containerd();
    }

    async fn start_network(&mut self) {
        self.system.start_network().await;
    }

    async fn join_network_user_data(&mut self) {
        self.system.join_network_user_data().await;
    }

    async fn containerd_answering(&mut self) -> Result<(), BootError> {
        self.system.containerd_answering().await
    }

    async fn connect_runtime(&mut self) -> Result<(), BootError> {
        Ok(())
    }

    async fn start_services(&mut self) -> Result<(), BootError> {
        let runtime = Arc::new(FakeRuntime::default());
        let engine = Arc::new(Engine::new(runtime, self.path("var/log/ros")));
        let paths = self.system.machine.paths.clone();
        let control = services::control(&engine, paths, self.system.cmdline.clone());
        services::start_all(&engine, &control, &self.system.config, async {}).await;
        self.engine = Some(engine);
        announce_ready(
            &*self.host,
            quiet_console_at_ready(&self.system.cmdline, &self.system.config),
        );
        Ok(())
    }

    fn start_late_commands(&mut self) {
        self.system.start_late_commands();
        // The machine is up: someone asks for a reboot.
        shutdown::request(&self.requests, Shutdown::Reboot);
    }

    async fn stop(&mut self, how: Shutdown) -> Result<(), BootError> {
        if let Some(engine) = self.engine.take() {
            engine.stop_all().await;
        }
        self.system.stop(how).await
    }

    fn report(&mut self, message: &str) {
        self.system.report(message);
    }
}

/// The calls `act` makes on a fresh fake host.
fn calls_of(act: impl FnOnce(&FakeHost)) -> Vec<HostCall> {
    let host = FakeHost::new();
    act(&host);
    host.calls()
}

/// The calls of `calls` from the first that is `first` on, `len` of them.
fn run_of(calls: &[HostCall], first: &HostCall, len: usize) -> Vec<HostCall> {
    let start = calls
        .iter()
        .position(|call| call == first)
        .unwrap_or_else(|| panic!("{first:?} not in {calls:#?}"));
    calls[start..(start + len).min(calls.len())].to_vec()
}

fn bind(source: PathBuf, target: PathBuf) -> [HostCall; 2] {
    [
        HostCall::CreateDirAll(target.clone()),
        HostCall::Mount {
            source: source.display().to_string(),
            target,
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
        },
    ]
}

const CMDLINE: &str = "console=ttyS0 rancher.debug rancher.state.dev=/dev/vdb \
     rancher.cloud_init.datasources=[file:ROOT/user-data]";
const USER_DATA: &str =
    "#cloud-config\nhostname: from-user-data\nwrite_files:\n- path: /etc/motd\n  content: hello\n";

#[test]
fn the_real_steps_boot_a_fake_machine_and_shut_it_down_in_order() {
    let mut machine = OnFakeMachine::new(CMDLINE, USER_DATA);
    let host = Arc::clone(&machine.host);
    let how = boot_or_power_off(&mut machine, &*host, Duration::ZERO);
    assert_eq!(how, Shutdown::Reboot);
    shutdown::shut_down(&*machine.host, how, Duration::ZERO).unwrap();
    let calls = machine.host.calls();

    // The early mounts come first, exactly the table.
    let early = calls_of(|host| mount_early(host).unwrap());
    assert_eq!(calls[..early.len()], early);
    assert_eq!(
        early
            .iter()
            .filter(|c| matches!(c, HostCall::Mount { .. }))
            .count(),
        EARLY_MOUNTS.len()
    );
    // Then the switch to the root image found in the initramfs.
    let image = machine.path("rootfs.squashfs");
    let switch = calls_of(|host| switch_root::switch_root(host, &image).unwrap());
    let after_early = &calls[early.len()..];
    assert_eq!(after_early[..switch.len()], switch);
    let rest = &after_early[switch.len()..];
    // Then the subreaper, before anything is started.
    assert_eq!(
        rest[..2],
        [HostCall::SetChildSubreaper, HostCall::DisableCtrlAltDel]
    );
    // The state partition named on the command line, its directories
    // bound into the root.
    let state = machine.path("run/ros/state");
    let mut expected = vec![
        HostCall::CreateDirAll(state.clone()),
        HostCall::Mount {
            source: STATE_DISK.to_owned(),
            target: state.clone(),
            fstype: Some("ext4".to_owned()),
            flags: MsFlags::MS_NOATIME,
            data: None,
        },
    ];
    for dir in state::PERSISTENT {
        expected.extend(bind(state.join(dir), machine.path(dir)));
    }
    expected.push(HostCall::Console(format!("ros: state on {STATE_DISK}")));
    assert_eq!(run_of(rest, &expected[0], expected.len()), expected);

    // `rancher.debug` keeps the console as verbose as it was.
    assert!(
        !calls
            .iter()
            .any(|call| matches!(call, HostCall::ConsoleLogLevel(_)))
    );
    // On the console: the state, ready, the shutdown; nothing else went
    // wrong on the way.
    let lines = machine.host.console_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], format!("ros: state on {STATE_DISK}"));
    // Seconds since the kernel started: this test machine's uptime.
    assert!(
        lines[1].starts_with("ros: ready in ") && lines[1].ends_with(" s"),
        "{lines:?}"
    );
    assert_eq!(lines[2], "ros: shutting down (reboot)");
    // What the platform started, in the boot's order; the network got
    // the hostname from the user-data.
    assert_eq!(
        machine.platform.calls(),
        [
            "logging, debug true",
            "prefetch",
            "reaper",
            "lo up",
            "containerd on /run/system-containerd/containerd.sock",
            "network, hostname from-user-data",
        ]
    );
    // The user-data's files, written in the machine's root; the name
    // files the host-network services bind exist without a network.
    assert_eq!(
        std::fs::read_to_string(machine.path("etc/motd")).unwrap(),
        "hello"
    );
    assert!(machine.path("etc/resolv.conf").is_file());
    assert_eq!(
        std::fs::read_link(machine.path("dev/log")).unwrap(),
        Path::new(apply::SYSLOG_SOCKET)
    );

    // The end: everything told to go, synced, unmounted innermost first,
    // synced again, rebooted.
    let ready = calls
        .iter()
        .position(|c| *c == HostCall::Console("ros: shutting down (reboot)".to_owned()))
        .unwrap();
    let end = &calls[ready + 1..];
    assert_eq!(
        end[..3],
        [
            HostCall::SignalAll(Signal::SIGTERM),
            HostCall::Sync,
            HostCall::MountTable
        ]
    );
    assert_eq!(
        end[end.len() - 2..],
        [HostCall::Sync, HostCall::Reboot(how)]
    );
    let unmounted: Vec<PathBuf> = end[3..end.len() - 2]
        .iter()
        .map(|call| match call {
            HostCall::Umount { target, flags } if flags.is_empty() => target.clone(),
            other => panic!("not an unmount: {other:?}"),
        })
        .collect();
    let mut expected: Vec<PathBuf> = state::PERSISTENT
        .iter()
        .rev()
        .map(|dir| machine.path(dir))
        .collect();
    expected.push(state);
    expected.extend(
        [
            "/usr/bin/ros",
            "/run/ros/rw",
            "/run/ros/lower",
            "/sys/fs/cgroup",
            "/tmp",
            "/run",
            "/dev/shm",
            "/dev/pts",
            "/dev",
            "/sys",
            "/proc",
        ]
        .map(PathBuf::from),
    );
    assert_eq!(unmounted, expected);
    // Nothing is left mounted but the root.
    assert_eq!(
        machine.host.mount_table().unwrap(),
        "overlay / overlay rw 0 0\n"
    );
}

#[test]
fn a_required_state_partition_that_is_missing_powers_the_machine_off_saying_why() {
    let cmdline = "rancher.state.dev=/dev/vdc rancher.state.required rancher.state.wait=false \
         rancher.cloud_init.datasources=[file:ROOT/user-data]";
    let mut machine = OnFakeMachine::new(cmdline, USER_DATA);
    let host = Arc::clone(&machine.host);
    let how = boot_or_power_off(&mut machine, &*host, Duration::ZERO);
    assert_eq!(how, Shutdown::PowerOff);
    let lines = machine.host.console_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("ros: boot failed: state partition: ")
            && lines[0].contains("/dev/vdc")
            && lines[0].ends_with("\nros: powering off in 0 s"),
        "{lines:?}"
    );
    // Nothing after the state partition ran: no configuration applied, no
    // containerd, no network, and the state disk left alone.
    assert_eq!(
        machine.platform.calls(),
        ["logging, debug false", "prefetch", "reaper", "lo up"]
    );
    assert!(!machine.path("etc/motd").exists());
    assert!(
        !machine
            .host
            .calls()
            .iter()
            .any(|c| matches!(c, HostCall::Mount { source, .. } if source.starts_with("/dev/vd")))
    );
}
