//! The cost of a call does not grow with the addresses in use: with 60 000 allocations in a
//! /16 (a state of the previous format, as an in-place upgrade finds it), an ADD and a DEL
//! read and write a few kilobytes, counted by `strace` (no timing). The first call migrates
//! the state; the ones measured after it must not touch the whole of it. Nor does one
//! rename a new file over an existing one: ext4 (`auto_da_alloc`, its default) then writes
//! the new file's blocks out within the call, the most of a call's time on a disk, and the
//! files replaced (index bucket, cursor) exist only when the pool is in use. Nor does an
//! ADD or DEL replace or remove an index file at all: with 60 000 in use every bucket exists
//! and was written back long ago, and freeing its block (the removal of the file an exchange
//! replaced) waits for a discard on a file system mounted with `discard`; an ADD appends its
//! line to the bucket, a DEL leaves the bucket alone.
//!
//! `cargo test --release -p tombstone-ipam --test scale -- --include-ignored --nocapture`
//! prints the bytes and syscalls counted. Needs strace (not root).

mod common;
use tombstone_testkit::strace;

use std::net::Ipv4Addr;
use std::path::Path;

use tombstone_ipam::record::{self, Record};

const NET: &str = "big";
const USED: u32 = 60_000;
/// Bytes one ADD or DEL may read and write in all (the process's own start-up included).
const BYTE_BUDGET: usize = 64 << 10;
/// Syscalls one ADD or DEL may make.
const CALL_BUDGET: usize = 400;

/// A state file of format version 1 with `n` allocations from 10.50.0.2 on, the cursor
/// on the last.
fn populate_v1(data: &Path, n: u32) {
    let dir = data.join(NET);
    std::fs::create_dir_all(&dir).unwrap();
    let first = u32::from(Ipv4Addr::new(10, 50, 0, 2));
    let mut s = format!("{}\n", record::header(NET));
    let last = Ipv4Addr::from(first + n - 1);
    s += &format!(
        "{},\n",
        Record::Cursor {
            set: 0,
            ip: last.into()
        }
        .to_line()
    );
    for k in 0..n {
        let id = format!("{:064x}", 1_000_000 + k);
        let r = Record::Alloc {
            ip: Ipv4Addr::from(first + k).into(),
            container_id: id.as_str().into(),
            ifname: "eth0".into(),
        };
        s += &format!("{},\n", r.to_line());
    }
    s += &format!("{}\n{}\n", record::trailer(n as usize + 1), record::CLOSING);
    std::fs::write(dir.join("tombstone-ipam.json"), s).unwrap();
}

/// The calls of one traced run that rename onto, or remove, an index file (`ctr-*`) of
/// `before`, exchanges included: an existing bucket is only appended to.
fn index_replaced(calls: &[(String, String)], before: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|(n, _)| {
            matches!(
                n.as_str(),
                "rename" | "renameat" | "renameat2" | "unlink" | "unlinkat"
            )
        })
        .filter(|(_, line)| !line.contains(" = -1 "))
        .filter(|(_, line)| {
            line.split('"')
                .filter_map(|p| Path::new(p).file_name()?.to_str())
                .any(|name| name.starts_with("ctr-") && before.iter().any(|b| b == name))
        })
        .map(|(_, line)| line.clone())
        .collect()
}

/// Bytes moved by read/write-like calls and the number of calls of one traced run.
fn io_of(calls: &[(String, String)]) -> (usize, usize) {
    let bytes = calls
        .iter()
        .filter(|(n, _)| {
            matches!(
                n.as_str(),
                "read" | "write" | "pread64" | "pwrite64" | "readv" | "writev" | "getdents64"
            )
        })
        .filter_map(|(_, line)| line.rsplit_once(" = ")?.1.trim().parse::<usize>().ok())
        .sum();
    (bytes, calls.len())
}

/// The renames of one traced run that replace a file of `before` (the state directory's
/// names before the run): a plain `rename`, not a `RENAME_EXCHANGE`.
fn renames_over(calls: &[(String, String)], before: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|(n, _)| matches!(n.as_str(), "rename" | "renameat" | "renameat2"))
        .filter(|(_, line)| !line.contains("RENAME_EXCHANGE") && !line.contains(" = -1 "))
        .filter_map(|(_, line)| {
            let target = line.split('"').nth(3)?;
            let name = Path::new(target).file_name()?.to_str()?;
            before.iter().any(|b| b == name).then(|| line.clone())
        })
        .collect()
}

#[test]
#[ignore = "needs strace"]
fn add_and_del_with_60000_in_use_touch_only_what_they_need() {
    strace::require(false);
    let d = common::data_dir("scale");
    populate_v1(&d, USED);
    let conf = common::conf(
        "1.1.0",
        NET,
        &d,
        r#""ranges":[[{"subnet":"10.50.0.0/16"}]]"#,
    );
    let cmd = |verb: &str, cid: &str| {
        let mut c = strace::Cmd::new(common::bin()).stdin(conf.clone());
        for (k, v) in common::attach_env(verb, cid) {
            c = c.env(k, v);
        }
        c.env("TOMBSTONE_LOG", "stderr")
    };
    // The upgrade: the first call reads the old state whole (once).
    let first = strace::run(&cmd("ADD", "first"), strace::Trace::Off);
    assert!(first.ok(), "{}", first.summary());
    for (verb, cid) in [
        ("ADD", "new"),
        ("DEL", "new"),
        ("ADD", "other"),
        ("DEL", "first"),
    ] {
        let before: Vec<String> = std::fs::read_dir(common::state_dir(&d, NET))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let (r, calls) = strace::record(&cmd(verb, cid), &d);
        assert!(r.ok(), "{verb} {cid}: {}", r.summary());
        let over = renames_over(&calls, &before);
        assert!(
            over.is_empty(),
            "{verb} {cid} renames over existing files (ext4 writes them out): {over:#?}"
        );
        let replaced = index_replaced(&calls, &before);
        assert!(
            replaced.is_empty(),
            "{verb} {cid} replaces or removes an existing index file (its block is freed): {replaced:#?}"
        );
        let (bytes, n) = io_of(&calls);
        println!("{verb} {cid} with {USED} in use: {bytes} bytes read and written, {n} syscalls");
        assert!(
            bytes <= BYTE_BUDGET,
            "{verb} {cid} moved {bytes} bytes (budget {BYTE_BUDGET}): it reads or writes the whole state"
        );
        assert!(n <= CALL_BUDGET, "{verb} {cid} made {n} syscalls");
    }
    // Still right: the 60 000 are held, round robin went on after them (.98 to .100 given).
    let o = common::add(&conf, "check");
    assert_eq!(common::address(&o, 0), "10.50.234.101/16", "{}", o.stdout);
    let _ = std::fs::remove_dir_all(&d);
}
