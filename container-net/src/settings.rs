//! What a container asks for, read from its OCI annotations: the bridge,
//! the subnet (given as the gateway's address with its prefix), the
//! published ports and an MTU. Absent annotations mean the defaults.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Annotation: the bridge's name.
pub const ANNOTATION_BRIDGE: &str = "io.ros.net.bridge";
/// Annotation: the bridge's gateway address with prefix, `172.18.0.1/16`.
pub const ANNOTATION_SUBNET: &str = "io.ros.net.subnet";
/// Annotation: published ports, `8080:80/tcp,5353:53/udp`.
pub const ANNOTATION_PORTS: &str = "io.ros.net.ports";
/// Annotation: MTU of the bridge and the veth pair.
pub const ANNOTATION_MTU: &str = "io.ros.net.mtu";

/// The bridge when none is named.
pub const DEFAULT_BRIDGE: &str = "ros0";
/// The gateway and subnet when none is named: Docker's 172.17 and QEMU's
/// 10.0.2 are left alone.
pub const DEFAULT_SUBNET: &str = "172.18.0.1/16";

/// A setting that cannot be used; each names the annotation and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "{ANNOTATION_BRIDGE}={0:?}: a bridge name has 1 to 15 characters, none of them '/', ':' or white space"
    )]
    BridgeName(String),
    #[error("{ANNOTATION_SUBNET}={value:?}: {reason}")]
    Subnet { value: String, reason: &'static str },
    #[error("{ANNOTATION_PORTS}: {entry:?}: {reason}")]
    Port { entry: String, reason: String },
    #[error("{ANNOTATION_PORTS}: host port {proto}/{port} is published twice")]
    DuplicatePort { proto: Proto, port: u16 },
    #[error("{ANNOTATION_MTU}={0:?}: an MTU is a number from 68 to 65535")]
    Mtu(String),
}

/// The bridge's subnet and the gateway address the bridge holds in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

impl Subnet {
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The network address (host bits zero).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.gateway) & self.mask())
    }

    /// The netmask as an address, `255.255.0.0` for a /16.
    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network())
    }

    /// The addresses a container may get, lowest first: every host address
    /// but the gateway's.
    pub fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        let network = u32::from(self.network());
        let broadcast = network | !self.mask();
        let gateway = self.gateway;
        (network + 1..broadcast)
            .map(Ipv4Addr::from)
            .filter(move |addr| *addr != gateway)
    }
}

impl fmt::Display for Subnet {
    /// The network with its prefix, `172.18.0.0/16`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

impl FromStr for Subnet {
    type Err = SettingsError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason| SettingsError::Subnet {
            value: value.to_string(),
            reason,
        };
        let (addr, prefix) = value
            .split_once('/')
            .ok_or_else(|| error("expected ADDRESS/PREFIX, like 172.18.0.1/16"))?;
        let gateway: Ipv4Addr = addr
            .parse()
            .map_err(|_| error("the address is not an IPv4 address"))?;
        let prefix_len: u8 = prefix
            .parse()
            .map_err(|_| error("the prefix is not a number"))?;
        // A /31 or /32 leaves no address for a container.
        if !(1..=30).contains(&prefix_len) {
            return Err(error("the prefix must be from 1 to 30"));
        }
        let subnet = Self {
            gateway,
            prefix_len,
        };
        let host = u32::from(gateway) & !subnet.mask();
        if host == 0 || host == !subnet.mask() {
            return Err(error(
                "the address is the network or broadcast address; give the gateway's, like 172.18.0.1/16",
            ));
        }
        Ok(subnet)
    }
}

/// A transport protocol a port is published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol other than `tcp` or `udp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}; use tcp or udp")]
pub struct UnknownProto(pub String);

impl FromStr for Proto {
    type Err = UnknownProto;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            other => Err(UnknownProto(other.to_owned())),
        }
    }
}

/// `HOSTPORT:CONTAINERPORT/PROTO`: traffic to the host's port goes to the
/// container's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedPort {
    pub host: u16,
    pub container: u16,
    pub proto: Proto,
}

impl fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.container, self.proto)
    }
}

fn port_number(entry: &str, what: &str, value: &str) -> Result<u16, SettingsError> {
    let error = |reason: String| SettingsError::Port {
        entry: entry.to_string(),
        reason,
    };
    let number: u64 = value
        .parse()
        .map_err(|_| error(format!("the {what} port {value:?} is not a number")))?;
    match u16::try_from(number) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(error(format!(
            "the {what} port {number} is out of range 1-65535"
        ))),
    }
}

impl FromStr for PublishedPort {
    type Err = SettingsError;

    /// `8080:80/tcp`; the protocol defaults to tcp, as in Docker.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let (ports, proto) = entry.split_once('/').unwrap_or((entry, "tcp"));
        let proto = proto
            .parse()
            .map_err(|reason: UnknownProto| SettingsError::Port {
                entry: entry.to_string(),
                reason: reason.to_string(),
            })?;
        let (host, container) = ports.split_once(':').ok_or_else(|| SettingsError::Port {
            entry: entry.to_string(),
            reason: "expected HOSTPORT:CONTAINERPORT/PROTO, like 8080:80/tcp".into(),
        })?;
        Ok(Self {
            host: port_number(entry, "host", host)?,
            container: port_number(entry, "container", container)?,
            proto,
        })
    }
}

/// The comma separated list of [`ANNOTATION_PORTS`]; blank entries are
/// ignored, a host port given twice is refused.
pub fn parse_ports(list: &str) -> Result<Vec<PublishedPort>, SettingsError> {
    let mut ports: Vec<PublishedPort> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let port: PublishedPort = entry.parse()?;
        if ports
            .iter()
            .any(|p| p.host == port.host && p.proto == port.proto)
        {
            return Err(SettingsError::DuplicatePort {
                proto: port.proto,
                port: port.host,
            });
        }
        ports.push(port);
    }
    Ok(ports)
}

/// Everything one container's networking is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub bridge: String,
    pub subnet: Subnet,
    pub ports: Vec<PublishedPort>,
    pub mtu: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.to_string(),
            subnet: Subnet {
                gateway: Ipv4Addr::new(172, 18, 0, 1),
                prefix_len: 16,
            },
            ports: Vec::new(),
            mtu: None,
        }
    }
}

fn valid_link_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

impl Settings {
    /// The annotations that ask for these settings, for the CLI to put in
    /// a container's spec; [`Settings::from_annotations`] reads them back.
    pub fn annotations(&self) -> Vec<(&'static str, String)> {
        let ports: Vec<String> = self.ports.iter().map(ToString::to_string).collect();
        let mut annotations = vec![
            (ANNOTATION_BRIDGE, self.bridge.clone()),
            (
                ANNOTATION_SUBNET,
                format!("{}/{}", self.subnet.gateway, self.subnet.prefix_len),
            ),
            (ANNOTATION_PORTS, ports.join(",")),
        ];
        if let Some(mtu) = self.mtu {
            annotations.push((ANNOTATION_MTU, mtu.to_string()));
        }
        annotations
    }

    /// The settings the annotations ask for; absent or empty ones take
    /// the defaults.
    pub fn from_annotations(annotations: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let get = |key: &str| {
            annotations
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let bridge = get(ANNOTATION_BRIDGE).unwrap_or(DEFAULT_BRIDGE);
        if !valid_link_name(bridge) {
            return Err(SettingsError::BridgeName(bridge.to_string()));
        }
        let subnet = get(ANNOTATION_SUBNET).unwrap_or(DEFAULT_SUBNET).parse()?;
        let ports = parse_ports(get(ANNOTATION_PORTS).unwrap_or(""))?;
        let mtu = get(ANNOTATION_MTU)
            .map(|v| match v.parse::<u32>() {
                Ok(mtu) if (68..=65535).contains(&mtu) => Ok(mtu),
                _ => Err(SettingsError::Mtu(v.to_string())),
            })
            .transpose()?;
        Ok(Self {
            bridge: bridge.to_string(),
            subnet,
            ports,
            mtu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_annotations_give_the_defaults() {
        let settings = Settings::from_annotations(&HashMap::new()).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.bridge, "ros0");
        assert_eq!(settings.subnet.to_string(), "172.18.0.0/16");
        assert_eq!(settings.subnet.gateway, Ipv4Addr::new(172, 18, 0, 1));
        // Empty values are defaults too: the CLI may write them so.
        let empty = annotations(&[(ANNOTATION_PORTS, ""), (ANNOTATION_BRIDGE, " ")]);
        assert_eq!(
            Settings::from_annotations(&empty).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn every_annotation_is_read() {
        let settings = Settings::from_annotations(&annotations(&[
            (ANNOTATION_BRIDGE, "br-apps"),
            (ANNOTATION_SUBNET, "10.88.5.254/24"),
            (ANNOTATION_PORTS, "8080:80/tcp, 5353:53/udp,,9000:9000"),
            (ANNOTATION_MTU, "1400"),
        ]))
        .unwrap();
        assert_eq!(settings.bridge, "br-apps");
        assert_eq!(settings.subnet.network(), Ipv4Addr::new(10, 88, 5, 0));
        assert_eq!(settings.subnet.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(settings.mtu, Some(1400));
        assert_eq!(
            settings.ports,
            vec![
                PublishedPort {
                    host: 8080,
                    container: 80,
                    proto: Proto::Tcp
                },
                PublishedPort {
                    host: 5353,
                    container: 53,
                    proto: Proto::Udp
                },
                PublishedPort {
                    host: 9000,
                    container: 9000,
                    proto: Proto::Tcp
                },
            ]
        );
    }

    #[test]
    fn settings_written_as_annotations_read_back_the_same() {
        let settings = Settings {
            bridge: "br1".into(),
            subnet: "10.5.0.1/24".parse().unwrap(),
            ports: parse_ports("8080:80/tcp,53:53/udp").unwrap(),
            mtu: Some(1450),
        };
        let written = settings.annotations();
        assert_eq!(
            written,
            vec![
                (ANNOTATION_BRIDGE, "br1".to_string()),
                (ANNOTATION_SUBNET, "10.5.0.1/24".to_string()),
                (ANNOTATION_PORTS, "8080:80/tcp,53:53/udp".to_string()),
                (ANNOTATION_MTU, "1450".to_string()),
            ]
        );
        let map = written
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(Settings::from_annotations(&map).unwrap(), settings);
        let defaults = Settings::default().annotations();
        assert_eq!(defaults[1], (ANNOTATION_SUBNET, DEFAULT_SUBNET.to_string()));
    }

    #[test]
    fn bad_subnets_are_refused_with_the_reason() {
        let cases = [
            ("172.18.0.1", "expected ADDRESS/PREFIX"),
            ("172.18.0/16", "not an IPv4 address"),
            ("fd00::1/64", "not an IPv4 address"),
            ("172.18.0.1/x", "prefix is not a number"),
            ("172.18.0.1/33", "from 1 to 30"),
            ("172.18.0.1/31", "from 1 to 30"),
            ("172.18.0.0/16", "network or broadcast"),
            ("172.18.255.255/16", "network or broadcast"),
        ];
        for (value, reason) in cases {
            let error = value.parse::<Subnet>().unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("io.ros.net.subnet={value:?}")),
                "{message}"
            );
            assert!(message.contains(reason), "{value}: {message}");
        }
    }

    #[test]
    fn bad_ports_are_refused_naming_the_entry() {
        let cases = [
            ("0:80/tcp", "host port 0 is out of range 1-65535"),
            ("8080:0/tcp", "container port 0 is out of range"),
            ("65536:80/tcp", "host port 65536 is out of range"),
            (
                "8080:99999999999/tcp",
                "container port 99999999999 is out of range",
            ),
            ("8080:80/sctp", "unknown protocol \"sctp\"; use tcp or udp"),
            ("8080:80/TCP", "unknown protocol"),
            ("8080/tcp", "expected HOSTPORT:CONTAINERPORT/PROTO"),
            ("http:80/tcp", "host port \"http\" is not a number"),
            ("-1:80/udp", "not a number"),
        ];
        for (entry, reason) in cases {
            let error = parse_ports(&format!("1:1/tcp,{entry}")).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("io.ros.net.ports: {entry:?}: ")),
                "{message}"
            );
            assert!(message.contains(reason), "{entry}: {message}");
        }
    }

    #[test]
    fn a_host_port_published_twice_is_refused_but_tcp_and_udp_may_share_it() {
        assert_eq!(
            parse_ports("53:53/tcp,53:5353/tcp").unwrap_err(),
            SettingsError::DuplicatePort {
                proto: Proto::Tcp,
                port: 53
            }
        );
        assert_eq!(parse_ports("53:53/tcp,53:53/udp").unwrap().len(), 2);
    }

    #[test]
    fn bad_bridge_names_and_mtus_are_refused() {
        for name in ["a-name-that-is-too-long", "br/0", "br 0", "br:0"] {
            let error =
                Settings::from_annotations(&annotations(&[(ANNOTATION_BRIDGE, name)])).unwrap_err();
            assert_eq!(error, SettingsError::BridgeName(name.to_string()));
        }
        for mtu in ["0", "67", "65536", "big"] {
            let error =
                Settings::from_annotations(&annotations(&[(ANNOTATION_MTU, mtu)])).unwrap_err();
            assert_eq!(error, SettingsError::Mtu(mtu.to_string()));
        }
    }

    #[test]
    fn hosts_skip_network_gateway_and_broadcast() {
        let subnet: Subnet = "192.168.7.2/30".parse().unwrap();
        assert_eq!(
            subnet.hosts().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(192, 168, 7, 1)]
        );
        let subnet: Subnet = "172.18.0.1/16".parse().unwrap();
        assert_eq!(subnet.hosts().next(), Some(Ipv4Addr::new(172, 18, 0, 2)));
        assert_eq!(subnet.hosts().count(), 65533);
        assert!(subnet.contains(Ipv4Addr::new(172, 18, 200, 3)));
        assert!(!subnet.contains(Ipv4Addr::new(172, 19, 0, 3)));
    }
}
