//! Bad input: each case gets one CNI error object with the right spec code on stdout, a
//! non-zero exit, and leaves the kernel and the state directory exactly as they were.
//! Needs root (network namespaces).

mod common;

use common::*;
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    code: u64,
}

fn cases(ns: &Netns) -> Vec<Case> {
    let good = {
        let mut c = ns.conf(json!({"holdSeconds": 600}));
        c["prevResult"] = prev_result(&["10.10.0.5/24", "fd10::5/64"]);
        c
    };
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        serde_json::to_vec(&c).unwrap()
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        serde_json::to_vec(&c).unwrap()
    };
    let prev = |ips: Value| {
        let mut c = good.clone();
        c["prevResult"]["ips"] = ips;
        serde_json::to_vec(&c).unwrap()
    };
    let del = |s: &str| vec![("CNI_COMMAND", s.to_string())];
    let file = ns.state_dir.join("pods.json");
    vec![
        Case {
            name: "malformed JSON",
            env: del("DEL"),
            stdin: b"{\"cniVersion\": ".to_vec(),
            code: 6,
        },
        Case {
            name: "empty stdin",
            env: del("DEL"),
            stdin: vec![],
            code: 6,
        },
        Case {
            name: "a JSON array",
            env: del("DEL"),
            stdin: b"[1,2]".to_vec(),
            code: 6,
        },
        Case {
            name: "not UTF-8",
            env: del("ADD"),
            stdin: vec![0xff, 0xfe, 0x7b],
            code: 6,
        },
        Case {
            name: "no cniVersion",
            env: del("DEL"),
            stdin: without("cniVersion"),
            code: 7,
        },
        Case {
            name: "cniVersion 0.2.0 (no prevResult for a chained plugin)",
            env: del("DEL"),
            stdin: with("cniVersion", "0.2.0".into()),
            code: 1,
        },
        Case {
            name: "cniVersion 2.0.0",
            env: del("ADD"),
            stdin: with("cniVersion", "2.0.0".into()),
            code: 1,
        },
        Case {
            name: "no name",
            env: del("DEL"),
            stdin: without("name"),
            code: 7,
        },
        Case {
            name: "name with a slash",
            env: del("DEL"),
            stdin: with("name", "../etc".into()),
            code: 7,
        },
        Case {
            name: "holdSeconds a string",
            env: del("DEL"),
            stdin: with("holdSeconds", "60".into()),
            code: 7,
        },
        Case {
            name: "holdSeconds 0",
            env: del("DEL"),
            stdin: with("holdSeconds", 0.into()),
            code: 7,
        },
        Case {
            name: "holdSeconds negative",
            env: del("DEL"),
            stdin: with("holdSeconds", (-5).into()),
            code: 7,
        },
        Case {
            name: "routeType unknown",
            env: del("DEL"),
            stdin: with("routeType", "drop".into()),
            code: 7,
        },
        Case {
            name: "tables empty",
            env: del("DEL"),
            stdin: with("tables", json!([])),
            code: 7,
        },
        Case {
            name: "table local",
            env: del("DEL"),
            stdin: with("tables", json!([255])),
            code: 7,
        },
        Case {
            name: "flushNeighbors a string",
            env: del("DEL"),
            stdin: with("flushNeighbors", "yes".into()),
            code: 7,
        },
        Case {
            name: "stateDir relative",
            env: del("DEL"),
            stdin: with("stateDir", "run/x".into()),
            code: 7,
        },
        Case {
            name: "logLevel unknown",
            env: del("DEL"),
            stdin: with("logLevel", "loud".into()),
            code: 7,
        },
        Case {
            name: "bad IP in prevResult",
            env: del("DEL"),
            stdin: prev(json!([{"address": "10.10.0.300/24"}])),
            code: 7,
        },
        Case {
            name: "bad prefix in prevResult",
            env: del("DEL"),
            stdin: prev(json!([{"address": "10.10.0.5/40"}])),
            code: 7,
        },
        Case {
            name: "one good and one bad IP",
            env: del("DEL"),
            stdin: prev(json!([{"address": "10.10.0.5/24"}, {"address": "x"}])),
            code: 7,
        },
        Case {
            name: "ips not a list",
            env: del("ADD"),
            stdin: prev(json!("10.10.0.5/24")),
            code: 7,
        },
        Case {
            name: "ADD without prevResult",
            env: del("ADD"),
            stdin: without("prevResult"),
            code: 7,
        },
        Case {
            name: "CHECK without prevResult",
            env: del("CHECK"),
            stdin: without("prevResult"),
            code: 7,
        },
        Case {
            name: "unknown verb",
            env: del("FROB"),
            stdin: with("x", 1.into()),
            code: 4,
        },
        Case {
            name: "no CNI_COMMAND but CNI_ARGS",
            env: vec![("CNI_COMMAND", String::new()), ("CNI_ARGS", "IP=1".into())],
            stdin: vec![],
            code: 0,
        },
        Case {
            name: "no container ID",
            env: vec![
                ("CNI_COMMAND", "DEL".into()),
                ("CNI_CONTAINERID", String::new()),
            ],
            stdin: with("x", 1.into()),
            code: 4,
        },
        Case {
            name: "container ID with a slash",
            env: vec![
                ("CNI_COMMAND", "DEL".into()),
                ("CNI_CONTAINERID", "../../x".into()),
            ],
            stdin: with("x", 1.into()),
            code: 4,
        },
        Case {
            name: "ifname too long",
            env: vec![
                ("CNI_COMMAND", "DEL".into()),
                ("CNI_IFNAME", "a234567890123456".into()),
            ],
            stdin: with("x", 1.into()),
            code: 4,
        },
        Case {
            name: "no CNI_PATH on ADD",
            env: vec![("CNI_COMMAND", "ADD".into()), ("CNI_PATH", String::new())],
            stdin: with("x", 1.into()),
            code: 4,
        },
        Case {
            name: "no CNI_NETNS on ADD",
            env: vec![("CNI_COMMAND", "ADD".into()), ("CNI_NETNS", String::new())],
            stdin: with("x", 1.into()),
            code: 4,
        },
        Case {
            name: "malformed CNI_ARGS",
            env: vec![("CNI_COMMAND", "DEL".into()), ("CNI_ARGS", "IP".into())],
            stdin: with("x", 1.into()),
            code: 4,
        },
        Case {
            name: "GC under 1.0.0",
            env: del("GC"),
            stdin: with("cniVersion", "1.0.0".into()),
            code: 1,
        },
        Case {
            name: "GC with a malformed list",
            env: del("GC"),
            stdin: with("cni.dev/valid-attachments", json!([{"containerID": 5}])),
            code: 7,
        },
        Case {
            name: "unwritable stateDir",
            env: del("DEL"),
            stdin: with("stateDir", file.join("sub").to_string_lossy().into()),
            code: 5,
        },
    ]
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_bad_input_changes_nothing() {
    let ns = Netns::for_root_test();
    // Live state for bad requests to disturb: a tombstone and a neighbour entry of the
    // address every case names, and a ledger.
    let mut setup = ns.conf(json!({"holdSeconds": 600}));
    setup["prevResult"] = prev_result(&["10.10.0.9/24"]);
    ns.run("DEL", "ctr-old", &setup).ok_empty();
    ns.neigh_add("10.10.0.5", "02:00:00:00:00:05", "v0", "permanent");
    let kernel = ns.kernel_snapshot();
    let state = dir_snapshot(&ns.state_dir);
    assert!(kernel.contains("unreachable 10.10.0.9") && kernel.contains("10.10.0.5 dev v0"));
    let all = cases(&ns);
    assert!(all.len() >= 20);
    for case in all {
        let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = ns.run_env(&env, &case.stdin);
        if case.code == 0 {
            // Without CNI_COMMAND the binary prints its "about" text on stderr, like the
            // reference plugins, and nothing on stdout.
            assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", case.name);
            assert!(out.stderr.contains("CNI tombstone plugin"), "{}", case.name);
        } else {
            assert_ne!(out.code, 0, "{}: must fail", case.name);
            let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "{}: stdout is not one JSON object ({e}): {:?}",
                    case.name, out.stdout
                )
            });
            assert_eq!(v["code"].as_u64(), Some(case.code), "{}: {v}", case.name);
            assert!(
                v["msg"].as_str().is_some_and(|m| !m.is_empty()),
                "{}: {v}",
                case.name
            );
            assert!(
                !out.stderr.contains("panicked"),
                "{}: {}",
                case.name,
                out.stderr
            );
        }
        assert_eq!(
            ns.kernel_snapshot(),
            kernel,
            "{}: the kernel changed",
            case.name
        );
        assert_eq!(
            dir_snapshot(&ns.state_dir),
            state,
            "{}: the state changed",
            case.name
        );
    }
}
