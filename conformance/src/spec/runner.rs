//! The runtime side of a conformance check: fresh network namespaces (made and removed with
//! `ip netns`), the plugin executed the way libcni executes it (environment, config on stdin,
//! result read from stdout), and what came back.
//!
//! Each check runs in a [`Session`]: a "host" namespace of its own, where the plugin runs (so
//! host-side changes such as routes, bridges or masters stay out of the real host), a scratch
//! state directory, and as many container namespaces as the check asks for.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error::{Context, Error, Result};
use crate::spec::target::{Kind, Target, substitute};

/// How long one plugin invocation may take before it is killed.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "cnic-{}-{}-{prefix}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    removed: bool,
}

impl Netns {
    pub fn create(prefix: &str) -> Result<Netns> {
        let name = unique(prefix);
        run_ip(&["netns", "add", &name])?;
        let ns = Netns {
            name,
            removed: false,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Adds a stand-in link named `name` (one end of a veth pair whose peer `<name>.p` stays
    /// beside it): the kernel may lack `dummy`, every kernel with namespaces has veth.
    pub fn add_link(&self, name: &str) -> Result<()> {
        let peer: String = format!("{name}.p").chars().take(15).collect();
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])?;
        self.ip(&["link", "set", name, "up"])?;
        Ok(())
    }

    /// Whether a link of that name exists in the namespace.
    pub fn has_link(&self, ifname: &str) -> bool {
        !self.removed && self.ip(&["link", "show", "dev", ifname]).is_ok()
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, argv: &[String]) -> Result<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .with_context(|| format!("run {argv:?} in netns {}", self.name))?;
        if !out.status.success() {
            return Err(Error::new(format!(
                "{argv:?} in netns {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Deletes the namespace now (a container that is gone); idempotent.
    pub fn remove(&mut self) {
        if !self.removed {
            let _ = run_ip(&["netns", "del", &self.name]);
            self.removed = true;
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

fn run_ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("run ip (iproute2)")?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the kernel can make links of this kind (probed in a scratch namespace).
pub fn kernel_supports_link(kind: &str) -> bool {
    let Ok(ns) = Netns::create("probe") else {
        return false;
    };
    ns.add_link("probe0").is_ok()
        && ns
            .ip(&["link", "add", "probe1", "link", "probe0", "type", kind])
            .is_ok()
}

/// What a plugin invocation returned.
#[derive(Debug, Clone)]
pub struct Response {
    pub command: String,
    /// The exit code; `None` when killed by a signal or the timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Response {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout as exactly one JSON object (surrounding whitespace allowed, nothing else).
    pub fn json_object(&self) -> std::result::Result<Map<String, Value>, String> {
        let text = self.stdout.trim();
        if text.is_empty() {
            return Err("stdout is empty".into());
        }
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let first = match values.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(format!("stdout is not JSON ({e}): {}", clip(text))),
            None => return Err("stdout is empty".into()),
        };
        if let Some(next) = values.next() {
            let what = match next {
                Ok(_) => "a second JSON value".to_string(),
                Err(e) => format!("trailing text ({e})"),
            };
            return Err(format!(
                "stdout holds more than one JSON object ({what}): {}",
                clip(text)
            ));
        }
        match first {
            Value::Object(m) => Ok(m),
            other => Err(format!(
                "stdout is JSON but not an object: {}",
                clip(&other.to_string())
            )),
        }
    }

    /// The error code of an error object on stdout.
    pub fn error_code(&self) -> Option<i64> {
        self.json_object()
            .ok()
            .and_then(|m| m.get("code").and_then(Value::as_i64))
    }

    /// One line for a report: exit status, stdout and stderr, clipped.
    pub fn describe(&self) -> String {
        let status = match (self.code, self.timed_out) {
            (_, true) => format!("timed out after {:?}", self.elapsed),
            (Some(c), _) => format!("exit {c}"),
            (None, _) => "killed by a signal".into(),
        };
        let mut s = format!("{} {status}", self.command);
        if !self.stdout.trim().is_empty() {
            s.push_str(&format!(", stdout {}", clip(self.stdout.trim())));
        }
        if !self.stderr.trim().is_empty() {
            s.push_str(&format!(", stderr {}", clip(self.stderr.trim())));
        }
        s
    }
}

pub fn clip(s: &str) -> String {
    let one_line = s.replace('\n', "\\n");
    if one_line.chars().count() > 200 {
        format!("{}...", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

/// One attachment: `(CNI_CONTAINERID, CNI_IFNAME)` and its container namespace.
#[derive(Debug)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    pub netns: Netns,
    /// Index among the session's attachments (chained fixtures offset their addresses by it).
    pub index: u32,
}

impl Attachment {
    pub fn netns_path(&self) -> String {
        self.netns.path().to_string_lossy().into_owned()
    }
}

/// What to change in an invocation's environment.
#[derive(Debug, Clone, Default)]
pub struct EnvEdit {
    pub unset: Vec<&'static str>,
    pub set: Vec<(&'static str, String)>,
}

impl EnvEdit {
    pub fn unset(var: &'static str) -> EnvEdit {
        EnvEdit {
            unset: vec![var],
            set: Vec::new(),
        }
    }
    pub fn set(var: &'static str, value: impl Into<String>) -> EnvEdit {
        EnvEdit {
            unset: Vec::new(),
            set: vec![(var, value.into())],
        }
    }
}

/// A check's private world: host namespace, state directory, attachments.
pub struct Session<'t> {
    pub target: &'t Target,
    pub host: Netns,
    pub state: PathBuf,
    next_index: u32,
}

impl<'t> Session<'t> {
    pub fn new(target: &'t Target) -> Result<Session<'t>> {
        let host = Netns::create("host")?;
        let state = std::env::temp_dir().join(unique("state"));
        fs::create_dir_all(&state).with_context(|| format!("create {}", state.display()))?;
        let session = Session {
            target,
            host,
            state,
            next_index: 0,
        };
        for cmd in &target.setup {
            session
                .host
                .exec(cmd)
                .with_context(|| format!("target {} setup", target.name))?;
        }
        Ok(session)
    }

    /// A new attachment with its own container namespace. For chained targets the runtime's
    /// earlier plugin is simulated: a link named `CNI_IFNAME` is put in the namespace.
    pub fn attachment(&mut self) -> Result<Attachment> {
        let index = self.next_index;
        self.next_index += 1;
        let netns = Netns::create("ctr")?;
        let a = Attachment {
            container_id: format!("cnic-{}-{index}", std::process::id()),
            ifname: "eth0".into(),
            netns,
            index,
        };
        if self.target.kind == Kind::Chained {
            a.netns
                .add_link(&a.ifname)
                .context("create the chained target's interface")?;
        }
        Ok(a)
    }

    /// The target's config for `version`, with `${STATE}` substituted.
    pub fn config(&self, version: &str) -> Value {
        let state = self.state.to_string_lossy().into_owned();
        let mut c = substitute(&self.target.config, &[("STATE", &state)]);
        c["cniVersion"] = json!(version);
        c
    }

    /// The chained target's `prevResult` fixture for attachment `a` in `version`'s format.
    pub fn prev_result(&self, a: &Attachment, version: &str) -> Option<Value> {
        let fixture = self.target.prev_result.as_ref()?;
        let state = self.state.to_string_lossy().into_owned();
        let netns = a.netns_path();
        let mut p = substitute(
            fixture,
            &[
                ("STATE", &state),
                ("NETNS", &netns),
                ("IFNAME", &a.ifname),
                ("CONTAINERID", &a.container_id),
            ],
        );
        p["cniVersion"] = json!(version);
        if let Some(ips) = p.get_mut("ips").and_then(Value::as_array_mut) {
            for ip in ips {
                if let Some(addr) = ip.get("address").and_then(Value::as_str) {
                    let shifted = offset_cidr(addr, a.index);
                    ip["address"] = json!(shifted);
                    let v6 = shifted.contains(':');
                    if let Some(o) = ip.as_object_mut() {
                        if version_lt(version, "1.0.0") {
                            o.insert("version".into(), json!(if v6 { "6" } else { "4" }));
                        } else {
                            o.remove("version");
                        }
                    }
                }
            }
        }
        Some(p)
    }

    /// The stdin of an ADD for `a`: the config, plus the fixture `prevResult` when chained.
    pub fn add_config(&self, a: &Attachment, version: &str) -> Value {
        let mut c = self.config(version);
        if let Some(p) = self.prev_result(a, version) {
            c["prevResult"] = p;
        }
        c
    }

    /// The stdin of a DEL/CHECK for `a`: the config with the final ADD result as `prevResult`.
    pub fn with_prev(&self, version: &str, prev: Option<&Value>) -> Value {
        let mut c = self.config(version);
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    }

    pub fn add(&self, a: &Attachment, version: &str) -> Response {
        self.invoke(
            "ADD",
            Some(a),
            &self.add_config(a, version),
            &EnvEdit::default(),
        )
    }

    pub fn del(&self, a: &Attachment, version: &str, prev: Option<&Value>) -> Response {
        self.invoke(
            "DEL",
            Some(a),
            &self.with_prev(version, prev),
            &EnvEdit::default(),
        )
    }

    pub fn check(&self, a: &Attachment, version: &str, prev: Option<&Value>) -> Response {
        self.invoke(
            "CHECK",
            Some(a),
            &self.with_prev(version, prev),
            &EnvEdit::default(),
        )
    }

    pub fn invoke(
        &self,
        command: &str,
        a: Option<&Attachment>,
        stdin: &Value,
        edit: &EnvEdit,
    ) -> Response {
        self.invoke_raw(command, a, stdin.to_string().as_bytes(), edit)
    }

    /// Runs the plugin in the session's host namespace, as libcni does: a clean environment
    /// with `PATH` and the `CNI_*` variables, the config on stdin.
    pub fn invoke_raw(
        &self,
        command: &str,
        a: Option<&Attachment>,
        stdin: &[u8],
        edit: &EnvEdit,
    ) -> Response {
        let mut env: Vec<(&str, String)> = vec![("CNI_COMMAND", command.to_string())];
        let cni_path = std::env::join_paths(&self.target.cni_path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        env.push(("CNI_PATH", cni_path));
        if let Some(a) = a {
            env.push(("CNI_CONTAINERID", a.container_id.clone()));
            env.push(("CNI_NETNS", a.netns_path()));
            env.push(("CNI_IFNAME", a.ifname.clone()));
        }
        env.retain(|(k, _)| !edit.unset.contains(k));
        for (k, v) in &edit.set {
            env.retain(|(e, _)| e != k);
            env.push((k, v.clone()));
        }
        let label = env
            .iter()
            .find(|(k, _)| *k == "CNI_COMMAND")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| command.into());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host.name])
            .arg(&self.target.binary)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .envs(self.target.env.iter().map(|(k, v)| (k.as_str(), v)))
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        run_child(cmd, stdin, &label)
    }

    /// GC (spec 1.1) with `valid` as `cni.dev/valid-attachments` (`None`: key absent).
    pub fn gc(&self, version: &str, valid: Option<&[&Attachment]>) -> Response {
        let mut c = self.config(version);
        if let Some(list) = valid {
            let l: Vec<Value> = list
                .iter()
                .map(|a| json!({"containerID": a.container_id, "ifname": a.ifname}))
                .collect();
            c["cni.dev/valid-attachments"] = Value::Array(l);
        }
        self.invoke("GC", None, &c, &EnvEdit::default())
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.state);
    }
}

fn run_child(mut cmd: Command, stdin: &[u8], label: &str) -> Response {
    let start = Instant::now();
    let fail = |msg: String| Response {
        command: label.to_string(),
        code: None,
        stdout: String::new(),
        stderr: msg,
        elapsed: start.elapsed(),
        timed_out: false,
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start the plugin: {e}")),
    };
    if let Some(mut w) = child.stdin.take() {
        let data = stdin.to_vec();
        thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() > INVOKE_TIMEOUT => {
                let _ = child.kill();
                timed_out = true;
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(2)),
            Err(_) => break None,
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Response {
        command: label.to_string(),
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: start.elapsed(),
        timed_out,
    }
}

/// `10.1.0.5/24` + 3 -> `10.1.0.8/24` (IPv4 and IPv6; the prefix is kept).
pub fn offset_cidr(cidr: &str, by: u32) -> String {
    let (addr, prefix) = match cidr.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (cidr, None),
    };
    let shifted = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            std::net::Ipv4Addr::from(u32::from(v4).wrapping_add(by)).to_string()
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            std::net::Ipv6Addr::from(u128::from(v6).wrapping_add(u128::from(by))).to_string()
        }
        Err(_) => addr.to_string(),
    };
    match prefix {
        Some(p) => format!("{shifted}/{p}"),
        None => shifted,
    }
}

/// Semantic-version "less than" on `X.Y.Z` strings (anything unparsable sorts first).
pub fn version_lt(a: &str, b: &str) -> bool {
    parse_version(a) < parse_version(b)
}

pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
    let major = it.next()??;
    let minor = it.next()??;
    let patch = it.next()??;
    if it.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}
