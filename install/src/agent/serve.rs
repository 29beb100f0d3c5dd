//! The agent's HTTP endpoints on a plain `TcpListener`: `/healthz`, `/readyz`, `/metrics`.
//! One connection at a time, one request each, `Connection: close`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Shared;

/// Serves until the process ends; a connection's failure is that connection's only.
pub fn serve(listener: TcpListener, shared: Arc<Mutex<Shared>>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if let Err(e) = answer(conn, &shared) {
            eprintln!("tombstone-install agent: http: {e}");
        }
    }
}

fn answer(mut conn: TcpStream, shared: &Mutex<Shared>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&req);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, ctype, body) = if method != "GET" && method != "HEAD" {
        (405, "text/plain; charset=utf-8", "only GET\n".to_string())
    } else {
        let s = shared.lock().unwrap_or_else(|p| p.into_inner());
        route(&s, path)
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes())?;
    }
    conn.flush()
}

/// How long the main loop may go without a turn before `/healthz` says it is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(60);

fn route(s: &Shared, path: &str) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/healthz" => {
            let idle = Instant::now().saturating_duration_since(s.heartbeat);
            if idle < STUCK_AFTER {
                (200, TEXT, "ok\n".into())
            } else {
                (
                    503,
                    TEXT,
                    format!("the agent's loop has not run for {}s\n", idle.as_secs()),
                )
            }
        }
        "/readyz" => {
            if s.stats.ready {
                let mut b = String::from("ready\n");
                for m in &s.managed {
                    b += &format!("in place: {m}\n");
                }
                (200, TEXT, b)
            } else {
                let mut b = String::from("not ready\n");
                for r in &s.reasons {
                    b += &format!("{r}\n");
                }
                (503, TEXT, b)
            }
        }
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            s.stats.render(),
        ),
        _ => (404, TEXT, "not found: /healthz, /readyz, /metrics\n".into()),
    }
}
