//! The machine's configuration at boot: the layers (built-in defaults < OEM
//! < cloud-config.d < cloud-config.yml < kernel cmdline), and user-data from
//! the configured datasources, saved as a layer of its own.
//!
//! Nothing here stops the boot: a layer or a datasource that is wrong is
//! reported on the console and left out, and the machine comes up with
//! what is valid.

use std::sync::Arc;

use os_config::datasource::{self, Datasource, Environment, Strategy};
use os_config::{CloudConfig, Cmdline, ConfigPaths, Layers};

use crate::console::report;

/// Which datasources a round of fetching tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Those that need no network: the command line, disks, files.
    Local,
    /// Those that do: EC2 metadata, URLs.
    Network,
}

/// All layers merged. Problems are reported; when the merged whole does
/// not check, the machine runs on the layers that do, without the top one.
pub fn load(paths: &ConfigPaths, cmdline: &Cmdline) -> CloudConfig {
    // Secrets in files an older release wrote readable by all, or copied
    // in by hand: root alone reads them from this boot on.
    match os_config::store::narrow_private_tree(&paths.conf_dir()) {
        Ok(changed) => {
            for path in changed {
                tracing::info!("{}: group and other permissions removed", path.display());
            }
        }
        Err(error) => report(&format!("{}: {error}", paths.conf_dir().display())),
    }
    // The saved user-data is among the layers: a parser that panics on it
    // would panic on every boot, so the machine comes up on its built-in
    // configuration instead.
    let layers = match crate::untrusted::contain("configuration layers", || {
        Layers::load_with_parsed_cmdline(paths, cmdline)
    }) {
        Ok(layers) => layers,
        Err(panicked) => {
            report(&format!("{panicked}; the built-in configuration applies"));
            return os_config::check::check_value_dropping(os_config::layers::built_in_value())
                .map(|checked| checked.config)
                .unwrap_or_default();
        }
    };
    for problem in &layers.problems {
        match problem {
            // Says itself what was left out and that the rest applies.
            os_config::layers::LayerProblem::DroppedKey { .. } => {
                report(&format!("configuration: {problem}"));
            }
            _ => report(&format!("configuration left out: {problem}")),
        }
    }
    for (source, warning) in layers.warnings() {
        tracing::warn!("{source}: {warning}");
    }
    // rancher.debug: the configuration, with its secrets replaced (the
    // kernel log is readable by more than root).
    if tracing::enabled!(tracing::Level::DEBUG) {
        let merged = os_config::export::redacted_yaml(&layers.merged_value());
        tracing::debug!("configuration:\n{merged}");
    }
    merged_leaving_out_top(layers, report)
}

/// All layers merged without a word: for what is needed before the rest
/// is read (the state partition); [`load`] reports the problems after.
pub fn load_quietly(paths: &ConfigPaths, cmdline: &Cmdline) -> CloudConfig {
    merged_leaving_out_top(Layers::load_with_parsed_cmdline(paths, cmdline), |_| {})
}

/// The layers merged. Each layer was checked key by key already; what
/// only the merged whole gets wrong (values of two layers that do not fit
/// together) is left out key by key too, and `left_out` told. Should the
/// whole still not check, the top layer is left out, and so on down.
pub fn merged_leaving_out_top(mut layers: Layers, left_out: impl Fn(&str)) -> CloudConfig {
    loop {
        match os_config::check::check_value_dropping(layers.merged_value()) {
            Ok(checked) => {
                for error in &checked.dropped {
                    left_out(&format!(
                        "configuration, all layers merged: {error}; left out, the rest applies"
                    ));
                }
                return checked.config;
            }
            Err(errors) => {
                let Some(top) = layers.layers.pop() else {
                    return CloudConfig::default();
                };
                left_out(&format!(
                    "configuration layer {} left out: {errors}",
                    top.source
                ));
            }
        }
    }
}

/// The configured datasources of `phase`, in order.
fn sources(config: &CloudConfig, cmdline: &Cmdline, phase: Phase) -> Vec<Arc<dyn Datasource>> {
    let environment = Environment::system(cmdline.clone());
    datasource::from_specs(&config.rancher.cloud_init.datasources, &environment)
        .into_iter()
        .filter(|source| source.needs_network() == (phase == Phase::Network))
        .collect()
}

/// Whether any configured datasource belongs to `phase`. The command line
/// decides for `cmdline`: with `cloud-config-url=` it is a network source.
pub fn has_sources(config: &CloudConfig, cmdline: &Cmdline, phase: Phase) -> bool {
    !sources(config, cmdline, phase).is_empty()
}

/// Tries the configured datasources of `phase`, in order; the first with
/// user-data wins and is saved as a layer. Returns whether one was found.
pub async fn fetch_user_data(
    paths: &ConfigPaths,
    config: &CloudConfig,
    cmdline: &Cmdline,
    phase: Phase,
) -> bool {
    let sources = sources(config, cmdline, phase);
    if sources.is_empty() {
        return false;
    }
    let fetching = datasource::fetch_first(&sources, Strategy::InOrder);
    let fetched = match crate::untrusted::Contained::new("datasources", fetching).await {
        Ok(fetched) => fetched,
        Err(panicked) => {
            report(&panicked.to_string());
            return false;
        }
    };
    for (source, error) in &fetched.errors {
        report(&format!("datasource {source}: {error}"));
    }
    let Some((source, user_data)) = fetched.found else {
        return false;
    };
    let what = format!("user-data from {source}");
    match crate::untrusted::contain(&what, || user_data.save(paths)) {
        Err(panicked) => {
            report(&panicked.to_string());
            false
        }
        Ok(Ok(saved)) => {
            // Left out one by one; the lines are those of the user-data
            // as delivered, which the saved copy no longer has.
            for error in &saved.dropped {
                report(&format!(
                    "user-data from {source}: {error}; left out, the rest applies"
                ));
            }
            for warning in &saved.warnings {
                tracing::warn!("user-data from {source}: {warning}");
            }
            tracing::info!(%source, "user-data saved");
            true
        }
        Ok(Err(error)) => {
            report(&format!("user-data from {source} not saved: {error}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths_with(cloud_config: &str) -> (tempfile::TempDir, ConfigPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths::under(dir.path());
        std::fs::create_dir_all(paths.conf_dir()).unwrap();
        std::fs::write(paths.cloud_config_file(), cloud_config).unwrap();
        (dir, paths)
    }

    #[test]
    fn layers_merge_with_the_cmdline_on_top() {
        let (_dir, paths) = paths_with("hostname: from-file\nrancher:\n  debug: false\n");
        let config = load(
            &paths,
            &Cmdline::parse("quiet rancher.debug hostname=ignored cc.hostname=from-cmdline"),
        );
        assert!(config.rancher.debug);
        assert_eq!(
            config.hostname.as_ref().map(ToString::to_string).as_deref(),
            Some("from-cmdline")
        );
        // The built-in console service is there.
        assert!(
            config
                .rancher
                .services
                .keys()
                .any(|name| name.as_str() == "console")
        );
    }

    #[test]
    fn network_sources_are_a_phase_of_their_own() {
        let (_dir, paths) = paths_with("");
        let config = load(&paths, &Cmdline::default());
        assert!(has_sources(&config, &Cmdline::default(), Phase::Local));
        assert!(!has_sources(&config, &Cmdline::default(), Phase::Network));
        let cmdline =
            &Cmdline::parse("rancher.cloud_init.datasources=[ec2,url:http://10.0.2.2/user-data]");
        let config = load(&paths, cmdline);
        assert!(!has_sources(&config, cmdline, Phase::Local));
        assert!(has_sources(&config, cmdline, Phase::Network));
    }

    #[test]
    fn cloud_config_url_makes_the_cmdline_source_wait_for_the_network() {
        // Found by issue 16: the question was asked with an empty command
        // line, so the URL was never fetched.
        let (_dir, paths) = paths_with("");
        let cmdline =
            &Cmdline::parse("console=ttyS0 cloud-config-url=http://10.0.2.2:8000/user-data");
        let config = load(&paths, cmdline);
        assert!(has_sources(&config, cmdline, Phase::Network));
        assert!(!has_sources(
            &config,
            &Cmdline::parse("console=ttyS0"),
            Phase::Network
        ));
    }

    #[test]
    fn an_unknown_key_is_left_out_alone_and_the_rest_of_its_file_applies() {
        let (_dir, paths) =
            paths_with("hostname: kept\nrancher:\n  netwrk: {}\n  debug: true\nrunmcd: [x]\n");
        let layers = Layers::load_with_cmdline(&paths, Some(""));
        let problems: Vec<String> = layers.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .contains("line 3: unknown key `rancher.netwrk` (did you mean `rancher.network`?)"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("line 5: unknown key `runmcd`"),
            "{problems:?}"
        );
        let config = load(&paths, &Cmdline::default());
        assert_eq!(config.hostname.as_ref().map(|h| h.as_str()), Some("kept"));
        assert!(config.rancher.debug);
    }

    #[test]
    fn keys_of_two_layers_that_do_not_fit_together_are_left_out_alone() {
        let (_dir, paths) = paths_with(
            "hostname: top-layer\nrancher:\n  services:\n    web:\n      network_mode: none\n",
        );
        std::fs::create_dir_all(paths.cloud_config_dir()).unwrap();
        std::fs::write(
            paths.cloud_config_dir().join("10-web.yml"),
            "rancher: {services: {web: {image: x, net: host}}}\n",
        )
        .unwrap();
        let told = std::cell::RefCell::new(Vec::new());
        let config = merged_leaving_out_top(Layers::load_with_cmdline(&paths, Some("")), |m| {
            told.borrow_mut().push(m.to_owned());
        });
        // The top layer's host name stays; only the key at fault goes.
        assert_eq!(
            config.hostname.as_ref().map(|h| h.as_str()),
            Some("top-layer")
        );
        let web = &config.rancher.services[&"web".parse().unwrap()];
        assert_eq!(web.network_mode, None);
        assert!(web.net.is_some());
        let told = told.into_inner();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(
            told[0].contains("rancher.services.web.network_mode"),
            "{told:?}"
        );
    }

    #[test]
    fn a_file_that_is_not_yaml_is_left_out_whole_and_the_defaults_stay() {
        let (_dir, paths) = paths_with("hostname: [unclosed\n");
        let config = load(&paths, &Cmdline::default());
        assert!(
            config
                .rancher
                .services
                .keys()
                .any(|name| name.as_str() == "console")
        );
        assert_eq!(config.rancher.network.dhcp_timeout, 10);
    }
}
