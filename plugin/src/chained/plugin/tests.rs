//! The verbs' ordering and ownership rules, against the recording fake kernel and a real
//! state directory in a temporary folder: no root needed. The real-kernel tests in
//! `plugin/tests/` check the same behaviour end to end.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::super::fake::{Call, Fake};
use super::super::sweep::sweep_all_in;
use super::super::{dir_mark, store};
use super::TombstonePlugin;
use tombstone_cni::state::StateDir;
use tombstone_cni::{Env, Invocation, NetConf, Plugin};
use tombstone_kernel::{RejectKind, RouteEntry};

struct World {
    fake: Fake,
    plugin: TombstonePlugin,
    dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn world(tag: &str) -> World {
    let dir = std::env::temp_dir().join(format!(
        "ts-rules-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let fake = Fake::default();
    fake.0.borrow_mut().now_ms = 1_000_000;
    World {
        plugin: TombstonePlugin::new(fake.edges()),
        fake,
        dir,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl World {
    fn conf(&self, extra: Value, ips: &[&str]) -> Value {
        let mut c = json!({
            "cniVersion": "1.1.0", "name": "pods", "type": "tombstone",
            "stateDir": self.dir, "sweeper": false, "holdSeconds": 60,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        if !ips.is_empty() {
            c["prevResult"] = json!({
                "cniVersion": "1.1.0",
                "ips": ips.iter().map(|a| json!({"address": format!("{a}/24")})).collect::<Vec<_>>(),
            });
        }
        c
    }

    fn inv(&self, verb: &str, container: &str, conf: &Value) -> Invocation {
        let env = Env::from_lookup(|k| {
            match k {
                "CNI_COMMAND" => Some(verb),
                "CNI_CONTAINERID" => Some(container),
                "CNI_NETNS" => Some("/var/run/netns/x"),
                "CNI_IFNAME" => Some("eth0"),
                "CNI_PATH" => Some("/opt/cni/bin"),
                _ => None,
            }
            .map(str::to_string)
        })
        .unwrap();
        Invocation {
            env,
            conf: NetConf::parse(conf.to_string().as_bytes()).unwrap(),
        }
    }

    fn run(&self, verb: &str, container: &str, conf: &Value) -> tombstone_cni::Result<()> {
        let inv = self.inv(verb, container, conf);
        match verb {
            "ADD" => self.plugin.add(&inv).map(|_| ()),
            "DEL" => self.plugin.del(&inv),
            "CHECK" => self.plugin.check(&inv),
            "GC" => self.plugin.gc(&inv),
            _ => unreachable!(),
        }
    }

    fn ledger(&self) -> super::Ledger {
        let dir = StateDir::open(&self.dir).unwrap();
        store::snapshot(&dir, "pods")
            .unwrap()
            .unwrap_or_else(|| super::Ledger::new("pods"))
    }

    fn mark(&self) -> u32 {
        dir_mark(&tombstone_cni::state::normalize(&self.dir).unwrap())
    }

    /// The invariant: every route of ours is named by a ledger entry, with its metric.
    fn assert_ledger_names_every_route(&self) {
        let l = self.ledger();
        for (r_ip, table, metric) in self.fake.keys() {
            assert!(
                l.tombstones
                    .iter()
                    .any(|t| t.ip == r_ip && t.tables.contains(&table) && t.metric() == metric),
                "route {r_ip} table {table} metric {metric} is named by no entry: {l:?}"
            );
        }
    }

    fn set_now(&self, ms: u64) {
        self.fake.0.borrow_mut().now_ms = ms;
    }
}

/// The network's whole ledger as its files say at this moment.
fn on_disk(dir: &std::path::Path) -> super::Ledger {
    store::snapshot(&StateDir::open(dir).unwrap(), "pods")
        .unwrap()
        .expect("a ledger")
}

#[test]
fn del_writes_the_entry_before_it_installs_the_route() {
    let w = world("order-del");
    let dir = w.dir.clone();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let s = seen.clone();
    w.fake.0.borrow_mut().hook = Some(Box::new(move |c| {
        if let Call::Replace(r) = c {
            let named = on_disk(&dir)
                .tombstone(r.ip)
                .is_some_and(|t| t.tables.contains(&r.table));
            s.borrow_mut().push(named);
        }
    }));
    w.run(
        "DEL",
        "a",
        &w.conf(json!({"tables": ["main", 100]}), &["10.0.0.5", "fd00::5"]),
    )
    .unwrap();
    assert_eq!(
        *seen.borrow(),
        vec![true; 4],
        "every route install found its entry on disk"
    );
    assert_eq!(w.fake.keys().len(), 4);
    assert!(
        w.fake.keys().iter().all(|k| k.2 == w.mark()),
        "routes carry the directory's metric"
    );
}

#[test]
fn add_and_sweep_delete_the_route_before_the_entry() {
    let w = world("order-add");
    let conf = w.conf(json!({}), &["10.0.0.5"]);
    w.run("DEL", "a", &conf).unwrap();
    w.run("DEL", "b", &w.conf(json!({}), &["10.0.0.6"]))
        .unwrap();
    let dir = w.dir.clone();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let s = seen.clone();
    w.fake.0.borrow_mut().hook = Some(Box::new(move |c| {
        if let Call::Delete(r) = c {
            let named = on_disk(&dir).tombstone(r.ip).is_some();
            s.borrow_mut().push((r.ip, named));
        }
    }));
    w.run("ADD", "c", &conf).unwrap();
    assert!(
        seen.borrow()
            .iter()
            .any(|&(a, named)| a == ip("10.0.0.5") && named)
    );
    assert!(w.ledger().tombstone(ip("10.0.0.5")).is_none());
    // The sweep, once the hold of the other one is over.
    w.set_now(1_000_000 + 61_000);
    seen.borrow_mut().clear();
    let dir = StateDir::open(&w.dir).unwrap();
    let report = sweep_all_in(&dir, &w.fake, 1_000_000 + 61_000, false).unwrap();
    assert_eq!(report.ended, 1);
    assert_eq!(*seen.borrow(), vec![(ip("10.0.0.6"), true)]);
    assert!(w.fake.keys().is_empty());
    assert!(w.ledger().tombstones.is_empty());
}

#[test]
fn an_operators_route_is_left_alone() {
    let w = world("operator");
    w.fake.0.borrow_mut().foreign.push(RouteEntry {
        dst: Some(ip("10.0.0.5")),
        prefix_len: 32,
        table: 254,
        protocol: 4,
        metric: 0,
        reject: None,
    });
    w.run(
        "DEL",
        "a",
        &w.conf(json!({"tables": ["main", 100]}), &["10.0.0.5"]),
    )
    .unwrap();
    assert_eq!(
        w.fake.keys().into_iter().map(|k| k.1).collect::<Vec<_>>(),
        vec![100],
        "only the table without the operator's route"
    );
    assert_eq!(
        w.ledger().tombstone(ip("10.0.0.5")).unwrap().tables,
        vec![100]
    );
}

/// Fails each request of a verb in turn: the verb must say so, the ledger must still name
/// every route, and a clean retry must reach the state a clean run reaches.
fn every_failure_is_an_error(verb: &str, setup: impl Fn(&World), check_done: impl Fn(&World)) {
    let probe = world(&format!("fail-{verb}-probe"));
    setup(&probe);
    let before = probe.fake.count();
    let conf = probe.conf(json!({"tables": ["main", 100]}), &["10.0.0.5", "fd00::5"]);
    probe.run(verb, "a2", &conf).unwrap();
    let requests = probe.fake.count() - before;
    assert!(requests > 0);
    for k in 0..requests {
        let w = world(&format!("fail-{verb}-{k}"));
        setup(&w);
        let base = w.fake.count();
        w.fake.0.borrow_mut().fail_at = Some(base + k);
        let conf = w.conf(json!({"tables": ["main", 100]}), &["10.0.0.5", "fd00::5"]);
        let outcome = w.run(verb, "a2", &conf);
        if matches!(w.fake.0.borrow().calls[base + k], Call::FlushConntrack(_)) {
            // The one request whose failure is a warning: the routes stand already.
            outcome.unwrap();
            w.assert_ledger_names_every_route();
            w.fake.0.borrow_mut().fail_at = None;
            continue;
        }
        assert!(
            outcome.is_err(),
            "{verb}: request {k} failed, yet the verb succeeded"
        );
        w.assert_ledger_names_every_route();
        w.fake.0.borrow_mut().fail_at = None;
        w.run(verb, "a2", &conf).unwrap();
        check_done(&w);
        w.assert_ledger_names_every_route();
    }
}

#[test]
fn every_failed_request_of_a_del_is_an_error_and_a_retry_heals() {
    every_failure_is_an_error(
        "DEL",
        |_| {},
        |w| {
            assert_eq!(w.fake.keys().len(), 4);
            assert_eq!(w.ledger().tombstones.len(), 2);
        },
    );
}

#[test]
fn every_failed_request_of_an_add_is_an_error_and_a_retry_heals() {
    every_failure_is_an_error(
        "ADD",
        |w| {
            let conf = w.conf(json!({"tables": ["main", 100]}), &["10.0.0.5", "fd00::5"]);
            w.run("DEL", "a1", &conf).unwrap();
        },
        |w| {
            assert!(w.fake.keys().is_empty());
            assert!(w.ledger().tombstones.is_empty());
        },
    );
}

#[test]
fn a_repeated_del_never_extends_a_hold_nor_starts_a_new_one() {
    let w = world("repeat");
    let conf = w.conf(json!({}), &["10.0.0.5"]);
    w.run("DEL", "a", &conf).unwrap();
    let first = w.ledger().tombstone(ip("10.0.0.5")).unwrap().expires_at_ms;
    w.set_now(1_000_000 + 30_000);
    w.run("DEL", "a", &conf).unwrap();
    assert_eq!(
        w.ledger().tombstone(ip("10.0.0.5")).unwrap().expires_at_ms,
        first
    );
    // The hold ends; containerd's late RemovePodSandbox DEL buries nothing anew.
    w.set_now(first + 1);
    w.run("DEL", "a", &conf).unwrap();
    assert!(w.ledger().tombstone(ip("10.0.0.5")).is_none());
    assert!(w.fake.keys().is_empty());
}

#[test]
fn a_stale_del_does_not_bury_an_address_another_pod_holds() {
    let w = world("stale");
    let conf = w.conf(json!({}), &["10.0.0.5"]);
    w.run("ADD", "a", &conf).unwrap();
    w.run("DEL", "a", &conf).unwrap();
    w.run("ADD", "e", &conf).unwrap();
    assert!(w.fake.keys().is_empty());
    // The runtime retries the old sandbox's DEL with its cached prevResult.
    w.run("DEL", "a", &conf).unwrap();
    assert!(w.fake.keys().is_empty(), "e's address stays reachable");
    w.run("CHECK", "e", &conf).unwrap();
    // GC of a (not in the valid list) does not bury it either; e is valid.
    let mut gc = w.conf(json!({}), &[]);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "e", "ifname": "eth0"}]);
    w.run("GC", "e", &gc).unwrap();
    assert!(w.fake.keys().is_empty());
    assert_eq!(w.ledger().attachments.len(), 1);
}

#[test]
fn narrowing_tables_strands_no_route() {
    let w = world("narrow");
    w.run(
        "DEL",
        "a",
        &w.conf(json!({"tables": ["main", 100]}), &["10.0.0.5"]),
    )
    .unwrap();
    w.run(
        "DEL",
        "a",
        &w.conf(json!({"tables": ["main"]}), &["10.0.0.5"]),
    )
    .unwrap();
    assert_eq!(
        w.ledger().tombstone(ip("10.0.0.5")).unwrap().tables,
        vec![254, 100]
    );
    w.run(
        "ADD",
        "b",
        &w.conf(json!({"tables": ["main"]}), &["10.0.0.5"]),
    )
    .unwrap();
    assert!(w.fake.keys().is_empty(), "table 100's route went too");
}

#[test]
fn a_sweep_ends_only_its_own_directorys_routes() {
    let a = world("dir-a");
    let b_dir = std::env::temp_dir().join(format!("ts-rules-dir-b-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&b_dir);
    a.run("DEL", "a", &a.conf(json!({}), &["10.0.0.5"]))
        .unwrap();
    // A route of our protocol in a table nobody configured, and a forwarding one.
    a.fake.0.borrow_mut().routes.insert((
        ip("10.0.0.9"),
        777,
        a.mark(),
        84,
        RejectKind::Unreachable,
    ));
    let b = StateDir::open(&b_dir).unwrap();
    let report = sweep_all_in(&b, &a.fake, 1_000_000, false).unwrap();
    assert_eq!(report.orphans, 0);
    assert_eq!(report.foreign, 2);
    assert_eq!(
        a.fake.keys().len(),
        2,
        "the other directory's live tombstone stays"
    );
    // Its own sweep keeps its live tombstone and leaves the unconfigured table alone.
    let own = StateDir::open(&a.dir).unwrap();
    let report = sweep_all_in(&own, &a.fake, 1_000_000, false).unwrap();
    assert_eq!((report.orphans, report.live), (0, 1));
    assert_eq!(a.fake.keys().len(), 2);
    // An orphan with the full signature (main table, our metric, no entry) is removed.
    a.fake.0.borrow_mut().routes.insert((
        ip("10.0.0.7"),
        254,
        a.mark(),
        84,
        RejectKind::Unreachable,
    ));
    let report = sweep_all_in(&own, &a.fake, 1_000_000, false).unwrap();
    assert_eq!(report.orphans, 1);
    std::fs::remove_dir_all(&b_dir).unwrap();
}

#[test]
fn del_flushes_conntrack_after_the_tombstone_routes_and_the_neighbours() {
    let w = world("conntrack-order");
    w.run(
        "DEL",
        "a",
        &w.conf(json!({"tables": ["main", 100]}), &["10.0.0.5", "fd00::5"]),
    )
    .unwrap();
    let calls = w.fake.0.borrow().calls.clone();
    let at = |want: fn(&Call) -> bool| calls.iter().position(want).expect("the call was made");
    let last_replace = calls
        .iter()
        .rposition(|c| matches!(c, Call::Replace(_)))
        .unwrap();
    let neighbours = at(|c| matches!(c, Call::Flush(_)));
    let conntrack = at(|c| matches!(c, Call::FlushConntrack(_)));
    assert!(
        last_replace < neighbours && neighbours < conntrack,
        "routes, then neighbours, then conntrack: {calls:?}"
    );
    assert_eq!(
        calls[conntrack],
        Call::FlushConntrack(vec![ip("10.0.0.5"), ip("fd00::5")])
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::FlushConntrack(_)))
            .count(),
        1,
        "one flush for all the addresses"
    );
}

#[test]
fn flush_conntrack_false_leaves_conntrack_alone() {
    let w = world("conntrack-off");
    w.run(
        "DEL",
        "a",
        &w.conf(json!({"flushConntrack": false}), &["10.0.0.5"]),
    )
    .unwrap();
    let calls = w.fake.0.borrow().calls.clone();
    assert!(calls.iter().any(|c| matches!(c, Call::Flush(_))));
    assert!(
        !calls.iter().any(|c| matches!(c, Call::FlushConntrack(_))),
        "{calls:?}"
    );
}

#[test]
fn a_failed_conntrack_flush_does_not_fail_the_del() {
    // The index of the flush in a clean run, then a run where exactly that request fails.
    let probe = world("conntrack-fail-probe");
    probe
        .run("DEL", "a", &probe.conf(json!({}), &["10.0.0.5"]))
        .unwrap();
    let index = probe
        .fake
        .0
        .borrow()
        .calls
        .iter()
        .position(|c| matches!(c, Call::FlushConntrack(_)))
        .unwrap();
    let w = world("conntrack-fail");
    w.fake.0.borrow_mut().fail_at = Some(index);
    w.run("DEL", "a", &w.conf(json!({}), &["10.0.0.5"]))
        .unwrap();
    assert!(matches!(
        w.fake.0.borrow().calls[index],
        Call::FlushConntrack(_)
    ));
    assert_eq!(w.fake.keys().len(), 1, "the tombstone route stands");
    assert!(w.ledger().tombstone(ip("10.0.0.5")).is_some());
}

#[test]
fn add_and_check_never_touch_conntrack() {
    let w = world("conntrack-add");
    let conf = w.conf(json!({}), &["10.0.0.5"]);
    w.run("ADD", "a", &conf).unwrap();
    w.run("CHECK", "a", &conf).unwrap();
    let calls = w.fake.0.borrow().calls.clone();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::FlushConntrack(_))),
        "{calls:?}"
    );
}

/// A 0.3.x runtime (libcni before 0.4.0) sends DEL without `prevResult`: the addresses are
/// the ones the ADD recorded in the ledger; a `prevResult` such a DEL carried anyway is not
/// the spec's, and not read.
#[test]
fn a_0_3_x_del_buries_what_the_add_recorded() {
    for v in ["0.3.0", "0.3.1"] {
        let w = world(&format!("v{v}"));
        let mut add = w.conf(json!({}), &["10.0.0.5", "fd00::5"]);
        add["cniVersion"] = v.into();
        add["prevResult"]["cniVersion"] = v.into();
        w.run("ADD", "a", &add).unwrap();
        assert!(w.fake.keys().is_empty());
        let mut del = w.conf(json!({}), &[]);
        del["cniVersion"] = v.into();
        w.run("DEL", "a", &del).unwrap();
        assert!(w.ledger().tombstone(ip("10.0.0.5")).is_some(), "{v}");
        assert!(w.ledger().tombstone(ip("fd00::5")).is_some(), "{v}");
        assert_eq!(w.fake.keys().len(), 2, "{v}");
        w.assert_ledger_names_every_route();

        // Another attachment's DEL carrying someone else's addresses buries nothing of them.
        let mut stray = w.conf(json!({}), &["10.0.0.9"]);
        stray["cniVersion"] = v.into();
        w.run("DEL", "b", &stray).unwrap();
        assert!(w.ledger().tombstone(ip("10.0.0.9")).is_none(), "{v}");
    }
}

#[test]
fn add_answers_in_the_configs_version() {
    let w = world("answer");
    let prev = |v: &str| {
        json!({
            "cniVersion": v, "custom": 1,
            "interfaces": [{"name": "eth0", "sandbox": "/n"}],
            "ips": [{"address": "10.0.0.5/24", "interface": 0}],
        })
    };
    let add = |conf_v: &str, prev_v: &str| {
        let mut c = w.conf(json!({}), &[]);
        c["cniVersion"] = conf_v.into();
        c["prevResult"] = prev(prev_v);
        w.plugin.add(&w.inv("ADD", "a", &c)).unwrap()
    };
    // The prevResult of the same version: unchanged, every field.
    assert_eq!(add("1.0.0", "1.0.0"), prev("1.0.0"));
    // Another version: converted.
    let out = add("0.3.1", "1.0.0");
    assert_eq!(out["cniVersion"], "0.3.1");
    assert_eq!(out["ips"][0]["version"], "4");
    assert_eq!(out["ips"][0]["interface"], 0);
    assert_eq!(out["custom"], 1);
    let out = add("1.1.0", "0.3.1");
    assert_eq!(out["cniVersion"], "1.1.0");
    assert!(out["ips"][0].get("version").is_none());
    // One that names no version: passed through as it came.
    let mut c = w.conf(json!({}), &[]);
    c["cniVersion"] = "0.3.1".into();
    c["prevResult"] = json!({"ips": [{"address": "10.0.0.5/24"}], "x": 1});
    let out = w.plugin.add(&w.inv("ADD", "a", &c)).unwrap();
    assert_eq!(out, c["prevResult"]);
}
