//! The CRI scenario inside the IPvlan VM (`jobs/cri.sh`, `tests/vm_root_cri.rs`): a private
//! containerd per chain runs the shared steps of `cri::scenario`, its fault steps included
//! (those `tests/cri_root.rs` runs natively), on the reference `ipvlan` + `host-local` +
//! `tombstone` and on our three plugins, then times RunPodSandbox and StopPodSandbox on three
//! chains at once.
//!
//! ```text
//! cni-cri-scenario [ROUNDS]    (root; the node's eth0 and gw0 set up by jobs/cri.sh)
//!     RESULT <chain> <key> <value>   what it measured (the job output protocol)
//! ```
//! A failed check panics with what failed (exit status 101).

use std::path::Path;

use cni_conformance::cri::client::Cri;
use cni_conformance::cri::containerd::{self, Containerd, NodeLink, Setup};
use cni_conformance::cri::image::PauseImage;
use cni_conformance::cri::scenario::{self, Faults, ok, our_binary};
use cni_conformance::harness::tools::REFERENCE_PLUGINS;
use serde_json::{Value, json};

/// The tombstones' hold: long enough for the checks after a Stop under emulation, and for
/// both tombstones of the last two Stops (a Stop or Remove takes seconds there) to be counted.
const HOLD_SECONDS: u64 = 20;
/// The node's IPvlan master (a dummy made by the job).
const MASTER: &str = "eth0";

/// One chain of the run: which main plugin and IPAM, with `tombstone` or not.
struct Chain {
    /// The instance's name and the key of its RESULT lines.
    name: &'static str,
    label: &'static str,
    ours: bool,
    tombstone: bool,
}

const REFERENCE: Chain = Chain {
    name: "reference",
    label: "ipvlan + host-local + tombstone",
    ours: false,
    tombstone: true,
};
const OURS: Chain = Chain {
    name: "ours",
    label: "tombstone-ipvlan + tombstone-ipam + tombstone",
    ours: true,
    tombstone: true,
};
const BASELINE: Chain = Chain {
    name: "baseline",
    label: "ipvlan + host-local",
    ours: false,
    tombstone: false,
};

impl Chain {
    /// Its main plugin's type.
    fn main(&self) -> &'static str {
        if self.ours {
            "tombstone-ipvlan"
        } else {
            "ipvlan"
        }
    }

    /// Its containerd's set-up with the address range `first`..`last` (the last octets) of
    /// its subnet: 10.10.0.0/24 for ours (the gateway port is the plugin's), 10.20.0.0/24
    /// for the reference plugins (the job's gw0 holds 10.20.0.1). With `faults`, the main
    /// plugin and `tombstone` run behind its wrappers, and `tombstone` gets the port mappings.
    fn setup(&self, first: u8, last: u8, faults: Option<&Faults>) -> Setup<'static> {
        let main = self.main();
        let (net, ipam) = if self.ours {
            ("10.10.0", "tombstone-ipam")
        } else {
            ("10.20.0", "host-local")
        };
        let mut ipam_conf = json!({
            "type": ipam, "dataDir": containerd::ipam_dir(self.name),
            "ranges": [[{ "subnet": format!("{net}.0/24"), "gateway": format!("{net}.1"),
                          "rangeStart": format!("{net}.{first}"),
                          "rangeEnd": format!("{net}.{last}") }]],
            "routes": [{ "dst": "0.0.0.0/0" }],
        });
        if self.ours {
            ipam_conf["reuseAfterSeconds"] = json!(60);
        }
        let mut plugins: Vec<Value> =
            vec![json!({ "type": main, "master": MASTER, "mode": "l2", "ipam": ipam_conf })];
        let reference = |p: &str| format!("{REFERENCE_PLUGINS}/{p}");
        let binary = |p: &str| {
            if self.ours {
                our_binary(p)
            } else {
                reference(p)
            }
        };
        let mut bins = vec![
            (ipam.to_string(), binary(ipam)),
            ("loopback".to_string(), reference("loopback")),
        ];
        let mut tombstone = json!({ "type": "tombstone", "holdSeconds": HOLD_SECONDS,
                                    "stateDir": containerd::dir_of(self.name).join("tombstone") });
        match faults {
            Some(f) => {
                assert!(
                    self.tombstone,
                    "the fault steps need tombstone in the chain"
                );
                tombstone["capabilities"] = json!({ "portMappings": true });
                bins.extend(f.plugins(&binary(main), &our_binary("tombstone")));
            }
            None => {
                bins.push((main.to_string(), binary(main)));
                if self.tombstone {
                    bins.push(("tombstone".to_string(), our_binary("tombstone")));
                }
            }
        }
        if self.tombstone {
            plugins.push(tombstone);
        }
        Setup {
            name: self.name,
            conflist: json!({ "cniVersion": "1.0.0", "name": format!("cri-{}", self.name),
                              "plugins": plugins })
            .to_string(),
            node_link: NodeLink::Master(MASTER.into()),
            subnet_prefix: if self.ours { "10.10.0." } else { "10.20.0." },
            plugins: bins,
        }
    }
}

/// The shared steps on `chain` (a pool of two addresses) with what the runtime passed to
/// `tombstone`, the fault steps (b's netns gone, d's DEL failing once while e takes its
/// address), then c and e stopped and removed, the tombstones' end and the leak check.
fn scenario(chain: &Chain, image: &Path) {
    let faults = Faults::new(chain.name, chain.main());
    let ctr = Containerd::start(chain.setup(10, 11, Some(&faults)), image);
    let mut cri = ok(&ctr, Cri::connect(&ctr.socket));
    let mut pods = scenario::reuse_after_stop(&mut cri, &ctr, |step, p, _| {
        faults.check_recorded(&ctr, step, p)
    });
    let v = chain.name;
    println!("RESULT {v} a_b_c {} {} {}", pods.ip_a, pods.ip_b, pods.ip_c);
    println!("RESULT {v} reuse ok");
    faults.netns_gone(&mut cri, &ctr, &pods);
    println!("RESULT {v} netns_gone ok");
    let e = faults.retried_stop(&mut cri, &ctr, &mut pods);
    println!("RESULT {v} retried_stop ok");
    let (made, took) =
        scenario::stop_all_and_outlive_tombstones(&mut cri, &ctr, &[&pods.c, &e], HOLD_SECONDS);
    println!("RESULT {v} tombstones_made {made}");
    println!("RESULT {v} tombstones_gone_s {took:.1}");
    scenario::assert_nothing_leaked(&ctr, &mut cri, &pods.netns);
    println!("RESULT {v} leaks none");
}

fn main() {
    let rounds: usize = match std::env::args().nth(1) {
        None => 7,
        Some(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("ROUNDS must be a number, not {n:?}")),
    };
    containerd::require_tools(&["ipvlan", "host-local"]);
    let image = PauseImage::write(Path::new(&our_binary("cni-pause")), "vm");
    for chain in [&REFERENCE, &OURS] {
        println!("# CRI scenario on {}", chain.label);
        scenario(chain, &image.0);
    }

    // The timings: the three chains at once, interleaved.
    let chains = [&BASELINE, &REFERENCE, &OURS];
    let ranges = [(100, 199), (200, 250), (100, 250)];
    let ctrs: Vec<Containerd> = chains
        .iter()
        .zip(ranges)
        .map(|(c, (first, last))| Containerd::start(c.setup(first, last, None), &image.0))
        .collect();
    let mut runtimes: Vec<(&Containerd, Cri)> = ctrs
        .iter()
        .map(|c| (c, ok(c, Cri::connect(&c.socket))))
        .collect();
    let t = scenario::timings(&mut runtimes, rounds);
    let labels: Vec<&str> = chains.iter().map(|c| c.label).collect();
    println!(
        "{}",
        scenario::timing_table(
            &format!("CRI call, median of {rounds} (containerd 1.6, runc, IPvlan l2, TCG VM)"),
            &labels,
            &t
        )
    );
    for (chain, t) in chains.iter().zip(&t) {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        println!("RESULT timing {}_run_ms {:.1}", chain.name, ms(t.run));
        println!("RESULT timing {}_stop_ms {:.1}", chain.name, ms(t.stop));
    }
    for (ctr, cri) in runtimes.iter_mut() {
        scenario::assert_nothing_leaked(ctr, cri, &[]);
    }
    println!("RESULT timing leaks none");
}
