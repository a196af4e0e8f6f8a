//! The boot's order, run against a recording fake: each step appends its
//! name; host effects go to a [`FakeHost`] and the services to a
//! [`FakeRuntime`], so a test sees what the machine would have seen.

use std::sync::Mutex;

use system_services::fake::FakeRuntime;

use super::*;
use crate::host::{FakeHost, HostCall};

/// Steps that record their names, in a temporary root.
struct FakeSteps {
    host: Arc<FakeHost>,
    steps: Arc<Mutex<Vec<&'static str>>>,
    /// The step that fails, if any.
    fail: Option<&'static str>,
    /// Asks for this shutdown when `shutdown_at` runs.
    shutdown_at: Option<(&'static str, Shutdown)>,
    requests: watch::Sender<Option<Shutdown>>,
    /// `stop` never finishes.
    stop_hangs: bool,
    dir: tempfile::TempDir,
    cmdline: Cmdline,
    config: CloudConfig,
    runtime: Arc<FakeRuntime>,
    engine: Option<Arc<Engine<FakeRuntime>>>,
}

impl FakeSteps {
    fn new() -> Self {
        Self {
            host: Arc::new(FakeHost::new()),
            steps: Arc::default(),
            fail: None,
            shutdown_at: None,
            requests: watch::channel(None).0,
            stop_hangs: false,
            dir: tempfile::tempdir().unwrap(),
            cmdline: Cmdline::default(),
            config: CloudConfig::default(),
            runtime: Arc::new(FakeRuntime::default()),
            engine: None,
        }
    }

    fn steps(&self) -> Vec<&'static str> {
        self.steps.lock().unwrap().clone()
    }

    fn step(&mut self, name: &'static str) -> Result<(), BootError> {
        self.steps.lock().unwrap().push(name);
        if let Some((at, how)) = self.shutdown_at
            && at == name
        {
            shutdown::request(&self.requests, how);
        }
        if self.fail == Some(name) {
            return Err(BootError::new(name, "injected failure"));
        }
        Ok(())
    }

    fn paths(&self) -> ConfigPaths {
        ConfigPaths::under(self.dir.path())
    }
}

impl Steps for FakeSteps {
    fn mount_early(&mut self) -> Result<(), BootError> {
        self.step("mount_early")?;
        mount_early(&*self.host).map_err(|e| BootError::new("early mounts", e))
    }

    fn read_cmdline(&mut self) -> Result<Cmdline, BootError> {
        self.step("read_cmdline")?;
        self.cmdline = Cmdline::parse("console=ttyS0 cc.hostname=fake");
        Ok(self.cmdline.clone())
    }

    fn start_logging(&mut self) -> Result<(), BootError> {
        self.step("start_logging")
    }

    fn switch_root(&mut self) -> Result<(), BootError> {
        self.step("switch_root")
    }

    fn become_subreaper(&mut self) -> Result<(), BootError> {
        self.step("become_subreaper")?;
        self.host
            .set_child_subreaper()
            .map_err(|e| BootError::new("subreaper", e))
    }

    fn run_async(&mut self) -> Result<Shutdown, BootError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let requests = self.requests.subscribe();
        runtime.block_on(run_system(self, requests))
    }

    fn start_reaper(&mut self) -> Result<(), BootError> {
        self.step("start_reaper")
    }

    fn loopback_up(&mut self) -> Result<(), BootError> {
        self.step("loopback_up")
    }

    async fn mount_state(&mut self) -> Result<(), BootError> {
        self.step("mount_state")
    }

    fn count_boot(&mut self) {
        let _ = self.step("count_boot");
    }

    async fn load_config(&mut self) {
        let _ = self.step("load_config");
        // Two services from a registry, one after the other; the built-in
        // ones are not shipped on the test host and are left out.
        let paths = self.paths();
        std::fs::create_dir_all(paths.conf_dir()).unwrap();
        std::fs::write(
            paths.cloud_config_file(),
            format!(
                "rancher:\n  services:\n    db: {{image: \"{DB}\", command: [redis-server]}}\n    web: {{image: \"{WEB}\", command: [nginx], labels: {{io.rancher.os.after: db}}}}\n"
            ),
        )
        .unwrap();
        for image in [DB, WEB] {
            self.runtime.add_image(image, Default::default());
        }
        self.config = config::load(&paths, &self.cmdline);
    }

    async fn apply_early(&mut self) {
        let _ = self.step("apply_early");
    }

    fn start_containerd(&mut self) {
        let _ = self.step("start_containerd");
    }

    async fn start_network(&mut self) {
        let _ = self.step("start_network");
    }

    async fn join_network_user_data(&mut self) {
        let _ = self.step("join_network_user_data");
        // Waiting for leases, as the real step does, when a shutdown
        // comes meanwhile.
        if matches!(self.shutdown_at, Some(("join_network_user_data", _))) {
            std::future::pending::<()>().await;
        }
    }

    async fn containerd_answering(&mut self) -> Result<(), BootError> {
        self.step("containerd_answering")
    }

    async fn connect_runtime(&mut self) -> Result<(), BootError> {
        self.step("connect_runtime")
    }

    async fn start_services(&mut self) -> Result<(), BootError> {
        self.step("start_services")?;
        let engine = Arc::new(Engine::new(
            Arc::clone(&self.runtime),
            self.dir.path().join("log"),
        ));
        let control = services::control(&engine, self.paths(), self.cmdline.clone());
        services::start_all(&engine, &control, &self.config, async {}).await;
        self.engine = Some(engine);
        self.host.console("ros: ready in 0.00 s");
        Ok(())
    }

    fn start_late_commands(&mut self) {
        let _ = self.step("start_late_commands");
    }

    fn report(&mut self, message: &str) {
        self.host.console(&format!("ros: {message}"));
    }

    async fn stop(&mut self, how: Shutdown) -> Result<(), BootError> {
        self.step("stop")?;
        self.host.console(&format!("ros: shutting down ({how})"));
        if self.stop_hangs {
            std::future::pending::<()>().await;
        }
        if let Some(engine) = self.engine.take() {
            engine.stop_all().await;
        }
        Ok(())
    }
}

const DB: &str = "docker.io/library/redis:7";
const WEB: &str = "docker.io/library/nginx:1";

const WHOLE_BOOT: [&str; 19] = [
    "mount_early",
    "read_cmdline",
    "start_logging",
    "switch_root",
    "become_subreaper",
    "start_reaper",
    "loopback_up",
    "mount_state",
    "count_boot",
    "load_config",
    "apply_early",
    "start_containerd",
    "start_network",
    "join_network_user_data",
    "containerd_answering",
    "connect_runtime",
    "start_services",
    "start_late_commands",
    "stop",
];

#[test]
fn the_whole_boot_runs_its_steps_in_order_and_ends_in_the_shutdown_asked_for() {
    let mut steps = FakeSteps::new();
    steps.shutdown_at = Some(("start_late_commands", Shutdown::Reboot));
    assert_eq!(boot(&mut steps).unwrap(), Shutdown::Reboot);
    assert_eq!(steps.steps(), WHOLE_BOOT);
    // The host saw the early mounts first, the subreaper after them, and
    // the console the ready line before the shutdown line.
    let calls = steps.host.calls();
    let subreaper = calls
        .iter()
        .position(|call| *call == HostCall::SetChildSubreaper)
        .unwrap();
    assert!(subreaper > 0);
    assert!(calls[..subreaper].iter().all(|call| matches!(
        call,
        HostCall::Mount { .. } | HostCall::CreateDirAll(_) | HostCall::Touch(_)
    )));
    assert_eq!(
        steps.host.console_lines(),
        ["ros: ready in 0.00 s", "ros: shutting down (reboot)"]
    );
}

#[test]
fn the_services_of_the_configuration_start_in_the_runtime_and_stop_at_shutdown() {
    let mut steps = FakeSteps::new();
    steps.shutdown_at = Some(("start_late_commands", Shutdown::PowerOff));
    boot(&mut steps).unwrap();
    let calls = steps.runtime.calls();
    let started: Vec<&str> = calls
        .iter()
        .filter_map(|call| match call {
            system_services::fake::FakeCall::StartTask(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    // web comes after db, as its label says.
    assert_eq!(started, ["db", "web"], "{calls:?}");
    // The stop step stopped both.
    for id in ["db", "web"] {
        assert!(
            calls.iter().any(|call| matches!(
                call,
                system_services::fake::FakeCall::Kill(killed, _)
                    | system_services::fake::FakeCall::KillInit(killed, _) if killed == id
            )),
            "stop did not stop {id}: {calls:?}"
        );
    }
}

#[test]
fn a_failed_step_ends_the_boot_naming_it_and_nothing_after_it_runs() {
    let mut steps = FakeSteps::new();
    steps.fail = Some("mount_state");
    let err = boot(&mut steps).unwrap_err();
    assert_eq!(err.step, "mount_state");
    assert_eq!(err.to_string(), "mount_state: injected failure");
    assert_eq!(steps.steps(), WHOLE_BOOT[..8]);
}

#[test]
fn a_shutdown_while_waiting_for_network_user_data_skips_the_services() {
    let mut steps = FakeSteps::new();
    steps.shutdown_at = Some(("join_network_user_data", Shutdown::PowerOff));
    assert_eq!(boot(&mut steps).unwrap(), Shutdown::PowerOff);
    let ran = steps.steps();
    assert_eq!(ran.last(), Some(&"join_network_user_data"));
    assert!(!ran.contains(&"start_services"));
}

#[test]
fn a_stop_that_hangs_is_given_up_after_the_shutdown_deadline() {
    let mut steps = FakeSteps::new();
    steps.shutdown_at = Some(("start_late_commands", Shutdown::Halt));
    steps.stop_hangs = true;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let requests = steps.requests.subscribe();
    let started = runtime.block_on(async { tokio::time::Instant::now() });
    let how = runtime.block_on(run_system(&mut steps, requests)).unwrap();
    let waited = runtime.block_on(async { tokio::time::Instant::now() }) - started;
    assert_eq!(how, Shutdown::Halt);
    assert!(waited >= SHUTDOWN_DEADLINE, "{waited:?}");
    assert!(
        waited < SHUTDOWN_DEADLINE + Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(steps.steps().last(), Some(&"stop"));
    assert_eq!(
        steps.host.console_lines().last().map(String::as_str),
        Some(
            "ros: shutdown: services, network and containerd did not stop in 45 s; killing what is left"
        )
    );
}

#[test]
fn at_ready_the_console_is_quieted_unless_the_command_line_set_its_level() {
    let host = FakeHost::new();
    announce_ready(&host, true);
    let calls = host.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(matches!(&calls[0], HostCall::Console(line) if line.starts_with("ros: ready in ")));
    assert_eq!(calls[1], HostCall::ConsoleLogLevel(5));

    let host = FakeHost::new();
    announce_ready(&host, false);
    assert!(
        !host
            .calls()
            .iter()
            .any(|call| matches!(call, HostCall::ConsoleLogLevel(_)))
    );
}

#[test]
fn the_console_is_left_as_the_user_set_it_on_the_command_line_or_by_sysctl() {
    let config = CloudConfig::default();
    assert!(quiet_console_at_ready(
        &Cmdline::parse("console=ttyS0"),
        &config
    ));
    assert!(!quiet_console_at_ready(
        &Cmdline::parse("console=ttyS0 loglevel=7"),
        &config
    ));
    let mut by_sysctl = CloudConfig::default();
    by_sysctl
        .rancher
        .sysctl
        .insert("kernel.printk".into(), "7 4 1 7".into());
    assert!(!quiet_console_at_ready(
        &Cmdline::parse("console=ttyS0"),
        &by_sysctl
    ));
}
