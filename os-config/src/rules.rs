//! Checks that span fields or need more than a type: run after serde, they
//! return every problem with its key path.

use crate::check::ConfigError;
use crate::parse::keypath::KeyPath;
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
    let has_v4 = interface.all_addresses().iter().any(|a| a.addr.is_ipv4());
    let has_v6 = interface.all_addresses().iter().any(|a| a.addr.is_ipv6());
    if interface.gateway.is_some() && !has_v4 && !interface.dhcp {
        problems.push(inconsistent(
            path.key("gateway"),
            "an IPv4 gateway needs an IPv4 address or dhcp on the same interface".to_owned(),
        ));
    }
    if interface.gateway_ipv6.is_some() && !has_v6 && !interface.dhcp {
        problems.push(inconsistent(
            path.key("gateway_ipv6"),
            "an IPv6 gateway needs an IPv6 address or dhcp on the same interface".to_owned(),
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
