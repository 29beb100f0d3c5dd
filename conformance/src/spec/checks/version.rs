//! VERSION and version negotiation.

use serde_json::{Value, json};

use super::{CheckResult, Ctx, Outcome, expect_code, expect_failure, verdict};
use crate::spec::runner::{EnvEdit, Session, parse_version};
use crate::spec::target::Target;

/// A version no plugin supports (semver-valid, so only support decides).
pub const UNSUPPORTED: &str = "99.0.0";

/// `supportedVersions` of the target, as a runtime learns them.
pub fn probe(target: &Target) -> Option<Vec<String>> {
    let s = Session::new(target).ok()?;
    let r = s.invoke(
        "VERSION",
        None,
        &json!({"cniVersion": target.config_version()}),
        &EnvEdit::default(),
    );
    let o = r.json_object().ok()?;
    Some(
        o.get("supportedVersions")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    )
}

pub fn shape(ctx: &Ctx) -> CheckResult {
    let s = ctx.session()?;
    let r = s.invoke(
        "VERSION",
        None,
        &json!({"cniVersion": ctx.version()}),
        &EnvEdit::default(),
    );
    if !r.ok() {
        return Ok(Outcome::fail(r.describe()));
    }
    let o = match r.json_object() {
        Ok(o) => o,
        Err(e) => return Ok(Outcome::fail(e)),
    };
    let mut problems = Vec::new();
    match o.get("cniVersion").and_then(Value::as_str) {
        Some(v) if parse_version(v).is_some() => {}
        other => problems.push(format!("cniVersion {other:?} is not a version")),
    }
    match o.get("supportedVersions").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            for v in list {
                if v.as_str().and_then(parse_version).is_none() {
                    problems.push(format!("supportedVersions holds {v}, not a version"));
                }
            }
        }
        _ => problems.push(format!(
            "no non-empty supportedVersions list: {}",
            r.stdout.trim()
        )),
    }
    Ok(verdict(
        problems,
        &format!(
            "supportedVersions {}",
            o.get("supportedVersions").cloned().unwrap_or_default()
        ),
    ))
}

pub fn echo(ctx: &Ctx) -> CheckResult {
    // The oldest of the versions this suite knows that the plugin lists: a runtime speaking
    // it must get it back.
    let input = ["0.4.0", "1.0.0", "1.1.0"]
        .into_iter()
        .find(|v| ctx.supports(v))
        .map(str::to_string)
        .unwrap_or_else(|| ctx.version());
    let s = ctx.session()?;
    let r = s.invoke(
        "VERSION",
        None,
        &json!({"cniVersion": input}),
        &EnvEdit::default(),
    );
    let got = r.json_object().ok().and_then(|o| {
        o.get("cniVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Ok(match got {
        Some(v) if v == input => Outcome::pass(format!("{input} in, {v} out")),
        Some(v) => Outcome::fail(format!("stdin cniVersion {input}, answered {v}")),
        None => Outcome::fail(r.describe()),
    })
}

fn unsupported_add(ctx: &Ctx, code: bool) -> CheckResult {
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let had_link = a.netns.has_link(&a.ifname);
    let r = s.add(&a, UNSUPPORTED);
    let mut problems: Vec<String> = if code {
        expect_code(&r, 1).into_iter().collect()
    } else {
        expect_failure(&r).into_iter().collect()
    };
    if !code && !had_link && a.netns.has_link(&a.ifname) {
        problems.push(format!("{} was created in the container", a.ifname));
    }
    // Undo whatever a lenient plugin did.
    let _ = s.del(&a, &ctx.version(), None);
    Ok(verdict(problems, &r.describe()))
}

pub fn unsupported(ctx: &Ctx) -> CheckResult {
    unsupported_add(ctx, false)
}

pub fn unsupported_code(ctx: &Ctx) -> CheckResult {
    unsupported_add(ctx, true)
}
