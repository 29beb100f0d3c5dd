//! Every spec version a runtime may speak, against the built `tombstone-ipam` (no root): ADD
//! answers in the config's format (the 0.2.0 `ip4`/`ip6` form, the 0.3.x one with
//! `ips[].version`), DEL releases, CHECK is refused before 0.4.0 with code 1; a mistyped
//! `ipam` value names its key, an unknown `ipam` key is a warning naming it.

mod common;

use common::*;

const NET: &str = "pods";

fn check(conf: &str, cid: &str) -> Out {
    run_with(&bin(), &attach_env("CHECK", cid), conf)
}

#[test]
fn version_lists_every_version() {
    let o = run_with(
        &bin(),
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion":"0.2.0"}"#,
    );
    assert_eq!(o.rc, 0);
    assert_eq!(
        o.json["supportedVersions"],
        serde_json::json!([
            "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
        ])
    );
    assert_eq!(o.json["cniVersion"], "0.2.0");
}

#[test]
fn a_0_3_x_add_answers_with_ip_versions_and_check_is_refused() {
    for v in ["0.3.0", "0.3.1"] {
        let d = data_dir(&format!("v{v}"));
        let c = conf(
            v,
            NET,
            &d,
            r#""ranges":[[{"subnet":"10.4.0.0/29"}],[{"subnet":"fd04::/120"}]],"routes":[{"dst":"0.0.0.0/0"}]"#,
        );
        let o = add(&c, "a");
        assert_eq!(o.rc, 0, "{v}: {}", o.stdout);
        assert_eq!(o.json["cniVersion"], v);
        assert_eq!(o.json["ips"][0]["version"], "4", "{v}: {}", o.stdout);
        assert_eq!(o.json["ips"][0]["address"], "10.4.0.2/29");
        assert_eq!(o.json["ips"][1]["version"], "6");
        assert_eq!(o.json["routes"][0]["dst"], "0.0.0.0/0");
        let e = check(&c, "a");
        assert_eq!(
            (e.rc, e.json["code"].as_u64()),
            (1, Some(1)),
            "{v}: {}",
            e.stdout
        );
        assert!(
            e.json["msg"].as_str().unwrap().contains("CHECK"),
            "{}",
            e.stdout
        );
        let o = del(&c, "a");
        assert_eq!((o.rc, o.stdout.as_str()), (0, ""), "{v}");
        assert!(state(&d, NET).unwrap().allocs.is_empty(), "{v}: released");
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn a_0_2_0_add_answers_with_ip4_and_ip6() {
    for v in ["0.1.0", "0.2.0"] {
        let d = data_dir(&format!("v{v}"));
        let c = conf(
            v,
            NET,
            &d,
            r#""ranges":[[{"subnet":"10.4.0.0/29","gateway":"10.4.0.1"}],[{"subnet":"fd04::/120"}]],
               "routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]"#,
        );
        let o = add(&c, "a");
        assert_eq!(o.rc, 0, "{v}: {}", o.stdout);
        assert_eq!(
            o.json,
            serde_json::json!({
                "cniVersion": v,
                "ip4": {"ip": "10.4.0.2/29", "gateway": "10.4.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                "ip6": {"ip": "fd04::2/120", "gateway": "fd04::1", "routes": [{"dst": "::/0"}]},
                "dns": {}
            }),
            "{v}"
        );
        assert_eq!(check(&c, "a").json["code"], 1, "{v}");
        let o = del(&c, "a");
        assert_eq!((o.rc, o.stdout.as_str()), (0, ""), "{v}");
        assert!(state(&d, NET).unwrap().allocs.is_empty(), "{v}: released");
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn a_mistyped_value_names_its_key_and_an_unknown_key_is_a_warning() {
    let d = data_dir("keys");
    let c = conf(
        "0.3.1",
        NET,
        &d,
        r#""ranges":[[{"subnet":"10.4.0.0/29"}]],"reuseAfterSeconds":"30""#,
    );
    let o = add(&c, "a");
    assert_eq!(
        (o.rc, o.json["code"].as_u64()),
        (1, Some(7)),
        "{}",
        o.stdout
    );
    assert!(
        o.json["msg"]
            .as_str()
            .unwrap()
            .contains("ipam.reuseAfterSeconds"),
        "{}",
        o.stdout
    );

    let c = conf(
        "0.3.1",
        NET,
        &d,
        r#""ranges":[[{"subnet":"10.4.0.0/29"}]],"reuseAfterSecond":30"#,
    );
    let o = add(&c, "a");
    assert_eq!(o.rc, 0, "an unknown key does not fail ADD: {}", o.stdout);
    assert!(
        o.stderr
            .contains(r#"unknown config key "ipam.reuseAfterSecond""#)
            && o.stderr
                .contains(r#"did you mean "ipam.reuseAfterSeconds"?"#),
        "{}",
        o.stderr
    );
    // The main plugin's keys beside `ipam` are not the IPAM's to judge.
    assert!(!o.stderr.contains("\"type\""), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&d);
}
