//! The allocator: what the state says (a [`Scan`] of its records), what a verb decides
//! (a plan with an [`Edit`]), and how the edit rewrites the records. No I/O.
//!
//! Allocation is host-local's round-robin from the range set's cursor, except that an
//! address released less than `reuseAfterSeconds` ago is passed over while another is
//! free. When none is, the address released longest ago is used (with a warning): a pod
//! start is never refused while an address exists. A search is a binary search over the
//! sorted unavailable addresses, so its cost does not grow with how many are in use.

use std::collections::HashSet;
use std::net::IpAddr;

use tombstone_cni::{Attachment, CniError, Result, code};

use crate::range::{Range, RangeSet, first_free, from_u128, to_u128};
use crate::record::Record;

/// Whether an allocation record belongs to an attachment. An empty ifname (host-local's
/// files before it recorded one) matches any interface of the container.
pub fn owned_by(container_id: &str, ifname: &str, a: &Attachment) -> bool {
    container_id == a.container_id && (ifname.is_empty() || ifname == a.ifname)
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

    fn keeps(&self, container_id: &str, ifname: &str) -> bool {
        if ifname.is_empty() {
            self.containers.contains(container_id)
        } else {
            self.pairs
                .contains(&(container_id.to_string(), ifname.to_string()))
        }
    }
}

/// What one pass over the records found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The attachment whose addresses to collect in `mine`.
    pub query: Option<Attachment>,
    /// For GC: allocations of attachments outside this set are collected in `stale`.
    pub valid: Option<ValidSet>,
    /// Every allocated address (sorted and checked by [`Scan::finish`]).
    pub taken: Vec<IpAddr>,
    /// Released addresses and when.
    pub cooling: Vec<(IpAddr, u64)>,
    pub mine: Vec<IpAddr>,
    pub stale: Vec<IpAddr>,
    pub cursors: Vec<(usize, IpAddr)>,
    pub records: usize,
}

impl Scan {
    pub fn new(query: Option<Attachment>, valid: Option<ValidSet>) -> Scan {
        Scan {
            query,
            valid,
            ..Default::default()
        }
    }

    pub fn feed(&mut self, r: &Record<'_>) {
        self.records += 1;
        match r {
            Record::Alloc {
                ip,
                container_id,
                ifname,
            } => {
                self.taken.push(*ip);
                if let Some(q) = &self.query
                    && owned_by(container_id, ifname, q)
                {
                    self.mine.push(*ip);
                }
                if let Some(v) = &self.valid
                    && !v.keeps(container_id, ifname)
                {
                    self.stale.push(*ip);
                }
            }
            Record::Released { ip, at } => self.cooling.push((*ip, *at)),
            Record::Cursor { set, ip } => self.cursors.push((*set, *ip)),
        }
    }

    /// Sorts the taken addresses; an address allocated twice means the state is corrupt.
    pub fn finish(&mut self) -> std::result::Result<(), String> {
        self.taken.sort_unstable();
        if let Some(w) = self.taken.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("address {} is allocated twice", w[0]));
        }
        Ok(())
    }

    fn is_taken(&self, ip: IpAddr) -> bool {
        self.taken.binary_search(&ip).is_ok()
    }

    fn cursor(&self, set: usize) -> Option<IpAddr> {
        self.cursors
            .iter()
            .rev()
            .find(|(s, _)| *s == set)
            .map(|(_, ip)| *ip)
    }

    /// Addresses of `set` still free for an ADD (cooling ones count: ADD would use them).
    pub fn free_in(&self, set: &RangeSet) -> u128 {
        let mut used = 0u128;
        for r in &set.0 {
            let lo = self.taken.partition_point(|t| t < &r.start);
            let hi = self.taken.partition_point(|t| t <= &r.end);
            used += self.taken[lo..hi]
                .iter()
                .filter(|t| **t != r.gateway)
                .count() as u128;
        }
        set.size().saturating_sub(used)
    }
}

/// Changes to the records, applied while they are rewritten.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edit {
    /// New allocations: (address, container ID, ifname).
    pub add: Vec<(IpAddr, String, String)>,
    /// Allocations to release (they start cooling down at `now`).
    pub release: Vec<IpAddr>,
    /// Cursors to set, per range set.
    pub cursors: Vec<(usize, IpAddr)>,
    pub now: u64,
    /// Cool-down records released before this are dropped (their cool-down is over).
    pub expire_before: u64,
}

impl Edit {
    pub fn new(now: u64, reuse_after: u64) -> Edit {
        Edit {
            now,
            expire_before: now.saturating_sub(reuse_after),
            ..Default::default()
        }
    }

    /// Whether the edit changes any allocation or cursor (expiry alone is not worth a write).
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.release.is_empty() && self.cursors.is_empty()
    }

    /// Whether an existing record survives the edit.
    pub fn keeps(&self, r: &Record<'_>) -> bool {
        match r {
            Record::Alloc { ip, .. } => !self.release.contains(ip),
            Record::Released { ip, at } => {
                *at >= self.expire_before
                    && !self.release.contains(ip)
                    && !self.add.iter().any(|(a, _, _)| a == ip)
            }
            Record::Cursor { set, .. } => !self.cursors.iter().any(|(s, _)| s == set),
        }
    }

    /// The records the edit appends after the surviving ones.
    pub fn appended(&self) -> Vec<Record<'_>> {
        let mut out = Vec::new();
        for (set, ip) in &self.cursors {
            out.push(Record::Cursor { set: *set, ip: *ip });
        }
        for (ip, cid, ifname) in &self.add {
            out.push(Record::Alloc {
                ip: *ip,
                container_id: cid.as_str().into(),
                ifname: ifname.as_str().into(),
            });
        }
        for ip in &self.release {
            out.push(Record::Released {
                ip: *ip,
                at: self.now,
            });
        }
        out
    }
}

/// One address of an ADD result.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub ip: IpAddr,
    pub range: Range,
}

/// What an ADD decided.
#[derive(Debug, Clone)]
pub struct AddPlan {
    pub assigned: Vec<Assigned>,
    pub edit: Edit,
    /// Things to log at warning level (cool-down overridden).
    pub warnings: Vec<String>,
}

/// Decides the addresses of an ADD: one per range set, requested ones where given.
pub fn plan_add(
    scan: &Scan,
    sets: &[RangeSet],
    requested: &[IpAddr],
    who: &Attachment,
    now: u64,
    reuse_after: u64,
) -> Result<AddPlan> {
    let mut edit = Edit::new(now, reuse_after);
    let mut warnings = Vec::new();
    let mut assigned = Vec::new();
    let mut pending: Vec<IpAddr> = requested.to_vec();
    for (idx, set) in sets.iter().enumerate() {
        let wanted = pending
            .iter()
            .position(|ip| set.contains(*ip))
            .map(|i| pending.remove(i));
        let unavailable = |msg: String| CniError::new(code::ADDRESS_UNAVAILABLE, msg);
        // An attachment holds at most one address per range set: a repeated ADD gets it back.
        if let Some(&held) = scan.mine.iter().find(|ip| set.contains(**ip)) {
            if let Some(w) = wanted
                && w != held
            {
                return Err(unavailable(format!(
                    "failed to allocate for range {idx}: {held} has been allocated to {}, cannot also give it {w}",
                    who.container_id
                )));
            }
            let range = set.range_for(held).expect("contained").clone();
            assigned.push(Assigned { ip: held, range });
            continue;
        }
        let ip = if let Some(w) = wanted {
            let range = set.range_for(w).expect("contained");
            if w == range.gateway {
                return Err(unavailable(format!(
                    "failed to allocate for range {idx}: requested ip {w} is subnet's gateway"
                )));
            }
            if scan.is_taken(w) {
                return Err(unavailable(format!(
                    "failed to allocate for range {idx}: requested IP address {w} is not available in range set {set}"
                )));
            }
            w
        } else {
            pick(scan, set, idx, &edit, now, reuse_after, &mut warnings).ok_or_else(|| {
                CniError::new(
                    code::POOL_EXHAUSTED,
                    format!(
                        "failed to allocate for range {idx}: no IP addresses available in range set: {set}"
                    ),
                )
            })?
        };
        edit.add
            .push((ip, who.container_id.clone(), who.ifname.clone()));
        edit.cursors.push((idx, ip));
        let range = set.range_for(ip).expect("contained").clone();
        assigned.push(Assigned { ip, range });
    }
    if !pending.is_empty() {
        let list: Vec<String> = pending.iter().map(|i| i.to_string()).collect();
        return Err(CniError::new(
            code::ADDRESS_UNAVAILABLE,
            format!("failed to allocate all requested IPs: {}", list.join(" ")),
        )
        .with_details("a requested address lies in none of the configured ranges"));
    }
    Ok(AddPlan {
        assigned,
        edit,
        warnings,
    })
}

/// The next address of `set` after its cursor that is free and not cooling down; failing
/// that, the one released longest ago.
fn pick(
    scan: &Scan,
    set: &RangeSet,
    idx: usize,
    edit: &Edit,
    now: u64,
    reuse_after: u64,
    warnings: &mut Vec<String>,
) -> Option<IpAddr> {
    let v6 = set.is_v6();
    let cool_until = |at: u64| at.saturating_add(reuse_after);
    let mut unavailable: Vec<u128> = scan
        .taken
        .iter()
        .chain(edit.add.iter().map(|(ip, _, _)| ip))
        .filter(|ip| ip.is_ipv6() == v6)
        .map(|ip| to_u128(*ip))
        .collect();
    unavailable.extend(
        scan.cooling
            .iter()
            .filter(|(ip, at)| ip.is_ipv6() == v6 && cool_until(*at) > now)
            .map(|(ip, _)| to_u128(*ip)),
    );
    unavailable.extend(set.0.iter().map(|r| to_u128(r.gateway)));
    unavailable.sort_unstable();
    unavailable.dedup();
    for (lo, hi) in set.search_order(scan.cursor(idx)) {
        if let Some(n) = first_free(&unavailable, lo, hi) {
            return Some(from_u128(v6, n));
        }
    }
    let fallback = scan
        .cooling
        .iter()
        .filter(|(ip, _)| {
            set.range_for(*ip).is_some_and(|r| r.gateway != *ip)
                && !scan.is_taken(*ip)
                && !edit.add.iter().any(|(a, _, _)| a == ip)
        })
        .min_by_key(|(ip, at)| (*at, *ip))?;
    warnings.push(format!(
        "range set {idx} ({set}) has no address past its cool-down: reusing {}, released {}s ago (reuseAfterSeconds {reuse_after})",
        fallback.0,
        now.saturating_sub(fallback.1)
    ));
    Some(fallback.0)
}

/// DEL: release every address of the attachment.
pub fn plan_del(scan: &Scan, now: u64, reuse_after: u64) -> Edit {
    let mut e = Edit::new(now, reuse_after);
    e.release = scan.mine.clone();
    e
}

/// GC: release every address of an attachment outside the valid set.
pub fn plan_gc(scan: &Scan, now: u64, reuse_after: u64) -> Edit {
    let mut e = Edit::new(now, reuse_after);
    e.release = scan.stale.clone();
    e
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

    /// A tiny in-memory store: records as owned values, edited as the file would be.
    #[derive(Default)]
    struct Mem(Vec<Record<'static>>);

    impl Mem {
        fn scan(&self, q: Option<&str>, valid: Option<&[Attachment]>) -> Scan {
            let mut s = Scan::new(q.map(att), valid.map(ValidSet::new));
            for r in &self.0 {
                s.feed(r);
            }
            s.finish().unwrap();
            s
        }
        fn apply(&mut self, e: &Edit) {
            let mut next: Vec<Record<'static>> =
                self.0.iter().filter(|r| e.keeps(r)).cloned().collect();
            for r in e.appended() {
                next.push(match r {
                    Record::Alloc {
                        ip,
                        container_id,
                        ifname,
                    } => Record::Alloc {
                        ip,
                        container_id: container_id.into_owned().into(),
                        ifname: ifname.into_owned().into(),
                    },
                    Record::Released { ip, at } => Record::Released { ip, at },
                    Record::Cursor { set, ip } => Record::Cursor { set, ip },
                });
            }
            self.0 = next;
        }
        fn add(
            &mut self,
            sets: &[RangeSet],
            c: &str,
            req: &[IpAddr],
            now: u64,
        ) -> Result<Vec<IpAddr>> {
            let p = plan_add(&self.scan(Some(c), None), sets, req, &att(c), now, 60)?;
            self.apply(&p.edit);
            Ok(p.assigned.iter().map(|a| a.ip).collect())
        }
        fn del(&mut self, c: &str, now: u64) {
            let e = plan_del(&self.scan(Some(c), None), now, 60);
            self.apply(&e);
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
            vec![
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
                    .parse::<IpAddr>()
                    .unwrap()
            ]
        );
        assert_eq!(
            m.add(&s, "c", &[], 100).unwrap(),
            vec![top.parse::<IpAddr>().unwrap()]
        );
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
        assert_eq!(m.add(&s, "a", &[], 101).unwrap(), a);
        assert_eq!(m.scan(None, None).taken.len(), 1);
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
        let p = plan_add(&m.scan(Some("f"), None), &s, &[], &att("f"), 103, 60).unwrap();
        assert_eq!(p.assigned[0].ip, a);
        assert_eq!(p.warnings.len(), 1);
        m.apply(&p.edit);
        assert!(m.scan(None, None).cooling.is_empty());
        // And now it is full.
        let e = plan_add(&m.scan(Some("g"), None), &s, &[], &att("g"), 104, 60).unwrap_err();
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
        // Expired cool-down records were dropped by that write.
        assert!(m.scan(None, None).cooling.is_empty());
    }

    #[test]
    fn zero_cool_down_behaves_like_host_local() {
        let s = [set("10.1.0.0/29", None, None)];
        let mut m = Mem::default();
        m.add(&s, "a", &[], 100).unwrap();
        m.del("a", 100);
        let p = plan_add(&m.scan(Some("b"), None), &s, &[], &att("b"), 100, 0).unwrap();
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
        assert_eq!(m.scan(None, None).taken.len(), 2);
    }

    #[test]
    fn gc_releases_only_what_is_not_valid() {
        let s = [set("10.1.0.0/24", None, None)];
        let mut m = Mem::default();
        for c in ["a", "b", "c"] {
            m.add(&s, c, &[], 1).unwrap();
        }
        let keep = [att("b")];
        let e = plan_gc(&m.scan(None, Some(&keep)), 2, 60);
        assert_eq!(e.release.len(), 2);
        m.apply(&e);
        let after = m.scan(None, None);
        assert_eq!(after.taken, [ip("10.1.0.3")]);
        assert_eq!(after.cooling.len(), 2);
        let e = plan_gc(&m.scan(None, Some(&[])), 3, 60);
        assert_eq!(e.release.len(), 1);
    }

    #[test]
    fn legacy_records_without_ifname_match_the_container() {
        let mut m = Mem(vec![Record::Alloc {
            ip: ip("10.1.0.9"),
            container_id: "a".into(),
            ifname: "".into(),
        }]);
        assert_eq!(m.scan(Some("a"), None).mine, [ip("10.1.0.9")]);
        assert!(m.scan(None, Some(&[att("a")])).stale.is_empty());
        m.del("a", 5);
        assert!(m.scan(None, None).taken.is_empty());
    }

    #[test]
    fn duplicates_are_corruption_and_free_counts_exclude_the_gateway() {
        let r = |c: &'static str| Record::Alloc {
            ip: ip("10.1.0.9"),
            container_id: c.into(),
            ifname: "eth0".into(),
        };
        let mut s = Scan::default();
        s.feed(&r("a"));
        s.feed(&r("b"));
        assert!(s.finish().unwrap_err().contains("twice"));
        let mut s = Scan::default();
        s.feed(&r("a"));
        s.finish().unwrap();
        assert_eq!(s.free_in(&set("10.1.0.0/24", None, None)), 252);
        assert_eq!(s.free_in(&set("10.2.0.0/24", None, None)), 253);
    }

    #[test]
    fn a_nearly_full_slash_16_allocates_by_binary_search() {
        let s = [set("10.10.0.0/16", None, None)];
        let mut scan = Scan::default();
        for n in 0..60_000u32 {
            scan.feed(&Record::Alloc {
                ip: IpAddr::V4((u32::from(std::net::Ipv4Addr::new(10, 10, 0, 2)) + n).into()),
                container_id: "x".into(),
                ifname: format!("e{n}").into(),
            });
        }
        scan.finish().unwrap();
        let t = std::time::Instant::now();
        let p = plan_add(&scan, &s, &[], &att("new"), 1, 60).unwrap();
        assert_eq!(p.assigned[0].ip, ip("10.10.234.98"));
        assert!(t.elapsed() < std::time::Duration::from_millis(200));
    }
}
