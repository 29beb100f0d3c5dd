//! Benchmark of the `tombstone` binary, whole processes as a runtime starts them (root: it
//! works in a throwaway network namespace, its state directory on a tmpfs of its own, as
//! the default `/run/cni/tombstone` is on a node). For an empty
//! ledger and for 10 000 and 50 000 live tombstones (64-character container IDs, as
//! runtimes use), it prints per DEL and per ADD: user-space instructions (callgrind, one
//! run: deterministic), the wall median over RUNS runs (the sizes' runs interleaved), and the peak RSS, each with its
//! ratio to the empty ledger's; then `tombstone sweep` ending 10 000 tombstones beside
//! `ip -batch` deleting the same routes, the medians of `SWEEP_ROUNDS` (default 7) rounds
//! (`tombstone-bench sweep-only` prints these rows alone).
//!
//!   cargo build --release -p tombstone --bins --examples
//!   target/<host tuple>/release/examples/tombstone-bench [RUNS]
//!
//! `tombstone-bench conntrack [RUNS]` instead prints DEL with `flushConntrack` on and off,
//! on an empty conntrack table and on one of 100 000 entries (10 of them the released
//! address's), and the flush's own ways at that size (the kernel's filtered DELETE,
//! filtered dumps, a full dump matched in user space), timed in process.
//!
//! Peak RSS is measured from a small launcher (this program re-executed as `launch`, which
//! forks the plugin and reads its rusage): a child that the benchmark itself spawned would
//! report the benchmark's own peak, as exec keeps the high-water mark of the memory it
//! replaces, and Rust's `Command` spawns with vfork, sharing the parent's memory.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tombstone::chained::ROUTE_PROTOCOL;
use tombstone::chained::ledger::Tombstone;
use tombstone::chained::store::{self, Scope};
use tombstone_cni::Attachment;
use tombstone_cni::state::StateDir;
use tombstone_kernel::conntrack::{PLACES, Tuple};
use tombstone_kernel::{Conntrack, HostReject, Netlink, RejectKind};

fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    // target/<host tuple>/release/examples/tombstone-bench -> .../release/tombstone
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("tombstone")
}

/// A 64-character container ID, as runtimes make them.
fn cid(tag: &str, i: usize) -> String {
    format!("{tag}{i:0>63}")[..64].to_string()
}

#[derive(Clone)]
struct Bench {
    bin: PathBuf,
    state: PathBuf,
    flush_conntrack: bool,
}

impl Bench {
    fn conf(&self, ip: IpAddr) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "cniVersion": "1.1.0", "name": "bench", "type": "tombstone",
            "stateDir": self.state, "sweeper": false, "flushConntrack": self.flush_conntrack,
            "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": format!("{ip}/8")}]}
        }))
        .unwrap()
    }

    fn env(verb: &str, container: &str) -> [(&'static str, String); 6] {
        [
            ("CNI_COMMAND", verb.into()),
            ("CNI_CONTAINERID", container.into()),
            ("CNI_NETNS", "/var/run/netns/pod".into()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_PATH", "/opt/cni/bin".into()),
            ("TOMBSTONE_LOG", "stderr".into()),
        ]
    }

    /// Runs one invocation through `prefix` (nothing, valgrind, or the launcher); returns
    /// its wall time and stderr.
    fn run(&self, prefix: &[&str], verb: &str, container: &str, ip: IpAddr) -> (Duration, String) {
        let (program, args): (&str, Vec<&str>) = match prefix.split_first() {
            Some((p, rest)) => (
                p,
                rest.iter()
                    .copied()
                    .chain([self.bin.to_str().unwrap()])
                    .collect(),
            ),
            None => (self.bin.to_str().unwrap(), vec![]),
        };
        let start = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(Self::env(verb, container))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tombstone");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&self.conf(ip))
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let took = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "{verb} failed: {} {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        (took, stderr)
    }

    /// Instructions of one invocation, counted by callgrind.
    fn instructions(&self, verb: &str, container: &str, ip: IpAddr) -> u64 {
        let out = std::env::temp_dir().join(format!("tombstone-bench-{}.cg", std::process::id()));
        let file = format!("--callgrind-out-file={}", out.display());
        let (_, stderr) = self.run(
            &["valgrind", "--tool=callgrind", &file],
            verb,
            container,
            ip,
        );
        let _ = std::fs::remove_file(&out);
        collected(&stderr).unwrap_or_else(|| panic!("no callgrind total in {stderr}"))
    }

    /// Peak RSS (kB) of one invocation, through the launcher.
    fn rss_kb(&self, verb: &str, container: &str, ip: IpAddr) -> u64 {
        let me = std::env::current_exe().unwrap();
        let (_, stderr) = self.run(&[me.to_str().unwrap(), "launch"], verb, container, ip);
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("launcher: maxrss_kb "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no RSS from the launcher: {stderr}"))
    }
}

/// callgrind's "Collected : N" total.
fn collected(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        l.split_once("Collected :")
            .and_then(|(_, n)| n.trim().parse().ok())
    })
}

/// `launch <program> [args]`: forks (a real fork, from this small process), runs the
/// program with this process's stdio and environment, and prints its peak RSS on stderr.
fn launch(args: &[String]) -> ! {
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    // SAFETY: an empty pre-exec hook only makes std fork and exec instead of using vfork
    // (posix_spawn); it runs nothing in the child.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    let status = cmd.status().expect("launch");
    let rss = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0);
    eprintln!("launcher: maxrss_kb {rss}");
    std::process::exit(status.code().unwrap_or(1));
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn route(ip: IpAddr, mark: u32) -> HostReject {
    HostReject {
        ip,
        kind: RejectKind::Unreachable,
        table: 254,
        protocol: ROUTE_PROTOCOL,
        metric: mark,
    }
}

/// Installs routes in batches of 1 000 (setup only; every ack checked).
fn install(nl: &Netlink, routes: &[HostReject]) {
    for chunk in routes.chunks(1000) {
        for r in nl.replace_routes(chunk) {
            r.expect("install a setup route");
        }
    }
}

/// Buries `ips` as released by attachments of their own, the way DELs leave them: a
/// record, a holder, a tombstone each.
fn bury(dir: &StateDir, ips: &[IpAddr], tag: &str, mark: u32, expires_at_ms: u64) {
    let (mut l, mut on_disk) = store::load(dir, "bench", Scope::All).unwrap().logged();
    for (i, &ip) in ips.iter().enumerate() {
        let a = Attachment {
            container_id: cid(tag, i),
            ifname: "eth0".into(),
        };
        l.record_attachment(&a, &[ip]);
        l.release(&a, &[ip], tombstone::chained::now_ms());
        l.bury(Tombstone {
            ip,
            route_type: RejectKind::Unreachable,
            tables: vec![254],
            route_metric: Some(mark),
            expires_at_ms,
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
        });
    }
    store::save(dir, &mut on_disk, &mut l).unwrap();
}

fn v4(base: u32, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(base + i as u32))
}

struct Row {
    live: usize,
    instr: [u64; 2],
    wall: [f64; 2],
    rss: [u64; 2],
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("launch") {
        launch(&args[1..]);
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the benchmark needs root (it works in a network namespace)");
        std::process::exit(2);
    }
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    // `conntrack [RUNS]`: the flushConntrack figures (see the top).
    // `sweep-only`: just the sweep comparison (for profiling it).
    let sweep_only = args.first().map(String::as_str) == Some("sweep-only");
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
    let mnt = std::env::temp_dir().join(format!("{ns}-tmpfs"));
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=512m,mode=0700",
            "tombstone-bench",
        ])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(mounted, "mount a tmpfs for the state");
    let state = mnt.join("state");
    let b = Bench {
        bin: bin.clone(),
        state: state.clone(),
        flush_conntrack: true,
    };
    if args.first().map(String::as_str) == Some("conntrack") {
        let runs = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
        conntrack_bench(b, runs);
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        let _ = std::fs::remove_dir_all(&state);
        let _ = Command::new("umount").arg(&mnt).status();
        let _ = std::fs::remove_dir(&mnt);
        return;
    }
    let dir = StateDir::open(&state).unwrap();
    let mark = tombstone::chained::dir_mark(dir.path());
    let nl = Netlink::open().unwrap();
    let far = tombstone::chained::now_ms() + 3_600_000;

    // Warm the page cache.
    for i in 0..10 {
        let ip = v4(0x0b00_0000, i);
        b.run(&[], "DEL", &cid("w", i), ip);
        b.run(&[], "ADD", &cid("x", i), ip);
    }
    // Each size in a state directory of its own, filled first; then, round after round,
    // one DEL of a fresh address (a new tombstone) and one ADD of another attachment given
    // it (lifting it) at each size in turn, so the sizes stay put and share the machine's
    // moods alike. The kernel holds every size's routes throughout (60 000): the sizes
    // differ in the ledger alone (a route lookup does not slow with the table's size).
    let sizes: &[(usize, u32)] = if sweep_only {
        &[]
    } else {
        &[
            (0, 0x0a00_0000),
            (10_000, 0x0a10_0000),
            (50_000, 0x0a20_0000),
        ]
    };
    let benches: Vec<Bench> = sizes
        .iter()
        .map(|&(size, base)| {
            let b = Bench {
                state: mnt.join(format!("state-{size}")),
                ..b.clone()
            };
            let dir = StateDir::open(&b.state).unwrap();
            let mark = tombstone::chained::dir_mark(dir.path());
            let more: Vec<IpAddr> = (0..size).map(|i| v4(base, i)).collect();
            install(
                &nl,
                &more.iter().map(|&ip| route(ip, mark)).collect::<Vec<_>>(),
            );
            bury(&dir, &more, &format!("l{size}-"), mark, far);
            b
        })
        .collect();
    let mut next = 0usize;
    let mut event = |b: &Bench, verb_pair: &mut dyn FnMut(&Bench, IpAddr, &str, &str)| {
        let ip = v4(0x0c00_0000, next);
        let (d, a) = (cid("d", next), cid("a", next));
        next += 1;
        verb_pair(b, ip, &d, &a);
    };
    let mut walls = vec![[vec![], vec![]]; benches.len()];
    for _ in 0..runs {
        for (b, w) in benches.iter().zip(&mut walls) {
            event(b, &mut |b, ip, d, a| {
                w[0].push(b.run(&[], "DEL", d, ip).0);
                w[1].push(b.run(&[], "ADD", a, ip).0);
            });
        }
    }
    let mut rows = Vec::new();
    for ((b, [wd, wa]), &(live, _)) in benches.iter().zip(walls).zip(sizes) {
        let mut instr = [0u64; 2];
        event(b, &mut |b, ip, d, a| {
            instr[0] = b.instructions("DEL", d, ip);
            instr[1] = b.instructions("ADD", a, ip);
        });
        let mut rss = [0u64; 2];
        for _ in 0..3 {
            event(b, &mut |b, ip, d, a| {
                rss[0] = rss[0].max(b.rss_kb("DEL", d, ip));
                rss[1] = rss[1].max(b.rss_kb("ADD", a, ip));
            });
        }
        rows.push(Row {
            live,
            instr,
            wall: [median(wd), median(wa)],
            rss,
        });
        let _ = std::fs::remove_dir_all(&b.state);
    }
    for r in nl.dump_routes(false, None, Some(ROUTE_PROTOCOL)).unwrap() {
        if let Some(h) = r.as_host_reject() {
            let _ = nl.delete_route(&h);
        }
    }

    // The launcher's own floor: its fork of itself before the exec.
    let floor = {
        let me = std::env::current_exe().unwrap();
        let out = Command::new(&me)
            .args(["launch", "/bin/true"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find_map(|l| l.strip_prefix("launcher: maxrss_kb "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };

    // Sweeps: 10 000 expired tombstones ended by `tombstone sweep`, then the same routes
    // deleted by `ip -batch` (the routes alone, no state), SWEEP_ROUNDS times (the machine
    // is shared: the medians are compared).
    let rounds: usize = std::env::var("SWEEP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let (mut lives, mut sweeps, mut batches) = (vec![], vec![], vec![]);
    let (mut report, mut left) = (String::new(), 0);
    for _ in 0..rounds {
        let r = sweep_round(&dir, &nl, &bin, &ns, mark, far);
        lives.push(r.live);
        sweeps.push(r.sweep);
        batches.push(r.batch);
        (report, left) = (r.report, r.left);
    }
    let ratios: Vec<String> = sweeps
        .iter()
        .zip(&batches)
        .map(|(s, b)| format!("{:.2}", s.as_secs_f64() / b.as_secs_f64()))
        .collect();
    let (live_ms, sweep_ms, batch_ms) = (median(lives), median(sweeps), median(batches));
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&state);
    let _ = Command::new("umount").arg(&mnt).status();
    let _ = std::fs::remove_dir(&mnt);

    println!(
        "tombstone benchmark: whole processes; wall medians of {runs} runs, {} cores; \
         instructions by callgrind; peak RSS through a forking launcher (floor {:.1} MB)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        floor as f64 / 1024.0
    );
    println!(
        "| live tombstones | verb | instructions | ratio | wall median ms | ratio | peak RSS MB | ratio |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let base = &rows[0];
        for (i, verb) in ["DEL", "ADD"].iter().enumerate() {
            println!(
                "| {} | {verb} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} |",
                r.live,
                r.instr[i],
                r.instr[i] as f64 / base.instr[i] as f64,
                r.wall[i],
                r.wall[i] / base.wall[i],
                r.rss[i] as f64 / 1024.0,
                r.rss[i] as f64 / base.rss[i] as f64
            );
        }
    }
    println!();
    println!("| ending 10 000 expired tombstones (medians of {rounds} rounds) | wall ms | ratio |");
    println!("|---|---:|---:|");
    println!("| `ip -batch` deleting the routes | {batch_ms:.1} | 1.00 |");
    println!(
        "| `tombstone sweep` (routes and entries) | {sweep_ms:.1} | {:.2} |",
        sweep_ms / batch_ms
    );
    println!(
        "| `tombstone sweep`, 10 000 live, none expired, every record read | {live_ms:.1} | {:.2} |",
        live_ms / batch_ms
    );
    println!("sweep / ip -batch in each round: {}", ratios.join(", "));
    println!("sweep said: [{report}]; routes left after both: {left}");
}

/// One round of the sweep comparison's timings, and what the sweep said.
struct SweepRound {
    live: Duration,
    sweep: Duration,
    batch: Duration,
    report: String,
    left: usize,
}

/// Buries 10 000 addresses (routes and entries), times a sweep that ends none of them (the
/// first of its period: it also reads every attachment record, to drop long-released ones),
/// ends their holds and times the sweep that ends them, then installs the routes again and
/// times `ip -batch` deleting them.
fn sweep_round(
    dir: &StateDir,
    nl: &Netlink,
    bin: &Path,
    ns: &str,
    mark: u32,
    far: u64,
) -> SweepRound {
    let state = dir.path();
    let _ = std::fs::remove_dir_all(state);
    let dir = StateDir::open(state).unwrap();
    for r in nl.dump_routes(false, None, Some(ROUTE_PROTOCOL)).unwrap() {
        if let Some(h) = r.as_host_reject() {
            let _ = nl.delete_route(&h);
        }
    }
    let doomed: Vec<IpAddr> = (0..10_000).map(|i| v4(0x0d00_0000, i)).collect();
    let routes: Vec<HostReject> = doomed.iter().map(|&ip| route(ip, mark)).collect();
    install(nl, &routes);
    bury(&dir, &doomed, "s", mark, far);
    let start = Instant::now();
    let out = Command::new(bin)
        .args(["sweep", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    let live = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut l, mut on_disk) = store::load(&dir, "bench", Scope::All).unwrap().logged();
    for t in &mut l.tombstones {
        t.expires_at_ms = 1;
    }
    store::save(&dir, &mut on_disk, &mut l).unwrap();
    let start = Instant::now();
    let mut sweep = Command::new(bin);
    if let Ok(wrapper) = std::env::var("SWEEP_WRAPPER") {
        sweep = Command::new(wrapper);
        sweep.arg(bin);
    }
    let out = sweep
        .args(["sweep", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    let sweep = start.elapsed();
    let report = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && report.contains("ended 10000"),
        "{report}"
    );
    install(nl, &routes);
    let batch_file = std::env::temp_dir().join(format!("{ns}.batch"));
    let text: String = doomed
        .iter()
        .map(|ip| format!("route del unreachable {ip}/32 proto {ROUTE_PROTOCOL} metric {mark}\n"))
        .collect();
    std::fs::write(&batch_file, text).unwrap();
    let start = Instant::now();
    let ok = Command::new("ip")
        .arg("-batch")
        .arg(&batch_file)
        .status()
        .unwrap()
        .success();
    let batch = start.elapsed();
    assert!(ok, "ip -batch");
    let left = nl
        .dump_routes(false, None, Some(ROUTE_PROTOCOL))
        .unwrap()
        .len();
    let _ = std::fs::remove_file(&batch_file);
    let _ = std::fs::remove_dir_all(state);
    SweepRound {
        live,
        sweep,
        batch,
        report,
        left,
    }
}

/// Unrelated entries the conntrack figures are taken beside.
const CT_FILL: usize = 100_000;
/// Entries of the released address at each DEL: its own flows, and flows to a Service
/// DNAT-ed to it.
const CT_OWN: usize = 10;

fn udp(src: IpAddr, dst: IpAddr, sport: u16) -> Tuple {
    Tuple {
        src,
        dst,
        proto: 17,
        sport,
        dport: 53,
    }
}

/// Creates `tuples`, asserting the kernel took each.
fn ct_create(ct: &Conntrack, tuples: &[Tuple]) {
    for chunk in tuples.chunks(4096) {
        let answers = ct.create(chunk, 3600).expect("create conntrack entries");
        assert!(
            answers.iter().all(|&a| a == 0),
            "create refused: {answers:?}"
        );
    }
}

/// The entries that name `ip` anywhere (a filtered dump per place).
fn ct_of(ct: &Conntrack, ip: IpAddr) -> usize {
    PLACES
        .iter()
        .map(|&p| ct.dump(false, Some((p, ip))).expect("dump").len())
        .sum()
}

/// The `conntrack` mode: DEL's cost with `flushConntrack` on and off, at 0 and 100 000
/// entries, then the flush's ways timed in process at 100 000.
fn conntrack_bench(mut b: Bench, runs: usize) {
    let ct = Conntrack::open().expect("open ctnetlink");
    let mut next = 0usize;
    // Half the released address's entries are its own flows, half a Service's DNAT-ed to
    // it (created as flows to it: their reply source is the address either way).
    let own = |ip: IpAddr, n: usize| -> Vec<Tuple> {
        (0..CT_OWN)
            .map(|i| {
                let peer = v4(0x0e00_0000, n * CT_OWN + i);
                if i % 2 == 0 {
                    udp(ip, peer, 1000 + i as u16)
                } else {
                    udp(peer, ip, 1000 + i as u16)
                }
            })
            .collect()
    };
    let mut rows = Vec::new();
    for fill in [0, CT_FILL] {
        if fill > 0 {
            let start = Instant::now();
            let tuples: Vec<Tuple> = (0..fill)
                .map(|i| {
                    udp(
                        v4(0x0f00_0000, i / 50_000),
                        v4(0x1000_0000, i % 50_000),
                        2000 + (i / 50_000) as u16,
                    )
                })
                .collect();
            ct_create(&ct, &tuples);
            eprintln!("filled {fill} entries in {:?}", start.elapsed());
        }
        for flush in [true, false] {
            b.flush_conntrack = flush;
            let mut walls = Vec::new();
            let mut instr = 0;
            for r in 0..=runs {
                let ip = v4(0x0c00_0000, next);
                let (d, a) = (cid("d", next), cid("a", next));
                ct_create(&ct, &own(ip, next));
                next += 1;
                if r == runs {
                    instr = b.instructions("DEL", &d, ip);
                } else {
                    walls.push(b.run(&[], "DEL", &d, ip).0);
                }
                let left = ct_of(&ct, ip);
                if flush {
                    assert_eq!(left, 0, "entries of {ip} left after DEL");
                } else {
                    assert!(left >= CT_OWN, "flushConntrack false flushed {ip}");
                    ct.flush(&[ip]).expect("clean up");
                }
                b.run(&[], "ADD", &a, ip);
            }
            rows.push((fill, flush, instr, median(walls)));
        }
    }
    let total = ct.dump(false, None).expect("dump").len();
    assert_eq!(total, CT_FILL, "the unrelated entries all stayed");

    // The flush's ways at 100 000 entries, one address, in process.
    let mut ways: Vec<(&str, f64)> = Vec::new();
    let mut time = |name: &'static str, f: &mut dyn FnMut(IpAddr)| {
        let mut t = Vec::new();
        for _ in 0..runs {
            let ip = v4(0x0c00_0000, next);
            ct_create(&ct, &own(ip, next));
            next += 1;
            let start = Instant::now();
            f(ip);
            t.push(start.elapsed());
            assert_eq!(ct_of(&ct, ip), 0, "{name} left entries of {ip}");
        }
        ways.push((name, median(t)));
    };
    time("3 DELETEs with CTA_FILTER (Linux 6.12+)", &mut |ip| {
        assert!(ct.flush_by_filter(&[ip]).unwrap())
    });
    time(
        "3 dumps with CTA_FILTER, then deletes (the plugin's way, Linux 5.8+)",
        &mut |ip| assert_eq!(ct.flush_by_dump(&[ip], true).unwrap(), CT_OWN),
    );
    time(
        "1 dump of every IPv4 entry, matched in user space, then deletes",
        &mut |ip| assert_eq!(ct.flush_by_dump(&[ip], false).unwrap(), CT_OWN),
    );
    // An IPv6 address's way (the kernel's IPv6 filter is unusable): one dump of the IPv6
    // entries, matched in user space; the 100 000 IPv4 entries are walked, not sent.
    let mut t = Vec::new();
    for i in 0..runs {
        let ip6 = IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i as u16));
        let peers: Vec<Tuple> = (0..CT_OWN)
            .map(|k| {
                let peer = IpAddr::V6(std::net::Ipv6Addr::new(
                    0xfd00, 0, 0, 0, 0, 2, i as u16, k as u16,
                ));
                udp(ip6, peer, 1000 + k as u16)
            })
            .collect();
        ct_create(&ct, &peers);
        let start = Instant::now();
        let n = ct.flush(&[ip6]).unwrap();
        t.push(start.elapsed());
        assert_eq!(n, CT_OWN, "the IPv6 address's entries");
    }
    ways.push((
        "1 dump of the IPv6 entries, matched in user space, then deletes (an IPv6 address's way)",
        median(t),
    ));

    println!(
        "tombstone conntrack benchmark: whole processes; wall medians of {runs} runs, {} cores; \
         instructions by callgrind (user space only: the kernel's walk of the table is not counted); \
         {CT_OWN} entries of the released address at each DEL",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("| conntrack entries | flushConntrack | DEL instructions | DEL wall median ms |");
    println!("|---:|---|---:|---:|");
    for (fill, flush, instr, wall) in &rows {
        println!("| {} | {flush} | {instr} | {wall:.2} |", fill + CT_OWN);
    }
    println!();
    println!("| flushing one IPv4 address among {CT_FILL} entries, in process | median ms |");
    println!("|---|---:|");
    for (name, ms) in ways {
        println!("| {name} | {ms:.2} |");
    }
}
