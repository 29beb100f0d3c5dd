//! Address ranges and range sets as host-local defines them (`subnet`, `rangeStart`,
//! `rangeEnd`, `gateway`), canonicalised the same way, and the free-address search over a
//! sorted list of unavailable addresses. No I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// An address as a number, for arithmetic; the family travels beside it.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`to_u128`] for the given family.
pub fn from_u128(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address, as Go's `To4` has it.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)),
        v4 => v4,
    }
}

/// One range: a subnet, the inclusive bounds allocation may use, and the gateway (never
/// allocated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNetwork,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

/// What a range is written as in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSpec {
    pub subnet: String,
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub gateway: Option<String>,
}

fn parse_ip(what: &str, s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map(canonical)
        .map_err(|_| format!("invalid {what} {s:?}"))
}

impl Range {
    /// host-local's `Canonicalize`: the subnet must have no host bits and at least two
    /// host bits; the gateway defaults to the first address; the start to the first
    /// address, the end to the last (IPv4: the one before broadcast).
    pub fn canonicalize(spec: &RangeSpec) -> Result<Range, String> {
        let subnet: IpNetwork = spec
            .subnet
            .parse()
            .map_err(|_| format!("invalid subnet {:?}", spec.subnet))?;
        let subnet = match subnet {
            IpNetwork::V6(n) => match n.ip().to_ipv4_mapped() {
                Some(v4) if n.prefix() >= 96 => IpNetwork::new(IpAddr::V4(v4), n.prefix() - 96)
                    .map_err(|e| format!("invalid subnet {:?}: {e}", spec.subnet))?,
                _ => subnet,
            },
            n => n,
        };
        let bits: u8 = if subnet.is_ipv4() { 32 } else { 128 };
        if subnet.prefix() > bits - 2 {
            return Err(format!("Network {subnet} too small to allocate from"));
        }
        if subnet.ip() != subnet.network() {
            return Err(format!(
                "Network has host bits set. For a subnet mask of length {} the network address is {}",
                subnet.prefix(),
                subnet.network()
            ));
        }
        let v6 = subnet.is_ipv6();
        let net = to_u128(subnet.network());
        let last = to_u128(subnet.broadcast());
        let first = from_u128(v6, net + 1);
        let default_end = from_u128(v6, if v6 { last } else { last - 1 });
        let mut r = Range {
            subnet,
            start: first,
            end: default_end,
            gateway: first,
        };
        if let Some(g) = &spec.gateway {
            let g = parse_ip("gateway", g)?;
            if !subnet.contains(g) {
                return Err(format!("gateway {g} not in network {subnet}"));
            }
            r.gateway = g;
        }
        if let Some(s) = &spec.range_start {
            let s = parse_ip("rangeStart", s)?;
            r.check_in_subnet(s)?;
            r.start = s;
        }
        if let Some(e) = &spec.range_end {
            let e = parse_ip("rangeEnd", e)?;
            r.check_in_subnet(e)?;
            r.end = e;
        }
        if to_u128(r.start) > to_u128(r.end) {
            return Err(format!(
                "rangeStart {} is after rangeEnd {}",
                r.start, r.end
            ));
        }
        Ok(r)
    }

    fn check_in_subnet(&self, ip: IpAddr) -> Result<(), String> {
        if ip.is_ipv6() != self.is_v6() {
            return Err(format!(
                "IP {ip} is not the same protocol as subnet {}",
                self.subnet
            ));
        }
        if !self.subnet.contains(ip) {
            return Err(format!("{ip} not in network {}", self.subnet));
        }
        Ok(())
    }

    pub fn is_v6(&self) -> bool {
        self.subnet.is_ipv6()
    }

    /// Whether `ip` lies between start and end (inclusive) of this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.is_v6()
            && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    fn overlaps(&self, o: &Range) -> bool {
        self.is_v6() == o.is_v6()
            && to_u128(self.start) <= to_u128(o.end)
            && to_u128(o.start) <= to_u128(self.end)
    }

    /// The number of addresses allocation may hand out (the gateway excluded), saturating
    /// at `u128::MAX`: the whole IPv6 space holds one address more than a `u128` counts.
    pub fn size(&self) -> u128 {
        let span = to_u128(self.end) - to_u128(self.start);
        if self.contains(self.gateway) {
            span
        } else {
            span.saturating_add(1)
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Ranges of one family that one allocation draws from, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    pub fn canonicalize(specs: &[RangeSpec]) -> Result<RangeSet, String> {
        if specs.is_empty() {
            return Err("empty range set".into());
        }
        let ranges = specs
            .iter()
            .map(Range::canonicalize)
            .collect::<Result<Vec<_>, _>>()?;
        if ranges.iter().any(|r| r.is_v6() != ranges[0].is_v6()) {
            return Err("mixed address families".into());
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(format!("subnets {a} and {b} overlap"));
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn is_v6(&self) -> bool {
        self.0[0].is_v6()
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn overlaps(&self, o: &RangeSet) -> bool {
        self.0.iter().any(|a| o.0.iter().any(|b| a.overlaps(b)))
    }

    /// Addresses allocation may hand out (saturating, as [`Range::size`]).
    pub fn size(&self) -> u128 {
        self.0
            .iter()
            .fold(0u128, |sum, r| sum.saturating_add(r.size()))
    }

    /// The stretches to search, in host-local's round-robin order: from just after
    /// `cursor` (when it lies in the set) to the end of its range, the following ranges,
    /// wrapping around, and back up to the cursor itself. Without a cursor: every range
    /// from the first.
    pub fn search_order(&self, cursor: Option<IpAddr>) -> Vec<(u128, u128)> {
        let rs = &self.0;
        let bounds = |r: &Range| (to_u128(r.start), to_u128(r.end));
        let Some((i, c)) = cursor.and_then(|c| {
            rs.iter()
                .position(|r| r.contains(c))
                .map(|i| (i, to_u128(c)))
        }) else {
            return rs.iter().map(bounds).collect();
        };
        let (s, e) = bounds(&rs[i]);
        let mut out = Vec::with_capacity(rs.len() + 1);
        if c < e {
            out.push((c + 1, e));
        }
        for k in 1..rs.len() {
            out.push(bounds(&rs[(i + k) % rs.len()]));
        }
        out.push((s, c));
        out
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The first address in `lo..=hi` that is not in `taken` (sorted, no duplicates), by
/// binary search: O(log n) however many addresses are taken.
pub fn first_free(taken: &[u128], lo: u128, hi: u128) -> Option<u128> {
    if lo > hi {
        return None;
    }
    let from = taken.partition_point(|&t| t < lo);
    let to = taken.partition_point(|&t| t <= hi);
    let inside = &taken[from..to];
    // inside[i] == lo + i holds for a prefix (the run of taken addresses from lo) and
    // fails ever after: the first failure is the gap.
    let gap = partition_point_by_index(inside.len(), |i| inside[i] == lo + i as u128);
    // Every address from lo up to the end of the space taken: no candidate past it.
    let candidate = lo.checked_add(gap as u128)?;
    (candidate <= hi).then_some(candidate)
}

fn partition_point_by_index(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: subnet.into(),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_match_host_local() {
        let r = Range::canonicalize(&spec("10.1.0.0/24")).unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.1.0.1"), ip("10.1.0.254"), ip("10.1.0.1"))
        );
        assert_eq!(r.size(), 253);
        let r = Range::canonicalize(&spec("fd00::/120")).unwrap();
        assert_eq!((r.start, r.end), (ip("fd00::1"), ip("fd00::ff")));
        assert_eq!(r.to_string(), "fd00::1-fd00::ff");
    }

    #[test]
    fn sizes_of_the_whole_ipv6_space_saturate() {
        // ::/0 from :: holds 2^128 addresses: the gateway (::1) excluded, u128::MAX.
        let whole = RangeSpec {
            range_start: Some("::".into()),
            ..spec("::/0")
        };
        let r = Range::canonicalize(&whole).unwrap();
        assert_eq!(r.size(), u128::MAX);
        // Gateway outside the range: 2^128 does not fit, the count saturates.
        let no_gw = RangeSpec {
            range_start: Some("::2".into()),
            gateway: Some("::1".into()),
            ..spec("::/0")
        };
        let r2 = Range::canonicalize(&no_gw).unwrap();
        assert_eq!(r2.size(), u128::MAX - 1);
        // Two halves, each 2^127 - 1 from their first address, less their gateway.
        let set = RangeSet::canonicalize(&[spec("::/1"), spec("8000::/1")]).unwrap();
        assert_eq!(set.size(), u128::MAX - 3);
        let set = RangeSet::canonicalize(&[whole]).unwrap();
        assert_eq!(set.size(), u128::MAX);
    }

    #[test]
    fn bad_ranges_are_refused() {
        for (s, want) in [
            (spec("10.1.0.5/24"), "host bits"),
            (spec("10.1.0.0/31"), "too small"),
            (spec("nope"), "invalid subnet"),
            (
                RangeSpec {
                    gateway: Some("10.2.0.1".into()),
                    ..spec("10.1.0.0/24")
                },
                "not in network",
            ),
            (
                RangeSpec {
                    range_start: Some("10.1.0.9".into()),
                    range_end: Some("10.1.0.3".into()),
                    ..spec("10.1.0.0/24")
                },
                "after",
            ),
            (
                RangeSpec {
                    range_end: Some("fd00::3".into()),
                    ..spec("10.1.0.0/24")
                },
                "protocol",
            ),
        ] {
            let e = Range::canonicalize(&s).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn sets_refuse_overlap_and_mixed_families() {
        let e = RangeSet::canonicalize(&[spec("10.1.0.0/24"), spec("10.1.0.0/25")]).unwrap_err();
        assert!(e.contains("overlap"), "{e}");
        let e = RangeSet::canonicalize(&[spec("10.1.0.0/24"), spec("fd00::/64")]).unwrap_err();
        assert!(e.contains("mixed"), "{e}");
        assert!(RangeSet::canonicalize(&[]).is_err());
    }

    #[test]
    fn search_order_is_round_robin_from_the_cursor() {
        let set = RangeSet::canonicalize(&[spec("10.1.0.0/29"), spec("10.2.0.0/29")]).unwrap();
        let n = |s| to_u128(ip(s));
        assert_eq!(
            set.search_order(None),
            vec![
                (n("10.1.0.1"), n("10.1.0.6")),
                (n("10.2.0.1"), n("10.2.0.6"))
            ]
        );
        assert_eq!(
            set.search_order(Some(ip("10.1.0.3"))),
            vec![
                (n("10.1.0.4"), n("10.1.0.6")),
                (n("10.2.0.1"), n("10.2.0.6")),
                (n("10.1.0.1"), n("10.1.0.3"))
            ]
        );
        assert_eq!(
            set.search_order(Some(ip("10.2.0.6"))),
            vec![
                (n("10.1.0.1"), n("10.1.0.6")),
                (n("10.2.0.1"), n("10.2.0.6"))
            ]
        );
        assert_eq!(set.search_order(Some(ip("10.9.0.1"))).len(), 2);
    }

    #[test]
    fn first_free_finds_gaps() {
        assert_eq!(first_free(&[], 5, 9), Some(5));
        assert_eq!(first_free(&[5, 6, 7], 5, 9), Some(8));
        assert_eq!(first_free(&[1, 5, 6, 8], 5, 9), Some(7));
        assert_eq!(first_free(&[5, 6, 7, 8, 9], 5, 9), None);
        assert_eq!(first_free(&[5, 6, 7, 8, 9, 10], 5, 9), None);
        assert_eq!(first_free(&[3, 4], 5, 9), Some(5));
        assert_eq!(first_free(&[], 9, 5), None);
        // The last address of the IPv6 space, taken: nothing after it (no overflow).
        assert_eq!(first_free(&[u128::MAX], u128::MAX, u128::MAX), None);
        assert_eq!(
            first_free(&[u128::MAX - 1, u128::MAX], u128::MAX - 1, u128::MAX),
            None
        );
        assert_eq!(
            first_free(&[u128::MAX - 1], u128::MAX - 1, u128::MAX),
            Some(u128::MAX)
        );
        let big: Vec<u128> = (0..60_000).collect();
        assert_eq!(first_free(&big, 0, 65_533), Some(60_000));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        assert_eq!(canonical(ip("::ffff:10.1.0.5")), ip("10.1.0.5"));
        let r = Range::canonicalize(&spec("::ffff:10.1.0.0/120")).unwrap();
        assert!(!r.is_v6());
    }
}
