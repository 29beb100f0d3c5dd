//! What the agent counts and how `/metrics` shows it, pure logic: the tombstones of a scan of
//! the state directory, the difference between two scans (created, lifted, expired), and the
//! Prometheus text exposition (format 0.0.4) of the agent's counters and gauges.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One live tombstone, as a scan finds it: (network, address, container ID, interface).
pub type Key = (String, String, String, String);

/// A scan: every live tombstone and when its hold ends (ms since the epoch).
pub type Scan = BTreeMap<Key, u64>;

/// What changed between two scans, per network.
#[derive(Debug, Default, PartialEq)]
pub struct Delta {
    pub created: BTreeMap<String, u64>,
    pub lifted: BTreeMap<String, u64>,
    pub expired: BTreeMap<String, u64>,
}

/// The tombstones in `cur` and not in `prev` were created; those gone were expired when their
/// hold had ended by `now_ms` (a sweep, or a DEL's own sweep, ended them), else lifted (an
/// ADD that reuses the address removes its tombstone before the hold ends).
pub fn diff(prev: &Scan, cur: &Scan, now_ms: u64) -> Delta {
    let mut d = Delta::default();
    for k in cur.keys().filter(|k| !prev.contains_key(*k)) {
        *d.created.entry(k.0.clone()).or_default() += 1;
    }
    for (k, &expires) in prev.iter().filter(|(k, _)| !cur.contains_key(*k)) {
        let to = if expires <= now_ms {
            &mut d.expired
        } else {
            &mut d.lifted
        };
        *to.entry(k.0.clone()).or_default() += 1;
    }
    d
}

/// Live tombstones per network.
pub fn live(scan: &Scan) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for k in scan.keys() {
        *out.entry(k.0.clone()).or_default() += 1;
    }
    out
}

/// Everything `/metrics` shows.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub live: BTreeMap<String, u64>,
    pub created: BTreeMap<String, u64>,
    pub lifted: BTreeMap<String, u64>,
    pub expired: BTreeMap<String, u64>,
    pub orphans_removed: u64,
    pub sweeps: u64,
    pub sweep_seconds_sum: f64,
    pub last_sweep_seconds: f64,
    pub installs: u64,
    pub reinserts: u64,
    /// Errors by what failed: `install`, `reconcile`, `sweep`, `scan`, `watch`.
    pub errors: BTreeMap<&'static str, u64>,
    pub ready: bool,
    pub managed: u64,
    pub not_ready: u64,
}

impl Stats {
    pub fn add(&mut self, d: &Delta) {
        for (to, from) in [
            (&mut self.created, &d.created),
            (&mut self.lifted, &d.lifted),
            (&mut self.expired, &d.expired),
        ] {
            for (n, c) in from {
                *to.entry(n.clone()).or_default() += c;
            }
        }
    }

    pub fn error(&mut self, what: &'static str) {
        *self.errors.entry(what).or_default() += 1;
    }

    /// The text exposition, format 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let per_network =
            |s: &mut String, name: &str, kind: &str, help: &str, m: &BTreeMap<String, u64>| {
                head(s, name, kind, help);
                for (n, v) in m {
                    let _ = writeln!(s, "{name}{{network=\"{}\"}} {v}", escape(n));
                }
            };
        per_network(
            &mut s,
            "tombstone_live",
            "gauge",
            "Live tombstones in the state directory, per network, at the last scan.",
            &self.live,
        );
        per_network(
            &mut s,
            "tombstone_created_total",
            "counter",
            "Tombstones that appeared between two scans of the state directory.",
            &self.created,
        );
        per_network(
            &mut s,
            "tombstone_lifted_total",
            "counter",
            "Tombstones removed before their hold ended (an ADD reusing the address lifts it).",
            &self.lifted,
        );
        per_network(
            &mut s,
            "tombstone_expired_total",
            "counter",
            "Tombstones removed once their hold had ended (by the agent's sweep or a DEL's).",
            &self.expired,
        );
        let plain = |s: &mut String, name: &str, kind: &str, help: &str, v: String| {
            head(s, name, kind, help);
            let _ = writeln!(s, "{name} {v}");
        };
        plain(
            &mut s,
            "tombstone_orphans_removed_total",
            "counter",
            "Routes of the tombstone protocol that no ledger named, deleted by the agent's sweeps.",
            self.orphans_removed.to_string(),
        );
        head(
            &mut s,
            "tombstone_sweep_duration_seconds",
            "summary",
            "Time the agent's sweeps took.",
        );
        let _ = writeln!(
            s,
            "tombstone_sweep_duration_seconds_sum {}",
            self.sweep_seconds_sum
        );
        let _ = writeln!(s, "tombstone_sweep_duration_seconds_count {}", self.sweeps);
        plain(
            &mut s,
            "tombstone_last_sweep_duration_seconds",
            "gauge",
            "Time the agent's last sweep took.",
            self.last_sweep_seconds.to_string(),
        );
        plain(
            &mut s,
            "tombstone_agent_installs_total",
            "counter",
            "Full installs (binaries and entries) the agent completed.",
            self.installs.to_string(),
        );
        plain(
            &mut s,
            "tombstone_agent_reinserts_total",
            "counter",
            "Reconciles of the conf dir that had to write a file (an entry put back or moved).",
            self.reinserts.to_string(),
        );
        head(
            &mut s,
            "tombstone_agent_errors_total",
            "counter",
            "Failures by step (install, reconcile, sweep, scan, watch); the agent went on.",
        );
        for what in ["install", "reconcile", "sweep", "scan", "watch"] {
            let v = self.errors.get(what).copied().unwrap_or(0);
            let _ = writeln!(s, "tombstone_agent_errors_total{{step=\"{what}\"}} {v}");
        }
        plain(
            &mut s,
            "tombstone_agent_ready",
            "gauge",
            "1 when installed and the entry is in place in every network managed, else 0.",
            u8::from(self.ready).to_string(),
        );
        plain(
            &mut s,
            "tombstone_agent_managed_networks",
            "gauge",
            "Networks that had the entry at the last reconcile.",
            self.managed.to_string(),
        );
        plain(
            &mut s,
            "tombstone_agent_not_ready",
            "gauge",
            "Files or networks reported not ready at the last reconcile.",
            self.not_ready.to_string(),
        );
        s
    }
}

fn head(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(net: &str, ip: &str) -> Key {
        (net.into(), ip.into(), "c".into(), "eth0".into())
    }

    #[test]
    fn a_scan_diff_tells_created_lifted_expired() {
        let prev: Scan = [
            (key("a", "10.0.0.1"), 1000),
            (key("a", "10.0.0.2"), 5000),
            (key("b", "10.0.0.3"), 9000),
        ]
        .into();
        let cur: Scan = [(key("b", "10.0.0.3"), 9000), (key("b", "10.0.0.4"), 9500)].into();
        let d = diff(&prev, &cur, 2000);
        assert_eq!(d.created, [("b".to_string(), 1)].into());
        assert_eq!(d.expired, [("a".to_string(), 1)].into());
        assert_eq!(d.lifted, [("a".to_string(), 1)].into());
        assert_eq!(diff(&cur, &cur, 99_999), Delta::default());
        assert_eq!(live(&cur), [("b".to_string(), 2)].into());
    }

    #[test]
    fn the_exposition_has_help_type_and_escaped_labels() {
        let mut st = Stats::default();
        st.live.insert("we\"ird\\n\net".into(), 3);
        st.add(&Delta {
            created: [("pods".into(), 2)].into(),
            ..Delta::default()
        });
        st.add(&Delta {
            created: [("pods".into(), 1)].into(),
            ..Delta::default()
        });
        st.error("sweep");
        let t = st.render();
        assert!(
            t.contains("tombstone_live{network=\"we\\\"ird\\\\n\\net\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("tombstone_created_total{network=\"pods\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("tombstone_agent_errors_total{step=\"sweep\"} 1\n"),
            "{t}"
        );
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name.trim_end_matches("_sum").trim_end_matches("_count");
            assert!(t.contains(&format!("# TYPE {base} ")), "{line}");
        }
    }
}
