//! Whole-process tests: the built binary, run with an environment and stdin as a runtime
//! runs it. IPAM needs neither root nor a network namespace.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use common::*;
use tombstone_ipam::record::{self, Record};

const NET: &str = "pods";

#[test]
fn concurrent_adds_never_share_an_address() {
    let d = data_dir("concurrent");
    // 40 addresses (.10 - .49) for 64 pods.
    let c = conf(
        "1.1.0",
        NET,
        &d,
        r#""ranges":[[{"subnet":"10.3.0.0/24","rangeStart":"10.3.0.10","rangeEnd":"10.3.0.49"}]]"#,
    );
    let barrier = Arc::new(Barrier::new(64));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (c, b) = (c.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                add(&c, &format!("pod{i}"))
            })
        })
        .collect();
    let outs: Vec<Out> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok: Vec<String> = outs
        .iter()
        .filter(|o| o.rc == 0)
        .map(|o| address(o, 0))
        .collect();
    let unique: HashSet<&String> = ok.iter().collect();
    assert_eq!(ok.len(), 40, "every address is handed out once");
    assert_eq!(unique.len(), ok.len(), "no address given twice: {ok:?}");
    for o in outs.iter().filter(|o| o.rc != 0) {
        assert_eq!(o.json["code"], 103, "{}", o.stdout);
        let msg = o.json["msg"].as_str().unwrap();
        assert!(msg.contains("no IP addresses available"), "{msg}");
    }
    let st = state(&d, NET).unwrap();
    assert_eq!(st.allocs.len(), 40);
    let held: HashSet<String> = st.allocs.keys().map(|ip| format!("{ip}/24")).collect();
    assert_eq!(held, unique.into_iter().cloned().collect());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn del_is_idempotent_and_the_released_address_cools_down() {
    let d = data_dir("del");
    let c = conf("1.0.0", NET, &d, r#""ranges":[[{"subnet":"10.4.0.0/29"}]]"#);
    let first = address(&add(&c, "a"), 0);
    assert_eq!(first, "10.4.0.2/29");
    let o = del(&c, "a");
    assert_eq!((o.rc, o.stdout.as_str()), (0, ""));
    let before = snapshot(&d, NET);
    assert!(
        state(&d, NET)
            .unwrap()
            .released
            .contains_key(&"10.4.0.2".parse().unwrap())
    );
    let o = del(&c, "a");
    assert_eq!((o.rc, o.stdout.as_str()), (0, ""));
    assert_eq!(snapshot(&d, NET), before);
    // DEL of an attachment never seen, and without CNI_NETNS, also succeeds.
    let o = run_with(
        &bin(),
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "never"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ],
        &c,
    );
    assert_eq!(o.rc, 0, "{}", o.stdout);
    // .2 is cooling: the other four come first, then .2 rather than a failure.
    let mut got = vec![];
    for p in ["b", "c", "d", "e", "f"] {
        got.push(address(&add(&c, p), 0));
    }
    assert_eq!(
        got,
        [
            "10.4.0.3/29",
            "10.4.0.4/29",
            "10.4.0.5/29",
            "10.4.0.6/29",
            "10.4.0.2/29"
        ]
    );
    let o = add(&c, "g");
    assert_eq!(o.json["code"], 103);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn gc_respects_absent_present_and_empty_lists() {
    let d = data_dir("gc");
    let base = conf("1.1.0", NET, &d, r#""ranges":[[{"subnet":"10.5.0.0/24"}]]"#);
    for p in ["a", "b", "c"] {
        assert_eq!(add(&base, p).rc, 0);
    }
    let with = |list: &str| base.replacen('{', &format!("{{{list}"), 1);
    let before = snapshot(&d, NET);
    let o = gc(&base);
    assert_eq!((o.rc, o.stdout.as_str()), (0, ""));
    assert_eq!(snapshot(&d, NET), before, "no list: nothing released");
    let o = gc(&with(
        r#""cni.dev/valid-attachments":[{"containerID":"b","ifname":"eth0"}],"#,
    ));
    assert_eq!(o.rc, 0, "{}", o.stdout);
    let st = state(&d, NET).unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let b = ("b".to_string(), "eth0".to_string());
    assert_eq!(
        st.allocs,
        [(ip("10.5.0.3"), b)].into_iter().collect(),
        "{st:?}"
    );
    assert_eq!(
        st.released.keys().copied().collect::<Vec<_>>(),
        [ip("10.5.0.2"), ip("10.5.0.4")]
    );
    // The released attachments are gone from the index too: a's CHECK fails, b's passes.
    let check = |cid: &str| run_with(&bin(), &attach_env("CHECK", cid), &base);
    assert_eq!(check("a").json["code"], 3);
    assert_eq!(check("b").rc, 0);
    let o = gc(&with(r#""cni.dev/valid-attachments":[],"#));
    assert_eq!(o.rc, 0);
    let st = state(&d, NET).unwrap();
    assert!(
        st.allocs.is_empty(),
        "empty list: everything released: {st:?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn status_reports_exhaustion_and_unusable_state() {
    let d = data_dir("status");
    let c = conf("1.1.0", NET, &d, r#""ranges":[[{"subnet":"10.6.0.0/30"}]]"#);
    let o = status(&c);
    assert_eq!((o.rc, o.stdout.as_str()), (0, ""));
    assert_eq!(add(&c, "a").rc, 0); // the only address, .2
    let o = status(&c);
    assert_eq!(o.json["code"], 50, "{}", o.stdout);
    assert!(o.json["msg"].as_str().unwrap().contains("exhausted"));
    // A cooling address still serves ADD, so STATUS is fine again after DEL.
    assert_eq!(del(&c, "a").rc, 0);
    assert_eq!(status(&c).rc, 0);
    std::fs::write(
        state_dir(&d, NET).join("format"),
        "{\"format\":\"tombstone-ipam\"",
    )
    .unwrap();
    let o = status(&c);
    assert_eq!(o.json["code"], 50);
    assert!(
        o.json["msg"].as_str().unwrap().contains("unusable"),
        "{}",
        o.stdout
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A state file of format 1 holding `records`, as an earlier release wrote it.
fn v1_state(records: &[Record<'_>]) -> String {
    let mut s = format!("{}\n", record::header(NET));
    for r in records {
        s += &format!("{},\n", r.to_line());
    }
    s + &format!("{}\n{}\n", record::trailer(records.len()), record::CLOSING)
}

fn alloc(ip: &str, cid: &'static str) -> Record<'static> {
    Record::Alloc {
        ip: ip.parse().unwrap(),
        container_id: cid.into(),
        ifname: "eth0".into(),
    }
}

#[test]
fn corrupt_state_is_a_clear_error_never_a_reset() {
    let d = data_dir("corrupt");
    let c = conf("1.0.0", NET, &d, r#""ranges":[[{"subnet":"10.7.0.0/24"}]]"#);
    // A state file of format 1 is migrated by the first write; a damaged one is refused
    // and left as it is.
    let path = d.join(NET).join("tombstone-ipam.json");
    std::fs::create_dir_all(d.join(NET)).unwrap();
    let good = v1_state(&[alloc("10.7.0.2", "a"), alloc("10.7.0.3", "b")]);
    let truncated = &good[..good.len() - 20];
    let duplicated = good.replace(
        "\"b\",\"eth0\"",
        "\"b\",\"eth0\"],\n[\"a\",\"10.7.0.2\",\"x\",\"eth0\"",
    );
    let newer = good.replace("\"version\":1", "\"version\":7");
    for bad in [
        truncated.to_string(),
        duplicated,
        good.replace("10.7.0.3", "10.7.0.300"),
        String::new(),
        newer,
    ] {
        std::fs::write(&path, &bad).unwrap();
        for o in [
            add(&c, "z"),
            del(&c, "a"),
            run_with(&bin(), &attach_env("CHECK", "a"), &c),
        ] {
            assert_eq!(o.json["code"], 102, "{}", o.stdout);
            assert!(o.json["msg"].as_str().unwrap().contains("unusable"));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);
        assert!(!state_dir(&d, NET).exists());
    }
    std::fs::write(&path, &good).unwrap();
    assert_eq!(address(&add(&c, "c"), 0), "10.7.0.4/24");
    assert!(!path.exists(), "the migrated file is moved aside");
    // The format marker of this format: damaged, missing, or from a newer release.
    let marker = state_dir(&d, NET).join("format");
    let text = std::fs::read_to_string(&marker).unwrap();
    for (bad, says) in [
        ("garbage".to_string(), "unusable"),
        (text.replace("\"version\":2", "\"version\":3"), "newer"),
        (text.replace(NET, "other"), "belongs to"),
    ] {
        std::fs::write(&marker, &bad).unwrap();
        for o in [
            add(&c, "z"),
            del(&c, "a"),
            gc(&c.replace("1.0.0", "1.1.0").replacen(
                '{',
                r#"{"cni.dev/valid-attachments":[],"#,
                1,
            )),
        ] {
            assert_eq!(o.json["code"], 102, "{}", o.stdout);
            assert!(
                o.json["msg"].as_str().unwrap().contains(says),
                "{}",
                o.stdout
            );
        }
    }
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(add(&c, "z").json["code"], 102);
    std::fs::write(&marker, &text).unwrap();
    // An address record a power loss left empty: its address is never handed out, GC
    // releases it.
    std::fs::write(state_dir(&d, NET).join("ip-10.7.0.5"), "").unwrap();
    assert_eq!(address(&add(&c, "d"), 0), "10.7.0.6/24");
    let o = gc(&c.replace("1.0.0", "1.1.0").replacen(
        '{',
        r#"{"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth0"},{"containerID":"c","ifname":"eth0"},{"containerID":"d","ifname":"eth0"}],"#,
        1,
    ));
    assert_eq!(o.rc, 0, "{}", o.stdout);
    let st = state(&d, NET).unwrap();
    assert_eq!(st.allocs.len(), 4, "{st:?}");
    assert!(
        st.released.contains_key(&"10.7.0.5".parse().unwrap()),
        "{st:?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_index_a_power_loss_left_empty_is_rebuilt_from_the_address_files() {
    let d = data_dir("empty-index");
    let c = conf("1.0.0", NET, &d, r#""ranges":[[{"subnet":"10.8.0.0/24"}]]"#);
    // Two containers whose index lines share one file, and a third.
    let bucket = tombstone_ipam::store::ctr_name;
    let b = (0..)
        .map(|i| format!("b{i}"))
        .find(|id| bucket(id) == bucket("a"))
        .unwrap();
    let [ia, ib, _] = ["a", b.as_str(), "c"].map(|id| address(&add(&c, id), 0));
    let file = state_dir(&d, NET).join(bucket("a"));
    let lines = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, "").unwrap();
    // CHECK finds the address and writes nothing; DEL releases it and stores the other line.
    let o = run_with(&bin(), &attach_env("CHECK", "a"), &c);
    assert_eq!(o.rc, 0, "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("rebuilt"), "{}", o.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
    let o = del(&c, "a");
    assert_eq!(o.rc, 0, "{}", o.stdout);
    let st = state(&d, NET).unwrap();
    let ip = |a: &str| a.split('/').next().unwrap().parse().unwrap();
    assert!(st.released.contains_key(&ip(&ia)), "{st:?}");
    let left = std::fs::read_to_string(&file).unwrap();
    assert_eq!(left.lines().count(), 1, "{left}");
    assert!(lines.contains(left.as_str()) && left.contains(&b), "{left}");
    assert_eq!(del(&c, &b).rc, 0);
    let st = state(&d, NET).unwrap();
    assert!(st.released.contains_key(&ip(&ib)), "{st:?}");
    // The index is a superset: the released line may stay, it no longer counts.
    let o = run_with(&bin(), &attach_env("CHECK", &b), &c);
    assert_eq!(o.json["code"], 3, "{}", o.stdout);
    let _ = std::fs::remove_dir_all(&d);
}

/// Container IDs as runtimes make them (64 hex digits) whose index lines share a bucket.
fn same_bucket(n: usize) -> Vec<String> {
    let bucket = tombstone_ipam::store::ctr_name;
    let first = bucket(&format!("{:064x}", 0));
    (0u64..)
        .map(|i| format!("{i:064x}"))
        .filter(|id| bucket(id) == first)
        .take(n)
        .collect()
}

#[test]
fn a_torn_or_damaged_index_is_rebuilt_from_the_address_files() {
    // What a killed append (a part of a line) or a power loss (zeros, a block of another
    // file) can leave in a bucket: the next call that reads it rebuilds it, whole.
    for (k, damage) in [
        &b"[\"a\",\"10.8.0.77\",\"00"[..],
        &[0u8; 40][..],
        &b"\0\0\0\0[\"a\",\"10.8.0.78\",\"x\",\"eth0\"]\n"[..],
        &b"not an index line\n"[..],
    ]
    .into_iter()
    .enumerate()
    {
        let d = data_dir(&format!("torn-{k}"));
        let c = conf("1.0.0", NET, &d, r#""ranges":[[{"subnet":"10.8.0.0/24"}]]"#);
        let ids = same_bucket(3);
        let ips: Vec<String> = ids[..2].iter().map(|id| address(&add(&c, id), 0)).collect();
        let file = state_dir(&d, NET).join(tombstone_ipam::store::ctr_name(&ids[0]));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(damage);
        std::fs::write(&file, &bytes).unwrap();
        let o = run_with(&bin(), &attach_env("CHECK", &ids[0]), &c);
        assert_eq!(o.rc, 0, "damage {k}: {} {}", o.stdout, o.stderr);
        assert!(o.stderr.contains("rebuilt"), "damage {k}: {}", o.stderr);
        // The next ADD in the bucket stores the rebuilt lines and its own.
        let third = add(&c, &ids[2]);
        assert_eq!(third.rc, 0, "damage {k}: {}", third.stdout);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 3, "damage {k}: {text:?}");
        assert!(text.ends_with('\n'), "damage {k}: {text:?}");
        for id in &ids {
            assert!(text.contains(id.as_str()), "damage {k}: {text:?}");
        }
        assert!(state(&d, NET).is_ok(), "damage {k}: {:?}", state(&d, NET));
        // A repeated ADD finds what each holds.
        for (id, ip) in ids.iter().zip(&ips) {
            assert_eq!(&address(&add(&c, id), 0), ip, "damage {k}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn duplicated_index_lines_are_harmless() {
    let d = data_dir("dup-index");
    let c = conf("1.0.0", NET, &d, r#""ranges":[[{"subnet":"10.8.0.0/24"}]]"#);
    let ids = same_bucket(2);
    let ia = address(&add(&c, &ids[0]), 0);
    assert_eq!(add(&c, &ids[1]).rc, 0);
    let file = state_dir(&d, NET).join(tombstone_ipam::store::ctr_name(&ids[0]));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.repeat(3)).unwrap();
    // The same address again (requested), after a DEL: its old line counts once more.
    let again = add(&c, &ids[0]);
    assert_eq!(
        again.json["ips"].as_array().map(Vec::len),
        Some(1),
        "{}",
        again.stdout
    );
    assert_eq!(address(&again, 0), ia);
    assert_eq!(del(&c, &ids[0]).rc, 0);
    let ip = ia.split('/').next().unwrap();
    let arg = format!("IP={ip}");
    let mut env = attach_env("ADD", &ids[0]);
    env.push(("CNI_ARGS", &arg));
    let o = run_with(&bin(), &env, &c);
    assert_eq!(o.rc, 0, "{}", o.stdout);
    assert_eq!(
        o.json["ips"].as_array().map(Vec::len),
        Some(1),
        "{}",
        o.stdout
    );
    let o = run_with(&bin(), &attach_env("CHECK", &ids[0]), &c);
    assert_eq!(o.rc, 0, "{}", o.stdout);
    assert_eq!(del(&c, &ids[0]).rc, 0);
    let o = run_with(&bin(), &attach_env("CHECK", &ids[0]), &c);
    assert_eq!(o.json["code"], 3, "{}", o.stdout);
    let o = run_with(&bin(), &attach_env("CHECK", &ids[1]), &c);
    assert_eq!(o.rc, 0, "{}", o.stdout);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_index_bucket_appended_to_is_compacted() {
    // Pods of one bucket come and go: each ADD appends a line, no DEL removes one; the
    // bucket is rewritten with its live lines before it grows past its bound.
    let d = data_dir("compact");
    let c = conf(
        "1.0.0",
        NET,
        &d,
        r#""ranges":[[{"subnet":"10.8.0.0/24"}]],"reuseAfterSeconds":0"#,
    );
    let ids = same_bucket(3);
    let file = state_dir(&d, NET).join(tombstone_ipam::store::ctr_name(&ids[0]));
    let keep = address(&add(&c, &ids[0]), 0);
    let line = std::fs::read(&file).unwrap().len() as u64;
    let rounds = 3 * tombstone_ipam::store::INDEX_COMPACT_BYTES / line;
    let mut largest = 0;
    for r in 0..rounds {
        let id = &ids[1 + (r % 2) as usize];
        assert_eq!(add(&c, id).rc, 0);
        largest = largest.max(std::fs::metadata(&file).unwrap().len());
        assert_eq!(del(&c, id).rc, 0);
    }
    assert!(
        largest <= tombstone_ipam::store::INDEX_COMPACT_BYTES,
        "{largest} bytes"
    );
    assert!(
        largest > line,
        "{largest} bytes: the bucket was appended to"
    );
    assert_eq!(address(&add(&c, &ids[0]), 0), keep);
    let o = run_with(&bin(), &attach_env("CHECK", &ids[1]), &c);
    assert_eq!(o.json["code"], 3, "{}", o.stdout);
    assert!(state(&d, NET).is_ok());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn kill_9_during_adds_leaves_a_readable_state() {
    let d = data_dir("kill");
    let c = conf("1.1.0", NET, &d, r#""ranges":[[{"subnet":"10.8.0.0/16"}]]"#);
    // Some state to rewrite, so a kill can land in the middle of a large write.
    for i in 0..20 {
        assert_eq!(add(&c, &format!("warm{i}")).rc, 0);
    }
    let mut killed = 0;
    for round in 0..40u64 {
        let mut children = vec![];
        for k in 0..4 {
            let mut child = std::process::Command::new(bin())
                .envs(attach_env("ADD", &format!("k{round}x{k}")))
                .env("TOMBSTONE_LOG", "stderr")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(c.as_bytes());
            children.push(child);
        }
        std::thread::sleep(std::time::Duration::from_micros(200 + (round * 137) % 3000));
        for mut ch in children {
            // SIGKILL: no chance to clean up.
            if ch.kill().is_ok() {
                killed += 1;
            }
            let _ = ch.wait();
        }
    }
    assert!(killed > 0);
    let o = add(&c, "after");
    assert_eq!(o.rc, 0, "{}", o.stdout);
    // Every file whole, no temporary file left, every allocation found through the index.
    let st = state(&d, NET).unwrap();
    assert!(st.strays.is_empty(), "{:?}", st.strays);
    for (cid, _) in st.allocs.values() {
        let o = run_with(&bin(), &attach_env("CHECK", cid), &c);
        assert_eq!(o.rc, 0, "{cid}: {}", o.stdout);
    }
    assert_eq!(del(&c, "warm0").rc, 0);
    assert_eq!(status(&c).rc, 0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_input_is_an_error_object_and_leaves_state_untouched() {
    let d = data_dir("bad");
    let ipam = r#""ranges":[[{"subnet":"10.9.0.0/24"}]]"#;
    let good = conf("1.1.0", NET, &d, ipam);
    assert_eq!(add(&good, "holder").rc, 0); // holds 10.9.0.2
    let before = snapshot(&d, NET);
    let dd = d.display().to_string();
    let with_ipam = |body: &str| conf("1.1.0", NET, &d, body);
    let add_env = attach_env("ADD", "newpod");
    let env_with = |extra: (&'static str, &'static str)| {
        let mut e: Vec<(&str, &str)> = attach_env("ADD", "newpod")
            .into_iter()
            .filter(|(k, _)| *k != extra.0)
            .collect();
        e.push(extra);
        e
    };
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u64);
    let cases: Vec<Case> = vec![
        ("not JSON", add_env.clone(), "{".into(), 6),
        ("not an object", add_env.clone(), "[1]".into(), 6),
        (
            "no cniVersion",
            add_env.clone(),
            format!(r#"{{"name":"{NET}","ipam":{{{ipam},"dataDir":"{dd}"}}}}"#),
            7,
        ),
        (
            "unknown cniVersion",
            add_env.clone(),
            good.replace("1.1.0", "0.3.2"),
            1,
        ),
        (
            "bad network name",
            add_env.clone(),
            good.replace("\"pods\"", "\"../pods\""),
            7,
        ),
        (
            "no ipam",
            add_env.clone(),
            r#"{"cniVersion":"1.1.0","name":"pods"}"#.into(),
            7,
        ),
        ("no ranges", add_env.clone(), with_ipam(r#""routes":[]"#), 7),
        (
            "host bits",
            add_env.clone(),
            with_ipam(r#""ranges":[[{"subnet":"10.9.0.5/24"}]]"#),
            7,
        ),
        (
            "overlap",
            add_env.clone(),
            with_ipam(r#""ranges":[[{"subnet":"10.9.0.0/24"}],[{"subnet":"10.9.0.0/25"}]]"#),
            7,
        ),
        (
            "gateway outside",
            add_env.clone(),
            with_ipam(r#""ranges":[[{"subnet":"10.9.0.0/24","gateway":"10.8.0.1"}]]"#),
            7,
        ),
        (
            "negative cool-down",
            add_env.clone(),
            with_ipam(&format!(r#"{ipam},"reuseAfterSeconds":-5"#)),
            7,
        ),
        (
            "bad route",
            add_env.clone(),
            with_ipam(&format!(r#"{ipam},"routes":[{{"dst":"nowhere"}}]"#)),
            7,
        ),
        (
            "relative dataDir",
            add_env.clone(),
            good.replace(&dd, "relative/dir"),
            7,
        ),
        (
            "bad runtimeConfig ip",
            add_env.clone(),
            good.replacen('{', r#"{"runtimeConfig":{"ips":["10.9.0.x"]},"#, 1),
            7,
        ),
        (
            "CNI_ARGS IP malformed",
            env_with(("CNI_ARGS", "IP=10.9.0.300")),
            good.clone(),
            4,
        ),
        (
            "CNI_ARGS no pairs",
            env_with(("CNI_ARGS", "garbage")),
            good.clone(),
            4,
        ),
        (
            "bad container id",
            env_with(("CNI_CONTAINERID", "../etc")),
            good.clone(),
            4,
        ),
        (
            "ifname too long",
            env_with(("CNI_IFNAME", "a-very-long-ifname")),
            good.clone(),
            4,
        ),
        (
            "no netns on ADD",
            attach_env("ADD", "newpod")
                .into_iter()
                .filter(|(k, _)| *k != "CNI_NETNS")
                .collect(),
            good.clone(),
            4,
        ),
        (
            "unknown verb",
            env_with(("CNI_COMMAND", "FROB")),
            good.clone(),
            4,
        ),
        (
            "requested address in use",
            env_with(("CNI_ARGS", "IP=10.9.0.2")),
            good.clone(),
            106,
        ),
        (
            "requested gateway",
            env_with(("CNI_ARGS", "IP=10.9.0.1")),
            good.clone(),
            106,
        ),
        (
            "requested outside ranges",
            env_with(("CNI_ARGS", "IP=10.99.0.1")),
            good.clone(),
            106,
        ),
        (
            "GC on a 1.0.0 config",
            vec![("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")],
            good.replace("1.1.0", "1.0.0"),
            1,
        ),
        (
            "GC list not a list",
            vec![("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")],
            good.replacen('{', r#"{"cni.dev/valid-attachments":"all","#, 1),
            7,
        ),
        (
            "CHECK unknown attachment",
            attach_env("CHECK", "stranger"),
            good.clone(),
            3,
        ),
    ];
    assert!(cases.len() >= 15);
    for (what, env, stdin, code) in &cases {
        let o = run_with(&bin(), env, stdin);
        assert_ne!(o.rc, 0, "{what}: {}", o.stdout);
        assert_eq!(o.json["code"], *code, "{what}: {}", o.stdout);
        assert!(
            o.json["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert_eq!(snapshot(&d, NET), before, "{what}: state changed");
    }
    let _ = std::fs::remove_dir_all(&d);
}
