//! `rancher.network`: DNS, proxies and per-interface configuration, typed
//! so the netlink code can apply it without parsing strings again.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::scalar::{bool_word, scalar_map};

/// Why a network value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNetworkValue {
    /// Not a kernel interface name.
    #[error("`{0}` is not an interface name (1 to 15 characters, no `/`, `:` or whitespace)")]
    InterfaceName(String),
    /// Not a MAC address.
    #[error("`{0}` is not a MAC address (six hex pairs like 52:54:00:12:34:56)")]
    MacAddr(String),
    /// Not an `address/prefix`.
    #[error("`{0}` is not an address with prefix length (like 192.168.1.10/24 or fd00::10/64)")]
    Cidr(String),
    /// Not a `vlans` entry.
    #[error("`{0}` is not a VLAN list (comma-separated `ID[:NAME]`, ID 1 to 4094)")]
    Vlans(String),
    /// A `bond_opts` value this system cannot apply.
    #[error("bond option `{key}: {value}` is invalid ({expected})")]
    BondOption {
        /// The option.
        key: String,
        /// Its value.
        value: String,
        /// What it accepts.
        expected: &'static str,
    },
    /// Not an interface key.
    #[error(
        "`{0}` is not an interface key (a name, a glob like `eth*`, or `mac=52:54:00:12:34:56`)"
    )]
    InterfaceKey(String),
}

/// `rancher.network`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Resolver configuration.
    pub dns: Dns,
    /// Per-interface settings, keyed by name, glob or `mac=`.
    pub interfaces: BTreeMap<InterfaceKey, InterfaceConfig>,
    /// Proxy for HTTP, passed to services' environment.
    pub http_proxy: Option<String>,
    /// Proxy for HTTPS.
    pub https_proxy: Option<String>,
    /// Hosts reached without the proxy.
    pub no_proxy: Option<String>,
    /// How long DHCP may take before boot goes on, in seconds.
    pub dhcp_timeout: u64,
    /// RancherOS ran these before networking (not implemented here).
    pub pre_cmds: Vec<String>,
    /// RancherOS ran these after networking (not implemented here).
    pub post_cmds: Vec<String>,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            dns: Dns::default(),
            interfaces: BTreeMap::new(),
            http_proxy: None,
            https_proxy: None,
            no_proxy: None,
            dhcp_timeout: 10,
            pre_cmds: Vec::new(),
            post_cmds: Vec::new(),
        }
    }
}

impl Network {
    /// The proxy settings as the environment services get: `NAME=value`,
    /// in both spellings, since tools disagree on which they read.
    pub fn proxy_environment(&self) -> Vec<String> {
        let mut env = Vec::new();
        for (name, value) in [
            ("HTTP_PROXY", &self.http_proxy),
            ("HTTPS_PROXY", &self.https_proxy),
            ("NO_PROXY", &self.no_proxy),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                env.push(format!("{name}={value}"));
                env.push(format!("{}={value}", name.to_ascii_lowercase()));
            }
        }
        env
    }

    /// `dhcp_timeout` as a duration.
    pub fn dhcp_timeout(&self) -> Duration {
        Duration::from_secs(self.dhcp_timeout)
    }

    /// The settings for one link: an exact name wins over `mac=`, which
    /// wins over a glob (the first glob in key order).
    pub fn config_for(&self, name: &str, mac: Option<MacAddr>) -> Option<&InterfaceConfig> {
        let rank = |key: &InterfaceKey| match key {
            InterfaceKey::Name(_) => 0,
            InterfaceKey::Mac(_) => 1,
            InterfaceKey::Glob(_) => 2,
        };
        self.interfaces
            .iter()
            .filter(|(key, config)| {
                key.matches(name, mac)
                    || config.match_.as_ref().is_some_and(|m| m.matches(name, mac))
            })
            .min_by_key(|(key, _)| rank(key))
            .map(|(_, config)| config)
    }
}

/// `rancher.network.dns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Name servers, in order.
    pub nameservers: Vec<IpAddr>,
    /// Search domains.
    pub search: Vec<super::newtypes::DomainName>,
}

/// A kernel network interface name (`eth0`, `eth0.100`, `br0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct InterfaceName(String);

impl InterfaceName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InterfaceName {
    type Error = InvalidNetworkValue;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        // IFNAMSIZ is 16 with the NUL; the kernel refuses `/`, `:` and spaces.
        let valid = !name.is_empty()
            && name.len() <= 15
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
        if valid {
            Ok(Self(name))
        } else {
            Err(InvalidNetworkValue::InterfaceName(name))
        }
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = InvalidNetworkValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || InvalidNetworkValue::MacAddr(text.to_owned());
        let separator = if text.contains('-') { '-' } else { ':' };
        let mut bytes = [0u8; 6];
        let mut parts = text.split(separator);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(error)?;
            if part.len() != 2 {
                return Err(error());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| error())?;
        }
        if parts.next().is_some() {
            return Err(error());
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Which links an `interfaces` entry applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InterfaceKey {
    /// Exactly this name.
    Name(InterfaceName),
    /// A shell glob over names (`eth*`, `en?[0-9]`).
    Glob(String),
    /// The link with this hardware address (`mac=52:54:00:12:34:56`).
    Mac(MacAddr),
}

impl InterfaceKey {
    /// True when this key selects the link `name` with hardware address `mac`.
    pub fn matches(&self, name: &str, mac: Option<MacAddr>) -> bool {
        match self {
            Self::Name(own) => own.as_str() == name,
            Self::Glob(pattern) => glob_matches(pattern.as_bytes(), name.as_bytes()),
            Self::Mac(own) => mac == Some(*own),
        }
    }
}

impl FromStr for InterfaceKey {
    type Err = InvalidNetworkValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(mac) = text.strip_prefix("mac=") {
            return mac
                .parse()
                .map(Self::Mac)
                .map_err(|_| InvalidNetworkValue::InterfaceKey(text.to_owned()));
        }
        if text.contains(['*', '?', '[']) {
            let valid = !text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() && c != '/');
            return if valid && glob_is_well_formed(text) {
                Ok(Self::Glob(text.to_owned()))
            } else {
                Err(InvalidNetworkValue::InterfaceKey(text.to_owned()))
            };
        }
        InterfaceName::try_from(text.to_owned())
            .map(Self::Name)
            .map_err(|_| InvalidNetworkValue::InterfaceKey(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for InterfaceKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for InterfaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => write!(f, "{name}"),
            Self::Glob(glob) => f.write_str(glob),
            Self::Mac(mac) => write!(f, "mac={mac}"),
        }
    }
}

fn glob_is_well_formed(pattern: &str) -> bool {
    let mut in_class = false;
    for c in pattern.chars() {
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            _ => {}
        }
    }
    !in_class
}

/// Shell-style matching of `*`, `?` and `[a-z]` classes (`!` negates).
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob_matches(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && glob_matches(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let Some((&first, tail)) = name.split_first() else {
                return false;
            };
            let (negate, class) = match rest[..end].split_first() {
                Some((b'!', class)) => (true, class),
                _ => (false, &rest[..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= (class[i]..=class[i + 2]).contains(&first);
                    i += 3;
                } else {
                    hit |= class[i] == first;
                    i += 1;
                }
            }
            hit != negate && glob_matches(&rest[end + 1..], tail)
        }
        Some((&literal, rest)) => name.first() == Some(&literal) && glob_matches(rest, &name[1..]),
    }
}

/// An address with its prefix length (`192.168.1.10/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    /// The interface address.
    pub addr: IpAddr,
    /// The prefix length, at most 32 for IPv4 and 128 for IPv6.
    pub prefix_len: u8,
}

impl FromStr for IpCidr {
    type Err = InvalidNetworkValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || InvalidNetworkValue::Cidr(text.to_owned());
        let (addr, prefix) = text.split_once('/').ok_or_else(error)?;
        let addr: IpAddr = addr.parse().map_err(|_| error())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error());
        }
        let prefix_len: u8 = prefix.parse().map_err(|_| error())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(error());
        }
        Ok(Self { addr, prefix_len })
    }
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One VLAN on top of an interface: `vlans: 100,200:storage`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vlan {
    /// The 802.1Q id, 1 to 4094.
    pub id: u16,
    /// The link's name; the default is `<parent>.<id>`.
    pub name: Option<InterfaceName>,
}

/// The `vlans` field: RancherOS wrote it as one comma-separated string;
/// a YAML list of the same entries is accepted too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vlans(pub Vec<Vlan>);

impl FromStr for Vlans {
    type Err = InvalidNetworkValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || InvalidNetworkValue::Vlans(text.to_owned());
        let mut vlans = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, name) = match entry.split_once(':') {
                Some((id, name)) => (id, Some(name)),
                None => (entry, None),
            };
            let id: u16 = id.trim().parse().map_err(|_| error())?;
            if !(1..=4094).contains(&id) {
                return Err(error());
            }
            let name = name
                .map(|n| InterfaceName::try_from(n.trim().to_owned()))
                .transpose()
                .map_err(|_| error())?;
            vlans.push(Vlan { id, name });
        }
        Ok(Self(vlans))
    }
}

impl<'de> Deserialize<'de> for Vlans {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = match super::scalar::StringOrList::deserialize(deserializer)? {
            super::scalar::StringOrList::String(text) => text,
            super::scalar::StringOrList::List(list) => list.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What `bridge:` says about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeRole {
    /// `bridge: true`: this entry is a bridge to create.
    IsBridge,
    /// `bridge: br0`: this link is a port of bridge `br0`.
    PortOf(InterfaceName),
}

impl<'de> Deserialize<'de> for BridgeRole {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let super::scalar::ScalarText(text) = Deserialize::deserialize(deserializer)?;
        match super::scalar::parse_bool_word(&text) {
            Some(true) => Ok(Self::IsBridge),
            Some(false) => Err(serde::de::Error::custom(
                "`bridge: false` is not a bridge setting; leave the key out",
            )),
            None => InterfaceName::try_from(text)
                .map(Self::PortOf)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// One entry of `rancher.network.interfaces`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterfaceConfig {
    /// Applies this entry to links matching this key too.
    #[serde(rename = "match")]
    pub match_: Option<InterfaceKey>,
    /// Get addresses by DHCP.
    #[serde(deserialize_with = "bool_word")]
    pub dhcp: bool,
    /// Extra DHCP client arguments (RancherOS's dhcpcd; not implemented).
    pub dhcp_args: Option<String>,
    /// One static address.
    pub address: Option<IpCidr>,
    /// More static addresses.
    pub addresses: Vec<IpCidr>,
    /// Link-local IPv4 (not implemented).
    #[serde(deserialize_with = "bool_word")]
    pub ipv4ll: bool,
    /// IPv4 default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default gateway.
    pub gateway_ipv6: Option<Ipv6Addr>,
    /// Link MTU.
    pub mtu: Option<u32>,
    /// Bridge role.
    pub bridge: Option<BridgeRole>,
    /// Makes this link a member of the named bond.
    pub bond: Option<InterfaceName>,
    /// Options for the bond this entry creates (`mode: 1`, `miimon: 100`).
    #[serde(deserialize_with = "scalar_map")]
    pub bond_opts: BTreeMap<String, String>,
    /// VLANs to create on this link.
    pub vlans: Vlans,
    /// Commands after the link is up (not implemented).
    pub post_up: Vec<String>,
    /// Commands before the link is up (not implemented).
    pub pre_up: Vec<String>,
}

impl InterfaceConfig {
    /// `address` and `addresses` together, `address` first.
    pub fn all_addresses(&self) -> Vec<IpCidr> {
        self.address
            .iter()
            .chain(&self.addresses)
            .copied()
            .collect()
    }
}

/// A bonding mode, by number or by the kernel's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondMode {
    /// 0: round robin.
    BalanceRr,
    /// 1: one port active, the others standing by.
    ActiveBackup,
    /// 2: ports chosen by a hash.
    BalanceXor,
    /// 3: everything on every port.
    Broadcast,
    /// 4: LACP.
    Ieee8023Ad,
    /// 5: adaptive transmit load balancing.
    BalanceTlb,
    /// 6: adaptive load balancing.
    BalanceAlb,
}

/// LACP rate for 802.3ad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LacpRate {
    /// Every 30 s.
    Slow,
    /// Every second.
    Fast,
}

/// The transmit hash of balance-xor and 802.3ad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmitHashPolicy {
    /// MAC addresses.
    Layer2,
    /// IP addresses and ports.
    Layer34,
    /// MAC and IP addresses.
    Layer23,
    /// Inner MAC and IP addresses.
    Encap23,
    /// Inner IP addresses and ports.
    Encap34,
}

/// `bond_opts`, typed: the options this system applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BondOptions {
    /// `mode`.
    pub mode: Option<BondMode>,
    /// `miimon`: link check interval in ms.
    pub miimon: Option<u32>,
    /// `updelay` in ms.
    pub updelay: Option<u32>,
    /// `downdelay` in ms.
    pub downdelay: Option<u32>,
    /// `lacp_rate`.
    pub lacp_rate: Option<LacpRate>,
    /// `xmit_hash_policy`.
    pub xmit_hash_policy: Option<XmitHashPolicy>,
}

/// The `bond_opts` keys [`BondOptions`] knows.
pub const BOND_OPTIONS: &[&str] = &[
    "mode",
    "miimon",
    "updelay",
    "downdelay",
    "lacp_rate",
    "xmit_hash_policy",
];

impl BondOptions {
    /// Types `bond_opts`; keys not in [`BOND_OPTIONS`] are left out (the
    /// checker warns about them), a known key with a bad value is an error.
    pub fn from_map(options: &BTreeMap<String, String>) -> Result<Self, InvalidNetworkValue> {
        let mut typed = Self::default();
        for (key, value) in options {
            let error = |expected| InvalidNetworkValue::BondOption {
                key: key.clone(),
                value: value.clone(),
                expected,
            };
            let millis = || {
                value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| error("milliseconds"))
            };
            let word = value.trim();
            match key.as_str() {
                "mode" => {
                    let modes = [
                        ("balance-rr", BondMode::BalanceRr),
                        ("active-backup", BondMode::ActiveBackup),
                        ("balance-xor", BondMode::BalanceXor),
                        ("broadcast", BondMode::Broadcast),
                        ("802.3ad", BondMode::Ieee8023Ad),
                        ("balance-tlb", BondMode::BalanceTlb),
                        ("balance-alb", BondMode::BalanceAlb),
                    ];
                    let by_number = word.parse::<usize>().ok().and_then(|n| modes.get(n));
                    let found = by_number.or_else(|| modes.iter().find(|(name, _)| *name == word));
                    typed.mode = Some(
                        found
                            .ok_or_else(|| error("0 to 6 or balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb"))?
                            .1,
                    );
                }
                "miimon" => typed.miimon = Some(millis()?),
                "updelay" => typed.updelay = Some(millis()?),
                "downdelay" => typed.downdelay = Some(millis()?),
                "lacp_rate" => {
                    typed.lacp_rate = Some(match word {
                        "0" | "slow" => LacpRate::Slow,
                        "1" | "fast" => LacpRate::Fast,
                        _ => return Err(error("slow, fast, 0 or 1")),
                    });
                }
                "xmit_hash_policy" => {
                    typed.xmit_hash_policy = Some(match word {
                        "0" | "layer2" => XmitHashPolicy::Layer2,
                        "1" | "layer3+4" => XmitHashPolicy::Layer34,
                        "2" | "layer2+3" => XmitHashPolicy::Layer23,
                        "3" | "encap2+3" => XmitHashPolicy::Encap23,
                        "4" | "encap3+4" => XmitHashPolicy::Encap34,
                        _ => {
                            return Err(error("layer2, layer3+4, layer2+3, encap2+3 or encap3+4"));
                        }
                    });
                }
                _ => {}
            }
        }
        Ok(typed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn proxy_settings_in_both_spellings() {
        let network: Network = serde_norway::from_str(
            "{http_proxy: 'http://proxy:3128', no_proxy: 'localhost,10.0.0.0/8'}",
        )
        .unwrap();
        assert_eq!(
            network.proxy_environment(),
            vec![
                "HTTP_PROXY=http://proxy:3128",
                "http_proxy=http://proxy:3128",
                "NO_PROXY=localhost,10.0.0.0/8",
                "no_proxy=localhost,10.0.0.0/8",
            ]
        );
        assert!(Network::default().proxy_environment().is_empty());
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn interface_keys() {
        assert!(matches!("eth0".parse(), Ok(InterfaceKey::Name(_))));
        assert!(matches!("eth0.100".parse(), Ok(InterfaceKey::Name(_))));
        assert!(matches!("eth*".parse(), Ok(InterfaceKey::Glob(_))));
        assert_eq!(
            "mac=52:54:00:AB:cd:0f".parse::<InterfaceKey>(),
            Ok(InterfaceKey::Mac(MacAddr([
                0x52, 0x54, 0, 0xab, 0xcd, 0x0f
            ])))
        );
        for bad in ["mac=52:54", "a/b", "eth[0", "waytoolonginterfacename", ""] {
            assert_eq!(
                bad.parse::<InterfaceKey>(),
                Err(InvalidNetworkValue::InterfaceKey(bad.to_owned()))
            );
        }
    }

    #[test]
    fn globs_match_like_a_shell() {
        let glob = |p: &str, n: &str| glob_matches(p.as_bytes(), n.as_bytes());
        assert!(glob("eth*", "eth0"));
        assert!(glob("eth*", "eth"));
        assert!(!glob("eth*", "ens3"));
        assert!(glob("en?3", "ens3"));
        assert!(glob("eth[0-3]", "eth2"));
        assert!(!glob("eth[0-3]", "eth4"));
        assert!(glob("eth[!0]", "eth1"));
        assert!(!glob("eth[!0]", "eth0"));
    }

    #[test]
    fn cidrs() {
        let v4: IpCidr = "192.168.1.10/24".parse().unwrap();
        assert_eq!(v4.addr, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)));
        assert_eq!(v4.prefix_len, 24);
        let v6: IpCidr = "fd00::10/64".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00::10/64");
        for bad in [
            "192.168.1.10",
            "192.168.1.10/33",
            "fd00::/129",
            "x/24",
            "1.2.3.4/",
            "1.2.3.4/+1",
        ] {
            assert_eq!(
                bad.parse::<IpCidr>(),
                Err(InvalidNetworkValue::Cidr(bad.to_owned()))
            );
        }
    }

    #[test]
    fn vlans_take_ids_and_optional_names() {
        let vlans: Vlans = "100, 200:storage".parse().unwrap();
        assert_eq!(
            vlans.0,
            vec![
                Vlan {
                    id: 100,
                    name: None
                },
                Vlan {
                    id: 200,
                    name: Some(InterfaceName::try_from("storage".to_owned()).unwrap())
                }
            ]
        );
        let from_list: Vlans = serde_norway::from_str("[100, '200:storage']").unwrap();
        assert_eq!(from_list, vlans);
        for bad in ["0", "4095", "x", "10:bad/name"] {
            assert_eq!(
                bad.parse::<Vlans>(),
                Err(InvalidNetworkValue::Vlans(bad.to_owned()))
            );
        }
    }

    #[test]
    fn picks_the_most_specific_interface_entry() {
        let network: Network = serde_norway::from_str(
            r#"
interfaces:
  "eth*": {dhcp: true}
  eth1: {address: 10.0.0.2/24}
  mac=52:54:00:00:00:02: {mtu: 9000}
"#,
        )
        .unwrap();
        let mac2 = Some(MacAddr([0x52, 0x54, 0, 0, 0, 2]));
        assert_eq!(
            network
                .config_for("eth1", mac2)
                .and_then(|c| c.address.map(|a| a.prefix_len)),
            Some(24)
        );
        assert_eq!(
            network.config_for("eth2", mac2).and_then(|c| c.mtu),
            Some(9000)
        );
        assert!(network.config_for("eth3", None).is_some_and(|c| c.dhcp));
        assert!(network.config_for("ens3", None).is_none());
        assert_eq!(network.dhcp_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn bond_options_by_name_or_number() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let typed = BondOptions::from_map(&map(&[
            ("mode", "802.3ad"),
            ("miimon", "100"),
            ("lacp_rate", "fast"),
            ("xmit_hash_policy", "layer3+4"),
            ("arp_interval", "10"),
        ]))
        .unwrap();
        assert_eq!(
            typed,
            BondOptions {
                mode: Some(BondMode::Ieee8023Ad),
                miimon: Some(100),
                lacp_rate: Some(LacpRate::Fast),
                xmit_hash_policy: Some(XmitHashPolicy::Layer34),
                ..BondOptions::default()
            }
        );
        assert_eq!(
            BondOptions::from_map(&map(&[("mode", "1")])).unwrap().mode,
            Some(BondMode::ActiveBackup)
        );
        for (key, value) in [("mode", "7"), ("mode", "fast"), ("miimon", "-1")] {
            assert!(matches!(
                BondOptions::from_map(&map(&[(key, value)])),
                Err(InvalidNetworkValue::BondOption { key: k, .. }) if k == key
            ));
        }
    }

    proptest! {
        #[test]
        fn mac_display_round_trips(bytes in proptest::array::uniform6(any::<u8>())) {
            let mac = MacAddr(bytes);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
        }

        #[test]
        fn glob_never_panics(pattern in "[a-z*?\\[\\]!-]{0,12}", name in "[a-z0-9]{0,12}") {
            let _ = glob_matches(pattern.as_bytes(), name.as_bytes());
        }
    }
}
