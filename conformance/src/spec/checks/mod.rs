//! The catalogue of conformance checks: each has an ID, a requirement level (MUST or SHOULD,
//! as the spec words the rule), the SPEC.md (spec-v1.1.0) section it comes from, the target
//! kinds it applies to, and the `break` of `cni-broken-plugin` that violates exactly its rule
//! (the runner's own tests use it to show the check is not vacuous).
//!
//! Version-gated rules are "not applicable" when the plugin does not claim the version
//! (GC and STATUS exist from 1.1.0; each result schema only for a version the plugin lists).

mod add;
mod del;
mod errors;
mod lifecycle;
mod version;

use std::fmt;
use std::time::Instant;

use crate::spec::runner::{Attachment, Response, Session, kernel_supports_link};
use crate::spec::target::{Kind, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Must,
    Should,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// The rule does not apply (kind, version not claimed, kernel lacks a link type).
    NotApplicable,
    /// The runner could not carry the check out (namespace, setup): not the plugin's verdict.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::NotApplicable => "n/a",
            Status::Error => "error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
}

impl Outcome {
    pub fn pass(detail: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Pass,
            detail: detail.into(),
        }
    }
    pub fn fail(detail: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Fail,
            detail: detail.into(),
        }
    }
    pub fn na(detail: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::NotApplicable,
            detail: detail.into(),
        }
    }
    pub fn error(detail: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Error,
            detail: detail.into(),
        }
    }
}

/// What a check function returns: `Err` for the runner's own trouble.
pub type CheckResult = crate::Result<Outcome>;

/// One entry of the catalogue.
pub struct Check {
    pub id: &'static str,
    pub level: Level,
    /// SPEC.md (spec-v1.1.0) section(s) the rule comes from.
    pub section: &'static str,
    pub title: &'static str,
    pub kinds: &'static [Kind],
    /// The `break` value of `cni-broken-plugin` that violates exactly this rule.
    pub breaks: &'static str,
    pub run: fn(&Ctx) -> CheckResult,
}

const ALL: &[Kind] = &[Kind::Main, Kind::Ipam, Kind::Chained];
const MAIN: &[Kind] = &[Kind::Main];
const CHAINED: &[Kind] = &[Kind::Chained];

/// The catalogue, in report order.
pub fn catalogue() -> &'static [Check] {
    use Level::*;
    static CHECKS: &[Check] = &[
        Check {
            id: "VER-01",
            level: Must,
            section: "Section 2: VERSION; Section 5: Version",
            title: "VERSION prints {cniVersion, supportedVersions} on stdout and exits 0",
            kinds: ALL,
            breaks: "version-shape",
            run: version::shape,
        },
        Check {
            id: "VER-02",
            level: Should,
            section: "Section 5: Version",
            title: "VERSION answers with the cniVersion given on stdin",
            kinds: ALL,
            breaks: "version-echo",
            run: version::echo,
        },
        Check {
            id: "VER-03",
            level: Must,
            section: "Section 1: Configuration format (cniVersion); Section 5: Success",
            title: "ADD with a cniVersion the plugin does not support fails and creates nothing",
            kinds: ALL,
            breaks: "accept-any-version",
            run: version::unsupported,
        },
        Check {
            id: "VER-04",
            level: Should,
            section: "Section 5: Error (well-known code 1)",
            title: "... with error code 1 (incompatible CNI version)",
            kinds: ALL,
            breaks: "version-code",
            run: version::unsupported_code,
        },
        Check {
            id: "ENV-01",
            level: Must,
            section: "Section 2: Parameters; ADD (required environment)",
            title: "ADD without CNI_CONTAINERID, CNI_NETNS or CNI_IFNAME fails",
            kinds: ALL,
            breaks: "env-unchecked",
            run: errors::env_missing,
        },
        Check {
            id: "ENV-02",
            level: Should,
            section: "Section 5: Error (well-known code 4)",
            title: "... with error code 4 (invalid environment variables)",
            kinds: ALL,
            breaks: "env-code",
            run: errors::env_missing_code,
        },
        Check {
            id: "ENV-03",
            level: Must,
            section: "Section 2: Parameters (CNI_COMMAND); Errors",
            title: "an unknown CNI_COMMAND fails",
            kinds: ALL,
            breaks: "unknown-command-ok",
            run: errors::unknown_command,
        },
        Check {
            id: "ENV-04",
            level: Should,
            section: "Section 2: Parameters (CNI_CONTAINERID, CNI_IFNAME); Section 5: Error (4)",
            title: "an invalid CNI_CONTAINERID or CNI_IFNAME is refused with code 4",
            kinds: ALL,
            breaks: "bad-id-accepted",
            run: errors::env_invalid,
        },
        Check {
            id: "STDIN-01",
            level: Must,
            section: "Section 2: Errors",
            title: "ADD with undecodable stdin (a truncated config) fails",
            kinds: ALL,
            breaks: "stdin-lenient",
            run: errors::stdin_undecodable,
        },
        Check {
            id: "STDIN-02",
            level: Should,
            section: "Section 5: Error (well-known code 6)",
            title: "... with error code 6 (failed to decode content)",
            kinds: ALL,
            breaks: "stdin-code",
            run: errors::stdin_undecodable_code,
        },
        Check {
            id: "CONF-01",
            level: Should,
            section: "Section 1: Configuration format (name); Section 5: Error (7)",
            title: "a config without its required \"name\" is refused with code 7",
            kinds: ALL,
            breaks: "config-lenient",
            run: errors::config_invalid,
        },
        Check {
            id: "ERR-01",
            level: Should,
            section: "Section 2: Errors; Section 5: Error",
            title: "an error is one JSON object {code, msg, ...} on stdout, with a non-zero exit",
            kinds: ALL,
            breaks: "error-stderr",
            run: errors::error_shape,
        },
        Check {
            id: "OUT-01",
            level: Must,
            section: "Section 2: Overview, ADD; Section 5: Success",
            title: "ADD and VERSION print nothing on stdout but the one result object",
            kinds: ALL,
            breaks: "stdout-noise",
            run: errors::stdout_only_result,
        },
        Check {
            id: "OUT-02",
            level: Should,
            section: "Section 2: CHECK; Appendix: Check example",
            title: "successful CHECK and DEL print nothing on stdout",
            kinds: ALL,
            breaks: "del-noise",
            run: errors::stdout_quiet,
        },
        Check {
            id: "ADD-01",
            level: Must,
            section: "Section 5: Success (spec-v0.4.0 Result)",
            title: "ADD result schema, cniVersion 0.4.0",
            kinds: ALL,
            breaks: "result-v040",
            run: add::schema_040,
        },
        Check {
            id: "ADD-02",
            level: Must,
            section: "Section 5: Success; Delegated plugins (IPAM)",
            title: "ADD result schema, cniVersion 1.0.0",
            kinds: ALL,
            breaks: "result-v100",
            run: add::schema_100,
        },
        Check {
            id: "ADD-03",
            level: Must,
            section: "Section 5: Success; Delegated plugins (IPAM)",
            title: "ADD result schema, cniVersion 1.1.0 (route mtu/advmss/priority/table/scope)",
            kinds: ALL,
            breaks: "result-v110",
            run: add::schema_110,
        },
        Check {
            id: "ADD-04",
            level: Must,
            section: "Section 2: ADD",
            title: "ADD fails when CNI_IFNAME already exists in the container",
            kinds: MAIN,
            breaks: "iface-exists",
            run: add::iface_exists,
        },
        Check {
            id: "PREV-01",
            level: Must,
            section: "Section 2: ADD; Section 5: Success",
            title: "a chained plugin outputs its prevResult (passed through or modified)",
            kinds: CHAINED,
            breaks: "prev-drop",
            run: add::prev_passthrough,
        },
        Check {
            id: "DEL-01",
            level: Must,
            section: "Section 2: DEL; Section 3: Lifecycle & Ordering",
            title: "DEL twice: both succeed",
            kinds: ALL,
            breaks: "del-twice",
            run: del::twice,
        },
        Check {
            id: "DEL-02",
            level: Must,
            section: "Section 2: DEL",
            title: "DEL succeeds when the container's netns is gone",
            kinds: ALL,
            breaks: "del-netns-gone",
            run: del::netns_gone,
        },
        Check {
            id: "DEL-03",
            level: Must,
            section: "Section 2: DEL (Input: CNI_NETNS optional)",
            title: "DEL succeeds without CNI_NETNS",
            kinds: ALL,
            breaks: "del-no-netns",
            run: del::no_netns,
        },
        Check {
            id: "DEL-04",
            level: Should,
            section: "Section 2: DEL; Section 3: Deleting an attachment",
            title: "DEL without prevResult succeeds (and cleans up)",
            kinds: ALL,
            breaks: "del-no-prev",
            run: del::no_prev,
        },
        Check {
            id: "DEL-05",
            level: Must,
            section: "Section 3: Lifecycle & Ordering; Section 2: DEL",
            title: "DEL after a failed ADD succeeds",
            kinds: ALL,
            breaks: "del-after-failed-add",
            run: del::after_failed_add,
        },
        Check {
            id: "ADD-05",
            level: Must,
            section: "Section 5: Success (spec-v0.3.0 Result); Section 2: DEL",
            title: "ADD result schema, cniVersion 0.3.0, then DEL without prevResult",
            kinds: ALL,
            breaks: "result-v030",
            run: add::schema_030,
        },
        Check {
            id: "ADD-06",
            level: Must,
            section: "Section 5: Success (spec-v0.3.1 Result); Section 2: DEL",
            title: "ADD result schema, cniVersion 0.3.1, then DEL without prevResult",
            kinds: ALL,
            breaks: "result-v031",
            run: add::schema_031,
        },
        Check {
            id: "CHK-02",
            level: Should,
            section: "Section 2: CHECK (spec-v0.4.0); Section 5: Error (well-known code 1)",
            title: "CHECK with a config older than 0.4.0 is refused with code 1",
            kinds: ALL,
            breaks: "check-before-0.4",
            run: lifecycle::check_before_0_4_0,
        },
        Check {
            id: "CHK-01",
            level: Must,
            section: "Section 2: CHECK",
            title: "CHECK right after ADD (prevResult = the ADD result) succeeds",
            kinds: ALL,
            breaks: "check-fails",
            run: lifecycle::check_after_add,
        },
        Check {
            id: "GC-01",
            level: Must,
            section: "Section 2: GC (1.1.0)",
            title: "GC with cni.dev/valid-attachments [A] succeeds and keeps A (CHECK A passes)",
            kinds: ALL,
            breaks: "gc-ignores-list",
            run: lifecycle::gc_present,
        },
        Check {
            id: "GC-02",
            level: Should,
            section: "Section 2: GC (1.1.0)",
            title: "GC without the valid-attachments key removes no attachment",
            kinds: ALL,
            breaks: "gc-absent-is-empty",
            run: lifecycle::gc_absent,
        },
        Check {
            id: "GC-03",
            level: Should,
            section: "Section 2: GC (1.1.0)",
            title: "GC with an empty valid-attachments list succeeds; DELs after it succeed",
            kinds: ALL,
            breaks: "gc-empty-fails",
            run: lifecycle::gc_empty,
        },
        Check {
            id: "STATUS-01",
            level: Must,
            section: "Section 2: STATUS (1.1.0)",
            title: "STATUS exits 0 when the plugin can serve ADD",
            kinds: ALL,
            breaks: "status-fails",
            run: lifecycle::status,
        },
        Check {
            id: "CONC-01",
            level: Must,
            section: "Section 3: Lifecycle & Ordering",
            title: "8 concurrent ADDs (then DELs) of distinct attachments succeed, distinct IPs",
            kinds: ALL,
            breaks: "no-locking",
            run: lifecycle::concurrent,
        },
    ];
    CHECKS
}

/// Everything a check knows about its target.
pub struct Ctx<'t> {
    pub target: &'t Target,
    /// `supportedVersions` from VERSION (empty when VERSION failed).
    pub versions: Vec<String>,
}

impl<'t> Ctx<'t> {
    pub fn new(target: &'t Target) -> Ctx<'t> {
        let versions = version::probe(target).unwrap_or_default();
        Ctx { target, versions }
    }

    pub fn supports(&self, v: &str) -> bool {
        self.versions.iter().any(|s| s == v)
    }

    /// The version most checks use: the config's (the runtime's choice).
    pub fn version(&self) -> String {
        self.target.config_version()
    }

    pub fn session(&self) -> crate::Result<Session<'t>> {
        Session::new(self.target)
    }

    /// The common start of checks on an existing attachment: a session, one attachment and
    /// a working ADD of it in the target's version. `Err` carries the check's failure when
    /// that ADD did not work.
    pub fn added(&self) -> crate::Result<std::result::Result<Added<'t>, Outcome>> {
        let mut s = self.session()?;
        let a = s.attachment()?;
        let v = self.version();
        Ok(self.add_ok(&s, &a, &v).map(|prev| Added { s, a, v, prev }))
    }

    /// For a check that needs a working ADD first.
    pub fn add_ok(
        &self,
        s: &Session,
        a: &Attachment,
        version: &str,
    ) -> std::result::Result<serde_json::Value, Outcome> {
        let r = s.add(a, version);
        if !r.ok() {
            return Err(Outcome::fail(format!("setup ADD failed: {}", r.describe())));
        }
        r.json_object()
            .map(serde_json::Value::Object)
            .map_err(|e| Outcome::fail(format!("setup ADD: {e}")))
    }
}

/// What [`Ctx::added`] sets up.
pub struct Added<'t> {
    pub s: Session<'t>,
    pub a: Attachment,
    pub v: String,
    pub prev: serde_json::Value,
}

/// The result of one check on one target.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: &'static str,
    pub level: Level,
    pub section: &'static str,
    pub title: &'static str,
    pub status: Status,
    pub detail: String,
    pub millis: u128,
}

impl CheckRun {
    /// A MUST that failed, or could not be run: makes the exit status non-zero.
    pub fn must_failed(&self) -> bool {
        self.level == Level::Must && matches!(self.status, Status::Fail | Status::Error)
    }
}

/// Runs the checks whose IDs `only` lists (all when empty) against `target`.
pub fn run_target(target: &Target, only: &[String]) -> (Vec<String>, Vec<CheckRun>) {
    let missing: Vec<&String> = target
        .requires
        .iter()
        .filter(|k| !kernel_supports_link(k))
        .collect();
    let ctx = Ctx::new(target);
    let mut runs = Vec::new();
    for c in catalogue() {
        if !only.is_empty() && !only.iter().any(|o| o.eq_ignore_ascii_case(c.id)) {
            continue;
        }
        let start = Instant::now();
        let outcome = if !c.kinds.contains(&target.kind) {
            Outcome::na(format!("not for {} plugins", target.kind.as_str()))
        } else if !missing.is_empty() {
            Outcome::na(format!(
                "this kernel cannot make {} links (run in the VM)",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else if !target.binary.is_file() {
            Outcome::error(format!("binary {} not found", target.binary.display()))
        } else {
            match (c.run)(&ctx) {
                Ok(o) => o,
                Err(e) => Outcome::error(e.to_string()),
            }
        };
        runs.push(CheckRun {
            id: c.id,
            level: c.level,
            section: c.section,
            title: c.title,
            status: outcome.status,
            detail: outcome.detail,
            millis: start.elapsed().as_millis(),
        });
    }
    (ctx.versions, runs)
}

/// The problem of an expected failure: `None` when the plugin failed (non-zero exit).
pub fn expect_failure(r: &Response) -> Option<String> {
    if r.timed_out {
        Some(format!("hung: {}", r.describe()))
    } else if r.ok() {
        Some(format!("succeeded: {}", r.describe()))
    } else {
        None
    }
}

/// The problem of an expected error code: `None` when stdout has an error object with it.
pub fn expect_code(r: &Response, code: i64) -> Option<String> {
    if let Some(p) = expect_failure(r) {
        return Some(p);
    }
    match r.error_code() {
        Some(c) if c == code => None,
        Some(c) => Some(format!("code {c}, not {code}: {}", r.describe())),
        None => Some(format!("no error object on stdout: {}", r.describe())),
    }
}

/// Joins problems into an outcome: pass with `ok` when there are none.
pub fn verdict(problems: Vec<String>, ok: &str) -> Outcome {
    if problems.is_empty() {
        Outcome::pass(ok)
    } else {
        Outcome::fail(problems.join("; "))
    }
}
