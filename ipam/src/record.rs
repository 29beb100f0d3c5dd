//! The state file format, version 1: one JSON document laid out one record per line, so
//! it streams in and out without being held in memory and stays readable with `jq`:
//!
//! ```text
//! {"format":"tombstone-ipam","version":1,"network":"pods","records":[
//! ["c",0,"10.1.0.9"],
//! ["a","10.1.0.9","<container id>","eth0"],
//! ["r","10.1.0.7",1718000000],
//! ["end",3]
//! ]}
//! ```
//!
//! `c`: the cursor of range set 0 (the last address handed out there); `a`: an address
//! allocated to an attachment (an empty ifname, from an old host-local file, matches any);
//! `r`: an address released at a Unix time, cooling down; `end`: how many records precede
//! it, so a truncated file is detected. No I/O here.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::range::canonical;

pub const FORMAT: &str = "tombstone-ipam";
pub const VERSION: u64 = 1;
/// The last line of every state file.
pub const CLOSING: &str = "]}";

/// One record, borrowing from the line it was parsed from where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Alloc {
        ip: IpAddr,
        container_id: Cow<'a, str>,
        ifname: Cow<'a, str>,
    },
    Released {
        ip: IpAddr,
        at: u64,
    },
    Cursor {
        set: usize,
        ip: IpAddr,
    },
}

impl Record<'_> {
    pub fn ip(&self) -> IpAddr {
        match self {
            Record::Alloc { ip, .. } | Record::Released { ip, .. } | Record::Cursor { ip, .. } => {
                *ip
            }
        }
    }

    /// The record's line, without the separator.
    pub fn to_line(&self) -> String {
        let s = |v: &str| serde_json::to_string(v).expect("strings serialize");
        match self {
            Record::Alloc {
                ip,
                container_id,
                ifname,
            } => format!("[\"a\",\"{ip}\",{},{}]", s(container_id), s(ifname)),
            Record::Released { ip, at } => format!("[\"r\",\"{ip}\",{at}]"),
            Record::Cursor { set, ip } => format!("[\"c\",{set},\"{ip}\"]"),
        }
    }
}

/// The first line of a state file for `network`.
pub fn header(network: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"network\":{},\"records\":[",
        serde_json::to_string(network).expect("strings serialize")
    );
    h
}

/// The line after the last record.
pub fn trailer(count: usize) -> String {
    format!("[\"end\",{count}]")
}

/// Checks a header line: the format, a version we read, the network it belongs to.
pub fn check_header(line: &str, network: &str) -> Result<(), String> {
    let json = line
        .strip_suffix("\"records\":[")
        .map(|h| format!("{}\"records\":[]}}", h))
        .ok_or("the first line is not a tombstone-ipam header")?;
    let v: serde_json::Value =
        serde_json::from_str(&json).map_err(|_| "the first line is not a tombstone-ipam header")?;
    if v["format"] != FORMAT {
        return Err("the first line is not a tombstone-ipam header".into());
    }
    match v["version"].as_u64() {
        Some(VERSION) => {}
        Some(n) if n > VERSION => {
            return Err(format!(
                "format version {n} was written by a newer tombstone-ipam (this one reads {VERSION})"
            ));
        }
        _ => return Err("unknown format version".into()),
    }
    if v["network"] != network {
        return Err(format!(
            "it belongs to network {}, not {network:?}",
            v["network"]
        ));
    }
    Ok(())
}

/// What a record line holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Record(Record<'a>),
    End(usize),
}

/// Parses one line (a trailing `,` allowed).
pub fn parse_line(line: &str) -> Result<Line<'_>, String> {
    let body = line.strip_suffix(',').unwrap_or(line);
    let mut fields: [Option<Scalar<'_>>; 4] = [None, None, None, None];
    let n = parse_array(body, &mut fields)?;
    let bad = || format!("malformed record {line:?}");
    let str_at = |i: usize| match &fields[i] {
        Some(Scalar::Str(s)) => Ok(s.clone()),
        _ => Err(bad()),
    };
    let num_at = |i: usize| match &fields[i] {
        Some(Scalar::Num(n)) => Ok(*n),
        _ => Err(bad()),
    };
    let ip_at = |i: usize| {
        str_at(i)?
            .parse::<IpAddr>()
            .map(canonical)
            .map_err(|_| bad())
    };
    let kind = str_at(0)?;
    Ok(match (kind.as_ref(), n) {
        ("a", 4) => Line::Record(Record::Alloc {
            ip: ip_at(1)?,
            container_id: str_at(2)?,
            ifname: str_at(3)?,
        }),
        ("r", 3) => Line::Record(Record::Released {
            ip: ip_at(1)?,
            at: num_at(2)?,
        }),
        ("c", 3) => Line::Record(Record::Cursor {
            set: usize::try_from(num_at(1)?).map_err(|_| bad())?,
            ip: ip_at(2)?,
        }),
        ("end", 2) => Line::End(usize::try_from(num_at(1)?).map_err(|_| bad())?),
        _ => return Err(bad()),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(u64),
}

/// A JSON array of at most 4 strings and unsigned integers, no whitespace: the only
/// shape the writer produces. Strings borrow unless they hold escapes.
fn parse_array<'a>(s: &'a str, out: &mut [Option<Scalar<'a>>; 4]) -> Result<usize, String> {
    let bad = || format!("malformed record {s:?}");
    let b = s.as_bytes();
    if b.first() != Some(&b'[') || b.last() != Some(&b']') {
        return Err(bad());
    }
    let mut i = 1;
    let end = b.len() - 1;
    let mut n = 0;
    if i == end {
        return Ok(0);
    }
    loop {
        if n == out.len() {
            return Err(bad());
        }
        if b[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            let mut escaped = false;
            while j < end && b[j] != b'"' {
                if b[j] == b'\\' {
                    escaped = true;
                    j += 1;
                }
                j += 1;
            }
            if j >= end {
                return Err(bad());
            }
            let raw = &s[start..j];
            out[n] = Some(Scalar::Str(if escaped {
                Cow::Owned(serde_json::from_str::<String>(&s[start - 1..=j]).map_err(|_| bad())?)
            } else {
                Cow::Borrowed(raw)
            }));
            i = j + 1;
        } else {
            let start = i;
            while i < end && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start || i - start > 20 {
                return Err(bad());
            }
            out[n] = Some(Scalar::Num(s[start..i].parse().map_err(|_| bad())?));
        }
        n += 1;
        if i == end {
            return Ok(n);
        }
        if b[i] != b',' {
            return Err(bad());
        }
        i += 1;
        if i == end {
            return Err(bad());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn records_round_trip() {
        for r in [
            Record::Alloc {
                ip: ip("10.1.0.5"),
                container_id: "abc".into(),
                ifname: "eth0".into(),
            },
            Record::Alloc {
                ip: ip("fd00::5"),
                container_id: "a\"b\\c".into(),
                ifname: "".into(),
            },
            Record::Released {
                ip: ip("10.1.0.7"),
                at: 1_718_000_000,
            },
            Record::Cursor {
                set: 2,
                ip: ip("10.1.0.9"),
            },
        ] {
            let line = r.to_line();
            assert_eq!(parse_line(&line).unwrap(), Line::Record(r.clone()));
            assert_eq!(
                parse_line(&format!("{line},")).unwrap(),
                Line::Record(r.clone())
            );
            // Every line is JSON too.
            serde_json::from_str::<serde_json::Value>(&line).unwrap();
        }
        assert_eq!(parse_line(&trailer(7)).unwrap(), Line::End(7));
    }

    #[test]
    fn a_whole_file_is_json() {
        let text = format!(
            "{}\n{},\n{}\n{CLOSING}\n",
            header("pods"),
            Record::Released {
                ip: ip("10.1.0.7"),
                at: 5
            }
            .to_line(),
            trailer(1)
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["records"][0][0], "r");
        assert_eq!(v["version"], 1);
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in [
            "",
            "[",
            "[]",
            "[\"a\",\"10.1.0.5\",\"c\"]",
            "[\"a\",\"10.1.0.500\",\"c\",\"eth0\"]",
            "[\"r\",\"10.1.0.5\",\"x\"]",
            "[\"r\",\"10.1.0.5\",-1]",
            "[\"r\",\"10.1.0.5\",99999999999999999999999]",
            "[\"z\",1]",
            "[\"end\"]",
            "[\"a\",\"10.1.0.5\",\"c\",\"eth0\",\"x\"]",
            "[\"a\",\"10.1.0.5\",\"c\",\"eth0\",]",
            "{\"a\":1}",
            "[\"a\",\"10.1.0.5\",\"c\" ,\"eth0\"]",
            "[\"end\",3]]",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_are_checked() {
        check_header(&header("pods"), "pods").unwrap();
        assert!(check_header(&header("pods"), "other").is_err());
        let newer = header("pods").replace("\"version\":1", "\"version\":2");
        assert!(check_header(&newer, "pods").unwrap_err().contains("newer"));
        assert!(check_header("garbage", "pods").is_err());
        assert!(check_header("", "pods").is_err());
    }
}
