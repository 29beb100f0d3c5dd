//! Drop-in equivalence with the reference host-local: the same config given to both
//! binaries yields the same result, and switching a data directory from host-local to
//! tombstone-ipam imports its allocations. Needs the reference host-local, hence `#[ignore]`:
//! `make test` includes these tests, and then a missing host-local fails them.

mod common;

use common::*;

fn ipam_body(resolv: &std::path::Path) -> String {
    format!(
        r#""ranges":[[{{"subnet":"10.20.0.0/24","rangeStart":"10.20.0.10","gateway":"10.20.0.254"}},{{"subnet":"10.21.0.0/24"}}],[{{"subnet":"fd20::/120"}}]],
           "routes":[{{"dst":"0.0.0.0/0"}},{{"dst":"10.30.0.0/16","gw":"10.20.0.1"}},{{"dst":"::/0"}}],
           "resolvConf":"{}""#,
        resolv.display()
    )
}

#[test]
#[ignore = "needs the reference host-local plugin: containernetworking-plugins (make deps)"]
fn same_config_same_result() {
    let hl = host_local();
    let d = data_dir("dropin");
    let resolv = d.join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 10.0.0.10\nsearch svc.local local\noptions ndots:5\n",
    )
    .unwrap();
    for version in ["1.0.0", "0.4.0"] {
        let name = format!("eq{}", version.replace('.', ""));
        for (cid, args) in [
            ("p1", ""),
            ("p2", "IgnoreUnknown=1;IP=10.20.0.77"),
            ("p3", ""),
        ] {
            let mut env = attach_env("ADD", cid);
            env.push(("CNI_ARGS", args));
            let theirs = run_with(
                &hl,
                &env,
                &conf(version, &name, &d.join("hl"), &ipam_body(&resolv)),
            );
            let ours = run_with(
                &bin(),
                &env,
                &conf(version, &name, &d.join("ts"), &ipam_body(&resolv)),
            );
            assert_eq!(theirs.rc, 0, "{}", theirs.stdout);
            assert_eq!(ours.rc, 0, "{}", ours.stdout);
            assert_eq!(ours.json, theirs.json, "{version} {cid}");
        }
        // DEL: both succeed silently, twice.
        for _ in 0..2 {
            let env = attach_env("DEL", "p1");
            let theirs = run_with(
                &hl,
                &env,
                &conf(version, &name, &d.join("hl"), &ipam_body(&resolv)),
            );
            let ours = run_with(
                &bin(),
                &env,
                &conf(version, &name, &d.join("ts"), &ipam_body(&resolv)),
            );
            assert_eq!(
                (ours.rc, ours.stdout.as_str()),
                (theirs.rc, theirs.stdout.as_str())
            );
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
#[ignore = "needs the reference host-local plugin: containernetworking-plugins (make deps)"]
fn switching_from_host_local_imports_its_allocations() {
    let hl = host_local();
    let d = data_dir("import");
    let c = conf(
        "1.0.0",
        "mig",
        &d,
        r#""ranges":[[{"subnet":"10.40.0.0/29"}]],"reuseAfterSeconds":0"#,
    );
    let mut held = vec![];
    for p in ["a", "b", "c"] {
        let o = run_with(&hl, &attach_env("ADD", p), &c);
        assert_eq!(o.rc, 0, "{}", o.stdout);
        held.push(address(&o, 0));
    }
    // host-local's next would be .5; so is ours, and none of the held ones.
    let o = add(&c, "d");
    assert_eq!(address(&o, 0), "10.40.0.5/29");
    assert!(!held.contains(&address(&o, 0)));
    // The imported attachments are ours now: DEL frees b's address, re-given at once with
    // a zero cool-down once the cursor wraps around.
    assert_eq!(del(&c, "b").rc, 0);
    assert_eq!(address(&add(&c, "e"), 0), "10.40.0.6/29");
    assert_eq!(address(&add(&c, "f"), 0), held[1]);
    let o = add(&c, "g");
    assert_eq!(o.json["code"], 103, "{}", o.stdout);
    let _ = std::fs::remove_dir_all(&d);
}
