//! One blocking rtnetlink socket (strict checking, capped and extended acks) and the three
//! exchanges every operation is made of: acknowledged requests (pipelined in batches),
//! requests answered by one object, and dumps that are complete or an error. [`Channel`]
//! is the part every netlink family shares (ctnetlink's too): sends, receives, acks.

use std::cell::{Cell, RefCell};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Cause, Result};

/// Requests sent in one `sendto` before their acks are read: small enough that the acks
/// never overflow the receive buffer (a lost ack would be an unknown outcome).
const BATCH: usize = 32;
/// How often an interrupted dump is taken again before it is an error.
pub(crate) const DUMP_TRIES: usize = 5;
/// Receive buffer: the kernel's dump messages are at most 32 KiB.
const RECV_BUF: usize = 64 << 10;
const NLMSG_ERROR: u16 = 2;

/// A netlink socket's exchange, whatever its family: sequence numbers, sends checked
/// whole, each datagram received into one buffer and split into its messages, and
/// pipelined requests matched to their acks.
pub(crate) struct Channel {
    sock: Socket,
    seq: Cell<u32>,
    buf: RefCell<Vec<u8>>,
}

/// One message as received: its header's fields, and its bytes.
pub(crate) struct Raw<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

impl Raw<'_> {
    /// What follows the netlink header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[16..]
    }

    /// The errno of an `NLMSG_ERROR` or `NLMSG_DONE` (0 for an ack or a clean end).
    pub fn code(&self) -> std::result::Result<i32, Cause> {
        let b: [u8; 4] = self
            .body()
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Cause::Malformed("a short error or done message".into()))?;
        Ok(-i32::from_ne_bytes(b))
    }
}

impl Channel {
    /// Opens a socket of netlink `protocol` (named `name` in errors) in the calling thread's
    /// network namespace, with capped acks (the request not echoed back) and extended acks
    /// (errors in the kernel's own words); `strict` adds strict checking (the kernel filters
    /// dumps on the request's header fields).
    pub fn open(protocol: isize, name: &'static str, strict: bool) -> Result<Channel> {
        let io = |what: &'static str| {
            move |e: std::io::Error| Cause::io(&e).on(format!("{what} {name} socket"))
        };
        let mut sock = Socket::new(protocol).map_err(io("open"))?;
        sock.bind_auto().map_err(io("bind"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(io("connect"))?;
        if strict {
            sock.set_netlink_get_strict_chk(true)
                .map_err(io("enable strict checking on"))?;
        }
        sock.set_cap_ack(true).map_err(io("set capped acks on"))?;
        sock.set_ext_ack(true).map_err(io("set extended acks on"))?;
        Ok(Channel {
            sock,
            seq: Cell::new(0),
            buf: RefCell::new(Vec::with_capacity(RECV_BUF)),
        })
    }

    pub fn next_seq(&self) -> u32 {
        let s = self.seq.get().wrapping_add(1);
        self.seq.set(s);
        s
    }

    pub fn send(&self, bytes: &[u8]) -> std::result::Result<(), Cause> {
        let n = self.sock.send(bytes, 0).map_err(|e| Cause::io(&e))?;
        if n != bytes.len() {
            return Err(Cause::Malformed(format!(
                "sent {n} of {} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// Receives one datagram and hands each message in it to `each`; bytes left over
    /// that cannot be a message, or a message longer than what is left, are an error.
    pub fn recv(
        &self,
        mut each: impl FnMut(Raw) -> std::result::Result<(), Cause>,
    ) -> std::result::Result<(), Cause> {
        let mut buf = self.buf.borrow_mut();
        buf.clear();
        buf.reserve(RECV_BUF);
        let n = self
            .sock
            .recv(&mut *buf, libc::MSG_TRUNC)
            .map_err(|e| Cause::io(&e))?;
        if n > buf.len() {
            return Err(Cause::Malformed(format!(
                "a {n}-byte message did not fit the receive buffer"
            )));
        }
        let mut off = 0;
        while off < n {
            let h = &buf[off..n];
            if h.len() < 16 {
                return Err(Cause::Malformed(format!(
                    "{} bytes after the last message",
                    h.len()
                )));
            }
            let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len < 16 || len > h.len() {
                return Err(Cause::Malformed(format!("a message of length {len}")));
            }
            each(Raw {
                kind: u16::from_ne_bytes([h[4], h[5]]),
                flags: u16::from_ne_bytes([h[6], h[7]]),
                seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
                bytes: &h[..len],
            })?;
            off += len.next_multiple_of(4);
        }
        Ok(())
    }

    /// Sends each request, appended to a datagram by `encode` under the sequence number
    /// given (with `NLM_F_ACK` among its flags), [`BATCH`] to a datagram, and returns each
    /// one's answer: 0 for an ack, the errno of a refusal. A socket failure or a missing
    /// ack fails the whole call: then no request's outcome is known.
    pub fn acked<R>(
        &self,
        requests: Vec<R>,
        mut encode: impl FnMut(R, u32, &mut Vec<u8>),
    ) -> std::result::Result<Vec<i32>, Cause> {
        let mut answers = vec![None; requests.len()];
        let mut requests = requests.into_iter().enumerate().peekable();
        let mut out = Vec::new();
        while requests.peek().is_some() {
            out.clear();
            let mut pending = Vec::with_capacity(BATCH);
            for (i, r) in requests.by_ref().take(BATCH) {
                let seq = self.next_seq();
                encode(r, seq, &mut out);
                pending.push((seq, i));
            }
            self.send(&out)?;
            let mut left = pending.len();
            while left > 0 {
                self.recv(|m| {
                    if m.kind == NLMSG_ERROR
                        && let Some(&(_, i)) = pending.iter().find(|(s, _)| *s == m.seq)
                        && answers[i].is_none()
                    {
                        answers[i] = Some(m.code()?);
                        left -= 1;
                    }
                    Ok(())
                })?;
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| Cause::Malformed("an ack is missing".into())))
            .collect()
    }
}

/// A connection to the kernel's routing netlink, in the network namespace it was opened in.
pub struct Netlink {
    ch: Channel,
}

type Message = NetlinkMessage<RouteNetlinkMessage>;

impl Netlink {
    /// Opens a connection in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        Ok(Netlink {
            ch: Channel::open(NETLINK_ROUTE, "netlink", true)?,
        })
    }

    /// Appends one request to a datagram; returns its sequence number.
    fn encode(&self, out: &mut Vec<u8>, msg: RouteNetlinkMessage, flags: u16) -> u32 {
        let seq = self.ch.next_seq();
        encode(out, msg, seq, flags);
        seq
    }

    fn send(&self, bytes: &[u8]) -> std::result::Result<(), Cause> {
        self.ch.send(bytes)
    }

    /// Receives one datagram and hands each message in it to `each`, decoded.
    fn recv(
        &self,
        mut each: impl FnMut(Message) -> std::result::Result<(), Cause>,
    ) -> std::result::Result<(), Cause> {
        self.ch.recv(|m| {
            each(Message::deserialize(m.bytes).map_err(|e| Cause::Malformed(e.to_string()))?)
        })
    }

    /// Sends each request with `NLM_F_ACK` (plus `flags`), pipelined, and returns each one's
    /// answer ([`Channel::acked`]).
    pub(crate) fn acked(
        &self,
        requests: Vec<(RouteNetlinkMessage, u16)>,
    ) -> std::result::Result<Vec<i32>, Cause> {
        self.ch.acked(requests, |(msg, flags), seq, out| {
            encode(out, msg, seq, NLM_F_REQUEST | NLM_F_ACK | flags)
        })
    }

    /// One acknowledged request; a refusal is `Cause::Errno`.
    pub(crate) fn ack(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> std::result::Result<(), Cause> {
        match self.acked(vec![(msg, flags)])?[0] {
            0 => Ok(()),
            e => Err(Cause::Errno(e)),
        }
    }

    /// A request answered by one object (a `get` of a link by name or index), with its ack.
    pub(crate) fn get(
        &self,
        msg: RouteNetlinkMessage,
    ) -> std::result::Result<RouteNetlinkMessage, Cause> {
        let mut out = Vec::new();
        let seq = self.encode(&mut out, msg, NLM_F_REQUEST | NLM_F_ACK);
        self.send(&out)?;
        let mut reply = None;
        let mut answer = None;
        while answer.is_none() {
            self.recv(|m| {
                if m.header.sequence_number != seq {
                    return Ok(());
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(inner) if reply.is_none() => reply = Some(inner),
                    NetlinkPayload::Error(e) => answer = Some(-e.raw_code()),
                    _ => {}
                }
                Ok(())
            })?;
        }
        match (answer, reply) {
            (Some(0), Some(r)) => Ok(r),
            (Some(0), None) => Err(Cause::Malformed(
                "an ack without the object asked for".into(),
            )),
            (Some(e), _) => Err(Cause::Errno(e)),
            (None, _) => unreachable!("the loop ends on an answer"),
        }
    }

    /// Every object a dump request returns. A dump interrupted by concurrent changes
    /// (`NLM_F_DUMP_INTR` on any of its messages) is taken again, up to [`DUMP_TRIES`] times;
    /// a dump that fails is an error, never an empty or partial list.
    pub(crate) fn dump(
        &self,
        msg: RouteNetlinkMessage,
    ) -> std::result::Result<Vec<RouteNetlinkMessage>, Cause> {
        for _ in 0..DUMP_TRIES {
            let mut out = Vec::new();
            let seq = self.encode(&mut out, msg.clone(), NLM_F_REQUEST | NLM_F_DUMP);
            self.send(&out)?;
            let mut objects = Vec::new();
            let mut interrupted = false;
            let mut done = false;
            while !done {
                self.recv(|m| {
                    if m.header.sequence_number != seq {
                        return Ok(());
                    }
                    interrupted |= m.header.flags & NLM_F_DUMP_INTR != 0;
                    match m.payload {
                        NetlinkPayload::InnerMessage(inner) => objects.push(inner),
                        NetlinkPayload::Done(d) => {
                            if d.code < 0 {
                                return Err(Cause::Errno(-d.code));
                            }
                            done = true;
                        }
                        NetlinkPayload::Error(e) if e.raw_code() != 0 => {
                            return Err(Cause::Errno(-e.raw_code()));
                        }
                        NetlinkPayload::Overrun(_) => {
                            return Err(Cause::Malformed("dump overrun".into()));
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
            }
            if !interrupted {
                return Ok(objects);
            }
        }
        Err(Cause::Interrupted(DUMP_TRIES))
    }
}

/// Appends one request to a datagram under sequence number `seq`; messages in one datagram
/// start on 4-byte boundaries.
fn encode(out: &mut Vec<u8>, msg: RouteNetlinkMessage, seq: u32, flags: u16) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    m.finalize();
    let start = out.len();
    out.resize(start + m.buffer_len(), 0);
    m.serialize(&mut out[start..]);
    out.resize(out.len().next_multiple_of(4), 0);
}
