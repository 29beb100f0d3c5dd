//! The fuzz suites' shared kit (the plugins' and the IPAM's): a bounded runner
//! with a hang watchdog and one summary line per target, hostile-JSON and mutation
//! strategies, CNI error checks, a plugin process run with a timeout, and a plugin binary
//! fuzzed with requests built to fail.

use std::ffi::OsString;
use std::fmt::Debug;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use serde_json::{Map, Number, Value};

/// A case running longer than this is a hang: the watchdog reports its input and ends the
/// test process (a hang cannot be unwound).
pub const HANG_LIMIT: Duration = Duration::from_secs(20);
/// A plugin process that has not exited after this is killed and reported as a hang.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// The number of cases for a target: `PROPTEST_CASES` when set, else `default` (sized for
/// the release build `make test` runs; a fifth of it in a debug build, which is slower but
/// checks integer overflow).
pub fn cases(default: u32) -> u32 {
    let default = if cfg!(debug_assertions) {
        (default / 5).max(1)
    } else {
        default
    };
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Writes straight to the process's stderr, past the test harness's capture, so the
/// summary lines show in a plain `cargo test` too.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

thread_local! {
    static ACCEPTED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts the current case as accepted (it reached the deepest path: a config parsed, a
/// request answered), for the summary line, which so shows how far the inputs get.
pub fn accepted() {
    ACCEPTED.with(|a| a.set(a.get() + 1));
}

struct Watch {
    started_ms: AtomicU64,
    done: AtomicBool,
    input: Mutex<Option<String>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs `test` on `cases(default_cases)` values of `strategy` (shrinking a failure to a
/// minimal input), prints `fuzz: <target> N cases, F failures`, and panics on a failure.
/// A panic inside `test` is a failure; so is a case that outlives [`HANG_LIMIT`].
pub fn fuzz<S>(
    target: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(&S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Clone + Debug + Send + 'static,
{
    let n = cases(default_cases);
    // A seed of our own (or `PROPTEST_RNG_SEED`'s), so that a failure can be replayed.
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (t.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
        });
    let config = Config {
        cases: n,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let watch = Arc::new(Watch {
        started_ms: AtomicU64::new(0),
        done: AtomicBool::new(false),
        input: Mutex::new(None),
    });
    let dog = {
        let watch = watch.clone();
        let target = target.to_string();
        std::thread::spawn(move || {
            while !watch.done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                let started = watch.started_ms.load(Ordering::SeqCst);
                if started != 0 && now_ms().saturating_sub(started) > HANG_LIMIT.as_millis() as u64
                {
                    let input = watch.input.lock().unwrap().clone().unwrap_or_default();
                    say(&format!(
                        "fuzz: {target} HANG: one case has run for more than {} s; input: {}",
                        HANG_LIMIT.as_secs(),
                        truncate(&input, 4000)
                    ));
                    std::process::exit(101);
                }
            }
        })
    };
    let t0 = Instant::now();
    ACCEPTED.with(|a| a.set(0));
    let mut runner = TestRunner::new(config);
    let runs = AtomicU64::new(0);
    let result = runner.run(&strategy, |v| {
        runs.fetch_add(1, Ordering::Relaxed);
        *watch.input.lock().unwrap() = Some(format!("{v:?}"));
        watch.started_ms.store(now_ms(), Ordering::SeqCst);
        let r = test(&v);
        watch.started_ms.store(0, Ordering::SeqCst);
        r
    });
    watch.done.store(true, Ordering::SeqCst);
    let _ = dog.join();
    let secs = t0.elapsed().as_secs_f64();
    let accepted = ACCEPTED.with(|a| a.get());
    match result {
        Ok(()) => say(&format!(
            "fuzz: {target} {n} cases ({accepted} accepted), 0 failures ({secs:.1} s)"
        )),
        Err(TestError::Fail(why, minimal)) => {
            let ran = runs.load(Ordering::Relaxed);
            say(&format!(
                "fuzz: {target} 1 failure after {ran} runs (shrinking included, {secs:.1} s; \
                 replay with PROPTEST_RNG_SEED={seed})"
            ));
            // Once more outside the runner, so a panic shows where it happened.
            let replay = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&minimal)));
            if let Ok(Err(e)) = replay {
                say(&format!(
                    "fuzz: {target}: the minimal input fails with: {e}"
                ));
            }
            panic!(
                "fuzz: {target}: {why}\nminimal input: {}",
                truncate(&format!("{minimal:?}"), 8000)
            );
        }
        Err(TestError::Abort(why)) => panic!("fuzz: {target}: aborted: {why}"),
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

/// Like `prop_assert!`, usable in helper functions returning `Result<(), TestCaseError>`.
pub fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

// ---- CNI errors ----------------------------------------------------------------------

/// The spec's error codes (SPEC.md, "Error": 1-7, 11, 50, 51) and the suite's documented
/// ones (100-106, 999).
pub fn is_known_code(code: u64) -> bool {
    matches!(code, 1..=7 | 11 | 50 | 51 | 100..=106 | 999)
}

/// An error of the CNI library (`code`, `msg`, its JSON `object`; `shown` names it) from
/// `what`: one of `codes`, with a message, its object well formed.
pub fn check_error_in(
    code: u32,
    msg: &str,
    object: &Value,
    shown: &dyn Debug,
    codes: &[u32],
    what: &str,
) -> Result<(), TestCaseError> {
    check(codes.contains(&code) && !msg.is_empty(), || {
        format!("{what}: error {shown:?} is not one of codes {codes:?} with a message")
    })?;
    check_error_object(object).map(|_| ())
}

/// `stdout` holds exactly one JSON value, newline-terminated.
pub fn one_json_value(stdout: &str) -> Result<Value, TestCaseError> {
    check(stdout.ends_with('\n'), || {
        format!("stdout does not end with a newline: {stdout:?}")
    })?;
    let mut values = serde_json::Deserializer::from_str(stdout).into_iter::<Value>();
    let first = match values.next() {
        Some(Ok(v)) => v,
        other => {
            return Err(TestCaseError::fail(format!(
                "stdout is not a JSON value ({other:?}): {}",
                truncate(stdout, 2000)
            )));
        }
    };
    check(values.next().is_none(), || {
        format!(
            "stdout holds more than one JSON value: {}",
            truncate(stdout, 2000)
        )
    })?;
    Ok(first)
}

/// A CNI error object: an integer `code` of the known set, a non-empty `msg`, a string
/// `cniVersion` of the supported ones, `details` a string when present.
pub fn check_error_object(v: &Value) -> Result<u64, TestCaseError> {
    let shown = || truncate(&v.to_string(), 2000);
    let code = v["code"].as_u64();
    check(code.is_some_and(is_known_code), || {
        format!("error code not an integer of the known set: {}", shown())
    })?;
    check(v["msg"].as_str().is_some_and(|m| !m.is_empty()), || {
        format!("error without a msg: {}", shown())
    })?;
    check(
        v["cniVersion"]
            .as_str()
            .is_some_and(|s| SUITE_VERSIONS.contains(&s)),
        || {
            format!(
                "error cniVersion not a supported version string: {}",
                shown()
            )
        },
    )?;
    check(v.get("details").is_none_or(Value::is_string), || {
        format!("error details not a string: {}", shown())
    })?;
    Ok(code.unwrap())
}

/// Every spec version a binary of the suite speaks (the main and IPAM plugins).
pub const SUITE_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];
/// The versions of the chained `tombstone` (from 0.3.0, the first with `prevResult`).
pub const CHAINED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A VERSION reply: a supported `cniVersion` and exactly the versions of one of the suite's
/// binaries.
pub fn check_version_reply(v: &Value) -> Result<(), TestCaseError> {
    check(
        (v["supportedVersions"] == serde_json::json!(SUITE_VERSIONS)
            || v["supportedVersions"] == serde_json::json!(CHAINED_VERSIONS))
            && v["cniVersion"]
                .as_str()
                .is_some_and(|s| SUITE_VERSIONS.contains(&s)),
        || format!("not a VERSION reply: {v}"),
    )
}

// ---- strategies ----------------------------------------------------------------------

/// Strings a parser is likely to mishandle, beside random ones.
pub const NASTY_STRINGS: &[&str] = &[
    "",
    " ",
    ".",
    "..",
    "/",
    "a/b",
    "../../etc/passwd",
    "main",
    "0",
    "-1",
    "1e400",
    "0.4.0",
    "1.0.0",
    "1.1.0",
    "0.3.1",
    "0.2.0",
    "0.3.2",
    "10.1.0.5/24",
    "10.1.0.500/24",
    "fd00::5/64",
    "::ffff:10.1.0.5",
    "::/0",
    "0.0.0.0/0",
    "\u{0}",
    "\t\n",
    "é",
    "\u{202e}",
    "\u{fffd}",
    "🎉",
    "eth0:1",
    "a\"b\\c",
    "%2F",
];

pub fn nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::collection::vec(any::<char>(), 0..48).prop_map(String::from_iter),
        3 => prop::sample::select(NASTY_STRINGS).prop_map(str::to_string),
        2 => "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}",
        1 => (any::<char>(), 256..20_000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
    .boxed()
}

/// Numbers at and beyond the edges: JSON integers of every size, floats, negative zero.
pub fn nasty_number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        prop::sample::select(
            &[
                0u64,
                1,
                60,
                253,
                254,
                255,
                86_400,
                86_401,
                65_535,
                65_536,
                u32::MAX as u64,
                u32::MAX as u64 + 1,
                u64::MAX,
            ][..]
        )
        .prop_map(Value::from),
        Just(Value::from(-0.0f64)),
        Just(Value::from(1.5f64)),
        Just(Value::from(-1i64)),
    ]
    .boxed()
}

/// Any JSON value, nested up to a few levels, with keys drawn from `keys` and at random.
pub fn hostile_value(keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    let key = prop_oneof![
        3 => prop::sample::select(keys).prop_map(str::to_string),
        1 => nasty_string(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        nasty_number(),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// JSON text nested `depth` deep (arrays or objects), around a valid config sometimes.
pub fn deep_nesting() -> BoxedStrategy<Vec<u8>> {
    (1usize..20_000, any::<bool>(), any::<bool>())
        .prop_map(|(depth, arrays, closed)| {
            let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
            let mut s = String::from(r#"{"cniVersion":"1.1.0","name":"n","x":"#);
            s += &open.repeat(depth);
            s += "1";
            if closed {
                s += &close.repeat(depth);
            }
            s += "}";
            s.into_bytes()
        })
        .boxed()
}

/// How a config's fields are generated: JSON literals, mostly good ones, some bad, now and
/// then a hostile value; an object of such fields; a list; an address.
pub enum Gen {
    Pick(&'static [&'static str], &'static [&'static str]),
    Obj(&'static [Field]),
    List(&'static Gen),
    /// A string: an address, with or without a prefix length, valid or not.
    Addr,
    /// A value made by a suite's own strategy (values that must agree with each other).
    Custom(fn() -> BoxedStrategy<Value>),
}

/// A key of an object, how often it is present, and its values.
pub type Field = (&'static str, f64, Gen);

/// The keys named by the generators of `fields` and `extra`, sorted, each once: the hostile
/// values' keys (leaked, as they live for the test process; a caller keeps them once).
pub fn all_keys(extra: &[&'static str], fields: &[&'static [Field]]) -> &'static [&'static str] {
    let mut k = extra.to_vec();
    for f in fields {
        keys_of(f, &mut k);
    }
    k.sort();
    k.dedup();
    Box::leak(k.into_boxed_slice())
}

/// Every key named by a generator, for the hostile values' keys.
pub fn keys_of(fields: &'static [Field], out: &mut Vec<&'static str>) {
    for (k, _, g) in fields {
        out.push(k);
        let mut g = g;
        while let Gen::List(inner) = g {
            g = inner;
        }
        if let Gen::Obj(f) = g {
            keys_of(f, out);
        }
    }
}

pub fn addr() -> BoxedStrategy<String> {
    let v4 = (any::<[u8; 4]>(), prop::option::of(0u8..40)).prop_map(|(a, p)| {
        let ip = std::net::Ipv4Addr::from(a);
        p.map_or(ip.to_string(), |p| format!("{ip}/{p}"))
    });
    let v6 = (any::<[u16; 8]>(), prop::option::of(0u8..140)).prop_map(|(a, p)| {
        let ip = std::net::Ipv6Addr::from(a);
        p.map_or(ip.to_string(), |p| format!("{ip}/{p}"))
    });
    // Small, realistic ones, so ranges and requests meet.
    let near = (0u8..4, 0u8..=255, prop::option::of(20u8..33))
        .prop_map(|(c, d, p)| p.map_or(format!("10.1.{c}.{d}"), |p| format!("10.1.{c}.{d}/{p}")));
    let near6 = (0u16..0x20, prop::option::of(100u8..129))
        .prop_map(|(d, p)| p.map_or(format!("fd00::{d:x}"), |p| format!("fd00::{d:x}/{p}")));
    // Networks without host bits, so that ranges validate and meet.
    let net = (0u32..1024, 16u32..=30).prop_map(|(x, p)| {
        let ip = (u32::from(std::net::Ipv4Addr::new(10, 1, 0, 0)) + (x << 6)) & (!0u32 << (32 - p));
        format!("{}/{p}", std::net::Ipv4Addr::from(ip))
    });
    let net6 = (0u128..0x100, 100u32..=126).prop_map(|(x, p)| {
        let ip = (0xfd00u128 << 112 | x << 4) & (!0u128 << (128 - p));
        format!("{}/{p}", std::net::Ipv6Addr::from(ip))
    });
    prop_oneof![
        2 => v4,
        2 => v6,
        3 => near,
        2 => near6,
        3 => net,
        2 => net6,
        1 => prop::sample::select(&[
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
            "255.255.255.0/24", "255.255.255.254", "0.0.0.0", "255.255.255.255",
        ][..]).prop_map(str::to_string),
        1 => prop::sample::select(&[
            "10.1.0.0/24", "10.1.0.0/30", "10.1.0.0/31", "10.1.0.1", "10.1.0.255", "fd00::/120",
            "fd00::/127", "::/0", "::", "0.0.0.0/0", "::ffff:10.1.0.0/120", "::ffff:10.1.0.5",
            "10.1.0.0/24 ", " 10.1.0.5", "10.1.0.5/", "/24", "10.1.0", "1.2.3.4.5", "fe80::1%eth0",
        ][..]).prop_map(str::to_string),
        1 => nasty_string(),
    ]
    .boxed()
}

/// A field's value; `clean`: good literals and addresses only, no hostile values.
pub fn gen_value(
    g: &'static Gen,
    keys: &'static [&'static str],
    clean: bool,
) -> BoxedStrategy<Value> {
    let hostile = hostile_value(keys);
    let lit = |l: &'static [&'static str]| {
        prop::sample::select(l)
            .prop_map(|l| serde_json::from_str::<Value>(l).expect("a literal is JSON"))
    };
    match g {
        Gen::Pick(good, _) if clean => lit(good).boxed(),
        Gen::Pick(good, []) => prop_oneof![12 => lit(good), 1 => hostile].boxed(),
        Gen::Pick(good, bad) => prop_oneof![10 => lit(good), 3 => lit(bad), 1 => hostile].boxed(),
        Gen::Custom(f) if clean => f(),
        Gen::Custom(f) => prop_oneof![12 => f(), 1 => hostile].boxed(),
        Gen::Addr if clean => addr().prop_map(Value::String).boxed(),
        Gen::Addr => prop_oneof![
            12 => addr().prop_map(Value::String),
            1 => hostile,
        ]
        .boxed(),
        Gen::List(inner) if clean => prop::collection::vec(gen_value(inner, keys, true), 1..4)
            .prop_map(Value::Array)
            .boxed(),
        Gen::List(inner) => prop_oneof![
            12 => prop::collection::vec(gen_value(inner, keys, false), 0..4).prop_map(Value::Array),
            1 => hostile,
        ]
        .boxed(),
        Gen::Obj(fields) if clean => gen_object(fields, keys, true),
        Gen::Obj(fields) => prop_oneof![
            12 => gen_object(fields, keys, false),
            1 => hostile,
        ]
        .boxed(),
    }
}

/// An object with each of `fields` present or not; unless `clean`, any value may be
/// hostile and unknown keys come along.
pub fn gen_object(
    fields: &'static [Field],
    keys: &'static [&'static str],
    clean: bool,
) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .iter()
        .map(|(k, p, g)| {
            prop::option::weighted(
                *p,
                gen_value(g, keys, clean).prop_map(move |v| (k.to_string(), v)),
            )
            .boxed()
        })
        .collect();
    let extra = if clean {
        Just(Vec::new()).boxed()
    } else {
        prop::collection::vec((nasty_string(), hostile_value(keys)), 0..2).boxed()
    };
    (parts, extra)
        .prop_map(|(parts, extra)| {
            let mut m = Map::new();
            for (k, v) in parts.into_iter().flatten().chain(extra) {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

/// A config of `fields`: plausible (good values only, though addresses may be invalid),
/// plausible with one node replaced by a hostile value, or hostile throughout.
pub fn config(fields: &'static [Field], keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        2 => gen_object(fields, keys, true),
        2 => (gen_object(fields, keys, true), any::<prop::sample::Index>(), hostile_value(keys))
            .prop_map(|(v, i, with)| replace_node(&v, &i, &with)),
        2 => gen_object(fields, keys, false),
    ]
    .boxed()
}

/// One edit of a byte string: where (a fraction of its length) and what.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, prop::sample::Index),
    Truncate(prop::sample::Index),
    Duplicate(prop::sample::Index, prop::sample::Index),
}

/// Tokens worth splicing into JSON text.
const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "-0",
    "1e400",
    "-1",
    "18446744073709551616",
    "99999999999999999999999",
    "\\ud800",
    "\\u0000",
    "\u{0}",
    "\u{feff}",
    "\"version\":2,",
    "\"version\":1,",
    "\n",
    "é",
];

pub fn mutation() -> BoxedStrategy<Mutation> {
    let idx = any::<prop::sample::Index>;
    prop_oneof![
        (idx(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (idx(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (idx(), prop::sample::select(TOKENS))
            .prop_map(|(i, t)| Mutation::Insert(i, t.as_bytes().to_vec())),
        (idx(), idx()).prop_map(|(i, n)| Mutation::Delete(i, n)),
        idx().prop_map(Mutation::Truncate),
        (idx(), idx()).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
    .boxed()
}

pub fn mutate(bytes: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in edits {
        let len = b.len();
        let at = |i: &prop::sample::Index| if len == 0 { 0 } else { i.index(len + 1) };
        match m {
            Mutation::Flip(i, x) if len > 0 => {
                let p = i.index(len);
                b[p] ^= x;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, ins) => {
                let p = at(i);
                b.splice(p..p, ins.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let p = i.index(len);
                let n = n.index((len - p).min(16)) + 1;
                b.drain(p..p + n);
            }
            Mutation::Delete(..) => {}
            Mutation::Truncate(i) => b.truncate(at(i)),
            Mutation::Duplicate(i, n) if len > 0 => {
                let p = i.index(len);
                let n = n.index((len - p).min(64)) + 1;
                let piece: Vec<u8> = b[p..p + n].to_vec();
                b.splice(p..p, piece);
            }
            Mutation::Duplicate(..) => {}
        }
    }
    b
}

/// `v` with one of its nodes (counted in pre-order, the root included) replaced by `with`:
/// a structurally valid document with one field of a wrong type or value.
pub fn replace_node(v: &Value, at: &prop::sample::Index, with: &Value) -> Value {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(m) => m.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut Value, n: &mut usize, with: &Value) -> bool {
        if *n == 0 {
            *v = with.clone();
            return true;
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().any(|c| walk(c, n, with)),
            Value::Object(m) => m.values_mut().any(|c| walk(c, n, with)),
            _ => false,
        }
    }
    let mut out = v.clone();
    let mut n = at.index(count(v));
    walk(&mut out, &mut n, with);
    out
}

// ---- processes -----------------------------------------------------------------------

/// What a plugin process did.
#[derive(Debug)]
pub struct Ran {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `program` with only `env` (plus `PATH`, and logs to stderr), `stdin` fed by a
/// thread and the output drained by others, killed after [`PROCESS_TIMEOUT`] (an `Err`).
pub fn run_process(
    program: &str,
    env: &[(String, Vec<u8>)],
    stdin: &[u8],
) -> Result<Ran, TestCaseError> {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("TOMBSTONE_LOG", "stderr");
    for (k, v) in env {
        cmd.env(k, OsString::from_vec(v.clone()));
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| TestCaseError::fail(format!("spawn {program}: {e}")))?;
    let mut sin = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    // A plugin may exit before reading everything: a broken pipe is its right.
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = match crate::wait_until(&mut child, t0 + PROCESS_TIMEOUT) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TestCaseError::fail(format!(
                "HANG: {program} still running after {} s: killed",
                PROCESS_TIMEOUT.as_secs()
            )));
        }
        Err(e) => return Err(TestCaseError::fail(format!("wait: {e}"))),
    };
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    Ok(Ran {
        status: status.code(),
        stdout,
        stderr,
        elapsed: t0.elapsed(),
    })
}

/// An environment value: valid-looking, hostile, or not UTF-8 at all.
pub fn env_value(valid: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(valid).prop_map(|s| s.as_bytes().to_vec()),
        3 => nasty_string()
            .prop_map(|s| s.into_bytes().into_iter().filter(|b| *b != 0).take(4096).collect()),
        1 => prop::collection::vec(1u8..=255, 0..32),
    ]
    .boxed()
}

/// The `CNI_*` variables, each valid, hostile or absent.
pub fn cni_env(commands: &'static [&'static str]) -> BoxedStrategy<Vec<(String, Vec<u8>)>> {
    let var = |name: &'static str, valid: &'static [&'static str]| {
        prop::option::weighted(0.85, env_value(valid)).prop_map(move |v| v.map(|v| (name, v)))
    };
    (
        prop_oneof![
            8 => prop::sample::select(commands).prop_map(|s| s.as_bytes().to_vec()),
            1 => env_value(&["add", "Add", "DEL ", "VERSIONS", ""]),
        ],
        var(
            "CNI_CONTAINERID",
            &["ctr-a", "Abc-1.2_x", "0123456789abcdef"],
        ),
        var("CNI_IFNAME", &["eth0", "net1", "123456789012345"]),
        var("CNI_NETNS", &["/var/run/netns/pod", "/proc/1/ns/net"]),
        var(
            "CNI_PATH",
            &["/opt/cni/bin", "/opt/cni/bin:/usr/lib/cni", ":"],
        ),
        var(
            "CNI_ARGS",
            &["", "IgnoreUnknown=1", "IP=10.1.0.5", "K8S_POD_NAME=a;K=V"],
        ),
    )
        .prop_map(|(cmd, a, b, c, d, e)| {
            let mut env = vec![("CNI_COMMAND".to_string(), cmd)];
            for (k, v) in [a, b, c, d, e].into_iter().flatten() {
                env.push((k.to_string(), v));
            }
            env
        })
        .boxed()
}

/// The value of `name` in `env`, as a string (lossy).
pub fn env_get(env: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// Checks one plugin process that must not succeed (`expect_version`: it was asked for
/// VERSION): one error object and a non-zero exit, or (VERSION) a valid reply and 0, or
/// code 4 when `CNI_ARGS` was malformed.
pub fn check_plugin_process(ran: &Ran, expect_version: bool) -> Result<(), TestCaseError> {
    let shown = || {
        format!(
            "exit {:?}, stdout {}, stderr {}",
            ran.status,
            truncate(&ran.stdout, 2000),
            truncate(&ran.stderr, 2000)
        )
    };
    check(ran.status.is_some(), || {
        format!("killed by a signal: {}", shown())
    })?;
    let v = one_json_value(&ran.stdout)
        .map_err(|e| TestCaseError::fail(format!("{e}: {}", shown())))?;
    if ran.status == Some(0) {
        check(expect_version, || {
            format!("a request built to fail succeeded: {}", shown())
        })?;
        return check_version_reply(&v);
    }
    let code = check_error_object(&v)?;
    if expect_version {
        check(code == 4, || {
            format!("VERSION failed other than on CNI_ARGS: {}", shown())
        })?;
    }
    check(code != 999, || format!("the plugin panicked: {}", shown()))
}

// ---- a plugin binary fed requests built to fail --------------------------------------

/// A process environment: names and (possibly non-UTF-8) values.
pub type ProcessEnv = Vec<(String, Vec<u8>)>;

/// A config's bytes, as a runtime writes them.
pub fn bytes_of(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// The request of `env` and `conf` with `poison` applied: `("(stdin)", text)` is the whole
/// stdin, `("(CNI_COMMAND)", a JSON string)` the command, `(key, JSON)` the config's `key`
/// (`outer.inner`: the key `inner` of its object `outer`) set to that value. A VERSION
/// request is left whole: its stdin is `raw_stdin` when not empty (VERSION answers whatever
/// stdin holds), else the config. Returns (env, stdin, whether it is a VERSION request).
pub fn poisoned(
    env: &[(String, Vec<u8>)],
    conf: &Value,
    poison: (&str, &str),
    raw_stdin: &[u8],
) -> (ProcessEnv, Vec<u8>, bool) {
    let mut env = env.to_vec();
    let mut conf = conf.clone();
    if env_get(&env, "CNI_COMMAND").as_deref() == Some("VERSION") {
        let stdin = if raw_stdin.is_empty() {
            bytes_of(&conf)
        } else {
            raw_stdin.to_vec()
        };
        return (env, stdin, true);
    }
    let (key, value) = poison;
    let stdin = match key {
        "(stdin)" => value.as_bytes().to_vec(),
        "(CNI_COMMAND)" => {
            let cmd: String = serde_json::from_str(value).unwrap();
            env.retain(|(k, _)| k != "CNI_COMMAND");
            env.push(("CNI_COMMAND".into(), cmd.into_bytes()));
            bytes_of(&conf)
        }
        key => {
            let v: Value = serde_json::from_str(value).unwrap();
            if !conf.is_object() {
                conf = Value::Object(Map::new());
            }
            match key.split_once('.') {
                Some((outer, inner)) => {
                    if !conf[outer].is_object() {
                        conf[outer] = Value::Object(Map::new());
                    }
                    conf[outer][inner] = v;
                }
                None => conf[key] = v,
            }
            bytes_of(&conf)
        }
    };
    (env, stdin, false)
}

/// Fuzzes the plugin binary `program` (`target` in the summary) with requests built to fail
/// ([`poisoned`]: one of `poisons` on a [`config`] of `fields` and `keys`, the `CNI_*`
/// variables of [`cni_env`] with `commands`) and VERSION requests: each must end as
/// [`check_plugin_process`] says. `own` makes a config the binary's own (its state in the
/// test's scratch directory) before the poison.
pub fn fuzz_binary(
    target: &str,
    program: &str,
    commands: &'static [&'static str],
    fields: &'static [Field],
    keys: &'static [&'static str],
    poisons: &'static [(&'static str, &'static str)],
    own: impl Fn(&Value) -> Value,
) {
    let raw = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ];
    fuzz(
        target,
        4_000,
        (
            cni_env(commands),
            config(fields, keys),
            prop::sample::select(poisons),
            raw,
        ),
        |(env, conf, poison, raw)| {
            let (env, stdin, version) = poisoned(env, &own(conf), *poison, raw);
            let ran = run_process(program, &env, &stdin)?;
            if ran.status == Some(0) {
                accepted();
            }
            check_plugin_process(&ran, version).map_err(|e| {
                TestCaseError::fail(format!(
                    "{e}\nenv {env:?}\nstdin {}",
                    truncate(&String::from_utf8_lossy(&stdin), 2000)
                ))
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(cmd: &str) -> ProcessEnv {
        vec![
            ("CNI_COMMAND".into(), cmd.as_bytes().to_vec()),
            ("CNI_IFNAME".into(), b"eth0".to_vec()),
        ]
    }

    fn stdin_of(request: &(ProcessEnv, Vec<u8>, bool)) -> Value {
        serde_json::from_slice(&request.1).unwrap()
    }

    #[test]
    fn poisoned_sets_a_key_a_nested_key_the_stdin_or_the_command() {
        let conf = json!({"name": "n", "ipam": 5});
        let r = poisoned(&env("ADD"), &conf, ("name", r#""a/b""#), b"");
        assert_eq!(stdin_of(&r), json!({"name": "a/b", "ipam": 5}));
        assert!(!r.2);
        let r = poisoned(&env("ADD"), &conf, ("ipam.dataDir", "5"), b"");
        assert_eq!(stdin_of(&r), json!({"name": "n", "ipam": {"dataDir": 5}}));
        let r = poisoned(&env("DEL"), &json!([1]), ("holdSeconds", "-1"), b"");
        assert_eq!(stdin_of(&r), json!({"holdSeconds": -1}));
        let r = poisoned(&env("ADD"), &conf, ("(stdin)", "not json"), b"");
        assert_eq!(r.1, b"not json");
        let r = poisoned(&env("ADD"), &conf, ("(CNI_COMMAND)", r#""ADDX""#), b"");
        assert_eq!(env_get(&r.0, "CNI_COMMAND").as_deref(), Some("ADDX"));
        assert_eq!(r.0.len(), 2);
        assert_eq!(stdin_of(&r), conf);
    }

    #[test]
    fn poisoned_leaves_a_version_request_whole() {
        let conf = json!({"name": "n"});
        let r = poisoned(&env("VERSION"), &conf, ("name", "5"), b"");
        assert_eq!((stdin_of(&r), r.2), (conf.clone(), true));
        let r = poisoned(&env("VERSION"), &conf, ("name", "5"), b"\x01raw");
        assert_eq!(r.1, b"\x01raw");
    }
}
