//! RancherOS v1.5 configurations, one fixture per key family of its schema
//! (`tests/fixtures/rancheros/`): each is accepted as RancherOS accepted
//! it, with exactly the warnings listed here (key path @ line); the
//! fixtures together use every top-level and `rancher.*` key of the
//! RancherOS key table. Then what the boot does with a document that has
//! problems: each bad key is left out alone, with its line, the rest kept.

use std::fs;
use std::path::{Path, PathBuf};

use os_config::check::{ConfigError, ErrorKind, check_document, check_document_dropping};
use os_config::schema::rancher_keys::{self, Status};
use os_config::schema::{MountSource, keys};
use serde_norway::Value;

fn fixture(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rancheros")
        .join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// Each fixture and the warnings it gives, as `path@line`.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "cloud-init.yml",
        &[
            "rancher.cloud_init_services@13",
            "rancher.bootstrap@17",
            "rancher.cloud_init.datasources[4]@11",
            "rancher.cloud_init.datasources[5]@12",
        ],
    ),
    ("console-and-ssh.yml", &[]),
    (
        "engines.yml",
        &[
            "rancher.docker.engine@6",
            "rancher.docker.tls@7",
            "rancher.docker.tls_args@8",
            "rancher.docker.args@9",
            "rancher.docker.extra_args@10",
            "rancher.docker.server_cert@11",
            "rancher.docker.server_key@12",
            "rancher.docker.ca_cert@13",
            "rancher.docker.ca_key@14",
            "rancher.docker.environment@15",
            "rancher.docker.storage_context@16",
            "rancher.docker.exec@17",
            "rancher.docker.config_file@20",
            "rancher.docker.containerd@21",
            "rancher.docker.debug@22",
            "rancher.docker.exec_root@23",
            "rancher.docker.group@24",
            "rancher.docker.graph@25",
            "rancher.docker.host@26",
            "rancher.docker.live_restore@27",
            "rancher.docker.log_driver@28",
            "rancher.docker.log_opts@29",
            "rancher.docker.pid_file@30",
            "rancher.docker.registry_mirror@31",
            "rancher.docker.restart@32",
            "rancher.docker.selinux_enabled@33",
            "rancher.docker.storage_driver@34",
            "rancher.docker.userland_proxy@35",
            "rancher.system_docker.exec@38",
            "rancher.system_docker.storage_driver@39",
            "rancher.system_docker.bip@40",
            "rancher.system_docker.graph@41",
            "rancher.bootstrap_docker@43",
            "rancher.registry_auths@47",
        ],
    ),
    ("environment-sysctl-modules.yml", &[]),
    (
        "files-and-commands.yml",
        &["mounts[7][1]@25", "mounts[8]@26"],
    ),
    (
        "network.yml",
        &[
            "rancher.network.pre_cmds@13",
            "rancher.network.post_cmds@14",
            "rancher.network.interfaces.eth0.pre_up@20",
            "rancher.network.interfaces.eth0.post_up@21",
            "rancher.network.interfaces.eth1.dhcp_args@24",
            "rancher.network.interfaces.eth6.ipv4ll@46",
            "rancher.network.interfaces.wlan0.wifi_network@54",
            "rancher.network.wifi_networks@55",
            "rancher.network.modem_networks@78",
            "rancher.network.interfaces.eth0:1@49",
            "rancher.network.interfaces.mac=52:54:00:*@51",
            "rancher.network.interfaces.bond0.bond_opts.arp_ip_target@35",
            "rancher.network.interfaces.eth6.gateway_ipv6@48",
        ],
    ),
    (
        "services.yml",
        &[
            "rancher.services.nginx.ports@12",
            "rancher.services.nginx.expose@13",
            "rancher.services.nginx.links@17",
            "rancher.services.nginx.external_links@18",
            "rancher.services.nginx.dns@19",
            "rancher.services.nginx.dns_search@20",
            "rancher.services.nginx.extra_hosts@21",
            "rancher.services.nginx.domainname@23",
            "rancher.services.nginx.mac_address@24",
            "rancher.services.nginx.container_name@25",
            "rancher.services.nginx.log_driver@26",
            "rancher.services.nginx.log_opt@27",
            "rancher.services.nginx.security_opt@29",
            "rancher.services.nginx.shm_size@31",
            "rancher.services.nginx.memswap_limit@32",
            "rancher.services.nginx.cpu_quota@35",
            "rancher.services.nginx.cpuset@36",
            "rancher.services.nginx.cgroup_parent@37",
            "rancher.services.nginx.volume_driver@38",
            "rancher.services.nginx.tty@39",
            "rancher.services.nginx.stdin_open@40",
            "rancher.services.built.build@61",
            "rancher.services.built.dockerfile@62",
            "rancher.services.built.extends@63",
            "rancher.services.built.name@64",
            "rancher.services.nginx.labels.\"io.rancher.os.scope\"@9",
        ],
    ),
    (
        "state-and-boot.yml",
        &[
            "rancher.state.mdadm_scan@11",
            "rancher.state.lvm_scan@12",
            "rancher.state.cryptsetup@13",
            "rancher.state.rngd@14",
            "rancher.state.script@15",
            "rancher.state.oem_dev@16",
            "rancher.state.oem_fstype@17",
            "rancher.state.boot_dev@18",
            "rancher.state.boot_fstype@19",
            "rancher.resize_device@20",
            "rancher.rm_usr@21",
            "rancher.no_sharedroot@22",
            "rancher.log@23",
            "rancher.recovery@25",
            "rancher.force_console_rebuild@26",
            "rancher.hypervisor_service@27",
            "rancher.shutdown_timeout@28",
            "rancher.http_load_retries@29",
            "rancher.autoformat@31",
        ],
    ),
    (
        "upgrade-and-repositories.yml",
        &[
            "rancher.upgrade@4",
            "rancher.repositories@9",
            "rancher.restart_services@14",
            "rancher.defaults@15",
        ],
    ),
];

#[test]
fn every_rancheros_fixture_is_accepted_with_its_warnings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rancheros");
    let mut files: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(name, _)| *name).collect();
    assert_eq!(files, listed, "every fixture has a row");
    for (name, expected) in EXPECTED {
        let (_, text) = fixture(name);
        let checked = check_document(&text).unwrap_or_else(|e| panic!("{name} refused:\n{e}"));
        let warned: Vec<String> = checked
            .warnings
            .iter()
            .map(|w| {
                format!(
                    "{}@{}",
                    w.path(),
                    w.to_string().split(':').next().unwrap_or("")
                )
            })
            .map(|w| w.replace("@line ", "@"))
            .collect();
        assert_eq!(warned, *expected, "{name}");
    }
}

/// Every key path in a tree, map keys only (`a.b.c`).
fn key_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Mapping(map) = value {
        for (key, child) in map {
            let Some(key) = key.as_str() else { continue };
            let path = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            };
            key_paths(child, &path, out);
            out.push(path);
        }
    }
}

#[test]
fn the_fixtures_cover_every_key_family_of_rancheros() {
    let mut used = Vec::new();
    for (name, _) in EXPECTED {
        let value: Value = serde_norway::from_str(&fixture(name).1).unwrap();
        key_paths(&value, "", &mut used);
    }
    let families: Vec<&str> = rancher_keys::table()
        .iter()
        .map(|key| key.pattern)
        .filter(|pattern| pattern.split('.').count() <= 2 && !pattern.contains("[]"))
        .collect();
    assert!(families.len() > 40, "{families:?}");
    let missing: Vec<&&str> = families
        .iter()
        .filter(|family| !used.iter().any(|path| path == *family))
        .collect();
    assert!(missing.is_empty(), "no fixture uses {missing:?}");
    // And every compose service key RancherOS read.
    for (key, _, _) in rancher_keys::SERVICE_KEYS {
        assert!(
            used.iter()
                .any(|path| path.starts_with("rancher.services.")
                    && path.ends_with(&format!(".{key}"))),
            "no fixture service uses `{key}`"
        );
    }
}

#[test]
fn no_rancheros_key_is_an_unknown_key() {
    for key in rancher_keys::table() {
        let spec = keys::find(key.pattern)
            .unwrap_or_else(|| panic!("{} is unknown to the checker", key.pattern));
        let unimplemented = spec.support == keys::Support::Unimplemented;
        assert_eq!(
            unimplemented,
            key.status == Status::NotImplemented,
            "{}: the checker and the RancherOS table disagree",
            key.pattern
        );
    }
    // The implemented ones are read by the typed schema.
    for key in rancher_keys::table() {
        if key.status == Status::Implemented {
            assert!(
                keys::find(key.pattern).is_some_and(|s| s.typed),
                "{}",
                key.pattern
            );
        }
    }
}

#[test]
fn mounts_are_typed_for_the_runtime() {
    let config = check_document(&fixture("files-and-commands.yml").1)
        .unwrap()
        .config;
    let mounts = &config.mounts;
    assert_eq!(mounts[1].source(), MountSource::Label("scratch".into()));
    assert!(mounts[1].probes_fstype());
    assert!(matches!(mounts[2].source(), MountSource::Uuid(_)));
    assert!(mounts[3].is_swap() && mounts[4].is_swap());
    assert!(!mounts[3].skipped() && mounts[7].skipped());
    assert_eq!(mounts[6].options, "bind");
    assert_eq!(mounts[8].options, "defaults");
}

const BROKEN: &str = "\
#cloud-config
hostname: kept-host
hostnme: typo
write_files:
  - path: relative/path
    content: dropped
  - path: /etc/kept
    content: kept
  - path: /etc/also-kept
    encoding: rot13
    content: dropped too
runcmd:
  - [touch, /kept]
rancher:
  ssh:
    port: not-a-port
  debug: true
  network:
    interfaces:
      eth0:
        address: 10.0.0.5
        mtu: 9000
";

#[test]
fn each_bad_key_is_dropped_alone_with_its_line_and_the_rest_applies() {
    let checked = check_document_dropping(BROKEN).unwrap();
    let dropped: Vec<(ErrorKind, String, Option<usize>)> = checked
        .dropped
        .iter()
        .map(|e| (e.kind(), e.path().unwrap().to_string(), e.line()))
        .collect();
    assert_eq!(
        dropped,
        [
            (ErrorKind::UnknownKey, "hostnme".to_owned(), Some(3)),
            (
                ErrorKind::InvalidValue,
                "write_files[0].path".to_owned(),
                Some(5)
            ),
            (
                ErrorKind::InvalidValue,
                "write_files[2].encoding".to_owned(),
                Some(10)
            ),
            (
                ErrorKind::InvalidValue,
                "rancher.ssh.port".to_owned(),
                Some(16)
            ),
            (
                ErrorKind::InvalidValue,
                "rancher.network.interfaces.eth0.address".to_owned(),
                Some(21)
            ),
        ]
    );
    assert!(matches!(
        &checked.dropped[0],
        ConfigError::UnknownKey { suggestion: Some(s), .. } if s.to_string() == "hostname"
    ));
    let config = checked.config;
    assert_eq!(
        config.hostname.map(|h| h.as_str().to_owned()).as_deref(),
        Some("kept-host")
    );
    let paths: Vec<String> = config
        .write_files
        .iter()
        .map(|f| f.path.to_string())
        .collect();
    // The entry with a bad encoding goes whole: a file without its content
    // decoded is no file.
    assert_eq!(paths, ["/etc/kept"]);
    assert_eq!(config.runcmd.len(), 1);
    assert!(config.rancher.debug);
    assert_eq!(config.rancher.ssh.port, None);
    let eth0 = config.rancher.network.config_for("eth0", None).unwrap();
    assert_eq!((eth0.address, eth0.mtu), (None, Some(9000)));

    // `validate` and `set` stay strict: the same document is refused.
    let refused = check_document(BROKEN).unwrap_err();
    assert_eq!(refused.0.len(), 5);
}

#[test]
fn text_that_is_not_yaml_is_refused_whole() {
    for text in ["hostname: [unclosed\n", "- a\n- list\n", "just text"] {
        assert!(check_document_dropping(text).is_err(), "{text}");
    }
}

#[test]
fn warnings_after_a_dropped_list_entry_keep_their_place_in_the_text() {
    let text = "mounts:\n  - [/dev/vdb, relative, ext4, '']\n  - [/dev/vdc, none, ext4, '']\n";
    let checked = check_document_dropping(text).unwrap();
    assert_eq!(checked.dropped.len(), 1);
    assert_eq!(
        checked.dropped[0]
            .path()
            .map(ToString::to_string)
            .as_deref(),
        Some("mounts[0]")
    );
    assert_eq!(checked.config.mounts.len(), 1);
    let warned: Vec<String> = checked.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warned,
        [
            "line 3: `mounts[1][1]`: no mount point (empty or `none`) and not swap: nothing is mounted"
        ]
    );
}
