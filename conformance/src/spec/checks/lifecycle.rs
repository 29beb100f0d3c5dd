//! CHECK, GC and STATUS (spec 1.1), and concurrent attachments.

use std::collections::HashSet;
use std::thread;

use serde_json::Value;

use super::{CheckResult, Ctx, Outcome, verdict};
use crate::spec::runner::{Attachment, EnvEdit, Session};
use crate::spec::target::Kind;

const V11: &str = "1.1.0";

fn check_version(ctx: &Ctx) -> String {
    ctx.version()
}

pub fn check_after_add(ctx: &Ctx) -> CheckResult {
    let v = check_version(ctx);
    if crate::spec::runner::version_lt(&v, "0.4.0") {
        return Ok(Outcome::na(format!(
            "CHECK exists from 0.4.0; config is {v}"
        )));
    }
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let prev = match ctx.add_ok(&s, &a, &v) {
        Ok(p) => p,
        Err(o) => return Ok(o),
    };
    let r = s.check(&a, &v, Some(&prev));
    let _ = s.del(&a, &v, Some(&prev));
    Ok(verdict(
        (!r.ok()).then(|| r.describe()).into_iter().collect(),
        "CHECK succeeded",
    ))
}

/// CHECK exists from 0.4.0: a config of an older version the plugin lists (0.3.1, else 0.3.0)
/// is refused, with code 1 as libcni's skeleton answers, after an ADD of that version.
pub fn check_before_0_4_0(ctx: &Ctx) -> CheckResult {
    let Some(v) = ["0.3.1", "0.3.0"].into_iter().find(|v| ctx.supports(v)) else {
        return Ok(Outcome::na(format!(
            "neither 0.3.0 nor 0.3.1 in supportedVersions {:?}",
            ctx.versions
        )));
    };
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let prev = match ctx.add_ok(&s, &a, v) {
        Ok(p) => p,
        Err(o) => return Ok(o),
    };
    let r = s.check(&a, v, Some(&prev));
    let _ = s.del(&a, v, None);
    Ok(verdict(
        super::expect_code(&r, 1).into_iter().collect(),
        &r.describe(),
    ))
}

/// Two attachments A and B added with 1.1.0, for the GC checks.
struct Pair<'t> {
    s: Session<'t>,
    a: Attachment,
    b: Attachment,
    ra: Value,
    rb: Value,
}

fn gc_setup<'t>(ctx: &Ctx<'t>) -> crate::Result<Result<Pair<'t>, Outcome>> {
    if !ctx.supports(V11) {
        return Ok(Err(Outcome::na(format!(
            "GC is spec 1.1.0; supportedVersions {:?}",
            ctx.versions
        ))));
    }
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let b = s.attachment()?;
    let ra = match ctx.add_ok(&s, &a, V11) {
        Ok(r) => r,
        Err(o) => return Ok(Err(o)),
    };
    let rb = match ctx.add_ok(&s, &b, V11) {
        Ok(r) => r,
        Err(o) => {
            let _ = s.del(&a, V11, Some(&ra));
            return Ok(Err(o));
        }
    };
    Ok(Ok(Pair { s, a, b, ra, rb }))
}

impl Pair<'_> {
    fn check(&self, which: char, problems: &mut Vec<String>) {
        let (att, res) = if which == 'A' {
            (&self.a, &self.ra)
        } else {
            (&self.b, &self.rb)
        };
        let r = self.s.check(att, V11, Some(res));
        if !r.ok() {
            problems.push(format!("CHECK {which} after GC: {}", r.describe()));
        }
    }

    fn del_both(&self, problems: &mut Vec<String>) {
        for (n, att, res) in [('B', &self.b, &self.rb), ('A', &self.a, &self.ra)] {
            let r = self.s.del(att, V11, Some(res));
            if !r.ok() {
                problems.push(format!("DEL {n} after GC: {}", r.describe()));
            }
        }
    }
}

pub fn gc_present(ctx: &Ctx) -> CheckResult {
    let p = match gc_setup(ctx)? {
        Ok(p) => p,
        Err(o) => return Ok(o),
    };
    let mut problems = Vec::new();
    let r = p.s.gc(V11, Some(&[&p.a]));
    if !r.ok() {
        problems.push(format!("GC [A]: {}", r.describe()));
    }
    p.check('A', &mut problems);
    p.del_both(&mut problems);
    Ok(verdict(
        problems,
        "GC [A] succeeded, A intact, DELs succeeded",
    ))
}

pub fn gc_absent(ctx: &Ctx) -> CheckResult {
    let p = match gc_setup(ctx)? {
        Ok(p) => p,
        Err(o) => return Ok(o),
    };
    let mut problems = Vec::new();
    let r = p.s.gc(V11, None);
    p.check('A', &mut problems);
    p.check('B', &mut problems);
    p.del_both(&mut problems);
    Ok(verdict(
        problems,
        &format!(
            "GC without the key {}; A and B intact",
            if r.ok() { "succeeded" } else { "refused" }
        ),
    ))
}

pub fn gc_empty(ctx: &Ctx) -> CheckResult {
    let p = match gc_setup(ctx)? {
        Ok(p) => p,
        Err(o) => return Ok(o),
    };
    let mut problems = Vec::new();
    let r = p.s.gc(V11, Some(&[]));
    if !r.ok() {
        problems.push(format!("GC []: {}", r.describe()));
    } else if !r.stdout.trim().is_empty() {
        problems.push(format!(
            "GC printed {} (no output on success)",
            crate::spec::runner::clip(r.stdout.trim())
        ));
    }
    p.del_both(&mut problems);
    Ok(verdict(problems, "GC [] succeeded, DELs succeeded"))
}

pub fn status(ctx: &Ctx) -> CheckResult {
    if !ctx.supports(V11) {
        return Ok(Outcome::na(format!(
            "STATUS is spec 1.1.0; supportedVersions {:?}",
            ctx.versions
        )));
    }
    let mut s = ctx.session()?;
    let r = s.invoke("STATUS", None, &s.config(V11), &EnvEdit::default());
    let a = s.attachment()?;
    let add = s.add(&a, V11);
    let prev = add.json_object().ok().map(Value::Object);
    let _ = s.del(&a, V11, prev.as_ref());
    Ok(match (r.ok(), add.ok()) {
        (true, true) => Outcome::pass("STATUS 0, and ADD works"),
        (false, true) => Outcome::fail(format!("STATUS failed though ADD works: {}", r.describe())),
        (true, false) => Outcome::fail(format!("STATUS 0 but ADD fails: {}", add.describe())),
        (false, false) => match r.error_code() {
            Some(50 | 51) => Outcome::pass(format!("STATUS {} and ADD fails", r.describe())),
            _ => Outcome::fail(format!(
                "ADD fails and STATUS did not say so with code 50/51: {}",
                r.describe()
            )),
        },
    })
}

pub const CONCURRENT: usize = 8;

pub fn concurrent(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let v = ctx.version();
    let atts = (0..CONCURRENT)
        .map(|_| s.attachment())
        .collect::<crate::Result<Vec<_>>>()?;
    let s = &s;
    let adds: Vec<_> = thread::scope(|sc| {
        let hs: Vec<_> = atts.iter().map(|a| sc.spawn(|| s.add(a, &v))).collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for (i, r) in adds.iter().enumerate() {
        let res = r.json_object().ok().map(Value::Object);
        if !r.ok() {
            problems.push(format!("ADD {i}: {}", r.describe()));
        } else if let Some(res) = &res {
            let ips = res
                .get("ips")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for ip in ips {
                let addr = ip.get("address").and_then(Value::as_str).unwrap_or("");
                let host = addr.split('/').next().unwrap_or("").to_string();
                if ctx.target.unique_addresses
                    && ctx.target.kind != Kind::Chained
                    && !seen.insert(host.clone())
                {
                    problems.push(format!("address {host} handed out twice"));
                }
            }
        }
        results.push(res);
    }
    let dels: Vec<_> = thread::scope(|sc| {
        let hs: Vec<_> = atts
            .iter()
            .zip(&results)
            .map(|(a, res)| sc.spawn(|| s.del(a, &v, res.as_ref())))
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (i, r) in dels.iter().enumerate() {
        if !r.ok() {
            problems.push(format!("DEL {i}: {}", r.describe()));
        }
    }
    Ok(verdict(
        problems,
        &format!(
            "{CONCURRENT} ADDs and DELs succeeded, {} distinct addresses",
            seen.len()
        ),
    ))
}
