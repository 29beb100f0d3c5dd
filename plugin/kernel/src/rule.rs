//! Policy routing rules (`ip rule`), dumped: which table each rule sends a lookup to, and
//! what it selects the lookup by. Read only; the plugins never add or delete a rule.

use std::net::IpAddr;

use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Cause, Result};
use crate::socket::Netlink;

/// What a rule does with a lookup it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Look the address up in this table (`lookup T`); a table with no matching route lets
    /// the lookup go on to the next rule.
    Lookup(u32),
    /// Look up in the table of the VRF the packet belongs to (`lookup [l3mdev-table]`).
    L3mdev,
    /// Jump to the rule of this priority (`goto N`).
    Goto(u32),
    /// Nothing (`nop`).
    Nop,
    /// The lookup fails: `blackhole`, `unreachable`, `prohibit`.
    Reject,
    /// An action this code does not know (the kernel's number).
    Other(u8),
}

/// A policy rule as the kernel reports it. Prefixes are `(address, length)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub ipv6: bool,
    pub priority: u32,
    pub kind: RuleKind,
    /// `not`: the rule selects what its selectors do not match.
    pub invert: bool,
    pub dst: Option<(IpAddr, u8)>,
    pub src: Option<(IpAddr, u8)>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// `fwmark MARK/MASK`.
    pub fwmark: Option<(u32, u32)>,
    /// Selectors of other kinds (tos, uid range, ports, IP protocol, tunnel id), said as
    /// `ip rule` says them.
    pub other: Vec<String>,
    /// `suppress_prefixlength N`: a route with a prefix this short or shorter is ignored.
    pub suppress_prefix_len: Option<u32>,
}

impl Rule {
    /// A rule with this action and no selectors: it selects every lookup of its family.
    pub fn new(ipv6: bool, priority: u32, kind: RuleKind) -> Rule {
        Rule {
            ipv6,
            priority,
            kind,
            invert: false,
            dst: None,
            src: None,
            iif: None,
            oif: None,
            fwmark: None,
            other: Vec::new(),
            suppress_prefix_len: None,
        }
    }

    /// Whether the rule selects only by destination (or by nothing at all).
    pub fn selects_by_destination_only(&self) -> bool {
        self.src.is_none()
            && self.iif.is_none()
            && self.oif.is_none()
            && self.fwmark.is_none()
            && self.other.is_empty()
    }

    /// The rule's selectors as `ip rule` prints them (`from all` when there is none).
    pub fn selector(&self) -> String {
        let mut parts = Vec::new();
        if self.invert {
            parts.push("not".to_string());
        }
        parts.push(match self.src {
            Some((a, l)) => format!("from {a}/{l}"),
            None => "from all".into(),
        });
        if let Some((a, l)) = self.dst {
            parts.push(format!("to {a}/{l}"));
        }
        if let Some((m, mask)) = self.fwmark {
            parts.push(if mask == u32::MAX {
                format!("fwmark {m:#x}")
            } else {
                format!("fwmark {m:#x}/{mask:#x}")
            });
        }
        if let Some(i) = &self.iif {
            parts.push(format!("iif {i}"));
        }
        if let Some(o) = &self.oif {
            parts.push(format!("oif {o}"));
        }
        parts.extend(self.other.iter().cloned());
        parts.join(" ")
    }
}

fn rule_from(m: RuleMessage) -> Rule {
    let h = &m.header;
    let prefix = |a: IpAddr, len: u8| Some((a, len));
    let mut r = Rule::new(h.family == AddressFamily::Inet6, 0, RuleKind::Other(0));
    r.invert = h.flags.contains(RuleFlags::Invert);
    if h.tos != 0 {
        r.other.push(format!("tos {:#x}", h.tos));
    }
    let mut table = h.table as u32;
    let mut goto = None;
    let mut l3mdev = false;
    let mut mark = None;
    let mut mask = None;
    for a in m.attributes {
        match a {
            RuleAttribute::Destination(ip) => r.dst = prefix(ip, h.dst_len),
            RuleAttribute::Source(ip) => r.src = prefix(ip, h.src_len),
            RuleAttribute::Iifname(n) => r.iif = Some(n),
            RuleAttribute::Oifname(n) => r.oif = Some(n),
            RuleAttribute::Goto(p) => goto = Some(p),
            RuleAttribute::Priority(p) => r.priority = p,
            RuleAttribute::FwMark(v) => mark = Some(v),
            RuleAttribute::FwMask(v) => mask = Some(v),
            RuleAttribute::Table(t) => table = t,
            RuleAttribute::L3MDev(on) => l3mdev = on,
            RuleAttribute::SuppressPrefixLen(n) if n != u32::MAX => r.suppress_prefix_len = Some(n),
            RuleAttribute::UidRange(u) => r.other.push(format!("uidrange {}-{}", u.start, u.end)),
            RuleAttribute::IpProtocol(p) => r.other.push(format!("ipproto {p:?}")),
            RuleAttribute::SourcePortRange(p) => {
                r.other.push(format!("sport {}-{}", p.start, p.end))
            }
            RuleAttribute::DestinationPortRange(p) => {
                r.other.push(format!("dport {}-{}", p.start, p.end))
            }
            RuleAttribute::TunId(t) => r.other.push(format!("tun_id {t}")),
            _ => {}
        }
    }
    // A mark of 0 with no mask is no selector (the kernel reports none then).
    if mark.is_some_and(|m| m != 0) || mask.is_some_and(|m| m != 0) {
        r.fwmark = Some((mark.unwrap_or(0), mask.unwrap_or(u32::MAX)));
    }
    r.kind = match h.action {
        RuleAction::ToTable if l3mdev => RuleKind::L3mdev,
        RuleAction::ToTable => RuleKind::Lookup(table),
        RuleAction::Goto => RuleKind::Goto(goto.unwrap_or(0)),
        RuleAction::Nop => RuleKind::Nop,
        RuleAction::Blackhole | RuleAction::Unreachable | RuleAction::Prohibit => RuleKind::Reject,
        RuleAction::Unspec => RuleKind::Other(0),
        RuleAction::Other(n) => RuleKind::Other(n),
        _ => RuleKind::Other(u8::MAX),
    };
    r
}

impl Netlink {
    /// Every policy rule of one family, in priority order (the kernel's order).
    pub fn dump_rules(&self, ipv6: bool) -> Result<Vec<Rule>> {
        let op = || format!("dump IPv{} rules", if ipv6 { 6 } else { 4 });
        let mut msg = RuleMessage::default();
        msg.header.family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let messages = self
            .dump(RouteNetlinkMessage::GetRule(msg))
            .map_err(|c| c.on(op()))?;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let RouteNetlinkMessage::NewRule(m) = m else {
                return Err(
                    Cause::Malformed("a rule dump returned another object".into()).on(op()),
                );
            };
            out.push(rule_from(m));
        }
        out.sort_by_key(|r| r.priority);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::rule::RuleHeader;

    fn msg(action: RuleAction, table: u8, attrs: Vec<RuleAttribute>) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header = RuleHeader {
            family: AddressFamily::Inet,
            table,
            action,
            ..Default::default()
        };
        m.attributes = attrs;
        m
    }

    #[test]
    fn rules_read_as_ip_rule_prints_them() {
        let main = rule_from(msg(
            RuleAction::ToTable,
            254,
            vec![RuleAttribute::Priority(32766), RuleAttribute::Table(254)],
        ));
        assert_eq!(main.kind, RuleKind::Lookup(254));
        assert_eq!(main.priority, 32766);
        assert!(main.selects_by_destination_only());
        assert_eq!(main.selector(), "from all");

        let mut m = msg(
            RuleAction::ToTable,
            0,
            vec![
                RuleAttribute::Priority(100),
                RuleAttribute::Destination("10.1.0.0".parse().unwrap()),
                RuleAttribute::FwMark(0x200),
                RuleAttribute::FwMask(0xf00),
                RuleAttribute::Table(1000),
            ],
        );
        m.header.dst_len = 16;
        let r = rule_from(m);
        assert_eq!(r.kind, RuleKind::Lookup(1000), "the attribute wins");
        assert_eq!(r.dst, Some(("10.1.0.0".parse().unwrap(), 16)));
        assert!(!r.selects_by_destination_only());
        assert_eq!(r.selector(), "from all to 10.1.0.0/16 fwmark 0x200/0xf00");

        let r = rule_from(msg(
            RuleAction::ToTable,
            0,
            vec![RuleAttribute::L3MDev(true), RuleAttribute::Priority(1000)],
        ));
        assert_eq!(r.kind, RuleKind::L3mdev);
        let r = rule_from(msg(RuleAction::Goto, 0, vec![RuleAttribute::Goto(5)]));
        assert_eq!(r.kind, RuleKind::Goto(5));
        let r = rule_from(msg(RuleAction::Blackhole, 0, vec![]));
        assert_eq!(r.kind, RuleKind::Reject);
    }
}
