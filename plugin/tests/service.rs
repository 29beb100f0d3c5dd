//! A Service's flows across a pod's DEL, on the real kernel: a namespace as the node, two
//! pods on veth pairs, a Service address DNAT-ed to pod A by nftables rules written the way
//! kube-proxy writes them, a UDP client in the node sending steadily to the Service and a
//! TCP client with an established connection through it. The `tombstone` binary's DEL for
//! A runs, then the Service is switched to pod B as kube-proxy would switch it. With
//! `flushConntrack` the next datagram is translated anew and reaches B; without it the
//! flow's conntrack entry keeps translating to A's (tombstoned) address while traffic keeps
//! it alive. `conntrack -L` is used as an observer only (the plugin never runs it).

mod common;

use common::{prev_result, require_root, run_in};

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use tombstone_kernel::Conntrack;
use tombstone_kernel::conntrack::{Entry, PLACES};

const POD_A: &str = "10.20.1.2";
const POD_B: &str = "10.20.2.2";
const SERVICE: &str = "10.96.0.10";
const UDP_PORT: u16 = 53;
const TCP_PORT: u16 = 80;
const POD_UDP: u16 = 5353;
const POD_TCP: u16 = 8080;
/// How long "never" is watched: far less than the entry's timeout (120 s for an assured
/// UDP flow, refreshed by every datagram).
const WATCH: Duration = Duration::from_secs(3);

/// Runs `f` on a thread of its own inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open the namespace");
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the namespace");
        f()
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The node and its two pods, each a namespace; removed on drop.
struct Cluster {
    node: tombstone_testkit::Netns,
    pods: [tombstone_testkit::Netns; 2],
    state_dir: std::path::PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        require_root();
        for tool in ["conntrack", "nft"] {
            assert!(
                std::process::Command::new(tool)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success()),
                "this test needs `{tool}`: run `make deps`"
            );
        }
        let node = tombstone_testkit::Netns::new("tsvc-node-");
        let pods = [
            tombstone_testkit::Netns::new("tsvc-a-"),
            tombstone_testkit::Netns::new("tsvc-b-"),
        ];
        for (i, pod) in pods.iter().enumerate() {
            let dev = format!("veth{i}");
            let net = format!("10.20.{}", i + 1);
            node.ip(&[
                "link", "add", &dev, "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
            ]);
            node.ip(&["addr", "add", &format!("{net}.1/24"), "dev", &dev]);
            node.ip(&["link", "set", &dev, "up"]);
            pod.ip(&["addr", "add", &format!("{net}.2/24"), "dev", "eth0"]);
            pod.ip(&["link", "set", "eth0", "up"]);
            pod.ip(&["route", "add", "default", "via", &format!("{net}.1")]);
        }
        // The node's way out (the Service address is routed there before DNAT, as on a
        // node whose default route leads to the rest of the cluster).
        node.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        node.ip(&["addr", "add", "192.168.50.1/24", "dev", "up0"]);
        node.ip(&["link", "set", "up0", "up"]);
        node.ip(&["link", "set", "up1", "up"]);
        node.ip(&["route", "add", "default", "dev", "up0"]);
        let c = Cluster {
            state_dir: std::env::temp_dir().join(format!("{}-state", node.name)),
            node,
            pods,
        };
        c.nft(&format!(
            "table ip kube-proxy {{
                chain nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump KUBE-SERVICES; }}
                chain nat-output {{ type nat hook output priority -100; policy accept; jump KUBE-SERVICES; }}
                chain KUBE-SERVICES {{
                    ip daddr {SERVICE} udp dport {UDP_PORT} goto KUBE-SVC-UDP
                    ip daddr {SERVICE} tcp dport {TCP_PORT} goto KUBE-SVC-TCP
                }}
                chain KUBE-SVC-UDP {{ goto KUBE-SEP-A-UDP; }}
                chain KUBE-SVC-TCP {{ goto KUBE-SEP-A-TCP; }}
                chain KUBE-SEP-A-UDP {{ meta l4proto udp dnat to {POD_A}:{POD_UDP}; }}
                chain KUBE-SEP-A-TCP {{ meta l4proto tcp dnat to {POD_A}:{POD_TCP}; }}
                chain KUBE-SEP-B-UDP {{ meta l4proto udp dnat to {POD_B}:{POD_UDP}; }}
                chain KUBE-SEP-B-TCP {{ meta l4proto tcp dnat to {POD_B}:{POD_TCP}; }}
            }}"
        ));
        c
    }

    /// An nftables script applied atomically in the node.
    fn nft(&self, script: &str) {
        let file = std::env::temp_dir().join(format!("{}.nft", self.node.name));
        std::fs::write(&file, script).unwrap();
        self.node.exec(&["nft", "-f", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(file);
    }

    /// What kube-proxy does once A's endpoint is gone: the Service's chains jump to B.
    fn switch_to_b(&self) {
        self.nft(
            "flush chain ip kube-proxy KUBE-SVC-UDP
             add rule ip kube-proxy KUBE-SVC-UDP goto KUBE-SEP-B-UDP
             flush chain ip kube-proxy KUBE-SVC-TCP
             add rule ip kube-proxy KUBE-SVC-TCP goto KUBE-SEP-B-TCP",
        );
    }

    /// The node's conntrack entries with `addr` anywhere, read with our own dump.
    fn entries_of(&self, addr: IpAddr) -> Vec<Entry> {
        in_ns(&self.node.name, move || {
            let ct = Conntrack::open().expect("open ctnetlink");
            ct.dump(addr.is_ipv6(), None)
                .expect("dump conntrack")
                .into_iter()
                .filter(|e| PLACES.iter().any(|&p| e.has(p, addr)))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    }

    /// The `tombstone` binary's DEL for pod A, chained after a main plugin.
    fn del_a(&self, flush: bool) -> Duration {
        let conf = json!({
            "cniVersion": "1.1.0", "name": "pods", "type": "tombstone",
            "stateDir": self.state_dir, "sweeper": false, "flushConntrack": flush,
            "logLevel": "debug",
            "prevResult": prev_result(&[&format!("{POD_A}/24")]),
        });
        let start = Instant::now();
        let out = run_in(
            Some(&self.node.name),
            &[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "pod-a")],
            conf.to_string().as_bytes(),
            &[],
        );
        let took = start.elapsed();
        assert_eq!(out.code, 0, "DEL failed: {} {}", out.stdout, out.stderr);
        assert!(
            !out.stderr.contains("not flushed"),
            "the flush failed: {}",
            out.stderr
        );
        took
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Datagrams a pod's server received: (when, sequence number).
type Seen = Arc<Mutex<Vec<(Instant, u64)>>>;

/// A UDP echo server and a TCP server (reading until the peer goes) in a pod.
fn serve(pod: &str, stop: Arc<AtomicBool>) -> (Seen, Arc<Mutex<usize>>) {
    let seen: Seen = Arc::default();
    let tcp_bytes: Arc<Mutex<usize>> = Arc::default();
    let (s, st) = (seen.clone(), stop.clone());
    in_ns(pod, move || {
        let sock = UdpSocket::bind(("0.0.0.0", POD_UDP)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 64];
        while !st.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let seq = u64::from_be_bytes(buf[..8.min(n)].try_into().unwrap_or([0; 8]));
                s.lock().unwrap().push((Instant::now(), seq));
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    let (b, st) = (tcp_bytes.clone(), stop);
    in_ns(pod, move || {
        let l = TcpListener::bind(("0.0.0.0", POD_TCP)).unwrap();
        l.set_nonblocking(true).unwrap();
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    let mut buf = [0u8; 256];
                    while !st.load(Ordering::Relaxed) {
                        match conn.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => *b.lock().unwrap() += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (seen, tcp_bytes)
}

/// A UDP client in the node sending a numbered datagram to the Service every 10 ms from
/// one source port (one flow, one conntrack entry); returns the send errors it met.
fn udp_client(node: &str, stop: Arc<AtomicBool>) -> JoinHandle<Vec<std::io::ErrorKind>> {
    in_ns(node, move || {
        let sock = UdpSocket::bind(("0.0.0.0", 40053)).unwrap();
        let to: SocketAddr = (ip(SERVICE), UDP_PORT).into();
        let mut errors = Vec::new();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            if let Err(e) = sock.send_to(&seq.to_be_bytes(), to) {
                errors.push(e.kind());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        errors
    })
}

/// What the established TCP connection's client saw after the DEL: the first error of a
/// write or read, and when (from `since`), or none within `WATCH` after the switch.
fn tcp_client(
    node: &str,
    established: Arc<AtomicBool>,
    go: Arc<Mutex<Option<Instant>>>,
) -> JoinHandle<Option<(Duration, std::io::Error)>> {
    in_ns(node, move || {
        let mut conn =
            TcpStream::connect_timeout(&(ip(SERVICE), TCP_PORT).into(), Duration::from_secs(5))
                .expect("connect to the Service");
        conn.write_all(b"hello").unwrap();
        established.store(true, Ordering::SeqCst);
        let since = loop {
            if let Some(t) = *go.lock().unwrap() {
                break t;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        conn.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        while since.elapsed() < WATCH + Duration::from_secs(1) {
            if let Err(e) = conn.write_all(b"x") {
                return Some((since.elapsed(), e));
            }
            match conn.read(&mut buf) {
                Ok(0) => {
                    return Some((
                        since.elapsed(),
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"),
                    ));
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Some((since.elapsed(), e)),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    })
}

/// What a run of the scenario showed.
struct Observed {
    del_took: Duration,
    /// From the DEL's start and from the switch to the first datagram at B.
    first_at_b: Option<(Duration, Duration)>,
    at_a_after_del: usize,
    entries_of_a_after_del: Vec<Entry>,
    entries_of_a_at_end: Vec<Entry>,
    /// `conntrack -L --reply-src A` in the node at the end (an observer's view).
    listed_at_end: String,
    udp_errors: Vec<std::io::ErrorKind>,
    tcp: Option<(Duration, std::io::Error)>,
}

fn scenario(flush: bool) -> Observed {
    let c = Cluster::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (at_a, tcp_a) = serve(&c.pods[0].name, stop.clone());
    let (at_b, _) = serve(&c.pods[1].name, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let established = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Mutex::new(None));
    let tcp = tcp_client(&c.node.name, established.clone(), go.clone());
    let udp = udp_client(&c.node.name, stop.clone());
    assert!(
        common::eventually(5, || at_a.lock().unwrap().len() >= 10
            && established.load(Ordering::SeqCst)
            && *tcp_a.lock().unwrap() >= 5),
        "the Service reaches pod A before the DEL"
    );
    let before = c.entries_of(ip(POD_A));
    assert!(
        before
            .iter()
            .any(|e| e.reply.src == ip(POD_A) && e.orig.dst == ip(SERVICE)),
        "the flows' entries translate the Service to A: {before:?}"
    );
    let listed = c.node.exec(&["conntrack", "-L", "--reply-src", POD_A]);
    assert!(
        listed.contains(&format!("dst={SERVICE}")),
        "`conntrack -L` agrees: {listed}"
    );
    let del_start = Instant::now();
    *go.lock().unwrap() = Some(del_start);
    let del_took = c.del_a(flush);
    let del_end = Instant::now();
    let entries_of_a_after_del = c.entries_of(ip(POD_A));
    let switch = Instant::now();
    c.switch_to_b();
    let _ = common::eventually(WATCH.as_secs(), || !at_b.lock().unwrap().is_empty());
    let first_at_b = at_b
        .lock()
        .unwrap()
        .first()
        .map(|&(t, _)| (t - del_start, t - switch));
    let entries_of_a_at_end = c.entries_of(ip(POD_A));
    let listed_at_end = c.node.exec(&["conntrack", "-L", "--reply-src", POD_A]);
    let tcp = tcp.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    let udp_errors = udp.join().unwrap();
    let at_a_after_del = at_a
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t > del_end)
        .count();
    let seen = Observed {
        del_took,
        first_at_b,
        at_a_after_del,
        entries_of_a_after_del,
        entries_of_a_at_end,
        listed_at_end,
        udp_errors,
        tcp,
    };
    eprintln!(
        "flushConntrack {flush}: DEL took {:?}; first datagram at B {:?} (from DEL start, from switch); \
         {} datagrams at A after DEL; entries of A after DEL {}, at end {}; UDP send errors {} ({:?}); TCP client saw {:?}",
        seen.del_took,
        seen.first_at_b,
        seen.at_a_after_del,
        seen.entries_of_a_after_del.len(),
        seen.entries_of_a_at_end.len(),
        seen.udp_errors.len(),
        seen.udp_errors.first(),
        seen.tcp
            .as_ref()
            .map(|(t, e)| (t, e.kind(), e.raw_os_error())),
    );
    seen
}

#[test]
#[ignore = "needs root, conntrack and nftables"]
fn with_flush_conntrack_the_next_datagram_reaches_the_new_endpoint() {
    let s = scenario(true);
    assert!(
        s.entries_of_a_after_del.is_empty(),
        "no entry of A's address is left after DEL: {:?}",
        s.entries_of_a_after_del
    );
    let (_, from_switch) = s
        .first_at_b
        .expect("a datagram reaches B once the Service points to it");
    assert!(
        from_switch < Duration::from_millis(500),
        "the next datagram after the switch reaches B ({from_switch:?})"
    );
    assert_eq!(
        s.at_a_after_del, 0,
        "the tombstone keeps A's address unreachable"
    );
    assert!(
        s.udp_errors
            .iter()
            .all(|k| *k == std::io::ErrorKind::HostUnreachable),
        "between the DEL and the switch a datagram meets the tombstone: {:?}",
        s.udp_errors
    );
    // The established connection: its next segment makes a new entry, translated to B
    // once the Service points there; B knows no such connection and answers with a RST.
    let (when, e) = s.tcp.expect("the TCP client learns its connection is gone");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    assert!(
        when < Duration::from_secs(1),
        "reset {when:?} after the DEL"
    );
}

#[test]
#[ignore = "needs root, conntrack and nftables"]
fn without_flush_conntrack_datagrams_keep_going_to_the_released_address() {
    let s = scenario(false);
    assert_eq!(
        s.first_at_b, None,
        "the stale entry keeps translating to A: nothing reaches B within {WATCH:?}"
    );
    assert!(
        s.entries_of_a_at_end
            .iter()
            .any(|e| e.reply.src == ip(POD_A) && e.orig.dst == ip(SERVICE)),
        "the entry to A lives on, kept alive by the traffic: {:?}",
        s.entries_of_a_at_end
    );
    assert_eq!(
        s.at_a_after_del, 0,
        "the tombstone keeps A's address unreachable"
    );
    assert!(
        s.listed_at_end.contains(&format!("src={POD_A}")),
        "`conntrack -L` agrees: {}",
        s.listed_at_end
    );
    // Every datagram meets the tombstone route at once: the sender gets EHOSTUNREACH.
    assert!(
        s.udp_errors.len() > 100
            && s.udp_errors
                .iter()
                .all(|k| *k == std::io::ErrorKind::HostUnreachable),
        "{} send errors: {:?}",
        s.udp_errors.len(),
        s.udp_errors.first()
    );
    // The established connection hangs: its segments are translated to A and dropped on
    // the host (no ICMP comes back to a local sender), its writes are buffered; nothing
    // tells the client within the watch.
    assert!(
        s.tcp.is_none(),
        "the TCP client saw {:?}",
        s.tcp.as_ref().map(|(t, e)| (t, e.to_string()))
    );
}

/// The flush, alone, over a table of both families: every entry with a released address
/// as original source, original destination or reply source goes, every other stays. The
/// IPv6 half guards against the kernel's inverted IPv6 filter (see `kernel_filters`),
/// which would delete exactly the others.
#[test]
#[ignore = "needs root, conntrack and nftables"]
fn a_flush_deletes_the_released_addresses_entries_and_no_other() {
    use tombstone_kernel::conntrack::Tuple;
    require_root();
    let ns = tombstone_testkit::Netns::new("tsvc-ct-");
    let t = |src: &str, dst: &str, sport: u16| Tuple {
        src: ip(src),
        dst: ip(dst),
        proto: 17,
        sport,
        dport: 53,
    };
    let doomed = [
        t("10.20.1.2", "10.96.0.10", 1000),
        t("10.30.0.1", "10.20.1.2", 1001),
        t("fd20::2", "fd96::10", 1000),
        t("fd30::1", "fd20::2", 1001),
    ];
    let kept = vec![
        t("10.20.1.3", "10.96.0.10", 1000),
        t("10.30.0.1", "10.20.1.4", 1001),
        t("fd20::3", "fd96::10", 1000),
        t("fd30::1", "fd20::4", 1001),
    ];
    let released = [ip("10.20.1.2"), ip("fd20::2")];
    let (flushed, left) = in_ns(&ns.name, move || {
        let ct = Conntrack::open().unwrap();
        let all: Vec<Tuple> = doomed.iter().chain(&kept).copied().collect();
        assert_eq!(ct.create(&all, 300).unwrap(), vec![0; all.len()]);
        let flushed = ct.flush(&released).unwrap();
        let mut left: Vec<Tuple> = [false, true]
            .into_iter()
            .flat_map(|v6| ct.dump(v6, None).unwrap())
            .map(|e| e.orig)
            .collect();
        left.sort_by_key(|t| (t.src, t.dst));
        let mut kept = kept;
        kept.sort_by_key(|t| (t.src, t.dst));
        assert_eq!(left, kept, "exactly the other entries are left");
        (flushed, left.len())
    })
    .join()
    .unwrap();
    eprintln!("{flushed} entries deleted, {left} left");
    assert_eq!(flushed, 4);
}
