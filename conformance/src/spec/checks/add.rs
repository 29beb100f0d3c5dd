//! ADD: the result schema of each version, an existing interface, prevResult pass-through.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{CheckResult, Ctx, Outcome, expect_failure, verdict};
use crate::spec::runner::{Attachment, version_lt};
use crate::spec::target::Kind;

fn schema(ctx: &Ctx, version: &str) -> CheckResult {
    if !ctx.supports(version) {
        return Ok(Outcome::na(format!(
            "{version} not in supportedVersions {:?}",
            ctx.versions
        )));
    }
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let r = s.add(&a, version);
    if !r.ok() {
        let _ = s.del(&a, version, None);
        return Ok(Outcome::fail(format!("ADD failed: {}", r.describe())));
    }
    let o = match r.json_object() {
        Ok(o) => o,
        Err(e) => {
            let _ = s.del(&a, version, None);
            return Ok(Outcome::fail(e));
        }
    };
    let mut problems = validate_result(&o, version, ctx.target.kind, &a);
    if ctx.target.kind == Kind::Main && !a.netns.has_link(&a.ifname) {
        problems.push(format!("no link {} in the container netns", a.ifname));
    }
    // Before 0.4.0 a runtime sends DEL without prevResult (libcni does): so does the runner.
    let prev = Value::Object(o.clone());
    let d = s.del(
        &a,
        version,
        (!version_lt(version, "0.4.0")).then_some(&prev),
    );
    if !d.ok() {
        problems.push(format!("DEL after it failed: {}", d.describe()));
    }
    let ips: Vec<&str> = o
        .get("ips")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|i| i.get("address").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    Ok(verdict(problems, &format!("ips {ips:?}")))
}

pub fn schema_030(ctx: &Ctx) -> CheckResult {
    schema(ctx, "0.3.0")
}

pub fn schema_031(ctx: &Ctx) -> CheckResult {
    schema(ctx, "0.3.1")
}

pub fn schema_040(ctx: &Ctx) -> CheckResult {
    schema(ctx, "0.4.0")
}

pub fn schema_100(ctx: &Ctx) -> CheckResult {
    schema(ctx, "1.0.0")
}

pub fn schema_110(ctx: &Ctx) -> CheckResult {
    schema(ctx, "1.1.0")
}

fn parse_cidr(s: &str) -> Option<IpAddr> {
    let (a, p) = s.split_once('/')?;
    let ip: IpAddr = a.parse().ok()?;
    let p: u8 = p.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (p <= max).then_some(ip)
}

fn is_uint(v: &Value) -> bool {
    v.is_u64()
}

/// The problems of an ADD result against the spec's Success type for `version`.
pub fn validate_result(
    o: &Map<String, Value>,
    version: &str,
    kind: Kind,
    a: &Attachment,
) -> Vec<String> {
    let mut p = Vec::new();
    let v110 = !version_lt(version, "1.1.0");
    let v040 = version_lt(version, "1.0.0");
    match o.get("cniVersion").and_then(Value::as_str) {
        Some(v) if v == version => {}
        other => p.push(format!("cniVersion {other:?}, not {version:?} as on input")),
    }
    let mut n_ifaces = 0;
    match o.get("interfaces") {
        None => {
            if kind == Kind::Main {
                p.push("no \"interfaces\" (a main plugin lists what it created)".into());
            }
        }
        Some(_) if kind == Kind::Ipam => {
            p.push("an IPAM result has \"interfaces\" (the abbreviated result omits it)".into())
        }
        Some(Value::Array(list)) => {
            n_ifaces = list.len();
            for (i, it) in list.iter().enumerate() {
                let Some(it) = it.as_object() else {
                    p.push(format!("interfaces[{i}] is not an object"));
                    continue;
                };
                if !it.get("name").is_some_and(Value::is_string) {
                    p.push(format!("interfaces[{i}] has no string name"));
                }
                for k in ["mac", "sandbox"] {
                    if it.get(k).is_some_and(|x| !x.is_string()) {
                        p.push(format!("interfaces[{i}].{k} is not a string"));
                    }
                }
                if v110 {
                    if it.get("mtu").is_some_and(|x| !is_uint(x)) {
                        p.push(format!("interfaces[{i}].mtu is not an unsigned integer"));
                    }
                    for k in ["socketPath", "pciID"] {
                        if it.get(k).is_some_and(|x| !x.is_string()) {
                            p.push(format!("interfaces[{i}].{k} is not a string"));
                        }
                    }
                }
            }
            if kind == Kind::Main
                && !list
                    .iter()
                    .any(|i| i.get("name").and_then(Value::as_str) == Some(a.ifname.as_str()))
            {
                p.push(format!("interfaces does not list {}", a.ifname));
            }
        }
        Some(other) => p.push(format!("interfaces is not a list: {other}")),
    }
    match o.get("ips") {
        None if kind == Kind::Main || kind == Kind::Ipam => {
            p.push("no \"ips\"".into());
        }
        None => {}
        Some(Value::Array(list)) => {
            for (i, ip) in list.iter().enumerate() {
                let Some(ip) = ip.as_object() else {
                    p.push(format!("ips[{i}] is not an object"));
                    continue;
                };
                let addr = ip.get("address").and_then(Value::as_str);
                let parsed = addr.and_then(parse_cidr);
                if parsed.is_none() {
                    p.push(format!(
                        "ips[{i}].address {addr:?} is not an address in CIDR"
                    ));
                }
                if let Some(g) = ip.get("gateway")
                    && g.as_str().and_then(|g| g.parse::<IpAddr>().ok()).is_none()
                {
                    p.push(format!("ips[{i}].gateway {g} is not an address"));
                }
                match ip.get("interface") {
                    Some(_) if kind == Kind::Ipam => p.push(format!(
                        "ips[{i}] of an IPAM result has \"interface\" (omitted when abbreviated)"
                    )),
                    Some(x) => match x.as_u64() {
                        Some(n) if (n as usize) < n_ifaces => {}
                        _ => p.push(format!(
                            "ips[{i}].interface {x} is not an index into interfaces ({n_ifaces})"
                        )),
                    },
                    None => {}
                }
                if v040 {
                    let want = parsed.map(|a| if a.is_ipv4() { "4" } else { "6" });
                    match ip.get("version").and_then(Value::as_str) {
                        Some(v) if Some(v) == want => {}
                        other => p.push(format!(
                            "ips[{i}].version {other:?}: {version} requires \"4\" or \"6\" matching the address"
                        )),
                    }
                }
            }
        }
        Some(other) => p.push(format!("ips is not a list: {other}")),
    }
    match o.get("routes") {
        None => {}
        Some(Value::Array(list)) => {
            for (i, r) in list.iter().enumerate() {
                let Some(r) = r.as_object() else {
                    p.push(format!("routes[{i}] is not an object"));
                    continue;
                };
                let dst = r.get("dst").and_then(Value::as_str);
                if dst.and_then(parse_cidr).is_none() {
                    p.push(format!("routes[{i}].dst {dst:?} is not a CIDR"));
                }
                if let Some(g) = r.get("gw")
                    && g.as_str().and_then(|g| g.parse::<IpAddr>().ok()).is_none()
                {
                    p.push(format!("routes[{i}].gw {g} is not an address"));
                }
                if v110 {
                    for k in ["mtu", "advmss", "priority", "table", "scope"] {
                        if r.get(k).is_some_and(|x| !is_uint(x)) {
                            p.push(format!("routes[{i}].{k} {} is not an integer", r[k]));
                        }
                    }
                }
            }
        }
        Some(other) => p.push(format!("routes is not a list: {other}")),
    }
    match o.get("dns") {
        None => {}
        Some(Value::Object(d)) => {
            if d.get("domain").is_some_and(|x| !x.is_string()) {
                p.push("dns.domain is not a string".into());
            }
            for k in ["nameservers", "search", "options"] {
                if let Some(x) = d.get(k)
                    && !x.as_array().is_some_and(|l| l.iter().all(Value::is_string))
                {
                    p.push(format!("dns.{k} is not a list of strings"));
                }
            }
        }
        Some(other) => p.push(format!("dns is not an object: {other}")),
    }
    p
}

pub fn iface_exists(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    a.netns.add_link(&a.ifname)?;
    let r = s.add(&a, &ctx.version());
    let _ = s.del(&a, &ctx.version(), None);
    Ok(verdict(
        expect_failure(&r).into_iter().collect(),
        &r.describe(),
    ))
}

fn keyed<'v>(v: &'v Value, list: &str, key: &str) -> Vec<&'v Value> {
    v.get(list)
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|x| x.get(key)).collect())
        .unwrap_or_default()
}

pub fn prev_passthrough(ctx: &Ctx) -> CheckResult {
    let mut s = ctx.session()?;
    let a = s.attachment()?;
    let v = ctx.version();
    let prev = s.prev_result(&a, &v).unwrap_or_default();
    let out = match ctx.add_ok(&s, &a, &v) {
        Ok(o) => o,
        Err(o) => return Ok(o),
    };
    let _ = s.del(&a, &v, Some(&out));
    let mut problems = Vec::new();
    for (list, key) in [
        ("interfaces", "name"),
        ("ips", "address"),
        ("routes", "dst"),
    ] {
        let have = keyed(&out, list, key);
        for want in keyed(&prev, list, key) {
            if !have.contains(&want) {
                problems.push(format!("{list} lost {key} {want}"));
            }
        }
    }
    if prev
        .get("dns")
        .is_some_and(|d| d != &Value::Object(Map::new()))
        && out.get("dns").is_none()
    {
        problems.push("dns dropped".into());
    }
    let mut same = out.clone();
    same["cniVersion"] = prev["cniVersion"].clone();
    let how = if same == prev {
        "passed through unchanged"
    } else {
        "passed through with modifications"
    };
    Ok(verdict(problems, how))
}
