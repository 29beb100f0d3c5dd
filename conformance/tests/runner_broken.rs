//! The runner's own tests: every check of the catalogue fails against the `cni-broken-plugin`
//! variant that breaks exactly its rule, and passes against the correct variant, so no check
//! passes vacuously. Namespace tests need root (`root_` prefix, `#[ignore]`d): included
//! (`make test`, `--include-ignored`) without root they fail.

use std::path::Path;

use cni_conformance::spec::checks::{Status, catalogue, run_target};
use cni_conformance::spec::report::{self, TargetReport};
use cni_conformance::spec::target::{Kind, Target};
use serde_json::json;

const BROKEN: &str = env!("CARGO_BIN_EXE_cni-broken-plugin");

use cni_conformance::harness::lab::require_root;

fn broken(kind: Kind, brk: &str, version: &str) -> Target {
    let mode = kind.as_str();
    let mut t = json!({
        "name": format!("broken-{mode}-{brk}"),
        "kind": mode,
        "binary": BROKEN,
        "env": {"CNI_BROKEN_BREAK": brk},
        "config": {
            "break": brk,
            "cniVersion": version,
            "name": "cnic-broken",
            "type": "cni-broken-plugin",
            "mode": mode,
            "subnet": "10.89.0.0/24",
            "dataDir": "${STATE}/broken"
        }
    });
    if kind == Kind::Chained {
        t["prevResult"] = json!({
            "cniVersion": version,
            "interfaces": [{"name": "${IFNAME}", "sandbox": "${NETNS}"}],
            "ips": [{"address": "10.88.0.10/24", "gateway": "10.88.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.88.0.1"]}
        });
    }
    Target::from_json(&t, None).expect("broken target")
}

/// The kind a check is exercised with: IPAM unless the rule is only for main or chained.
fn kind_for(kinds: &[Kind]) -> Kind {
    if kinds.contains(&Kind::Ipam) {
        Kind::Ipam
    } else {
        kinds[0]
    }
}

#[test]
fn catalogue_is_well_formed() {
    let source = include_str!("../src/bin/cni-broken-plugin.rs");
    let mut ids = std::collections::HashSet::new();
    for c in catalogue() {
        assert!(ids.insert(c.id), "duplicate check ID {}", c.id);
        assert!(
            c.section.contains("Section"),
            "{}: no SPEC.md section",
            c.id
        );
        assert!(
            source.contains(&format!("\"{}\"", c.breaks)),
            "{}: cni-broken-plugin has no break {:?}",
            c.id,
            c.breaks
        );
    }
    assert!(catalogue().len() >= 30);
    let list = report::catalogue_table();
    assert!(list.contains("GC-01") && list.contains("MUST") && list.contains("SHOULD"));
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_correct_variant_passes_every_check() {
    require_root("root_correct_variant_passes_every_check");
    for kind in [Kind::Ipam, Kind::Main, Kind::Chained] {
        let t = broken(kind, "none", "1.1.0");
        let (versions, runs) = run_target(&t, &[]);
        assert_eq!(versions, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
        for r in &runs {
            let applicable = catalogue()
                .iter()
                .find(|c| c.id == r.id)
                .is_some_and(|c| c.kinds.contains(&kind));
            let want = if applicable {
                Status::Pass
            } else {
                Status::NotApplicable
            };
            assert_eq!(
                r.status,
                want,
                "{} against the correct {} variant: {}",
                r.id,
                kind.as_str(),
                r.detail
            );
        }
    }
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_each_check_fails_against_the_plugin_breaking_its_rule() {
    require_root("root_each_check_fails_against_the_plugin_breaking_its_rule");
    let mut failures = Vec::new();
    for c in catalogue() {
        let kind = kind_for(c.kinds);
        let t = broken(kind, c.breaks, "1.1.0");
        let (_, runs) = run_target(&t, &[c.id.to_string()]);
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        if r.status == Status::Fail {
            // The exit status follows MUST failures only.
            let report = TargetReport::new(&t, Vec::new(), runs.clone());
            assert_eq!(
                report.must_failures() > 0,
                c.level == cni_conformance::spec::checks::Level::Must,
                "{}",
                c.id
            );
        } else {
            failures.push(format!(
                "{} against break {:?} ({}): {} {}",
                c.id,
                c.breaks,
                kind.as_str(),
                r.status.as_str(),
                r.detail
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "checks that did not fail:\n{}",
        failures.join("\n")
    );
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_version_gated_checks_are_not_applicable_to_a_1_0_plugin() {
    require_root("root_version_gated_checks_are_not_applicable_to_a_1_0_plugin");
    let t = broken(Kind::Ipam, "no-1.1", "1.0.0");
    let (versions, runs) = run_target(&t, &[]);
    assert_eq!(versions, ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]);
    for r in &runs {
        let gated = ["ADD-03", "GC-01", "GC-02", "GC-03", "STATUS-01"].contains(&r.id);
        if gated {
            assert_eq!(r.status, Status::NotApplicable, "{}: {}", r.id, r.detail);
        } else if r.id != "ADD-04" && r.id != "PREV-01" {
            assert_eq!(r.status, Status::Pass, "{}: {}", r.id, r.detail);
        }
    }
}

#[test]
#[ignore = "needs root: network namespaces (ip netns)"]
fn root_reports_render_in_every_format() {
    require_root("root_reports_render_in_every_format");
    let targets = [
        broken(Kind::Ipam, "none", "1.1.0"),
        broken(Kind::Ipam, "stdout-noise", "1.1.0"),
    ];
    let only: Vec<String> = ["VER-01", "OUT-01"].iter().map(|s| s.to_string()).collect();
    let (json_text, must) =
        cni_conformance::spec::check_cli::run_targets(&targets, &only, "json").expect("json");
    assert_eq!(must, 1, "only the noisy plugin fails a MUST");
    let v: serde_json::Value = serde_json::from_str(&json_text).expect("valid JSON");
    assert_eq!(v[1]["results"][1]["id"], "OUT-01");
    assert_eq!(v[1]["results"][1]["status"], "fail");
    let (xml, _) = cni_conformance::spec::check_cli::run_targets(&targets, &only, "junit").unwrap();
    assert!(xml.starts_with("<?xml") && xml.contains("<failure type=\"MUST\""));
    assert_eq!(xml.matches("<testsuite ").count(), 2);
    let (table, _) =
        cni_conformance::spec::check_cli::run_targets(&targets, &only, "table").unwrap();
    assert!(table.contains("OUT-01") && table.contains("FAIL"));
    let (md, _) =
        cni_conformance::spec::check_cli::run_targets(&targets, &only, "markdown").unwrap();
    assert!(md.contains("**FAIL**"));
    assert!(Path::new(BROKEN).is_file());
}
