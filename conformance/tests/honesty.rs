//! The test-honesty rule, checked over the workspace's sources and on `make test`'s log
//! check: a test that needs root or an external tool is `#[ignore = "needs ..."]` and fails
//! when included without it; no test skips by returning early, and none reads `CI`.

use std::path::{Path, PathBuf};
use std::process::Command;

use cni_conformance::harness::paths::workspace_root;

/// Every `.rs` file under the crates' `src/`, `tests/` and `examples/`.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for krate in ["plugin", "ipam", "install", "conformance"] {
        for sub in ["src", "tests", "examples"] {
            walk(&workspace_root().join(krate).join(sub), &mut out);
        }
    }
    assert!(out.len() > 50, "found only {} sources", out.len());
    out
}

fn shown(p: &Path) -> String {
    p.strip_prefix(workspace_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

fn is_this_file(p: &Path) -> bool {
    p.ends_with("conformance/tests/honesty.rs")
}

#[test]
fn no_source_reads_ci_or_prints_a_skip() {
    // Split so that this file does not match itself.
    let ci = ["var_os(\"", "CI\")"].concat();
    let ci2 = ["var(\"", "CI\")"].concat();
    let mut found = Vec::new();
    for p in sources().iter().filter(|p| !is_this_file(p)) {
        let text = std::fs::read_to_string(p).unwrap();
        for (n, line) in text.lines().enumerate() {
            let printing = line.contains("println!") || line.contains("eprint");
            let skip = line.contains("skipped") || line.contains("SKIPPED");
            if line.contains(&ci) || line.contains(&ci2) || (printing && skip) {
                found.push(format!("{}:{}: {}", shown(p), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn every_root_or_vm_test_is_ignored_with_its_prerequisite() {
    let mut tests = 0;
    let mut wrong = Vec::new();
    for p in sources().iter().filter(|p| !is_this_file(p)) {
        let text = std::fs::read_to_string(p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line.trim().strip_prefix("fn ") else {
                continue;
            };
            let attrs: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("#["))
                .map(|l| l.trim())
                .collect();
            if !attrs.contains(&"#[test]") {
                continue;
            }
            tests += 1;
            let ignored = attrs.iter().any(|a| a.starts_with("#[ignore = \"needs "));
            let bare_ignore = attrs.contains(&"#[ignore]");
            let privileged = name.starts_with("root_") || name.starts_with("vm_root_");
            if bare_ignore || (privileged && !ignored) {
                wrong.push(format!("{}:{}: {name}", shown(p), i + 1));
            }
        }
    }
    assert!(tests > 100, "found only {tests} tests");
    assert!(
        wrong.is_empty(),
        "tests that need root must be #[ignore = \"needs root: ...\"], and every ignore \
         must name its prerequisite:\n{}",
        wrong.join("\n")
    );
}

/// `.ci/check-test-log` (run by `make test` on cargo's output) passes a clean log, with the
/// installer's own "skipped" wording, and fails each way a test could hide that it did not
/// run.
#[test]
fn the_make_test_log_check_fails_on_skips_and_ignored_tests() {
    let script = workspace_root().join(".ci/check-test-log");
    let dir = std::env::temp_dir().join(format!("honesty-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let summary = "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out";
    let check = |name: &str, log: &str| -> bool {
        let file = dir.join(name);
        std::fs::write(&file, log).unwrap();
        let out = Command::new("bash")
            .arg(&script)
            .arg(&file)
            .output()
            .unwrap();
        out.status.success()
    };
    assert!(check(
        "clean",
        &format!(
            "test a ... ok\n#   skipped    /etc/cni/net.d/20-other.conflist (not IPvlan)\n\
             <testsuite skipped=\"0\"><skipped message=\"n/a\"/>\n{summary}\n"
        )
    ));
    for (i, bad) in [
        "SKIPPED vm_root_x: qemu not found",
        "skipped: this test needs root",
        "root_x: skipped: needs root",
        "host-local not installed: skipped",
        "test result: ok. 3 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            !check(&format!("bad{i}"), &format!("{summary}\n{bad}\n")),
            "not caught: {bad}"
        );
    }
    assert!(!check("empty", ""), "a log without a cargo summary passed");
    let _ = std::fs::remove_dir_all(&dir);
}
