//! nftables over netlink (`NETLINK_NETFILTER`), encoded here: the few
//! messages we need — a table, base chains, rules made of a handful of
//! expressions ([`rules`]), a rule dump, rule deletion — framed by
//! [`wire`]. Changes go in one batch (`NFNL_MSG_BATCH_BEGIN` … `END`),
//! which the kernel applies all or nothing; every message asks for an
//! ack, so a failure names its message.
//!
//! Numbers come from `linux/netfilter/nf_tables.h` and
//! `linux/netfilter/nfnetlink.h`.

mod rules;
mod wire;

use std::fmt;
use std::io;
use std::time::Duration;

use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

pub(crate) use rules::{
    Chain, Rule, container_comment, dnat, loopback_guard, masquerade_localhost, masquerade_subnet,
};
use rules::{comment_from_userdata, comment_userdata, encode_expr};
use wire::{
    Message, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NLM_F_ACK,
    NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR, attributes,
    error_code, messages,
};

// nf_tables message types
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NF_ACCEPT: u32 = 1;

/// The table that is ours alone; nothing else is touched.
pub(crate) const TABLE: &str = "ros";

/// The `NFT_MSG_NEWRULE` message appending `rule` to its chain.
pub(crate) fn new_rule_message(rule: &Rule, seq: u32) -> Vec<u8> {
    let mut m = Message::nft(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK);
    m.str(NFTA_RULE_TABLE, TABLE)
        .str(NFTA_RULE_CHAIN, rule.chain.name());
    m.nest(NFTA_RULE_EXPRESSIONS, |m| {
        for e in &rule.exprs {
            encode_expr(m, e);
        }
    });
    m.attr(NFTA_RULE_USERDATA, &comment_userdata(&rule.comment));
    m.finish(seq)
}

/// A rule as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedRule {
    pub(crate) chain: String,
    pub(crate) handle: u64,
    pub(crate) comment: Option<String>,
}

/// A change to make, in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Creates the table unless it exists.
    Table,
    /// Creates a NAT base chain unless it exists.
    Chain(Chain),
    AddRule(Rule),
    DeleteRule {
        chain: String,
        handle: u64,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table => write!(f, "creating table ip {TABLE}"),
            Self::Chain(chain) => write!(f, "creating chain ip {TABLE} {}", chain.name()),
            Self::AddRule(rule) => write!(
                f,
                "adding rule \"{}\" to chain {}",
                rule.comment,
                rule.chain.name()
            ),
            Self::DeleteRule { chain, handle } => {
                write!(f, "deleting rule {handle} of chain {chain}")
            }
        }
    }
}

impl Change {
    fn message(&self, seq: u32) -> Vec<u8> {
        match self {
            Self::Table => {
                let mut m = Message::nft(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_ACK);
                m.str(NFTA_TABLE_NAME, TABLE);
                m.finish(seq)
            }
            Self::Chain(chain) => {
                let (hooknum, priority, kind) = chain.hook();
                let mut m = Message::nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK);
                m.str(NFTA_CHAIN_TABLE, TABLE)
                    .str(NFTA_CHAIN_NAME, chain.name());
                m.nest(NFTA_CHAIN_HOOK, |m| {
                    m.be32(NFTA_HOOK_HOOKNUM, hooknum)
                        .attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes());
                });
                m.be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
                    .str(NFTA_CHAIN_TYPE, kind);
                m.finish(seq)
            }
            Self::AddRule(rule) => new_rule_message(rule, seq),
            Self::DeleteRule { chain, handle } => {
                let mut m = Message::nft(NFT_MSG_DELRULE, NLM_F_ACK);
                m.str(NFTA_RULE_TABLE, TABLE)
                    .str(NFTA_RULE_CHAIN, chain)
                    .attr(NFTA_RULE_HANDLE, &handle.to_be_bytes());
                m.finish(seq)
            }
        }
    }
}

/// A failed nftables request.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("netfilter netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: the kernel sent a message that cannot be read")]
    Malformed { what: String },
    #[error("{what}: no answer from the kernel in time")]
    TimedOut { what: String },
}

fn listed_rule(body: &[u8]) -> Option<ListedRule> {
    // Skip the nfgenmsg.
    let mut chain = None;
    let mut handle = None;
    let mut comment = None;
    for (kind, payload) in attributes(body.get(4..)?) {
        match kind {
            NFTA_RULE_CHAIN => {
                let name = payload.strip_suffix(&[0]).unwrap_or(payload);
                chain = String::from_utf8(name.to_vec()).ok();
            }
            NFTA_RULE_HANDLE => handle = Some(u64::from_be_bytes(payload.try_into().ok()?)),
            NFTA_RULE_USERDATA => comment = comment_from_userdata(payload),
            _ => {}
        }
    }
    Some(ListedRule {
        chain: chain?,
        handle: handle?,
        comment,
    })
}

/// A netfilter netlink socket in the current network namespace.
pub(crate) struct Nft {
    socket: Socket,
    seq: u32,
}

impl fmt::Debug for Nft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nft").field("seq", &self.seq).finish()
    }
}

impl Nft {
    /// Opens the socket; every wait for an answer gives up after `timeout`.
    pub(crate) fn open(timeout: Duration) -> Result<Self, NftError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
        socket.bind_auto().map_err(NftError::Socket)?;
        // A zero timeout would mean "wait for ever".
        let timeout = timeout.max(Duration::from_millis(1));
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(
                i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
                i64::from(timeout.subsec_micros()),
            ),
        )
        .map_err(|e| NftError::Socket(e.into()))?;
        Ok(Self {
            socket,
            // Distinct from other sockets' in a trace; any start will do.
            seq: std::process::id(),
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn receive(&self, what: &dyn fmt::Display) -> Result<Vec<u8>, NftError> {
        match self.socket.recv_from_full() {
            Ok((data, _)) => Ok(data),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(NftError::TimedOut {
                what: what.to_string(),
            }),
            Err(e) => Err(NftError::Kernel {
                what: what.to_string(),
                source: e,
            }),
        }
    }

    /// Every rule of our table; none when the table does not exist.
    pub(crate) fn rules(&mut self) -> Result<Vec<ListedRule>, NftError> {
        let what = format!("listing the rules of table ip {TABLE}");
        let seq = self.next_seq();
        let mut m = Message::nft(NFT_MSG_GETRULE, NLM_F_DUMP | NLM_F_ACK);
        m.str(NFTA_RULE_TABLE, TABLE);
        self.socket
            .send(&m.finish(seq), 0)
            .map_err(|source| NftError::Kernel {
                what: what.clone(),
                source,
            })?;
        let mut rules = Vec::new();
        loop {
            let data = self.receive(&what)?;
            for message in messages(&data) {
                let message = message.ok_or_else(|| NftError::Malformed { what: what.clone() })?;
                if message.seq != seq {
                    continue;
                }
                match message.kind {
                    NLMSG_DONE => return Ok(rules),
                    NLMSG_ERROR => match error_code(message.body) {
                        Some(0) => return Ok(rules),
                        Some(errno) if -errno == libc::ENOENT => return Ok(Vec::new()),
                        Some(errno) => {
                            return Err(NftError::Kernel {
                                what,
                                source: io::Error::from_raw_os_error(-errno),
                            });
                        }
                        None => return Err(NftError::Malformed { what }),
                    },
                    _ => {
                        let rule = listed_rule(message.body)
                            .ok_or_else(|| NftError::Malformed { what: what.clone() })?;
                        rules.push(rule);
                        if message.flags & NLM_F_MULTI == 0 {
                            return Ok(rules);
                        }
                    }
                }
            }
        }
    }

    /// Applies `changes` in one batch: all of them or, on the first
    /// failure, none.
    pub(crate) fn apply(&mut self, changes: &[Change]) -> Result<(), NftError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch =
            Message::new(NFNL_MSG_BATCH_BEGIN, 0, 0, NFNL_SUBSYS_NFTABLES).finish(self.next_seq());
        let first = self.seq.wrapping_add(1);
        for change in changes {
            let seq = self.next_seq();
            batch.extend(change.message(seq));
        }
        batch.extend(
            Message::new(NFNL_MSG_BATCH_END, 0, 0, NFNL_SUBSYS_NFTABLES).finish(self.next_seq()),
        );
        let what_batch = format!("applying {} nftables changes", changes.len());
        self.socket
            .send(&batch, 0)
            .map_err(|source| NftError::Kernel {
                what: what_batch.clone(),
                source,
            })?;
        // One answer per change: an ack, or the error of that change.
        let mut answered = 0;
        let mut failure = None;
        while answered < changes.len() {
            let data = self.receive(&what_batch)?;
            for message in messages(&data) {
                let message = message.ok_or_else(|| NftError::Malformed {
                    what: what_batch.clone(),
                })?;
                let index = message.seq.wrapping_sub(first) as usize;
                if message.kind != NLMSG_ERROR || index >= changes.len() {
                    continue;
                }
                answered += 1;
                match error_code(message.body) {
                    Some(0) => {}
                    Some(errno) => {
                        let mut what = changes[index].to_string();
                        if -errno == libc::ENOENT && matches!(changes[index], Change::AddRule(_)) {
                            // The kernel says ENOENT for an expression it lacks.
                            what.push_str(
                                " (does the kernel have nft_nat, nft_masq and nft_fib_ipv4?)",
                            );
                        }
                        // The first failing change explains the rest.
                        failure.get_or_insert(NftError::Kernel {
                            what,
                            source: io::Error::from_raw_os_error(-errno),
                        });
                    }
                    None => {
                        return Err(NftError::Malformed {
                            what: what_batch.clone(),
                        });
                    }
                }
            }
            // After an error the kernel may not ack the aborted rest.
            if failure.is_some() {
                break;
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::rules::*;
    use super::wire::*;
    use super::*;
    use std::net::Ipv4Addr;

    /// `nft add rule ip ros prerouting iifname != "ros0" fib daddr type
    /// local meta l4proto tcp th dport 8080 dnat to 172.18.0.2:80 comment
    /// "ros container web"` as this module encodes it. The kernel took
    /// these bytes, and `nft list table ip ros` printed the rule back as
    /// written above (`tests/netns.rs` checks that after a real `up`).
    const DNAT_RULE: &[&str] = &[
        // nlmsghdr: length 560, NFT_MSG_NEWRULE (subsystem 10), REQUEST|ACK|CREATE|APPEND, seq 42
        "30020000060a050c2a00000000000000",
        // nfgenmsg: NFPROTO_IPV4, version 0, res_id 0
        "02000000",
        // NFTA_RULE_TABLE "ros"
        "08000100726f7300",
        // NFTA_RULE_CHAIN "prerouting"
        "0f000200707265726f7574696e670000",
        // NFTA_RULE_EXPRESSIONS, nested
        "ec010480",
        // meta load iifname => reg 1
        "24000180090001006d657461000000001400028008000200000000060800010000000001",
        // cmp neq reg 1 "ros0" (16 bytes)
        "3800018008000100636d70002c000280080001000000000108000200000000011800038014000100726f7330000000000000000000000000",
        // fib daddr type => reg 1
        "2800018008000100666962001c000280080001000000000108000200000000030800030000000002",
        // cmp eq reg 1 RTN_LOCAL (host order)
        "2c00018008000100636d700020000280080001000000000108000200000000000c0003800800010002000000",
        // meta load l4proto => reg 1
        "24000180090001006d657461000000001400028008000200000000100800010000000001",
        // cmp eq reg 1 6 (tcp)
        "2c00018008000100636d700020000280080001000000000108000200000000000c0003800500010006000000",
        // payload load 2b @ transport header + 2 => reg 1
        "340001800c0001007061796c6f616400240002800800010000000001080002000000000208000300000000020800040000000002",
        // cmp eq reg 1 8080 (big endian)
        "2c00018008000100636d700020000280080001000000000108000200000000000c000380060001001f900000",
        // immediate reg 1 172.18.0.2
        "2c0001800e000100696d6d6564696174650000001800028008000100000000010c00028008000100ac120002",
        // immediate reg 2 80 (big endian)
        "2c0001800e000100696d6d6564696174650000001800028008000100000000020c0002800600010000500000",
        // nat dnat ip addr_min reg 1 proto_min reg 2
        "30000180080001006e617400240002800800010000000001080002000000000208000300000000010800050000000002",
        // NFTA_RULE_USERDATA: nft comment record "ros container web"
        "180007000012726f7320636f6e7461696e65722077656200",
    ];

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_dnat_rule_encodes_to_the_bytes_the_kernel_accepted() {
        let rule = dnat(
            Chain::Prerouting,
            "ros0",
            6,
            8080,
            Ipv4Addr::new(172, 18, 0, 2),
            80,
            "web",
        );
        assert_eq!(hex(&new_rule_message(&rule, 42)), DNAT_RULE.concat());
    }

    #[test]
    fn a_listed_rule_gives_its_chain_handle_and_comment() {
        // What the kernel sends for each rule of a dump.
        let mut m = Message::nft(NFT_MSG_NEWRULE, NLM_F_MULTI);
        m.str(NFTA_RULE_TABLE, TABLE)
            .str(NFTA_RULE_CHAIN, "output")
            .attr(NFTA_RULE_HANDLE, &7u64.to_be_bytes());
        m.nest(NFTA_RULE_EXPRESSIONS, |m| encode_expr(m, &Expr::Masquerade));
        m.attr(NFTA_RULE_USERDATA, &comment_userdata("ros container db"));
        let bytes = m.finish(9);
        let mut all = messages(&bytes);
        let message = all.next().unwrap().unwrap();
        assert!(all.next().is_none());
        assert_eq!((message.seq, message.flags & NLM_F_MULTI), (9, NLM_F_MULTI));
        assert_eq!(
            listed_rule(message.body),
            Some(ListedRule {
                chain: "output".into(),
                handle: 7,
                comment: Some("ros container db".into()),
            })
        );
        // A message cut short is reported, not read past its end.
        let cut = &bytes[..bytes.len() - 8];
        assert!(messages(cut).next().unwrap().is_none());
    }

    #[test]
    fn batches_are_framed_for_the_nftables_subsystem() {
        let begin = Message::new(NFNL_MSG_BATCH_BEGIN, 0, 0, NFNL_SUBSYS_NFTABLES).finish(1);
        // length 20, type 0x10, REQUEST, seq 1, AF_UNSPEC, res_id 10 big endian.
        assert_eq!(hex(&begin), "140000001000010001000000000000000000000a");
    }

    /// Runs `f` on a thread in a new, empty network namespace (root).
    fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("unshare(CLONE_NEWNET) needs root");
                    f()
                })
                .join()
                .unwrap()
        })
    }

    #[test]
    fn the_kernel_applies_a_batch_whole_or_not_at_all_and_lists_our_rules() {
        in_new_netns(|| {
            let mut nft = Nft::open(Duration::from_secs(2)).unwrap();
            assert_eq!(nft.rules().unwrap(), vec![], "no table yet");
            let to = Ipv4Addr::new(172, 18, 0, 2);
            let rule = |chain| dnat(chain, "ros0", 6, 8080, to, 80, "web");
            // The output chain is missing: the third change fails, and
            // the table and chain before it are not made either.
            let error = nft
                .apply(&[
                    Change::Table,
                    Change::Chain(Chain::Prerouting),
                    Change::AddRule(rule(Chain::Output)),
                ])
                .unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("adding rule \"ros container web\" to chain output"),
                "{error}"
            );
            assert!(matches!(&error, NftError::Kernel { source, .. }
                if source.raw_os_error() == Some(libc::ENOENT)));
            assert_eq!(nft.rules().unwrap(), vec![], "nothing was made");

            let mut changes = vec![Change::Table];
            changes.extend(Chain::ALL.map(Change::Chain));
            changes.push(Change::AddRule(rule(Chain::Prerouting)));
            changes.push(Change::AddRule(masquerade_localhost("ros0")));
            nft.apply(&changes).unwrap();
            // Again: tables and chains are made only once.
            nft.apply(&changes[..5]).unwrap();
            let rules = nft.rules().unwrap();
            assert_eq!(rules.len(), 2, "{rules:?}");
            assert_eq!(rules[0].chain, "prerouting");
            assert_eq!(rules[0].comment.as_deref(), Some("ros container web"));
            assert_eq!(rules[1].chain, "postrouting");
            assert_eq!(rules[1].comment.as_deref(), Some("ros localhost to ros0"));

            nft.apply(&[Change::DeleteRule {
                chain: rules[0].chain.clone(),
                handle: rules[0].handle,
            }])
            .unwrap();
            assert_eq!(nft.rules().unwrap(), rules[1..].to_vec());
        });
    }

    #[test]
    fn comments_round_trip_through_userdata() {
        let data = comment_userdata("ros container web");
        assert_eq!(data[0], 0);
        assert_eq!(usize::from(data[1]), "ros container web".len() + 1);
        assert_eq!(
            comment_from_userdata(&data).as_deref(),
            Some("ros container web")
        );
        // Another record before ours is skipped.
        let mut two = vec![7, 2, 0xaa, 0xbb];
        two.extend(&data);
        assert_eq!(
            comment_from_userdata(&two).as_deref(),
            Some("ros container web")
        );
        assert_eq!(comment_from_userdata(&[0, 9, 1]), None);
    }
}
