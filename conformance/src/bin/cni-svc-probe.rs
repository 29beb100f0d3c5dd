//! The Service scenario's traffic inside the VM: a pod's UDP echo + TCP sink server, and the
//! node's steady UDP and TCP clients. Each prints one line per event with a wall-clock time in
//! milliseconds, which the job script compares with its own `date` marks.
//!
//! ```text
//! cni-svc-probe serve PORT                           UDP echo and TCP sink on PORT
//!     <ms> udp <peer> <seq>   |  <ms> tcp <peer> <bytes>
//! cni-svc-probe udp ADDR:PORT SRCPORT INTERVAL_MS STOPFILE   one flow, a datagram each interval
//!     <ms> sent <seq> | <ms> err <seq> <errno name> | <ms> reply <seq>
//! cni-svc-probe tcp ADDR:PORT INTERVAL_MS STOPFILE   one connection, a byte each interval
//!     <ms> connected | <ms> err <errno name>   (then it stops)
//! ```
//! It runs until STOPFILE exists (the servers until killed).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A line out, flushed at once (the job reads the file while the probe runs).
fn emit(out: &Mutex<io::Stdout>, line: String) {
    if let Ok(mut o) = out.lock() {
        let _ = writeln!(o, "{} {line}", now_ms());
        let _ = o.flush();
    }
}

/// errno's symbolic name for the ones a Service client meets; the number otherwise.
fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc_errno) => match libc_errno {
            111 => "ECONNREFUSED".into(),
            113 => "EHOSTUNREACH".into(),
            101 => "ENETUNREACH".into(),
            104 => "ECONNRESET".into(),
            110 => "ETIMEDOUT".into(),
            32 => "EPIPE".into(),
            1 => "EPERM".into(),
            22 => "EINVAL".into(),
            n => format!("errno{n}"),
        },
        None => format!("{:?}", e.kind()),
    }
}

fn serve(port: u16) -> io::Result<()> {
    let out = Arc::new(Mutex::new(io::stdout()));
    let udp = UdpSocket::bind(("0.0.0.0", port))?;
    let tcp = TcpListener::bind(("0.0.0.0", port))?;
    let o = out.clone();
    thread::spawn(move || {
        for conn in tcp.incoming() {
            let Ok(mut conn) = conn else { continue };
            let o = o.clone();
            thread::spawn(move || {
                let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                let mut buf = [0u8; 256];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    emit(&o, format!("tcp {peer} {n}"));
                }
            });
        }
    });
    let mut buf = [0u8; 64];
    loop {
        let (n, from) = udp.recv_from(&mut buf)?;
        let seq = buf
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        emit(&out, format!("udp {from} {seq}"));
        udp.send_to(&buf[..n], from)?;
    }
}

/// One flow (one source port, a connected socket: ICMP errors come back as errors of the
/// next call).
fn udp_client(to: SocketAddr, src_port: u16, interval: Duration, stop: &Path) -> io::Result<()> {
    let out = Arc::new(Mutex::new(io::stdout()));
    let sock = UdpSocket::bind(("0.0.0.0", src_port))?;
    sock.connect(to)?;
    let reader = sock.try_clone()?;
    reader.set_read_timeout(Some(Duration::from_millis(200)))?;
    let o = out.clone();
    let stop_r = stop.to_path_buf();
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop_r.exists() {
            match reader.recv(&mut buf) {
                Ok(n) => {
                    let seq = buf
                        .get(..8.min(n))
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                    emit(&o, format!("reply {seq}"));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => emit(&o, format!("err 0 {}", errno_name(&e))),
            }
        }
    });
    let mut seq = 0u64;
    while !stop.exists() {
        seq += 1;
        match sock.send(&seq.to_be_bytes()) {
            Ok(_) => emit(&out, format!("sent {seq}")),
            Err(e) => emit(&out, format!("err {seq} {}", errno_name(&e))),
        }
        thread::sleep(interval);
    }
    Ok(())
}

fn tcp_client(to: SocketAddr, interval: Duration, stop: &Path) -> io::Result<()> {
    let out = Mutex::new(io::stdout());
    // A few tries: under emulation a first SYN can go out before the path is resolved.
    let mut tries = 0;
    let mut conn = loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
            Ok(c) => break c,
            Err(e) if tries < 3 && !stop.exists() => {
                emit(&out, format!("retry {}", errno_name(&e)));
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    };
    emit(&out, "connected".into());
    conn.set_read_timeout(Some(Duration::from_millis(1)))?;
    let mut buf = [0u8; 64];
    while !stop.exists() {
        if let Err(e) = conn.write_all(b"x") {
            emit(&out, format!("err {}", errno_name(&e)));
            return Ok(());
        }
        match conn.read(&mut buf) {
            Ok(0) => {
                emit(&out, "err EOF".into());
                return Ok(());
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                emit(&out, format!("err {}", errno_name(&e)));
                return Ok(());
            }
        }
        thread::sleep(interval);
    }
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    let addr = |s: &String| s.parse::<SocketAddr>().map_err(|e| format!("{s}: {e}"));
    let num = |s: &String| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
    let io = |e: io::Error| e.to_string();
    match args {
        [cmd, port] if cmd == "serve" => serve(num(port)? as u16).map_err(io),
        [cmd, to, src, every, stop] if cmd == "udp" => udp_client(
            addr(to)?,
            num(src)? as u16,
            Duration::from_millis(num(every)?),
            Path::new(stop),
        )
        .map_err(io),
        [cmd, to, every, stop] if cmd == "tcp" => tcp_client(
            addr(to)?,
            Duration::from_millis(num(every)?),
            Path::new(stop),
        )
        .map_err(io),
        _ => Err(
            "usage: cni-svc-probe serve PORT | udp ADDR:PORT SRCPORT INTERVAL_MS STOPFILE \
                  | tcp ADDR:PORT INTERVAL_MS STOPFILE"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cni-svc-probe: {e}");
            ExitCode::FAILURE
        }
    }
}
