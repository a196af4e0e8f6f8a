//! The netlink framing of nftables messages: a `nlmsghdr`, the 4-byte
//! `nfgenmsg`, then attributes (length, type, payload, padded to 4 bytes;
//! nests hold attributes). Written into and read from plain byte buffers.

// nlmsghdr
pub(super) const NLMSG_HDRLEN: usize = 16;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_MULTI: u16 = 0x2;
pub(super) const NLM_F_ACK: u16 = 0x4;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLM_F_APPEND: u16 = 0x800;
pub(super) const NLA_F_NESTED: u16 = 0x8000;

// nfnetlink
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(super) const NFPROTO_IPV4: u8 = 2;

/// A netlink message being written; nests patch their length at the end.
pub(super) struct Message {
    buf: Vec<u8>,
}

impl Message {
    pub(super) fn new(kind: u16, flags: u16, family: u8, res_id: u16) -> Self {
        let mut buf = vec![0; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        // nfgenmsg: family, version 0, resource id (big endian).
        buf.extend([family, 0]);
        buf.extend(res_id.to_be_bytes());
        Self { buf }
    }

    pub(super) fn nft(kind: u16, flags: u16) -> Self {
        Self::new(NFNL_SUBSYS_NFTABLES << 8 | kind, flags, NFPROTO_IPV4, 0)
    }

    pub(super) fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend(len.to_ne_bytes());
        self.buf.extend(kind.to_ne_bytes());
        self.buf.extend(data);
        self.pad();
        self
    }

    pub(super) fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub(super) fn str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut data = value.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data)
    }

    pub(super) fn be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_be_bytes())
    }

    pub(super) fn nest(&mut self, kind: u16, body: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.buf.len();
        self.attr(kind | NLA_F_NESTED, &[]);
        body(self);
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The finished bytes, with length and sequence number.
    pub(super) fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// Netlink attributes of a message body: `(type, payload)`.
pub(super) fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes(data.get(0..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(data.get(2..4)?.try_into().ok()?) & 0x3fff;
        let payload = data.get(4..len)?;
        data = data.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// One received netlink message: type, flags, sequence, body.
pub(super) struct Received<'a> {
    pub(super) kind: u16,
    pub(super) flags: u16,
    pub(super) seq: u32,
    pub(super) body: &'a [u8],
}

pub(super) fn parse_message(data: &[u8]) -> Option<(Received<'_>, usize)> {
    let len = usize::try_from(u32::from_ne_bytes(data.get(0..4)?.try_into().ok()?)).ok()?;
    let message = Received {
        kind: u16::from_ne_bytes(data.get(4..6)?.try_into().ok()?),
        flags: u16::from_ne_bytes(data.get(6..8)?.try_into().ok()?),
        seq: u32::from_ne_bytes(data.get(8..12)?.try_into().ok()?),
        body: data.get(NLMSG_HDRLEN..len)?,
    };
    Some((message, len.next_multiple_of(4)))
}

/// The messages of one datagram; `None` for one that cannot be read,
/// which ends the datagram.
pub(super) fn messages(mut data: &[u8]) -> impl Iterator<Item = Option<Received<'_>>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        match parse_message(data) {
            Some((message, len)) => {
                data = data.get(len..).unwrap_or(&[]);
                Some(Some(message))
            }
            None => {
                data = &[];
                Some(None)
            }
        }
    })
}

/// The errno of an `NLMSG_ERROR` body; 0 is an ack.
pub(super) fn error_code(body: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(body.get(0..4)?.try_into().ok()?))
}
