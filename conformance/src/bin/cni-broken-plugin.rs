//! `cni-broken-plugin`: a small, real CNI plugin that follows the spec except for the one rule
//! its config's `"break"` key names. The conformance runner's own tests point every check at
//! the variant that breaks exactly its rule (the check must fail) and at `"break": "none"`
//! (it must pass), so no check passes vacuously.
//!
//! `"mode"`: `ipam` (allocates from `subnet`, abbreviated result), `main` (a veth link named
//! `CNI_IFNAME` in the container plus an address) or `chained` (passes `prevResult` through).
//! State: one file per attachment under `<dataDir>/<name>/`, changed under a lock.
//! The break is read from the raw stdin text, so it also applies when stdin is not JSON, and
//! else from `CNI_BROKEN_BREAK` (VERSION's stdin carries no config).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use serde_json::{Map, Value, json};

const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

struct Plugin {
    brk: String,
    version: String,
}

struct Failure {
    code: u32,
    msg: String,
}

fn fail(code: u32, msg: impl Into<String>) -> Failure {
    Failure {
        code,
        msg: msg.into(),
    }
}

type Res<T> = Result<T, Failure>;

fn main() -> ExitCode {
    let mut raw = String::new();
    let _ = std::io::stdin().read_to_string(&mut raw);
    let brk = raw
        .split("\"break\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
        .or_else(|| env("CNI_BROKEN_BREAK"))
        .unwrap_or_else(|| "none".into());
    let mut p = Plugin {
        brk,
        version: "1.1.0".into(),
    };
    let cmd = std::env::var("CNI_COMMAND").unwrap_or_default();
    let result = p.run(&cmd, &raw);
    if p.is("stdout-noise") && cmd == "ADD" {
        println!("cni-broken-plugin: adding");
    }
    match result {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            if p.is("del-noise") && cmd == "DEL" {
                println!("deleted");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            let e = json!({"cniVersion": p.version, "code": f.code, "msg": f.msg});
            if p.is("error-stderr") {
                eprintln!("{e}");
            } else {
                println!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn valid_id(id: &str) -> bool {
    let mut c = id.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x))
}

fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl Plugin {
    fn is(&self, b: &str) -> bool {
        self.brk == b
    }

    fn supported(&self) -> Vec<&'static str> {
        if self.is("no-1.1") {
            // Not a violation: a plugin of spec 1.0 (GC, STATUS, 1.1 results are not its business).
            VERSIONS[..4].to_vec()
        } else {
            VERSIONS.to_vec()
        }
    }

    fn run(&mut self, cmd: &str, raw: &str) -> Res<Option<String>> {
        if cmd == "VERSION" {
            let input = serde_json::from_str::<Value>(raw)
                .ok()
                .and_then(|v| {
                    v.get("cniVersion")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "1.1.0".into());
            let out = if self.is("version-shape") {
                json!({"cniVersion": input, "versions": self.supported()})
            } else if self.is("version-echo") {
                json!({"cniVersion": "1.1.0", "supportedVersions": self.supported()})
            } else {
                json!({"cniVersion": input, "supportedVersions": self.supported()})
            };
            return Ok(Some(out.to_string()));
        }
        if !["ADD", "DEL", "CHECK", "GC", "STATUS"].contains(&cmd) {
            if self.is("unknown-command-ok") {
                return Ok(None);
            }
            return Err(fail(4, format!("unknown CNI_COMMAND {cmd:?}")));
        }
        let required: &[&str] = match cmd {
            "ADD" | "CHECK" => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            "DEL" => &["CNI_CONTAINERID", "CNI_IFNAME"],
            _ => &[],
        };
        for var in required {
            if env(var).is_none() && !self.is("env-unchecked") {
                let code = if self.is("env-code") { 7 } else { 4 };
                return Err(fail(code, format!("{var} is missing")));
            }
        }
        if !self.is("bad-id-accepted") {
            if env("CNI_CONTAINERID").is_some_and(|id| !valid_id(&id)) {
                return Err(fail(4, "invalid CNI_CONTAINERID"));
            }
            if env("CNI_IFNAME").is_some_and(|n| !valid_ifname(&n)) {
                return Err(fail(4, "invalid CNI_IFNAME"));
            }
        }
        let conf: Map<String, Value> = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(m)) => m,
            _ if self.is("stdin-lenient") => {
                return Ok(Some(json!({"cniVersion": "1.0.0", "ips": []}).to_string()));
            }
            _ => {
                let code = if self.is("stdin-code") { 7 } else { 6 };
                return Err(fail(code, "stdin is not a JSON object"));
            }
        };
        let version = conf
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let known = self.supported().contains(&version.as_str());
        let result = if !known && !self.is("accept-any-version") {
            let code = if self.is("version-code") { 7 } else { 1 };
            Err(fail(code, format!("unsupported cniVersion {version:?}")))
        } else {
            if known {
                self.version = version.clone();
            }
            self.verb(cmd, &conf)
        };
        if result.is_err()
            && cmd == "ADD"
            && self.is("del-after-failed-add")
            && let Ok(dir) = state_dir(&conf)
        {
            let _ = fs::create_dir_all(&dir);
            let _ = fs::write(dir.join(format!("failed-{}", attachment_key())), "");
        }
        result
    }

    fn verb(&self, cmd: &str, conf: &Map<String, Value>) -> Res<Option<String>> {
        if conf.get("name").and_then(Value::as_str).is_none() && !self.is("config-lenient") {
            return Err(fail(7, "config has no \"name\""));
        }
        let mode = conf.get("mode").and_then(Value::as_str).unwrap_or("ipam");
        let dir = state_dir(conf)?;
        fs::create_dir_all(&dir).map_err(|e| fail(5, format!("create state dir: {e}")))?;
        let lock_file = File::create(dir.join("lock")).map_err(|e| fail(5, e.to_string()))?;
        if !self.is("no-locking") {
            lock_file.lock().map_err(|e| fail(5, e.to_string()))?;
        }
        match cmd {
            "ADD" => self.add(conf, mode, &dir).map(Some),
            "DEL" => self.del(conf, mode, &dir).map(|_| None),
            "CHECK" => self.check(conf, mode, &dir).map(|_| None),
            "GC" => self.gc(conf, &dir).map(|_| None),
            _ => {
                if self.is("status-fails") {
                    Err(fail(50, "not ready"))
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn add(&self, conf: &Map<String, Value>, mode: &str, dir: &Path) -> Res<String> {
        let key = attachment_key();
        let netns = env("CNI_NETNS").unwrap_or_default();
        let ifname = env("CNI_IFNAME").unwrap_or_default();
        let mut result = if mode == "chained" {
            let prev = conf
                .get("prevResult")
                .cloned()
                .ok_or_else(|| fail(7, "ADD of a chained plugin needs prevResult"))?;
            if self.is("prev-drop") {
                let mut p = prev;
                if let Some(o) = p.as_object_mut() {
                    o.remove("routes");
                    o.remove("ips");
                }
                p
            } else {
                prev
            }
        } else {
            let taken = mode == "main" && link_exists(&netns, &ifname);
            if taken && !self.is("iface-exists") {
                return Err(fail(
                    105,
                    format!("{ifname} already exists in the container"),
                ));
            }
            let subnet: Ipv4Addr = conf
                .get("subnet")
                .and_then(Value::as_str)
                .and_then(|s| s.split('/').next())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| fail(7, "config needs an IPv4 /24 \"subnet\""))?;
            let addr = allocate(dir, subnet, self.is("no-locking"))?;
            let mut ip = json!({"address": format!("{addr}/24"), "gateway": Ipv4Addr::from(u32::from(subnet) + 1).to_string()});
            let mut r = json!({"ips": [], "routes": [{"dst": "0.0.0.0/0"}], "dns": {}});
            if mode == "main" && !taken {
                let peer: String = format!("{ifname}.p").chars().take(15).collect();
                in_netns(
                    &netns,
                    &[
                        "link", "add", &ifname, "type", "veth", "peer", "name", &peer,
                    ],
                )?;
            }
            if mode == "main" {
                ip["interface"] = json!(0);
                r["interfaces"] =
                    json!([{"name": ifname, "mac": "02:00:00:00:00:01", "sandbox": netns}]);
            }
            r["ips"] = json!([ip]);
            r
        };
        result["cniVersion"] = json!(self.version);
        match self.version.as_str() {
            "0.3.0" | "0.3.1" | "0.4.0"
                if !(self.is("result-v040") && self.version == "0.4.0"
                    || self.is("result-v030") && self.version == "0.3.0"
                    || self.is("result-v031") && self.version == "0.3.1") =>
            {
                if let Some(ips) = result.get_mut("ips").and_then(Value::as_array_mut) {
                    for ip in ips {
                        ip["version"] = json!("4");
                    }
                }
            }
            "1.0.0" if self.is("result-v100") => {
                if let Some(ip) = result.pointer_mut("/ips/0/address") {
                    let bare = ip
                        .as_str()
                        .unwrap_or("")
                        .split('/')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    *ip = json!(bare);
                }
            }
            "1.1.0" => {
                if let Some(r) = result.pointer_mut("/routes/0") {
                    r["priority"] = if self.is("result-v110") {
                        json!("high")
                    } else {
                        json!(100)
                    };
                }
            }
            _ => {}
        }
        let _ = fs::remove_file(dir.join(format!("deleted-{key}")));
        fs::write(dir.join(format!("att-{key}")), result.to_string())
            .map_err(|e| fail(5, e.to_string()))?;
        Ok(result.to_string())
    }

    fn del(&self, conf: &Map<String, Value>, mode: &str, dir: &Path) -> Res<()> {
        let key = attachment_key();
        if self.is("del-no-netns") && env("CNI_NETNS").is_none() {
            return Err(fail(4, "DEL needs CNI_NETNS"));
        }
        if self.is("del-netns-gone") && env("CNI_NETNS").is_some_and(|n| !Path::new(&n).exists()) {
            return Err(fail(3, "the container netns is gone"));
        }
        if self.is("del-no-prev") && conf.get("prevResult").is_none() {
            return Err(fail(7, "DEL needs prevResult"));
        }
        if self.is("del-twice") && dir.join(format!("deleted-{key}")).exists() {
            return Err(fail(3, "attachment already deleted"));
        }
        if self.is("del-after-failed-add") && dir.join(format!("failed-{key}")).exists() {
            return Err(fail(3, "no record of a successful ADD"));
        }
        if mode == "main"
            && let Some(netns) = env("CNI_NETNS").filter(|n| Path::new(n).exists())
        {
            let ifname = env("CNI_IFNAME").unwrap_or_default();
            if link_exists(&netns, &ifname) {
                in_netns(&netns, &["link", "del", &ifname])?;
            }
        }
        let _ = fs::remove_file(dir.join(format!("att-{key}")));
        let _ = fs::write(dir.join(format!("deleted-{key}")), "");
        Ok(())
    }

    fn check(&self, conf: &Map<String, Value>, mode: &str, dir: &Path) -> Res<()> {
        if self.is("check-fails") {
            return Err(fail(100, "CHECK always fails"));
        }
        if ["0.3.0", "0.3.1"].contains(&self.version.as_str()) && !self.is("check-before-0.4") {
            return Err(fail(1, "config version does not allow CHECK"));
        }
        if conf.get("prevResult").is_none() {
            return Err(fail(7, "CHECK needs prevResult"));
        }
        if !dir.join(format!("att-{}", attachment_key())).exists() {
            return Err(fail(100, "no such attachment"));
        }
        if mode == "main" {
            let netns = env("CNI_NETNS").unwrap_or_default();
            let ifname = env("CNI_IFNAME").unwrap_or_default();
            if !link_exists(&netns, &ifname) {
                return Err(fail(100, format!("{ifname} is missing")));
            }
        }
        Ok(())
    }

    fn gc(&self, conf: &Map<String, Value>, dir: &Path) -> Res<()> {
        let valid: Option<Vec<String>> = conf
            .get("cni.dev/valid-attachments")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .map(|a| {
                        format!(
                            "{}_{}",
                            a.get("containerID").and_then(Value::as_str).unwrap_or(""),
                            a.get("ifname").and_then(Value::as_str).unwrap_or("")
                        )
                    })
                    .collect()
            });
        let valid = match valid {
            None if self.is("gc-absent-is-empty") => Vec::new(),
            None => return Ok(()),
            Some(l) if l.is_empty() && self.is("gc-empty-fails") => {
                return Err(fail(100, "GC with an empty list refused"));
            }
            Some(_) if self.is("gc-ignores-list") => Vec::new(),
            Some(l) => l,
        };
        let entries = fs::read_dir(dir).map_err(|e| fail(5, e.to_string()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(key) = name.strip_prefix("att-")
                && !valid.iter().any(|v| v == key)
            {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

fn attachment_key() -> String {
    format!(
        "{}_{}",
        env("CNI_CONTAINERID").unwrap_or_default(),
        env("CNI_IFNAME").unwrap_or_default()
    )
}

fn state_dir(conf: &Map<String, Value>) -> Res<PathBuf> {
    let base = conf
        .get("dataDir")
        .and_then(Value::as_str)
        .filter(|d| d.starts_with('/'))
        .ok_or_else(|| fail(7, "config needs an absolute \"dataDir\""))?;
    let name = conf
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    if !valid_id(name) {
        return Err(fail(7, "invalid network name"));
    }
    Ok(Path::new(base).join(name))
}

/// The lowest free host address .2 .. .254 of the /24: scanned, then claimed by a file.
fn allocate(dir: &Path, subnet: Ipv4Addr, racy: bool) -> Res<Ipv4Addr> {
    let base = u32::from(subnet);
    for host in 2..255 {
        let addr = Ipv4Addr::from(base + host);
        let claim = dir.join(format!("ip-{addr}"));
        if claim.exists() {
            continue;
        }
        if racy {
            // Without the lock, concurrent ADDs all see the same address free.
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&claim)
            .map_err(|e| fail(5, e.to_string()))?;
        let _ = f.write_all(attachment_key().as_bytes());
        return Ok(addr);
    }
    Err(fail(103, "subnet exhausted"))
}

fn link_exists(netns: &str, ifname: &str) -> bool {
    !netns.is_empty()
        && Path::new(netns).exists()
        && Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["ip", "link", "show", "dev", ifname])
            .output()
            .is_ok_and(|o| o.status.success())
}

fn in_netns(netns: &str, args: &[&str]) -> Res<()> {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .arg("ip")
        .args(args)
        .output()
        .map_err(|e| fail(105, format!("run ip: {e}")))?;
    if !out.status.success() {
        return Err(fail(
            105,
            format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}
