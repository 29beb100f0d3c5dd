//! The `tombstone` binary run as a runtime runs it, against the real kernel: each test in
//! its own fresh network namespace. Needs root (see `common::require_root`).

mod common;

use std::os::unix::ffi::OsStrExt;
use std::thread;

use common::*;
use serde_json::{Value, json};

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_del_installs_routes_and_removes_every_neighbour_state() {
    let ns = Netns::for_root_test();
    ns.ip(&["link", "add", "v2", "type", "veth", "peer", "name", "v3"]);
    ns.ip(&["link", "set", "v2", "up"]);
    ns.neigh_add("10.10.0.5", "02:00:00:00:00:05", "v0", "permanent");
    ns.neigh_add("10.10.0.5", "02:00:00:00:00:05", "v2", "stale");
    ns.neigh_add("10.10.0.6", "02:00:00:00:00:06", "v0", "reachable");
    ns.neigh_add("10.10.0.7", "02:00:00:00:00:07", "v0", "permanent");
    ns.neigh_add("fd10::5", "02:00:00:00:00:05", "v0", "permanent");
    let conf = ns.conf_with_prev(json!({}), &["10.10.0.5/24", "10.10.0.6/24", "fd10::5/64"]);
    ns.run("DEL", "ctr-a", &conf).ok_empty();
    assert_eq!(
        ns.tombstones(),
        [
            "unreachable 10.10.0.5",
            "unreachable 10.10.0.6",
            "unreachable fd10::5 dev lo pref medium"
        ]
    );
    for ip in ["10.10.0.5", "10.10.0.6", "fd10::5"] {
        assert_eq!(ns.neigh(ip), "", "neighbour entries of {ip} must be gone");
    }
    assert!(
        ns.neigh("10.10.0.7").contains("PERMANENT"),
        "other addresses keep theirs"
    );
    // The kernel now refuses the address at once.
    let get = std::process::Command::new("ip")
        .args(["-n", &ns.name, "route", "get", "10.10.0.5"])
        .output()
        .unwrap();
    assert!(!get.status.success());
    assert!(String::from_utf8_lossy(&get.stderr).contains("No route to host"));
    let ledger = ns.ledger("pods");
    assert_eq!(ledger["tombstones"].as_array().unwrap().len(), 3);
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_del_twice_and_del_without_prev_result() {
    let ns = Netns::for_root_test();
    let conf = ns.conf_with_prev(json!({}), &["10.10.0.5/24"]);
    ns.run("ADD", "ctr-a", &conf);
    // DEL with no prevResult (the runtime lost its cache): the record made at ADD names the IP.
    let bare = ns.conf(json!({}));
    ns.run("DEL", "ctr-a", &bare).ok_empty();
    assert_eq!(ns.tombstones(), ["unreachable 10.10.0.5"]);
    ns.run("DEL", "ctr-a", &bare).ok_empty();
    ns.run("DEL", "ctr-a", &conf).ok_empty();
    assert_eq!(ns.tombstones(), ["unreachable 10.10.0.5"]);
    // A DEL of an attachment never seen, with no prevResult and no netns: nothing to do, success.
    ns.run_env(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "never"),
            ("CNI_NETNS", ""),
        ],
        bare.to_string().as_bytes(),
    )
    .ok_empty();
    assert_eq!(ns.tombstones().len(), 1);
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_add_removes_the_tombstone_and_passes_prev_result_through() {
    let ns = Netns::for_root_test();
    let conf = ns.conf_with_prev(json!({}), &["10.10.0.5/24", "fd10::5/64"]);
    ns.run("DEL", "ctr-old", &conf).ok_empty();
    assert_eq!(ns.tombstones().len(), 2);
    let out = ns.run("ADD", "ctr-new", &conf);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        conf["prevResult"],
        "prevResult passes through unchanged"
    );
    assert!(ns.tombstones().is_empty());
    assert!(
        out.stderr.contains("while still tombstoned"),
        "the reuse is logged: {}",
        out.stderr
    );
    let ledger = ns.ledger("pods");
    assert_eq!(ledger["tombstones"], json!([]));
    assert_eq!(ledger["attachments"][0]["containerID"], "ctr-new");
    // The same for a 0.4.0 runtime.
    let mut old = conf.clone();
    old["cniVersion"] = "0.4.0".into();
    old["prevResult"]["cniVersion"] = "0.4.0".into();
    let out = ns.run("ADD", "ctr-new", &old);
    assert_eq!(out.json(), old["prevResult"]);
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_check_fails_while_tombstoned_and_passes_after_add() {
    let ns = Netns::for_root_test();
    let conf = ns.conf_with_prev(json!({}), &["10.10.0.5/24"]);
    ns.run("DEL", "ctr-a", &conf).ok_empty();
    let e = ns.run("CHECK", "ctr-b", &conf).err(101);
    assert!(e["details"].as_str().unwrap().contains("10.10.0.5"));
    ns.run("ADD", "ctr-b", &conf);
    ns.run("CHECK", "ctr-b", &conf).ok_empty();
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_gc_with_the_list_present_absent_and_empty() {
    let ns = Netns::for_root_test();
    ns.run(
        "ADD",
        "ctr-a",
        &ns.conf_with_prev(json!({}), &["10.10.0.5/24"]),
    );
    ns.run(
        "ADD",
        "ctr-b",
        &ns.conf_with_prev(json!({}), &["10.10.0.6/24"]),
    );
    let gc = |list: Option<Value>| {
        let mut c = ns.conf(json!({}));
        if let Some(l) = list {
            c["cni.dev/valid-attachments"] = l;
        }
        ns.run_env(
            &[
                ("CNI_COMMAND", "GC"),
                ("CNI_CONTAINERID", ""),
                ("CNI_IFNAME", ""),
                ("CNI_NETNS", ""),
            ],
            c.to_string().as_bytes(),
        )
    };
    // Absent: no list, nothing is stale.
    gc(None).ok_empty();
    assert!(ns.tombstones().is_empty());
    // Present: b is not valid any more.
    gc(Some(json!([{"containerID": "ctr-a", "ifname": "eth0"}]))).ok_empty();
    assert_eq!(ns.tombstones(), ["unreachable 10.10.0.6"]);
    // Empty: nothing is valid.
    gc(Some(json!([]))).ok_empty();
    assert_eq!(
        ns.tombstones(),
        ["unreachable 10.10.0.5", "unreachable 10.10.0.6"]
    );
    // a is remembered as released (so a repeated DEL starts no new hold); b, released by
    // the GC before and not listed now, is forgotten.
    let records = ns.ledger("pods")["attachments"].clone();
    assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["releasedAtMs"].is_u64()),
        "{records}"
    );
    // A later GC forgets what the runtime does not list and a DEL already released.
    gc(Some(json!([]))).ok_empty();
    assert_eq!(ns.ledger("pods")["attachments"], json!([]));
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_status_ready_and_not_ready() {
    let ns = Netns::for_root_test();
    let status = |c: &Value| {
        ns.run_env(
            &[
                ("CNI_COMMAND", "STATUS"),
                ("CNI_CONTAINERID", ""),
                ("CNI_IFNAME", ""),
                ("CNI_NETNS", ""),
                ("CNI_PATH", ""),
            ],
            c.to_string().as_bytes(),
        )
    };
    status(&ns.conf(json!({}))).ok_empty();
    let file = std::env::temp_dir().join(format!("ts-status-file-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    let e = status(&ns.conf(json!({"stateDir": file}))).err(50);
    assert!(
        e["msg"].as_str().unwrap().contains("not a directory"),
        "{e}"
    );
    std::fs::remove_file(file).unwrap();
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_tombstones_expire_after_their_hold() {
    let ns = Netns::for_root_test();
    ns.run(
        "DEL",
        "ctr-a",
        &ns.conf_with_prev(json!({"holdSeconds": 1}), &["10.10.0.5/24", "fd10::5/64"]),
    )
    .ok_empty();
    assert_eq!(ns.tombstones().len(), 2);
    // The hold has passed: the ledger's clock moved on, no sleep (the real clock's expiry is
    // root_the_background_sweeper_ends_tombstones_with_no_further_call's).
    assert_eq!(expire(&ns.state_dir, |_| true).len(), 2);
    // A verb touches only its own addresses' entries: another pod's DEL leaves the two
    // expired ones to the sweep (its cost does not grow with the node's tombstones).
    ns.run(
        "DEL",
        "ctr-other",
        &ns.conf_with_prev(json!({"holdSeconds": 1}), &["10.10.0.9/24"]),
    )
    .ok_empty();
    assert_eq!(ns.tombstones().len(), 3, "{:?}", ns.tombstones());
    // A repeated DEL of the attachment ends its own expired ones, and does not bury again.
    ns.run(
        "DEL",
        "ctr-a",
        &ns.conf_with_prev(json!({"holdSeconds": 1}), &["10.10.0.5/24", "fd10::5/64"]),
    )
    .ok_empty();
    assert_eq!(ns.tombstones(), ["unreachable 10.10.0.9"]);
    assert_eq!(expire(&ns.state_dir, |_| true).len(), 1);
    // And so does the subcommand, for a timer.
    let out = run_in(
        Some(&ns.name),
        &[],
        b"",
        &["sweep", "--state-dir", ns.state_dir.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("ended 1"), "{}", out.stdout);
    assert!(ns.tombstones().is_empty());
    assert_eq!(ns.ledger("pods")["tombstones"], json!([]));
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_the_background_sweeper_ends_tombstones_with_no_further_call() {
    let ns = Netns::for_root_test();
    let dir = ns.state_dir.to_str().unwrap().to_string();
    for (net, hold, ip) in [("pods", 1, "10.10.0.5/24"), ("other", 2, "fd10::6/64")] {
        let c = ns.conf_with_prev(
            json!({"name": net, "holdSeconds": hold, "sweeper": true}),
            &[ip],
        );
        ns.run("DEL", &format!("ctr-{net}"), &c).ok_empty();
    }
    assert_eq!(ns.tombstones().len(), 2);
    let sweepers = processes_with(&["sweep", "--until-empty", &dir]);
    assert_eq!(
        sweepers.len(),
        1,
        "one sweeper per state directory: {sweepers:?}"
    );
    // No other call comes: the sweeper alone ends both at their holds, then exits.
    assert!(
        eventually(6, || ns.tombstones().is_empty()),
        "{:?}",
        ns.tombstones()
    );
    assert_eq!(ns.ledger("pods")["tombstones"], json!([]));
    assert_eq!(ns.ledger("other")["tombstones"], json!([]));
    assert!(
        eventually(3, || processes_with(&["--until-empty", &dir]).is_empty()),
        "the sweeper exits when nothing is left"
    );
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_the_background_sweeper_reads_nothing_between_expiries_yet_sees_a_shorter_hold() {
    let ns = Netns::for_root_test();
    let dir = ns.state_dir.to_str().unwrap().to_string();
    let ips: Vec<String> = (0..200)
        .map(|i| format!("10.10.{}.{}/16", 1 + i / 250, 1 + i % 250))
        .collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    let long = ns.conf_with_prev(json!({"holdSeconds": 600, "sweeper": true}), &ips);
    ns.run("DEL", "ctr-long", &long).ok_empty();
    assert_eq!(ns.tombstones().len(), 200);
    let sweepers = processes_with(&["sweep", "--until-empty", &dir]);
    assert_eq!(sweepers.len(), 1, "{sweepers:?}");
    let reads = || -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", sweepers[0])).unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("syscr: "))
            .unwrap()
            .parse()
            .unwrap()
    };
    // Its first sweeps read every tombstone (the second because the first saw files changed
    // within a tick of it); later wake-ups, every 5 s, find nothing due and nothing changed.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let before = reads();
    std::thread::sleep(std::time::Duration::from_secs(6));
    let idle = reads() - before;
    assert!(
        idle < 50,
        "{idle} read calls in 6 s with nothing due: the sweeper re-read its 200 tombstones"
    );
    // A tombstone with a shorter hold, buried while it sleeps, still ends at its hold.
    let short = ns.conf_with_prev(
        json!({"holdSeconds": 1, "sweeper": true}),
        &["10.10.9.9/16"],
    );
    ns.run("DEL", "ctr-short", &short).ok_empty();
    assert_eq!(ns.tombstones().len(), 201);
    assert!(
        eventually(8, || ns.tombstones().len() == 200),
        "the short hold did not end: {} tombstones",
        ns.tombstones().len()
    );
    println!("background sweeper: {idle} read calls in 6 s idle with 200 live tombstones");
    let _ = std::process::Command::new("kill")
        .arg(sweepers[0].to_string())
        .status();
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_an_operators_route_is_never_replaced_or_deleted() {
    let ns = Netns::for_root_test();
    ns.ip(&[
        "route",
        "add",
        "10.10.0.5/32",
        "dev",
        "v0",
        "proto",
        "static",
    ]);
    ns.ip(&["route", "add", "blackhole", "10.10.0.6/32", "table", "100"]);
    ns.ip(&[
        "-6",
        "route",
        "add",
        "fd10::5/128",
        "dev",
        "v0",
        "proto",
        "static",
    ]);
    let conf = ns.conf_with_prev(
        json!({"tables": ["main", 100]}),
        &["10.10.0.5/24", "10.10.0.6/24", "fd10::5/64"],
    );
    let out = ns.run("DEL", "ctr-a", &conf);
    out.ok_empty();
    // The route the host uses for 10.10.0.5 is the operator's: main is skipped for it. The
    // lookup for 10.10.0.6 finds the subnet route of main (the rules reach table 100 for
    // nothing here): both tables get a tombstone; the operator's blackhole in table 100,
    // metric 0, stays in front of ours and is neither replaced nor deleted.
    assert!(out.stderr.contains("not ours"), "{}", out.stderr);
    assert_eq!(
        ns.tombstones(),
        [
            "unreachable 10.10.0.5 table 100",
            "unreachable 10.10.0.6",
            "unreachable 10.10.0.6 table 100",
            "unreachable fd10::5 dev lo table 100 pref medium"
        ]
    );
    assert!(
        ns.ip(&["-6", "route", "show", "fd10::5/128"])
            .contains("dev v0")
    );
    assert!(ns.ip(&["route", "show", "10.10.0.5/32"]).contains("dev v0"));
    ns.run("ADD", "ctr-b", &conf);
    assert!(ns.tombstones().is_empty());
    assert!(
        ns.ip(&["route", "show", "10.10.0.5/32"])
            .contains("dev v0 proto static")
    );
    assert!(
        ns.ip(&["route", "show", "table", "100", "10.10.0.6/32"])
            .contains("blackhole")
    );
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_route_types_and_a_second_table() {
    let ns = Netns::for_root_test();
    let c = ns.conf_with_prev(
        json!({"routeType": "blackhole", "tables": [254, 100]}),
        &["10.10.0.5/24", "fd10::5/64"],
    );
    ns.run("DEL", "ctr-a", &c).ok_empty();
    let t = ns.tombstones();
    assert!(t.contains(&"blackhole 10.10.0.5".to_string()), "{t:?}");
    assert!(
        t.contains(&"blackhole 10.10.0.5 table 100".to_string()),
        "{t:?}"
    );
    assert!(
        t.iter()
            .any(|l| l.starts_with("blackhole fd10::5") && l.contains("table 100")),
        "{t:?}"
    );
    assert_eq!(t.len(), 4);
    // The ADD after a config change (another type) still removes them: deletes match any type.
    let p = ns.conf_with_prev(
        json!({"routeType": "prohibit", "tables": [254, 100]}),
        &["10.10.0.5/24", "fd10::5/64"],
    );
    ns.run("ADD", "ctr-b", &p);
    assert!(ns.tombstones().is_empty());
    ns.run("DEL", "ctr-b", &p).ok_empty();
    assert!(ns.tombstones().iter().all(|l| l.starts_with("prohibit")));
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_orphan_routes_are_swept_unless_kept() {
    let ns = Netns::for_root_test();
    ns.run(
        "DEL",
        "ctr-a",
        &ns.conf_with_prev(json!({}), &["10.10.0.5/24"]),
    )
    .ok_empty();
    // An orphan: our full signature (protocol, this directory's metric, a reject host
    // route in a table the ledger configured), named by no entry.
    let mark = ns.mark().to_string();
    ns.ip(&[
        "route",
        "add",
        "unreachable",
        "10.10.0.77/32",
        "proto",
        "84",
        "metric",
        &mark,
    ]);
    // Not orphans: our protocol without our metric (another state directory's), a
    // forwarding route, a table no ledger configured.
    ns.ip(&[
        "route",
        "add",
        "unreachable",
        "10.10.0.78/32",
        "proto",
        "84",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.10.0.79/32",
        "dev",
        "v0",
        "proto",
        "84",
        "metric",
        &mark,
    ]);
    ns.ip(&[
        "route",
        "add",
        "unreachable",
        "10.10.0.80/32",
        "proto",
        "84",
        "metric",
        &mark,
        "table",
        "777",
    ]);
    let dir = ns.state_dir.to_str().unwrap().to_string();
    let keep = run_in(
        Some(&ns.name),
        &[],
        b"",
        &["sweep", "--state-dir", &dir, "--keep-orphans"],
    );
    assert!(keep.stdout.contains("orphans removed 0"), "{}", keep.stdout);
    let out = run_in(Some(&ns.name), &[], b"", &["sweep", "--state-dir", &dir]);
    assert!(
        out.stdout.contains("orphans removed 1") && out.stdout.contains("live 1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        ns.tombstones(),
        [
            "10.10.0.79 dev v0 scope link",
            "unreachable 10.10.0.5",
            "unreachable 10.10.0.78",
            "unreachable 10.10.0.80 table 777",
        ]
    );
    let list = run_in(
        Some(&ns.name),
        &[],
        b"",
        &["list", "--state-dir", &dir, "--json"],
    );
    let rows: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["ip"], "10.10.0.5");
    assert_eq!(rows[0]["network"], "pods");
    assert!(rows[0]["expiresInSeconds"].as_f64().unwrap() > 50.0);
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_crashes_between_ledger_and_kernel_heal() {
    let ns = Netns::for_root_test();
    // A DEL that died after writing its ledger entry, before installing the route: the
    // runtime's retry (without prevResult) finds the address in the entry and finishes.
    std::fs::create_dir_all(&ns.state_dir).unwrap();
    let far = 4_000_000_000_000u64;
    let entry = |ip: &str, c: &str| json!({"ip": ip, "routeType": "unreachable", "tables": [254], "expiresAtMs": far, "containerID": c, "ifname": "eth0"});
    let ledger = json!({"version": 1, "network": "pods", "attachments": [], "tombstones": [entry("10.10.0.5", "ctr-a")]});
    std::fs::write(ns.state_file("pods"), ledger.to_string()).unwrap();
    ns.run("DEL", "ctr-a", &ns.conf(json!({}))).ok_empty();
    assert_eq!(ns.tombstones(), ["unreachable 10.10.0.5"]);
    // An entry whose route never came (and no retry): the next sweep drops it (a verb does
    // not dump every route to find such entries; the entry would only end at its hold).
    let ledger = json!({"version": 1, "network": "pods", "attachments": [], "tombstones": [entry("10.10.0.5", "ctr-a"), entry("10.10.0.8", "ctr-z")]});
    std::fs::write(ns.state_file("pods"), ledger.to_string()).unwrap();
    ns.run(
        "CHECK",
        "ctr-q",
        &ns.conf_with_prev(json!({}), &["10.10.0.9/24"]),
    )
    .ok_empty();
    let dir = ns.state_dir.to_str().unwrap().to_string();
    let swept = run_in(Some(&ns.name), &[], b"", &["sweep", "--state-dir", &dir]);
    assert!(swept.stdout.contains("dropped 1"), "{}", swept.stdout);
    let l = ns.ledger("pods");
    assert_eq!(l["tombstones"].as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l["tombstones"][0]["ip"], "10.10.0.5");
    // An ADD that died after recording its attachment: the DEL without prevResult still
    // tombstones the address the main plugin is about to release.
    let ledger = json!({"version": 1, "network": "pods", "attachments": [{"containerID": "ctr-c", "ifname": "eth0", "ips": ["10.10.0.12"]}], "tombstones": []});
    std::fs::write(ns.state_file("pods"), ledger.to_string()).unwrap();
    ns.run("DEL", "ctr-c", &ns.conf(json!({}))).ok_empty();
    assert!(
        ns.tombstones()
            .contains(&"unreachable 10.10.0.12".to_string())
    );
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_a_truncated_ledger_is_set_aside_and_rebuilt() {
    let ns = Netns::for_root_test();
    ns.run(
        "DEL",
        "ctr-a",
        &ns.conf_with_prev(json!({"name": "other"}), &["10.10.0.9/24"]),
    )
    .ok_empty();
    let other_before = std::fs::read(ns.state_file("other")).unwrap();
    ns.run(
        "DEL",
        "ctr-a",
        &ns.conf_with_prev(json!({}), &["10.10.0.5/24"]),
    )
    .ok_empty();
    // A truncated head: set aside and made anew; the entries, in their own files, stand.
    let full = std::fs::read(ns.state_file("pods")).unwrap();
    std::fs::write(ns.state_file("pods"), &full[..full.len() / 2]).unwrap();
    let out = ns.run(
        "DEL",
        "ctr-b",
        &ns.conf_with_prev(json!({}), &["10.10.0.6/24"]),
    );
    out.ok_empty();
    assert!(out.stderr.contains("unreadable"), "{}", out.stderr);
    let aside = |dir: &std::path::Path, prefix: &str| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .count()
    };
    assert_eq!(
        aside(&ns.state_dir, "pods.json.corrupt-"),
        1,
        "the damaged file is kept for inspection"
    );
    let ips = |l: &Value| {
        let mut v: Vec<String> = l["tombstones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["ip"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ips(&ns.ledger("pods")), ["10.10.0.5", "10.10.0.6"]);
    assert_eq!(std::fs::read(ns.state_file("other")).unwrap(), other_before);
    // A truncated entry: set aside when next read, and the route it described becomes an
    // orphan, which the sweep reclaims.
    let entries = ns.state_dir.join("pods.d");
    let t6 = entries.join("t-10%2E10%2E0%2E6.json");
    let text = std::fs::read_link(&t6)
        .unwrap()
        .into_os_string()
        .into_encoded_bytes();
    std::fs::remove_file(&t6).unwrap();
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&text[..text.len() / 2]), &t6).unwrap();
    let out = run_in(
        Some(&ns.name),
        &[],
        b"",
        &["sweep", "--state-dir", ns.state_dir.to_str().unwrap()],
    );
    assert!(out.stdout.contains("orphans removed 1"), "{}", out.stdout);
    assert_eq!(aside(&entries, "t-10%2E10%2E0%2E6.json.corrupt-"), 1);
    assert_eq!(
        ns.tombstones(),
        ["unreachable 10.10.0.5", "unreachable 10.10.0.9"]
    );
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_32_concurrent_invocations_leave_the_ledger_equal_to_the_kernel() {
    let ns = Netns::for_root_test();
    thread::scope(|s| {
        for i in 0..32 {
            let ns = &ns;
            s.spawn(move || {
                // Distinct addresses, half of them also fought over: 10.10.0.200 by everyone.
                let own = format!("10.10.0.{}/24", 10 + i);
                let ips: Vec<&str> = if i % 2 == 0 {
                    vec![&own, "10.10.0.200/24"]
                } else {
                    vec![&own]
                };
                let c = ns.conf_with_prev(json!({}), &ips);
                let verb = if i % 4 == 3 { "ADD" } else { "DEL" };
                let out = ns.run(verb, &format!("ctr-{i}"), &c);
                assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
            });
        }
    });
    let ledger = ns.ledger("pods");
    let mut from_ledger: Vec<String> = ledger["tombstones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("unreachable {}", t["ip"].as_str().unwrap()))
        .collect();
    from_ledger.sort();
    assert_eq!(from_ledger, ns.tombstones());
    assert!(from_ledger.len() >= 24, "{from_ledger:?}");
    let live = ledger["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("releasedAtMs").is_none())
        .count();
    assert_eq!(live, 8, "the 8 ADDs recorded their attachments");
}
