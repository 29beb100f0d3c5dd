//! Which networks of a configuration directory the runtime runs, pure logic: the runtime
//! (libcni's `ConfFiles` order, as containerd and CRI-O read it) loads the first valid file
//! in name order; when that file is Multus, the networks it delegates to (inline
//! `delegates`, or `clusterNetwork`/`defaultNetworks` naming a file of the directory). Every
//! file gets a verdict: edited, skipped, ignored, or not ready, with the reason.

use std::path::Path;

use crate::conflist::{self, Network, Shape};
use crate::error::InstallError;

/// One file of the directory, in name order.
pub struct Listed {
    pub name: String,
    pub text: String,
    pub net: Result<Network, InstallError>,
}

/// A network to give the entry: the file it is in (index in the listing) and where in it.
#[derive(Debug)]
pub struct Target {
    pub file: usize,
    pub net: Network,
    /// How the runtime comes to load it, when not as the directory's first file.
    pub via: Option<String>,
}

#[derive(Debug)]
pub enum Verdict {
    Edit(Target),
    /// Loaded, but not IPvlan-based (and not named).
    Skipped {
        file: usize,
        why: String,
        /// The network, and how the runtime comes to load it (as in [`Target`]).
        net: Box<Network>,
        via: Option<String>,
    },
    /// A file the runtime does not load.
    Ignored {
        file: usize,
        why: String,
    },
    /// A network that cannot be given the entry as it is: nothing of it is changed.
    NotReady {
        file: usize,
        why: String,
    },
    Warning(String),
}

/// The verdicts for `files` (sorted by name), in `dir` (as the node names it), editing the
/// networks `named` or, when none is, the IPvlan-based networks the runtime loads.
pub fn select(dir: &Path, files: &[Listed], named: &[String]) -> Vec<Verdict> {
    let shown = |i: usize| dir.join(&files[i].name).display().to_string();
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if let Err(e) = &f.net {
            out.push(Verdict::NotReady {
                file: i,
                why: format!("malformed network configuration: {e}; the runtime does not load it"),
            });
        }
    }
    let valid: Vec<usize> = (0..files.len()).filter(|&i| files[i].net.is_ok()).collect();
    let Some(&loaded) = valid.first() else {
        return out;
    };
    let top = |i: usize| files[i].net.as_ref().ok();

    // What the runtime runs, first: the loaded file, or what its Multus configuration names.
    let mut runs: Vec<Target> = Vec::new();
    let mut referenced: Vec<usize> = vec![loaded];
    let lnet = top(loaded).expect("valid");
    if let Some(m) = lnet.multus() {
        for d in 0..m.delegates {
            match conflist::parse_delegate(&files[loaded].text, d) {
                Ok(net) => runs.push(Target {
                    file: loaded,
                    net,
                    via: Some(format!("Multus delegate {d} of {}", shown(loaded))),
                }),
                Err(e) => out.push(Verdict::NotReady {
                    file: loaded,
                    why: format!("{e}"),
                }),
            }
        }
        let refs = m
            .cluster_network
            .iter()
            .map(|n| ("clusterNetwork", n))
            .chain(m.default_networks.iter().map(|n| ("defaultNetworks", n)));
        for (key, name) in refs {
            // A name is looked up in Multus's confDir: this directory only when it says so
            // (or says nothing).
            let here = m.conf_dir.as_deref().is_none_or(|d| Path::new(d) == dir);
            let found = valid.iter().copied().find(|&i| {
                if name.starts_with('/') {
                    dir.join(&files[i].name) == Path::new(name)
                } else {
                    here && top(i).is_some_and(|n| &n.name == name)
                }
            });
            match found {
                Some(i) => {
                    referenced.push(i);
                    runs.push(Target {
                        file: i,
                        net: top(i).expect("valid").clone(),
                        via: Some(format!("Multus ({}) loads {key} {name:?}", shown(loaded))),
                    });
                }
                None => out.push(Verdict::NotReady {
                    file: loaded,
                    why: format!(
                        "not edited: Multus takes its {key} {name:?} from {}: add the tombstone \
                         entry to that network's configuration, or run with --conf-dir naming \
                         the directory that holds it",
                        match (&m.conf_dir, m.kubeconfig) {
                            (Some(d), _) => format!("its confDir {d} or the API"),
                            (None, true) => "a NetworkAttachmentDefinition (through its \
                                             kubeconfig) or its confDir"
                                .to_string(),
                            (None, false) => "its confDir".to_string(),
                        }
                    ),
                }),
            }
        }
        if m.delegates == 0 && m.cluster_network.is_empty() && m.default_networks.is_empty() {
            out.push(Verdict::NotReady {
                file: loaded,
                why: if m.shim {
                    "not edited: the Multus thick plugin's daemon configuration names its \
                     networks: add the tombstone entry there"
                        .into()
                } else {
                    "not edited: Multus with neither delegates nor clusterNetwork".into()
                },
            });
        }
    } else {
        runs.push(Target {
            file: loaded,
            net: lnet.clone(),
            via: None,
        });
    }

    // Then every other network of the directory, in name order (for --network).
    let others = valid
        .iter()
        .copied()
        .filter(|i| !referenced.contains(i))
        .map(|i| Target {
            file: i,
            net: top(i).expect("valid").clone(),
            via: Some(format!(
                "named with --network; the runtime loads {} by default",
                shown(loaded)
            )),
        });
    let candidates: Vec<Target> = runs.into_iter().chain(others).collect();
    let in_runs = |t: &Target| t.file == loaded || referenced.contains(&t.file);

    let mut edits: Vec<Target> = Vec::new();
    let mut rest: Vec<Target> = Vec::new();
    if named.is_empty() {
        for t in candidates {
            if !in_runs(&t) {
                rest.push(t);
            } else if !t.net.is_ipvlan_based() {
                out.push(Verdict::Skipped {
                    file: t.file,
                    why: format!(
                        "network {:?}{}: main plugin {:?} is not IPvlan-based",
                        t.net.name,
                        t.via.as_ref().map_or(String::new(), |v| format!(", {v}")),
                        t.net.main_type().unwrap_or("")
                    ),
                    net: Box::new(t.net),
                    via: t.via,
                });
            } else {
                edits.push(t);
            }
        }
    } else {
        for t in candidates {
            let first = named.contains(&t.net.name)
                && !edits.iter().any(|e: &Target| e.net.name == t.net.name);
            if first { edits.push(t) } else { rest.push(t) }
        }
    }

    // A Multus delegate that is a single-plugin configuration is not converted in place.
    let mut kept = Vec::new();
    for t in edits {
        if t.net.shape == Shape::Single && !t.net.path.is_empty() {
            out.push(Verdict::NotReady {
                file: t.file,
                why: format!(
                    "network {:?} ({}) is a single-plugin configuration: not converted \
                     inside the Multus file; make it a list with \"plugins\"",
                    t.net.name,
                    t.via.as_deref().unwrap_or("")
                ),
            });
        } else {
            kept.push(t);
        }
    }
    let edits = kept;

    // The files left: the same network again, or not loaded at all. A converted .conf's own
    // list is the conversion's business.
    let converts_to = |i: usize| {
        edits.iter().any(|e| {
            e.net.shape == Shape::Single
                && e.net.path.is_empty()
                && stem(&files[e.file].name) == stem(&files[i].name)
                && files[i].name.ends_with(".conflist")
        })
    };
    for t in rest {
        if edits.iter().any(|e| e.file == t.file) || converts_to(t.file) {
            continue;
        }
        if let Some(e) = edits.iter().find(|e| e.net.name == t.net.name) {
            out.push(Verdict::Warning(format!(
                "network {:?} is also defined in {}: only {} is edited, the one the runtime \
                 loads",
                t.net.name,
                shown(t.file),
                shown(e.file)
            )));
        }
        if named.is_empty() && t.net.path.is_empty() && !in_runs(&t) {
            out.push(Verdict::Ignored {
                file: t.file,
                why: format!(
                    "the runtime loads {} first; name network {:?} with --network to edit \
                     it anyway",
                    shown(loaded),
                    t.net.name
                ),
            });
        }
    }
    out.extend(edits.into_iter().map(Verdict::Edit));
    out
}

/// A file name without its extension.
pub fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, text: &str) -> Listed {
        Listed {
            name: name.into(),
            text: text.into(),
            net: conflist::parse(text),
        }
    }

    fn lines(v: &[Verdict]) -> Vec<String> {
        v.iter()
            .map(|v| match v {
                Verdict::Edit(t) => format!("edit {} {:?}", t.file, t.net.path),
                Verdict::Skipped { file, .. } => format!("skipped {file}"),
                Verdict::Ignored { file, .. } => format!("ignored {file}"),
                Verdict::NotReady { file, .. } => format!("not ready {file}"),
                Verdict::Warning(w) => format!("warning {w}"),
            })
            .collect()
    }

    const IPVLAN: &str = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"ipvlan"}]}"#;
    const BRIDGE: &str = r#"{"cniVersion":"1.0.0","name":"br","plugins":[{"type":"bridge"}]}"#;

    #[test]
    fn the_first_valid_file_is_the_one_loaded() {
        let dir = Path::new("/etc/cni/net.d");
        let files = [
            listed("00-bad.conflist", "{"),
            listed("10-pods.conflist", IPVLAN),
            listed("20-br.conflist", BRIDGE),
        ];
        assert_eq!(
            lines(&select(dir, &files, &[])),
            ["not ready 0", "ignored 2", "edit 1 []"]
        );
        let files = [
            listed("10-br.conflist", BRIDGE),
            listed("20-pods.conflist", IPVLAN),
        ];
        assert_eq!(lines(&select(dir, &files, &[])), ["skipped 0", "ignored 1"]);
        // Named: edited even though the runtime loads another file first.
        assert_eq!(lines(&select(dir, &files, &["pods".into()])), ["edit 1 []"]);
    }

    #[test]
    fn multus_delegates_and_references() {
        let dir = Path::new("/etc/cni/net.d");
        let multus = r#"{"cniVersion":"1.0.0","name":"m","type":"multus","delegates":[
            {"cniVersion":"1.0.0","name":"d","plugins":[{"type":"ipvlan"}]},
            {"cniVersion":"1.0.0","name":"s","type":"ipvlan"},
            {"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}],
            "defaultNetworks":["br","/etc/cni/net.d/30-pods.conflist","ns/nad"]}"#;
        let files = [
            listed("00-multus.conf", multus),
            listed("20-br.conflist", BRIDGE),
            listed("30-pods.conflist", IPVLAN),
        ];
        let v = lines(&select(dir, &files, &[]));
        assert_eq!(
            v,
            [
                "not ready 0",
                "skipped 0",
                "skipped 1",
                "not ready 0",
                r#"edit 0 [Key("delegates"), Index(0)]"#,
                "edit 2 []",
            ]
        );
        // Multus looks names up in its confDir: another directory is not read here.
        let elsewhere = r#"{"cniVersion":"1.0.0","name":"m","type":"multus","confDir":"/etc/cni/multus/net.d","clusterNetwork":"pods"}"#;
        let files = [
            listed("00-multus.conf", elsewhere),
            listed("30-pods.conflist", IPVLAN),
        ];
        let v = select(dir, &files, &[]);
        assert_eq!(lines(&v), ["not ready 0", "ignored 1"]);
        let Verdict::NotReady { why, .. } = &v[0] else {
            panic!()
        };
        assert!(why.contains("/etc/cni/multus/net.d"), "{why}");
    }
}
