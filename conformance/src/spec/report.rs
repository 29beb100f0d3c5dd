//! Conformance reports: a readable table, JSON, JUnit XML, and a Markdown comparison of
//! several targets side by side.

use serde_json::{Value, json};

use crate::spec::checks::{CheckRun, Level, Status, catalogue};
use crate::spec::target::Target;

/// One target's results.
pub struct TargetReport {
    pub name: String,
    pub binary: String,
    pub kind: &'static str,
    pub versions: Vec<String>,
    pub runs: Vec<CheckRun>,
}

impl TargetReport {
    pub fn new(t: &Target, versions: Vec<String>, runs: Vec<CheckRun>) -> TargetReport {
        TargetReport {
            name: t.name.clone(),
            binary: t.binary.display().to_string(),
            kind: t.kind.as_str(),
            versions,
            runs,
        }
    }

    pub fn count(&self, level: Option<Level>, status: Status) -> usize {
        self.runs
            .iter()
            .filter(|r| r.status == status && level.is_none_or(|l| r.level == l))
            .count()
    }

    pub fn must_failures(&self) -> usize {
        self.runs.iter().filter(|r| r.must_failed()).count()
    }

    pub fn summary(&self) -> String {
        format!(
            "{}: MUST {} pass / {} fail; SHOULD {} pass / {} fail; {} n/a; {} error",
            self.name,
            self.count(Some(Level::Must), Status::Pass),
            self.count(Some(Level::Must), Status::Fail),
            self.count(Some(Level::Should), Status::Pass),
            self.count(Some(Level::Should), Status::Fail),
            self.count(None, Status::NotApplicable),
            self.count(None, Status::Error),
        )
    }
}

/// The catalogue as a table (`--list`).
pub fn catalogue_table() -> String {
    let mut s = format!(
        "{:<10} {:<6} {:<19} {}\n",
        "ID", "LEVEL", "KINDS", "CHECK / SECTION"
    );
    for c in catalogue() {
        let kinds: Vec<&str> = c.kinds.iter().map(|k| k.as_str()).collect();
        s.push_str(&format!(
            "{:<10} {:<6} {:<19} {}\n{:<37} SPEC.md: {}\n",
            c.id,
            c.level.to_string(),
            kinds.join(","),
            c.title,
            "",
            c.section
        ));
    }
    s
}

pub fn table(r: &TargetReport) -> String {
    let mut s = format!(
        "target {} ({} plugin, {})\nsupportedVersions: {}\n\n{:<10} {:<6} {:<6} {}\n",
        r.name,
        r.kind,
        r.binary,
        if r.versions.is_empty() {
            "(VERSION failed)".to_string()
        } else {
            r.versions.join(", ")
        },
        "ID",
        "LEVEL",
        "RESULT",
        "CHECK"
    );
    for run in &r.runs {
        s.push_str(&format!(
            "{:<10} {:<6} {:<6} {}\n",
            run.id,
            run.level.to_string(),
            run.status.as_str(),
            run.title
        ));
        if run.status != Status::Pass || !run.detail.is_empty() {
            s.push_str(&format!("{:<25}{}\n", "", run.detail));
        }
    }
    s.push('\n');
    s.push_str(&r.summary());
    s.push('\n');
    s
}

pub fn json(reports: &[TargetReport]) -> Value {
    Value::Array(
        reports
            .iter()
            .map(|r| {
                json!({
                    "target": r.name,
                    "binary": r.binary,
                    "kind": r.kind,
                    "supportedVersions": r.versions,
                    "mustFailures": r.must_failures(),
                    "results": r.runs.iter().map(|c| json!({
                        "id": c.id,
                        "level": c.level.to_string(),
                        "section": c.section,
                        "title": c.title,
                        "status": match c.status {
                            Status::Pass => "pass",
                            Status::Fail => "fail",
                            Status::NotApplicable => "not-applicable",
                            Status::Error => "error",
                        },
                        "detail": c.detail,
                        "millis": c.millis as u64,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: one testsuite per target, one testcase per check. A failed SHOULD is a
/// `<failure type="SHOULD">`, a failed MUST `type="MUST"`; not applicable is `<skipped>`.
pub fn junit(reports: &[TargetReport]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"cni-conformance\">\n",
    );
    for r in reports {
        let failures = r.count(None, Status::Fail);
        s.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">\n",
            xml_escape(&r.name),
            r.runs.len(),
            failures,
            r.count(None, Status::Error),
            r.count(None, Status::NotApplicable)
        ));
        for c in &r.runs {
            s.push_str(&format!(
                "    <testcase classname=\"cni-conformance.{}\" name=\"{} [{}] {}\" time=\"{:.3}\"",
                xml_escape(&r.name),
                c.id,
                c.level,
                xml_escape(c.title),
                c.millis as f64 / 1000.0
            ));
            let body = match c.status {
                Status::Pass => None,
                Status::Fail => Some(format!(
                    "<failure type=\"{}\" message=\"{}\">SPEC.md: {}</failure>",
                    c.level,
                    xml_escape(&c.detail),
                    xml_escape(c.section)
                )),
                Status::Error => Some(format!("<error message=\"{}\"/>", xml_escape(&c.detail))),
                Status::NotApplicable => {
                    Some(format!("<skipped message=\"{}\"/>", xml_escape(&c.detail)))
                }
            };
            match body {
                None => s.push_str("/>\n"),
                Some(b) => s.push_str(&format!(">{b}</testcase>\n")),
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

/// Targets side by side: one row per check, one column per target.
pub fn markdown_matrix(reports: &[TargetReport]) -> String {
    let mut s = String::from("| check | level | SPEC.md section |");
    for r in reports {
        s.push_str(&format!(" {} ({}) |", r.name, r.kind));
    }
    s.push_str("\n|---|---|---|");
    for _ in reports {
        s.push_str("---|");
    }
    s.push('\n');
    for c in catalogue() {
        s.push_str(&format!(
            "| {} {} | {} | {} |",
            c.id, c.title, c.level, c.section
        ));
        for r in reports {
            let cell = r
                .runs
                .iter()
                .find(|x| x.id == c.id)
                .map(|x| match x.status {
                    Status::Pass => "pass",
                    Status::Fail if x.level == Level::Must => "**FAIL**",
                    Status::Fail => "fail",
                    Status::NotApplicable => "n/a",
                    Status::Error => "error",
                })
                .unwrap_or("");
            s.push_str(&format!(" {cell} |"));
        }
        s.push('\n');
    }
    s.push_str("| supportedVersions | | |");
    for r in reports {
        s.push_str(&format!(" {} |", r.versions.join(" ")));
    }
    s.push('\n');
    s
}

/// The details of every failure, for a Markdown page.
pub fn markdown_failures(reports: &[TargetReport]) -> String {
    let mut s = String::new();
    for r in reports {
        for c in r
            .runs
            .iter()
            .filter(|c| matches!(c.status, Status::Fail | Status::Error))
        {
            s.push_str(&format!(
                "- **{}** {} ({}): {}\n",
                r.name,
                c.id,
                c.level,
                c.detail.replace('|', "\\|")
            ));
        }
    }
    s
}
