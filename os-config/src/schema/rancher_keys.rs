//! Every key of RancherOS v1.5's configuration, with what this system does
//! with it. Taken from RancherOS's own source, not from memory:
//! `config/schema.go` (the JSON schema `ros config validate` used) and
//! `config/types.go` (the Go structs the boot read: `CloudConfig`,
//! `RancherConfig`, `DockerConfig`/`EngineOpts`, `StateConfig`, …),
//! `pkg/netconf/types.go` (`NetworkConfig`, `InterfaceConfig`,
//! `WifiNetworkConfig`, `ModemNetworkConfig`), coreos-cloudinit's
//! `config.File` for `write_files`, and the compose service keys of
//! libcompose's `ServiceConfigV1` and its v1 JSON schema (vendored by
//! RancherOS), since `rancher.services` entries are compose services.
//!
//! A key listed here is never an "unknown key": it is applied, or accepted
//! with a warning naming it as not implemented. `ros config keys` prints
//! this table together with the keys of this system's own
//! ([`super::keys::KEYS`]); the checker reads the status from here.
//! Patterns use the same notation as [`super::keys`]: `<name>` for a name
//! the user chooses, `[]` for any list entry.

/// What this system does with a RancherOS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Applied, as RancherOS applied it (differences in the note).
    Implemented,
    /// Accepted so the configuration loads, with a warning; not applied.
    NotImplemented,
}

/// One RancherOS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RancherKey {
    /// The key pattern.
    pub pattern: &'static str,
    /// Whether it is applied here.
    pub status: Status,
    /// What it did on RancherOS, or how it differs here.
    pub note: &'static str,
}

const fn yes(pattern: &'static str, note: &'static str) -> RancherKey {
    RancherKey {
        pattern,
        status: Status::Implemented,
        note,
    }
}

const fn no(pattern: &'static str, note: &'static str) -> RancherKey {
    RancherKey {
        pattern,
        status: Status::NotImplemented,
        note,
    }
}

/// RancherOS's engine options (`DockerConfig` with `EngineOpts`, and the
/// schema's `docker_config`), shared by `docker`, `system_docker` and
/// `bootstrap_docker`.
pub static ENGINE_KEYS: &[&str] = &[
    "engine",
    "tls",
    "tls_args",
    "args",
    "extra_args",
    "server_cert",
    "server_key",
    "ca_cert",
    "ca_key",
    "environment",
    "storage_context",
    "exec",
    "bridge",
    "bip",
    "config_file",
    "containerd",
    "debug",
    "exec_root",
    "group",
    "graph",
    "host",
    "live_restore",
    "log_driver",
    "log_opts",
    "pid_file",
    "registry_mirror",
    "restart",
    "selinux_enabled",
    "storage_driver",
    "userland_proxy",
    "insecure_registry",
];

/// The engine options applied here, per section, with how.
const ENGINE_APPLIED: &[(&str, &str, &str)] = &[
    (
        "rancher.docker",
        "bridge",
        "the user containerd's container bridge",
    ),
    (
        "rancher.docker",
        "bip",
        "the user containerd's bridge address",
    ),
    (
        "rancher.docker",
        "insecure_registry",
        "user images pulled over plain HTTP",
    ),
    (
        "rancher.system_docker",
        "insecure_registry",
        "service images pulled over plain HTTP",
    ),
];

/// The compose service keys RancherOS read (libcompose `ServiceConfigV1`
/// and the v1 schema), with whether they are applied here.
pub static SERVICE_KEYS: &[(&str, Status, &str)] = &[
    (
        "build",
        Status::NotImplemented,
        "images are not built at boot",
    ),
    ("cap_add", Status::Implemented, ""),
    ("cap_drop", Status::Implemented, ""),
    (
        "cgroup_parent",
        Status::NotImplemented,
        "services get their own cgroup under ros",
    ),
    ("cpu_quota", Status::NotImplemented, ""),
    ("cpuset", Status::NotImplemented, ""),
    ("cpu_shares", Status::Implemented, ""),
    ("command", Status::Implemented, ""),
    (
        "container_name",
        Status::NotImplemented,
        "containers are named after the service",
    ),
    ("devices", Status::Implemented, ""),
    (
        "dns",
        Status::NotImplemented,
        "services see the host's resolv.conf",
    ),
    (
        "dns_search",
        Status::NotImplemented,
        "services see the host's resolv.conf",
    ),
    (
        "dockerfile",
        Status::NotImplemented,
        "images are not built at boot",
    ),
    ("domainname", Status::NotImplemented, ""),
    ("entrypoint", Status::Implemented, ""),
    (
        "env_file",
        Status::Implemented,
        "KEY=VALUE files; environment wins",
    ),
    ("environment", Status::Implemented, ""),
    (
        "expose",
        Status::NotImplemented,
        "no container network to expose on",
    ),
    ("extends", Status::NotImplemented, ""),
    ("extra_hosts", Status::NotImplemented, ""),
    (
        "external_links",
        Status::NotImplemented,
        "no links between containers",
    ),
    (
        "hostname",
        Status::Implemented,
        "the UTS name of a service with its own UTS namespace",
    ),
    ("image", Status::Implemented, ""),
    ("ipc", Status::Implemented, "only `host`"),
    (
        "labels",
        Status::Implemented,
        "io.rancher.os.* labels as RancherOS read them",
    ),
    (
        "links",
        Status::NotImplemented,
        "no links between containers",
    ),
    (
        "log_driver",
        Status::NotImplemented,
        "output goes to /var/log/ros/<service>.log",
    ),
    (
        "log_opt",
        Status::NotImplemented,
        "output goes to /var/log/ros/<service>.log",
    ),
    ("mac_address", Status::NotImplemented, ""),
    ("mem_limit", Status::Implemented, ""),
    ("memswap_limit", Status::NotImplemented, ""),
    ("name", Status::NotImplemented, "the map key is the name"),
    (
        "net",
        Status::Implemented,
        "host, none, bridge, container:NAME",
    ),
    ("pid", Status::Implemented, "only `host`"),
    ("uts", Status::Implemented, "only `host`"),
    (
        "ports",
        Status::NotImplemented,
        "system services use the host network",
    ),
    ("privileged", Status::Implemented, ""),
    ("read_only", Status::Implemented, ""),
    ("restart", Status::Implemented, ""),
    (
        "security_opt",
        Status::NotImplemented,
        "every service gets the same seccomp filter",
    ),
    ("shm_size", Status::NotImplemented, ""),
    (
        "stdin_open",
        Status::NotImplemented,
        "services get no stdin",
    ),
    (
        "stop_signal",
        Status::Implemented,
        "then SIGKILL after 10 s, as Docker's default",
    ),
    (
        "tty",
        Status::NotImplemented,
        "services get no terminal; output goes to their log",
    ),
    ("ulimits", Status::Implemented, "as OCI rlimits"),
    ("user", Status::Implemented, ""),
    ("volume_driver", Status::NotImplemented, "only bind mounts"),
    ("volumes", Status::Implemented, ""),
    ("volumes_from", Status::Implemented, ""),
    ("working_dir", Status::Implemented, ""),
];

/// Every RancherOS key outside the engine and service sections (those are
/// expanded by [`all`]), parents before children.
static KEYS: &[RancherKey] = &[
    yes("hostname", ""),
    yes("ssh_authorized_keys", "keys of the rancher user"),
    yes(
        "write_files",
        "without container: written on the host, seen in the console",
    ),
    yes("write_files[].path", ""),
    yes("write_files[].content", ""),
    yes(
        "write_files[].encoding",
        "b64, gz, gz+b64 and their long spellings",
    ),
    yes("write_files[].owner", ""),
    yes("write_files[].permissions", ""),
    yes(
        "write_files[].container",
        "the file is bound into that service",
    ),
    yes(
        "mounts",
        "[device, mountpoint, fstype, options]; swap, LABEL=, UUID=, auto",
    ),
    yes("runcmd", ""),
    yes("bootcmd", ""),
    yes("rancher", ""),
    yes("rancher.console", "only the default console exists here"),
    yes("rancher.environment", "given to every service"),
    no(
        "rancher.cloud_init_services",
        "RancherOS's cloud-init containers; user-data is read by ros itself",
    ),
    yes("rancher.services", "compose-style system services"),
    no(
        "rancher.bootstrap",
        "RancherOS's bootstrap containers; ros does their work itself",
    ),
    no(
        "rancher.autoformat",
        "RancherOS's boot2docker-style autoformat; use rancher.state.autoformat",
    ),
    no("rancher.bootstrap_docker", "there is no bootstrap Docker"),
    yes("rancher.cloud_init", ""),
    yes(
        "rancher.cloud_init.datasources",
        "cmdline, configdrive, nocloud, file, url, ec2; others warned",
    ),
    yes("rancher.debug", "verbose logging"),
    no(
        "rancher.rm_usr",
        "the root filesystem is a read-only squashfs already",
    ),
    no("rancher.no_sharedroot", "no shared root mount"),
    no("rancher.log", "boot log switch; ros logs to the kernel log"),
    no(
        "rancher.force_console_rebuild",
        "the console is part of the image",
    ),
    no("rancher.recovery", "no recovery console"),
    yes("rancher.disable", "built-in services not to start"),
    yes("rancher.services_include", "optional services by name"),
    yes("rancher.modules", "loaded at boot"),
    yes("rancher.network", ""),
    no(
        "rancher.network.pre_cmds",
        "commands around networking are not run; use bootcmd",
    ),
    yes("rancher.network.dhcp_timeout", ""),
    yes("rancher.network.dns", ""),
    yes("rancher.network.dns.nameservers", ""),
    yes("rancher.network.dns.search", ""),
    yes("rancher.network.interfaces", "by name, glob or mac="),
    yes("rancher.network.interfaces.<name>", ""),
    yes("rancher.network.interfaces.<name>.match", ""),
    yes("rancher.network.interfaces.<name>.dhcp", ""),
    no(
        "rancher.network.interfaces.<name>.dhcp_args",
        "dhcpcd arguments; DHCP is built into ros",
    ),
    yes("rancher.network.interfaces.<name>.address", ""),
    yes("rancher.network.interfaces.<name>.addresses", ""),
    no(
        "rancher.network.interfaces.<name>.ipv4ll",
        "no link-local IPv4",
    ),
    yes("rancher.network.interfaces.<name>.gateway", ""),
    yes("rancher.network.interfaces.<name>.gateway_ipv6", ""),
    yes("rancher.network.interfaces.<name>.mtu", ""),
    yes(
        "rancher.network.interfaces.<name>.bridge",
        "true makes a bridge; a name makes this link its port",
    ),
    yes("rancher.network.interfaces.<name>.bond", ""),
    yes(
        "rancher.network.interfaces.<name>.bond_opts",
        "mode, miimon, updelay, downdelay, lacp_rate, xmit_hash_policy; others warned",
    ),
    no(
        "rancher.network.interfaces.<name>.post_up",
        "commands around links are not run",
    ),
    no(
        "rancher.network.interfaces.<name>.pre_up",
        "commands around links are not run",
    ),
    yes(
        "rancher.network.interfaces.<name>.vlans",
        "ID[:NAME], comma-separated",
    ),
    no(
        "rancher.network.interfaces.<name>.wifi_network",
        "no wireless support (no wpa_supplicant)",
    ),
    no(
        "rancher.network.post_cmds",
        "commands around networking are not run; use runcmd",
    ),
    yes("rancher.network.http_proxy", "given to every service"),
    yes("rancher.network.https_proxy", "given to every service"),
    yes("rancher.network.no_proxy", "given to every service"),
    no(
        "rancher.network.wifi_networks",
        "no wireless support (no wpa_supplicant)",
    ),
    no("rancher.network.wifi_networks.<name>", ""),
    no("rancher.network.wifi_networks.<name>.address", ""),
    no("rancher.network.wifi_networks.<name>.gateway", ""),
    no("rancher.network.wifi_networks.<name>.scan_ssid", ""),
    no("rancher.network.wifi_networks.<name>.ssid", ""),
    no("rancher.network.wifi_networks.<name>.psk", ""),
    no("rancher.network.wifi_networks.<name>.priority", ""),
    no("rancher.network.wifi_networks.<name>.pairwise", ""),
    no("rancher.network.wifi_networks.<name>.group", ""),
    no("rancher.network.wifi_networks.<name>.eap", ""),
    no("rancher.network.wifi_networks.<name>.identity", ""),
    no(
        "rancher.network.wifi_networks.<name>.anonymous_identity",
        "",
    ),
    no("rancher.network.wifi_networks.<name>.ca_certs", ""),
    no("rancher.network.wifi_networks.<name>.client_certs", ""),
    no("rancher.network.wifi_networks.<name>.private_keys", ""),
    no(
        "rancher.network.wifi_networks.<name>.private_key_passwds",
        "",
    ),
    no("rancher.network.wifi_networks.<name>.phases", ""),
    no("rancher.network.wifi_networks.<name>.eapol_flags", ""),
    no("rancher.network.wifi_networks.<name>.key_mgmt", ""),
    no("rancher.network.wifi_networks.<name>.password", ""),
    no(
        "rancher.network.modem_networks",
        "no modem support (no ModemManager)",
    ),
    no("rancher.network.modem_networks.<name>", ""),
    no("rancher.network.modem_networks.<name>.apn", ""),
    no("rancher.network.modem_networks.<name>.extra_args", ""),
    no(
        "rancher.repositories",
        "RancherOS service catalogues; `ros service` has no remote catalogue",
    ),
    no("rancher.repositories.<name>", ""),
    no("rancher.repositories.<name>.url", ""),
    yes("rancher.ssh", ""),
    yes("rancher.ssh.keys", "host keys"),
    yes("rancher.ssh.daemon", ""),
    yes("rancher.ssh.port", ""),
    yes("rancher.ssh.listen_address", ""),
    yes("rancher.state", ""),
    yes("rancher.state.directory", ""),
    yes("rancher.state.fstype", "auto probes"),
    yes("rancher.state.dev", "a path, LABEL= or UUID="),
    yes("rancher.state.wait", ""),
    yes("rancher.state.required", ""),
    yes("rancher.state.autoformat", ""),
    no("rancher.state.mdadm_scan", "no software RAID tools"),
    no("rancher.state.cryptsetup", "no encrypted state"),
    no("rancher.state.lvm_scan", "no LVM tools"),
    no("rancher.state.rngd", "no rngd; the kernel seeds itself"),
    no("rancher.state.script", "no script before the state mount"),
    no(
        "rancher.state.oem_fstype",
        "the OEM layer is a file, not a partition",
    ),
    no(
        "rancher.state.oem_dev",
        "the OEM layer is a file, not a partition",
    ),
    no(
        "rancher.state.boot_fstype",
        "no separate boot partition is mounted",
    ),
    no(
        "rancher.state.boot_dev",
        "no separate boot partition is mounted",
    ),
    yes(
        "rancher.system_docker",
        "the system containerd takes its place",
    ),
    no(
        "rancher.upgrade",
        "`ros os upgrade` sources; upgrades replace the image",
    ),
    no("rancher.upgrade.url", ""),
    no("rancher.upgrade.image", ""),
    no("rancher.upgrade.rollback", ""),
    no("rancher.upgrade.policy", ""),
    yes("rancher.docker", "the user containerd takes its place"),
    no(
        "rancher.registry_auths",
        "registry credentials are not used for pulls",
    ),
    no(
        "rancher.defaults",
        "RancherOS's built-in defaults section; the built-in layer is compiled in",
    ),
    no("rancher.defaults.hostname", ""),
    no("rancher.defaults.docker", ""),
    no("rancher.defaults.network", ""),
    no("rancher.defaults.system_docker_logs", ""),
    no(
        "rancher.resize_device",
        "the root disk is grown by the installer's layout",
    ),
    yes("rancher.sysctl", ""),
    no(
        "rancher.restart_services",
        "services are not restarted on config change",
    ),
    no(
        "rancher.hypervisor_service",
        "no hypervisor guest-agent services",
    ),
    no(
        "rancher.shutdown_timeout",
        "services get a fixed stop timeout",
    ),
    no(
        "rancher.http_load_retries",
        "URL datasources have their own fixed retries",
    ),
    yes(
        "rancher.preload_wait",
        "ros: ready waits for preloaded user images",
    ),
    // Not in RancherOS's schema.go but read from the cmdline and files
    // (types.go `Additional`).
    yes("rancher.password", "console password for rancher"),
    yes(
        "rancher.autologin",
        "consoles that log in without a password",
    ),
];

/// The whole table, engine and service sections expanded, parents first.
pub fn all() -> Vec<RancherKey> {
    let mut table = Vec::new();
    for key in KEYS {
        table.push(*key);
        match key.pattern {
            "rancher.services" => {
                table.push(yes("rancher.services.<name>", ""));
                table.extend(SERVICE_KEYS.iter().map(|(name, status, note)| RancherKey {
                    pattern: leak(format!("rancher.services.<name>.{name}")),
                    status: *status,
                    note,
                }));
            }
            "rancher.docker" | "rancher.system_docker" | "rancher.bootstrap_docker" => {
                let section = key.pattern;
                table.extend(ENGINE_KEYS.iter().map(|option| {
                    let applied = ENGINE_APPLIED
                        .iter()
                        .find(|(s, o, _)| *s == section && o == option);
                    RancherKey {
                        pattern: leak(format!("{section}.{option}")),
                        status: if applied.is_some() {
                            Status::Implemented
                        } else {
                            Status::NotImplemented
                        },
                        note: applied.map_or("", |(_, _, note)| note),
                    }
                }));
            }
            _ => {}
        }
    }
    table
}

/// The table is built once; its expanded patterns live as long as the program.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

static TABLE: std::sync::OnceLock<Vec<RancherKey>> = std::sync::OnceLock::new();

/// The expanded table, built on first use.
pub fn table() -> &'static [RancherKey] {
    TABLE.get_or_init(all)
}

/// The RancherOS key with this pattern, if RancherOS had it.
pub fn find(pattern: &str) -> Option<&'static RancherKey> {
    table().iter().find(|key| key.pattern == pattern)
}

/// True when some RancherOS key lies below `pattern`.
pub fn has_children(pattern: &str) -> bool {
    let prefix = format!("{pattern}.");
    let entries = format!("{pattern}[].");
    table()
        .iter()
        .any(|key| key.pattern.starts_with(&prefix) || key.pattern.starts_with(&entries))
}

/// How many RancherOS keys are known, applied, and accepted with a warning.
pub fn counts() -> (usize, usize, usize) {
    let table = table();
    let implemented = table
        .iter()
        .filter(|key| key.status == Status::Implemented)
        .count();
    (table.len(), implemented, table.len() - implemented)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_unique_and_parents_come_first() {
        let table = table();
        for (index, key) in table.iter().enumerate() {
            assert!(
                !table[..index].iter().any(|k| k.pattern == key.pattern),
                "{} twice",
                key.pattern
            );
            if let Some((parent, _)) = key.pattern.rsplit_once('.') {
                let parent = parent.trim_end_matches("[]");
                assert!(
                    table[..index].iter().any(|k| k.pattern == parent),
                    "{} before its parent {parent}",
                    key.pattern
                );
            }
        }
    }

    #[test]
    fn counts_add_up() {
        let (known, implemented, warned) = counts();
        assert_eq!(known, implemented + warned);
        // 50 compose keys, 31 engine options in three sections.
        assert!(known > 50 + 3 * 31, "{known}");
        assert_eq!(
            find("rancher.bootstrap_docker.graph").map(|k| k.status),
            Some(Status::NotImplemented)
        );
        assert_eq!(
            find("rancher.docker.bip").map(|k| k.status),
            Some(Status::Implemented)
        );
        assert_eq!(
            find("rancher.services.<name>.ports").map(|k| k.status),
            Some(Status::NotImplemented)
        );
        assert!(has_children("rancher.network.wifi_networks.<name>"));
        assert!(!has_children("rancher.upgrade.url"));
    }
}
