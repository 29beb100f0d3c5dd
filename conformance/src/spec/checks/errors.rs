//! Bad input (environment, stdin, config), the error object, and what goes on stdout.

use serde_json::Value;

use super::{Added, CheckResult, Ctx, Outcome, expect_code, expect_failure, verdict};
use crate::spec::runner::{EnvEdit, Response, Session};

const REQUIRED_ON_ADD: &[&str] = &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"];

/// Runs an ADD that must fail with `edit` applied, then a DEL to undo a lenient plugin's work.
fn failing_add(s: &mut Session, ctx: &Ctx, edit: &EnvEdit) -> crate::Result<Response> {
    let a = s.attachment()?;
    let r = s.invoke("ADD", Some(&a), &s.add_config(&a, &ctx.version()), edit);
    let _ = s.del(&a, &ctx.version(), None);
    Ok(r)
}

fn env_missing_with(ctx: &Ctx, code: bool) -> CheckResult {
    let mut s = ctx.session()?;
    let mut problems = Vec::new();
    for var in REQUIRED_ON_ADD {
        let r = failing_add(&mut s, ctx, &EnvEdit::unset(var))?;
        let p = if code {
            expect_code(&r, 4)
        } else {
            expect_failure(&r)
        };
        if let Some(p) = p {
            problems.push(format!("without {var}: {p}"));
        }
    }
    Ok(verdict(problems, "each refused"))
}

pub fn env_missing(ctx: &Ctx) -> CheckResult {
    env_missing_with(ctx, false)
}

pub fn env_missing_code(ctx: &Ctx) -> CheckResult {
    env_missing_with(ctx, true)
}

pub fn unknown_command(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let r = failing_add(&mut s, ctx, &EnvEdit::set("CNI_COMMAND", "FROBNICATE"))?;
    Ok(verdict(
        expect_failure(&r).into_iter().collect(),
        &r.describe(),
    ))
}

pub fn env_invalid(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let cases: [(&'static str, &str); 3] = [
        ("CNI_CONTAINERID", "-bad/../id"),
        ("CNI_IFNAME", "eth/0"),
        ("CNI_IFNAME", "a-name-too-long-0"),
    ];
    let mut problems = Vec::new();
    for (var, value) in cases {
        let r = failing_add(&mut s, ctx, &EnvEdit::set(var, value))?;
        if let Some(p) = expect_code(&r, 4) {
            problems.push(format!("{var}={value:?}: {p}"));
        }
    }
    Ok(verdict(problems, "each refused with code 4"))
}

/// The config cut at two thirds: what a runtime's short write would deliver.
pub fn truncated_config(s: &Session, ctx: &Ctx) -> Vec<u8> {
    let full = s.config(&ctx.version()).to_string().into_bytes();
    full[..full.len() * 2 / 3].to_vec()
}

fn stdin_with(ctx: &Ctx, code: bool) -> CheckResult {
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let r = s.invoke_raw(
        "ADD",
        Some(&a),
        &truncated_config(&s, ctx),
        &EnvEdit::default(),
    );
    let _ = s.del(&a, &ctx.version(), None);
    let p = if code {
        expect_code(&r, 6)
    } else {
        expect_failure(&r)
    };
    Ok(verdict(p.into_iter().collect(), &r.describe()))
}

pub fn stdin_undecodable(ctx: &Ctx) -> CheckResult {
    stdin_with(ctx, false)
}

pub fn stdin_undecodable_code(ctx: &Ctx) -> CheckResult {
    stdin_with(ctx, true)
}

pub fn config_invalid(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let mut c = s.add_config(&a, &ctx.version());
    if let Some(o) = c.as_object_mut() {
        o.remove("name");
    }
    let r = s.invoke("ADD", Some(&a), &c, &EnvEdit::default());
    let _ = s.del(&a, &ctx.version(), None);
    Ok(verdict(
        expect_code(&r, 7).into_iter().collect(),
        &r.describe(),
    ))
}

pub fn error_shape(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let mut responses = Vec::new();
    let a = s.attachment()?;
    responses.push((
        "truncated stdin",
        s.invoke_raw(
            "ADD",
            Some(&a),
            &truncated_config(&s, ctx),
            &EnvEdit::default(),
        ),
    ));
    responses.push((
        "unsupported cniVersion",
        s.add(&a, super::version::UNSUPPORTED),
    ));
    responses.push((
        "no CNI_CONTAINERID",
        s.invoke(
            "ADD",
            Some(&a),
            &s.add_config(&a, &ctx.version()),
            &EnvEdit::unset("CNI_CONTAINERID"),
        ),
    ));
    let _ = s.del(&a, &ctx.version(), None);
    let mut problems = Vec::new();
    let mut checked = 0;
    for (what, r) in &responses {
        if r.ok() {
            continue; // accepted: other checks judge that
        }
        checked += 1;
        match r.json_object() {
            Err(e) => problems.push(format!(
                "{what}: {e} (stderr {})",
                crate::spec::runner::clip(r.stderr.trim())
            )),
            Ok(o) => {
                if !o.get("code").is_some_and(Value::is_u64) {
                    problems.push(format!("{what}: no integer \"code\": {}", r.stdout.trim()));
                }
                if !o.get("msg").is_some_and(Value::is_string) {
                    problems.push(format!("{what}: no string \"msg\": {}", r.stdout.trim()));
                }
            }
        }
    }
    if checked == 0 {
        return Ok(Outcome::fail("none of the bad inputs produced an error"));
    }
    Ok(verdict(
        problems,
        &format!("{checked} error(s), each one object on stdout"),
    ))
}

pub fn stdout_only_result(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let v = ctx.version();
    let mut problems = Vec::new();
    let r = s.add(&a, &v);
    let prev = match r.json_object() {
        Ok(o) => Some(Value::Object(o)),
        Err(e) => {
            problems.push(format!("ADD: {e}"));
            None
        }
    };
    if !r.ok() {
        problems.push(format!("ADD failed: {}", r.describe()));
    }
    let _ = s.del(&a, &v, prev.as_ref());
    let r = s.invoke(
        "VERSION",
        None,
        &serde_json::json!({"cniVersion": v}),
        &EnvEdit::default(),
    );
    if let Err(e) = r.json_object() {
        problems.push(format!("VERSION: {e}"));
    }
    Ok(verdict(problems, "one JSON object each"))
}

pub fn stdout_quiet(ctx: &Ctx) -> CheckResult {
    let Added { s, a, v, prev } = match ctx.added()? {
        Ok(added) => added,
        Err(o) => return Ok(o),
    };
    let mut problems = Vec::new();
    let c = s.check(&a, &v, Some(&prev));
    if c.ok() && !c.stdout.trim().is_empty() {
        problems.push(format!(
            "CHECK printed {}",
            crate::spec::runner::clip(c.stdout.trim())
        ));
    }
    let d = s.del(&a, &v, Some(&prev));
    if !d.ok() {
        problems.push(format!("DEL failed: {}", d.describe()));
    } else if !d.stdout.trim().is_empty() {
        problems.push(format!(
            "DEL printed {}",
            crate::spec::runner::clip(d.stdout.trim())
        ));
    }
    Ok(verdict(problems, "nothing on stdout"))
}
