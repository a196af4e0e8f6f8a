//! Checks that span fields or need more than a type: run after serde, they
//! return every problem with its key path.

use crate::parse::keypath::KeyPath;
use crate::problem::{ConfigError, Warning};
use crate::schema::CloudConfig;
use crate::schema::cluster::{Cluster, label_key_problem, label_value_problem};
use crate::schema::network::{BondOptions, InterfaceConfig, InvalidNetworkValue};
use crate::schema::service::{InvalidServiceValue, Service};

/// Every cross-field problem in `config`.
pub fn cross_field_problems(config: &CloudConfig) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    for (index, file) in config.write_files.iter().enumerate() {
        if let Err(error) = file.decoded_content() {
            problems.push(invalid(
                KeyPath::root()
                    .key("write_files")
                    .index(index)
                    .key("content"),
                error.to_string(),
            ));
        }
    }
    for (index, key) in config.ssh_authorized_keys.iter().enumerate() {
        if key.split_whitespace().count() < 2 {
            problems.push(invalid(
                KeyPath::root().key("ssh_authorized_keys").index(index),
                "not an SSH public key (expected `TYPE BASE64 [COMMENT]`)".to_owned(),
            ));
        }
    }
    let interfaces = KeyPath::root()
        .key("rancher")
        .key("network")
        .key("interfaces");
    for (key, interface) in &config.rancher.network.interfaces {
        interface_problems(&interfaces.key(key.to_string()), interface, &mut problems);
    }
    let services = KeyPath::root().key("rancher").key("services");
    for (name, service) in &config.rancher.services {
        service_problems(&services.key(name.as_str()), service, &mut problems);
    }
    cluster_problems(&config.rancher.cluster, &mut problems);
    problems
}

fn cluster_problems(cluster: &Cluster, problems: &mut Vec<ConfigError>) {
    let path = KeyPath::root().key("rancher").key("cluster");
    if let (Some(server), None) = (&cluster.server, &cluster.token) {
        problems.push(inconsistent(
            path.key("token"),
            format!("missing: the agent needs a token to join {server}"),
        ));
    }
    for (key, value) in &cluster.labels {
        if let Some(problem) = label_key_problem(key).or_else(|| label_value_problem(value)) {
            problems.push(invalid(path.key("labels").key(key.as_str()), problem));
        }
    }
    if let (Some(checksum), Some(hash)) = (
        &cluster.ca_checksum,
        cluster.token.as_ref().and_then(|t| t.ca_hash()),
    ) && !hash.eq_ignore_ascii_case(checksum.hex())
    {
        problems.push(inconsistent(
            path.key("ca_checksum"),
            "differs from the CA hash in the token (K10<hash>::…); give one or make them agree"
                .to_owned(),
        ));
    }
}

fn interface_problems(
    path: &KeyPath,
    interface: &InterfaceConfig,
    problems: &mut Vec<ConfigError>,
) {
    if let Some(mtu) = interface.mtu
        && !(68..=65535).contains(&mtu)
    {
        problems.push(invalid(
            path.key("mtu"),
            format!("MTU {mtu} is outside 68 to 65535"),
        ));
    }
    if let Err(error) = BondOptions::from_map(&interface.bond_opts) {
        let key = match &error {
            InvalidNetworkValue::BondOption { key, .. } => key.clone(),
            _ => String::new(),
        };
        problems.push(invalid(path.key("bond_opts").key(key), error.to_string()));
    }
    if interface.bond.is_some() && interface.bridge.is_some() {
        problems.push(inconsistent(
            path.key("bond"),
            "a link can be a bond member or a bridge setting, not both".to_owned(),
        ));
    }
    if interface.bond.is_some() && (interface.dhcp || !interface.all_addresses().is_empty()) {
        problems.push(inconsistent(
            path.key("bond"),
            "a bond member gets no addresses; configure them on the bond".to_owned(),
        ));
    }
}

/// Things RancherOS accepted that may not do what was meant: accepted
/// here too, each with a warning saying what happens.
pub fn cross_field_warnings(config: &CloudConfig) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let interfaces = KeyPath::root()
        .key("rancher")
        .key("network")
        .key("interfaces");
    for (key, interface) in &config.rancher.network.interfaces {
        let path = interfaces.key(key.to_string());
        let has_v4 = interface.all_addresses().iter().any(|a| a.addr.is_ipv4());
        let has_v6 = interface.all_addresses().iter().any(|a| a.addr.is_ipv6());
        // The address may come from elsewhere (router advertisements, an
        // address on another link in the same subnet): RancherOS added the
        // route and let the kernel decide.
        if interface.gateway.is_some() && !has_v4 && !interface.dhcp {
            warnings.push(accepted(
                path.key("gateway"),
                "no IPv4 address or dhcp on this interface: the default route is added only \
                 if the gateway is reachable from an address the link gets elsewhere",
            ));
        }
        if interface.gateway_ipv6.is_some() && !has_v6 && !interface.dhcp {
            warnings.push(accepted(
                path.key("gateway_ipv6"),
                "no IPv6 address or dhcp on this interface: the default route is added only \
                 if the gateway is reachable from an address the link gets elsewhere \
                 (router advertisements, link-local)",
            ));
        }
    }
    let services = KeyPath::root().key("rancher").key("services");
    for (name, service) in &config.rancher.services {
        if service.scope() == Ok(crate::schema::Scope::User) {
            warnings.push(Warning::Accepted {
                path: services
                    .key(name.as_str())
                    .key("labels")
                    .key(crate::schema::service::SCOPE_LABEL),
                line: None,
                message: format!(
                    "service `{name}` is for RancherOS's user Docker; it is not run here \
                     (run it with `ros run`, or make it a system service)"
                ),
            });
        }
    }
    for (index, mount) in config.mounts.iter().enumerate() {
        if mount.skipped() {
            warnings.push(accepted(
                KeyPath::root().key("mounts").index(index).index(1),
                "no mount point (empty or `none`) and not swap: nothing is mounted",
            ));
        }
    }
    warnings
}

fn accepted(path: KeyPath, message: &str) -> Warning {
    Warning::Accepted {
        path,
        line: None,
        message: message.to_owned(),
    }
}

fn service_problems(path: &KeyPath, service: &Service, problems: &mut Vec<ConfigError>) {
    if let (Some(net), Some(mode)) = (&service.net, &service.network_mode)
        && net != mode
    {
        problems.push(inconsistent(
            path.key("network_mode"),
            "`net` and `network_mode` disagree; set one".to_owned(),
        ));
    }
    for problem in service.label_problems() {
        if let InvalidServiceValue::Label { label, .. } = &problem {
            problems.push(invalid(path.key("labels").key(*label), problem.to_string()));
        }
    }
}

fn invalid(path: KeyPath, message: String) -> ConfigError {
    ConfigError::InvalidValue {
        path,
        line: None,
        message,
    }
}

fn inconsistent(path: KeyPath, message: String) -> ConfigError {
    ConfigError::Inconsistent {
        path,
        line: None,
        message,
    }
}
