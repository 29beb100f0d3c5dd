//! The guarantee under hostile input and surroundings, end to end against the real kernel
//! (root, a fresh network namespace per test): state directories that are not what they
//! seem, names too long for a file, a FIFO where a file or a namespace should be, a stale
//! DEL retried for an address a new pod holds, DELs repeated across a hold, a STATUS that
//! must change nothing, and a sweep of more networks than a process may open files.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Runs a prepared command with a deadline: a hang is a failure, not a stuck test.
fn finish_within(cmd: Command, stdin: &[u8], secs: u64) -> Outcome {
    tombstone_testkit::run(cmd, stdin, Duration::from_secs(secs))
}

fn mkfifo(p: &Path) {
    sh(&["mkfifo", p.to_str().unwrap()]);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_a_fifo_where_a_ledger_goes_hangs_nothing() {
    require_root();
    let ns = Netns::new();
    std::fs::create_dir_all(&ns.state_dir).unwrap();
    std::fs::set_permissions(&ns.state_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    mkfifo(&ns.state_file("pods"));
    let conf = ns.conf_with_prev(json!({}), &["10.10.0.5/24"]);
    let out = finish_within(
        ns.command(&[("CNI_COMMAND", "DEL")], &[]),
        conf.to_string().as_bytes(),
        10,
    );
    out.ok_empty();
    assert_eq!(ns.tombstones(), ["unreachable 10.10.0.5"]);
    assert!(
        std::fs::metadata(ns.state_file("pods")).unwrap().is_file(),
        "the FIFO was moved aside and a real ledger written"
    );
    // A FIFO where the next network's ledger goes does not hang the sweep either.
    mkfifo(&ns.state_dir.join("other.json"));
    let dir = ns.state_dir.to_str().unwrap().to_string();
    let out = finish_within(ns.command(&[], &["sweep", "--state-dir", &dir]), b"", 10);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("live 1"), "{}", out.stdout);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_a_loose_or_foreign_state_directory_is_not_trusted() {
    require_root();
    let ns = Netns::new();
    // A pre-existing world-writable directory is tightened before anything is written.
    std::fs::create_dir_all(&ns.state_dir).unwrap();
    std::fs::set_permissions(&ns.state_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Another user planted a ledger there: a day-long tombstone for an address nobody
    // released, and an attachment record that a GC would bury.
    let forged = json!({"version": 2, "network": "pods", "tables": [254],
        "attachments": [{"containerID": "evil", "ifname": "eth0", "ips": ["10.10.0.66"]}],
        "tombstones": [{"ip": "10.10.0.77", "routeType": "unreachable", "tables": [254],
            "metric": ns.mark(), "expiresAtMs": 4_000_000_000_000u64, "containerID": "evil", "ifname": "eth0"}]});
    std::fs::write(ns.state_file("pods"), forged.to_string()).unwrap();
    sh(&[
        "chown",
        "65534:65534",
        ns.state_file("pods").to_str().unwrap(),
    ]);
    let mut gc = ns.conf(json!({}));
    gc["cni.dev/valid-attachments"] = json!([]);
    ns.run("GC", "ctr-a", &gc).ok_empty();
    assert!(ns.tombstones().is_empty(), "{:?}", ns.tombstones());
    let mode = std::fs::metadata(&ns.state_dir).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    assert_eq!(std::fs::metadata(ns.state_file("pods")).unwrap().uid(), 0);
    assert!(
        dir_snapshot(&ns.state_dir)
            .iter()
            .any(|(n, _)| n.starts_with("pods.json.corrupt-")),
        "the forged ledger is kept aside, never read"
    );
    // A directory of another user is refused outright.
    sh(&["chown", "65534:65534", ns.state_dir.to_str().unwrap()]);
    let conf = ns.conf_with_prev(json!({}), &["10.10.0.5/24"]);
    let v = ns.run("DEL", "ctr-a", &conf).err(5);
    assert!(
        v["msg"].as_str().unwrap().contains("belongs to uid 65534"),
        "{v}"
    );
    assert!(ns.tombstones().is_empty());
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_a_symlinked_state_directory_is_refused_however_spelled() {
    require_root();
    let ns = Netns::new();
    let base = ns.state_dir.with_extension("links");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("real")).unwrap();
    std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
    let link = base.join("link").to_str().unwrap().to_string();
    for spelled in [link.clone(), format!("{link}/"), format!("{link}/.")] {
        let conf = ns.conf_with_prev(json!({"stateDir": spelled}), &["10.10.0.5/24"]);
        let v = ns.run("DEL", "ctr-a", &conf).err(5);
        assert!(
            v["msg"].as_str().unwrap().contains("symlink"),
            "{spelled}: {v}"
        );
    }
    let conf = ns.conf_with_prev(
        json!({"stateDir": format!("{link}/../real")}),
        &["10.10.0.5/24"],
    );
    ns.run("DEL", "ctr-a", &conf).err(7);
    assert!(ns.tombstones().is_empty());
    assert!(
        std::fs::read_dir(base.join("real"))
            .unwrap()
            .next()
            .is_none()
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_a_network_name_too_long_for_a_file_name_works() {
    require_root();
    let ns = Netns::new();
    let name = format!("pods-{}", "x.y".repeat(90));
    assert!(name.len() > 255);
    let conf = ns.conf_with_prev(json!({"name": name}), &["10.10.0.5/24"]);
    ns.run("DEL", "ctr-a", &conf).ok_empty();
    assert_eq!(ns.tombstones(), ["unreachable 10.10.0.5"]);
    ns.run("DEL", "ctr-a", &conf).ok_empty();
    let dir = ns.state_dir.to_str().unwrap().to_string();
    let list = run_in(
        Some(&ns.name),
        &[],
        b"",
        &["list", "--state-dir", &dir, "--json"],
    );
    let rows: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["network"], name.as_str());
    ns.run("ADD", "ctr-b", &conf);
    assert!(ns.tombstones().is_empty());
    ns.run("CHECK", "ctr-b", &conf).ok_empty();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_tombstone_ipvlan_refuses_a_fifo_netns_at_once() {
    require_root();
    let ns = Netns::new();
    std::fs::create_dir_all(&ns.state_dir).unwrap();
    let fifo = ns.state_dir.join("netns-fifo");
    mkfifo(&fifo);
    let conf = json!({"cniVersion": "1.1.0", "name": "pods", "type": "tombstone-ipvlan",
        "master": "v0", "ipam": {"type": "tombstone-ipam", "subnet": "10.10.0.0/24",
        "dataDir": ns.state_dir.join("ipam")}});
    for verb in ["ADD", "DEL"] {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns.name,
            env!("CARGO_BIN_EXE_tombstone-ipvlan"),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(RUNTIME_ENV)
        .env("CNI_COMMAND", verb)
        .env("CNI_NETNS", &fifo);
        let mut c = conf.clone();
        if verb != "ADD" {
            c["prevResult"] = prev_result(&["10.10.0.5/24"]);
        }
        let out = finish_within(cmd, c.to_string().as_bytes(), 10);
        if verb == "DEL" {
            // No link to remove there; the DEL goes on to release the IPAM allocation (not
            // on this CNI_PATH: that is the error it reports).
            let v = out.err(104);
            assert!(v["msg"].as_str().unwrap().contains("tombstone-ipam"), "{v}");
        } else {
            let v = out.err(3);
            assert!(
                v["msg"]
                    .as_str()
                    .unwrap()
                    .contains("not a network namespace"),
                "{v}"
            );
        }
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_status_changes_nothing() {
    require_root();
    let ns = Netns::new();
    let status = || ns.run("STATUS", "ctr-a", &ns.conf(json!({})));
    status().ok_empty();
    assert!(!ns.state_dir.exists(), "STATUS created the state directory");
    ns.run(
        "DEL",
        "ctr-a",
        &ns.conf_with_prev(json!({}), &["10.10.0.5/24"]),
    )
    .ok_empty();
    let before = dir_snapshot(&ns.state_dir);
    let kernel = ns.kernel_snapshot();
    status().ok_empty();
    assert_eq!(dir_snapshot(&ns.state_dir), before);
    assert_eq!(ns.kernel_snapshot(), kernel);
    // Not ready: the state directory is not a directory.
    let file = ns.state_dir.with_extension("file");
    std::fs::write(&file, b"").unwrap();
    let v = ns
        .run("STATUS", "ctr-a", &ns.conf(json!({"stateDir": file})))
        .err(50);
    assert!(
        v["msg"].as_str().unwrap().contains("not a directory"),
        "{v}"
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_a_stale_del_leaves_a_new_pods_address_alone() {
    require_root();
    let ns = Netns::new();
    let conf = ns.conf_with_prev(json!({}), &["10.10.0.5/24", "fd10::5/64"]);
    ns.run("ADD", "old", &conf);
    ns.run("DEL", "old", &conf).ok_empty();
    assert_eq!(ns.tombstones().len(), 2);
    // The new pod gets the address; then the runtime retries the old sandbox's DEL with
    // the prevResult it cached (and again, as RemovePodSandbox).
    assert_eq!(ns.run("ADD", "new", &conf).code, 0);
    assert!(ns.tombstones().is_empty());
    ns.run("DEL", "old", &conf).ok_empty();
    ns.run("DEL", "old", &ns.conf(json!({}))).ok_empty();
    assert!(ns.tombstones().is_empty(), "{:?}", ns.tombstones());
    ns.run("CHECK", "new", &conf).ok_empty();
    // The new pod's own DEL still buries its address.
    ns.run("DEL", "new", &conf).ok_empty();
    assert_eq!(ns.tombstones().len(), 2);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_repeated_dels_never_extend_or_restart_a_hold() {
    require_root();
    let ns = Netns::new();
    let conf = ns.conf_with_prev(json!({"holdSeconds": 2}), &["10.10.0.5/24"]);
    ns.run("DEL", "ctr-a", &conf).ok_empty();
    let expiry = ns.ledger("pods")["tombstones"][0]["expiresAtMs"].clone();
    std::thread::sleep(Duration::from_millis(1200));
    ns.run("DEL", "ctr-a", &conf).ok_empty();
    assert_eq!(ns.ledger("pods")["tombstones"][0]["expiresAtMs"], expiry);
    std::thread::sleep(Duration::from_millis(1000));
    // The hold is over: the next call ends it, and containerd's late RemovePodSandbox DEL
    // (no prevResult any more) buries nothing anew.
    ns.run("DEL", "ctr-a", &ns.conf(json!({"holdSeconds": 2})))
        .ok_empty();
    assert!(ns.tombstones().is_empty(), "{:?}", ns.tombstones());
    assert_eq!(ns.ledger("pods")["tombstones"], json!([]));
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_a_sweep_of_1100_networks_fits_the_common_open_file_limit() {
    require_root();
    let ns = Netns::new();
    std::fs::create_dir_all(&ns.state_dir).unwrap();
    std::fs::set_permissions(&ns.state_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for i in 0..1100 {
        let l = json!({"version": 2, "network": format!("n{i}"), "tables": [254],
            "attachments": [], "tombstones": []});
        std::fs::write(ns.state_dir.join(format!("n{i}.json")), l.to_string()).unwrap();
    }
    let dir = ns.state_dir.to_str().unwrap().to_string();
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ns.name,
        "prlimit",
        "--nofile=1024:1024",
        BIN,
    ])
    .args(["sweep", "--state-dir", &dir]);
    let out = finish_within(cmd, b"", 60);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("networks 1100"), "{}", out.stdout);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn root_listing_a_directory_that_does_not_exist_says_so() {
    require_root();
    let ns = Netns::new();
    let out = run_in(
        Some(&ns.name),
        &[],
        b"",
        &["list", "--state-dir", "/nonexistent/tombstone"],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert_eq!(out.stdout, "");
}
