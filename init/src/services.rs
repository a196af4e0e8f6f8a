//! The system services, as PID 1 runs them: the definitions of the
//! configuration (built-in defaults, optional services included by
//! `rancher.services_include`, the user's own), resolved, ordered and
//! started; and the control socket `ros service` talks to.

use std::future::Future;
use std::sync::Arc;

/// Where the services' logs go: `<dir>/<service>.log`.
pub const LOG_DIR: &str = "/var/log/ros";
/// The containerd namespace of the system services.
pub const NAMESPACE: &str = "ros";
/// The OCI runtime the shims run.
pub const OCI_RUNTIME: &str = "crun";

use os_config::layers::optional_services;
use os_config::{CloudConfig, Cmdline, ConfigPaths, Layers};
use system_services::control::Control;
use system_services::definition::{Context, Definitions};
use system_services::engine::Engine;
use system_services::order;
use system_services::runtime::ContainerRuntime;
use system_services::supervisor::{ServiceState, ServiceStatus};

use crate::console::report;

/// Every service of `config`, enabled or not, resolved; each gets the
/// proxy settings of `rancher.network` unless it sets them itself.
pub fn definitions(config: &CloudConfig) -> Definitions {
    Definitions::from_config(
        &config.rancher,
        &optional_services(),
        &Context::system(&config.rancher),
    )
}

/// The configuration as it is on disk now, for `ros service` requests:
/// like the boot's, but quiet (problems were reported at boot; the
/// console is no place for them on every `ros service list`).
pub fn current_config(paths: &ConfigPaths, cmdline: &str) -> CloudConfig {
    config_with(paths, &Cmdline::parse(cmdline))
}

/// [`current_config`] with the command line parsed already (PID 1's,
/// parsed once at boot).
pub fn config_with(paths: &ConfigPaths, cmdline: &Cmdline) -> CloudConfig {
    crate::config::merged_leaving_out_top(
        Layers::load_with_parsed_cmdline(paths, cmdline),
        |problem| tracing::warn!("{problem}"),
    )
}

/// `services_include` entries that name no optional service: a RancherOS
/// catalog service this system does not ship, or a typo. The checker's
/// own warnings (a name that is not a service name at all was refused
/// with its key path when the configuration was read).
pub fn unknown_includes(config: &CloudConfig) -> Vec<String> {
    os_config::check::services_include_warnings(config)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Starts every enabled service in dependency order; returns when all
/// have settled, except those that come after the network
/// (`io.rancher.os.after: network`): they start in the background once
/// `online` resolves, so a slow lease or a long first pull does not hold
/// up the console. What cannot start is reported on the console and
/// recorded for `ros service list`; the rest starts.
pub async fn start_all<R: ContainerRuntime>(
    engine: &Arc<Engine<R>>,
    control: &Control<R>,
    config: &CloudConfig,
    online: impl Future<Output = ()> + Send + 'static,
) {
    for problem in unknown_includes(config) {
        report(&problem);
    }
    let definitions = definitions(config);
    for errors in definitions.problems() {
        for error in &errors.0 {
            report(&error.to_string());
        }
    }
    let services = definitions.enabled();
    let plan = order::plan(&services, |name| definitions.is_defined(name.as_str()));
    for problem in &plan.problems {
        report(&problem.to_string());
        for name in problem.services() {
            control.set_blocked(name.as_str(), problem.to_string());
        }
    }
    let (now, after_network) = plan.split_after_network(&services);
    for (name, status) in engine.start_plan(&services, &now).await {
        log_settled(name.as_str(), &status);
    }
    if after_network.order.is_empty() {
        return;
    }
    let engine = Arc::clone(engine);
    tokio::spawn(async move {
        online.await;
        for (name, status) in engine.start_plan(&services, &after_network).await {
            log_settled(name.as_str(), &status);
        }
    });
}

fn log_settled(name: &str, status: &ServiceStatus) {
    match &status.state {
        ServiceState::Failed { error, .. } => {
            report(&format!("service {name} failed to start: {error}"));
        }
        ServiceState::Running { pid } => {
            tracing::info!(service = name, pid, "service settled: running");
        }
        state => tracing::info!(service = name, state = state.word(), "service settled"),
    }
}

/// The control server's view of the configuration: re-read per request.
/// The cluster agent's token file and directories follow it, so `ros
/// service restart cluster-agent` after a new token uses the new one.
pub fn loader(paths: ConfigPaths, cmdline: Cmdline) -> system_services::control::Loader {
    Box::new(move || {
        let config = config_with(&paths, &cmdline);
        for problem in crate::cluster::prepare(&crate::host::RealHost, &config) {
            tracing::warn!("{problem}");
        }
        definitions(&config)
    })
}

/// The engine and control socket PID 1 serves.
pub fn control<R: ContainerRuntime>(
    engine: &Arc<Engine<R>>,
    paths: ConfigPaths,
    cmdline: Cmdline,
) -> Arc<Control<R>> {
    Arc::new(Control::new(Arc::clone(engine), loader(paths, cmdline)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_console_resolves_to_the_image_entrypoint() {
        let dir = tempfile::tempdir().unwrap();
        let config = current_config(&ConfigPaths::under(dir.path()), "");
        let definitions = definitions(&config);
        let console = definitions.get("console").unwrap();
        assert!(console.enabled);
        // Resolving checks that ros/console is shipped; not on this host.
        let errors = console.service.as_ref().unwrap_err();
        assert_eq!(errors.0[0].key, "image");
        // On by default, as RancherOS's user Docker was.
        let user = definitions.get("user-containerd").unwrap();
        assert!(user.enabled);
        let config = current_config(
            &ConfigPaths::under(dir.path()),
            "rancher.services_include.user-containerd=false",
        );
        assert!(
            !super::definitions(&config)
                .get("user-containerd")
                .unwrap()
                .enabled
        );
    }

    #[test]
    fn includes_of_services_not_shipped_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = current_config(
            &ConfigPaths::under(dir.path()),
            "rancher.services_include.open-vm-tools=true rancher.services_include.user-containerd=true",
        );
        assert_eq!(
            unknown_includes(&config),
            [
                "`rancher.services_include.open-vm-tools`: `open-vm-tools` is not a service this \
                 image ships (RancherOS pulled it from its service repositories); nothing is \
                 started (available: user-containerd)"
            ]
        );
        assert!(definitions(&config).get("user-containerd").unwrap().enabled);
    }

    #[test]
    fn services_get_the_proxy_settings_they_do_not_set_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let config = current_config(
            &ConfigPaths::under(dir.path()),
            "rancher.network.http_proxy=http://proxy:3128 rancher.network.no_proxy=localhost \
             rancher.services.web.image=registry.example.com/web:1 \
             rancher.services.web.environment=[HTTP_PROXY=http://own:8080,MODE=fast]",
        );
        let definitions = definitions(&config);
        let web = definitions.get("web").unwrap().service.as_ref().unwrap();
        let proxies: Vec<&str> = web
            .env
            .iter()
            .map(String::as_str)
            .filter(|e| e.contains("PROXY"))
            .collect();
        assert_eq!(
            proxies,
            ["HTTP_PROXY=http://own:8080", "NO_PROXY=localhost"]
        );
    }

    #[test]
    fn a_broken_top_layer_is_left_out_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths::under(dir.path());
        std::fs::create_dir_all(paths.conf_dir()).unwrap();
        std::fs::write(
            paths.cloud_config_file(),
            "rancher:\n  disable: [console]\n",
        )
        .unwrap();
        let config = current_config(&paths, "rancher.services.console.restart=sometimes");
        assert_eq!(config.rancher.disable.len(), 1);
    }
}
