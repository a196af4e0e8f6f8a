//! `ros`: PID 1 when the kernel starts it, the command line otherwise.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use os_config::CloudConfig;
use os_config::ConfigPaths;
use os_config::datasource::block::SysBlockDevices;
use ros::boot::state::{self, StateError, StateOutcome};
use ros::boot::{self, mounts::mount_early, switch_root};
use ros::config::{self, Phase};
use ros::host::{Host, RealHost, Shutdown};
use ros::network::NetworkHandle;
use ros::network::rtnl::RtNetlink;
use ros::supervise::containerd;
use ros::supervise::reaper::Reaper;
use ros::supervise::shutdown;
use ros::{ROS_BINARY, apply, console, log, network, services, timeline};
use system_services::containerd::Containerd;
use system_services::daemon::DaemonConfig;
use system_services::engine::Engine;
use system_services::supervisor::ServiceState;

fn main() -> std::process::ExitCode {
    if runs_as_init() {
        boot();
    }
    ros::cli::run(std::env::args_os())
}

/// PID 1, or started as `init` (the initramfs's /init). The user
/// containerd's container starts `ros user-containerd` as PID 1 of its own
/// PID namespace: that is not the machine's init.
fn runs_as_init() -> bool {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let in_container = args.next().is_some_and(|arg| arg == "user-containerd");
    (std::process::id() == 1 && !in_container)
        || Path::new(&argv0)
            .file_name()
            .is_some_and(|name| name == "init")
}

/// PID 1 never returns: whatever happens ends in an orderly shutdown.
fn boot() -> ! {
    // First: the timeline starts where the kernel handed over.
    timeline::start();
    let host = RealHost;
    install_panic_hook();
    let how = match boot_sequence(&host) {
        Ok(how) => how,
        Err(err) => {
            tracing::error!("boot failed: {err:#}");
            console::line(&format!(
                "ros: boot failed: {err:#}\nros: powering off in 10 s"
            ));
            std::thread::sleep(Duration::from_secs(10));
            Shutdown::PowerOff
        }
    };
    shutdown::finish(&host, how)
}

fn boot_sequence(host: &dyn Host) -> anyhow::Result<Shutdown> {
    // The kernel starts us with nothing mounted; all that follows reads
    // /proc, /sys and /dev.
    mount_early(host).context("early mounts")?;
    timeline::step("early mounts");
    // Read before logging starts: it says whether to log debug.
    let cmdline =
        boot::read_cmdline(Path::new("/proc/cmdline")).context("reading /proc/cmdline")?;
    // Our log goes to the kernel's, which exists now that /dev is mounted.
    log::init_kmsg(log::debug_asked(&cmdline)).context("opening /dev/kmsg")?;
    // The initramfs only carries the real root; booted from a disk root,
    // there is nothing to switch.
    if Path::new(switch_root::ROOT_IMAGE).exists() {
        switch_root::switch_root(host, Path::new(switch_root::ROOT_IMAGE))
            .context("switching to the root image")?;
        timeline::step("root switched");
    }
    // /run is there, in the root for good: the timeline goes on disk.
    timeline::write_to(Path::new(timeline::FILE));
    // containerd is most of the boot's reading: start decompressing it
    // on the other CPUs now.
    boot::prefetch::start(boot::prefetch::BOOT_PROGRAMS);
    // Orphans are ours to reap, also when ros runs below another init.
    host.set_child_subreaper()?;
    // ctrl-alt-del becomes a SIGINT, an orderly reboot, not an instant one.
    host.disable_ctrl_alt_del()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_system(host, &cmdline))
}

/// From here on, everything is asynchronous: children, signals, services.
async fn run_system(host: &dyn Host, cmdline: &str) -> anyhow::Result<Shutdown> {
    // Signals and children are watched before anything is spawned, so no
    // request and no exit is missed.
    let mut shutdown_requests = shutdown::listen().context("installing signal handlers")?;
    let reaper = Reaper::start().context("installing SIGCHLD handler")?;
    // containerd and the services expect a working loopback.
    network::loopback::up().context("bringing up lo")?;

    // The configuration says what runs; user-data from a disk or the
    // command line joins it before anything is started.
    let paths = ConfigPaths::system();
    // The state partition keeps cloud-config.yml and /home across boots;
    // where it is, the layers below that file say (built-in, OEM, cmdline).
    // The state partition's search and the disk datasources share one
    // read of each device.
    os_config::datasource::block::share_heads();
    let state = mount_state(host, &reaper, &paths, cmdline).await?;
    timeline::step("state mounted");
    let mut config = config::load(&paths, cmdline);
    let found_locally = config::fetch_user_data(&paths, &config, cmdline, Phase::Local).await;
    if found_locally {
        config = config::load(&paths, cmdline);
    }
    // From here on disks may be written (mounts, bootcmd): read them afresh.
    os_config::datasource::block::stop_sharing_heads();
    timeline::step("configuration loaded");
    if config.rancher.state != state {
        console::report(
            "rancher.state is read from the built-in, OEM and command-line layers only, before the rest; \
             the setting in cloud-config.yml or user-data is not used",
        );
    }
    // What the configuration asks of the machine itself comes before any
    // service sees it: kernel settings, files, mounts, then bootcmd.
    apply_early(host, &reaper, &CloudConfig::default(), &config).await;
    timeline::step("cloud-config applied (early)");
    // syslog(3) and `logger` on the host and in the console reach the
    // syslog service through /dev/log, before any service starts.
    if let Err(error) = apply::link_dev_log(Path::new("/dev/log"), Path::new(apply::SYSLOG_SOCKET))
    {
        console::report(&format!("/dev/log: {error}"));
    }
    // The system containerd runs every service; it needs the state
    // partition and nothing of the network, so it starts first, and
    // reads its plugins while the links come up. It gets its own stop
    // signal: it goes down after the services, not with them.
    let daemon = DaemonConfig::system();
    let socket = daemon.socket.clone();
    timeline::begin(CONTAINERD);
    let mut containerd = containerd::Supervised::start(Arc::clone(&reaper), daemon);

    // The network as rancher.network describes it (sysctl may have tuned
    // it): static settings now, DHCP in the background, so nothing here
    // waits for a lease.
    timeline::begin(LEASE);
    let network = network::start_system(&config.rancher.network, config.hostname.as_ref())
        .await
        .inspect_err(|err| tracing::error!("network: {err}"))
        .ok();
    timeline::step("network up");
    record_lease(network.as_ref());

    // Services on the host network bind the host's name files: they are
    // there even when the network did not start.
    if let Err(error) = network::names::ensure_files(Path::new("/")) {
        console::report(&format!("/etc/resolv.conf, hosts, hostname: {error}"));
    }

    // Datasources on the network answer once DHCP has leases; containerd
    // starts meanwhile, the services only after their user-data joined.
    // The first source with user-data wins: a local one that had some
    // leaves them out.
    if let Some(network) = &network
        && !found_locally
        && config::has_sources(&config, cmdline, Phase::Network)
    {
        let joined = join_network_user_data(host, &reaper, &paths, cmdline, config, network);
        tokio::select! {
            joined = joined => config = joined,
            how = shutdown::requested(&mut shutdown_requests) => return Ok(how),
        }
        timeline::step("network user-data");
    }
    tokio::select! {
        up = containerd.answering() => { up.context("containerd supervisor ended")?; }
        how = shutdown::requested(&mut shutdown_requests) => return Ok(how),
    }
    timeline::end(CONTAINERD);
    timeline::step("containerd answering");
    // Task output goes through `ros log-pipe`, which rotates the logs.
    let runtime = Containerd::connect(&socket, services::NAMESPACE, services::OCI_RUNTIME)
        .await?
        .with_log_pipe(ROS_BINARY)
        .with_pull_options(system_pull_options(&config));
    // Service images shipped as archives are there before any service
    // would pull them (RancherOS loaded them before its services too).
    preload_system_images(&runtime).await;

    // The services, in dependency order, each as soon as those it comes
    // after have settled; one that fails is retried by its supervisor and
    // does not hold up the rest. `ros service` reaches them through the
    // control socket, served before they start so it answers meanwhile.
    let engine = Arc::new(
        Engine::new(Arc::new(runtime), services::LOG_DIR)
            .with_observer(timeline::service_observer()),
    );
    let control = services::control(&engine, paths.clone(), cmdline.to_string());
    if let Err(err) = system_services::control::serve(
        Path::new(system_services::control::SOCKET),
        Arc::clone(&control),
    ) {
        console::line(&format!(
            "ros: no control socket, ros service will not work: {err}"
        ));
    }
    // The cluster agent finds its token and directories ready; it starts
    // once the links have their leases, the rest meanwhile.
    prepare_cluster_agent(host, &config);
    timeline::step("services prepared");
    // The machine is usable once the console runs, whatever the other
    // services are doing; a console that failed is retried by its
    // supervisor, and the line comes when it is up. Without a console
    // (disabled, or blocked), once every service has settled.
    let console_name = system_services::service::ServiceName::new("console")?;
    let user_containerd = services::definitions(&config)
        .get("user-containerd")
        .is_some_and(|defined| defined.enabled);
    let preload = (config.rancher.preload_wait && user_containerd).then(user_preload_done);
    let (all_settled, mut settled) = tokio::sync::watch::channel(false);
    let watched = Arc::clone(&engine);
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
        // rancher.preload_wait: the user's preloaded images count as
        // part of a ready machine.
        if let Some(preload) = preload {
            preload.await;
        }
        announce_ready();
    });
    let online = network_online(network.as_ref());
    services::start_all(&engine, &control, &config, online).await;
    all_settled.send_replace(true);
    timeline::step("services settled");

    // runcmd and the user-data script come last, with the machine up.
    tokio::spawn(run_late(reaper, late_commands(&config, &paths)));

    let how = shutdown::requested(&mut shutdown_requests).await;
    console::line(&format!("ros: shutting down ({how})"));
    engine.stop_all().await;
    // Leases go back once no service needs the network.
    if let Some(network) = network {
        network.shutdown().await;
    }
    containerd
        .stop(how)
        .await
        .context("containerd supervisor")?;
    Ok(how)
}

/// Mounts the state partition where `rancher.state` says, and returns
/// the settings used. Only a missing partition that is `required` stops
/// the boot; otherwise the machine runs from memory, and says so when
/// something went wrong.
async fn mount_state(
    host: &dyn Host,
    reaper: &Reaper,
    paths: &ConfigPaths,
    cmdline: &str,
) -> anyhow::Result<os_config::schema::State> {
    let settings = config::load_quietly(paths, cmdline).rancher.state;
    let formatter = state::Mke2fs {
        reaper,
        log: Path::new(CLOUD_INIT_LOG),
    };
    let mounted = state::mount(
        host,
        &SysBlockDevices::default(),
        &formatter,
        &settings,
        &state::StatePaths::system(),
    )
    .await;
    match mounted {
        Ok(StateOutcome::Mounted { device, formatted }) => {
            let made = if formatted { ", formatted now" } else { "" };
            console::line(&format!("ros: state on {}{made}", device.display()));
            return Ok(settings);
        }
        Ok(StateOutcome::Missing { dev }) => {
            tracing::info!("no state partition {dev}: running from memory");
        }
        Ok(StateOutcome::NotConfigured) => {}
        Err(error @ StateError::Required { .. }) => return Err(error.into()),
        Err(error) => console::report(&format!("state partition: {error}; running from memory")),
    }
    // From memory, containers still need a store overlayfs accepts.
    if let Err(error) = state::stores_in_memory(host, Path::new("/")) {
        console::report(&format!(
            "containerd stores: {error}; images pulled in this machine cannot be mounted"
        ));
    }
    Ok(settings)
}

/// Where the output of bootcmd, runcmd and the user-data script goes.
const CLOUD_INIT_LOG: &str = "/var/log/ros/cloud-init.log";

/// sysctl, write_files, mounts and bootcmd of `config` that `done` did
/// not do already: changed settings, new files and mounts, and bootcmd
/// when it changed. Each failure goes on the console.
async fn apply_early(host: &dyn Host, reaper: &Reaper, done: &CloudConfig, config: &CloudConfig) {
    let sysctl = config
        .rancher
        .sysctl
        .iter()
        .filter(|(key, value)| done.rancher.sysctl.get(*key) != Some(value));
    let mut errors = apply::sysctl(Path::new("/proc/sys"), sysctl);
    // Each new entry with its index in write_files, which errors name.
    let files: Vec<_> = (config.write_files.iter().enumerate())
        .filter(|(_, file)| !done.write_files.contains(file))
        .map(|(index, file)| (index, file.clone()))
        .collect();
    let services: std::collections::BTreeSet<String> = (config.rancher.services.keys())
        .chain(os_config::layers::optional_services().keys())
        .map(ToString::to_string)
        .collect();
    errors.extend(apply::write_files(
        &apply::FileTargets {
            root: Path::new("/"),
            container_files: Path::new(apply::CONTAINER_FILES_DIR),
            services: &services,
        },
        &files,
    ));
    if config.rancher.syslog != done.rancher.syslog {
        let forward = apply::syslog_forward(
            Path::new(apply::CONTAINER_FILES_DIR),
            &config.rancher.syslog,
        );
        errors.extend(forward.err());
    }
    errors.extend(apply::mounts(host, &new_in(&config.mounts, &done.mounts)));
    if config.bootcmd != done.bootcmd {
        let bootcmd: Vec<Vec<String>> = config.bootcmd.iter().map(apply::argv).collect();
        errors.extend(
            apply::run_commands(reaper, "bootcmd", &bootcmd, Path::new(CLOUD_INIT_LOG)).await,
        );
    }
    report(&errors);
}

/// The entries of `now` that `before` did not have.
fn new_in<T: PartialEq + Clone>(now: &[T], before: &[T]) -> Vec<T> {
    now.iter()
        .filter(|entry| !before.contains(entry))
        .cloned()
        .collect()
}

/// The network datasources' turn (EC2 metadata, `url:`), once the DHCP
/// links have leases or gave up: their user-data joins the configuration,
/// and what it changes of the early steps and the host name happens now.
async fn join_network_user_data(
    host: &dyn Host,
    reaper: &Reaper,
    paths: &ConfigPaths,
    cmdline: &str,
    config: CloudConfig,
    network: &NetworkHandle<RtNetlink>,
) -> CloudConfig {
    let online = network.wait_online(network.dhcp_timeout()).await;
    if !online.pending.is_empty() {
        tracing::warn!(pending = ?online.pending, "fetching user-data without a lease on every link");
    }
    if !config::fetch_user_data(paths, &config, cmdline, Phase::Network).await {
        return config;
    }
    let fetched = config::load(paths, cmdline);
    apply_early(host, reaper, &config, &fetched).await;
    if fetched.hostname != config.hostname {
        network.set_hostname(fetched.hostname.clone());
    }
    if fetched.rancher.network != config.rancher.network {
        console::report(
            "rancher.network from network user-data is not applied now (the network came first); \
             with a state partition it applies from the next boot",
        );
    }
    fetched
}

/// The cluster agent's token file (or its removal) and, when the agent
/// runs, its host directories; problems go on the console.
fn prepare_cluster_agent(host: &dyn Host, config: &CloudConfig) {
    for problem in ros::cluster::prepare(host, config) {
        console::report(&problem);
    }
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

/// Where the system containerd's image archives are loaded from (RancherOS's).
const SYSTEM_PRELOAD_DIR: &str = "/var/lib/rancher/preload/system-docker";
/// The sha256 of every archive loaded already, kept with the images.
const SYSTEM_PRELOADED_RECORD: &str = "/var/lib/system-containerd/io.ros/preloaded";
/// How long `rancher.preload_wait` holds `ros: ready` at most.
const PRELOAD_WAIT: Duration = Duration::from_secs(600);

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
        let line = ros::user_containerd::describe(&outcome);
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
    let done = Path::new(ros::user_containerd::PRELOAD_DONE);
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

async fn run_late(reaper: Arc<Reaper>, commands: Vec<Vec<String>>) {
    report(&apply::run_commands(&reaper, "runcmd", &commands, Path::new(CLOUD_INIT_LOG)).await);
}

fn report(errors: &[apply::ApplyError]) {
    for error in errors {
        console::report(&error.to_string());
    }
}

/// The timeline's name for containerd's start, from spawn to answering.
const CONTAINERD: &str = "containerd";
/// The timeline's name for DHCP, from the network's start to a lease on
/// every link (or the timeout).
const LEASE: &str = "lease";

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
fn announce_ready() {
    timeline::mark(timeline::READY);
    let seconds = timeline::since_boot().as_secs_f64();
    tracing::info!("ready in {seconds:.2} s");
    console::line(&format!("ros: ready in {seconds:.2} s"));
}

/// A panic in PID 1 would panic the kernel: log it, sync, and reboot.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        use std::io::Write;
        if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            let _ = write!(kmsg, "<0>ros: PID 1 panicked: {info}");
        }
        console::line(&format!("ros: PID 1 panicked: {info}"));
        nix::unistd::sync();
        let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    }));
}
