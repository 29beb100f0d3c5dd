//! The real-kernel scenarios: job scripts for the guest (from `jobs/*.sh` plus a generated
//! header per variant), the parsing of their `RESULT` lines, and the tables they print.
//!
//! - seed: pods a and b on an IPvlan network, a deleted, then traffic to a's released address
//!   (from b and from the host), its reuse by new pods, and the tombstone's lifetime;
//! - the seed in IPv6 dual-stack, and in modes l3 and l3s;
//! - churn: pods added and deleted in random order with address reuse, then reachability,
//!   tombstone expiry and leak checks;
//! - service: the host reaches pod a through a ClusterIP and a NodePort (kube-proxy-like DNAT,
//!   masquerade), a is deleted, the Service is switched to pod b.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::harness::lab::Lab;
use crate::harness::vm::JobOutput;

const LIB_SH: &str = include_str!("../../jobs/lib.sh");
const SEED_SH: &str = include_str!("../../jobs/seed.sh");
const CHURN_SH: &str = include_str!("../../jobs/churn.sh");
const SERVICE_SH: &str = include_str!("../../jobs/service.sh");

/// Where the guest writes network configuration lists (a tmpfs in the guest).
const NETCONFPATH: &str = "/tmp/netconf";

/// IPvlan mode of the pods and the gateway port (IPvlan's mode belongs to the master's port,
/// so all slaves share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    L2,
    L3,
    L3s,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::L2 => "l2",
            Mode::L3 => "l3",
            Mode::L3s => "l3s",
        }
    }
}

/// What runs after the reference `ipvlan` + `host-local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Nothing: the reference plugins alone (the baseline).
    Reference,
    /// Our `tombstone` chained after them.
    Tombstone,
    /// A control: no plugin, the job installs the unreachable route and flushes neighbours by
    /// hand at each DEL (and removes it before each reuse): the hand-made measurement of the
    /// fix described in `docs/DESIGN.md` (section 1).
    HandMade,
    /// Not the reference plugins: our three, `tombstone-ipvlan` (which makes its own gateway
    /// port) + `tombstone-ipam` + `tombstone`.
    Ours,
}

/// One run of a scenario on a fresh node topology.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Column title and key of its results: no whitespace.
    pub name: String,
    pub mode: Mode,
    pub dual_stack: bool,
    pub chain: Chain,
}

impl Variant {
    pub fn new(name: &str, mode: Mode, dual_stack: bool, chain: Chain) -> Self {
        Variant {
            name: name.to_string(),
            mode,
            dual_stack,
            chain,
        }
    }

    fn families(&self) -> &'static str {
        if self.dual_stack { "4 6" } else { "4" }
    }
}

/// Knobs shared by the scenarios.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pings from pod b to the released address, per family.
    pub pings: u32,
    /// The tombstone's `holdSeconds` in the seed scenarios: long enough to cover the
    /// measurements after a DEL (pings, the host-side sender: a few seconds under emulation).
    pub hold_seconds: u32,
    /// The Service scenario: how long after pod a's DEL the Service is switched to pod b,
    /// and how long after that is watched.
    pub svc_watch_del_ms: u32,
    pub svc_watch_switch_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pings: 5,
            hold_seconds: 10,
            svc_watch_del_ms: 2000,
            svc_watch_switch_ms: 3000,
        }
    }
}

/// The network configuration list of a variant (host-local ranges as given).
pub fn conflist(net: &str, v: &Variant, settings: &Settings, v4_range: &str) -> String {
    if v.chain == Chain::Ours {
        return format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "{net}",
  "plugins": [
    {{ "type": "tombstone-ipvlan", "mode": "{mode}", "capabilities": {{ "ips": true }},
      "ipam": {{ "type": "tombstone-ipam", "dataDir": "/var/lib/cni/networks", "reuseAfterSeconds": 60,
                "ranges": [[{{ "subnet": "10.10.0.0/24", "gateway": "10.10.0.1"{v4_range} }}]],
                "routes": [{{ "dst": "0.0.0.0/0" }}] }} }},
    {{ "type": "tombstone", "holdSeconds": {hold}, "stateDir": "/run/cni/tombstone" }}
  ]
}}
"#,
            mode = v.mode.as_str(),
            hold = settings.hold_seconds
        );
    }
    let mut ranges = vec![format!(
        r#"[{{ "subnet": "10.10.0.0/24", "gateway": "10.10.0.1"{v4_range} }}]"#
    )];
    let mut routes = vec![r#"{ "dst": "0.0.0.0/0" }"#];
    if v.dual_stack {
        ranges.push(r#"[{ "subnet": "fd00:10::/64", "gateway": "fd00:10::1" }]"#.into());
        routes.push(r#"{ "dst": "::/0" }"#);
    }
    let mut plugins = vec![format!(
        r#"    {{ "type": "ipvlan", "master": "eth0", "mode": "{mode}", "capabilities": {{ "ips": true }},
      "ipam": {{ "type": "host-local", "ranges": [{ranges}], "routes": [{routes}] }} }}"#,
        mode = v.mode.as_str(),
        ranges = ranges.join(", "),
        routes = routes.join(", "),
    )];
    if v.chain == Chain::Tombstone {
        plugins.push(format!(
            r#"    {{ "type": "tombstone", "holdSeconds": {}, "stateDir": "/run/cni/tombstone" }}"#,
            settings.hold_seconds
        ));
    }
    format!(
        "{{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \"{net}\",\n  \"plugins\": [\n{}\n  ]\n}}\n",
        plugins.join(",\n")
    )
}

/// Results of a job: `RESULT <variant> <key> <value>` lines and `FAIL` lines.
#[derive(Debug, Default, Clone)]
pub struct Results {
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    pub failures: Vec<String>,
}

impl Results {
    pub fn parse(output: &str) -> Results {
        let mut r = Results::default();
        for line in output.lines() {
            if let Some(rest) = line.strip_prefix("RESULT ") {
                let mut parts = rest.splitn(3, ' ');
                let (Some(variant), Some(key)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let value = parts.next().unwrap_or("").trim().to_string();
                r.values
                    .entry(variant.to_string())
                    .or_default()
                    .insert(key.to_string(), value);
            } else if let Some(rest) = line.strip_prefix("FAIL ") {
                r.failures.push(rest.to_string());
            }
        }
        r
    }

    /// A value, or "?" when the job did not get that far.
    pub fn get(&self, variant: &str, key: &str) -> &str {
        self.values
            .get(variant)
            .and_then(|m| m.get(key))
            .map(String::as_str)
            .unwrap_or("?")
    }

    /// A numeric value.
    pub fn number(&self, variant: &str, key: &str) -> Option<i64> {
        self.get(variant, key)
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
    }
}

/// A finished scenario: what ran, what it measured, the raw job output.
#[derive(Debug)]
pub struct Report {
    pub variants: Vec<Variant>,
    pub settings: Settings,
    pub results: Results,
    pub job: JobOutput,
}

fn job_header(lab: &Lab, settings: &Settings) -> String {
    format!(
        "#!/bin/sh\n{LIB_SH}\n{SEED_SH}\n{CHURN_SH}\n\
         CNITOOL={cnitool}\nexport NETCONFPATH={NETCONFPATH}\nPINGS={pings}\nHOLD={hold}\n\
         SVC_WATCH_DEL_MS={del_ms}\nSVC_WATCH_SWITCH_MS={switch_ms}\nVARIANT=setup\n",
        cnitool = shell_path(&lab.cnitool),
        pings = settings.pings,
        hold = settings.hold_seconds,
        del_ms = settings.svc_watch_del_ms,
        switch_ms = settings.svc_watch_switch_ms,
    )
}

/// The variant's header: its variables, `CNI_PATH` and its conflist.
fn variant_header(lab: &Lab, v: &Variant, settings: &Settings, v4_range: &str) -> Result<String> {
    if v.name.is_empty() || v.name.contains(char::is_whitespace) {
        return Err(Error::new(format!("bad variant name {:?}", v.name)));
    }
    let net: String = format!("net-{}", v.name)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let plugin_dir = match v.chain {
        Chain::Ours => lab.all_plugins_dir()?,
        chain => lab.plugin_dir(chain == Chain::Tombstone)?,
    };
    Ok(format!(
        "\n# ---- variant {name}\nVARIANT={name}\nNET={net}\nMODE={mode}\nFAMILIES=\"{families}\"\n\
         HANDMADE={handmade}\nOWN_PORT={own_port}\nexport CNI_PATH={plugin_dir}\nnode_down\n\
         mkdir -p \"$NETCONFPATH\"\n\
         cat > \"$NETCONFPATH/$NET.conflist\" <<'CONFLIST'\n{conflist}CONFLIST\n\
         echo \"# [$VARIANT] conflist:\"; sed 's/^/#   /' \"$NETCONFPATH/$NET.conflist\"\n",
        name = v.name,
        mode = v.mode.as_str(),
        families = v.families(),
        handmade = u8::from(v.chain == Chain::HandMade),
        own_port = u8::from(v.chain == Chain::Ours),
        plugin_dir = shell_path(&plugin_dir),
        conflist = conflist(&net, v, settings, v4_range),
    ))
}

fn shell_path(p: &Path) -> String {
    // Paths come from this machine's target dir; quote them for the shell all the same.
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Runs the seed scenario for each variant, all in one boot.
pub fn run_seed(lab: &Lab, variants: &[Variant], settings: &Settings) -> Result<Report> {
    let mut script = job_header(lab, settings);
    for v in variants {
        script.push_str(&variant_header(lab, v, settings, "")?);
        script.push_str(
            "( seed_variant ) || echo \"FAIL $VARIANT seed_variant exited $?\"\nnode_down\n",
        );
    }
    script.push_str("exit 0\n");
    run(lab, "seed", &script, variants, settings)
}

/// Runs the Service scenario for each variant, all in one boot.
pub fn run_service(lab: &Lab, variants: &[Variant], settings: &Settings) -> Result<Report> {
    let mut script = job_header(lab, settings);
    script.push_str(SERVICE_SH);
    script.push_str(&format!("\nPROBE={}\n", shell_path(&lab.svc_probe()?)));
    for v in variants {
        script.push_str(&variant_header(lab, v, settings, "")?);
        script.push_str(
            "( svc_variant ) || echo \"FAIL $VARIANT svc_variant exited $?\"\nnode_down\n",
        );
    }
    script.push_str("exit 0\n");
    run(lab, "service", &script, variants, settings)
}

fn run(
    lab: &Lab,
    name: &str,
    script: &str,
    variants: &[Variant],
    settings: &Settings,
) -> Result<Report> {
    let job = lab.vm.run_job(name, script)?;
    if job.status != 0 {
        return Err(Error::new(format!(
            "scenario {name}: the job exited {}; output:\n{}",
            job.status, job.output
        )));
    }
    Ok(Report {
        variants: variants.to_vec(),
        settings: settings.clone(),
        results: Results::parse(&job.output),
        job,
    })
}

/// Settings of the churn run.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Pods added over the run.
    pub pods: usize,
    /// At most this many pods alive at once.
    pub max_live: usize,
    /// Seed of the operation order.
    pub seed: u64,
    /// Every n-th ADD (on average) asks IPAM for the last released address.
    pub reuse_one_in: u64,
    /// The tombstone's `holdSeconds` in this run: short, so reuse within the hold is common.
    pub hold_seconds: u32,
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            pods: 50,
            max_live: 12,
            seed: 0x7b5_c0ffee,
            reuse_one_in: 3,
            hold_seconds: 2,
        }
    }
}

/// A small deterministic generator (splitmix64), so a churn order can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The churn's operations, one per line: `add <pod>`, `add <pod> reuse`, `del <pod>`.
/// Every pod is added once; some are deleted along the way, in random order; the rest stay.
pub fn churn_ops(c: &Churn) -> Vec<String> {
    let mut rng = Rng(c.seed);
    let mut ops = Vec::new();
    let mut live: Vec<usize> = Vec::new();
    let mut added = 0;
    let keep_at_end = c.max_live / 2;
    while added < c.pods || live.len() > keep_at_end {
        let must_add = live.is_empty();
        let must_del = live.len() >= c.max_live || added >= c.pods;
        let add = !must_del && (must_add || rng.below(100) < 55);
        if add {
            let reuse = added > 0 && rng.below(c.reuse_one_in) == 0;
            ops.push(format!(
                "add p{added:02}{}",
                if reuse { " reuse" } else { "" }
            ));
            live.push(added);
            added += 1;
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let pod = live.swap_remove(i);
            ops.push(format!("del p{pod:02}"));
        }
    }
    ops
}

/// The churn run with `tombstone` chained (variant name "churn"), in one boot.
pub fn run_churn(lab: &Lab, churn: &Churn, settings: &Settings) -> Result<Report> {
    let v = Variant::new("churn", Mode::L2, false, Chain::Tombstone);
    let settings = &Settings {
        hold_seconds: churn.hold_seconds,
        ..settings.clone()
    };
    let mut script = job_header(lab, settings);
    // A small range, so that host-local itself hands released addresses out again.
    let range = r#", "rangeStart": "10.10.0.10", "rangeEnd": "10.10.0.29""#;
    script.push_str(&variant_header(lab, &v, settings, range)?);
    script.push_str("( churn_run ) 3<<'OPS'\n");
    for op in churn_ops(churn) {
        script.push_str(&op);
        script.push('\n');
    }
    script.push_str(
        "OPS\n[ $? = 0 ] || echo \"FAIL $VARIANT churn_run failed\"\nnode_down\nexit 0\n",
    );
    run(lab, "churn", &script, &[v], settings)
}

/// The ad hoc job of `cni-conformance job`: the library sourced, then `body`.
pub fn run_adhoc(lab: &Lab, body: &str) -> Result<JobOutput> {
    let mut script = job_header(lab, &Settings::default());
    script.push_str(body);
    script.push('\n');
    lab.vm.run_job("adhoc", &script)
}

impl Report {
    /// The before/after table of a seed run: one column per variant.
    pub fn seed_table(&self) -> String {
        let r = &self.results;
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let dual = self.variants.iter().any(|v| v.dual_stack);
        let families: &[&str] = if dual { &["4", "6"] } else { &["4"] };
        for f in families {
            let ip = if *f == "4" { "IPv4" } else { "IPv6" };
            let counter = if *f == "4" {
                "Ip: ForwDatagrams"
            } else {
                "Ip6OutForwDatagrams"
            };
            rows.push((
                format!(
                    "{ip}: datagrams the host forwarded for {} pings from pod b to a's released address ({counter})",
                    self.settings.pings
                ),
                self.column(|v| r.get(v, &format!("forwarded_{f}")).to_string()),
            ));
            rows.push((
                format!("{ip}: a host-side sender (busybox ping -W 5) gives up after"),
                self.column(|v| sender(r.get(v, &format!("host_sender_{f}")))),
            ));
            rows.push((
                format!("{ip}: route for the released address right after DEL"),
                self.column(|v| r.get(v, &format!("route_at_del_{f}")).to_string()),
            ));
            rows.push((
                format!("{ip}: new pod given the same address reachable (from pod b / from host)"),
                self.column(|v| {
                    format!(
                        "{} / {}",
                        r.get(v, &format!("reuse_from_pod_{f}")),
                        r.get(v, &format!("reuse_from_host_{f}"))
                    )
                }),
            ));
            rows.push((
                format!("{ip}: same address reused within the hold, reachable (pod b / host)"),
                self.column(|v| {
                    format!(
                        "{} / {}",
                        r.get(v, &format!("rehold_from_pod_{f}")),
                        r.get(v, &format!("rehold_from_host_{f}"))
                    )
                }),
            ));
            rows.push((
                format!(
                    "{ip}: tombstone route gone after its hold ({} s, + 1 s, then one ADD)",
                    self.settings.hold_seconds
                ),
                self.column(|v| {
                    let made = r.get(v, &format!("route_at_third_del_{f}"));
                    let idle = r.get(v, &format!("route_after_hold_idle_{f}"));
                    let after = r.get(v, &format!("route_after_hold_{f}"));
                    match (made, idle, after) {
                        ("none", _, "none") => "n/a (none made)".to_string(),
                        (_, "none", "none") => "yes, by itself".to_string(),
                        (_, _, "none") => "yes, at the next ADD".to_string(),
                        (_, _, other) => format!("no ({other})"),
                    }
                }),
            ));
        }
        rows.push((
            "CHECK of the new pod".into(),
            self.column(|v| r.get(v, "reuse_check").to_string()),
        ));
        rows.push((
            "links or IPAM addresses leaked at the end".into(),
            self.column(|v| {
                let links = r.get(v, "stray_links");
                let held = r.get(v, "ipam_held");
                if links.is_empty() && held.is_empty() {
                    "none".to_string()
                } else {
                    format!("links [{links}] addresses [{held}]")
                }
            }),
        ));
        self.variant_table(&rows)
    }

    /// `rows` under one column per variant, then the failed steps, if any.
    fn variant_table(&self, rows: &[(String, Vec<String>)]) -> String {
        let headers: Vec<String> = self.variants.iter().map(describe_variant).collect();
        let mut out = render_table(&headers, rows);
        if !self.results.failures.is_empty() {
            let _ = writeln!(out, "\nFailed steps:");
            for f in &self.results.failures {
                let _ = writeln!(out, "  {f}");
            }
        }
        out
    }

    /// The Service table: one column per variant.
    pub fn service_table(&self) -> String {
        let r = &self.results;
        let s = &self.settings;
        let watch = |ms: u32| format!("{:.0} s", f64::from(ms) / 1000.0);
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |label: String, f: &dyn Fn(&str) -> String| {
            rows.push((label, self.column(f)));
        };
        row(
            format!(
                "datagrams the host forwarded, end of DEL to the switch ({}; Ip: ForwDatagrams)",
                watch(s.svc_watch_del_ms)
            ),
            &|v| r.get(v, "forwarded_4").to_string(),
        );
        row(
            format!(
                "forwarded to a's address, end of DEL to the end (+ {} after the switch): host ClusterIP UDP / NodePort UDP / TCP, pod c ClusterIP UDP",
                watch(s.svc_watch_switch_ms)
            ),
            &|v| {
                format!(
                    "{} / {} / {}, {}",
                    r.get(v, "forwarded_clusterip_udp"),
                    r.get(v, "forwarded_nodeport_udp"),
                    r.get(v, "forwarded_clusterip_tcp"),
                    r.get(v, "forwarded_pod_udp")
                )
            },
        );
        for (p, what) in [
            ("clusterip", "host -> ClusterIP"),
            ("nodeport", "host -> NodePort (SNAT to the gateway port)"),
            ("pod", "pod c -> ClusterIP"),
        ] {
            row(
                format!("{what} UDP client after DEL: first error (errors, replies)"),
                &|v| {
                    format!(
                        "{} ({} errors, {} replies)",
                        client_saw(r.get(v, &format!("{p}_sees"))),
                        r.get(v, &format!("{p}_errors")),
                        r.get(v, &format!("{p}_replies_del_to_switch")),
                    )
                },
            );
            row(
                format!("{what} UDP: first datagram at pod b after the switch"),
                &|v| match r.get(v, &format!("{p}_to_b_ms")) {
                    "none" => format!("none within {}", watch(s.svc_watch_switch_ms)),
                    ms => format!("{ms} ms"),
                },
            );
        }
        row(
            "host's TCP connection to the ClusterIP after DEL: the client sees".into(),
            &|v| client_saw(r.get(v, "tcp_sees")),
        );
        row(
            "conntrack entries of a's address: before DEL / after DEL / at the switch / end".into(),
            &|v| {
                format!(
                    "{} / {} / {} / {}",
                    r.get(v, "conntrack_a_before"),
                    r.get(v, "conntrack_a_after_del"),
                    r.get(v, "conntrack_a_at_switch"),
                    r.get(v, "conntrack_a_end")
                )
            },
        );
        row(
            "source pod a saw: host ClusterIP / NodePort / pod c".into(),
            &|v| {
                format!(
                    "{} / {} / {}",
                    r.get(v, "clusterip_src_at_a"),
                    r.get(v, "nodeport_src_at_a"),
                    r.get(v, "pod_src_at_a")
                )
            },
        );
        row(
            "DEL of pod a took / the switch (nft -f) took".into(),
            &|v| format!("{} ms / {} ms", r.get(v, "del_ms"), r.get(v, "switch_ms")),
        );
        self.variant_table(&rows)
    }

    /// The summary of a churn run.
    pub fn churn_table(&self) -> String {
        let r = &self.results;
        let keys = [
            ("pods added", "adds"),
            ("pods deleted", "dels"),
            (
                "ADDs asking for the last released address",
                "reuse_requested",
            ),
            (
                "ADDs that got an address used before (IPAM reuse + requested)",
                "reused",
            ),
            ("failed ADD/DEL", "op_failures"),
            (
                "new pods not reachable from the host right after ADD",
                "unreachable_after_add",
            ),
            ("DELs that left no tombstone route", "del_without_tombstone"),
            ("pods alive at the end", "live"),
            (
                "live pods not reachable (from host / from another pod)",
                "live_unreachable",
            ),
            ("live pods failing CHECK", "check_failures"),
            (
                "tombstone routes left past the hold (+1 s, then one ADD)",
                "tombstones_after_hold",
            ),
            ("links leaked after deleting every pod", "stray_links"),
            (
                "IPAM addresses leaked after deleting every pod",
                "ipam_held",
            ),
            ("cached libcni results left", "cached_results"),
            (
                "routes left other than tombstones of the last DELs",
                "stray_routes",
            ),
        ];
        let rows: Vec<(String, Vec<String>)> = keys
            .iter()
            .map(|(label, key)| {
                let value = r.get("churn", key);
                let value = if value.is_empty() { "none" } else { value };
                (label.to_string(), vec![value.to_string()])
            })
            .collect();
        let mut out = render_table(
            &["churn (ipvlan l2 + host-local + tombstone)".into()],
            &rows,
        );
        for f in &r.failures {
            let _ = writeln!(out, "FAILED: {f}");
        }
        out
    }

    fn column(&self, f: impl Fn(&str) -> String) -> Vec<String> {
        self.variants.iter().map(|v| f(&v.name)).collect()
    }

    pub fn elapsed(&self) -> Duration {
        self.job.elapsed
    }
}

fn describe_variant(v: &Variant) -> String {
    let chain = match v.chain {
        Chain::Reference => "ipvlan + host-local",
        Chain::Tombstone => "+ tombstone",
        Chain::HandMade => "+ hand-made route",
        Chain::Ours => {
            return format!("{} (tombstone-ipvlan + -ipam + tombstone)", v.mode.as_str());
        }
    };
    format!("{} ({chain})", v.mode.as_str())
}

/// "12 EHOSTUNREACH" -> "EHOSTUNREACH after 12 ms"; "none" -> "nothing".
fn client_saw(raw: &str) -> String {
    match raw.split_once(' ') {
        Some((ms, what)) if ms.parse::<i64>().is_ok() => format!("{what} after {ms} ms"),
        _ if raw == "none" => "nothing".into(),
        _ => raw.to_string(),
    }
}

/// "5012 no reply (timeout)" -> "5.0 s: no reply (timeout)".
fn sender(raw: &str) -> String {
    let mut parts = raw.splitn(2, ' ');
    match (
        parts.next().and_then(|ms| ms.parse::<u64>().ok()),
        parts.next(),
    ) {
        (Some(ms), Some(why)) => format!("{:.1} s: {why}", ms as f64 / 1000.0),
        _ => raw.to_string(),
    }
}

fn render_table(headers: &[String], rows: &[(String, Vec<String>)]) -> String {
    let label_w = rows
        .iter()
        .map(|(l, _)| l.len())
        .max()
        .unwrap_or(0)
        .max("what".len());
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|(_, c)| c.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, label: &str, cells: &[String]| {
        let _ = write!(out, "| {label:<label_w$} |");
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            let _ = write!(out, " {cell:<w$} |");
        }
        out.push('\n');
    };
    line(&mut out, "what", headers);
    let _ = write!(out, "|{}|", "-".repeat(label_w + 2));
    for w in &widths {
        let _ = write!(out, "{}|", "-".repeat(w + 2));
    }
    out.push('\n');
    for (label, cells) in rows {
        line(&mut out, label, cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_values_and_failures() {
        let r = Results::parse(
            "# note\nRESULT base forwarded_4 315\nRESULT base host_sender_4 5012 no reply\n\
             RESULT base stray_links \nFAIL base DEL of pod a\n",
        );
        assert_eq!(r.number("base", "forwarded_4"), Some(315));
        assert_eq!(r.get("base", "host_sender_4"), "5012 no reply");
        assert_eq!(r.get("base", "stray_links"), "");
        assert_eq!(r.get("base", "missing"), "?");
        assert_eq!(r.failures, vec!["base DEL of pod a".to_string()]);
    }

    #[test]
    fn conflist_chains_tombstone_after_ipvlan() {
        let v = Variant::new("t", Mode::L3s, true, Chain::Tombstone);
        let c = conflist("net-t", &v, &Settings::default(), "");
        let ipvlan = c.find(r#""type": "ipvlan""#).unwrap();
        let tomb = c.find(r#""type": "tombstone", "holdSeconds": 10"#).unwrap();
        assert!(ipvlan < tomb);
        assert!(c.contains(r#""mode": "l3s""#));
        assert!(c.contains("fd00:10::/64"));
        let base = conflist(
            "net-b",
            &Variant::new("b", Mode::L2, false, Chain::Reference),
            &Settings::default(),
            "",
        );
        assert!(!base.contains("tombstone"));
        assert!(!base.contains("fd00"));
    }

    #[test]
    fn churn_adds_every_pod_once_and_deletes_only_live_ones() {
        let c = Churn::default();
        let ops = churn_ops(&c);
        let mut live = std::collections::BTreeSet::new();
        let mut adds = 0;
        let mut reuse = 0;
        for op in &ops {
            let parts: Vec<&str> = op.split(' ').collect();
            match parts[0] {
                "add" => {
                    assert!(live.insert(parts[1].to_string()), "{op} twice");
                    adds += 1;
                    reuse += usize::from(parts.get(2) == Some(&"reuse"));
                }
                "del" => assert!(live.remove(parts[1]), "{op} of a pod not alive"),
                _ => panic!("bad op {op}"),
            }
            assert!(live.len() <= c.max_live);
        }
        assert_eq!(adds, c.pods);
        assert!(reuse > 5, "{reuse} reuse requests");
        assert!(!live.is_empty() && live.len() <= c.max_live / 2);
        assert_eq!(ops, churn_ops(&c), "same seed, same order");
    }

    #[test]
    fn table_has_one_column_per_variant() {
        let t = render_table(
            &["a".into(), "bb".into()],
            &[("row".into(), vec!["1".into(), "22222".into()])],
        );
        assert!(t.contains("| row  | 1 | 22222 |"), "{t}");
        assert_eq!(
            sender("5012 no reply (timeout)"),
            "5.0 s: no reply (timeout)"
        );
    }
}
