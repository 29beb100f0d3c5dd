//! Fuzzing (proptest, stable Rust) of every input the `tombstone` crate parses — network
//! configs, the CNI environment, ledgers, the skeleton — and of the real `tombstone` binary:
//! no panic, no hang, well-formed CNI errors, ledgers that round-trip. No root needed.

use tombstone_testkit::fuzz as fuzzkit;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use fuzzkit::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use tombstone::chained::config::TombstoneConf;
use tombstone::chained::ledger::{self, Ledger};
use tombstone::ipvlan::config::IpvlanConf;
use tombstone_cni::skel::{self, Outcome};
use tombstone_cni::{CniError, Command, Env, Invocation, NetConf, Plugin};

const BOOLS: Gen = Gen::Pick(&["true", "false"], &[r#""true""#, "1", "null"]);
const VERSIONS: Gen = Gen::Pick(
    &[
        r#""1.1.0""#,
        r#""1.0.0""#,
        r#""0.4.0""#,
        r#""0.3.1""#,
        r#""0.3.0""#,
    ],
    &[r#""0.3.2""#, r#""2.0.0""#, r#""1.1""#, r#""""#, "1", "null"],
);
const NAMES: Gen = Gen::Pick(
    &[r#""pods""#, r#""a.b-c_1""#, r#""N0""#],
    &[r#""a/b""#, r#""""#, r#""-x""#, r#""é""#, r#""..""#, "5"],
);

const IP_CONFIG: &[Field] = &[
    ("address", 0.9, Gen::Addr),
    ("gateway", 0.5, Gen::Addr),
    (
        "interface",
        0.5,
        Gen::Pick(&["0", "1"], &["-1", "null", r#""0""#]),
    ),
];
const INTERFACE: &[Field] = &[
    ("name", 0.9, Gen::Pick(&[r#""eth0""#], &[r#""""#, "0"])),
    (
        "mac",
        0.5,
        Gen::Pick(&[r#""02:00:00:00:00:05""#], &[r#""zz""#]),
    ),
    (
        "sandbox",
        0.5,
        Gen::Pick(&[r#""/var/run/netns/pod""#], &["null"]),
    ),
];
const ROUTE: &[Field] = &[
    ("dst", 0.9, Gen::Addr),
    ("gw", 0.5, Gen::Addr),
    ("mtu", 0.2, Gen::Pick(&["1400"], &["-1", r#""x""#])),
];
const PREV_RESULT: &[Field] = &[
    ("cniVersion", 0.8, VERSIONS),
    ("interfaces", 0.6, Gen::List(&Gen::Obj(INTERFACE))),
    ("ips", 0.9, Gen::List(&Gen::Obj(IP_CONFIG))),
    ("routes", 0.5, Gen::List(&Gen::Obj(ROUTE))),
    (
        "dns",
        0.3,
        Gen::Pick(&[r#"{"nameservers":["10.1.0.10"]}"#, "{}"], &["null", "[]"]),
    ),
];
const ATTACHMENT: &[Field] = &[
    (
        "containerID",
        0.9,
        Gen::Pick(&[r#""ctr-a""#, r#""ctr-b""#], &[r#""""#, "1", "null"]),
    ),
    (
        "ifname",
        0.9,
        Gen::Pick(&[r#""eth0""#, r#""net1""#], &[r#""""#, "[]"]),
    ),
];

/// The chained plugin's network config.
const TOMBSTONE_CONF: &[Field] = &[
    ("cniVersion", 0.95, VERSIONS),
    ("name", 0.95, NAMES),
    ("type", 0.8, Gen::Pick(&[r#""tombstone""#], &["3", "null"])),
    (
        "holdSeconds",
        0.5,
        Gen::Pick(
            &["1", "60", "86400"],
            &[
                "0",
                "86401",
                "-1",
                "1.5",
                r#""60""#,
                "null",
                "18446744073709551615",
                "1e3",
            ],
        ),
    ),
    (
        "routeType",
        0.4,
        Gen::Pick(
            &[r#""unreachable""#, r#""blackhole""#, r#""prohibit""#],
            &[r#""Unreachable""#, r#""""#, "1", "null"],
        ),
    ),
    (
        "tables",
        0.4,
        Gen::Pick(
            &[
                r#"["main"]"#,
                "[254]",
                r#"[100,"main"]"#,
                "[100,100]",
                r#"["254"]"#,
                "[4294967295]",
                "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]",
            ],
            &[
                "[]",
                "[0]",
                "[253]",
                "[255]",
                r#"["x"]"#,
                "[4294967296]",
                "[-1]",
                "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]",
                r#""main""#,
                "[1.0]",
                "null",
            ],
        ),
    ),
    ("flushNeighbors", 0.3, BOOLS),
    ("sweeper", 0.3, BOOLS),
    (
        "stateDir",
        0.4,
        Gen::Pick(
            &[r#""/run/cni/tombstone""#, r#""/""#, r#""/tmp/a b/ü""#],
            &[r#""relative""#, r#""""#, "5", "null"],
        ),
    ),
    (
        "logLevel",
        0.3,
        Gen::Pick(
            &[r#""off""#, r#""info""#, r#""DEBUG""#],
            &[r#""loud""#, "3", "null"],
        ),
    ),
    ("prevResult", 0.6, Gen::Obj(PREV_RESULT)),
    (
        "cni.dev/valid-attachments",
        0.3,
        Gen::List(&Gen::Obj(ATTACHMENT)),
    ),
    ("cni.dev/attachments", 0.1, Gen::List(&Gen::Obj(ATTACHMENT))),
];

/// `tombstone-ipvlan`'s network config.
const IPVLAN_CONF: &[Field] = &[
    ("cniVersion", 0.95, VERSIONS),
    ("name", 0.95, NAMES),
    ("type", 0.8, Gen::Pick(&[r#""tombstone-ipvlan""#], &[])),
    (
        "master",
        0.6,
        Gen::Pick(
            &[r#""eth0""#, r#""""#, r#""123456789012345""#],
            &[
                r#""a/b""#,
                r#""1234567890123456""#,
                r#""..""#,
                r#""e th""#,
                "5",
                "null",
            ],
        ),
    ),
    (
        "mode",
        0.6,
        Gen::Pick(
            &[r#""l2""#, r#""l3""#, r#""l3s""#, r#""""#],
            &[r#""L2""#, r#""l4""#, "1", "null"],
        ),
    ),
    (
        "mtu",
        0.4,
        Gen::Pick(
            &["0", "68", "1500", "65535"],
            &[
                "67",
                "65536",
                "-1",
                "4294967296",
                "1.5",
                r#""1500""#,
                "null",
            ],
        ),
    ),
    ("linkInContainer", 0.3, BOOLS),
    ("gatewayPort", 0.3, BOOLS),
    (
        "ipam",
        0.6,
        Gen::Pick(
            &[
                "{}",
                r#"{"type":"host-local"}"#,
                r#"{"type":"tombstone-ipam","ranges":[]}"#,
            ],
            &[
                r#"{"type":"../x"}"#,
                r#"{"type":""}"#,
                r#"{"type":"a b"}"#,
                r#"{"type":5}"#,
                r#"{"x":1}"#,
                "5",
                "[]",
                "null",
            ],
        ),
    ),
    ("prevResult", 0.3, Gen::Obj(PREV_RESULT)),
];

fn keys() -> &'static [&'static str] {
    static KEYS: OnceLock<&'static [&'static str]> = OnceLock::new();
    KEYS.get_or_init(|| all_keys(&["fuzzOutcome"], &[TOMBSTONE_CONF, IPVLAN_CONF]))
}

/// Stdin as a runtime might send it, or not: a structured config, arbitrary bytes, a
/// mutated config, deep nesting, any JSON value.
fn stdin_bytes(fields: &'static [Field]) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        5 => config(fields, keys()).prop_map(|v| bytes_of(&v)),
        2 => (config(fields, keys()), prop::collection::vec(mutation(), 1..6))
            .prop_map(|(v, m)| mutate(&bytes_of(&v), &m)),
        2 => prop::collection::vec(any::<u8>(), 0..600),
        1 => deep_nesting(),
        1 => hostile_value(keys()).prop_map(|v| bytes_of(&v)),
    ]
    .boxed()
}

fn code_in(e: &CniError, codes: &[u32], what: &str) -> Result<(), TestCaseError> {
    check_error_in(e.code, &e.msg, &e.to_json("1.1.0"), e, codes, what)
}

/// `NetConf::parse`, and what a parsed config promises.
fn parse_netconf(bytes: &[u8]) -> Result<Option<NetConf>, TestCaseError> {
    match NetConf::parse(bytes) {
        Ok(c) => {
            check(tombstone_cni::version::supports(&c.cni_version), || {
                format!("accepted cniVersion {:?}", c.cni_version)
            })?;
            let mut chars = c.name.chars();
            check(
                chars.next().is_some_and(|ch| ch.is_ascii_alphanumeric())
                    && chars.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch)),
                || format!("accepted network name {:?}", c.name),
            )?;
            Ok(Some(c))
        }
        Err(e) => {
            code_in(&e, &[1, 6, 7], "NetConf::parse")?;
            Ok(None)
        }
    }
}

/// Every view the chained plugin takes of a parsed config, and its promises.
fn tombstone_views(c: &NetConf) -> Result<(), TestCaseError> {
    match TombstoneConf::from_netconf(c) {
        Ok(t) => {
            accepted();
            check((1..=86_400).contains(&t.hold_seconds), || {
                format!("holdSeconds {} accepted", t.hold_seconds)
            })?;
            let mut sorted = t.tables.clone();
            sorted.sort();
            sorted.dedup();
            check(
                (1..=16).contains(&t.tables.len())
                    && sorted.len() == t.tables.len()
                    && !t.tables.iter().any(|x| [0, 253, 255].contains(x)),
                || format!("tables {:?} accepted", t.tables),
            )?;
            check(t.state_dir.is_absolute(), || {
                format!("stateDir {:?} accepted", t.state_dir)
            })?;
        }
        Err(e) => code_in(&e, &[7], "TombstoneConf::from_netconf")?,
    }
    match c.prev_result_ips() {
        Ok(ips) => {
            let listed = c
                .prev_result()
                .and_then(|p| p.get("ips"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            check(ips.len() == listed, || {
                format!("prev_result_ips gave {} of {listed} addresses", ips.len())
            })?;
        }
        Err(e) => code_in(&e, &[7], "prev_result_ips")?,
    }
    match c.valid_attachments() {
        Ok(Some(list)) => {
            let key = ["cni.dev/valid-attachments", "cni.dev/attachments"]
                .into_iter()
                .find(|k| c.raw.get(*k).is_some_and(|v| !v.is_null()));
            let listed = key.and_then(|k| c.raw[k].as_array()).map(Vec::len);
            check(listed == Some(list.len()), || {
                format!("valid_attachments gave {} of {listed:?}", list.len())
            })?;
        }
        Ok(None) => check(
            ["cni.dev/valid-attachments", "cni.dev/attachments"]
                .iter()
                .all(|k| c.raw.get(*k).is_none_or(Value::is_null)),
            || "valid_attachments ignored a list".into(),
        )?,
        Err(e) => code_in(&e, &[7], "valid_attachments")?,
    }
    Ok(())
}

#[test]
fn fuzz_netconf_parse_on_bytes() {
    fuzz(
        "cni::NetConf::parse (bytes: arbitrary, mutated, nested)",
        30_000,
        stdin_bytes(TOMBSTONE_CONF),
        |b| {
            if let Some(c) = parse_netconf(b)? {
                accepted();
                tombstone_views(&c)?;
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_tombstone_config_on_hostile_json() {
    fuzz(
        "tombstone config (NetConf::parse, TombstoneConf::from_netconf, prev_result_ips, valid_attachments)",
        30_000,
        config(TOMBSTONE_CONF, keys()),
        |v| {
            if let Some(c) = parse_netconf(&bytes_of(v))? {
                tombstone_views(&c)?;
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_ipvlan_config_on_hostile_json() {
    fuzz(
        "ipvlan::config::IpvlanConf::from_netconf",
        30_000,
        config(IPVLAN_CONF, keys()),
        |v| {
            let Some(c) = parse_netconf(&bytes_of(v))? else {
                return Ok(());
            };
            match IpvlanConf::from_netconf(&c) {
                Ok(i) => {
                    accepted();
                    check(i.mtu.is_none_or(|m| (68..=65_535).contains(&m)), || {
                        format!("mtu {:?} accepted", i.mtu)
                    })?;
                    check(!(i.gateway_port && i.link_in_container), || {
                        "gatewayPort with linkInContainer accepted".into()
                    })?;
                    check(
                        i.master.as_deref().is_none_or(|m| {
                            !m.is_empty() && m.len() <= 15 && !m.contains('/') && m != ".."
                        }),
                        || format!("master {:?} accepted", i.master),
                    )?;
                    check(i.ipam_type.as_deref().is_none_or(|t| !t.is_empty()), || {
                        format!("ipam type {:?} accepted", i.ipam_type)
                    })?;
                }
                Err(e) => code_in(&e, &[7], "IpvlanConf::from_netconf")?,
            }
            Ok(())
        },
    );
}

const COMMANDS: &[&str] = &["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"];

/// The environment as `std::env::var` would show it: a value that is not UTF-8 is absent.
fn lookup(env: &[(String, Vec<u8>)]) -> HashMap<String, String> {
    env.iter()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.clone()).ok()?)))
        .collect()
}

#[test]
fn fuzz_env_from_lookup() {
    fuzz(
        "cni::Env::from_lookup (CNI_* values)",
        50_000,
        cni_env(COMMANDS),
        |env| {
            let m = lookup(env);
            match Env::from_lookup(|k| m.get(k).cloned()) {
                Ok(e) => {
                    accepted();
                    check(
                        m.get("CNI_COMMAND").map(String::as_str) == Some(e.command.as_str()),
                        || format!("command {:?} from {:?}", e.command, m.get("CNI_COMMAND")),
                    )?;
                    let attach = matches!(e.command, Command::Add | Command::Del | Command::Check);
                    check(e.attachment.is_some() == attach, || {
                        format!("attachment {:?} for {:?}", e.attachment, e.command)
                    })?;
                    if let Some(a) = &e.attachment {
                        let mut c = a.container_id.chars();
                        check(
                            c.next().is_some_and(|ch| ch.is_ascii_alphanumeric())
                                && c.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch)),
                            || format!("container id {:?} accepted", a.container_id),
                        )?;
                        check(
                            (1..=15).contains(&a.ifname.len())
                                && !a.ifname.contains(['/', ':'])
                                && !a.ifname.chars().any(|ch| ch.is_whitespace())
                                && a.ifname != "."
                                && a.ifname != "..",
                            || format!("ifname {:?} accepted", a.ifname),
                        )?;
                    }
                    if matches!(e.command, Command::Add | Command::Check) {
                        check(e.netns.is_some(), || "ADD/CHECK without a netns".into())?;
                    }
                    check(e.args.iter().all(|(k, _)| !k.is_empty()), || {
                        format!("CNI_ARGS {:?} gave an empty key", m.get("CNI_ARGS"))
                    })?;
                }
                Err(e) => code_in(&e, &[4], "Env::from_lookup")?,
            }
            Ok(())
        },
    );
}

fn small_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        1 => "[a-z0-9-]{1,16}",
    ]
    .boxed()
}

fn ip() -> BoxedStrategy<IpAddr> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(IpAddr::V4),
        any::<Ipv6Addr>().prop_map(IpAddr::V6),
        any::<Ipv4Addr>().prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
    ]
    .boxed()
}

/// A ledger head's JSON as the plugin writes it (every field, in its order).
fn ledger_json() -> BoxedStrategy<Value> {
    let attachment = (
        small_string(),
        small_string(),
        prop::collection::vec(ip(), 0..4),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(c, i, ips, released)| {
            let mut a = json!({"containerID": c, "ifname": i, "ips": ips});
            if let Some(t) = released {
                a["releasedAtMs"] = json!(t);
            }
            a
        });
    let tombstone = (
        ip(),
        prop::sample::select(&["unreachable", "blackhole", "prohibit"][..]),
        prop::collection::vec(any::<u32>(), 0..4),
        any::<u64>(),
        small_string(),
        small_string(),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(ip, rt, tables, exp, c, i, metric)| {
            let mut t = json!({"ip": ip, "routeType": rt, "tables": tables, "expiresAtMs": exp,
                   "containerID": c, "ifname": i});
            if let Some(m) = metric {
                t["metric"] = json!(m);
            }
            t
        });
    (
        small_string(),
        prop::collection::vec(any::<u32>(), 0..4),
        prop::collection::vec(attachment, 0..6),
        prop::collection::vec(tombstone, 0..6),
    )
        .prop_map(|(network, tables, a, t)| {
            // Entries inline are what a version 1 or 2 head held; written, they are left out
            // when there are none.
            let mut l = json!({"version": ledger::FORMAT_VERSION, "network": network,
                   "tables": tables});
            if !a.is_empty() {
                l["attachments"] = json!(a);
            }
            if !t.is_empty() {
                l["tombstones"] = json!(t);
            }
            l
        })
        .boxed()
}

const LEDGER_KEYS: &[&str] = &[
    "version",
    "metric",
    "releasedAtMs",
    "network",
    "attachments",
    "tombstones",
    "ip",
    "routeType",
    "tables",
    "expiresAtMs",
    "containerID",
    "ifname",
    "ips",
];

/// `ledger::decode`, and what each of its answers promises.
fn decode_checked(bytes: &[u8], network: &str) -> Result<Option<Ledger>, TestCaseError> {
    let stem = tombstone_cni::state::encode_stem(network);
    match ledger::decode(bytes, &stem) {
        Ok(Ok(l)) => {
            check(l.network == network, || {
                format!("a ledger of {:?} accepted for {network:?}", l.network)
            })?;
            let again = serde_json::to_vec(&l).unwrap();
            let back = ledger::decode(&again, &stem);
            check(matches!(&back, Ok(Ok(b)) if *b == l), || {
                format!("re-encoded ledger does not decode to itself: {back:?}")
            })?;
            Ok(Some(l))
        }
        Ok(Err(why)) => {
            check(!why.is_empty(), || {
                "unusable ledger without a reason".into()
            })?;
            Ok(None)
        }
        Err(e) => {
            code_in(&e, &[102], "ledger::decode")?;
            // Only an object naming a newer version may be refused; other damage is set
            // aside and rebuilt.
            let v: Option<u64> = serde_json::from_slice::<Value>(bytes)
                .ok()
                .filter(Value::is_object)
                .and_then(|v| v.get("version").and_then(Value::as_u64));
            check(v.is_some_and(|v| v > ledger::FORMAT_VERSION as u64), || {
                format!("refused as newer, version {v:?}")
            })?;
            Ok(None)
        }
    }
}

#[test]
fn fuzz_ledger_decode_on_bytes_and_mutated_ledgers() {
    let input = prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..400),
        3 => (ledger_json(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(v, m)| mutate(&bytes_of(&v), &m)),
        3 => (ledger_json(), any::<prop::sample::Index>(), hostile_value(LEDGER_KEYS))
            .prop_map(|(v, i, with)| bytes_of(&replace_node(&v, &i, &with))),
        1 => ledger_json().prop_map(|v| bytes_of(&v)),
        1 => hostile_value(LEDGER_KEYS).prop_map(|v| bytes_of(&v)),
    ];
    fuzz(
        "chained::ledger::decode (arbitrary and mutated ledgers)",
        50_000,
        (input, small_string()),
        |(bytes, network)| {
            if decode_checked(bytes, network)?.is_some() {
                accepted();
            }
            // The network a mutated ledger names, too (so the content is what is tested).
            let named = serde_json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|v| v.get("network").and_then(Value::as_str).map(str::to_string));
            if let Some(n) = named
                && decode_checked(bytes, &n)?.is_some()
            {
                accepted();
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_ledger_round_trip() {
    fuzz(
        "chained::ledger decode(encode(x)) == x",
        25_000,
        ledger_json(),
        |v| {
            let network = v["network"].as_str().unwrap();
            let l = decode_checked(&bytes_of(v), network)?
                .ok_or_else(|| TestCaseError::fail(format!("a valid ledger refused: {v}")))?;
            accepted();
            let encoded = serde_json::to_value(&l).unwrap();
            check(&encoded == v, || {
                format!("encode(decode(x)) != x:\n{encoded}\n{v}")
            })
        },
    );
}

// ---- the skeleton --------------------------------------------------------------------

const DELIBERATE: &str = "fuzz: deliberate panic";

/// A trivial plugin whose outcome the config picks (`fuzzOutcome`): a result, an error, or
/// a panic; what the skeleton makes of it is under test.
struct FuzzPlugin;

impl FuzzPlugin {
    fn outcome(inv: &Invocation) -> tombstone_cni::Result<()> {
        match inv.conf.raw.get("fuzzOutcome").and_then(Value::as_str) {
            Some("error") => Err(CniError::new(104, "the fuzz plugin fails").with_details("x")),
            Some("panic") => panic!("{}", DELIBERATE),
            _ => Ok(()),
        }
    }
}

impl Plugin for FuzzPlugin {
    fn name(&self) -> &str {
        "fuzz"
    }
    fn add(&self, inv: &Invocation) -> tombstone_cni::Result<Value> {
        Self::outcome(inv)?;
        Ok(inv
            .conf
            .prev_result()
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| json!({})))
    }
    fn del(&self, inv: &Invocation) -> tombstone_cni::Result<()> {
        Self::outcome(inv)
    }
    fn check(&self, inv: &Invocation) -> tombstone_cni::Result<()> {
        Self::outcome(inv)
    }
    fn gc(&self, inv: &Invocation) -> tombstone_cni::Result<()> {
        Self::outcome(inv)
    }
    fn status(&self, inv: &Invocation) -> tombstone_cni::Result<()> {
        Self::outcome(inv)
    }
}

/// Logs of the skeleton go nowhere (its own logger would write to syslog or stderr), and
/// the fuzz plugin's deliberate panics print nothing; any other panic still does.
fn quiet() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        struct Null;
        impl log::Log for Null {
            fn enabled(&self, _: &log::Metadata) -> bool {
                false
            }
            fn log(&self, _: &log::Record) {}
            fn flush(&self) {}
        }
        let _ = log::set_boxed_logger(Box::new(Null));
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.contains(DELIBERATE) {
                previous(info);
            }
        }));
    });
}

const OUTCOME: &[Field] = &[(
    "fuzzOutcome",
    0.8,
    Gen::Pick(&[r#""ok""#, r#""error""#, r#""panic""#], &[]),
)];

#[test]
fn fuzz_skel_dispatch() {
    quiet();
    let stdin = prop_oneof![
        6 => (config(TOMBSTONE_CONF, keys()), gen_object(OUTCOME, keys(), true)).prop_map(|(mut c, o)| {
            if let (Value::Object(c), Value::Object(o)) = (&mut c, o) {
                c.extend(o);
            }
            Ok(bytes_of(&c))
        }),
        3 => stdin_bytes(TOMBSTONE_CONF).prop_map(Ok),
        1 => Just(Err(())),
    ];
    fuzz(
        "cni::skel::dispatch (env + stdin, a trivial plugin)",
        30_000,
        (cni_env(COMMANDS), stdin),
        |(env, stdin)| {
            let m = lookup(env);
            let parsed = Env::from_lookup(|k| m.get(k).cloned());
            let command = parsed.as_ref().ok().map(|e| e.command);
            let stdin = stdin
                .clone()
                .map_err(|_| CniError::decode("stdin is larger than 16777216 bytes"));
            let Outcome { stdout, exit_code } = skel::dispatch(&FuzzPlugin, parsed, stdin);
            if stdout.is_empty() {
                return check(
                    exit_code == 0
                        && matches!(
                            command,
                            Some(Command::Del | Command::Check | Command::Gc | Command::Status)
                        ),
                    || format!("empty stdout, exit {exit_code}, command {command:?}"),
                );
            }
            let v = one_json_value(&stdout)?;
            if exit_code == 0 {
                accepted();
            }
            match exit_code {
                0 => match command {
                    Some(Command::Version) => check_version_reply(&v),
                    Some(Command::Add) => check(v.is_object(), || format!("ADD printed {v}")),
                    other => Err(TestCaseError::fail(format!(
                        "{other:?} succeeded with output {stdout}"
                    ))),
                },
                1 => check_error_object(&v).map(|_| ()),
                n => Err(TestCaseError::fail(format!("exit code {n}"))),
            }
        },
    );
}

// ---- the real binary -----------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_tombstone");

/// What guarantees a request fails before any state or kernel access: one bad key of the
/// config every verb validates first, a non-object stdin, or an unknown `CNI_COMMAND`.
const POISONS: &[(&str, &str)] = &[
    ("holdSeconds", "0"),
    ("holdSeconds", "86401"),
    ("holdSeconds", "-1"),
    ("holdSeconds", r#""60""#),
    ("holdSeconds", "true"),
    ("tables", "[]"),
    ("tables", "[0]"),
    ("tables", "[253]"),
    ("tables", "[255]"),
    ("tables", r#"["x"]"#),
    ("tables", "[4294967296]"),
    ("tables", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]"),
    ("stateDir", r#""relative/dir""#),
    ("stateDir", r#""""#),
    ("routeType", r#""nope""#),
    ("flushNeighbors", r#""yes""#),
    ("sweeper", "1"),
    ("logLevel", r#""loud""#),
    ("cniVersion", r#""0.3.2""#),
    ("cniVersion", r#""0.2.0""#),
    ("cniVersion", "1"),
    ("name", r#""a/b""#),
    ("name", r#""""#),
    ("(stdin)", "[]"),
    ("(stdin)", "not json"),
    ("(CNI_COMMAND)", r#""ADDX""#),
    ("(CNI_COMMAND)", r#""del""#),
];

fn scratch_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("tombstone-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.to_string_lossy().into_owned()
    })
}

#[test]
fn fuzz_the_tombstone_binary() {
    fuzz_binary(
        "tombstone binary (stdin + env; failing requests, VERSION)",
        BIN,
        COMMANDS,
        TOMBSTONE_CONF,
        keys(),
        POISONS,
        |conf| {
            let mut conf = conf.clone();
            if let Value::Object(m) = &mut conf {
                m.insert("stateDir".into(), Value::from(scratch_dir()));
            }
            conf
        },
    );
    let _ = std::fs::remove_dir_all(scratch_dir());
}
