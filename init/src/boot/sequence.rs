//! PID 1's boot as a list of named steps.
//!
//! [`boot`] and [`run_system`] are the order of the boot and nothing else:
//! each step is a method of [`Steps`], with one line here saying why it
//! comes where it does. [`System`] does the steps on a [`Machine`]: every
//! syscall through [`Host`], every process, the log and the network
//! through its [`Platform`], every file below its root. On the real
//! machine those are the real ones; the unit tests (`sequence/tests.rs`)
//! run the same order against recording fakes, and run [`System`]'s own
//! steps against a `FakeHost`, a fake platform and a temporary root, so a
//! step moved, dropped, skipped on shutdown or changed in what it asks of
//! the host shows up as a test failure.
//!
//! Everything that runs outside this process is bounded in time: bootcmd
//! and runcmd commands, cloud-config mounts, containerd's start and its
//! answers, and the stop of everything at shutdown ([`SHUTDOWN_DEADLINE`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use os_config::datasource::block::{BlockDevices, SysBlockDevices};
use os_config::{CloudConfig, Cmdline, ConfigPaths};
use system_services::containerd::Containerd;
use system_services::daemon::DaemonConfig;
use system_services::engine::Engine;
use system_services::supervisor::ServiceState;
use tokio::sync::watch;

use crate::boot::counter::{self, BootCounter};
use crate::boot::state::{self, StateError, StateOutcome, StatePaths};
use crate::boot::{medium, mounts::mount_early, switch_root};
use crate::config::{self, Phase};
use crate::host::{Host, Shutdown};
use crate::network::NetworkHandle;
use crate::network::rtnl::RtNetlink;
use crate::supervise::containerd;
use crate::supervise::reaper::Reaper;
use crate::supervise::shutdown;
use crate::{ROS_BINARY, apply, console, network, services, timeline};

mod platform;
pub use platform::{BoxFuture, Platform, RealPlatform};

/// A step of the boot that failed; the boot powers off after saying so.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct BootError {
    /// The step's name, as [`Steps`] calls it.
    pub step: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BootError {
    /// `source` as the failure of `step`.
    pub fn new(
        step: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            step,
            source: source.into(),
        }
    }
}

/// How long stopping services, network and containerd may take at
/// shutdown before PID 1 goes on with killing what is left: longer than
/// a service's and containerd's own grace (10 s each), short enough that
/// a machine asked to reboot does.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(45);

/// The steps of the boot, in the order [`boot`] and [`run_system`] call
/// them. The real ones are [`System`]'s.
#[allow(
    async_fn_in_trait,
    reason = "called in PID 1's single-threaded runtime only"
)]
pub trait Steps {
    /// /proc, /sys, /dev, /run and friends.
    fn mount_early(&mut self) -> Result<(), BootError>;
    /// The kernel command line, parsed once.
    fn read_cmdline(&mut self) -> Result<Cmdline, BootError>;
    /// The log to the kernel's, at debug level with `rancher.debug`.
    fn start_logging(&mut self) -> Result<(), BootError>;
    /// From the initramfs to the root image, when booted from one.
    fn switch_root(&mut self) -> Result<(), BootError>;
    /// Orphans reaped by us; ctrl-alt-del an orderly reboot.
    fn become_subreaper(&mut self) -> Result<(), BootError>;
    /// Runs the asynchronous rest ([`run_system`]) to its end.
    fn run_async(&mut self) -> Result<Shutdown, BootError>;

    /// Reaps children; done before anything is spawned.
    fn start_reaper(&mut self) -> Result<(), BootError>;
    /// `lo` up.
    fn loopback_up(&mut self) -> Result<(), BootError>;
    /// The state partition, or the stores in memory.
    async fn mount_state(&mut self) -> Result<(), BootError>;
    /// Counts this boot; after too many that never reached ready, the
    /// last good configuration comes back.
    fn count_boot(&mut self);
    /// The layers and local user-data.
    async fn load_config(&mut self);
    /// sysctl, write_files, mounts, bootcmd.
    async fn apply_early(&mut self);
    /// The system containerd, supervised.
    fn start_containerd(&mut self);
    /// Links, addresses, DHCP in the background.
    async fn start_network(&mut self);
    /// User-data from the network sources, applied.
    async fn join_network_user_data(&mut self);
    /// Until containerd's socket answers.
    async fn containerd_answering(&mut self) -> Result<(), BootError>;
    /// The runtime the services run in, and the system images preloaded.
    async fn connect_runtime(&mut self) -> Result<(), BootError>;
    /// The control socket, then every service in order; `ros: ready`
    /// once the console runs.
    async fn start_services(&mut self) -> Result<(), BootError>;
    /// runcmd and the user-data script, in the background.
    fn start_late_commands(&mut self);
    /// Services, network, containerd stopped, in that order.
    async fn stop(&mut self, how: Shutdown) -> Result<(), BootError>;
    /// A problem for the person at the console (and the log).
    fn report(&mut self, message: &str);
}

/// The synchronous start of PID 1, then [`run_system`] through
/// [`Steps::run_async`]. Returns how the machine should go down.
pub fn boot(steps: &mut impl Steps) -> Result<Shutdown, BootError> {
    // The kernel starts us with nothing mounted; all that follows reads
    // /proc, /sys and /dev.
    steps.mount_early()?;
    // Read before logging starts: it says whether to log debug.
    steps.read_cmdline()?;
    // Our log goes to the kernel's, which exists now that /dev is mounted.
    steps.start_logging()?;
    // The initramfs only carries the real root.
    steps.switch_root()?;
    // Orphans are ours to reap before anything is started.
    steps.become_subreaper()?;
    steps.run_async()
}

/// From here on, everything is asynchronous: children, signals, services.
/// `shutdown_requests` sees the first shutdown asked for.
pub async fn run_system(
    steps: &mut impl Steps,
    mut shutdown_requests: watch::Receiver<Option<Shutdown>>,
) -> Result<Shutdown, BootError> {
    // Children are watched before anything is spawned: no exit is missed.
    steps.start_reaper()?;
    // containerd and the services expect a working loopback.
    steps.loopback_up()?;
    // The state partition holds cloud-config.yml: before the configuration.
    steps.mount_state().await?;
    // The counter lives on the state partition; it decides which
    // configuration loads.
    steps.count_boot();
    steps.load_config().await;
    // What the configuration asks of the machine itself comes before any
    // service sees it.
    steps.apply_early().await;
    // containerd needs nothing of the network: it reads its plugins while
    // the links come up.
    steps.start_containerd();
    steps.start_network().await;
    // Network datasources answer once DHCP has leases; the services wait
    // for their user-data.
    tokio::select! {
        () = steps.join_network_user_data() => {}
        how = shutdown::requested(&mut shutdown_requests) => return Ok(how),
    }
    tokio::select! {
        up = steps.containerd_answering() => up?,
        how = shutdown::requested(&mut shutdown_requests) => return Ok(how),
    }
    steps.connect_runtime().await?;
    steps.start_services().await?;
    // runcmd and the user-data script come last, with the machine up.
    steps.start_late_commands();
    let how = shutdown::requested(&mut shutdown_requests).await;
    // Whatever hangs in stopping, the machine goes down: the rest is
    // killed by shutdown::finish.
    if tokio::time::timeout(SHUTDOWN_DEADLINE, steps.stop(how))
        .await
        .is_err()
    {
        steps.report(&format!(
            "shutdown: services, network and containerd did not stop in {} s; killing what is left",
            SHUTDOWN_DEADLINE.as_secs()
        ));
    }
    Ok(how)
}

/// PID 1 on the machine: the boot, then always an orderly end.
pub fn run(host: Arc<dyn Host>) -> ! {
    let mut system = System::new(Arc::clone(&host));
    let how = boot_or_power_off(&mut system, &*host, FAILED_BOOT_PAUSE);
    shutdown::finish(host, how)
}

/// How long a failed boot's message stays before the machine powers off.
const FAILED_BOOT_PAUSE: Duration = Duration::from_secs(10);

/// [`boot`], and how the machine goes down: as asked, or, when a step
/// failed, off after saying so on the console and leaving `pause` to
/// read it.
pub fn boot_or_power_off(steps: &mut impl Steps, host: &dyn Host, pause: Duration) -> Shutdown {
    match boot(steps) {
        Ok(how) => how,
        Err(err) => {
            tracing::error!("boot failed: {err}");
            host.console(&format!(
                "ros: boot failed: {err}\nros: powering off in {} s",
                pause.as_secs()
            ));
            std::thread::sleep(pause);
            Shutdown::PowerOff
        }
    }
}

/// What the steps work on besides [`Host`]; [`Machine::system`] on the
/// machine, a temporary root and fakes in tests.
pub struct Machine {
    /// The machine's `/`: the files the steps read and write themselves
    /// (`proc/cmdline`, `proc/sys`, `etc/resolv.conf`, `dev/log`, the
    /// root image) are below it.
    pub root: PathBuf,
    /// Where the configuration lives.
    pub paths: ConfigPaths,
    /// Where the state partition is mounted and bound.
    pub state: StatePaths,
    /// Where the state partition and the boot medium are looked for.
    pub block_devices: Arc<dyn BlockDevices>,
    /// The log, the reaper, the network and containerd.
    pub platform: Arc<dyn Platform>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("root", &self.root)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// The real machine.
    pub fn system() -> Self {
        Self {
            root: PathBuf::from("/"),
            paths: ConfigPaths::system(),
            state: StatePaths::system(),
            block_devices: Arc::new(SysBlockDevices::default()),
            platform: Arc::new(RealPlatform),
        }
    }

    /// `path` (absolute on the machine) below [`Self::root`].
    fn file(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// Where the output of bootcmd, runcmd and the user-data script goes.
pub const CLOUD_INIT_LOG: &str = "/var/log/ros/cloud-init.log";
/// Where the system containerd's image archives are loaded from (RancherOS's).
const SYSTEM_PRELOAD_DIR: &str = "/var/lib/rancher/preload/system-docker";
/// The sha256 of every archive loaded already, kept with the images.
const SYSTEM_PRELOADED_RECORD: &str = "/var/lib/system-containerd/io.ros/preloaded";
/// How long `rancher.preload_wait` holds `ros: ready` at most.
const PRELOAD_WAIT: Duration = Duration::from_secs(600);
/// How long connecting to a containerd that answered may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The timeline's name for containerd's start, from spawn to answering.
const CONTAINERD: &str = "containerd";
/// The timeline's name for DHCP, from the network's start to a lease on
/// every link (or the timeout).
const LEASE: &str = "lease";

/// The machine's steps: what [`Steps`] says, done for real. Each step
/// keeps what later ones need.
pub struct System {
    host: Arc<dyn Host>,
    machine: Machine,
    cmdline: Cmdline,
    reaper: Option<Arc<Reaper>>,
    state: os_config::schema::State,
    state_mounted: bool,
    /// This boot runs on the last good configuration.
    fallback: bool,
    config: CloudConfig,
    found_locally: bool,
    containerd: Option<containerd::Supervised>,
    socket: PathBuf,
    network: Option<NetworkHandle<RtNetlink>>,
    runtime: Option<Containerd>,
    engine: Option<Arc<Engine<Containerd>>>,
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System")
            .field("cmdline", &self.cmdline)
            .field("state_mounted", &self.state_mounted)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl System {
    /// The steps of the machine's boot, on `host`.
    pub fn new(host: Arc<dyn Host>) -> Self {
        Self::on(host, Machine::system())
    }

    /// The steps of a boot on `host` and `machine`.
    pub fn on(host: Arc<dyn Host>, machine: Machine) -> Self {
        Self {
            host,
            cmdline: Cmdline::default(),
            machine,
            reaper: None,
            state: os_config::schema::State::default(),
            state_mounted: false,
            fallback: false,
            config: CloudConfig::default(),
            found_locally: false,
            containerd: None,
            socket: PathBuf::new(),
            network: None,
            runtime: None,
            engine: None,
        }
    }

    fn reaper(&self, step: &'static str) -> Result<Arc<Reaper>, BootError> {
        self.reaper
            .clone()
            .ok_or_else(|| BootError::new(step, "the reaper is not started"))
    }

    fn report_all(&self, errors: &[apply::ApplyError]) {
        for error in errors {
            self.say(&error.to_string());
        }
    }

    /// A problem for the person at the console: to the log, and as a
    /// `ros: …` line on the console.
    fn say(&self, message: &str) {
        tracing::error!("{message}");
        self.host.console(&format!("ros: {message}"));
    }

    /// [`apply_early`] for the machine, from `done` to `config`.
    async fn apply_changes(&self, done: &CloudConfig, config: &CloudConfig) {
        let Some(reaper) = self.reaper.clone() else {
            return;
        };
        let root = &self.machine.root;
        self.report_all(&apply_early(&self.host, &reaper, root, done, config).await);
    }
}

impl Steps for System {
    fn mount_early(&mut self) -> Result<(), BootError> {
        mount_early(&*self.host).map_err(|e| BootError::new("early mounts", e))?;
        timeline::step("early mounts");
        Ok(())
    }

    fn read_cmdline(&mut self) -> Result<Cmdline, BootError> {
        self.cmdline = Cmdline::read(&self.machine.file("/proc/cmdline"))
            .map_err(|e| BootError::new("reading /proc/cmdline", e))?;
        Ok(self.cmdline.clone())
    }

    fn start_logging(&mut self) -> Result<(), BootError> {
        (self.machine.platform)
            .start_logging(self.cmdline.debug())
            .map_err(|e| BootError::new("opening /dev/kmsg", e))
    }

    fn switch_root(&mut self) -> Result<(), BootError> {
        // The initramfs carries the root image, or says that its boot
        // medium does (mounted now); from a disk root, nothing to switch.
        let machine = &self.machine;
        let image = medium::root_image(
            &*self.host,
            &*machine.block_devices,
            &machine.file(switch_root::ROOT_IMAGE),
            &machine.file(medium::IMAGE_ID),
            &machine.file(medium::MOUNT),
            medium::WAIT,
        )
        .map_err(|e| BootError::new("finding the root image", e))?;
        if let Some(image) = image {
            switch_root::switch_root(&*self.host, &image)
                .map_err(|e| BootError::new("switching to the root image", e))?;
            timeline::step("root switched");
        }
        // /run is there, in the root for good: the timeline goes on disk.
        timeline::write_to(&self.machine.file(timeline::FILE));
        // containerd is most of the boot's reading: start decompressing it
        // on the other CPUs now.
        self.machine.platform.start_prefetch();
        Ok(())
    }

    fn become_subreaper(&mut self) -> Result<(), BootError> {
        self.host
            .set_child_subreaper()
            .map_err(|e| BootError::new("subreaper", e))?;
        // ctrl-alt-del becomes a SIGINT, an orderly reboot, not an instant one.
        self.host
            .disable_ctrl_alt_del()
            .map_err(|e| BootError::new("ctrl-alt-del", e))
    }

    fn run_async(&mut self) -> Result<Shutdown, BootError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BootError::new("tokio runtime", e))?;
        runtime.block_on(async {
            // Signals are watched before anything is spawned, so no
            // request is missed.
            let requests =
                shutdown::listen().map_err(|e| BootError::new("installing signal handlers", e))?;
            run_system(self, requests).await
        })
    }

    fn start_reaper(&mut self) -> Result<(), BootError> {
        let reaper = (self.machine.platform)
            .start_reaper()
            .map_err(|e| BootError::new("installing SIGCHLD handler", e))?;
        self.reaper = Some(reaper);
        Ok(())
    }

    fn loopback_up(&mut self) -> Result<(), BootError> {
        (self.machine.platform)
            .loopback_up()
            .map_err(|e| BootError::new("bringing up lo", e))
    }

    async fn mount_state(&mut self) -> Result<(), BootError> {
        // The state partition's search and the disk datasources share one
        // read of each device.
        os_config::datasource::block::share_heads();
        let reaper = self.reaper("state partition")?;
        let (settings, mounted) =
            mount_state(&*self.host, &reaper, &self.machine, &self.cmdline).await?;
        self.state = settings;
        self.state_mounted = mounted;
        timeline::step("state mounted");
        Ok(())
    }

    fn count_boot(&mut self) {
        if !self.state_mounted {
            return;
        }
        let counter = BootCounter::new(&self.machine.paths);
        self.fallback = counter::start_boot(&counter, &self.machine.paths, |line| {
            self.host.console(line)
        });
    }

    async fn load_config(&mut self) {
        self.config = config::load(&self.machine.paths, &self.cmdline);
        // The last good configuration is what was there: user-data that
        // came since is not fetched again.
        if !self.fallback {
            self.found_locally = config::fetch_user_data(
                &self.machine.paths,
                &self.config,
                &self.cmdline,
                Phase::Local,
            )
            .await;
        }
        if self.found_locally {
            self.config = config::load(&self.machine.paths, &self.cmdline);
        }
        // From here on disks may be written (mounts, bootcmd): read them afresh.
        os_config::datasource::block::stop_sharing_heads();
        timeline::step("configuration loaded");
        if self.config.rancher.state != self.state {
            self.say(
                "rancher.state is read from the built-in, OEM and command-line layers only, before the rest; \
                 the setting in cloud-config.yml or user-data is not used",
            );
        }
    }

    async fn apply_early(&mut self) {
        let config = self.config.clone();
        self.apply_changes(&CloudConfig::default(), &config).await;
        timeline::step("cloud-config applied (early)");
        // syslog(3) and `logger` reach the syslog service through /dev/log,
        // before any service starts.
        if let Err(error) = apply::link_dev_log(
            &self.machine.file("/dev/log"),
            Path::new(apply::SYSLOG_SOCKET),
        ) {
            self.say(&format!("/dev/log: {error}"));
        }
    }

    fn start_containerd(&mut self) {
        let Some(reaper) = self.reaper.clone() else {
            return;
        };
        let daemon = DaemonConfig::system();
        self.socket = daemon.socket.clone();
        timeline::begin(CONTAINERD);
        // It gets its own stop signal: it goes down after the services.
        self.containerd = Some(self.machine.platform.start_containerd(reaper, daemon));
    }

    async fn start_network(&mut self) {
        timeline::begin(LEASE);
        self.network = (self.machine.platform)
            .start_network(&self.config.rancher.network, self.config.hostname.as_ref())
            .await
            .inspect_err(|err| tracing::error!("network: {err}"))
            .ok();
        timeline::step("network up");
        record_lease(self.network.as_ref());
        // Services on the host network bind the host's name files: they
        // are there even when the network did not start.
        if let Err(error) = network::names::ensure_files(&self.machine.root) {
            self.say(&format!("/etc/resolv.conf, hosts, hostname: {error}"));
        }
    }

    async fn join_network_user_data(&mut self) {
        // The first source with user-data wins: a local one that had some
        // leaves them out; the last good configuration fetches none.
        let Some(network) = &self.network else {
            return;
        };
        if self.found_locally
            || self.fallback
            || !config::has_sources(&self.config, &self.cmdline, Phase::Network)
        {
            return;
        }
        let online = network.wait_online(network.dhcp_timeout()).await;
        if !online.pending.is_empty() {
            tracing::warn!(pending = ?online.pending, "fetching user-data without a lease on every link");
        }
        if !config::fetch_user_data(
            &self.machine.paths,
            &self.config,
            &self.cmdline,
            Phase::Network,
        )
        .await
        {
            return;
        }
        let fetched = config::load(&self.machine.paths, &self.cmdline);
        self.apply_changes(&self.config, &fetched).await;
        if fetched.hostname != self.config.hostname {
            network.set_hostname(fetched.hostname.clone());
        }
        if fetched.rancher.network != self.config.rancher.network {
            self.say(
                "rancher.network from network user-data is not applied now (the network came first); \
                 with a state partition it applies from the next boot",
            );
        }
        self.config = fetched;
        timeline::step("network user-data");
    }

    async fn containerd_answering(&mut self) -> Result<(), BootError> {
        let Some(containerd) = self.containerd.as_mut() else {
            return Err(BootError::new("containerd", "not started"));
        };
        containerd
            .answering()
            .await
            .map_err(|e| BootError::new("containerd supervisor ended", e))?;
        timeline::end(CONTAINERD);
        timeline::step("containerd answering");
        Ok(())
    }

    async fn connect_runtime(&mut self) -> Result<(), BootError> {
        // Task output goes through `ros log-pipe`, which rotates the logs.
        let connect = Containerd::connect(&self.socket, services::NAMESPACE, services::OCI_RUNTIME);
        let runtime = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                BootError::new(
                    "connecting to containerd",
                    format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()),
                )
            })?
            .map_err(|e| BootError::new("connecting to containerd", e))?
            .with_log_pipe(ROS_BINARY)
            .with_pull_options(system_pull_options(&self.config));
        // Service images shipped as archives are there before any service
        // would pull them.
        preload_system_images(&runtime).await;
        self.runtime = Some(runtime);
        Ok(())
    }

    async fn start_services(&mut self) -> Result<(), BootError> {
        let Some(runtime) = self.runtime.take() else {
            return Err(BootError::new("services", "no containerd connection"));
        };
        let engine = Arc::new(
            Engine::new(Arc::new(runtime), services::LOG_DIR)
                .with_observer(timeline::service_observer()),
        );
        // `ros service` reaches the services through the control socket,
        // served before they start so it answers meanwhile.
        let control = services::control(&engine, self.machine.paths.clone(), self.cmdline.clone());
        if let Err(err) = system_services::control::serve(
            Path::new(system_services::control::SOCKET),
            Arc::clone(&control),
        ) {
            self.say(&format!(
                "no control socket, ros service will not work: {err}"
            ));
        }
        // The power button: acpid asks through a FIFO of its own (it no
        // longer shares the host's PID namespace to signal PID 1), and the
        // request takes the path `ros poweroff`'s signal takes.
        if let Err(err) = system_services::control::serve_power(
            Path::new(system_services::control::POWER_FIFO),
            || {
                let signal = shutdown::signal_for(Shutdown::PowerOff);
                let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), signal);
            },
        ) {
            self.say(&format!(
                "no power FIFO, the power button will not work: {err}"
            ));
        }
        // The cluster agent finds its token and directories ready.
        for problem in crate::cluster::prepare(&*self.host, &self.config) {
            self.say(&problem);
        }
        timeline::step("services prepared");
        let all_settled = watch_for_ready(
            &engine,
            &self.config,
            quiet_console_at_ready(&self.cmdline, &self.config),
            Arc::clone(&self.host),
            self.state_mounted.then(|| self.machine.paths.clone()),
        )?;
        let online = network_online(self.network.as_ref());
        services::start_all(&engine, &control, &self.config, online).await;
        all_settled.send_replace(true);
        timeline::step("services settled");
        self.engine = Some(engine);
        Ok(())
    }

    fn start_late_commands(&mut self) {
        let Some(reaper) = self.reaper.clone() else {
            return;
        };
        let commands = late_commands(&self.config, &self.machine.paths);
        let log = self.machine.file(CLOUD_INIT_LOG);
        let host = Arc::clone(&self.host);
        tokio::spawn(async move {
            let errors =
                apply::run_commands(&reaper, "runcmd", &commands, &log, apply::RUNCMD_TIMEOUT)
                    .await;
            for error in errors {
                host.console(&format!("ros: {error}"));
            }
        });
    }

    fn report(&mut self, message: &str) {
        self.say(message);
    }

    async fn stop(&mut self, how: Shutdown) -> Result<(), BootError> {
        self.host.console(&format!("ros: shutting down ({how})"));
        if let Some(engine) = self.engine.take() {
            engine.stop_all().await;
        }
        // Leases go back once no service needs the network.
        if let Some(network) = self.network.take() {
            network.shutdown().await;
        }
        if let Some(containerd) = self.containerd.take() {
            containerd
                .stop(how)
                .await
                .map_err(|e| BootError::new("containerd supervisor", e))?;
        }
        Ok(())
    }
}

/// Mounts the state partition where `rancher.state` says; returns the
/// settings used and whether it is mounted. Only a missing partition that
/// is `required` stops the boot; otherwise the machine runs from memory,
/// and says so when something went wrong.
async fn mount_state(
    host: &dyn Host,
    reaper: &Reaper,
    machine: &Machine,
    cmdline: &Cmdline,
) -> Result<(os_config::schema::State, bool), BootError> {
    let settings = config::load_quietly(&machine.paths, cmdline).rancher.state;
    let log = machine.file(CLOUD_INIT_LOG);
    let formatter = state::Mke2fs { reaper, log: &log };
    let mounted = state::mount(
        host,
        &*machine.block_devices,
        &formatter,
        &settings,
        &machine.state,
    )
    .await;
    match mounted {
        Ok(StateOutcome::Mounted { device, formatted }) => {
            let made = if formatted { ", formatted now" } else { "" };
            host.console(&format!("ros: state on {}{made}", device.display()));
            return Ok((settings, true));
        }
        Ok(StateOutcome::Missing { dev }) => {
            tracing::info!("no state partition {dev}: running from memory");
        }
        Ok(StateOutcome::NotConfigured) => {}
        Err(error @ StateError::Required { .. }) => {
            return Err(BootError::new("state partition", error));
        }
        Err(error) => host.console(&format!(
            "ros: state partition: {error}; running from memory"
        )),
    }
    // From memory, containers still need a store overlayfs accepts.
    if let Err(error) = state::stores_in_memory(host, &machine.root) {
        host.console(&format!(
            "ros: containerd stores: {error}; images pulled in this machine cannot be mounted"
        ));
    }
    Ok((settings, false))
}

/// sysctl, write_files, mounts and bootcmd of `config` that `done` did
/// not do already: changed settings, new files and mounts, and bootcmd
/// when it changed, on the machine whose `/` is `root`. Returns what
/// failed.
pub async fn apply_early(
    host: &Arc<dyn Host>,
    reaper: &Reaper,
    root: &Path,
    done: &CloudConfig,
    config: &CloudConfig,
) -> Vec<apply::ApplyError> {
    let sysctl = config
        .rancher
        .sysctl
        .iter()
        .filter(|(key, value)| done.rancher.sysctl.get(*key) != Some(value));
    let mut errors = apply::sysctl(&root.join("proc/sys"), sysctl);
    // Each new entry with its index in write_files, which errors name.
    let files: Vec<_> = (config.write_files.iter().enumerate())
        .filter(|(_, file)| !done.write_files.contains(file))
        .map(|(index, file)| (index, file.clone()))
        .collect();
    let services: std::collections::BTreeSet<String> = (config.rancher.services.keys())
        .chain(os_config::layers::optional_services().keys())
        .map(ToString::to_string)
        .collect();
    let container_files = root.join(apply::CONTAINER_FILES_DIR.trim_start_matches('/'));
    errors.extend(apply::write_files(
        &apply::FileTargets {
            root,
            container_files: &container_files,
            services: &services,
        },
        &files,
    ));
    if config.rancher.syslog != done.rancher.syslog {
        let forward = apply::syslog_forward(&container_files, &config.rancher.syslog);
        errors.extend(forward.err());
    }
    errors.extend(
        apply::mounts_bounded(
            host,
            &new_in(&config.mounts, &done.mounts),
            apply::MOUNT_TIMEOUT,
        )
        .await,
    );
    if config.bootcmd != done.bootcmd {
        let bootcmd: Vec<Vec<String>> = config.bootcmd.iter().map(apply::argv).collect();
        errors.extend(
            apply::run_commands(
                reaper,
                "bootcmd",
                &bootcmd,
                &root.join(CLOUD_INIT_LOG.trim_start_matches('/')),
                apply::BOOTCMD_TIMEOUT,
            )
            .await,
        );
    }
    errors
}

/// The entries of `now` that `before` did not have.
fn new_in<T: PartialEq + Clone>(now: &[T], before: &[T]) -> Vec<T> {
    now.iter()
        .filter(|entry| !before.contains(entry))
        .cloned()
        .collect()
}

/// Announces `ros: ready` once the console runs (or, without one, once
/// every service settled: the returned sender says so), after the user's
/// preload when `rancher.preload_wait` asks. With `last_good` (a state
/// partition), the boot counter is reset and the configuration kept as
/// the last good one.
fn watch_for_ready(
    engine: &Arc<Engine<Containerd>>,
    config: &CloudConfig,
    quiet_console: bool,
    host: Arc<dyn Host>,
    last_good: Option<ConfigPaths>,
) -> Result<watch::Sender<bool>, BootError> {
    let console_name = system_services::service::ServiceName::new("console")
        .map_err(|e| BootError::new("services", e.to_string()))?;
    let user_containerd = services::definitions(config)
        .get("user-containerd")
        .is_some_and(|defined| defined.enabled);
    let preload = (config.rancher.preload_wait && user_containerd).then(user_preload_done);
    let (all_settled, mut settled) = watch::channel(false);
    let watched = Arc::clone(engine);
    tokio::spawn(async move {
        let console = tokio::select! {
            console = watched.status_when_known(&console_name) => Some(console),
            _ = settled.wait_for(|settled| *settled) => watched.status_of(&console_name),
        };
        if let Some(mut console) = console
            && console
                .wait_for(|s| matches!(s.state, ServiceState::Running { .. }))
                .await
                .is_err()
        {
            return;
        }
        if let Some(preload) = preload {
            preload.await;
        }
        if let Some(paths) = last_good {
            counter::reached_ready(&BootCounter::new(&paths), &paths, |line| host.console(line));
        }
        announce_ready(&*host, quiet_console);
    });
    Ok(all_settled)
}

/// Resolves once every DHCP link has a lease or `dhcp_timeout` passed
/// (at once without a network): what `io.rancher.os.after: network` waits for.
fn network_online(
    network: Option<&NetworkHandle<RtNetlink>>,
) -> impl Future<Output = ()> + Send + 'static {
    let wait = network.map(|network| network.online(network.dhcp_timeout()));
    async move {
        if let Some(wait) = wait {
            let online = wait.await;
            if !online.pending.is_empty() {
                tracing::warn!(pending = ?online.pending, "starting the services after the network without a lease on every link");
            }
        }
    }
}

/// How service images are pulled: `rancher.system_docker.insecure_registry`
/// over plain HTTP, the others over HTTPS.
fn system_pull_options(config: &CloudConfig) -> system_services::image::PullOptions {
    system_services::image::PullOptions {
        registry: system_services::image::RegistryOptions {
            plain_http: config.rancher.system_docker.insecure_registry.clone(),
            ..Default::default()
        },
        platform: None,
    }
}

/// Loads the archives of [`SYSTEM_PRELOAD_DIR`] not loaded before; what
/// was loaded or failed goes on the console.
async fn preload_system_images(runtime: &Containerd) {
    let outcomes = system_services::image::preload_dir(
        runtime,
        Path::new(SYSTEM_PRELOAD_DIR),
        Path::new(SYSTEM_PRELOADED_RECORD),
    )
    .await;
    for outcome in outcomes {
        let line = crate::user_containerd::describe(&outcome);
        match outcome {
            system_services::image::PreloadOutcome::AlreadyLoaded { .. } => {
                tracing::info!("preload {line}");
            }
            _ => console::line(&format!("ros: preload {line}")),
        }
    }
}

/// Resolves once the user containerd has loaded its preloaded archives
/// (or after [`PRELOAD_WAIT`], saying so).
async fn user_preload_done() {
    let done = Path::new(crate::user_containerd::PRELOAD_DONE);
    let waited = tokio::time::timeout(PRELOAD_WAIT, async {
        while !done.exists() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if waited.is_err() {
        console::report(&format!(
            "rancher.preload_wait: the user containerd's preload did not finish in {} s",
            PRELOAD_WAIT.as_secs()
        ));
    }
}

/// runcmd, then the user-data script if user-data was one.
fn late_commands(config: &CloudConfig, paths: &ConfigPaths) -> Vec<Vec<String>> {
    let mut commands: Vec<Vec<String>> = config.runcmd.iter().map(apply::argv).collect();
    let script = paths.user_script_file();
    if script.is_file() {
        commands.push(vec![script.display().to_string()]);
    }
    commands
}

/// Ends the timeline's [`LEASE`] once every DHCP link has one (or gave up).
fn record_lease(network: Option<&NetworkHandle<RtNetlink>>) {
    let Some(network) = network else {
        return;
    };
    let online = network.online(network.dhcp_timeout());
    tokio::spawn(async move {
        let online = online.await;
        if online.pending.is_empty() {
            timeline::end(LEASE);
        }
    });
}

/// One line on the console for people and tests: the machine is usable.
fn announce_ready(host: &dyn Host, quiet_console: bool) {
    timeline::mark(timeline::READY);
    let seconds = timeline::since_boot().as_secs_f64();
    tracing::info!("ready in {seconds:.2} s");
    host.console(&format!("ros: ready in {seconds:.2} s"));
    // The boot's log stays on the console up to here; after it the
    // services' info lines would cut into what the user types. Warnings
    // and errors still show; `dmesg` and /var/log have the rest.
    if quiet_console && let Err(err) = host.set_console_log_level(QUIET_CONSOLE_LEVEL) {
        tracing::warn!("the console stays verbose: {err}");
    }
}

/// Whether PID 1 quiets the console at ready: not when the user set its
/// level, on the command line or as `rancher.sysctl`'s `kernel.printk`.
fn quiet_console_at_ready(cmdline: &Cmdline, config: &CloudConfig) -> bool {
    !cmdline.sets_console_log_level() && !config.rancher.sysctl.contains_key("kernel.printk")
}

/// After ready, the console shows the kernel's and PID 1's warnings
/// (KERN_WARNING, 4) and more urgent messages only.
const QUIET_CONSOLE_LEVEL: u8 = 5;

#[cfg(test)]
mod on_fake_machine;
#[cfg(test)]
mod tests;
