//! Latency and memory of `tombstone-ipam` beside the reference host-local, same machine,
//! same runs, interleaved: ADD and DEL on an empty /24, ADD into a /16 with 60 000
//! addresses in use (both data directories pre-populated), and peak RSS of each process.
//!
//! `cargo run --release -p tombstone-ipam --example ipam-bench -- [--runs N] [--full-runs N]`
//! (`HOST_LOCAL` names the reference binary when it is not in a usual place).

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use tombstone_ipam::record::{self, Record};

struct Sample {
    ms: f64,
    rss_kb: i64,
    rc: i32,
}

/// One invocation, timed from spawn to exit; peak RSS from the child's own rusage.
// The child is reaped by wait4, which std's wait cannot replace (it drops the rusage).
#[allow(clippy::zombie_processes)]
fn invoke(bin: &Path, verb: &str, cid: &str, conf: &str) -> Sample {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .env("TOMBSTONE_LOG", "stderr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut status = 0;
    // SAFETY: plain wait4 on our own child, with valid pointers; std never waits for it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let rc = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    if rc != 0 {
        eprintln!("{} {verb} {cid} failed: {out}", bin.display());
    }
    Sample {
        ms,
        rss_kb: ru.ru_maxrss,
        rc,
    }
}

fn conf(name: &str, dir: &Path, subnet: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{name}","ipam":{{"type":"x","dataDir":"{}","ranges":[[{{"subnet":"{subnet}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
        dir.display()
    )
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

#[derive(Default)]
struct Stats {
    add: Vec<f64>,
    del: Vec<f64>,
    full_add: Vec<f64>,
    rss_kb: i64,
    failures: usize,
}

impl Stats {
    fn take(&mut self, s: Sample, into: fn(&mut Stats) -> &mut Vec<f64>) {
        self.rss_kb = self.rss_kb.max(s.rss_kb);
        self.failures += usize::from(s.rc != 0);
        into(self).push(s.ms);
    }
}

fn cid(i: usize) -> String {
    format!("{i:064x}")
}

/// 60 000 allocations from 10.50.0.2 on, in both formats.
fn populate(hl_dir: &Path, ts_dir: &Path, name: &str, n: u32) {
    let first = u32::from(Ipv4Addr::new(10, 50, 0, 2));
    let hl = hl_dir.join(name);
    std::fs::create_dir_all(&hl).unwrap();
    let ts = ts_dir.join(name);
    std::fs::create_dir_all(&ts).unwrap();
    let mut state = String::new();
    state.push_str(&record::header(name));
    state.push('\n');
    let last = Ipv4Addr::from(first + n - 1);
    state.push_str(
        &Record::Cursor {
            set: 0,
            ip: last.into(),
        }
        .to_line(),
    );
    state.push_str(",\n");
    for k in 0..n {
        let ip = Ipv4Addr::from(first + k);
        let id = cid(1_000_000 + k as usize);
        std::fs::write(hl.join(ip.to_string()), format!("{id}\r\neth0")).unwrap();
        state.push_str(
            &Record::Alloc {
                ip: ip.into(),
                container_id: id.as_str().into(),
                ifname: "eth0".into(),
            }
            .to_line(),
        );
        state.push_str(",\n");
    }
    std::fs::write(hl.join("last_reserved_ip.0"), last.to_string()).unwrap();
    state.push_str(&record::trailer(n as usize + 1));
    state.push('\n');
    state.push_str(record::CLOSING);
    state.push('\n');
    std::fs::write(ts.join("tombstone-ipam.json"), state).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |k: &str, d: usize| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let runs = opt("--runs", 200);
    let full_runs = opt("--full-runs", 20);
    let ours = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("tombstone-ipam"))
        .filter(|p| p.exists())
        .expect("build tombstone-ipam first: cargo build --release -p tombstone-ipam");
    let theirs = std::env::var("HOST_LOCAL")
        .ok()
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/lib/cni/host-local", "/opt/cni/bin/host-local"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
        .expect("host-local not found: set HOST_LOCAL");
    let root = std::env::temp_dir().join(format!("tombstone-ipam-bench-{}", std::process::id()));
    let (hl_dir, ts_dir) = (root.join("host-local"), root.join("tombstone-ipam"));
    let mut hl = Stats::default();
    let mut ts = Stats::default();

    eprintln!("empty /24: {runs} ADD+DEL per plugin, interleaved");
    let (hc, tc) = (
        conf("small", &hl_dir, "10.60.0.0/24"),
        conf("small", &ts_dir, "10.60.0.0/24"),
    );
    for i in 0..runs {
        let id = cid(i);
        hl.take(invoke(&theirs, "ADD", &id, &hc), |s| &mut s.add);
        ts.take(invoke(&ours, "ADD", &id, &tc), |s| &mut s.add);
        hl.take(invoke(&theirs, "DEL", &id, &hc), |s| &mut s.del);
        ts.take(invoke(&ours, "DEL", &id, &tc), |s| &mut s.del);
    }

    eprintln!("/16 with 60000 allocated: populating both data directories");
    populate(&hl_dir, &ts_dir, "big", 60_000);
    let (hc, tc) = (
        conf("big", &hl_dir, "10.50.0.0/16"),
        conf("big", &ts_dir, "10.50.0.0/16"),
    );
    eprintln!("/16: {full_runs} ADD per plugin (each followed by an untimed DEL)");
    for i in 0..full_runs {
        let id = cid(500_000 + i);
        hl.take(invoke(&theirs, "ADD", &id, &hc), |s| &mut s.full_add);
        ts.take(invoke(&ours, "ADD", &id, &tc), |s| &mut s.full_add);
        invoke(&theirs, "DEL", &id, &hc);
        invoke(&ours, "DEL", &id, &tc);
    }
    let state_bytes = std::fs::metadata(ts_dir.join("big/tombstone-ipam.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&root);

    println!("| measure | host-local | tombstone-ipam | host-local / tombstone-ipam |");
    println!("|---|---:|---:|---:|");
    let row = |what: &str, h: &mut Vec<f64>, t: &mut Vec<f64>, p: f64| {
        let (a, b) = (pct(h, p), pct(t, p));
        println!("| {what} | {a:.2} ms | {b:.2} ms | {:.1}x |", a / b);
    };
    row("ADD, empty /24, median", &mut hl.add, &mut ts.add, 0.5);
    row("ADD, empty /24, p99", &mut hl.add, &mut ts.add, 0.99);
    row("DEL, empty /24, median", &mut hl.del, &mut ts.del, 0.5);
    row("DEL, empty /24, p99", &mut hl.del, &mut ts.del, 0.99);
    row(
        "ADD, /16 with 60 000 in use, median",
        &mut hl.full_add,
        &mut ts.full_add,
        0.5,
    );
    row(
        "ADD, /16 with 60 000 in use, p99",
        &mut hl.full_add,
        &mut ts.full_add,
        0.99,
    );
    println!(
        "| peak RSS (any run) | {:.1} MB | {:.1} MB | {:.1}x |",
        hl.rss_kb as f64 / 1024.0,
        ts.rss_kb as f64 / 1024.0,
        hl.rss_kb as f64 / ts.rss_kb as f64
    );
    println!(
        "\n{runs} runs on the /24, {full_runs} on the /16; state file with 60 000 allocations: {:.1} MB; failures: host-local {}, tombstone-ipam {}",
        state_bytes as f64 / 1e6,
        hl.failures,
        ts.failures
    );
}
