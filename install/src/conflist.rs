//! Conflist editing, pure text in and text out: adds the `tombstone` entry right after a
//! network's main plugin (moving one found before it), updates or removes it, and turns a
//! single-plugin `.conf` into a `.conflist`. A list may be the file itself or one nested in
//! it (a Multus delegate): [`Network::path`] says where. Edits splice the original text, so
//! every byte outside the entry (other plugins, key order, indentation, comments of
//! whitespace) stays as it was, and removing an entry this module inserted gives back the
//! original bytes exactly.

use serde_json::{Map, Value};
use tombstone_cni::suite::{DEFAULT_HOLD_SECONDS, DEFAULT_REUSE_AFTER_SECONDS, IPAM_TYPE};

use crate::error::{InstallError, Result};

/// The plugin type this installer manages.
pub use tombstone_cni::suite::TOMBSTONE_TYPE;
/// Main plugin types that make a network IPvlan-based.
pub const IPVLAN_TYPES: [&str; 2] = ["ipvlan", tombstone_cni::suite::IPVLAN_TYPE];
/// Terway's main plugin is IPvlan-based when its `eniip_virtual_type` says so (any case).
pub const TERWAY_TYPE: &str = "terway";
/// Multus's types: the thin plugin (with `delegates` or `clusterNetwork`) and the thick
/// plugin's shim (whose daemon holds the configuration).
pub const MULTUS_TYPES: [&str; 2] = ["multus", "multus-shim"];

/// The `cniVersion`s the chained `tombstone` serves (the plugins' own list, from
/// `tombstone-cni`): a list naming another is never given the entry.
pub const PLUGIN_CNI_VERSIONS: &[&str] = tombstone_cni::version::CHAINED;

/// One step of the way from the file's top to a nested network: a key or an array index.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// What a configuration file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A network configuration list (`plugins` array).
    List,
    /// A single-plugin network configuration (`type` at the top level).
    Single,
}

/// A parsed network configuration, with the byte spans needed to splice it.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub shape: Shape,
    /// The `type` of every plugin, in order (one for a single-plugin config).
    pub types: Vec<String>,
    /// `cniVersion`, when it is a string.
    pub cni_version: Option<String>,
    /// Where the network is in its file: empty for the file itself.
    pub path: Vec<Step>,
    /// Byte spans of the `plugins` array elements (lists only), in the whole file's text.
    spans: Vec<(usize, usize)>,
    value: Map<String, Value>,
}

impl Network {
    /// Index of the main plugin: the first plugin that is not a `tombstone` entry.
    fn main_index(&self) -> Option<usize> {
        self.types.iter().position(|t| t != TOMBSTONE_TYPE)
    }

    /// Plugin `i`'s object (the whole configuration for a single-plugin one).
    pub fn plugin(&self, i: usize) -> Option<&Map<String, Value>> {
        match self.shape {
            Shape::Single => (i == 0).then_some(&self.value),
            Shape::List => self.value.get("plugins")?.as_array()?.get(i)?.as_object(),
        }
    }

    /// Index of the main plugin: the first plugin that is not a `tombstone` entry.
    pub fn main_plugin(&self) -> Option<usize> {
        self.main_index()
    }

    /// The main plugin's type.
    pub fn main_type(&self) -> Option<&str> {
        self.main_index().map(|i| self.types[i].as_str())
    }

    /// The main plugin is `ipvlan`, `tombstone-ipvlan`, or Terway in IPvlan mode.
    pub fn is_ipvlan_based(&self) -> bool {
        let Some(i) = self.main_index() else {
            return false;
        };
        let t = self.types[i].as_str();
        IPVLAN_TYPES.contains(&t)
            || (t == TERWAY_TYPE
                && self
                    .plugin(i)
                    .and_then(|p| p.get("eniip_virtual_type"))
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case("ipvlan")))
    }

    /// Whether this is a Multus configuration.
    pub fn is_multus(&self) -> bool {
        self.shape == Shape::Single && MULTUS_TYPES.contains(&self.types[0].as_str())
    }

    /// Index of the first `tombstone` entry.
    pub fn tombstone_index(&self) -> Option<usize> {
        self.types.iter().position(|t| t == TOMBSTONE_TYPE)
    }

    /// A `tombstone` entry before the main plugin: its DEL would run after the main plugin
    /// released the address.
    pub fn misplaced(&self) -> bool {
        matches!((self.tombstone_index(), self.main_index()), (Some(t), Some(m)) if t < m)
    }

    /// Why the plugins cannot serve this network's `cniVersion`, if they cannot.
    pub fn version_problem(&self) -> Option<String> {
        let served = format!("the plugins serve {}", PLUGIN_CNI_VERSIONS.join(", "));
        match &self.cni_version {
            Some(v) if PLUGIN_CNI_VERSIONS.contains(&v.as_str()) => None,
            Some(v) => Some(format!("cniVersion {v:?}: {served}")),
            None => Some(format!("no cniVersion: {served}")),
        }
    }

    /// `reuseAfterSeconds` of a `tombstone-ipam` in the list (its default when not set).
    pub fn ipam_reuse_after(&self) -> Option<u64> {
        (0..self.types.len())
            .filter_map(|i| self.plugin(i)?.get("ipam")?.as_object())
            .find(|ipam| ipam.get("type").and_then(Value::as_str) == Some(IPAM_TYPE))
            .map(|ipam| {
                ipam.get("reuseAfterSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(DEFAULT_REUSE_AFTER_SECONDS)
            })
    }

    /// The `holdSeconds` the entry will have once `new_entry` (a new entry's keys) or
    /// `options` (the keys given) is applied.
    pub fn hold_after(&self, options: &Map<String, Value>, new_entry: &Map<String, Value>) -> u64 {
        let given = |m: &Map<String, Value>| m.get("holdSeconds").and_then(Value::as_u64);
        match self.tombstone_index().and_then(|j| self.plugin(j)) {
            Some(old) => given(options)
                .or(given(old))
                .unwrap_or(DEFAULT_HOLD_SECONDS),
            None => given(new_entry).unwrap_or(DEFAULT_HOLD_SECONDS),
        }
    }

    /// A hold not below the IPAM's reuse delay, said with both keys.
    pub fn hold_problem(
        &self,
        options: &Map<String, Value>,
        new_entry: &Map<String, Value>,
    ) -> Option<String> {
        let reuse = self.ipam_reuse_after()?;
        let hold = self.hold_after(options, new_entry);
        (hold >= reuse).then(|| {
            format!(
                "holdSeconds {hold} is not below the IPAM's reuseAfterSeconds {reuse}: an \
                 address could be handed out again while its tombstone still stands"
            )
        })
    }

    /// A Multus configuration's references to other networks.
    pub fn multus(&self) -> Option<Multus> {
        if !self.is_multus() {
            return None;
        }
        let v = &self.value;
        let names = |k: &str| -> Vec<String> {
            match v.get(k) {
                Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let delegates = match v.get("delegates") {
            Some(Value::Array(a)) => a.len(),
            _ => 0,
        };
        Some(Multus {
            delegates,
            cluster_network: names("clusterNetwork"),
            default_networks: names("defaultNetworks"),
            conf_dir: v.get("confDir").and_then(Value::as_str).map(str::to_string),
            kubeconfig: v.get("kubeconfig").is_some(),
            shim: self.types[0] == "multus-shim",
        })
    }

    /// Every type named anywhere in the config: plugin types and nested ones (`ipam.type`).
    pub fn referenced_types(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_types(&Value::Object(self.value.clone()), &mut out);
        out
    }
}

/// What a Multus configuration names: inline delegates (parse them with [`parse_delegate`]),
/// networks by name, file or NetworkAttachmentDefinition.
#[derive(Debug, Clone, PartialEq)]
pub struct Multus {
    pub delegates: usize,
    pub cluster_network: Vec<String>,
    pub default_networks: Vec<String>,
    pub conf_dir: Option<String>,
    pub kubeconfig: bool,
    /// The thick plugin's shim: its daemon's own configuration says what it loads.
    pub shim: bool,
}

fn collect_types(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("type", Value::String(s)) => out.push(s.clone()),
                    _ => collect_types(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_types(v, out)),
        _ => {}
    }
}

/// The result of an edit.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Unchanged,
    Changed(String),
}

/// Parses a configuration file's text. Errors say what is wrong and where.
pub fn parse(text: &str) -> Result<Network> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| InstallError::config(format!("invalid JSON: {e}")))?;
    parse_value(text, value, Vec::new())
}

/// Multus's delegate `i` in `text`, as a network of its own (spans in the whole text).
pub fn parse_delegate(text: &str, i: usize) -> Result<Network> {
    parse_at(text, &[Step::Key("delegates".into()), Step::Index(i)])
        .map_err(|e| e.context(format_args!("delegate {i}")))
}

/// The network at `path` in `text` (see [`Network::path`]).
pub fn parse_at(text: &str, path: &[Step]) -> Result<Network> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| InstallError::config(format!("invalid JSON: {e}")))?;
    let mut v = &value;
    for step in path {
        v = match step {
            Step::Key(k) => v.get(k),
            Step::Index(i) => v.get(i),
        }
        .ok_or_else(|| InstallError::config("not found"))?;
    }
    parse_value(text, v.clone(), path.to_vec())
}

fn parse_value(text: &str, value: Value, path: Vec<Step>) -> Result<Network> {
    let Value::Object(obj) = value else {
        return Err(InstallError::config("not a JSON object"));
    };
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(InstallError::config("\"name\" is not a non-empty string")),
        None => return Err(InstallError::config("no \"name\"")),
    };
    let cni_version = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(plugins) = obj.get("plugins") {
        let Value::Array(plugins) = plugins else {
            return Err(InstallError::config("\"plugins\" is not an array"));
        };
        if plugins.is_empty() {
            return Err(InstallError::config("\"plugins\" is empty"));
        }
        let mut types = Vec::new();
        for (i, p) in plugins.iter().enumerate() {
            match p.get("type") {
                Some(Value::String(t)) if !t.is_empty() => types.push(t.clone()),
                _ => {
                    return Err(InstallError::config(format!(
                        "plugin {i} has no \"type\" string"
                    )));
                }
            }
        }
        let mut plugins_path = path.clone();
        plugins_path.push(Step::Key("plugins".into()));
        let spans = element_spans(text, &plugins_path)
            .ok_or_else(|| InstallError::config("cannot locate the \"plugins\" array"))?;
        if spans.len() != types.len() {
            return Err(InstallError::config("cannot locate the \"plugins\" array"));
        }
        Ok(Network {
            name,
            shape: Shape::List,
            types,
            cni_version,
            path,
            spans,
            value: obj,
        })
    } else {
        match obj.get("type") {
            Some(Value::String(t)) if !t.is_empty() => Ok(Network {
                name,
                shape: Shape::Single,
                types: vec![t.clone()],
                cni_version,
                path,
                spans: Vec::new(),
                value: obj,
            }),
            _ => Err(InstallError::config(
                "neither \"plugins\" nor a \"type\" string",
            )),
        }
    }
}

/// The entry to insert: `type` first, then the options in the order given.
pub fn entry(options: &Map<String, Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(TOMBSTONE_TYPE));
    for (k, v) in options {
        if k != "type" {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

/// Adds the entry after the main plugin of a list, or updates an existing entry's options
/// (keys given win, other keys of the entry are kept). Unchanged when nothing differs.
///
/// An entry before the main plugin ([`Network::misplaced`]) is moved right after it, its keys
/// kept.
pub fn add(text: &str, net: &Network, options: &Map<String, Value>) -> Result<Edit> {
    if net.shape != Shape::List {
        return Err(InstallError::config("not a configuration list"));
    }
    let Some(Value::Array(plugins)) = net.value.get("plugins") else {
        return Err(InstallError::config("\"plugins\" is not an array"));
    };
    if net.misplaced() {
        let j = net.tombstone_index().unwrap_or(0);
        let mut keys = plugins[j].as_object().cloned().unwrap_or_default();
        keys.extend(options.clone());
        let Edit::Changed(without) = remove(text, net)? else {
            return Err(InstallError::config("cannot take the misplaced entry out"));
        };
        let moved = parse_at(&without, &net.path)?;
        return add(&without, &moved, &keys);
    }
    if let Some(j) = net.tombstone_index() {
        let Value::Object(old) = &plugins[j] else {
            return Err(InstallError::config(format!("plugin {j} is not an object")));
        };
        let mut merged = old.clone();
        for (k, v) in entry(options) {
            merged.insert(k, v);
        }
        if &merged == old {
            return Ok(Edit::Unchanged);
        }
        let (start, end) = net.spans[j];
        let style = Style::of(text, start, end);
        let rendered = style.render(&merged, &indent_unit(text))?;
        return Ok(Edit::Changed(format!(
            "{}{}{}",
            &text[..start],
            rendered,
            &text[end..]
        )));
    }
    let (start, end) = net.spans[0];
    let style = Style::of(text, start, end);
    let rendered = style.render(&entry(options), &indent_unit(text))?;
    let sep = separator(text, &net.spans);
    Ok(Edit::Changed(format!(
        "{}{sep}{rendered}{}",
        &text[..end],
        &text[end..]
    )))
}

/// Removes every `tombstone` entry of a list, with the separator that preceded it, so an
/// entry inserted by [`add`] leaves no trace.
pub fn remove(text: &str, net: &Network) -> Result<Edit> {
    if net.shape != Shape::List {
        return Ok(Edit::Unchanged);
    }
    let mut out = text.to_string();
    let mut changed = false;
    for j in (0..net.types.len()).rev() {
        if net.types[j] != TOMBSTONE_TYPE {
            continue;
        }
        let (start, end) = net.spans[j];
        let cut = if j > 0 {
            net.spans[j - 1].1..end
        } else if let Some(next) = net.spans.get(1) {
            start..next.0
        } else {
            start..end
        };
        out.replace_range(cut, "");
        changed = true;
    }
    Ok(if changed {
        Edit::Changed(out)
    } else {
        Edit::Unchanged
    })
}

/// A single-plugin config as a list: `cniVersion` and `name` at the top, the plugin (without
/// them) followed by the entry in `plugins`. Pretty-printed with the file's indentation.
pub fn convert(text: &str, net: &Network, options: &Map<String, Value>) -> Result<String> {
    if net.shape != Shape::Single {
        return Err(InstallError::config("not a single-plugin configuration"));
    }
    let mut list = Map::new();
    let mut plugin = Map::new();
    for (k, v) in &net.value {
        match k.as_str() {
            "cniVersion" | "name" => {
                list.insert(k.clone(), v.clone());
            }
            _ => {
                plugin.insert(k.clone(), v.clone());
            }
        }
    }
    list.insert(
        "plugins".into(),
        Value::Array(vec![Value::Object(plugin), Value::Object(entry(options))]),
    );
    let nl = newline(text);
    let mut out = pretty(&Value::Object(list), &indent_unit(text))?.replace('\n', nl);
    if text.ends_with('\n') {
        out.push_str(nl);
    }
    Ok(out)
}

/// The file's indentation unit: the leading whitespace of its first indented line
/// (two spaces when the file has none).
pub fn indent_unit(text: &str) -> String {
    for line in text.lines() {
        let ws: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        if !ws.is_empty() && line.len() > ws.len() {
            return ws;
        }
    }
    "  ".into()
}

/// The file's line ending.
fn newline(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

fn pretty(v: &Value, unit: &str) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)
        .map_err(|e| InstallError::config(format!("cannot render JSON: {e}")))?;
    String::from_utf8(buf).map_err(|e| InstallError::config(format!("cannot render JSON: {e}")))
}

/// How a sibling plugin is laid out, so the entry looks like its neighbours.
enum Style {
    /// Spread over lines; later lines are prefixed with the element's own indentation.
    Multiline { indent: String, nl: &'static str },
    /// One line, `{ "k": v, "k": v }` or `{"k": v}` or `{"k":v}`.
    Line { pad: bool, spaced: bool },
}

impl Style {
    fn of(text: &str, start: usize, end: usize) -> Style {
        let el = &text[start..end];
        if el.contains('\n') {
            Style::Multiline {
                indent: line_indent(text, start),
                nl: newline(text),
            }
        } else {
            Style::Line {
                pad: el.starts_with("{ "),
                spaced: el.contains("\": ") || el.contains(", \""),
            }
        }
    }

    fn render(&self, m: &Map<String, Value>, unit: &str) -> Result<String> {
        Ok(match self {
            Style::Multiline { indent, nl } => {
                pretty(&Value::Object(m.clone()), unit)?.replace('\n', &format!("{nl}{indent}"))
            }
            Style::Line { pad, spaced } => {
                let (colon, comma) = if *spaced { (": ", ", ") } else { (":", ",") };
                let body = members(m, colon, comma);
                if m.is_empty() {
                    "{}".into()
                } else if *pad {
                    format!("{{ {} }}", body.join(comma))
                } else {
                    format!("{{{}}}", body.join(comma))
                }
            }
        })
    }
}

/// An object's members on one line, `"key"<colon>value` each.
fn members(m: &Map<String, Value>, colon: &str, comma: &str) -> Vec<String> {
    m.iter()
        .map(|(k, v)| {
            format!(
                "{}{colon}{}",
                Value::from(k.as_str()),
                inline(v, colon, comma)
            )
        })
        .collect()
}

fn inline(v: &Value, colon: &str, comma: &str) -> String {
    match v {
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|v| inline(v, colon, comma)).collect();
            format!("[{}]", items.join(comma))
        }
        Value::Object(m) => format!("{{{}}}", members(m, colon, comma).join(comma)),
        other => other.to_string(),
    }
}

/// The whitespace between the start of `pos`'s line and `pos`, if only whitespace is there.
fn line_indent(text: &str, pos: usize) -> String {
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..pos];
    if before.chars().all(|c| c == ' ' || c == '\t') {
        before.to_string()
    } else {
        // The element shares its line with other text: align under nothing in particular.
        before
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect()
    }
}

/// What goes between the main plugin and the entry: the list's own first separator when it
/// has two elements or more, else a comma and the main plugin's line break and indentation.
fn separator(text: &str, spans: &[(usize, usize)]) -> String {
    if spans.len() >= 2 {
        return text[spans[0].1..spans[1].0].to_string();
    }
    let start = spans[0].0;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..start];
    if before.chars().all(|c| c == ' ' || c == '\t') && text[..start].contains('\n') {
        format!(",{}{before}", newline(text))
    } else if text[..start].ends_with(' ') {
        ", ".into()
    } else {
        ",".into()
    }
}

/// Byte spans of the elements of the array at `path` (keys and indices from the top).
/// `text` must be valid JSON.
fn element_spans(text: &str, path: &[Step]) -> Option<Vec<(usize, usize)>> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    for step in path {
        match step {
            Step::Key(k) => s.member(text, k)?,
            Step::Index(n) => s.element(*n)?,
        }
    }
    s.array()
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.i;
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some((start, self.i));
                }
                _ => self.i += 1,
            }
        }
    }

    /// Skips one value and returns its span.
    fn value(&mut self) -> Option<(usize, usize)> {
        let start = self.i;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'[' | b'{' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek()?,
                    b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'
                ) {
                    self.i += 1;
                }
            }
        }
        Some((start, self.i))
    }

    /// Moves to the value of the object member `key` (the last one, as serde_json keeps the
    /// last of duplicate keys).
    fn member(&mut self, text: &str, key: &str) -> Option<()> {
        self.eat(b'{')?;
        let mut found = None;
        loop {
            self.ws();
            if self.peek()? == b'}' {
                break;
            }
            let (ks, ke) = self.string()?;
            let k: String = serde_json::from_str(&text[ks..ke]).ok()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let at = self.i;
            self.value()?;
            if k == key {
                found = Some(at);
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => break,
                _ => return None,
            }
        }
        self.i = found?;
        Some(())
    }

    /// Moves to element `n` of the array here.
    fn element(&mut self, n: usize) -> Option<()> {
        let spans = self.array()?;
        self.i = spans.get(n)?.0;
        Some(())
    }

    fn array(&mut self) -> Option<Vec<(usize, usize)>> {
        self.eat(b'[')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.peek()? == b']' {
                self.i += 1;
                return Some(out);
            }
            out.push(self.value()?);
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    fn added(text: &str, o: &str) -> String {
        let net = parse(text).unwrap();
        match add(text, &net, &opts(o)).unwrap() {
            Edit::Changed(s) => s,
            Edit::Unchanged => panic!("unchanged"),
        }
    }

    fn removed(text: &str) -> String {
        match remove(text, &parse(text).unwrap()).unwrap() {
            Edit::Changed(s) => s,
            Edit::Unchanged => panic!("unchanged"),
        }
    }

    const PRETTY: &str = r#"{
    "cniVersion": "1.0.0",
    "name": "pods",
    "plugins": [
        {
            "type": "ipvlan",
            "master": "eth0",
            "ipam": { "type": "host-local", "subnet": "10.10.0.0/24" }
        },
        {
            "type": "portmap",
            "capabilities": { "portMappings": true }
        }
    ]
}
"#;

    #[test]
    fn inserts_after_main_plugin_in_the_files_style() {
        let out = added(PRETTY, r#"{"holdSeconds":30}"#);
        let expected = PRETTY.replace(
            "        },\n        {\n            \"type\": \"portmap\"",
            "        },\n        {\n            \"type\": \"tombstone\",\n            \"holdSeconds\": 30\n        },\n        {\n            \"type\": \"portmap\"",
        );
        assert_eq!(out, expected);
        let net = parse(&out).unwrap();
        assert_eq!(net.types, ["ipvlan", "tombstone", "portmap"]);
        assert_eq!(removed(&out), PRETTY);
    }

    #[test]
    fn second_add_is_unchanged_and_new_options_update_in_place() {
        let once = added(PRETTY, r#"{"holdSeconds":30}"#);
        let net = parse(&once).unwrap();
        assert_eq!(
            add(&once, &net, &opts(r#"{"holdSeconds":30}"#)).unwrap(),
            Edit::Unchanged
        );
        // No options given: the entry is left as it is.
        assert_eq!(add(&once, &net, &Map::new()).unwrap(), Edit::Unchanged);
        let Edit::Changed(upd) = add(
            &once,
            &net,
            &opts(r#"{"holdSeconds":10,"routeType":"blackhole"}"#),
        )
        .unwrap() else {
            panic!()
        };
        assert!(upd.contains(
            "\"type\": \"tombstone\",\n            \"holdSeconds\": 10,\n            \"routeType\": \"blackhole\"\n        },"
        ));
        assert_eq!(removed(&upd), PRETTY);
    }

    #[test]
    fn one_line_plugins_and_single_element_lists() {
        let text = "{\n  \"cniVersion\": \"1.1.0\",\n  \"name\": \"pods\",\n  \"plugins\": [\n    { \"type\": \"tombstone-ipvlan\", \"master\": \"eth0\" }\n  ]\n}\n";
        let out = added(text, r#"{"holdSeconds":60,"tables":["main",100]}"#);
        assert_eq!(
            out,
            "{\n  \"cniVersion\": \"1.1.0\",\n  \"name\": \"pods\",\n  \"plugins\": [\n    { \"type\": \"tombstone-ipvlan\", \"master\": \"eth0\" },\n    { \"type\": \"tombstone\", \"holdSeconds\": 60, \"tables\": [\"main\", 100] }\n  ]\n}\n"
        );
        assert_eq!(removed(&out), text);
    }

    #[test]
    fn compact_files_stay_compact() {
        let text = r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"ipvlan","master":"eth0"},{"type":"tuning"}]}"#;
        let out = added(text, r#"{"holdSeconds":5}"#);
        assert_eq!(
            out,
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"ipvlan","master":"eth0"},{"type":"tombstone","holdSeconds":5},{"type":"tuning"}]}"#
        );
        assert_eq!(removed(&out), text);
        let single = r#"{"name":"n","plugins":[{"type":"ipvlan"}]}"#;
        let out = added(single, "{}");
        assert_eq!(
            out,
            r#"{"name":"n","plugins":[{"type":"ipvlan"},{"type":"tombstone"}]}"#
        );
        assert_eq!(removed(&out), single);
    }

    #[test]
    fn tabs_and_crlf_are_kept() {
        let text = "{\r\n\t\"name\": \"n\",\r\n\t\"plugins\": [\r\n\t\t{\r\n\t\t\t\"type\": \"ipvlan\"\r\n\t\t}\r\n\t]\r\n}\r\n";
        let out = added(text, r#"{"holdSeconds":5}"#);
        assert!(
            out.contains("\t\t},\r\n\t\t{\r\n\t\t\t\"type\": \"tombstone\",\r\n\t\t\t\"holdSeconds\": 5\r\n\t\t}\r\n\t]"),
            "{out:?}"
        );
        assert_eq!(removed(&out), text);
        parse(&out).unwrap();
    }

    #[test]
    fn ipvlan_detection_and_names() {
        let n = parse(PRETTY).unwrap();
        assert!(n.is_ipvlan_based());
        assert_eq!(n.name, "pods");
        let b = parse(r#"{"name":"b","plugins":[{"type":"bridge"},{"type":"ipvlan"}]}"#).unwrap();
        assert!(!b.is_ipvlan_based());
        let t = parse(r#"{"name":"t","plugins":[{"type":"tombstone-ipvlan","ipam":{"type":"tombstone-ipam"}}]}"#).unwrap();
        assert!(t.is_ipvlan_based());
        assert_eq!(t.referenced_types(), ["tombstone-ipvlan", "tombstone-ipam"]);
    }

    #[test]
    fn malformed_configs_are_clear_errors() {
        for (text, want) in [
            ("{", "invalid JSON"),
            ("[]", "not a JSON object"),
            (r#"{"plugins":[{"type":"ipvlan"}]}"#, "no \"name\""),
            (r#"{"name":"n","plugins":{}}"#, "not an array"),
            (r#"{"name":"n","plugins":[]}"#, "empty"),
            (r#"{"name":"n","plugins":[{"master":"x"}]}"#, "plugin 0"),
            (r#"{"name":"n"}"#, "neither"),
            (
                r#"{"name":"n","plugins":[{"type":"ipvlan"}]} x"#,
                "invalid JSON",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Config, "{text}: {e}");
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn tricky_strings_do_not_confuse_the_scanner() {
        let text = r#"{"name":"n]},{","x":{"plugins":[1]},"plugins":[{"type":"ipvlan","s":"a\"]}{["},{"type":"y"}]}"#;
        let out = added(text, "{}");
        assert_eq!(parse(&out).unwrap().types, ["ipvlan", "tombstone", "y"]);
        assert_eq!(removed(&out), text);
    }

    #[test]
    fn converts_a_single_plugin_conf() {
        let text = "{\n    \"cniVersion\": \"0.4.0\",\n    \"name\": \"pods\",\n    \"type\": \"ipvlan\",\n    \"master\": \"eth0\",\n    \"ipam\": {\n        \"type\": \"host-local\",\n        \"subnet\": \"10.1.0.0/24\"\n    }\n}\n";
        let net = parse(text).unwrap();
        assert_eq!(net.shape, Shape::Single);
        assert!(net.is_ipvlan_based());
        let out = convert(text, &net, &opts(r#"{"holdSeconds":20}"#)).unwrap();
        assert_eq!(
            out,
            "{\n    \"cniVersion\": \"0.4.0\",\n    \"name\": \"pods\",\n    \"plugins\": [\n        {\n            \"type\": \"ipvlan\",\n            \"master\": \"eth0\",\n            \"ipam\": {\n                \"type\": \"host-local\",\n                \"subnet\": \"10.1.0.0/24\"\n            }\n        },\n        {\n            \"type\": \"tombstone\",\n            \"holdSeconds\": 20\n        }\n    ]\n}\n"
        );
        let list = parse(&out).unwrap();
        assert_eq!(list.types, ["ipvlan", "tombstone"]);
        assert_eq!(
            add(&out, &list, &opts(r#"{"holdSeconds":20}"#)).unwrap(),
            Edit::Unchanged
        );
    }

    #[test]
    fn remove_without_entry_is_unchanged() {
        assert_eq!(
            remove(PRETTY, &parse(PRETTY).unwrap()).unwrap(),
            Edit::Unchanged
        );
        // An entry first in the list (hand-written) goes with the separator after it.
        let t = r#"{"name":"n","plugins":[{"type":"tombstone"}, {"type":"ipvlan"}]}"#;
        assert_eq!(removed(t), r#"{"name":"n","plugins":[{"type":"ipvlan"}]}"#);
    }
}
