//! DEL: repeated, without the netns, without CNI_NETNS, without prevResult, after a failed ADD.

use super::{Added, CheckResult, Ctx, Outcome, verdict};
use crate::spec::runner::EnvEdit;
use crate::spec::target::Kind;

pub fn twice(ctx: &Ctx) -> CheckResult {
    let Added { s, a, v, prev } = match ctx.added()? {
        Ok(added) => added,
        Err(o) => return Ok(o),
    };
    let mut problems = Vec::new();
    for n in ["first", "second"] {
        let r = s.del(&a, &v, Some(&prev));
        if !r.ok() {
            problems.push(format!("{n} DEL: {}", r.describe()));
        }
    }
    Ok(verdict(problems, "both succeeded"))
}

pub fn netns_gone(ctx: &Ctx) -> CheckResult {
    let Added { s, mut a, v, prev } = match ctx.added()? {
        Ok(added) => added,
        Err(o) => return Ok(o),
    };
    a.netns.remove();
    let r = s.del(&a, &v, Some(&prev));
    Ok(verdict(
        (!r.ok()).then(|| r.describe()).into_iter().collect(),
        "succeeded with CNI_NETNS naming a deleted netns",
    ))
}

pub fn no_netns(ctx: &Ctx) -> CheckResult {
    let Added { s, a, v, prev } = match ctx.added()? {
        Ok(added) => added,
        Err(o) => return Ok(o),
    };
    let r = s.invoke(
        "DEL",
        Some(&a),
        &s.with_prev(&v, Some(&prev)),
        &EnvEdit::unset("CNI_NETNS"),
    );
    let _ = s.del(&a, &v, Some(&prev));
    Ok(verdict(
        (!r.ok()).then(|| r.describe()).into_iter().collect(),
        "succeeded without CNI_NETNS",
    ))
}

pub fn no_prev(ctx: &Ctx) -> CheckResult {
    let Added { s, a, v, prev } = match ctx.added()? {
        Ok(added) => added,
        Err(o) => return Ok(o),
    };
    let r = s.del(&a, &v, None);
    let mut problems: Vec<String> = (!r.ok()).then(|| r.describe()).into_iter().collect();
    if r.ok() && ctx.target.kind == Kind::Main && a.netns.has_link(&a.ifname) {
        problems.push(format!("{} still in the container netns", a.ifname));
    }
    let _ = s.del(&a, &v, Some(&prev));
    Ok(verdict(problems, "succeeded without prevResult"))
}

pub fn after_failed_add(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let v = ctx.version();
    // A main plugin fails for real when the interface name is taken; others get a version
    // they cannot speak.
    let add = if ctx.target.kind == Kind::Main {
        a.netns.add_link(&a.ifname)?;
        s.add(&a, &v)
    } else {
        s.add(&a, super::version::UNSUPPORTED)
    };
    if add.ok() {
        let _ = s.del(&a, &v, None);
        return Ok(Outcome::na(format!(
            "could not make ADD fail (see ADD-04/VER-03): {}",
            add.describe()
        )));
    }
    let r = s.del(&a, &v, None);
    Ok(verdict(
        (!r.ok()).then(|| r.describe()).into_iter().collect(),
        "succeeded",
    ))
}
