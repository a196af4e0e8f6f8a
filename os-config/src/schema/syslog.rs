//! `rancher.syslog`: where the syslog service (rsyslog) also sends every
//! line. RancherOS had no key for this (its users dropped an rsyslog file
//! in with `write_files` and `container: syslog`, which works here too);
//! this one setting covers the common case:
//!
//! ```yaml
//! rancher:
//!   syslog:
//!     forward: [udp://10.0.0.1:514, tcp://logs.example.com:6514]
//! ```
//!
//! PID 1 turns it into an rsyslog drop-in ([`Syslog::rsyslog_conf`]) given
//! to the syslog service as its own file.

use std::fmt;

use serde::Deserialize;

/// `rancher.syslog`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Syslog {
    /// Remote hosts every line is forwarded to.
    pub forward: Vec<ForwardTarget>,
}

/// The port syslog uses when a target gives none.
pub const DEFAULT_PORT: u16 = 514;

/// How a line travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// One remote syslog receiver: `udp://HOST[:PORT]` or `tcp://HOST[:PORT]`,
/// HOST a name, an IPv4 address or a bracketed IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ForwardTarget {
    pub transport: Transport,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
}

/// Why a forward target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{target}` is not a syslog target (udp://HOST[:PORT] or tcp://HOST[:PORT]): {reason}")]
pub struct InvalidTarget {
    pub target: String,
    pub reason: &'static str,
}

impl TryFrom<String> for ForwardTarget {
    type Error = InvalidTarget;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl std::str::FromStr for ForwardTarget {
    type Err = InvalidTarget;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| InvalidTarget {
            target: text.to_owned(),
            reason,
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or(refuse("no udp:// or tcp://"))?;
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            _ => return Err(refuse("the scheme is not udp or tcp")),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or(refuse("an IPv6 address without its closing ]"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(refuse("not an IPv6 address between [ ]"));
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(refuse("text after ]"))?),
            };
            (host, port)
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or(refuse("the port is not a number from 1 to 65535"))?,
        };
        let name_like = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        if !name_like && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(refuse("the host is not a name or an address"));
        }
        Ok(Self {
            transport,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.transport.as_str();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Syslog {
    /// The rsyslog drop-in that forwards every line to each target, or
    /// `None` when there is none. Each target has its own queue, retried
    /// for ever: a receiver that is down holds back neither the local
    /// files nor the other targets.
    pub fn rsyslog_conf(&self) -> Option<String> {
        if self.forward.is_empty() {
            return None;
        }
        let mut conf = String::from("# Written by ros from rancher.syslog.forward.\n");
        for target in &self.forward {
            // The host is a name or an address: no quote can be in it.
            conf.push_str(&format!(
                "*.* action(type=\"omfwd\" target=\"{}\" port=\"{}\" protocol=\"{}\" \
                 queue.type=\"LinkedList\" queue.size=\"10000\" \
                 action.resumeRetryCount=\"-1\" action.resumeInterval=\"5\")\n",
                target.host,
                target.port,
                target.transport.as_str(),
            ));
        }
        Some(conf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Result<ForwardTarget, InvalidTarget> {
        text.parse::<ForwardTarget>()
    }

    #[test]
    fn targets_name_their_transport_host_and_port() {
        let cases = [
            ("udp://10.0.0.1:514", Transport::Udp, "10.0.0.1", 514),
            (
                "tcp://logs.example.com:6514",
                Transport::Tcp,
                "logs.example.com",
                6514,
            ),
            ("udp://loghost", Transport::Udp, "loghost", DEFAULT_PORT),
            ("tcp://[fd00::1]:601", Transport::Tcp, "fd00::1", 601),
            ("tcp://[fd00::1]", Transport::Tcp, "fd00::1", DEFAULT_PORT),
        ];
        for (text, transport, host, port) in cases {
            let parsed = target(text).unwrap();
            assert_eq!(
                (parsed.transport, parsed.host.as_str(), parsed.port),
                (transport, host, port),
                "{text}"
            );
        }
        assert_eq!(
            target("udp://loghost").unwrap().to_string(),
            "udp://loghost:514"
        );
        assert_eq!(
            target("tcp://[fd00::1]").unwrap().to_string(),
            "tcp://[fd00::1]:514"
        );
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        let cases = [
            ("10.0.0.1:514", "no udp:// or tcp://"),
            ("http://x", "the scheme is not udp or tcp"),
            ("udp://x:0", "the port is not a number from 1 to 65535"),
            ("udp://x:70000", "the port is not a number from 1 to 65535"),
            ("tcp://", "the host is not a name or an address"),
            ("tcp://a\"b", "the host is not a name or an address"),
            ("tcp://[fd00::1", "an IPv6 address without its closing ]"),
            ("tcp://[x]:1", "not an IPv6 address between [ ]"),
        ];
        for (text, reason) in cases {
            let error = target(text).unwrap_err().to_string();
            assert!(error.ends_with(reason), "{text}: {error}");
            assert!(error.starts_with(&format!("`{text}` is not a syslog target")));
        }
    }

    #[test]
    fn forwarding_becomes_one_omfwd_action_per_target() {
        let syslog: Syslog =
            serde_norway::from_str("forward: [udp://10.0.2.2:5514, 'tcp://[fd00::1]:601']")
                .unwrap();
        let conf = syslog.rsyslog_conf().unwrap();
        let actions: Vec<&str> = conf.lines().filter(|l| l.starts_with("*.*")).collect();
        assert_eq!(actions.len(), 2, "{conf}");
        assert!(
            actions[0].starts_with(
                "*.* action(type=\"omfwd\" target=\"10.0.2.2\" port=\"5514\" protocol=\"udp\""
            ),
            "{conf}"
        );
        assert!(
            actions[1].starts_with(
                "*.* action(type=\"omfwd\" target=\"fd00::1\" port=\"601\" protocol=\"tcp\""
            ),
            "{conf}"
        );
        assert!(
            actions
                .iter()
                .all(|a| a.contains("queue.type=\"LinkedList\""))
        );
    }

    #[test]
    fn no_targets_means_no_drop_in() {
        assert_eq!(Syslog::default().rsyslog_conf(), None);
    }
}
