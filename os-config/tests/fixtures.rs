//! The fixtures under `tests/fixtures/`, named for what they show:
//! `valid/` configs parse, round-trip through export and merge over the
//! defaults to the committed `*.merged.yml`; each `invalid/` config fails
//! with the error kind, key path and line listed here; `cmdline/` lines
//! give the committed layer; `merge/` trees merge to `expected.yml`.
//!
//! `UPDATE_FIXTURES=1 cargo test` rewrites the committed expectations; the
//! diff is then reviewed by hand.

use std::fs;
use std::path::{Path, PathBuf};

use os_config::check::{ConfigError, ErrorKind, Warning, check_document, check_value};
use os_config::export::export;
use os_config::layers::{ConfigPaths, Layers, built_in_value};
use os_config::parse::cmdline::config_from_cmdline;
use os_config::schema::{
    BridgeRole, Encoding, InterfaceKey, NetworkMode, RestartPolicy, Scope, ServiceName,
    StringOrList,
};
use os_config::tree;
use serde_norway::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_in(dir: &str, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(fixtures().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_str().is_some_and(|s| s.ends_with(extension))
                && !p
                    .to_str()
                    .is_some_and(|s| s.contains(".expected.") || s.contains(".merged."))
        })
        .collect();
    files.sort();
    files
}

/// Compares with a committed file, or writes it under UPDATE_FIXTURES.
fn expect_file(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        fs::write(path, actual).unwrap();
        return;
    }
    let expected = read(path);
    assert_eq!(actual, expected, "{} differs", path.display());
}

fn valid(name: &str) -> os_config::Checked {
    let path = fixtures().join("valid").join(name);
    check_document(&read(&path)).unwrap_or_else(|e| panic!("{name}:\n{e}"))
}

#[test]
fn every_valid_fixture_round_trips_and_merges_as_committed() {
    let files = files_in("valid", ".yml");
    assert_eq!(files.len(), 8, "fixtures found: {files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let checked = check_document(&read(&path)).unwrap_or_else(|e| panic!("{name}:\n{e}"));

        let exported = export(checked.value.clone(), true).unwrap();
        let again = check_document(&exported).unwrap_or_else(|e| panic!("{name} export:\n{e}"));
        assert_eq!(
            again.config, checked.config,
            "{name}: export changed the meaning"
        );
        assert_eq!(
            again.value, checked.value,
            "{name}: export changed the tree"
        );

        let mut merged = built_in_value();
        tree::merge(&mut merged, checked.value.clone());
        let merged = check_value(merged).unwrap_or_else(|e| panic!("{name} merged:\n{e}"));
        let expected = path.with_extension("merged.yml");
        expect_file(&expected, &export(merged.value, true).unwrap());
    }
}

#[test]
fn static_network_is_typed() {
    let config = valid("static-network.yml").config;
    let network = &config.rancher.network;
    assert_eq!(
        config.hostname.as_ref().map(|h| h.as_str()),
        Some("edge-01")
    );
    assert_eq!(network.dhcp_timeout().as_secs(), 30);
    assert_eq!(network.dns.nameservers.len(), 2);
    assert!(network.dns.nameservers[1].is_ipv6());
    let eth0 = network.config_for("eth0", None).unwrap();
    assert_eq!(eth0.address.unwrap().to_string(), "10.0.0.10/24");
    assert_eq!(eth0.gateway.unwrap().to_string(), "10.0.0.1");
    assert_eq!(eth0.mtu, Some(1500));
    let eth1 = network.config_for("eth1", None).unwrap();
    assert_eq!(eth1.all_addresses().len(), 2);
    assert_eq!(eth1.gateway_ipv6.unwrap().to_string(), "fd00:50::1");
    let by_mac = network
        .config_for("ens9", Some("52:54:00:ab:cd:ef".parse().unwrap()))
        .unwrap();
    assert!(by_mac.dhcp);
    assert_eq!(
        network.https_proxy.as_deref(),
        Some("http://proxy.corp.example.com:3128")
    );
}

#[test]
fn bond_is_typed() {
    let config = valid("bond.yml").config;
    let interfaces = &config.rancher.network.interfaces;
    let bond0 = &interfaces[&"bond0".parse::<InterfaceKey>().unwrap()];
    assert_eq!(bond0.bond_opts["mode"], "802.3ad");
    assert_eq!(bond0.bond_opts["miimon"], "100");
    assert_eq!(bond0.mtu, Some(9000));
    for member in ["eth0", "eth1"] {
        let member = &interfaces[&member.parse::<InterfaceKey>().unwrap()];
        assert_eq!(member.bond.as_ref().map(|b| b.as_str()), Some("bond0"));
    }
}

#[test]
fn vlans_and_bridge_are_typed() {
    let config = valid("vlans-and-bridge.yml").config;
    let network = &config.rancher.network;
    let eth0 = network.config_for("eth0", None).unwrap();
    let vlans: Vec<(u16, Option<&str>)> = eth0
        .vlans
        .0
        .iter()
        .map(|v| (v.id, v.name.as_ref().map(|n| n.as_str())))
        .collect();
    assert_eq!(vlans, [(100, None), (200, Some("storage"))]);
    let dotted = network.config_for("eth0.100", None).unwrap();
    assert_eq!(dotted.address.unwrap().to_string(), "10.100.0.5/24");
    assert_eq!(
        network.config_for("br0", None).unwrap().bridge,
        Some(BridgeRole::IsBridge)
    );
    assert!(matches!(
        &network.config_for("eth1", None).unwrap().bridge,
        Some(BridgeRole::PortOf(name)) if name.as_str() == "br0"
    ));
    // eth2 has no entry of its own, so the glob applies.
    assert!(network.config_for("eth2", None).unwrap().dhcp);
}

#[test]
fn services_are_typed() {
    let config = valid("services.yml").config;
    let service = |name: &str| &config.rancher.services[&name.parse::<ServiceName>().unwrap()];
    let nginx = service("nginx");
    assert_eq!(nginx.scope(), Ok(Scope::User));
    assert_eq!(nginx.after().unwrap()[0].as_str(), "console");
    assert_eq!(nginx.restart, Some(RestartPolicy::UnlessStopped));
    assert_eq!(nginx.mem_limit.unwrap().bytes(), 256 << 20);
    assert_eq!(nginx.environment.get("WORKERS"), Some("4"));
    assert_eq!(
        nginx.entrypoint,
        Some(StringOrList::String("/docker-entrypoint.sh".into()))
    );
    assert!(nginx.volumes[0].read_only && !nginx.volumes[1].read_only);
    assert_eq!(nginx.cap_drop[0].as_str(), "ALL");
    let backup = service("backup");
    assert_eq!(backup.detach(), Ok(false));
    assert_eq!(backup.before().unwrap()[0].as_str(), "nginx");
    assert_eq!(backup.network_mode(), Some(&NetworkMode::None));
    assert_eq!(backup.restart, Some(RestartPolicy::OnFailure(Some(3))));
    assert_eq!(backup.environment.0[1], ("DEBUG".to_owned(), None));
    let tools = service("tools");
    assert_eq!(tools.create_only(), Ok(true));
    assert_eq!(tools.restart, Some(RestartPolicy::No));
    assert!(tools.privileged && tools.tty && tools.stdin_open);
    let enabled: Vec<&str> = config
        .rancher
        .enabled_services()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(enabled, ["backup", "nginx"]);
}

#[test]
fn write_files_decode_with_every_encoding() {
    let config = valid("write-files-every-encoding.yml").config;
    let files = &config.write_files;
    assert_eq!(
        files[0].decoded_content().unwrap(),
        b"Welcome to edge-01.\n"
    );
    assert_eq!(files[0].permissions.unwrap().bits(), 0o644);
    assert_eq!(
        files[0]
            .owner
            .as_ref()
            .map(|o| (o.as_str(), o.uid(), o.gid())),
        Some(("root:root", 0, 0))
    );
    assert_eq!(files[1].decoded_content().unwrap(), b"plain");
    assert_eq!(files[2].decoded_content().unwrap(), b"hello from b64\n");
    assert_eq!(files[3].decoded_content().unwrap(), b"hello from base64\n");
    assert_eq!(files[3].permissions.unwrap().bits(), 0o600);
    let encodings: Vec<Encoding> = files.iter().map(|f| f.encoding).collect();
    assert_eq!(
        encodings,
        [
            Encoding::Plain,
            Encoding::Plain,
            Encoding::Base64,
            Encoding::Base64,
            Encoding::Gzip,
            Encoding::Gzip,
            Encoding::GzipBase64,
            Encoding::GzipBase64
        ]
    );
    for file in &files[4..] {
        assert_eq!(
            file.decoded_content().unwrap(),
            b"hello from gz\n",
            "{}",
            file.path
        );
    }
}

#[test]
fn mounts_state_and_commands_are_typed() {
    let config = valid("mounts-state-and-commands.yml").config;
    assert_eq!(config.mounts.len(), 3);
    assert_eq!(config.mounts[2].fstype, "nfs4");
    assert_eq!(config.mounts[2].options, "ro,soft");
    assert_eq!(
        config.bootcmd[1],
        StringOrList::List(vec!["modprobe".into(), "br_netfilter".into()])
    );
    assert_eq!(
        config.runcmd[1],
        StringOrList::String("touch /var/lib/rancher/ran".into())
    );
    let state = &config.rancher.state;
    assert_eq!(state.autoformat, ["/dev/sda", "/dev/vda"]);
    assert!(state.wait && !state.required);
    assert_eq!(config.rancher.sysctl["net.ipv4.ip_forward"], "1");
    assert_eq!(config.rancher.environment["HTTP_TIMEOUT"], "30");
}

#[test]
fn yaml_1_1_booleans_are_read_as_rancheros_did() {
    let checked = valid("rancheros-yaml11-booleans.yml");
    let rancher = &checked.config.rancher;
    assert!(rancher.debug);
    assert!(!rancher.ssh.daemon_enabled());
    assert!(rancher.state.wait && !rancher.state.required);
    assert!(rancher.network.config_for("eth0", None).unwrap().dhcp);
    assert!(!rancher.services_include[&"open-iscsi".parse().unwrap()].0);
    // Turning on a RancherOS repository service this image does not ship
    // is not silent (turning one off changes nothing either way).
    let warned: Vec<String> = checked.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warned,
        [
            "line 16: `rancher.services_include.kernel-headers`: `kernel-headers` is not a service \
          this image ships (RancherOS pulled it from its service repositories); nothing is started \
          (available: user-containerd)"
        ]
    );
}

#[test]
fn a_full_rancheros_config_loads_with_warnings_for_what_is_not_applied() {
    let checked = valid("rancheros-v1-full.yml");
    let warned: Vec<String> = checked
        .warnings
        .iter()
        .map(|w| match w {
            Warning::Unimplemented { path, line } => format!("{path}@{}", line.unwrap_or(0)),
            Warning::UnsupportedDatasource { path, .. } | Warning::Accepted { path, .. } => {
                format!("{path}")
            }
        })
        .collect();
    assert_eq!(
        warned,
        [
            // The user engine's bridge, bip, mtu and insecure registries
            // apply here; its other options are each warned about.
            "rancher.docker.engine@28",
            "rancher.docker.tls@29",
            "rancher.docker.extra_args@30",
            "rancher.docker.log_opts@31",
            "rancher.system_docker.storage_driver@33",
            "rancher.upgrade@34",
            "rancher.services_include.open-vm-tools",
        ]
    );
    let config = checked.config;
    // The login keys are applied by the console (`ros console-init`:
    // rancher's keys, password and autologin terminals), so no warning.
    assert_eq!(config.ssh_authorized_keys.len(), 2);
    assert_eq!(config.rancher.password.as_deref(), Some("rancher-secret"));
    assert_eq!(
        config.rancher.autologin.as_ref().map(StringOrList::to_list),
        Some(vec!["tty1".to_owned(), "ttyS0".to_owned()])
    );
    assert!(config.rancher.ssh.daemon_enabled());
    assert_eq!(
        config.rancher.cluster.token.as_ref().map(|t| t.reveal()),
        Some("K10secrettoken::server:abc")
    );
    assert_eq!(config.rancher.cluster.labels["zone"], "eu-1");
    assert_eq!(config.rancher.cloud_init.datasources.len(), 3);
    assert_eq!(config.rancher.docker.log_opts["max-file"], "3");
    let exported = export(checked.value, false).unwrap();
    assert!(!exported.contains("rancher-secret") && !exported.contains("K10secret"));
}

struct Invalid {
    file: &'static str,
    kind: ErrorKind,
    path: Option<&'static str>,
    line: Option<usize>,
}

const fn invalid(
    file: &'static str,
    kind: ErrorKind,
    path: Option<&'static str>,
    line: Option<usize>,
) -> Invalid {
    Invalid {
        file,
        kind,
        path,
        line,
    }
}

#[test]
fn every_invalid_fixture_fails_with_its_kind_path_and_line() {
    use ErrorKind::*;
    let table = [
        invalid(
            "network-at-top-level.yml",
            UnknownKey,
            Some("network"),
            Some(3),
        ),
        invalid(
            "misspelled-rancher-network.yml",
            UnknownKey,
            Some("rancher.netwrok"),
            Some(4),
        ),
        invalid(
            "every-unknown-key-is-listed.yml",
            UnknownKey,
            Some("hostnme"),
            Some(2),
        ),
        invalid(
            "address-without-prefix.yml",
            InvalidValue,
            Some("rancher.network.interfaces.eth0.address"),
            Some(6),
        ),
        invalid(
            "boolean-maybe.yml",
            InvalidValue,
            Some("rancher.debug"),
            Some(3),
        ),
        invalid(
            "unknown-encoding.yml",
            InvalidValue,
            Some("write_files[1].encoding"),
            Some(6),
        ),
        invalid(
            "base64-content-that-is-not.yml",
            InvalidValue,
            Some("write_files[0].content"),
            Some(5),
        ),
        invalid(
            "mount-with-three-entries.yml",
            InvalidValue,
            Some("mounts[0]"),
            Some(3),
        ),
        invalid(
            "restart-sometimes.yml",
            InvalidValue,
            Some("rancher.services.web.restart"),
            Some(6),
        ),
        invalid(
            "after-label-names-a-bad-service.yml",
            InvalidValue,
            Some("rancher.services.web.labels.\"io.rancher.os.after\""),
            Some(7),
        ),
        invalid("list-instead-of-mapping.yml", NotAMapping, None, None),
        invalid("unclosed-flow-list.yml", Syntax, None, Some(4)),
        invalid(
            "hostname-with-underscore.yml",
            InvalidValue,
            Some("hostname"),
            Some(2),
        ),
        invalid(
            "vlan-id-out-of-range.yml",
            InvalidValue,
            Some("rancher.network.interfaces.eth0.vlans"),
            Some(6),
        ),
        invalid(
            "bond-member-with-address.yml",
            Inconsistent,
            Some("rancher.network.interfaces.eth0.bond"),
            Some(6),
        ),
        invalid(
            "net-and-network-mode-disagree.yml",
            Inconsistent,
            Some("rancher.services.web.network_mode"),
            Some(7),
        ),
        invalid(
            "relative-write-files-path.yml",
            InvalidValue,
            Some("write_files[0].path"),
            Some(3),
        ),
        invalid(
            "unknown-datasource.yml",
            InvalidValue,
            Some("rancher.cloud_init.datasources[1]"),
            Some(4),
        ),
    ];
    let files = files_in("invalid", ".yml");
    assert_eq!(files.len(), table.len(), "every invalid fixture has a row");
    for row in table {
        let text = read(&fixtures().join("invalid").join(row.file));
        let errors = match check_document(&text) {
            Ok(_) => panic!("{} was accepted", row.file),
            Err(errors) => errors.0,
        };
        let first = &errors[0];
        assert_eq!(first.kind(), row.kind, "{}: {first}", row.file);
        assert_eq!(
            first.path().map(ToString::to_string).as_deref(),
            row.path,
            "{}: {first}",
            row.file
        );
        assert_eq!(first.line(), row.line, "{}: {first}", row.file);
    }
}

#[test]
fn unknown_keys_are_all_listed_with_suggestions() {
    let text = read(&fixtures().join("invalid/every-unknown-key-is-listed.yml"));
    let errors = check_document(&text).unwrap_err().0;
    let found: Vec<(String, Option<usize>, Option<String>)> = errors
        .iter()
        .map(|e| match e {
            ConfigError::UnknownKey {
                path,
                line,
                suggestion,
            } => (
                path.to_string(),
                *line,
                suggestion.as_ref().map(ToString::to_string),
            ),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        found,
        [
            ("hostnme".to_owned(), Some(2), Some("hostname".to_owned())),
            (
                "rancher.ssh.prot".to_owned(),
                Some(5),
                Some("rancher.ssh.port".to_owned())
            ),
            (
                "rancher.services.web.restrat".to_owned(),
                Some(9),
                Some("rancher.services.web.restart".to_owned())
            ),
        ]
    );
    let text = read(&fixtures().join("invalid/network-at-top-level.yml"));
    let message = check_document(&text).unwrap_err().to_string();
    assert_eq!(
        message,
        "line 3: unknown key `network` (did you mean `rancher.network`?)"
    );
}

#[test]
fn cmdline_fixtures_give_their_layers() {
    let files = files_in("cmdline", ".txt");
    assert_eq!(files.len(), 2);
    for path in files {
        let layer = config_from_cmdline(&read(&path));
        assert_eq!(layer.problems, vec![], "{}", path.display());
        let expected: Value =
            serde_norway::from_str(&read(&path.with_extension("expected.yml"))).unwrap();
        assert_eq!(layer.value, expected, "{}", path.display());
        check_value(layer.value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn layers_merge_in_order_maps_deep_lists_replaced() {
    let root = fixtures().join("merge/layered-machine");
    let layers = Layers::load(&ConfigPaths::under(&root));
    assert!(layers.problems.is_empty(), "{:?}", layers.problems);
    let sources: Vec<String> = layers
        .layers
        .iter()
        .map(|l| {
            l.source
                .to_string()
                .replace(&root.display().to_string(), "")
        })
        .collect();
    assert_eq!(
        sources,
        [
            "built-in base.yml",
            "built-in services/udev.yml",
            "built-in services/syslog.yml",
            "built-in services/ntp.yml",
            "built-in services/acpid.yml",
            "built-in services/console.yml",
            "/usr/share/ros/oem/oem-config.yml",
            "/var/lib/rancher/conf/cloud-config.d/10-network.yml",
            "/var/lib/rancher/conf/cloud-config.d/20-services.yml",
            "/var/lib/rancher/conf/cloud-config.yml",
            "kernel command line",
        ]
    );
    let merged = layers.merged().unwrap();
    let config = &merged.config;
    assert_eq!(config.hostname.as_ref().unwrap().as_str(), "layered-node");
    // Lists replace: cloud-config.yml's servers, not the OEM's or defaults'.
    assert_eq!(config.rancher.network.dns.nameservers.len(), 2);
    assert_eq!(config.rancher.network.dns.search, ["lab.local"]);
    // Maps merge: the console keeps its built-in image under the drop-in's environment.
    let console = &config.rancher.services[&"console".parse::<ServiceName>().unwrap()];
    assert_eq!(console.image.as_deref(), Some("ros/console"));
    assert_eq!(console.environment.get("TERM"), Some("xterm-256color"));
    // The cmdline wins over cloud-config.yml.
    assert_eq!(config.rancher.sysctl["vm.swappiness"], "5");
    // The glob from the defaults and eth0 from the drop-in are both there.
    assert_eq!(config.rancher.network.interfaces.len(), 3);
    expect_file(
        &root.join("expected.yml"),
        &export(merged.value, true).unwrap(),
    );
}

#[test]
fn a_bad_layer_is_reported_and_the_rest_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ConfigPaths::under(dir.path());
    fs::create_dir_all(paths.cloud_config_dir()).unwrap();
    fs::write(
        paths.cloud_config_dir().join("bad.yml"),
        "rancher: {netwrok: {}}",
    )
    .unwrap();
    fs::write(paths.cloud_config_file(), "hostname: still-here").unwrap();
    let layers = Layers::load_with_cmdline(&paths, Some("rancher.debug=maybe"));
    let problems: Vec<String> = layers.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("bad.yml") && problems[0].contains("rancher.netwrok"));
    assert!(problems[1].contains("kernel command line") && problems[1].contains("rancher.debug"));
    let merged = layers.merged().unwrap();
    assert_eq!(merged.config.hostname.unwrap().as_str(), "still-here");
    assert!(!merged.config.rancher.debug);
}
