//! The built `tombstone-install agent`, whole process, on a temporary node root: it waits for
//! the primary's configuration, inserts and re-inserts the entry within a second as the
//! primary writes and replaces its file, survives malformed, regenerated and linked files,
//! stops cleanly on SIGTERM, sweeps, and serves metrics that `promtool` accepts and a real
//! Prometheus server scrapes.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PODS, free_port, replace};
use tombstone::chained::ledger::Tombstone;
use tombstone::chained::store::{self, Scope};
use tombstone_cni::state::StateDir;

const INSTALLER: &str = env!("CARGO_BIN_EXE_tombstone-install");

/// The real plugin binaries, built beside the installer (built here when they are not).
fn plugins_dir() -> PathBuf {
    let dir = Path::new(INSTALLER).parent().unwrap().to_path_buf();
    if !dir.join("tombstone").is_file() || !dir.join("tombstone-ipam").is_file() {
        let status = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args([
                "build",
                "--release",
                "-p",
                "tombstone",
                "-p",
                "tombstone-ipam",
                "--bins",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "cannot build the plugins");
    }
    dir
}

/// A node root and the agent running on it; the agent is killed when dropped.
struct Node {
    root: PathBuf,
    state: PathBuf,
    port: u16,
    agent: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl Node {
    fn new(tag: &str) -> Node {
        let root = std::env::temp_dir().join(format!("ts-agent-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("etc/cni/net.d")).unwrap();
        Node {
            state: root.join("run/cni/tombstone"),
            root,
            port: free_port(),
            agent: None,
        }
    }

    fn conf_path(&self, name: &str) -> PathBuf {
        self.root.join("etc/cni/net.d").join(name)
    }

    fn start(&mut self, extra: &[&str]) {
        let child = Command::new(INSTALLER)
            .arg("agent")
            .arg("--root")
            .arg(&self.root)
            .arg("--from")
            .arg(plugins_dir())
            .arg("--plugin-state-dir")
            .arg(&self.state)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(extra)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.agent = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_get("/healthz").is_none() {
            assert!(
                Instant::now() < deadline,
                "the agent never answered /healthz"
            );
            self.assert_running();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_running(&mut self) {
        let c = self.agent.as_mut().expect("started");
        assert!(c.try_wait().unwrap().is_none(), "the agent exited");
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        common::try_get(self.port, path)
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed"))
    }

    /// Waits up to `within` for `ok`; panics with `what` otherwise. Returns how long it took.
    fn until(
        &mut self,
        within: Duration,
        what: &str,
        mut ok: impl FnMut(&Node) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if ok(self) {
                return started.elapsed();
            }
            self.assert_running();
            assert!(started.elapsed() < within, "not within {within:?}: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn has_entry(&self, name: &str) -> bool {
        common::has_entry(&self.conf_path(name))
    }

    fn metric(&self, line_start: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// SIGTERM; the agent's exit status.
    fn terminate(&mut self) -> i32 {
        let c = self.agent.take().expect("started");
        let pid = c.id().to_string();
        let mut c = c;
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code().expect("exited, not killed by a signal");
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A live tombstone written as the plugin writes it (its locks, its store).
    fn bury(&self, network: &str, ip: &str, hold: Duration) {
        let dir = StateDir::open(&self.state).unwrap();
        let _all = dir.lock_shared().unwrap();
        let _net = dir.lock(&store::stem(network)).unwrap();
        let loaded = store::load(&dir, network, Scope::All).unwrap();
        let (mut after, mut before) = (loaded.ledger, loaded.on_disk);
        let now = tombstone::chained::now_ms();
        after.bury(Tombstone {
            ip: ip.parse::<IpAddr>().unwrap(),
            route_type: tombstone_kernel::RejectKind::parse("unreachable").unwrap(),
            tables: vec![254],
            route_metric: Some(tombstone::chained::dir_mark(&self.state)),
            expires_at_ms: now + hold.as_millis() as u64,
            container_id: "c0ffee".into(),
            ifname: "eth0".into(),
        });
        store::save(&dir, &mut before, &mut after).unwrap();
    }
}

#[test]
fn waits_for_the_primary_then_inserts_and_repairs_within_a_second() {
    let mut n = Node::new("repair");
    n.start(&[]);
    // Empty conf dir: installed, but not ready, and saying why.
    n.until(Duration::from_secs(5), "installed, waiting", |n| {
        let (code, body) = n.get("/readyz");
        code == 503 && body.contains("waiting for the primary CNI")
    });
    assert!(n.root.join("opt/cni/bin/tombstone").is_file());
    assert_eq!(n.metric("tombstone_agent_ready"), Some(0.0));

    // The primary writes its conflist.
    fs::write(n.conf_path("10-pods.conflist"), PODS).unwrap();
    let took = n.until(Duration::from_secs(1), "entry inserted", |n| {
        n.has_entry("10-pods.conflist")
    });
    eprintln!("inserted after {took:?}");
    n.until(Duration::from_secs(1), "ready", |n| {
        n.get("/readyz").0 == 200
    });
    let text = fs::read_to_string(n.conf_path("10-pods.conflist")).unwrap();
    assert!(
        text.contains(&format!("\"stateDir\": \"{}\"", n.state.display())),
        "{text}"
    );
    assert!(text.contains("\"sweeper\": false"), "{text}");
    assert!(
        text.find("tombstone").unwrap() < text.find("portmap").unwrap(),
        "{text}"
    );

    // The primary rewrites it in place, then replaces it by a rename: repaired each time.
    fs::write(
        n.conf_path("10-pods.conflist"),
        PODS.replace("eth0", "eth1"),
    )
    .unwrap();
    let took = n.until(Duration::from_secs(1), "re-inserted after a rewrite", |n| {
        fs::read_to_string(n.conf_path("10-pods.conflist"))
            .unwrap()
            .contains("eth1")
            && n.has_entry("10-pods.conflist")
    });
    eprintln!("re-inserted after a rewrite in {took:?}");
    replace(
        &n.conf_path("10-pods.conflist"),
        &PODS.replace("eth0", "eth2"),
    );
    let took = n.until(
        Duration::from_secs(1),
        "re-inserted after a rename over",
        |n| {
            fs::read_to_string(n.conf_path("10-pods.conflist"))
                .unwrap()
                .contains("eth2")
                && n.has_entry("10-pods.conflist")
        },
    );
    eprintln!("re-inserted after a rename over in {took:?}");
    n.until(Duration::from_secs(2), "reinserts counted", |n| {
        n.metric("tombstone_agent_reinserts_total").unwrap_or(0.0) >= 3.0
    });
    assert_eq!(n.metric("tombstone_agent_installs_total"), Some(1.0));
    assert_eq!(n.metric("tombstone_agent_ready"), Some(1.0));

    // SIGTERM: exit 0, everything left in place for the next pod.
    assert_eq!(n.terminate(), 0);
    assert!(n.has_entry("10-pods.conflist"));
    assert!(n.root.join("opt/cni/bin/tombstone").is_file());
}

#[test]
fn bad_files_make_it_not_ready_never_exit() {
    let mut n = Node::new("bad");
    fs::write(n.conf_path("10-pods.conflist"), PODS).unwrap();
    n.start(&[]);
    n.until(Duration::from_secs(5), "ready", |n| {
        n.get("/readyz").0 == 200
    });

    // A malformed file: not ready, naming it; the loaded file keeps its entry.
    fs::write(n.conf_path("20-broken.conflist"), "{ \"name\": ").unwrap();
    n.until(
        Duration::from_secs(1),
        "not ready for the malformed file",
        |n| {
            let (c, b) = n.get("/readyz");
            c == 503 && b.contains("20-broken.conflist") && b.contains("malformed")
        },
    );
    assert_eq!(n.metric("tombstone_agent_ready"), Some(0.0));
    fs::remove_file(n.conf_path("20-broken.conflist")).unwrap();
    n.until(Duration::from_secs(1), "ready again", |n| {
        n.get("/readyz").0 == 200
    });

    // The primary regenerates a single-plugin `.conf` sorting first: converted again.
    let conf = r#"{ "cniVersion": "0.4.0", "name": "pods", "type": "ipvlan", "master": "eth0", "ipam": { "type": "host-local", "subnet": "10.10.0.0/24" } }"#;
    fs::write(n.conf_path("05-pods.conf"), conf).unwrap();
    n.until(
        Duration::from_secs(1),
        "the regenerated .conf converted",
        |n| !n.conf_path("05-pods.conf").exists() && n.has_entry("05-pods.conflist"),
    );
    fs::write(n.conf_path("05-pods.conf"), conf.replace("eth0", "eth3")).unwrap();
    n.until(Duration::from_secs(1), "converted again", |n| {
        !n.conf_path("05-pods.conf").exists()
            && fs::read_to_string(n.conf_path("05-pods.conflist")).is_ok_and(|t| t.contains("eth3"))
            && n.has_entry("05-pods.conflist")
    });
    n.until(Duration::from_secs(1), "ready", |n| {
        n.get("/readyz").0 == 200
    });

    // A symbolic link (a mounted ConfigMap's file) sorting first: a file of its own with the
    // entry, the target untouched.
    let target = n.root.join("etc/cni/from-configmap.conflist");
    fs::write(&target, PODS.replace("\"pods\"", "\"linked\"")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/cni/from-configmap.conflist",
        n.conf_path("01-linked.conflist"),
    )
    .unwrap();
    n.until(
        Duration::from_secs(1),
        "the link replaced by an edited file",
        |n| {
            fs::symlink_metadata(n.conf_path("01-linked.conflist")).is_ok_and(|m| m.is_file())
                && n.has_entry("01-linked.conflist")
        },
    );
    assert!(!fs::read_to_string(&target).unwrap().contains("tombstone"));
    n.until(Duration::from_secs(1), "ready", |n| {
        let (c, b) = n.get("/readyz");
        c == 200 && b.contains("01-linked.conflist: linked")
    });
    // A link to nothing: not ready, still running.
    std::os::unix::fs::symlink("/nowhere.conflist", n.conf_path("00-dangling.conflist")).unwrap();
    n.until(
        Duration::from_secs(1),
        "not ready for the dangling link",
        |n| {
            let (c, b) = n.get("/readyz");
            c == 503 && b.contains("00-dangling.conflist")
        },
    );
    assert!(
        n.metric("tombstone_agent_errors_total{step=\"reconcile\"}")
            .is_some()
    );
    assert_eq!(n.terminate(), 0);
}

#[test]
fn uninstall_on_exit_removes_the_entries_only_when_asked() {
    let mut n = Node::new("uninstall");
    fs::write(n.conf_path("10-pods.conflist"), PODS).unwrap();
    n.start(&["--uninstall-on-exit"]);
    n.until(Duration::from_secs(5), "ready", |n| {
        n.get("/readyz").0 == 200
    });
    assert_eq!(n.terminate(), 0);
    assert_eq!(
        fs::read_to_string(n.conf_path("10-pods.conflist")).unwrap(),
        PODS
    );
    assert!(!n.root.join("opt/cni/bin/tombstone").exists());
}

#[test]
fn tombstones_are_counted_from_the_state_directory() {
    let mut n = Node::new("count");
    fs::write(n.conf_path("10-pods.conflist"), PODS).unwrap();
    // No sweep here (it would drop tombstones whose routes are not in this host's kernel).
    n.start(&["--sweep-every", "0"]);
    n.bury("pods", "10.10.0.5", Duration::from_secs(600));
    n.bury("pods", "10.10.0.6", Duration::from_millis(300));
    n.until(Duration::from_secs(3), "two live tombstones", |n| {
        n.metric("tombstone_live{network=\"pods\"}") == Some(2.0)
    });
    assert_eq!(
        n.metric("tombstone_created_total{network=\"pods\"}"),
        Some(2.0)
    );
    // One lifted before its hold ends (as an ADD does), one left to expire.
    {
        let dir = StateDir::open(&n.state).unwrap();
        let _all = dir.lock_shared().unwrap();
        let _net = dir.lock(&store::stem("pods")).unwrap();
        let loaded = store::load(&dir, "pods", Scope::All).unwrap();
        let (mut after, mut before) = (loaded.ledger, loaded.on_disk);
        std::thread::sleep(Duration::from_millis(400));
        after.lift(&["10.10.0.5".parse().unwrap(), "10.10.0.6".parse().unwrap()]);
        store::save(&dir, &mut before, &mut after).unwrap();
    }
    n.until(Duration::from_secs(3), "none live", |n| {
        n.metric("tombstone_live{network=\"pods\"}").is_none()
    });
    // 10.10.0.6's hold had ended when it went: expired; 10.10.0.5's had not: lifted.
    assert_eq!(
        n.metric("tombstone_lifted_total{network=\"pods\"}"),
        Some(1.0)
    );
    assert_eq!(
        n.metric("tombstone_expired_total{network=\"pods\"}"),
        Some(1.0)
    );
    assert_eq!(n.terminate(), 0);
}

fn tool(name: &str) -> String {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing: run `bash conformance/vm/install-deps.sh` (Debian's prometheus)"
            )
        })
        .display()
        .to_string()
}

#[test]
#[ignore = "needs promtool and prometheus (Debian's prometheus package)"]
fn promtool_accepts_the_metrics_and_prometheus_scrapes_them() {
    let (promtool, prometheus) = (tool("promtool"), tool("prometheus"));
    let mut n = Node::new("prom");
    fs::write(n.conf_path("10-pods.conflist"), PODS).unwrap();
    n.start(&["--sweep-every", "0"]);
    n.bury("pods", "10.10.0.7", Duration::from_secs(600));
    n.until(Duration::from_secs(3), "a live tombstone", |n| {
        n.metric("tombstone_live{network=\"pods\"}") == Some(1.0)
    });

    let (_, body) = n.get("/metrics");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real server on loopback, scraping the agent every second.
    let dir = n.root.join("prometheus");
    fs::create_dir_all(dir.join("data")).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tombstone\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        n.port
    );
    fs::write(dir.join("prometheus.yml"), config).unwrap();
    let web = free_port();
    let mut server = Command::new(&prometheus)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = |q: &str| -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", web)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET /api/v1/query?query={q} HTTP/1.0\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        Some(resp.split_once("\r\n\r\n")?.1.to_string())
    };
    let value = |body: &str| -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        Some(v["data"]["result"][0]["value"][1].as_str()?.to_string())
    };
    let started = Instant::now();
    let (mut up, mut live) = (None, None);
    while started.elapsed() < Duration::from_secs(60)
        && (up.as_deref() != Some("1") || live.as_deref() != Some("1"))
    {
        assert!(server.try_wait().unwrap().is_none(), "prometheus exited");
        up = query("up%7Bjob%3D%22tombstone%22%7D").and_then(|b| value(&b));
        live = query("tombstone_live%7Bnetwork%3D%22pods%22%7D").and_then(|b| value(&b));
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(up.as_deref(), Some("1"), "up of the agent's target");
    assert_eq!(
        live.as_deref(),
        Some("1"),
        "tombstone_live{{network=\"pods\"}}"
    );
    assert_eq!(n.terminate(), 0);
}
