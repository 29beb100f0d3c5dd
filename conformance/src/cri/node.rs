//! What the node sees of a pod address: a UDP probe from the host's own stack (a reply means
//! the pod is reachable; a refused send means a route says it is not), and the routes of the
//! `tombstone` plugin (protocol 84).

use std::io::ErrorKind;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use tombstone_testkit::{eventually, runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The pod's kernel answered (ICMP port unreachable: nothing listens on the port).
    Reachable,
    /// The send failed at once with EHOSTUNREACH ("No route to host").
    NoRouteToHost,
    /// No answer within the wait.
    Silent,
}

/// Sends one datagram to a closed port of `ip` from the node, up to 3 times (the first may
/// wait for ARP), and says what came back.
pub fn probe(ip: Ipv4Addr) -> Probe {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("set a read timeout");
    if let Err(e) = sock.connect((ip, 9)) {
        if e.raw_os_error() == Some(libc_ehostunreach()) {
            return Probe::NoRouteToHost;
        }
        panic!("connect to {ip}: {e}");
    }
    for _ in 0..3 {
        match sock.send(b"cri-test") {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc_ehostunreach()) => {
                return Probe::NoRouteToHost;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Probe::Reachable,
            Err(e) => panic!("send to {ip}: {e}"),
        }
        let mut buf = [0u8; 16];
        match sock.recv(&mut buf) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Probe::Reachable,
            Err(e) if e.raw_os_error() == Some(libc_ehostunreach()) => {
                return Probe::NoRouteToHost;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv from {ip}: {e}"),
            Ok(_) => return Probe::Reachable,
        }
    }
    Probe::Silent
}

fn libc_ehostunreach() -> i32 {
    nix::errno::Errno::EHOSTUNREACH as i32
}

/// The route protocol of the `tombstone` plugin's routes.
pub const TOMBSTONE_PROTOCOL: u8 = 84;

/// The tombstone routes (protocol 84) of the main table whose destination starts with
/// `prefix`, as `ip -o route` prints them.
pub fn tombstones(prefix: &str) -> Vec<String> {
    runtime::typed_routes(TOMBSTONE_PROTOCOL, prefix).unwrap_or_else(|e| panic!("{e}"))
}

/// The tombstone route of `ip`, if any ("unreachable 172.30.81.10 proto 84 metric ...").
pub fn tombstone_of(ip: Ipv4Addr) -> Option<String> {
    let ip = ip.to_string();
    tombstones(&ip)
        .into_iter()
        .find(|l| l.split_whitespace().nth(1) == Some(ip.as_str()))
}

/// `ip` is tombstoned (`what` names it in a failure): its `unreachable` route is there and
/// the node's send fails at once.
pub fn assert_tombstoned(ip: Ipv4Addr, what: &str) {
    let route = tombstone_of(ip).unwrap_or_else(|| panic!("{what}: no tombstone for {ip}"));
    assert!(route.starts_with("unreachable "), "{what}: {route}");
    assert_eq!(probe(ip), Probe::NoRouteToHost, "{what}: {ip}");
}

/// `ip` is a live pod's (`what` names it in a failure): no tombstone, and the node reaches it.
pub fn assert_live(ip: Ipv4Addr, what: &str) {
    assert_eq!(tombstone_of(ip), None, "{what}: a tombstone for {ip}");
    assert_eq!(probe(ip), Probe::Reachable, "{what}: {ip}");
}

/// Waits for the tombstones of `prefix` to end by themselves within `hold` seconds (and a
/// margin): how many there were, and the seconds they took to go.
pub fn outlive_tombstones(prefix: &str, hold: u64) -> (usize, f64) {
    let made = tombstones(prefix).len();
    let waited = Instant::now();
    assert!(
        eventually(hold + 10, || tombstones(prefix).is_empty()),
        "tombstones past their hold: {:?}",
        tombstones(prefix)
    );
    (made, waited.elapsed().as_secs_f64())
}

/// The links enslaved to `bridge` (the pods' host-side veths).
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .expect("spawn ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The links of the node's namespace stacked on `master` (`name@master`: IPvlan, macvlan).
pub fn stacked_on(master: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("spawn ip link");
    let suffix = format!("@{master}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter_map(|n| n.strip_suffix(&suffix))
        .map(str::to_string)
        .collect()
}
