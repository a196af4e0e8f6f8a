//! Validated newtypes: a value of one of these types has been checked, so
//! the code that uses it does not check again.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// Why a string is not a valid value of a newtype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// Not an RFC 1123 host name.
    #[error(
        "`{0}` is not a valid hostname (labels of letters, digits and `-`, at most 63 characters each, 253 in all)"
    )]
    Hostname(String),
    /// Not a usable service name.
    #[error(transparent)]
    ServiceName(#[from] InvalidServiceName),
    /// Not an octal file mode.
    #[error("`{0}` is not a file mode (octal like 0644, at most 07777)")]
    FileMode(String),
    /// Not an absolute path.
    #[error("`{0}` is not an absolute path")]
    AbsolutePath(String),
    /// Not a size.
    #[error("`{0}` is not a size (a number of bytes, or with a suffix b, k, m or g, like 512m)")]
    ByteSize(String),
    /// Not a domain name.
    #[error(
        "`{0}` is not a domain name (labels of letters, digits and `-`, at most 63 characters each, 253 in all)"
    )]
    DomainName(String),
    /// Not a capability the kernel has.
    #[error(
        "`{0}` is not a Linux capability (like NET_ADMIN, CAP_SYS_ADMIN or ALL; see capabilities(7))"
    )]
    Capability(String),
    /// Not a signal.
    #[error(
        "`{0}` is not a signal (a name like SIGTERM or TERM, or a number 1..=64; see signal(7))"
    )]
    Signal(String),
}

/// A host name as RFC 1123 allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Hostname(String);

impl Hostname {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Hostname {
    type Error = InvalidValue;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(InvalidValue::Hostname(name));
        }
        Ok(Self(name))
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS domain name (`rancher.network.dns.search`): the labels of a
/// [`Hostname`], with the root's trailing dot allowed, so a search line of
/// `resolv.conf` never carries a blank or a stray character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct DomainName(String);

impl DomainName {
    /// The name, as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DomainName {
    type Error = InvalidValue;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let bare = name.strip_suffix('.').unwrap_or(&name).to_owned();
        match Hostname::try_from(bare) {
            Ok(_) => Ok(Self(name)),
            Err(_) => Err(InvalidValue::DomainName(name)),
        }
    }
}

impl PartialEq<&str> for DomainName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a system service (`console`, `user-containerd`): also its
/// containerd container id, its cgroup and its log file name, so it is kept
/// to what all of them accept. The one definition for the schema and for
/// the system-services crate, so `ros config validate` refuses exactly
/// the names the boot would.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ServiceName(String);

/// Why a service name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{name}` is not a valid service name: {reason} (lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 63 characters)"
)]
pub struct InvalidServiceName {
    /// The name as given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ServiceName {
    /// Checks `name`: lowercase, because containerd ids and cgroup names
    /// are case-sensitive and RancherOS names were lowercase; at most 63
    /// characters, a DNS label, because the name is also a host name.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidServiceName> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 63 {
            Some("it is longer than 63 characters")
        } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            Some("it must start with a lowercase letter or a digit")
        } else if !name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        }) {
            Some("only lowercase letters, digits, '-', '_' and '.' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidServiceName { name, reason }),
            None => Ok(Self(name)),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceName {
    type Error = InvalidServiceName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl FromStr for ServiceName {
    type Err = InvalidServiceName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// File permission bits, written in octal (`"0644"`, `0755`, `"0o600"`).
///
/// A bare YAML number like `644` is read as its digits in octal, because
/// that is what everyone who writes it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileMode(u32);

impl FileMode {
    /// The mode bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl FromStr for FileMode {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        let valid = !digits.is_empty()
            && digits.len() <= 5
            && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if valid && bits <= 0o7777 => Ok(Self(bits)),
            _ => Err(InvalidValue::FileMode(text.to_owned())),
        }
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let super::scalar::ScalarText(text) = Deserialize::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// An absolute filesystem path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct AbsolutePath(String);

impl AbsolutePath {
    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A path of this crate's own defaults, absolute as written: no
    /// user input reaches it (`a_built_in_path_is_absolute` checks them).
    pub(crate) fn built_in(path: &'static str) -> Self {
        debug_assert!(path.starts_with('/'), "{path} is not absolute");
        Self(path.to_owned())
    }
}

impl TryFrom<String> for AbsolutePath {
    type Error = InvalidValue;

    fn try_from(path: String) -> Result<Self, Self::Error> {
        if path.starts_with('/') && !path.contains('\0') {
            Ok(Self(path))
        } else {
            Err(InvalidValue::AbsolutePath(path))
        }
    }
}

impl fmt::Display for AbsolutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A memory size in bytes, written as compose does (`512m`, `1g`, `65536`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let unit_at = lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(unit_at);
        let multiplier: u64 = match unit {
            "" | "b" => 1,
            "k" | "kb" => 1 << 10,
            "m" | "mb" => 1 << 20,
            "g" | "gb" => 1 << 30,
            _ => return Err(InvalidValue::ByteSize(text.to_owned())),
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .map(Self)
            .ok_or_else(|| InvalidValue::ByteSize(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let super::scalar::ScalarText(text) = Deserialize::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A Linux capability the kernel has (checked against the `caps` crate's
/// list), kept in the `CAP_` form (`ALL` stays `ALL`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Capability(String);

impl Capability {
    /// `CAP_NET_ADMIN`, or `ALL`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Capability {
    type Error = InvalidValue;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let upper = name.to_ascii_uppercase();
        if upper == "ALL" {
            return Ok(Self(upper));
        }
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        let full = format!("CAP_{bare}");
        // The caps crate's list is the kernel's: a typo like SYS_TIEM is
        // refused here, with its key path, not when the container is made.
        if full.parse::<caps::Capability>().is_ok() {
            Ok(Self(full))
        } else {
            Err(InvalidValue::Capability(name))
        }
    }
}

/// A signal, as compose's `stop_signal` names it: `SIGTERM`, `TERM` or
/// `15`; kept as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(u8);

/// Linux's standard signals on x86-64 and arm64, by number - 1.
const SIGNAL_NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

impl Signal {
    /// SIGTERM, what a service is stopped with unless it says otherwise.
    pub const TERM: Self = Self(15);

    /// The signal's number.
    pub fn number(self) -> u32 {
        u32::from(self.0)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match usize::from(self.0)
            .checked_sub(1)
            .and_then(|i| SIGNAL_NAMES.get(i))
        {
            Some(name) => write!(f, "SIG{name}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl FromStr for Signal {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidValue::Signal(text.to_owned());
        if let Ok(number) = text.parse::<u8>() {
            // 1..=31 standard, 32..=64 real-time (SIGRTMIN+n).
            return (1..=64)
                .contains(&number)
                .then_some(Self(number))
                .ok_or_else(invalid);
        }
        let upper = text.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        SIGNAL_NAMES
            .iter()
            .position(|name| *name == bare)
            .and_then(|index| u8::try_from(index + 1).ok())
            .map(Self)
            .ok_or_else(invalid)
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let super::scalar::ScalarText(text) = Deserialize::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_names_with_or_without_sig_or_numbers() {
        for (text, number) in [
            ("SIGTERM", 15),
            ("TERM", 15),
            ("sigkill", 9),
            ("Hup", 1),
            ("SIGSYS", 31),
            ("9", 9),
            ("64", 64),
        ] {
            assert_eq!(
                text.parse::<Signal>().map(Signal::number),
                Ok(number),
                "{text}"
            );
        }
        for bad in ["", "SIG", "SIGTREM", "0", "65", "-9", "TERM ", "SIGRTMIN"] {
            assert_eq!(
                bad.parse::<Signal>(),
                Err(InvalidValue::Signal(bad.to_owned()))
            );
        }
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
        assert_eq!(
            "40".parse::<Signal>().map(|s| s.to_string()),
            Ok("40".into())
        );
    }

    #[test]
    fn hostnames() {
        for good in ["a", "node-1", "rancher.example.com", &"a".repeat(63)] {
            assert_eq!(
                Hostname::try_from(good.to_owned()).map(|h| h.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "under_score",
            "sp ace",
            &"a".repeat(64),
        ] {
            assert_eq!(
                Hostname::try_from(bad.to_owned()),
                Err(InvalidValue::Hostname(bad.to_owned()))
            );
        }
    }

    #[test]
    fn search_domains_are_domain_names() {
        for good in ["lan", "corp.example.com", "example.com."] {
            assert_eq!(
                DomainName::try_from(good.to_owned()).map(|d| d.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in ["", ".", "a b", "a..b", "x;rm", "-lan"] {
            assert_eq!(
                DomainName::try_from(bad.to_owned()),
                Err(InvalidValue::DomainName(bad.to_owned()))
            );
        }
    }

    #[test]
    fn file_modes_read_as_octal() {
        let modes = [
            ("0644", 0o644),
            ("644", 0o644),
            ("0o600", 0o600),
            ("4755", 0o4755),
            ("0", 0),
        ];
        for (text, bits) in modes {
            assert_eq!(
                text.parse::<FileMode>().map(FileMode::bits),
                Ok(bits),
                "{text}"
            );
        }
        for bad in ["", "0800", "rw-r--r--", "077777", "-1"] {
            assert_eq!(
                bad.parse::<FileMode>(),
                Err(InvalidValue::FileMode(bad.to_owned()))
            );
        }
        let mode: FileMode = serde_norway::from_str("0755").unwrap();
        assert_eq!(mode.to_string(), "0755");
    }

    #[test]
    fn byte_sizes() {
        let sizes = [
            ("512m", 512 << 20),
            ("1g", 1 << 30),
            ("64K", 64 << 10),
            ("100", 100),
            ("10b", 10),
        ];
        for (text, bytes) in sizes {
            assert_eq!(
                text.parse::<ByteSize>().map(ByteSize::bytes),
                Ok(bytes),
                "{text}"
            );
        }
        for bad in ["", "m", "1t", "1.5g", "99999999999999999999g"] {
            assert_eq!(
                bad.parse::<ByteSize>(),
                Err(InvalidValue::ByteSize(bad.to_owned()))
            );
        }
    }

    #[test]
    fn capabilities_are_normalised() {
        let cap = |text: &str| Capability::try_from(text.to_owned()).map(|c| c.as_str().to_owned());
        assert_eq!(cap("net_admin"), Ok("CAP_NET_ADMIN".into()));
        assert_eq!(cap("CAP_SYS_ADMIN"), Ok("CAP_SYS_ADMIN".into()));
        assert_eq!(cap("all"), Ok("ALL".into()));
        assert_eq!(cap("CAP_"), Err(InvalidValue::Capability("CAP_".into())));
        assert_eq!(
            cap("bad-cap"),
            Err(InvalidValue::Capability("bad-cap".into()))
        );
    }

    #[test]
    fn a_capability_the_kernel_does_not_have_is_refused() {
        let cap = |text: &str| Capability::try_from(text.to_owned()).map(|c| c.as_str().to_owned());
        assert_eq!(
            cap("SYS_TIEM"),
            Err(InvalidValue::Capability("SYS_TIEM".into()))
        );
        assert_eq!(
            cap("CAP_FOO"),
            Err(InvalidValue::Capability("CAP_FOO".into()))
        );
        assert_eq!(cap("sys_time"), Ok("CAP_SYS_TIME".into()));
        assert_eq!(
            cap("CAP_CHECKPOINT_RESTORE"),
            Ok("CAP_CHECKPOINT_RESTORE".into())
        );
        // Every name the crate knows is accepted.
        for known in caps::all() {
            assert_eq!(cap(&known.to_string()), Ok(known.to_string()));
        }
    }

    #[test]
    fn service_names_follow_the_stricter_rule_of_the_boot() {
        for good in [
            "user-containerd",
            "open-vm-tools",
            "ntp",
            "ntp.v2",
            "0day",
            &"a".repeat(63),
        ] {
            assert_eq!(
                good.parse::<ServiceName>().map(|n| n.to_string()),
                Ok(good.to_owned())
            );
        }
        let long = "a".repeat(64);
        let cases = [
            ("", "it is empty"),
            (
                "Console",
                "it must start with a lowercase letter or a digit",
            ),
            ("-x", "it must start with a lowercase letter or a digit"),
            (
                "ntpD",
                "only lowercase letters, digits, '-', '_' and '.' are allowed",
            ),
            (
                "a b",
                "only lowercase letters, digits, '-', '_' and '.' are allowed",
            ),
            (
                "a/b",
                "only lowercase letters, digits, '-', '_' and '.' are allowed",
            ),
            (long.as_str(), "it is longer than 63 characters"),
        ];
        for (name, reason) in cases {
            assert_eq!(
                name.parse::<ServiceName>(),
                Err(InvalidServiceName {
                    name: name.to_owned(),
                    reason
                })
            );
        }
    }
}
