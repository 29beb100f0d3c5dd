//! The spec conformance runner (`cni-conformance check`) against the IPvlan main plugins,
//! `tombstone-ipvlan` and the reference `ipvlan`, on a real IPvlan kernel: the VM. The guest
//! sees the host's files, so it runs the same runner binary on the same target files
//! (`conformance/targets/tombstone-ipvlan.json`, `ref-ipvlan.json`) with `ip netns` of its own.
//! Asserted: every MUST passes for `tombstone-ipvlan` (the checks ran: IPvlan was there);
//! printed: the Markdown table of docs/conformance.md for both.
//! **Needs root and the VM tools** (`conformance/vm/install-deps.sh`), hence `vm_root_`.
//! One boot.

use std::path::Path;
use std::time::{Duration, Instant};

use cni_conformance::harness::lab::{self, Lab};
use cni_conformance::harness::scenario;
use cni_conformance::harness::vm::VmConfig;
use cni_conformance::spec::check_cli::targets_dir;
use cni_conformance::spec::checks::{CheckRun, Level, Status, catalogue};
use cni_conformance::spec::report::{self, TargetReport};
use serde_json::Value;

const BEGIN: &str = "@@CONFORMANCE-JSON-BEGIN@@";
const END: &str = "@@CONFORMANCE-JSON-END@@";

/// Builds the plugins the targets run (under cargo: the runner itself is built for the test).
fn build_plugins() {
    lab::build_our_plugins().expect("build the plugins");
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// A report of `cni-conformance check --format json` back into the runner's own type, so that
/// the table is the one `--format markdown` prints.
fn report_of(v: &Value) -> TargetReport {
    let s = |key: &str| v[key].as_str().unwrap_or_default().to_string();
    let kind = match v["kind"].as_str() {
        Some("main") => "main",
        Some("ipam") => "ipam",
        Some("chained") => "chained",
        other => panic!("unknown kind {other:?}"),
    };
    let runs = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap_or_default();
            let c = catalogue()
                .iter()
                .find(|c| c.id == id)
                .unwrap_or_else(|| panic!("check {id} is not in the catalogue"));
            CheckRun {
                id: c.id,
                level: c.level,
                section: c.section,
                title: c.title,
                status: match r["status"].as_str() {
                    Some("pass") => Status::Pass,
                    Some("fail") => Status::Fail,
                    Some("not-applicable") => Status::NotApplicable,
                    _ => Status::Error,
                },
                detail: r["detail"].as_str().unwrap_or_default().to_string(),
                millis: u128::from(r["millis"].as_u64().unwrap_or(0)),
            }
        })
        .collect();
    TargetReport {
        name: s("target"),
        binary: s("binary"),
        kind,
        versions: v["supportedVersions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        runs,
    }
}

#[test]
#[ignore = "needs root and the VM: qemu, a Debian kernel with IPvlan, busybox, Go + libcni, the reference plugins (make deps)"]
fn vm_root_conformance_ipvlan_plugins_every_must_passes() {
    let test = "vm_root_conformance_ipvlan_plugins_every_must_passes";
    let lab = lab(test);
    build_plugins();
    let runner = Path::new(env!("CARGO_BIN_EXE_cni-conformance"));
    let targets = targets_dir();
    let body = format!(
        "echo {BEGIN}\n{} check --target {} --target {} --format json\nrc=$?\necho {END}\n\
         echo \"RESULT check exit $rc\"\nexit 0\n",
        quote(runner),
        quote(&targets.join("tombstone-ipvlan.json")),
        quote(&targets.join("ref-ipvlan.json")),
    );
    let t = Instant::now();
    let job = scenario::run_adhoc(&lab, &body).unwrap_or_else(|e| panic!("VM job: {e}"));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(job.status, 0, "job exited {}:\n{}", job.status, job.output);
    let out = &job.output;
    let json = out
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(j, _)| j)
        .unwrap_or_else(|| panic!("no JSON report in the job output:\n{out}"));
    // The runner's progress lines go to stderr, which the console interleaves: keep the JSON.
    let start = json.find('[').unwrap_or_else(|| panic!("no JSON:\n{out}"));
    let end = json.rfind(']').unwrap_or_else(|| panic!("no JSON:\n{out}"));
    let doc: Value = serde_json::from_str(&json[start..=end])
        .unwrap_or_else(|e| panic!("JSON report: {e}\n{out}"));
    let reports: Vec<TargetReport> = doc
        .as_array()
        .expect("an array of reports")
        .iter()
        .map(report_of)
        .collect();
    println!(
        "{}\n{}",
        report::markdown_matrix(&reports),
        report::markdown_failures(&reports)
    );
    for r in &reports {
        println!("{}", r.summary());
    }
    println!("(one VM boot, job included: {secs:.0} s)");

    let ours = reports
        .iter()
        .find(|r| r.name == "tombstone-ipvlan")
        .unwrap_or_else(|| panic!("no tombstone-ipvlan report:\n{out}"));
    assert_eq!(ours.must_failures(), 0, "{}", report::table(ours));
    assert_eq!(
        ours.count(None, Status::Error),
        0,
        "{}",
        report::table(ours)
    );
    // IPvlan was there: every MUST for a main plugin ran and passed; only the chained-only
    // PREV-01 is not applicable.
    for c in &ours.runs {
        if c.level == Level::Must && c.id != "PREV-01" {
            assert_eq!(c.status, Status::Pass, "{} {}: {}", c.id, c.title, c.detail);
        }
    }
    assert_eq!(
        ours.count(None, Status::NotApplicable),
        1,
        "{}",
        report::table(ours)
    );
    // The reference plugin ran too (its MUSTs are not ours to assert, but its checks must
    // have run on IPvlan, not been skipped).
    let reference = reports
        .iter()
        .find(|r| r.name == "ipvlan (reference)")
        .unwrap_or_else(|| panic!("no reference ipvlan report:\n{out}"));
    assert!(
        reference.count(Some(Level::Must), Status::Pass) > 0,
        "{}",
        report::table(reference)
    );
}

/// The lab; a missing prerequisite fails the test (see [`lab::for_test`]).
fn lab(test: &str) -> Lab {
    lab::for_test(
        test,
        VmConfig {
            timeout: Duration::from_secs(900),
            ..VmConfig::default()
        },
    )
}
