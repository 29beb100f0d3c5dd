//! Connection-tracking entries over ctnetlink (`NETLINK_NETFILTER`): deleting every entry
//! of the namespace whose original source, original destination or reply source is one of
//! some addresses, with the kernel filtering the dumps where it can (IPv4: see
//! [`kernel_filters`]); plus the dump and
//! create a test or benchmark needs to look at and fill a table. Messages are encoded here
//! (a header, `nfgenmsg`, a few attributes); every ack is read and checked.

use std::net::IpAddr;

use netlink_sys::protocols::NETLINK_NETFILTER;

use crate::error::{Cause, Result};
use crate::socket::{Channel, DUMP_TRIES};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLA_F_NESTED: u16 = 0x8000;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TIMEOUT: u16 = 7;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
/// `CTA_FILTER_F_CTA_IP_SRC` and `_DST`: which fields of a filter tuple must match.
const FILTER_IP_SRC: u32 = 1 << 0;
const FILTER_IP_DST: u32 = 1 << 1;

/// Where an address stands in an entry: the three places a released pod's address is
/// found (its own connections, connections to it, and connections DNAT-ed to it, whose
/// original destination is a Service address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    OrigSrc,
    OrigDst,
    ReplySrc,
}

pub const PLACES: [Place; 3] = [Place::OrigSrc, Place::OrigDst, Place::ReplySrc];

/// The addresses and ports of one direction of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub proto: u8,
    /// Ports for TCP, UDP, SCTP and the like; 0 for others.
    pub sport: u16,
    pub dport: u16,
}

/// A conntrack entry as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub orig: Tuple,
    pub reply: Tuple,
    pub id: Option<u32>,
    pub zone: Option<u16>,
}

impl Entry {
    /// Whether `ip` stands at `place` in this entry.
    pub fn has(&self, place: Place, ip: IpAddr) -> bool {
        match place {
            Place::OrigSrc => self.orig.src == ip,
            Place::OrigDst => self.orig.dst == ip,
            Place::ReplySrc => self.reply.src == ip,
        }
    }
}

/// A connection to the kernel's conntrack netlink, in the network namespace it was opened in.
pub struct Conntrack {
    ch: Channel,
}

/// One request being built: a netlink header, `nfgenmsg`, attributes.
struct Msg {
    bytes: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16, ipv6: bool) -> Msg {
        let mut bytes = vec![0u8; 16];
        bytes[4..6].copy_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
        bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
        // nfgenmsg: family, version 0, resource id 0.
        bytes.extend_from_slice(&[family(ipv6), 0, 0, 0]);
        Msg {
            bytes,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Msg {
        let len = (4 + payload.len()) as u16;
        self.bytes.extend_from_slice(&len.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(payload);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        self
    }

    fn open(&mut self, kind: u16) -> &mut Msg {
        self.nests.push(self.bytes.len());
        self.attr(kind | NLA_F_NESTED, &[])
    }

    fn close(&mut self) -> &mut Msg {
        let start = self.nests.pop().expect("a nest is open");
        let len = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// `CTA_TUPLE_IP` with the addresses given (either may be left out).
    fn ips(&mut self, src: Option<IpAddr>, dst: Option<IpAddr>) -> &mut Msg {
        self.open(CTA_TUPLE_IP);
        for (ip, v4, v6) in [(src, 1, 3), (dst, 2, 4)] {
            match ip {
                Some(IpAddr::V4(a)) => self.attr(v4, &a.octets()),
                Some(IpAddr::V6(a)) => self.attr(v6, &a.octets()),
                None => self,
            };
        }
        self.close()
    }

    fn tuple(&mut self, kind: u16, t: &Tuple) -> &mut Msg {
        self.open(kind).ips(Some(t.src), Some(t.dst));
        self.open(CTA_TUPLE_PROTO).attr(CTA_PROTO_NUM, &[t.proto]);
        if has_ports(t.proto) {
            self.attr(CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes())
                .attr(CTA_PROTO_DST_PORT, &t.dport.to_be_bytes());
        }
        self.close().close()
    }

    fn finish(mut self, seq: u32, more_flags: u16) -> Vec<u8> {
        let flags = u16::from_ne_bytes([self.bytes[6], self.bytes[7]]) | more_flags;
        self.bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
        let len = self.bytes.len() as u32;
        self.bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.bytes
    }
}

fn family(ipv6: bool) -> u8 {
    if ipv6 {
        libc::AF_INET6 as u8
    } else {
        libc::AF_INET as u8
    }
}

fn has_ports(proto: u8) -> bool {
    // TCP, UDP, DCCP, SCTP, UDP-Lite.
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

/// A request matching entries with `ip` at `place`: the tuple attribute holds only that
/// address, and `CTA_FILTER` says it is the only field to compare. Always carries a tuple,
/// so that a kernel that does not know `CTA_FILTER` refuses it (an incomplete tuple)
/// rather than taking it for a request about every entry.
fn filtered(kind: u16, flags: u16, place: Place, ip: IpAddr) -> Msg {
    let mut m = Msg::new(kind, flags, ip.is_ipv6());
    let (tuple, src, dst, key, bit) = match place {
        Place::OrigSrc => (
            CTA_TUPLE_ORIG,
            Some(ip),
            None,
            CTA_FILTER_ORIG_FLAGS,
            FILTER_IP_SRC,
        ),
        Place::OrigDst => (
            CTA_TUPLE_ORIG,
            None,
            Some(ip),
            CTA_FILTER_ORIG_FLAGS,
            FILTER_IP_DST,
        ),
        Place::ReplySrc => (
            CTA_TUPLE_REPLY,
            Some(ip),
            None,
            CTA_FILTER_REPLY_FLAGS,
            FILTER_IP_SRC,
        ),
    };
    m.open(tuple).ips(src, dst).close();
    m.open(CTA_FILTER).attr(key, &bit.to_ne_bytes()).close();
    m
}

/// Attributes of one message: (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((kind, payload))
    })
}

fn parse_tuple(b: &[u8]) -> Option<Tuple> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, 0, 0);
    for (kind, p) in attrs(b) {
        match kind {
            CTA_TUPLE_IP => {
                for (k, a) in attrs(p) {
                    let ip = match a.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(a).ok()?),
                        16 => IpAddr::from(<[u8; 16]>::try_from(a).ok()?),
                        _ => return None,
                    };
                    match k {
                        1 | 3 => src = Some(ip),
                        2 | 4 => dst = Some(ip),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, a) in attrs(p) {
                    match (k, a) {
                        (CTA_PROTO_NUM, [n]) => proto = Some(*n),
                        (CTA_PROTO_SRC_PORT, [x, y]) => sport = u16::from_be_bytes([*x, *y]),
                        (CTA_PROTO_DST_PORT, [x, y]) => dport = u16::from_be_bytes([*x, *y]),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Tuple {
        src: src?,
        dst: dst?,
        proto: proto?,
        sport,
        dport,
    })
}

fn parse_entry(b: &[u8]) -> Option<Entry> {
    let (mut orig, mut reply, mut id, mut zone) = (None, None, None, None);
    for (kind, p) in attrs(b) {
        match (kind, p) {
            (CTA_TUPLE_ORIG, _) => orig = parse_tuple(p),
            (CTA_TUPLE_REPLY, _) => reply = parse_tuple(p),
            (CTA_ID, [a, b, c, d]) => id = Some(u32::from_be_bytes([*a, *b, *c, *d])),
            (CTA_ZONE, [a, b]) => zone = Some(u16::from_be_bytes([*a, *b])),
            _ => {}
        }
    }
    Some(Entry {
        orig: orig?,
        reply: reply?,
        id,
        zone,
    })
}

impl Conntrack {
    /// Opens a connection in the calling thread's network namespace.
    pub fn open() -> Result<Conntrack> {
        Ok(Conntrack {
            ch: Channel::open(NETLINK_NETFILTER, "ctnetlink", false)?,
        })
    }

    /// Sends each request with `NLM_F_ACK`, pipelined, and returns each one's answer
    /// ([`Channel::acked`]).
    fn acked(&self, requests: Vec<Msg>) -> std::result::Result<Vec<i32>, Cause> {
        self.ch.acked(requests, |msg, seq, out| {
            out.extend_from_slice(&msg.finish(seq, NLM_F_ACK))
        })
    }

    /// Every entry of one family, or only those with `ip` at `place` when a filter is
    /// given (IPv4 only; the kernel filters from Linux 5.8 on, and what an older one
    /// sends is matched here all the same). A dump interrupted by concurrent changes is taken again, up to
    /// five times; a dump that fails is an error, never a partial list.
    pub fn dump(&self, ipv6: bool, filter: Option<(Place, IpAddr)>) -> Result<Vec<Entry>> {
        let op = || match filter {
            Some((place, ip)) => format!("dump conntrack entries with {ip} as {place:?}"),
            None => format!("dump IPv{} conntrack entries", if ipv6 { 6 } else { 4 }),
        };
        if filter.is_some_and(|(_, ip)| ip.is_ipv6() != ipv6 || !kernel_filters(ip)) {
            return Err(Cause::Invalid(
                "a filter address of the other family, or IPv6 (see kernel_filters)".into(),
            )
            .on(op()));
        }
        for _ in 0..DUMP_TRIES {
            let msg = match filter {
                Some((place, ip)) => {
                    filtered(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, place, ip)
                }
                None => Msg::new(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, ipv6),
            };
            let seq = self.ch.next_seq();
            self.ch.send(&msg.finish(seq, 0)).map_err(|c| c.on(op()))?;
            let mut entries = Vec::new();
            let mut interrupted = false;
            let mut done = false;
            while !done {
                self.ch
                    .recv(|m| {
                        if m.seq != seq {
                            return Ok(());
                        }
                        interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                        match m.kind {
                            NLMSG_DONE => {
                                match m.code()? {
                                    0 => {}
                                    e => return Err(Cause::Errno(e)),
                                }
                                done = true;
                            }
                            NLMSG_ERROR => match m.code()? {
                                0 => {}
                                e => return Err(Cause::Errno(e)),
                            },
                            k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                                // Past nfgenmsg.
                                let entry =
                                    m.body().get(4..).and_then(parse_entry).ok_or_else(|| {
                                        Cause::Malformed("an entry without both tuples".into())
                                    })?;
                                entries.push(entry);
                            }
                            _ => {}
                        }
                        Ok(())
                    })
                    .map_err(|c| c.on(op()))?;
            }
            if !interrupted {
                if let Some((place, ip)) = filter {
                    entries.retain(|e| e.has(place, ip));
                }
                return Ok(entries);
            }
        }
        Err(Cause::Interrupted(DUMP_TRIES).on(op()))
    }

    /// Deletes each entry by its original tuple (and zone, and id: an entry that was
    /// replaced meanwhile by another of the same tuple is left alone). Returns how many
    /// were deleted; one gone meanwhile is not an error.
    pub fn delete(&self, entries: &[Entry]) -> Result<usize> {
        let requests = entries
            .iter()
            .map(|e| {
                let mut m = Msg::new(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, e.orig.src.is_ipv6());
                m.tuple(CTA_TUPLE_ORIG, &e.orig);
                if let Some(id) = e.id {
                    m.attr(CTA_ID, &id.to_be_bytes());
                }
                if let Some(z) = e.zone {
                    m.attr(CTA_ZONE, &z.to_be_bytes());
                }
                m
            })
            .collect();
        let answers = self
            .acked(requests)
            .map_err(|c| c.on(format!("delete {} conntrack entries", entries.len())))?;
        let mut deleted = 0;
        for (e, a) in entries.iter().zip(answers) {
            match a {
                0 => deleted += 1,
                libc::ENOENT => {}
                a => {
                    return Err(Cause::Errno(a).on(format!(
                        "delete conntrack entry {} -> {}",
                        e.orig.src, e.orig.dst
                    )));
                }
            }
        }
        Ok(deleted)
    }

    /// Asks the kernel to delete every entry with one of `ips` (IPv4 only, see
    /// [`kernel_filters`]) at any of [`PLACES`]: one `DELETE` with `CTA_FILTER` per address
    /// and place, each a walk of the table inside the kernel, nothing copied out.
    /// `Ok(false)` when the kernel does not take such a request (before Linux 6.12 it
    /// refuses it, `EOPNOTSUPP` or `EINVAL`); then nothing was deleted by it. Not what
    /// [`Self::flush`] uses: its walk costs more than a filtered dump's (the benchmark's
    /// `conntrack` mode prints both), and it cannot say how many entries went.
    pub fn flush_by_filter(&self, ips: &[IpAddr]) -> Result<bool> {
        let op = "flush conntrack entries by filter";
        if ips.iter().any(|ip| !kernel_filters(*ip)) {
            return Err(
                Cause::Invalid("the kernel's IPv6 address filter is unusable".into()).on(op),
            );
        }
        let requests: Vec<Msg> = ips
            .iter()
            .flat_map(|&ip| {
                PLACES
                    .iter()
                    .map(move |&p| filtered(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, p, ip))
            })
            .collect();
        if requests.is_empty() {
            return Ok(true);
        }
        let answers = self.acked(requests).map_err(|c| c.on(op))?;
        match answers.iter().find(|&&a| a != 0) {
            None => Ok(true),
            Some(&e) if answers.iter().all(|&a| a == e) && refused_filter(e) => Ok(false),
            Some(&e) => Err(Cause::Errno(e).on(op)),
        }
    }

    /// Deletes every entry with one of `ips` as original source, original destination or
    /// reply source: each IPv4 address's found by three dumps the kernel filters, the IPv6
    /// addresses' by one dump of the IPv6 entries matched here (see [`kernel_filters`]),
    /// then deleted one by one. Returns how many were deleted.
    /// A namespace whose table holds no entry (its `nf_conntrack_count` is 0, or conntrack
    /// is not loaded) is not dumped: each dump walks every bucket of the kernel's table,
    /// shared by all namespaces, whatever it finds.
    pub fn flush(&self, ips: &[IpAddr]) -> Result<usize> {
        if table_is_empty() {
            return Ok(0);
        }
        self.flush_by_dump(ips, true)
    }

    /// Dumps the entries of `ips`, matches them here and deletes them: each IPv4 address's
    /// by three dumps the kernel filters when `filtered` (else, and for IPv6 always, one
    /// dump of every entry of the family). Returns how many were deleted.
    pub fn flush_by_dump(&self, ips: &[IpAddr], filtered: bool) -> Result<usize> {
        let mut doomed: Vec<Entry> = Vec::new();
        let (by_kernel, by_us): (Vec<IpAddr>, Vec<IpAddr>) =
            ips.iter().partition(|ip| filtered && kernel_filters(**ip));
        for &ip in &by_kernel {
            for place in PLACES {
                doomed.extend(self.dump(ip.is_ipv6(), Some((place, ip)))?);
            }
        }
        for ipv6 in [false, true] {
            let wanted = crate::route::of_family(&by_us, ipv6);
            if wanted.is_empty() {
                continue;
            }
            doomed.extend(self.dump(ipv6, None)?.into_iter().filter(|e| {
                wanted
                    .iter()
                    .any(|&ip| PLACES.iter().any(|&p| e.has(p, ip)))
            }));
        }
        // An entry can match at two places (a pod's connection to itself).
        let mut seen = std::collections::HashSet::new();
        doomed.retain(|e| seen.insert((e.orig, e.zone)));
        self.delete(&doomed)
    }

    /// Creates entries (for tests and benchmarks): each with its original tuple, the
    /// reply the inverse of it, and `timeout_s` to live. Returns each one's answer (0, or
    /// the kernel's errno).
    pub fn create(&self, tuples: &[Tuple], timeout_s: u32) -> Result<Vec<i32>> {
        let requests = tuples
            .iter()
            .map(|t| {
                let mut m = Msg::new(
                    IPCTNL_MSG_CT_NEW,
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
                    t.src.is_ipv6(),
                );
                let reply = Tuple {
                    src: t.dst,
                    dst: t.src,
                    proto: t.proto,
                    sport: t.dport,
                    dport: t.sport,
                };
                m.tuple(CTA_TUPLE_ORIG, t)
                    .tuple(CTA_TUPLE_REPLY, &reply)
                    .attr(CTA_TIMEOUT, &timeout_s.to_be_bytes());
                m
            })
            .collect();
        self.acked(requests)
            .map_err(|c| c.on(format!("create {} conntrack entries", tuples.len())))
    }
}

/// Whether the calling thread's namespace tracks no connection now: its
/// `nf_conntrack_count` is 0, or there is none (conntrack not loaded, so no entry either).
pub fn table_is_empty() -> bool {
    match std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count") {
        Ok(n) => n.trim() == "0",
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Whether the kernel's `CTA_FILTER` can match `ip`. Not IPv6: the kernel's comparison of
/// IPv6 filter addresses is inverted (`ctnetlink_filter_match_tuple` skips an entry when
/// its address *equals* the filter's, up to Linux 6.18 at least), so a filtered dump
/// returns every other entry and a filtered `DELETE` deletes every other entry.
pub fn kernel_filters(ip: IpAddr) -> bool {
    ip.is_ipv4()
}

/// The answers of a kernel that does not take `CTA_FILTER` in a `DELETE`.
fn refused_filter(errno: i32) -> bool {
    matches!(errno, libc::EOPNOTSUPP | libc::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(src: &str, dst: &str) -> Tuple {
        Tuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: 17,
            sport: 1000,
            dport: 53,
        }
    }

    #[test]
    fn an_encoded_entry_reads_back() {
        for (o, r) in [
            (
                tuple("10.0.0.1", "10.96.0.10"),
                tuple("10.20.1.2", "10.0.0.1"),
            ),
            (tuple("fd00::1", "fd96::10"), tuple("fd20::2", "fd00::1")),
        ] {
            let mut m = Msg::new(IPCTNL_MSG_CT_NEW, 0, o.src.is_ipv6());
            m.tuple(CTA_TUPLE_ORIG, &o)
                .tuple(CTA_TUPLE_REPLY, &r)
                .attr(CTA_ID, &7u32.to_be_bytes());
            let bytes = m.finish(1, NLM_F_ACK);
            assert_eq!(
                u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
                bytes.len()
            );
            let e = parse_entry(&bytes[20..]).unwrap();
            assert_eq!((e.orig, e.reply, e.id, e.zone), (o, r, Some(7), None));
            assert!(e.has(Place::ReplySrc, r.src) && !e.has(Place::OrigDst, r.src));
        }
    }

    #[test]
    fn a_filter_request_always_carries_a_tuple() {
        // A kernel that knows no CTA_FILTER must see an incomplete tuple and refuse, never
        // a request without one (a DELETE without a tuple flushes the whole family).
        for place in PLACES {
            let m = filtered(
                IPCTNL_MSG_CT_DELETE,
                NLM_F_REQUEST,
                place,
                "10.0.0.1".parse().unwrap(),
            );
            let bytes = m.finish(1, 0);
            let kinds: Vec<u16> = attrs(&bytes[20..]).map(|(k, _)| k).collect();
            assert!(kinds.contains(&CTA_FILTER), "{place:?}");
            assert!(
                kinds.contains(&CTA_TUPLE_ORIG) || kinds.contains(&CTA_TUPLE_REPLY),
                "{place:?}"
            );
        }
        assert!(!kernel_filters("fd00::1".parse().unwrap()));
    }
}
