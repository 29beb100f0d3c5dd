//! Benchmark of the `tombstone` binary, whole process as a runtime runs it (root: it works
//! in a throwaway network namespace). Prints a table:
//! DEL, ADD, DEL+ADD latency (median, p99) over N runs each; peak RSS; invocation latency
//! and `tombstone sweep` time with 10 000 live tombstones; a sweep ending 10 000.
//!
//!   cargo build --release -p tombstone && cargo run --release -p tombstone --example tombstone-bench [RUNS]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tombstone::chained::ROUTE_PROTOCOL;
use tombstone::chained::ledger::{Ledger, Tombstone};
use tombstone::chained::store;
use tombstone_kernel::{HostReject, Netlink, RejectKind};

fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/<host tuple>/release/examples/tombstone-bench -> .../release/tombstone
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("tombstone")
}

fn run(bin: &Path, verb: &str, container: &str, conf: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .envs([
            ("CNI_COMMAND", verb),
            ("CNI_CONTAINERID", container),
            ("CNI_NETNS", "/var/run/netns/pod"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("TOMBSTONE_LOG", "stderr"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tombstone");
    child.stdin.take().unwrap().write_all(conf).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{verb} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    took
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = v[((v.len() as f64 * 0.99).ceil() as usize).min(v.len()) - 1];
    (ms(v[v.len() / 2]), ms(p99))
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the benchmark needs root (it works in a network namespace)");
        std::process::exit(2);
    }
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let bin = bin();
    assert!(
        bin.exists(),
        "build first: cargo build --release -p tombstone ({})",
        bin.display()
    );
    let ns = format!("ts-bench-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip netns add");
    let nsfile = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    nix::sched::setns(nsfile.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    let _ = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    let state = std::env::temp_dir().join(format!("{ns}-state"));
    let _ = std::fs::remove_dir_all(&state);
    let conf = |ip: &str| {
        serde_json::to_vec(&json!({
            "cniVersion": "1.1.0", "name": "bench", "type": "tombstone", "stateDir": state,
            "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": format!("{ip}/16")}]}
        }))
        .unwrap()
    };

    // Warm the page cache, then DEL+ADD cycles on distinct addresses.
    for _ in 0..10 {
        run(&bin, "DEL", "warm", &conf("10.20.0.1"));
        run(&bin, "ADD", "warm", &conf("10.20.0.1"));
    }
    let (mut dels, mut adds, mut pairs) = (vec![], vec![], vec![]);
    for i in 0..runs {
        let ip = format!("10.20.{}.{}", i / 250, i % 250 + 2);
        let c = conf(&ip);
        let d = run(&bin, "DEL", &format!("c{i}"), &c);
        let a = run(&bin, "ADD", &format!("n{i}"), &c);
        dels.push(d);
        adds.push(a);
        pairs.push(d + a);
    }
    let rss_kb = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0);

    // 10 000 live tombstones, installed by the library (setup only), then measured through
    // the binary: one more DEL and ADD, and `tombstone sweep` with nothing expired.
    let nl = Netlink::open().unwrap();
    let mut l = Ledger::new("bench");
    let mark = tombstone::chained::dir_mark(&tombstone_cni::state::normalize(&state).unwrap());
    let far = tombstone::chained::now_ms() + 3_600_000;
    for i in 0..10_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a40_0000 + i));
        nl.replace_route(&HostReject {
            ip,
            kind: RejectKind::Unreachable,
            table: 254,
            protocol: ROUTE_PROTOCOL,
            metric: mark,
        })
        .unwrap();
        l.bury(Tombstone {
            ip,
            route_type: RejectKind::Unreachable,
            tables: vec![254],
            route_metric: Some(mark),
            expires_at_ms: far,
            container_id: format!("c{i}"),
            ifname: "eth0".into(),
        });
    }
    let dir = tombstone_cni::state::StateDir::open(&state).unwrap();
    store::save(&dir, &l).unwrap();
    let (mut big_del, mut big_add) = (vec![], vec![]);
    for i in 0..20 {
        let c = conf(&format!("10.30.0.{}", i + 1));
        big_del.push(run(&bin, "DEL", &format!("b{i}"), &c));
        big_add.push(run(&bin, "ADD", &format!("b{i}"), &c));
    }
    let sweep = |bin: &Path| {
        let start = Instant::now();
        let out = Command::new(bin)
            .args(["sweep", "--state-dir", state.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        (
            start.elapsed(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    let (live_sweep, live_report) = sweep(&bin);
    // Now let all 10 000 expire and time the sweep that ends them.
    let mut l = store::load(&dir, "bench").unwrap().into_ledger();
    for t in &mut l.tombstones {
        t.expires_at_ms = 0;
    }
    store::save(&dir, &l).unwrap();
    let (end_sweep, end_report) = sweep(&bin);
    let left = nl
        .dump_routes(false, None, Some(ROUTE_PROTOCOL))
        .unwrap()
        .len();

    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&state);

    let (dm, dp) = stats(dels);
    let (am, ap) = stats(adds);
    let (pm, pp) = stats(pairs);
    let (bdm, bdp) = stats(big_del);
    let (bam, bap) = stats(big_add);
    println!(
        "tombstone benchmark: {runs} runs each, whole process (spawn to exit), {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("{:<52} {:>10} {:>10}", "what", "median ms", "p99 ms");
    println!(
        "{:<52} {:>10.2} {:>10.2}",
        "DEL (1 address, empty ledger)", dm, dp
    );
    println!(
        "{:<52} {:>10.2} {:>10.2}",
        "ADD (1 address, lifts its tombstone)", am, ap
    );
    println!("{:<52} {:>10.2} {:>10.2}", "DEL + ADD", pm, pp);
    println!(
        "{:<52} {:>10.2} {:>10.2}",
        "DEL with 10 000 live tombstones", bdm, bdp
    );
    println!(
        "{:<52} {:>10.2} {:>10.2}",
        "ADD with 10 000 live tombstones", bam, bap
    );
    println!(
        "{:<52} {:>10.2} {:>10}",
        "`tombstone sweep`, 10 000 live, none expired",
        live_sweep.as_secs_f64() * 1000.0,
        "-"
    );
    println!(
        "{:<52} {:>10.2} {:>10}",
        "`tombstone sweep` ending 10 000 expired",
        end_sweep.as_secs_f64() * 1000.0,
        "-"
    );
    println!(
        "peak RSS of any plugin process: {:.1} MB",
        rss_kb as f64 / 1024.0
    );
    println!("sweeps: [{live_report}] then [{end_report}]; routes left after: {left}");
}
