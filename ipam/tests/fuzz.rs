//! Fuzzing (proptest, stable Rust) of what `tombstone-ipam` parses — the IPAM config (and
//! the allocation it drives), state-file lines and headers, whole state files, host-local's
//! files — and of the real binary: no panic, no hang, well-formed errors, round trips.

use tombstone_testkit::fuzz as fuzzkit;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fuzzkit::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use tombstone_cni::state::StateDir;
use tombstone_cni::{Attachment, CniError, NetConf};
use tombstone_ipam::config::IpamConfig;
use tombstone_ipam::import;
use tombstone_ipam::legacy::{self, Source};
use tombstone_ipam::pool::{self, Mem, Slot, View};
use tombstone_ipam::range::{canonical, to_u128};
use tombstone_ipam::record::{self, CLOSING, Line, Record};

const VERSIONS: Gen = Gen::Pick(
    &[
        r#""1.1.0""#,
        r#""1.0.0""#,
        r#""0.4.0""#,
        r#""0.3.1""#,
        r#""0.3.0""#,
        r#""0.2.0""#,
        r#""0.1.0""#,
    ],
    &[r#""0.3.2""#, r#""""#, "1"],
);
const NAMES: Gen = Gen::Pick(&[r#""pods""#, r#""a.b-c_1""#], &[r#""a/b""#, r#""""#, "5"]);
const NUM: Gen = Gen::Pick(
    &["1400", "0", "4294967295"],
    &["-1", "4294967296", r#""x""#],
);

const RANGE: &[Field] = &[
    ("subnet", 0.9, Gen::Addr),
    ("rangeStart", 0.3, Gen::Addr),
    ("rangeEnd", 0.3, Gen::Addr),
    ("gateway", 0.4, Gen::Addr),
];
/// A range set whose addresses mostly agree: ranges of one family in disjoint subnets
/// without host bits, start, end and gateway inside them (now and then outside, or the
/// subnet's first or last address); sometimes ranges of [`RANGE`]'s independent fields.
const CONSISTENT_SET: Gen = Gen::Custom(consistent_set);

/// A subnet's base address for slot `x` of a family: (v6, base, prefix range).
fn family() -> BoxedStrategy<(u8, u8, u8)> {
    // (kind, min prefix, max prefix): 0 = 10.1/16 space, 1 = fd00::, 2 = the top of the
    // IPv6 space, 3 = the bottom of it, 4 = ::/0 and its halves, 5 = the last few
    // addresses of the IPv6 space.
    prop_oneof![
        5 => Just((0, 22, 30)),
        3 => Just((1, 100, 124)),
        1 => Just((2, 118, 126)),
        1 => Just((3, 118, 126)),
        1 => Just((4, 0, 2)),
        1 => Just((5, 124, 126)),
    ]
    .boxed()
}

fn consistent_set() -> BoxedStrategy<Value> {
    let offset = prop_oneof![
        8 => any::<u128>().prop_map(Some),
        1 => Just(Some(0)),
        1 => Just(Some(u128::MAX)),
        1 => Just(None),
    ];
    let at = prop::option::weighted(0.5, offset);
    let range = (0u8..=255, at.clone(), at.clone(), at);
    let set = (family(), 0u128..64, prop::collection::vec(range, 1..4)).prop_map(
        |((kind, lo, hi), first, ranges)| {
            let v6 = kind != 0;
            let bits: u32 = if v6 { 128 } else { 32 };
            let mut out = Vec::new();
            for (slot, (pick, s, e, g)) in ranges.into_iter().enumerate() {
                let p = lo + pick % (hi - lo + 1);
                let host = if u32::from(p) == 0 {
                    u128::MAX
                } else {
                    (1u128 << (bits - u32::from(p))) - 1
                };
                // The sets of a config start at different slots, so they seldom overlap;
                // the edges of the space stay at the edges.
                let slot = if kind <= 1 {
                    first * 4 + slot as u128
                } else {
                    slot as u128
                };
                let base = match kind {
                    0 => 10u128 << 24 | 1 << 16 | slot << 12,
                    1 => 0xfd00u128 << 112 | slot << 28,
                    2 => u128::MAX - (slot << 12),
                    5 => u128::MAX - (slot << 4),
                    3 => slot << 12,
                    _ => slot << 126,
                };
                let net = base & !host;
                let show = |n: u128| {
                    if v6 {
                        Ipv6Addr::from(n).to_string()
                    } else {
                        Ipv4Addr::from(n as u32).to_string()
                    }
                };
                let addr = |off: Option<u128>| match off {
                    // Outside the subnet: just past its end.
                    None => net.wrapping_add(host).wrapping_add(1),
                    Some(o) => net | (o & host),
                };
                // Mostly in order (the reverse is an error other inputs reach too).
                let (s, e) = match (s, e) {
                    (Some(Some(a)), Some(Some(b))) if (a & host) > (b & host) && pick % 8 != 0 => {
                        (Some(Some(b)), Some(Some(a)))
                    }
                    other => other,
                };
                let mut m = serde_json::Map::new();
                m.insert("subnet".into(), format!("{}/{p}", show(net)).into());
                for (k, v) in [("rangeStart", s), ("rangeEnd", e), ("gateway", g)] {
                    if let Some(off) = v {
                        m.insert(k.into(), show(addr(off)).into());
                    }
                }
                out.push(Value::Object(m));
            }
            Value::Array(out)
        },
    );
    prop_oneof![
        6 => set,
        1 => prop::collection::vec(gen_object(RANGE, keys(), true), 1..3).prop_map(Value::Array),
    ]
    .boxed()
}

/// The IPAM object: [`IPAM`]'s fields, and now and then a legacy range at its top level.
const IPAM_OBJECT: Gen = Gen::Custom(ipam_object);

fn ipam_object() -> BoxedStrategy<Value> {
    (
        gen_object(IPAM, keys(), true),
        prop::option::weighted(0.25, consistent_set()),
    )
        .prop_map(|(mut ipam, legacy)| {
            if let (Value::Object(m), Some(Value::Array(set))) = (&mut ipam, legacy)
                && let Some(Value::Object(range)) = set.into_iter().next()
            {
                m.extend(range);
            }
            ipam
        })
        .boxed()
}

const ROUTE: &[Field] = &[
    ("dst", 0.95, Gen::Addr),
    ("gw", 0.4, Gen::Addr),
    ("mtu", 0.1, NUM),
    ("advmss", 0.1, NUM),
    ("priority", 0.1, NUM),
    ("table", 0.1, NUM),
    ("scope", 0.1, NUM),
];
const IPAM: &[Field] = &[
    ("type", 0.9, Gen::Pick(&[r#""tombstone-ipam""#], &["1"])),
    ("subnet", 0.03, Gen::Addr),
    ("rangeStart", 0.03, Gen::Addr),
    ("ranges", 0.9, Gen::List(&CONSISTENT_SET)),
    ("routes", 0.4, Gen::List(&Gen::Obj(ROUTE))),
    (
        "dataDir",
        0.5,
        Gen::Pick(
            &[r#""/var/lib/cni/networks""#, r#""""#, r#""/""#],
            &[r#""relative""#, "5"],
        ),
    ),
    (
        "resolvConf",
        0.2,
        Gen::Pick(&[r#""/etc/resolv.conf""#, r#""""#], &["5"]),
    ),
    (
        "reuseAfterSeconds",
        0.4,
        Gen::Pick(
            &["0", "60", "18446744073709551615"],
            &["-1", r#""60""#, "1.5"],
        ),
    ),
];
const RUNTIME: &[Field] = &[
    ("ips", 0.6, Gen::List(&Gen::Addr)),
    ("ipRanges", 0.3, Gen::List(&CONSISTENT_SET)),
];
const CNI_ARGS: &[Field] = &[("ips", 0.9, Gen::List(&Gen::Addr))];
const ARGS: &[Field] = &[("cni", 0.9, Gen::Obj(CNI_ARGS))];
const CONF: &[Field] = &[
    ("cniVersion", 0.95, VERSIONS),
    ("name", 0.95, NAMES),
    ("type", 0.8, Gen::Pick(&[r#""ipvlan""#], &[])),
    ("ipam", 0.95, IPAM_OBJECT),
    ("runtimeConfig", 0.2, Gen::Obj(RUNTIME)),
    ("args", 0.2, Gen::Obj(ARGS)),
];

fn keys() -> &'static [&'static str] {
    static KEYS: OnceLock<&'static [&'static str]> = OnceLock::new();
    KEYS.get_or_init(|| all_keys(&[], &[CONF]))
}

fn code_in(e: &CniError, codes: &[u32], what: &str) -> Result<(), TestCaseError> {
    check_error_in(e.code, &e.msg, &e.to_json("1.1.0"), e, codes, what)
}

/// Addresses near the generated ranges (and at the edges of both families).
fn ip() -> BoxedStrategy<IpAddr> {
    prop_oneof![
        4 => (0u32..1024).prop_map(|x| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + x))),
        2 => (0u128..0x1000).prop_map(|x| IpAddr::V6(Ipv6Addr::from(0xfd00u128 << 112 | x))),
        1 => (0u128..0x100).prop_map(|x| IpAddr::V6(Ipv6Addr::from(u128::MAX - x))),
        1 => any::<Ipv4Addr>().prop_map(IpAddr::V4),
        1 => any::<Ipv6Addr>().prop_map(IpAddr::V6),
    ]
    .boxed()
}

fn small_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        2 => prop::sample::select(&["ctr-a", "ctr-b", "eth0", ""][..]).prop_map(str::to_string),
    ]
    .boxed()
}

fn a_record() -> BoxedStrategy<Record<'static>> {
    prop_oneof![
        3 => (ip(), small_string(), small_string()).prop_map(|(ip, c, i)| Record::Alloc {
            ip: canonical(ip),
            container_id: Cow::Owned(c),
            ifname: Cow::Owned(i),
        }),
        2 => (ip(), any::<u64>()).prop_map(|(ip, at)| Record::Released { ip: canonical(ip), at }),
        1 => (0usize..4, ip()).prop_map(|(set, ip)| Record::Cursor { set, ip: canonical(ip) }),
    ]
    .boxed()
}

/// `IpamConfig::from_conf` on a config and a `CNI_ARGS` `IP`, then an ADD's allocation over
/// a state of random records: what each promises.
fn config_and_allocation(
    conf: &Value,
    env_ip: &Option<String>,
    records: &[Record<'static>],
    now: u64,
) -> Result<(), TestCaseError> {
    let c = match NetConf::parse(&bytes_of(conf)) {
        Ok(c) => c,
        Err(e) => return code_in(&e, &[1, 6, 7], "NetConf::parse"),
    };
    let cfg = match IpamConfig::from_conf(&c, env_ip.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => return code_in(&e, &[4, 7], "IpamConfig::from_conf"),
    };
    accepted();
    check(!cfg.ranges.is_empty() && cfg.data_dir.is_absolute(), || {
        format!("accepted {cfg:?}")
    })?;
    for set in &cfg.ranges {
        check(
            !set.0.is_empty() && set.0.iter().all(|r| r.is_v6() == set.is_v6()),
            || format!("range set {set:?}"),
        )?;
        for r in &set.0 {
            check(
                to_u128(r.start) <= to_u128(r.end)
                    && r.subnet.contains(r.start)
                    && r.subnet.contains(r.end)
                    && r.subnet.contains(r.gateway),
                || format!("range {r:?}"),
            )?;
        }
        // STATUS searches as ADD does; ADD allocates: over a fresh state first.
        let _ = pool::pick(&mut Mem::default(), set, 0, &[], now, cfg.reuse_after);
    }
    let who = Attachment {
        container_id: "ctr-a".into(),
        ifname: "eth0".into(),
    };
    let Ok(mut mem) = Mem::from_records(records) else {
        return Ok(());
    };
    for (i, set) in cfg.ranges.iter().enumerate() {
        let _ = pool::pick(&mut mem, set, i, &[], now, cfg.reuse_after);
    }
    let held = mem.held(&who);
    match pool::plan_add(
        &mut mem,
        &held,
        &cfg.ranges,
        &cfg.requested,
        &who,
        now,
        cfg.reuse_after,
    ) {
        Ok(plan) => {
            check(plan.assigned.len() == cfg.ranges.len(), || {
                format!(
                    "{} addresses for {} range sets",
                    plan.assigned.len(),
                    cfg.ranges.len()
                )
            })?;
            for (set, a) in cfg.ranges.iter().zip(&plan.assigned) {
                check(set.contains(a.ip) && a.range.contains(a.ip), || {
                    format!("assigned {} outside its range set {set}", a.ip)
                })?;
                if !held.contains(&a.ip) {
                    let taken = matches!(mem.slot(a.ip), Ok(Slot::Held { .. }));
                    check(a.ip != a.range.gateway && !taken, || {
                        format!("assigned {} (the gateway or taken) in {set}", a.ip)
                    })?;
                }
            }
            Ok(())
        }
        Err(e) => code_in(&e, &[103, 106], "pool::plan_add"),
    }
}

#[test]
fn fuzz_ipam_config_and_allocation() {
    fuzz(
        "ipam config (IpamConfig::from_conf) and the ADD allocation it drives",
        30_000,
        (
            config(CONF, keys()),
            prop::option::weighted(0.2, addr()),
            prop::collection::vec(a_record(), 0..12),
            prop_oneof![Just(1_750_000_000u64), any::<u64>()],
        ),
        |(conf, env_ip, records, now)| config_and_allocation(conf, env_ip, records, *now),
    );
}

/// What `record::parse_line` promises: a record re-encodes to a line that parses back to it.
fn parse_line_checked(line: &str) -> Result<(), TestCaseError> {
    match record::parse_line(line) {
        Ok(Line::Record(r)) => {
            accepted();
            let again = r.to_line();
            check(
                record::parse_line(&again) == Ok(Line::Record(r.clone())),
                || format!("{line:?} parsed to {r:?}, which re-encodes to {again:?}"),
            )
        }
        Ok(Line::End(_)) => {
            accepted();
            Ok(())
        }
        Err(why) => check(!why.is_empty(), || "an error without a reason".into()),
    }
}

#[test]
fn fuzz_record_lines_and_headers() {
    let line = prop_oneof![
        2 => prop::collection::vec(any::<char>(), 0..80).prop_map(String::from_iter),
        4 => (a_record(), prop::collection::vec(mutation(), 0..3), any::<bool>()).prop_map(
            |(r, m, comma)| {
                let l = r.to_line() + if comma { "," } else { "" };
                String::from_utf8_lossy(&mutate(l.as_bytes(), &m)).into_owned()
            }
        ),
        1 => (0usize..usize::MAX, prop::collection::vec(mutation(), 0..3)).prop_map(|(n, m)| {
            String::from_utf8_lossy(&mutate(record::trailer(n).as_bytes(), &m)).into_owned()
        }),
    ];
    let header = prop_oneof![
        1 => prop::collection::vec(any::<char>(), 0..80).prop_map(String::from_iter),
        2 => (small_string(), prop::collection::vec(mutation(), 0..3)).prop_map(|(n, m)| {
            String::from_utf8_lossy(&mutate(record::header(&n).as_bytes(), &m)).into_owned()
        }),
    ];
    fuzz(
        "ipam record::parse_line and record::check_header (arbitrary and mutated)",
        50_000,
        (line, header, small_string()),
        |(line, header, network)| {
            parse_line_checked(line)?;
            let _ = record::check_header(header, network);
            Ok(())
        },
    );
}

#[test]
fn fuzz_record_round_trip() {
    fuzz(
        "ipam record parse_line(to_line(r)) == r, check_header(header(n), n)",
        50_000,
        (a_record(), small_string(), small_string()),
        |(r, network, other)| {
            let line = r.to_line();
            check(
                record::parse_line(&line) == Ok(Line::Record(r.clone()))
                    && record::parse_line(&format!("{line},")) == Ok(Line::Record(r.clone())),
                || format!("{r:?} -> {line:?} does not parse back"),
            )?;
            check(serde_json::from_str::<Value>(&line).is_ok(), || {
                format!("{line:?} is not JSON")
            })?;
            let h = record::header(network);
            check(record::check_header(&h, network).is_ok(), || {
                format!("header of {network:?} refused: {h:?}")
            })?;
            check(
                other == network || record::check_header(&h, other).is_err(),
                || format!("header of {network:?} accepted for {other:?}"),
            )?;
            accepted();
            Ok(())
        },
    );
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ipam-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A whole state file: header, records, trailer (its count right or not), closing line.
fn state_file(network: &str, records: &[Record<'_>], count: usize) -> Vec<u8> {
    let mut s = record::header(network) + "\n";
    for r in records {
        s += &r.to_line();
        s += ",\n";
    }
    s += &record::trailer(count);
    s += "\n";
    s += CLOSING;
    s += "\n";
    s.into_bytes()
}

/// `legacy::read` of one state file of format version 1 (what a migration reads): a valid
/// file gives back exactly its records, and an address allocated twice in it is refused
/// when the records become a state; anything else is a clear error (code 102, or 5), never
/// a panic.
fn load_checked(
    dir: &Path,
    bytes: &[u8],
    valid: Option<&[Record<'_>]>,
) -> Result<(), TestCaseError> {
    let sd = StateDir::open(dir.join("fuzz"))
        .map_err(|e| TestCaseError::fail(format!("open: {e:?}")))?;
    std::fs::write(legacy::v1_path(&sd), bytes).unwrap();
    let loaded = legacy::read(&sd, "fuzz");
    let Some(records) = valid else {
        return match loaded {
            Ok(source) => {
                accepted();
                check(matches!(source, Source::V1(_)), || format!("{source:?}"))
            }
            Err(e) => code_in(&e, &[5, 102], "legacy::read"),
        };
    };
    let mut allocs: Vec<IpAddr> = records
        .iter()
        .filter(|r| matches!(r, Record::Alloc { .. }))
        .map(|r| r.ip())
        .collect();
    allocs.sort();
    let twice = allocs.windows(2).any(|w| w[0] == w[1]);
    match loaded {
        Ok(Source::V1(got)) => {
            accepted();
            check(got == records, || format!("read {got:?} from {records:?}"))?;
            let state = Mem::from_records(&got);
            check(state.is_err() == twice, || {
                format!("twice {twice}, but {:?}", state.map(|_| ()))
            })
        }
        Ok(other) => Err(TestCaseError::fail(format!("{other:?} from a state file"))),
        Err(e) => Err(TestCaseError::fail(format!(
            "a valid state file refused: {e:?}"
        ))),
    }
}

#[test]
fn fuzz_state_files() {
    let dir = scratch("state");
    let input = prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..400).prop_map(|b| (b, None)),
        4 => (prop::collection::vec(a_record(), 0..10), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(r, m)| (mutate(&state_file("fuzz", &r, r.len()), &m), None)),
        1 => (prop::collection::vec(a_record(), 0..10), 0usize..12, small_string())
            .prop_map(|(r, n, net)| (state_file(&net, &r, n), None)),
        3 => prop::collection::vec(a_record(), 0..10)
            .prop_map(|r| (state_file("fuzz", &r, r.len()), Some(r))),
    ];
    fuzz(
        "ipam legacy::read (state files of format 1: arbitrary, mutated, valid)",
        12_000,
        input,
        |(bytes, valid)| load_checked(&dir, bytes, valid.as_deref()),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fuzz_host_local_files() {
    let name = prop_oneof![
        2 => addr(),
        1 => (0usize..8).prop_map(|n| format!("last_reserved_ip.{n}")),
        1 => nasty_string(),
        1 => "last_reserved_ip\\..{0,24}",
    ];
    let content = prop_oneof![
        2 => (small_string(), small_string(), prop::sample::select(&["\r\n", "\n", " ", ""][..]))
            .prop_map(|(c, i, sep)| format!("{c}{sep}{i}")),
        1 => addr(),
        1 => prop::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter),
    ];
    fuzz(
        "ipam import::entry (host-local's files)",
        25_000,
        (name, content),
        |(name, content)| {
            match import::entry(name, content) {
                Some(Record::Cursor { .. }) => {
                    check(name.starts_with("last_reserved_ip."), || {
                        format!("a cursor from {name:?}")
                    })?
                }
                Some(Record::Alloc { ip, .. }) => {
                    check(name.parse::<IpAddr>().map(canonical) == Ok(ip), || {
                        format!("an allocation of {ip} from {name:?}")
                    })?
                }
                Some(r) => return Err(TestCaseError::fail(format!("{r:?} from {name:?}"))),
                None => return Ok(()),
            }
            accepted();
            check(import::is_candidate(name), || {
                format!("{name:?} is not a candidate")
            })
        },
    );
}

// ---- the real binary -----------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_tombstone-ipam");
const COMMANDS: &[&str] = &["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"];

/// What guarantees a request fails before the data directory is touched: a bad key of the
/// config every verb reads first, a non-object stdin, or an unknown `CNI_COMMAND`.
const POISONS: &[(&str, &str)] = &[
    ("ipam.dataDir", r#""relative/dir""#),
    ("ipam.dataDir", "5"),
    ("ipam.routes", r#"[{"dst":"nope"}]"#),
    ("ipam.routes", r#"[{"dst":"10.0.0.0/8","gw":"x"}]"#),
    ("ipam.reuseAfterSeconds", "-1"),
    ("ipam.ranges", "[[]]"),
    ("ipam.ranges", r#"[[{"subnet":"10.9.0.1/24"}]]"#),
    ("ipam.ranges", r#"[[{"subnet":"10.9.0.0/31"}]]"#),
    ("ipam", "5"),
    ("ipam", "null"),
    ("cniVersion", r#""0.3.2""#),
    ("name", r#""a/b""#),
    ("logLevel", r#""loud""#),
    ("(stdin)", "[]"),
    ("(stdin)", "{"),
    ("(CNI_COMMAND)", r#""ADDX""#),
];

#[test]
fn fuzz_the_ipam_binary() {
    let data = scratch("bin");
    let data_dir = data.to_string_lossy().into_owned();
    fuzz_binary(
        "tombstone-ipam binary (stdin + env; failing requests, VERSION)",
        BIN,
        COMMANDS,
        CONF,
        keys(),
        POISONS,
        |conf| {
            let mut conf = match conf {
                Value::Object(_) => conf.clone(),
                other => json!({"cniVersion": "1.1.0", "name": "n", "x": other}),
            };
            if let Some(Value::Object(ipam)) = conf.get_mut("ipam") {
                ipam.insert("dataDir".into(), Value::from(data_dir.as_str()));
            }
            conf
        },
    );
    // Nothing reached the data directory.
    let left: Vec<_> = std::fs::read_dir(&data).unwrap().flatten().collect();
    let _ = std::fs::remove_dir_all(&data);
    assert!(left.is_empty(), "requests built to fail wrote {left:?}");
}
