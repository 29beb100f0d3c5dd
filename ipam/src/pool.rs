//! The allocator: what an address's record says ([`Slot`]), how an ADD chooses (a
//! [`View`] answers one address at a time), what DEL and GC release. No I/O: the store and
//! the in-memory [`Mem`] implement [`View`].
//!
//! Allocation is host-local's round robin from the range set's cursor, except that an
//! address released less than `reuseAfterSeconds` ago is passed over while another is
//! free. When none is, the address released longest ago is used (with a warning): a pod
//! start is never refused while an address exists. The search asks about one candidate
//! after another and stops at the first free one: its cost is the number of unavailable
//! addresses right after the cursor (none, as round robin leaves a pool), at worst every
//! address of the set that has a record (a full or fully cooling set).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use tombstone_cni::{Attachment, CniError, Result, code};

use crate::range::{Range, RangeSet, from_u128, to_u128};
use crate::record::Record;

/// Whether an allocation record belongs to an attachment. An empty ifname (host-local's
/// files before it recorded one) matches any interface of the container.
pub fn owned_by(container_id: &str, ifname: &str, a: &Attachment) -> bool {
    container_id == a.container_id && (ifname.is_empty() || ifname == a.ifname)
}

/// Whether an address released at `at` still cools down at `now`.
pub fn cooling(at: u64, now: u64, reuse_after: u64) -> bool {
    at.saturating_add(reuse_after) > now
}

/// What the state says about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// No record: never allocated, or its cool-down record was dropped.
    Free,
    Held {
        container_id: String,
        ifname: String,
    },
    /// Released at this Unix time (free once its cool-down is over).
    Released(u64),
    /// A record that cannot be read (a power loss can leave one empty): its address is
    /// never handed out; GC releases it.
    Unreadable(String),
}

impl Slot {
    /// Whether ADD may hand the address out (a cooling one only as the last resort).
    fn is_taken(&self) -> bool {
        matches!(self, Slot::Held { .. } | Slot::Unreadable(_))
    }
}

/// The state as the allocator reads it, one address at a time.
pub trait View {
    fn slot(&mut self, ip: IpAddr) -> Result<Slot>;
    /// The last address handed out in range set `set`.
    fn cursor(&mut self, set: usize) -> Result<Option<IpAddr>>;
}

/// Which attachments GC keeps.
#[derive(Debug, Clone, Default)]
pub struct ValidSet {
    pairs: HashSet<(String, String)>,
    containers: HashSet<String>,
}

impl ValidSet {
    pub fn new(list: &[Attachment]) -> ValidSet {
        ValidSet {
            pairs: list
                .iter()
                .map(|a| (a.container_id.clone(), a.ifname.clone()))
                .collect(),
            containers: list.iter().map(|a| a.container_id.clone()).collect(),
        }
    }

    pub fn keeps(&self, container_id: &str, ifname: &str) -> bool {
        if ifname.is_empty() {
            self.containers.contains(container_id)
        } else {
            self.pairs
                .contains(&(container_id.to_string(), ifname.to_string()))
        }
    }
}

/// What GC does with one record: release it (an allocation of an attachment that is not
/// valid, or an unreadable record), drop it (a cool-down that is over), or keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcAction {
    Keep,
    Release,
    Drop,
}

pub fn gc_action(slot: &Slot, valid: &ValidSet, now: u64, reuse_after: u64) -> GcAction {
    match slot {
        Slot::Held {
            container_id,
            ifname,
        } if !valid.keeps(container_id, ifname) => GcAction::Release,
        Slot::Unreadable(_) => GcAction::Release,
        Slot::Released(at) if !cooling(*at, now, reuse_after) => GcAction::Drop,
        _ => GcAction::Keep,
    }
}

/// One address of an ADD result.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub ip: IpAddr,
    pub range: Range,
    /// Newly allocated by this ADD (not held already).
    pub new: bool,
}

/// What an ADD decided.
#[derive(Debug, Clone)]
pub struct AddPlan {
    /// One per range set, in order.
    pub assigned: Vec<Assigned>,
    /// Things to log at warning level (cool-down overridden).
    pub warnings: Vec<String>,
}

impl AddPlan {
    /// The new allocations: (range set, address).
    pub fn new_ones(&self) -> impl Iterator<Item = (usize, IpAddr)> + '_ {
        self.assigned
            .iter()
            .enumerate()
            .filter(|(_, a)| a.new)
            .map(|(i, a)| (i, a.ip))
    }
}

/// Decides the addresses of an ADD: one per range set, requested ones where given; `held`
/// are the addresses the attachment already holds (a repeated ADD gets them back).
pub fn plan_add(
    view: &mut dyn View,
    held: &[IpAddr],
    sets: &[RangeSet],
    requested: &[IpAddr],
    who: &Attachment,
    now: u64,
    reuse_after: u64,
) -> Result<AddPlan> {
    let mut warnings = Vec::new();
    let mut assigned: Vec<Assigned> = Vec::new();
    let mut pending: Vec<IpAddr> = requested.to_vec();
    for (idx, set) in sets.iter().enumerate() {
        let wanted = pending
            .iter()
            .position(|ip| set.contains(*ip))
            .map(|i| pending.remove(i));
        let unavailable = |msg: String| CniError::new(code::ADDRESS_UNAVAILABLE, msg);
        // An attachment holds at most one address per range set: a repeated ADD gets it back.
        if let Some(&held) = held.iter().find(|ip| set.contains(**ip)) {
            if let Some(w) = wanted
                && w != held
            {
                return Err(unavailable(format!(
                    "failed to allocate for range {idx}: {held} has been allocated to {}, cannot also give it {w}",
                    who.container_id
                )));
            }
            let range = set.range_for(held).expect("contained").clone();
            assigned.push(Assigned {
                ip: held,
                range,
                new: false,
            });
            continue;
        }
        let ip = if let Some(w) = wanted {
            let range = set.range_for(w).expect("contained");
            if w == range.gateway {
                return Err(unavailable(format!(
                    "failed to allocate for range {idx}: requested ip {w} is subnet's gateway"
                )));
            }
            if view.slot(w)?.is_taken() || assigned.iter().any(|a| a.ip == w) {
                return Err(unavailable(format!(
                    "failed to allocate for range {idx}: requested IP address {w} is not available in range set {set}"
                )));
            }
            w
        } else {
            let exclude: Vec<IpAddr> = assigned.iter().map(|a| a.ip).collect();
            let (ip, warning) = pick(view, set, idx, &exclude, now, reuse_after)?.ok_or_else(|| {
                CniError::new(
                    code::POOL_EXHAUSTED,
                    format!(
                        "failed to allocate for range {idx}: no IP addresses available in range set: {set}"
                    ),
                )
            })?;
            warnings.extend(warning);
            ip
        };
        let range = set.range_for(ip).expect("contained").clone();
        assigned.push(Assigned {
            ip,
            range,
            new: true,
        });
    }
    if !pending.is_empty() {
        let list: Vec<String> = pending.iter().map(|i| i.to_string()).collect();
        return Err(CniError::new(
            code::ADDRESS_UNAVAILABLE,
            format!("failed to allocate all requested IPs: {}", list.join(" ")),
        )
        .with_details("a requested address lies in none of the configured ranges"));
    }
    Ok(AddPlan { assigned, warnings })
}

/// The next address of `set` after its cursor that is free and not cooling down; failing
/// that, the one released longest ago (with the warning to log); `None` when every
/// address is allocated. Each candidate costs one [`View::slot`]; the walk stops at the
/// first free one.
pub fn pick(
    view: &mut dyn View,
    set: &RangeSet,
    idx: usize,
    exclude: &[IpAddr],
    now: u64,
    reuse_after: u64,
) -> Result<Option<(IpAddr, Option<String>)>> {
    let v6 = set.is_v6();
    let gateways: Vec<u128> = set.0.iter().map(|r| to_u128(r.gateway)).collect();
    let cursor = view.cursor(idx)?;
    // The cooling address released longest ago: (released at, address).
    let mut oldest: Option<(u64, u128)> = None;
    for (lo, hi) in set.search_order(cursor) {
        for n in lo..=hi {
            if gateways.contains(&n) {
                continue;
            }
            let ip = from_u128(v6, n);
            if exclude.contains(&ip) {
                continue;
            }
            match view.slot(ip)? {
                Slot::Free => return Ok(Some((ip, None))),
                Slot::Released(at) if !cooling(at, now, reuse_after) => {
                    return Ok(Some((ip, None)));
                }
                Slot::Released(at) => {
                    if oldest.is_none_or(|o| (at, n) < o) {
                        oldest = Some((at, n));
                    }
                }
                Slot::Held { .. } | Slot::Unreadable(_) => {}
            }
        }
    }
    Ok(oldest.map(|(at, n)| {
        let ip = from_u128(v6, n);
        let warning = format!(
            "range set {idx} ({set}) has no address past its cool-down: reusing {ip}, released {}s ago (reuseAfterSeconds {reuse_after})",
            now.saturating_sub(at)
        );
        (ip, Some(warning))
    }))
}

/// The state in memory: a state of an older format that is only read (CHECK, STATUS before
/// the first write migrates it), the intermediate of a migration, and the tests'.
#[derive(Debug, Clone, Default)]
pub struct Mem {
    pub slots: HashMap<IpAddr, Slot>,
    pub cursors: HashMap<usize, IpAddr>,
}

impl Mem {
    /// From records in file order (the last cursor of a set wins). An address allocated
    /// twice means the state is corrupt.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a Record<'a>>,
    ) -> std::result::Result<Mem, String> {
        let mut m = Mem::default();
        for r in records {
            match r {
                Record::Alloc {
                    ip,
                    container_id,
                    ifname,
                } => {
                    let held = Slot::Held {
                        container_id: container_id.to_string(),
                        ifname: ifname.to_string(),
                    };
                    if let Some(Slot::Held { .. }) = m.slots.insert(*ip, held) {
                        return Err(format!("address {ip} is allocated twice"));
                    }
                }
                Record::Released { ip, at } => {
                    if !matches!(m.slots.get(ip), Some(Slot::Held { .. })) {
                        m.slots.insert(*ip, Slot::Released(*at));
                    }
                }
                Record::Cursor { set, ip } => {
                    m.cursors.insert(*set, *ip);
                }
            }
        }
        Ok(m)
    }

    /// The addresses `who` holds, sorted.
    pub fn held(&self, who: &Attachment) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                matches!(s, Slot::Held { container_id, ifname } if owned_by(container_id, ifname, who))
            })
            .map(|(ip, _)| *ip)
            .collect();
        v.sort();
        v
    }

    /// Records an ADD's decision.
    pub fn apply_add(&mut self, plan: &AddPlan, who: &Attachment) {
        for (set, ip) in plan.new_ones() {
            self.slots.insert(
                ip,
                Slot::Held {
                    container_id: who.container_id.clone(),
                    ifname: who.ifname.clone(),
                },
            );
            self.cursors.insert(set, ip);
        }
    }

    pub fn release(&mut self, ips: &[IpAddr], now: u64) {
        for ip in ips {
            self.slots.insert(*ip, Slot::Released(now));
        }
    }
}

impl View for Mem {
    fn slot(&mut self, ip: IpAddr) -> Result<Slot> {
        Ok(self.slots.get(&ip).cloned().unwrap_or(Slot::Free))
    }
    fn cursor(&mut self, set: usize) -> Result<Option<IpAddr>> {
        Ok(self.cursors.get(&set).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn att(c: &str) -> Attachment {
        Attachment {
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }

    fn set(subnet: &str, start: Option<&str>, end: Option<&str>) -> RangeSet {
        RangeSet::canonicalize(&[RangeSpec {
            subnet: subnet.into(),
            range_start: start.map(Into::into),
            range_end: end.map(Into::into),
            gateway: None,
        }])
        .unwrap()
    }

    impl Mem {
        fn plan(
            &mut self,
            sets: &[RangeSet],
            c: &str,
            req: &[IpAddr],
            now: u64,
        ) -> Result<AddPlan> {
            let held = self.held(&att(c));
            plan_add(self, &held, sets, req, &att(c), now, 60)
        }
        fn add(
            &mut self,
            sets: &[RangeSet],
            c: &str,
            req: &[IpAddr],
            now: u64,
        ) -> Result<Vec<IpAddr>> {
            let p = self.plan(sets, c, req, now)?;
            self.apply_add(&p, &att(c));
            Ok(p.assigned.iter().map(|a| a.ip).collect())
        }
        fn del(&mut self, c: &str, now: u64) {
            let held = self.held(&att(c));
            self.release(&held, now);
        }
        fn taken(&self) -> usize {
            self.slots.values().filter(|s| s.is_taken()).count()
        }
    }

    #[test]
    fn the_last_ipv6_address_as_gateway_and_start_is_an_exhausted_pool() {
        // The range is one address, the gateway: code 103, not an overflow past the end
        // of the address space (found by tests/fuzz.rs).
        let top = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let s = [RangeSet::canonicalize(&[RangeSpec {
            subnet: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff8/125".into(),
            range_start: Some(top.into()),
            range_end: None,
            gateway: Some(top.into()),
        }])
        .unwrap()];
        let mut m = Mem::default();
        assert_eq!(m.add(&s, "a", &[], 100).unwrap_err().code, 103);
        // One address below it free: given, then the pool is exhausted, cursor at the end.
        let s = [set(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff8/125",
            Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
            None,
        )];
        assert_eq!(
            m.add(&s, "b", &[], 100).unwrap(),
            [ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")]
        );
        assert_eq!(m.add(&s, "c", &[], 100).unwrap(), [ip(top)]);
        assert_eq!(m.add(&s, "d", &[], 100).unwrap_err().code, 103);
    }

    #[test]
    fn round_robin_skips_the_gateway_like_host_local() {
        let s = [set("10.1.0.0/29", None, None)];
        let mut m = Mem::default();
        let got: Vec<IpAddr> = ["a", "b", "c"]
            .iter()
            .map(|c| m.add(&s, c, &[], 100).unwrap()[0])
            .collect();
        assert_eq!(got, [ip("10.1.0.2"), ip("10.1.0.3"), ip("10.1.0.4")]);
    }

    #[test]
    fn repeated_add_returns_the_same_address() {
        let s = [set("10.1.0.0/29", None, None)];
        let mut m = Mem::default();
        let a = m.add(&s, "a", &[], 100).unwrap();
        let p = m.plan(&s, "a", &[], 101).unwrap();
        assert_eq!(p.assigned[0].ip, a[0]);
        assert_eq!(p.new_ones().count(), 0);
        assert_eq!(m.taken(), 1);
    }

    #[test]
    fn released_addresses_cool_down_while_others_are_free() {
        let s = [set("10.1.0.0/29", None, None)]; // .2 .. .6 allocatable: 5 addresses
        let mut m = Mem::default();
        let a = m.add(&s, "a", &[], 100).unwrap()[0];
        m.del("a", 101);
        // Cursor wraps around but .2 is cooling: everything else comes first.
        let mut got = vec![];
        for c in ["b", "c", "d", "e"] {
            got.push(m.add(&s, c, &[], 102).unwrap()[0]);
        }
        assert!(!got.contains(&a), "{got:?}");
        // Nothing else free: the cooling address is used rather than failing.
        let p = m.plan(&s, "f", &[], 103).unwrap();
        assert_eq!(p.assigned[0].ip, a);
        assert_eq!(p.warnings.len(), 1);
        m.apply_add(&p, &att("f"));
        // And now it is full.
        let e = m.plan(&s, "g", &[], 104).unwrap_err();
        assert_eq!(e.code, code::POOL_EXHAUSTED);
        assert!(e.msg.contains("no IP addresses available"), "{}", e.msg);
    }

    #[test]
    fn the_longest_released_is_reused_first_and_expired_ones_are_free() {
        let s = [set("10.1.0.0/29", None, None)];
        let mut m = Mem::default();
        for c in ["a", "b", "c", "d", "e"] {
            m.add(&s, c, &[], 100).unwrap();
        }
        m.del("c", 200); // .4
        m.del("a", 210); // .2
        assert_eq!(m.add(&s, "x", &[], 220).unwrap(), [ip("10.1.0.4")]);
        m.del("x", 230);
        // After the cool-down, round robin resumes from the cursor (.4): .2 comes next.
        assert_eq!(m.add(&s, "y", &[], 10_000).unwrap(), [ip("10.1.0.2")]);
    }

    #[test]
    fn zero_cool_down_behaves_like_host_local() {
        let s = [set("10.1.0.0/29", None, None)];
        let mut m = Mem::default();
        m.add(&s, "a", &[], 100).unwrap();
        m.del("a", 100);
        let p = plan_add(&mut m, &[], &s, &[], &att("b"), 100, 0).unwrap();
        assert_eq!(p.assigned[0].ip, ip("10.1.0.3"));
    }

    #[test]
    fn requested_addresses_are_honoured_even_when_cooling() {
        let s = [set("10.1.0.0/24", None, None)];
        let mut m = Mem::default();
        m.add(&s, "a", &[ip("10.1.0.50")], 100).unwrap();
        m.del("a", 101);
        assert_eq!(
            m.add(&s, "b", &[ip("10.1.0.50")], 102).unwrap(),
            [ip("10.1.0.50")]
        );
        let taken = m.add(&s, "c", &[ip("10.1.0.50")], 103).unwrap_err();
        assert_eq!(taken.code, code::ADDRESS_UNAVAILABLE);
        let gw = m.add(&s, "c", &[ip("10.1.0.1")], 103).unwrap_err();
        assert!(gw.msg.contains("gateway"), "{}", gw.msg);
        let outside = m.add(&s, "c", &[ip("10.9.0.1")], 103).unwrap_err();
        assert!(outside.msg.contains("all requested"), "{}", outside.msg);
        // The cursor follows requested addresses, as host-local's does.
        assert_eq!(m.add(&s, "d", &[], 104).unwrap(), [ip("10.1.0.51")]);
    }

    #[test]
    fn dual_stack_takes_one_address_per_set_and_fails_whole() {
        let s = [
            set("10.1.0.0/30", None, None), // only .2
            set("fd00::/120", Some("fd00::10"), None),
        ];
        let mut m = Mem::default();
        assert_eq!(
            m.add(&s, "a", &[], 1).unwrap(),
            [ip("10.1.0.2"), ip("fd00::10")]
        );
        let e = m.add(&s, "b", &[], 2).unwrap_err();
        assert_eq!(e.code, code::POOL_EXHAUSTED);
        // Nothing was half-allocated.
        assert_eq!(m.taken(), 2);
    }

    #[test]
    fn gc_releases_only_what_is_not_valid() {
        let valid = ValidSet::new(&[att("b")]);
        let held = |c: &str, i: &str| Slot::Held {
            container_id: c.into(),
            ifname: i.into(),
        };
        assert_eq!(
            gc_action(&held("a", "eth0"), &valid, 10, 60),
            GcAction::Release
        );
        assert_eq!(
            gc_action(&held("b", "eth0"), &valid, 10, 60),
            GcAction::Keep
        );
        assert_eq!(
            gc_action(&held("b", "eth1"), &valid, 10, 60),
            GcAction::Release
        );
        // Legacy records without ifname match the container.
        assert_eq!(gc_action(&held("b", ""), &valid, 10, 60), GcAction::Keep);
        assert_eq!(
            gc_action(&Slot::Unreadable("x".into()), &valid, 10, 60),
            GcAction::Release
        );
        assert_eq!(
            gc_action(&Slot::Released(5), &valid, 10, 60),
            GcAction::Keep
        );
        assert_eq!(
            gc_action(&Slot::Released(5), &valid, 100, 60),
            GcAction::Drop
        );
        assert_eq!(
            gc_action(&Slot::Released(5), &ValidSet::new(&[]), 100, 60),
            GcAction::Drop
        );
    }

    #[test]
    fn legacy_records_without_ifname_match_the_container_and_duplicates_are_corrupt() {
        let r = |c: &'static str, i: &'static str| Record::Alloc {
            ip: ip("10.1.0.9"),
            container_id: c.into(),
            ifname: i.into(),
        };
        let m = Mem::from_records(&[r("a", "")]).unwrap();
        assert_eq!(m.held(&att("a")), [ip("10.1.0.9")]);
        assert!(
            Mem::from_records(&[r("a", "eth0"), r("b", "eth0")])
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn unreadable_records_are_never_handed_out() {
        let s = [set("10.1.0.0/30", None, None)]; // only .2
        let mut m = Mem::default();
        m.slots
            .insert(ip("10.1.0.2"), Slot::Unreadable("empty".into()));
        assert_eq!(
            m.add(&s, "a", &[], 1).unwrap_err().code,
            code::POOL_EXHAUSTED
        );
        assert_eq!(
            m.add(&s, "a", &[ip("10.1.0.2")], 1).unwrap_err().code,
            code::ADDRESS_UNAVAILABLE
        );
    }

    /// Counts the candidates a search asks about.
    struct Counting(Mem, usize);
    impl View for Counting {
        fn slot(&mut self, ip: IpAddr) -> Result<Slot> {
            self.1 += 1;
            self.0.slot(ip)
        }
        fn cursor(&mut self, set: usize) -> Result<Option<IpAddr>> {
            self.0.cursor(set)
        }
    }

    #[test]
    fn a_search_asks_about_what_lies_after_the_cursor_only() {
        let s = [set("10.10.0.0/16", None, None)];
        let mut m = Mem::default();
        let first = u32::from(std::net::Ipv4Addr::new(10, 10, 0, 2));
        for n in 0..60_000u32 {
            m.slots.insert(
                IpAddr::V4((first + n).into()),
                Slot::Held {
                    container_id: "x".into(),
                    ifname: format!("e{n}"),
                },
            );
        }
        m.cursors.insert(0, IpAddr::V4((first + 59_999).into()));
        let mut c = Counting(m, 0);
        let p = plan_add(&mut c, &[], &s, &[], &att("new"), 1, 60).unwrap();
        assert_eq!(p.assigned[0].ip, ip("10.10.234.98"));
        assert_eq!(c.1, 1);
        // Without a cursor the walk passes every allocated address first: the worst case.
        c.0.cursors.clear();
        c.1 = 0;
        let p = plan_add(&mut c, &[], &s, &[], &att("new"), 1, 60).unwrap();
        assert_eq!(p.assigned[0].ip, ip("10.10.234.98"));
        assert_eq!(c.1, 60_001);
    }
}
