//! `tombstone-ipam` beside the reference host-local, same machine, same run, interleaved:
//! ADD and DEL on an empty /24 and on a /16 with 60 000 addresses in use (both data
//! directories pre-populated: host-local's files, and our state of format 1 as an in-place
//! upgrade finds it, migrated by an untimed first call), on tmpfs and on a disk-backed
//! directory: wall medians, instructions (callgrind), peak RSS and the ratios; then the
//! worst case of the search (a full /16 whose one free address lies just behind the cursor).
//!
//! `cargo run --release -p tombstone-ipam --example ipam-bench -- [--runs N] [--big-runs N]
//! [--tmpfs DIR] [--disk DIR]` (`HOST_LOCAL` names the reference binary when it is not in a
//! usual place; valgrind must be installed).

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use tombstone_ipam::record::{self, Record};

const BIG_USED: u32 = 60_000;

fn env_of(cmd: &mut Command, verb: &str, cid: &str) {
    cmd.env_clear()
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .env("TOMBSTONE_LOG", "stderr")
        .env("GODEBUG", "asyncpreemptoff=1");
}

/// Runs `cmd` with `input` on stdin; (exit code, stdout, stderr, wall ms).
fn run(mut cmd: Command, input: &str) -> (i32, String, String, f64) {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().expect("wait");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (status.code().unwrap_or(-1), out, err, ms)
}

/// One timed invocation: wall time from spawn to exit.
fn timed(bin: &Path, verb: &str, cid: &str, conf: &str) -> (f64, bool) {
    let mut cmd = Command::new(bin);
    env_of(&mut cmd, verb, cid);
    let (rc, out, _, ms) = run(cmd, conf);
    if rc != 0 {
        eprintln!("{} {verb} {cid} failed: {out}", bin.display());
    }
    (ms, rc == 0)
}

/// Instructions of one invocation, counted by callgrind (deterministic).
fn instructions(bin: &Path, verb: &str, cid: &str, conf: &str) -> u64 {
    let mut cmd = Command::new("valgrind");
    env_of(&mut cmd, verb, cid);
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(bin);
    let (rc, out, err, _) = run(cmd, conf);
    assert_eq!(
        rc,
        0,
        "{} {verb} under valgrind: {out} {err}",
        bin.display()
    );
    err.lines()
        .find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, n)| n.trim().parse().unwrap())
        })
        .expect("callgrind's Collected line")
}

/// Peak RSS (kB) of one invocation, measured by a small launcher: this binary started
/// afresh with `--launch`. A child spawned by std's Command (vfork/posix_spawn) would
/// report its parent's peak RSS at exec (exec saves the old mm's high-water mark into the
/// signal struct, which `ru_maxrss` reports); the launcher forks for real (the `pre_exec`
/// hook makes std fork), so the child's old mm is a copy of the launcher's few anonymous
/// pages only, and wait4 gives the plugin's own high-water mark.
fn peak_rss(bin: &Path, verb: &str, cid: &str, conf: &str) -> i64 {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    env_of(&mut cmd, verb, cid);
    cmd.arg("--launch").arg(bin);
    let (rc, out, err, _) = run(cmd, conf);
    assert_eq!(rc, 0, "{} {verb} launched: {out} {err}", bin.display());
    err.lines()
        .find_map(|l| {
            l.strip_prefix("maxrss-kb ")
                .map(|n| n.trim().parse().unwrap())
        })
        .expect("the launcher's maxrss line")
}

/// The launcher: runs the plugin (inheriting environment and stdin/stdout), reports its
/// `ru_maxrss` on stderr and exits with its code.
// The child is reaped by wait4, which std's wait cannot replace (it drops the rusage).
#[allow(clippy::zombie_processes)]
fn launch(bin: &str) -> ! {
    let mut cmd = Command::new(bin);
    cmd.stderr(Stdio::null());
    // SAFETY: an empty hook; its only effect is that std forks instead of vfork/spawn.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    let child = cmd.spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: plain wait4 on our own child, with valid pointers; std never waits for it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4");
    eprintln!("maxrss-kb {}", ru.ru_maxrss);
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    });
}

fn conf(name: &str, dir: &Path, subnet: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{name}","ipam":{{"type":"x","dataDir":"{}","ranges":[[{{"subnet":"{subnet}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
        dir.display()
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn cid(i: usize) -> String {
    format!("{i:064x}")
}

/// Allocations of `ips` (the last one is the cursor), in host-local's files and in our
/// state file of format 1.
fn populate(hl_dir: &Path, ts_dir: &Path, name: &str, ips: &[Ipv4Addr]) {
    let hl = hl_dir.join(name);
    let ts = ts_dir.join(name);
    std::fs::create_dir_all(&hl).unwrap();
    std::fs::create_dir_all(&ts).unwrap();
    let last = *ips.last().unwrap();
    let mut state = format!("{}\n", record::header(name));
    state += &format!(
        "{},\n",
        Record::Cursor {
            set: 0,
            ip: last.into()
        }
        .to_line()
    );
    for (k, ip) in ips.iter().enumerate() {
        let id = cid(1_000_000 + k);
        std::fs::write(hl.join(ip.to_string()), format!("{id}\r\neth0")).unwrap();
        let r = Record::Alloc {
            ip: (*ip).into(),
            container_id: id.as_str().into(),
            ifname: "eth0".into(),
        };
        state += &format!("{},\n", r.to_line());
    }
    std::fs::write(hl.join("last_reserved_ip.0"), last.to_string()).unwrap();
    state += &format!("{}\n{}\n", record::trailer(ips.len() + 1), record::CLOSING);
    std::fs::write(ts.join("tombstone-ipam.json"), state).unwrap();
}

fn range(from: Ipv4Addr, n: u32) -> Vec<Ipv4Addr> {
    (0..n)
        .map(|k| Ipv4Addr::from(u32::from(from) + k))
        .collect()
}

/// The figures of one scenario, per plugin: wall medians, instructions, peak RSS.
#[derive(Default, Clone, Copy)]
struct Fig {
    add_ms: f64,
    del_ms: f64,
    add_ins: u64,
    del_ins: u64,
    rss_kb: i64,
}

struct Bins {
    hl: PathBuf,
    ts: PathBuf,
}

/// Runs one scenario: `runs` ADD+DEL pairs per plugin, interleaved, then (when `count`)
/// callgrind and launcher runs. Returns (host-local, tombstone-ipam).
fn scenario(
    b: &Bins,
    hc: &str,
    tc: &str,
    runs: usize,
    count: bool,
    failures: &mut usize,
) -> (Fig, Fig) {
    let mut t = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for i in 0..runs {
        let id = cid(i);
        for (p, (bin, c)) in [(&b.hl, hc), (&b.ts, tc)].into_iter().enumerate() {
            let (ms, ok) = timed(bin, "ADD", &id, c);
            t[p][0].push(ms);
            *failures += usize::from(!ok);
        }
        for (p, (bin, c)) in [(&b.hl, hc), (&b.ts, tc)].into_iter().enumerate() {
            let (ms, ok) = timed(bin, "DEL", &id, c);
            t[p][1].push(ms);
            *failures += usize::from(!ok);
        }
    }
    let mut figs = [Fig::default(); 2];
    for (p, (bin, c)) in [(&b.hl, hc), (&b.ts, tc)].into_iter().enumerate() {
        figs[p].add_ms = median(&mut t[p][0]);
        figs[p].del_ms = median(&mut t[p][1]);
        if count {
            let id = cid(900_000);
            figs[p].add_ins = instructions(bin, "ADD", &id, c);
            figs[p].del_ins = instructions(bin, "DEL", &id, c);
            for _ in 0..3 {
                let a = peak_rss(bin, "ADD", &id, c);
                let d = peak_rss(bin, "DEL", &id, c);
                figs[p].rss_kb = figs[p].rss_kb.max(a).max(d);
            }
        }
    }
    (figs[0], figs[1])
}

/// tombstone-ipam alone on the empty /24 and on the /16 with 60 000 in use, interleaved (so
/// that both see the same machine): wall medians (small, big), for the 1.2x target.
fn ours_small_and_big(ts: &Path, small: &str, big: &str, runs: usize) -> (Fig, Fig) {
    let mut t = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for i in 0..runs {
        let id = cid(700_000 + i);
        for (p, c) in [small, big].into_iter().enumerate() {
            let (a, ok) = timed(ts, "ADD", &id, c);
            assert!(ok);
            let (d, ok) = timed(ts, "DEL", &id, c);
            assert!(ok);
            t[p][0].push(a);
            t[p][1].push(d);
        }
    }
    let fig = |v: &mut [Vec<f64>; 2]| Fig {
        add_ms: median(&mut v[0]),
        del_ms: median(&mut v[1]),
        ..Fig::default()
    };
    let [mut s, mut b] = t;
    (fig(&mut s), fig(&mut b))
}

fn fs_type(p: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(p)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--launch") {
        launch(&args[2]);
    }
    let opt = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = opt("--runs").and_then(|v| v.parse().ok()).unwrap_or(100);
    let big_runs: usize = opt("--big-runs").and_then(|v| v.parse().ok()).unwrap_or(20);
    let ts = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("tombstone-ipam"))
        .filter(|p| p.exists())
        .expect("build tombstone-ipam first: cargo build --release -p tombstone-ipam");
    let hl = std::env::var("HOST_LOCAL")
        .ok()
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/lib/cni/host-local", "/opt/cni/bin/host-local"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
        .expect("host-local not found: set HOST_LOCAL");
    let bins = Bins { hl, ts };
    let tag = format!("tombstone-ipam-bench-{}", std::process::id());
    let places = [
        (
            "tmpfs",
            PathBuf::from(opt("--tmpfs").unwrap_or("/dev/shm".into())).join(&tag),
        ),
        (
            "disk",
            PathBuf::from(opt("--disk").unwrap_or("/var/tmp".into())).join(&tag),
        ),
    ];
    let mut failures = 0;
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let ms = |v: f64| format!("{v:.2} ms");
    let ratio = |a: f64, b: f64| format!("{:.2}x", a / b);
    let mut ours: Vec<(String, Fig, Fig)> = Vec::new();
    for (i, (kind, root)) in places.iter().enumerate() {
        std::fs::create_dir_all(root).unwrap();
        let fs = fs_type(root);
        let count = i == 0;
        let (hd, td) = (root.join("host-local"), root.join("tombstone-ipam"));
        eprintln!("{kind} ({fs}): empty /24, {runs} ADD+DEL per plugin, interleaved");
        let (h_small, t_small) = scenario(
            &bins,
            &conf("small", &hd, "10.60.0.0/24"),
            &conf("small", &td, "10.60.0.0/24"),
            runs,
            count,
            &mut failures,
        );
        eprintln!("{kind}: /16 with {BIG_USED} in use: populating, migrating (untimed first call)");
        populate(
            &hd,
            &td,
            "big",
            &range(Ipv4Addr::new(10, 50, 0, 2), BIG_USED),
        );
        let (hc, tc) = (
            conf("big", &hd, "10.50.0.0/16"),
            conf("big", &td, "10.50.0.0/16"),
        );
        let t = Instant::now();
        assert!(timed(&bins.ts, "ADD", &cid(999_999), &tc).1);
        let migration = t.elapsed().as_secs_f64();
        assert!(timed(&bins.ts, "DEL", &cid(999_999), &tc).1);
        eprintln!(
            "{kind}: migration of {BIG_USED} allocations: {migration:.1} s; {big_runs} ADD+DEL per plugin"
        );
        let (h_big, t_big) = scenario(&bins, &hc, &tc, big_runs, count, &mut failures);
        for (what, h, t) in [
            ("empty /24", h_small, t_small),
            ("/16, 60 000 in use", h_big, t_big),
        ] {
            rows.push((
                format!("{kind}: ADD, {what}, median"),
                ms(h.add_ms),
                ms(t.add_ms),
                ratio(h.add_ms, t.add_ms),
            ));
            rows.push((
                format!("{kind}: DEL, {what}, median"),
                ms(h.del_ms),
                ms(t.del_ms),
                ratio(h.del_ms, t.del_ms),
            ));
        }
        if count {
            for (what, h, t) in [
                ("empty /24", h_small, t_small),
                ("/16, 60 000 in use", h_big, t_big),
            ] {
                let n = |v: u64| format!("{v}");
                rows.push((
                    format!("ADD, {what}, instructions"),
                    n(h.add_ins),
                    n(t.add_ins),
                    ratio(h.add_ins as f64, t.add_ins as f64),
                ));
                rows.push((
                    format!("DEL, {what}, instructions"),
                    n(h.del_ins),
                    n(t.del_ins),
                    ratio(h.del_ins as f64, t.del_ins as f64),
                ));
                let mb = |v: i64| format!("{:.1} MB", v as f64 / 1024.0);
                rows.push((
                    format!("peak RSS, {what}"),
                    mb(h.rss_kb),
                    mb(t.rss_kb),
                    ratio(h.rss_kb as f64, t.rss_kb as f64),
                ));
            }
        }
        rows.push((
            format!("{kind}: first call after the upgrade, {BIG_USED} records migrated"),
            "".into(),
            format!("{migration:.1} s"),
            "".into(),
        ));
        eprintln!("{kind}: tombstone-ipam alone, /24 and /16 interleaved, {runs} ADD+DEL each");
        let (s, b) = ours_small_and_big(&bins.ts, &conf("small", &td, "10.60.0.0/24"), &tc, runs);
        let with = |f: Fig, t: Fig| Fig {
            add_ms: t.add_ms,
            del_ms: t.del_ms,
            ..f
        };
        ours.push((format!("{kind} ({fs})"), with(t_small, s), with(t_big, b)));
        if count {
            eprintln!(
                "{kind}: worst case: a full /16 whose free address lies just behind the cursor"
            );
            let mut ips = range(Ipv4Addr::new(10, 70, 0, 2), 65_533);
            let hole = ips.remove(ips.len() - 2);
            populate(&hd, &td, "full", &ips);
            let (hc, tc) = (
                conf("full", &hd, "10.70.0.0/16"),
                conf("full", &td, "10.70.0.0/16"),
            );
            // A DEL of nobody migrates (untimed); then each ADD walks 65 531 held addresses to
            // the hole (the first), or all of them to the hole cooling down (the others).
            assert!(timed(&bins.ts, "DEL", &cid(999_998), &tc).1);
            let mut w = [Vec::new(), Vec::new()];
            let mut ins = [0u64; 2];
            for (p, (bin, c)) in [(&bins.hl, &hc), (&bins.ts, &tc)].into_iter().enumerate() {
                for k in 0..3 {
                    let (t, ok) = timed(bin, "ADD", &cid(800_000 + k), c);
                    assert!(ok);
                    w[p].push(t);
                    assert!(timed(bin, "DEL", &cid(800_000 + k), c).1);
                }
                ins[p] = instructions(bin, "ADD", &cid(800_100), c);
            }
            eprintln!("worst case: the hole is {hole}");
            let (a, b) = (median(&mut w[0]), median(&mut w[1]));
            rows.push((
                "worst case ADD (full /16, hole behind the cursor), median".into(),
                ms(a),
                ms(b),
                ratio(a, b),
            ));
            rows.push((
                "worst case ADD, instructions".into(),
                ins[0].to_string(),
                ins[1].to_string(),
                ratio(ins[0] as f64, ins[1] as f64),
            ));
        }
        let _ = std::fs::remove_dir_all(root);
    }
    println!("| measure | host-local | tombstone-ipam | host-local / tombstone-ipam |");
    println!("|---|---:|---:|---:|");
    for (a, b, c, d) in &rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    println!(
        "\ntombstone-ipam, /16 with 60 000 in use against the empty /24 (target: at most 1.2x):\n"
    );
    println!("| | ADD wall | DEL wall | ADD instructions | DEL instructions | peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, (place, s, b)) in ours.iter().enumerate() {
        let r = |x: f64, y: f64| format!("{:.2}x", x / y);
        let counted = |x: u64, y: u64| {
            if i == 0 {
                r(x as f64, y as f64)
            } else {
                "".into()
            }
        };
        let rss = if i == 0 {
            r(b.rss_kb as f64, s.rss_kb as f64)
        } else {
            "".into()
        };
        println!(
            "| {place} | {} | {} | {} | {} | {rss} |",
            r(b.add_ms, s.add_ms),
            r(b.del_ms, s.del_ms),
            counted(b.add_ins, s.add_ins),
            counted(b.del_ins, s.del_ins),
        );
    }
    println!(
        "\n{runs} ADD+DEL per plugin on the /24, {big_runs} on the /16, per place; the ratios of walls above from {runs} ADD+DEL of tombstone-ipam alone on each, interleaved; instructions and peak RSS on tmpfs (they do not depend on the file system); failures: {failures}"
    );
}
