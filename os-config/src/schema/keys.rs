//! Every valid key, as a table of patterns: `<name>` stands for any map key
//! the user chooses, `[]` for any list entry. `ros config keys` prints it;
//! the checker uses it to find unknown keys, suggest the nearest valid one
//! and warn about keys that are read but not applied.

/// Whether this system does what a key asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Applied.
    Implemented,
    /// Accepted so RancherOS configs load, but not applied: a warning.
    Unimplemented,
}

/// One valid key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The key pattern.
    pub pattern: &'static str,
    /// Whether it is applied.
    pub support: Support,
    /// Its children are free-form (not checked against this table).
    pub free_form: bool,
    /// The typed schema has a field for it; a RancherOS key without one is
    /// accepted, warned about and left out before the typed read.
    pub typed: bool,
}

const fn key(pattern: &'static str) -> KeySpec {
    KeySpec {
        pattern,
        support: Support::Implemented,
        free_form: false,
        typed: true,
    }
}

/// A map or list the user fills with anything (`sysctl`, `labels`).
const fn free(pattern: &'static str) -> KeySpec {
    KeySpec {
        pattern,
        support: Support::Implemented,
        free_form: true,
        typed: true,
    }
}

/// Read but not applied; its children are not checked.
const fn unimplemented(pattern: &'static str) -> KeySpec {
    KeySpec {
        pattern,
        support: Support::Unimplemented,
        free_form: true,
        typed: true,
    }
}

/// The wildcard segment.
pub const ANY_NAME: &str = "<name>";

const SERVICE: &str = "rancher.services.<name>";

/// Every key, parents before children.
pub static KEYS: &[KeySpec] = &[
    key("hostname"),
    free("ssh_authorized_keys"),
    key("write_files"),
    key("write_files[].path"),
    key("write_files[].content"),
    key("write_files[].encoding"),
    key("write_files[].owner"),
    key("write_files[].permissions"),
    key("write_files[].container"),
    free("mounts"),
    free("runcmd"),
    free("bootcmd"),
    key("rancher"),
    key("rancher.network"),
    key("rancher.network.dns"),
    free("rancher.network.dns.nameservers"),
    free("rancher.network.dns.search"),
    key("rancher.network.interfaces"),
    key("rancher.network.interfaces.<name>"),
    key("rancher.network.interfaces.<name>.match"),
    key("rancher.network.interfaces.<name>.dhcp"),
    unimplemented("rancher.network.interfaces.<name>.dhcp_args"),
    key("rancher.network.interfaces.<name>.address"),
    free("rancher.network.interfaces.<name>.addresses"),
    unimplemented("rancher.network.interfaces.<name>.ipv4ll"),
    key("rancher.network.interfaces.<name>.gateway"),
    key("rancher.network.interfaces.<name>.gateway_ipv6"),
    key("rancher.network.interfaces.<name>.mtu"),
    key("rancher.network.interfaces.<name>.bridge"),
    key("rancher.network.interfaces.<name>.bond"),
    free("rancher.network.interfaces.<name>.bond_opts"),
    free("rancher.network.interfaces.<name>.vlans"),
    unimplemented("rancher.network.interfaces.<name>.post_up"),
    unimplemented("rancher.network.interfaces.<name>.pre_up"),
    key("rancher.network.http_proxy"),
    key("rancher.network.https_proxy"),
    key("rancher.network.no_proxy"),
    key("rancher.network.dhcp_timeout"),
    unimplemented("rancher.network.pre_cmds"),
    unimplemented("rancher.network.post_cmds"),
    key("rancher.services"),
    key(SERVICE),
    key("rancher.services.<name>.image"),
    free("rancher.services.<name>.command"),
    free("rancher.services.<name>.entrypoint"),
    free("rancher.services.<name>.environment"),
    free("rancher.services.<name>.labels"),
    free("rancher.services.<name>.volumes"),
    free("rancher.services.<name>.volumes_from"),
    key("rancher.services.<name>.net"),
    key("rancher.services.<name>.network_mode"),
    key("rancher.services.<name>.pid"),
    key("rancher.services.<name>.ipc"),
    key("rancher.services.<name>.uts"),
    key("rancher.services.<name>.cgroup"),
    key("rancher.services.<name>.privileged"),
    free("rancher.services.<name>.cap_add"),
    free("rancher.services.<name>.cap_drop"),
    free("rancher.services.<name>.devices"),
    key("rancher.services.<name>.read_only"),
    key("rancher.services.<name>.restart"),
    key("rancher.services.<name>.user"),
    key("rancher.services.<name>.working_dir"),
    key("rancher.services.<name>.mem_limit"),
    key("rancher.services.<name>.cpu_shares"),
    key("rancher.services.<name>.tty"),
    key("rancher.services.<name>.stdin_open"),
    unimplemented("rancher.services.<name>.ports"),
    unimplemented("rancher.services.<name>.links"),
    unimplemented("rancher.services.<name>.external_links"),
    unimplemented("rancher.services.<name>.dns"),
    unimplemented("rancher.services.<name>.dns_search"),
    unimplemented("rancher.services.<name>.extra_hosts"),
    key("rancher.services.<name>.hostname"),
    unimplemented("rancher.services.<name>.container_name"),
    unimplemented("rancher.services.<name>.log_driver"),
    unimplemented("rancher.services.<name>.log_opt"),
    unimplemented("rancher.services.<name>.security_opt"),
    free("rancher.services.<name>.ulimits"),
    free("rancher.services.<name>.env_file"),
    key("rancher.services.<name>.stop_signal"),
    unimplemented("rancher.services.<name>.cgroup_parent"),
    free("rancher.services_include"),
    key("rancher.console"),
    free("rancher.environment"),
    key("rancher.state"),
    key("rancher.state.dev"),
    key("rancher.state.fstype"),
    free("rancher.state.autoformat"),
    key("rancher.state.wait"),
    key("rancher.state.required"),
    key("rancher.state.directory"),
    unimplemented("rancher.state.mdadm_scan"),
    unimplemented("rancher.state.script"),
    unimplemented("rancher.state.oem_fstype"),
    unimplemented("rancher.state.oem_dev"),
    key("rancher.ssh"),
    free("rancher.ssh.keys"),
    key("rancher.ssh.port"),
    key("rancher.ssh.listen_address"),
    key("rancher.ssh.daemon"),
    free("rancher.sysctl"),
    free("rancher.modules"),
    key("rancher.syslog"),
    free("rancher.syslog.forward"),
    // The user containerd's bridge and registries; the rest of RancherOS's
    // engine options are warned about one by one.
    key("rancher.docker"),
    key("rancher.docker.bridge"),
    key("rancher.docker.bip"),
    key("rancher.docker.mtu"),
    free("rancher.docker.insecure_registry"),
    // Registries the system containerd pulls service images from over
    // plain HTTP; the rest of RancherOS's engine options are warned about.
    key("rancher.system_docker"),
    free("rancher.system_docker.insecure_registry"),
    key("rancher.system_containerd"),
    key("rancher.system_containerd.binary"),
    key("rancher.system_containerd.address"),
    key("rancher.system_containerd.root"),
    key("rancher.system_containerd.state"),
    key("rancher.system_containerd.config_file"),
    key("rancher.system_containerd.debug"),
    key("rancher.cloud_init"),
    free("rancher.cloud_init.datasources"),
    free("rancher.disable"),
    key("rancher.preload_wait"),
    key("rancher.debug"),
    key("rancher.password"),
    free("rancher.autologin"),
    key("rancher.cluster"),
    key("rancher.cluster.server"),
    key("rancher.cluster.token"),
    key("rancher.cluster.node_name"),
    free("rancher.cluster.labels"),
    key("rancher.cluster.taints"),
    key("rancher.cluster.image"),
    key("rancher.cluster.args"),
    free("rancher.cluster.environment"),
    key("rancher.cluster.ca_checksum"),
    unimplemented("rancher.bootstrap"),
    unimplemented("rancher.bootstrap_docker"),
    unimplemented("rancher.rm_usr"),
    unimplemented("rancher.no_sharedroot"),
    unimplemented("rancher.log"),
    unimplemented("rancher.force_console_rebuild"),
    unimplemented("rancher.default_network"),
    unimplemented("rancher.repositories"),
    unimplemented("rancher.upgrade"),
    unimplemented("rancher.registry_auths"),
    unimplemented("rancher.defaults"),
    unimplemented("rancher.resize_device"),
    unimplemented("rancher.restart_services"),
];

/// The engine option keys, under both `rancher.docker` and `rancher.system_docker`.
pub static ENGINE_OPTIONS: &[&str] = &[
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
    "insecure_registry",
    "live_restore",
    "log_driver",
    "log_opts",
    "mtu",
    "pid_file",
    "registry_mirror",
    "restart",
    "selinux_enabled",
    "storage_driver",
    "userland_proxy",
];

/// Looks a pattern up: this system's typed keys (the engine options of the
/// two Docker sections included), then the RancherOS keys it has no field
/// for. Whether a RancherOS key is applied is what
/// [`super::rancher_keys`] says.
pub fn find(pattern: &str) -> Option<KeySpec> {
    let rancher = super::rancher_keys::find(pattern);
    let support = |own: Support| match rancher.map(|key| key.status) {
        Some(super::rancher_keys::Status::NotImplemented) => Support::Unimplemented,
        Some(super::rancher_keys::Status::Implemented) => Support::Implemented,
        None => own,
    };
    if let Some(spec) = KEYS.iter().find(|spec| spec.pattern == pattern) {
        return Some(KeySpec {
            support: support(spec.support),
            ..*spec
        });
    }
    if let Some((parent, option)) = pattern.rsplit_once('.')
        && (parent == "rancher.docker" || parent == "rancher.system_docker")
        && ENGINE_OPTIONS.contains(&option)
    {
        return Some(KeySpec {
            pattern: "",
            support: support(Support::Unimplemented),
            free_form: true,
            typed: true,
        });
    }
    rancher.map(|key| KeySpec {
        pattern: key.pattern,
        support: support(Support::Unimplemented),
        free_form: !super::rancher_keys::has_children(key.pattern),
        typed: false,
    })
}

/// The names valid directly under `parent`, RancherOS keys without a
/// typed field included: where a misspelled key's suggestion comes from.
pub fn known_children(parent: &str) -> Vec<String> {
    let mut names = children(parent);
    let prefix = if parent.is_empty() {
        String::new()
    } else {
        format!("{parent}.")
    };
    for key in super::rancher_keys::table() {
        if let Some(rest) = key.pattern.strip_prefix(prefix.as_str())
            && !rest.contains('.')
            && !rest.contains("[]")
            && !names.iter().any(|name| name == rest)
        {
            names.push(rest.to_owned());
        }
    }
    names
}

/// One row of `ros config keys`: every key this system reads and every
/// key RancherOS had, in schema order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// The key pattern.
    pub pattern: String,
    /// Whether it is applied.
    pub support: Support,
    /// RancherOS v1.5 had it.
    pub rancheros: bool,
    /// What it does, or why it does not.
    pub note: &'static str,
}

/// The table `ros config keys` prints.
pub fn rows() -> Vec<KeyRow> {
    let mut rows: Vec<KeyRow> = Vec::new();
    let row = |pattern: &str| {
        let rancher = super::rancher_keys::find(pattern);
        KeyRow {
            pattern: pattern.to_owned(),
            support: find(pattern).map_or(Support::Unimplemented, |spec| spec.support),
            rancheros: rancher.is_some(),
            note: rancher.map_or("", |key| key.note),
        }
    };
    for pattern in all_patterns() {
        rows.push(row(&pattern));
    }
    // RancherOS keys without a typed field, each after the last row of its
    // parent's subtree so the table stays in schema order.
    for key in super::rancher_keys::table() {
        if rows.iter().any(|r| r.pattern == key.pattern) {
            continue;
        }
        let parent = key
            .pattern
            .rsplit_once('.')
            .map_or("", |(parent, _)| parent)
            .trim_end_matches("[]");
        let in_subtree = |r: &KeyRow| {
            r.pattern == parent
                || r.pattern.starts_with(&format!("{parent}."))
                || r.pattern.starts_with(&format!("{parent}[]"))
        };
        let at = rows
            .iter()
            .rposition(in_subtree)
            .map_or(rows.len(), |index| index + 1);
        rows.insert(at, row(key.pattern));
    }
    rows
}

/// Every key pattern, in order, engine options expanded.
pub fn all_patterns() -> Vec<String> {
    let mut patterns = Vec::new();
    for spec in KEYS {
        patterns.push(spec.pattern.to_owned());
        if spec.pattern == "rancher.docker" || spec.pattern == "rancher.system_docker" {
            patterns.extend(
                ENGINE_OPTIONS
                    .iter()
                    .map(|o| format!("{}.{o}", spec.pattern))
                    // Those applied here have rows of their own.
                    .filter(|pattern| !KEYS.iter().any(|k| k.pattern == pattern)),
            );
        }
    }
    patterns
}

/// The names valid directly under `parent` (a pattern; "" is the root).
pub fn children(parent: &str) -> Vec<String> {
    all_patterns()
        .into_iter()
        .filter_map(|pattern| {
            let rest = if parent.is_empty() {
                Some(pattern.as_str())
            } else {
                pattern
                    .strip_prefix(parent)
                    .and_then(|r| r.strip_prefix('.'))
            }?;
            (!rest.contains('.') && !rest.contains("[]")).then(|| rest.to_owned())
        })
        .collect()
}

/// True when list entries under `pattern` have keys of their own.
pub fn has_entry_keys(pattern: &str) -> bool {
    let prefix = format!("{pattern}[].");
    KEYS.iter().any(|spec| spec.pattern.starts_with(&prefix))
}
