//! The rules we write, as expressions, and how each expression is
//! encoded. Integers are big endian; data compared with a register is in
//! packet order (and in host order for values the kernel itself stores,
//! like `fib`'s address type).

use std::net::Ipv4Addr;

use super::wire::{Message, NFPROTO_IPV4};

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
/// `nft`'s own userdata record for a rule comment, so `nft list` shows ours.
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;

/// Our base chains: where each hooks in, its type and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chain {
    /// Filter at `raw` priority (-300), before conntrack and NAT.
    Guard,
    /// NAT at `dstnat` (-100).
    Prerouting,
    /// NAT at -100.
    Output,
    /// NAT at `srcnat` (100).
    Postrouting,
}

impl Chain {
    pub(crate) const ALL: [Self; 4] = [
        Self::Guard,
        Self::Prerouting,
        Self::Output,
        Self::Postrouting,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Guard => "guard",
            Self::Prerouting => "prerouting",
            Self::Output => "output",
            Self::Postrouting => "postrouting",
        }
    }

    /// `NF_INET_*` hook number, priority and chain type.
    pub(super) fn hook(self) -> (u32, i32, &'static str) {
        match self {
            Self::Guard => (0, -300, "filter"),
            Self::Prerouting => (0, -100, "nat"),
            Self::Output => (3, -100, "nat"),
            Self::Postrouting => (4, 100, "nat"),
        }
    }
}

/// A rule expression: the few `nft` needs for NAT and port matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// `meta KEY => reg 1`.
    Meta(MetaKey),
    /// Compare reg 1 with bytes.
    Cmp {
        eq: bool,
        data: Vec<u8>,
    },
    /// `LEN bytes at OFFSET of the network (1) or transport (2) header => reg 1`.
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    /// reg 1 = reg 1 & mask (xor 0).
    And {
        mask: Vec<u8>,
    },
    /// `fib daddr type => reg 1`.
    FibDaddrType,
    /// Loads a constant into a register.
    Immediate {
        reg: u32,
        data: Vec<u8>,
    },
    /// `dnat ip to reg 1 : reg 2` (address, then port).
    Dnat,
    Masquerade,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaKey {
    IifName = 6,
    OifName = 7,
    L4Proto = 16,
}

/// One rule: its chain, expressions and the comment that tags it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) chain: Chain,
    pub(crate) exprs: Vec<Expr>,
    pub(crate) comment: String,
}

/// An interface name as `meta iifname` loads it: 16 bytes, NUL padded.
fn ifname(name: &str) -> Vec<u8> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.resize(16, 0);
    bytes
}

/// Source addresses in `network/prefix_len`.
fn saddr_in(network: Ipv4Addr, prefix_len: u8) -> [Expr; 3] {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    [
        Expr::Payload {
            base: 1,
            offset: 12,
            len: 4,
        },
        Expr::And {
            mask: mask.to_be_bytes().to_vec(),
        },
        Expr::Cmp {
            eq: true,
            data: network.octets().to_vec(),
        },
    ]
}

/// `ip saddr NETWORK oifname != BRIDGE masquerade`: containers reach
/// the world with the host's address.
pub(crate) fn masquerade_subnet(network: Ipv4Addr, prefix_len: u8, bridge: &str) -> Rule {
    let mut exprs = saddr_in(network, prefix_len).to_vec();
    exprs.extend([
        Expr::Meta(MetaKey::OifName),
        Expr::Cmp {
            eq: false,
            data: ifname(bridge),
        },
        Expr::Masquerade,
    ]);
    Rule {
        chain: Chain::Postrouting,
        exprs,
        comment: format!("ros masquerade {network}/{prefix_len} via {bridge}"),
    }
}

/// `ip saddr 127.0.0.0/8 oifname BRIDGE masquerade`: a connection the
/// host made to 127.0.0.1:PORT leaves for a container with the gateway's
/// address, which the container can answer.
pub(crate) fn masquerade_localhost(bridge: &str) -> Rule {
    let mut exprs = saddr_in(Ipv4Addr::new(127, 0, 0, 0), 8).to_vec();
    exprs.extend([
        Expr::Meta(MetaKey::OifName),
        Expr::Cmp {
            eq: true,
            data: ifname(bridge),
        },
        Expr::Masquerade,
    ]);
    Rule {
        chain: Chain::Postrouting,
        exprs,
        comment: format!("ros localhost to {bridge}"),
    }
}

/// `iifname BRIDGE ip daddr 127.0.0.0/8 drop`, before anything else: with
/// `route_localnet` on the bridge, the kernel would otherwise route such
/// packets from a container to the host's loopback services. Replies to
/// the host's own `127.0.0.1` connections arrive for the gateway address
/// (masqueraded) and are turned back into 127.0.0.1 only later, by NAT.
pub(crate) fn loopback_guard(bridge: &str) -> Rule {
    Rule {
        chain: Chain::Guard,
        exprs: vec![
            Expr::Meta(MetaKey::IifName),
            Expr::Cmp {
                eq: true,
                data: ifname(bridge),
            },
            Expr::Payload {
                base: 1,
                offset: 16,
                len: 4,
            },
            Expr::And {
                mask: vec![255, 0, 0, 0],
            },
            Expr::Cmp {
                eq: true,
                data: vec![127, 0, 0, 0],
            },
            Expr::Drop,
        ],
        comment: format!("ros loopback guard for {bridge}"),
    }
}

/// The comment tagging every rule of container `id`.
pub(crate) fn container_comment(id: &str) -> String {
    format!("ros container {id}")
}

/// `[iifname != BRIDGE] fib daddr type local meta l4proto P th dport
/// HOST dnat to ADDR:PORT`: a published port. In `prerouting` it takes
/// what arrives from anywhere but the bridge; in `output`, what the host
/// itself sends to one of its addresses.
pub(crate) fn dnat(
    chain: Chain,
    bridge: &str,
    proto: u8,
    host_port: u16,
    to: Ipv4Addr,
    to_port: u16,
    id: &str,
) -> Rule {
    let mut exprs = Vec::new();
    if chain == Chain::Prerouting {
        exprs.extend([
            Expr::Meta(MetaKey::IifName),
            Expr::Cmp {
                eq: false,
                data: ifname(bridge),
            },
        ]);
    }
    exprs.extend([
        Expr::FibDaddrType,
        Expr::Cmp {
            eq: true,
            // RTN_LOCAL, a u32 in host order.
            data: 2u32.to_ne_bytes().to_vec(),
        },
        Expr::Meta(MetaKey::L4Proto),
        Expr::Cmp {
            eq: true,
            data: vec![proto],
        },
        Expr::Payload {
            base: 2,
            offset: 2,
            len: 2,
        },
        Expr::Cmp {
            eq: true,
            data: host_port.to_be_bytes().to_vec(),
        },
        Expr::Immediate {
            reg: NFT_REG_1,
            data: to.octets().to_vec(),
        },
        Expr::Immediate {
            reg: NFT_REG_2,
            data: to_port.to_be_bytes().to_vec(),
        },
        Expr::Dnat,
    ]);
    Rule {
        chain,
        exprs,
        comment: container_comment(id),
    }
}

fn expr(m: &mut Message, name: &str, data: impl FnOnce(&mut Message)) {
    m.nest(NFTA_LIST_ELEM, |m| {
        m.str(NFTA_EXPR_NAME, name);
        m.nest(NFTA_EXPR_DATA, data);
    });
}

// Expression attributes, per expression (`NFTA_<EXPR>_*`), and values.
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFT_REG_VERDICT: u32 = 0;
const NF_DROP: u32 = 0;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFT_NAT_DNAT: u32 = 1;

/// Appends `data` nested as an `NFTA_DATA_VALUE`.
fn value(m: &mut Message, kind: u16, data: &[u8]) {
    m.nest(kind, |m| {
        m.attr(NFTA_DATA_VALUE, data);
    });
}

pub(super) fn encode_expr(m: &mut Message, e: &Expr) {
    match e {
        Expr::Meta(key) => expr(m, "meta", |m| {
            m.be32(NFTA_META_KEY, *key as u32)
                .be32(NFTA_META_DREG, NFT_REG_1);
        }),
        Expr::Cmp { eq, data } => expr(m, "cmp", |m| {
            let op = if *eq { NFT_CMP_EQ } else { NFT_CMP_NEQ };
            m.be32(NFTA_CMP_SREG, NFT_REG_1).be32(NFTA_CMP_OP, op);
            value(m, NFTA_CMP_DATA, data);
        }),
        Expr::Payload { base, offset, len } => expr(m, "payload", |m| {
            m.be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
                .be32(NFTA_PAYLOAD_BASE, *base)
                .be32(NFTA_PAYLOAD_OFFSET, *offset)
                .be32(NFTA_PAYLOAD_LEN, *len);
        }),
        Expr::And { mask } => expr(m, "bitwise", |m| {
            let len = u32::try_from(mask.len()).unwrap_or(0);
            m.be32(NFTA_BITWISE_SREG, NFT_REG_1)
                .be32(NFTA_BITWISE_DREG, NFT_REG_1)
                .be32(NFTA_BITWISE_LEN, len);
            value(m, NFTA_BITWISE_MASK, mask);
            value(m, NFTA_BITWISE_XOR, &vec![0; mask.len()]);
        }),
        Expr::FibDaddrType => expr(m, "fib", |m| {
            m.be32(NFTA_FIB_DREG, NFT_REG_1)
                .be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE)
                .be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
        }),
        Expr::Immediate { reg, data } => expr(m, "immediate", |m| {
            m.be32(NFTA_IMMEDIATE_DREG, *reg);
            value(m, NFTA_IMMEDIATE_DATA, data);
        }),
        Expr::Dnat => expr(m, "nat", |m| {
            m.be32(NFTA_NAT_TYPE, NFT_NAT_DNAT)
                .be32(NFTA_NAT_FAMILY, u32::from(NFPROTO_IPV4))
                .be32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1)
                .be32(NFTA_NAT_REG_PROTO_MIN, NFT_REG_2);
        }),
        Expr::Masquerade => expr(m, "masq", |_| {}),
        Expr::Drop => expr(m, "immediate", |m| {
            m.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            m.nest(NFTA_IMMEDIATE_DATA, |m| {
                m.nest(NFTA_DATA_VERDICT, |m| {
                    m.be32(NFTA_VERDICT_CODE, NF_DROP);
                });
            });
        }),
    }
}

/// `nft`'s comment record: type, length, the text with its NUL.
pub(super) fn comment_userdata(comment: &str) -> Vec<u8> {
    let mut text = comment.as_bytes().to_vec();
    text.truncate(254);
    text.push(0);
    let mut data = vec![
        NFTNL_UDATA_RULE_COMMENT,
        u8::try_from(text.len()).unwrap_or(255),
    ];
    data.extend(text);
    data
}

pub(super) fn comment_from_userdata(mut data: &[u8]) -> Option<String> {
    while let [kind, len, rest @ ..] = data {
        let value = rest.get(..usize::from(*len))?;
        if *kind == NFTNL_UDATA_RULE_COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8(text.to_vec()).ok();
        }
        data = &rest[usize::from(*len)..];
    }
    None
}
