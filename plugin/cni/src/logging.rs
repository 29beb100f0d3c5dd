//! Logging for plugins: syslog over the local socket, or stderr when there is none (or when
//! `TOMBSTONE_LOG=stderr`). Never stdout, which belongs to the CNI result. The socket is looked
//! for once, when the first record is emitted: a call that logs nothing spends no syscall on it.

use std::io::Write;
use std::sync::OnceLock;

use log::{LevelFilter, Log, Metadata, Record};

/// The names `parse_level` takes.
pub const LEVELS: &str = "off, error, warn, info, debug or trace";

/// Parses a `logLevel` config value.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.to_ascii_lowercase().as_str() {
        "off" | "none" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

/// Installs the process logger once; later calls only change the level.
pub fn init(process: &str, level: LevelFilter) {
    log::set_max_level(level);
    let logger = ProcessLogger {
        process: process.to_string(),
        force_stderr: std::env::var("TOMBSTONE_LOG").is_ok_and(|v| v == "stderr"),
        sink: OnceLock::new(),
    };
    // Fails only when a logger is already installed, which is fine.
    let _ = log::set_boxed_logger(Box::new(logger));
}

/// The logger `init` installs: it chooses its sink when the first record is emitted.
struct ProcessLogger {
    process: String,
    force_stderr: bool,
    sink: OnceLock<Sink>,
}

enum Sink {
    Syslog(syslog::BasicLogger),
    Stderr,
}

impl ProcessLogger {
    fn sink(&self) -> &Sink {
        self.sink.get_or_init(|| {
            if self.force_stderr {
                Sink::Stderr
            } else {
                syslog_logger(&self.process).map_or(Sink::Stderr, Sink::Syslog)
            }
        })
    }
}

fn syslog_logger(process: &str) -> Option<syslog::BasicLogger> {
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_DAEMON,
        hostname: None,
        process: process.to_string(),
        pid: std::process::id(),
    };
    syslog::unix(formatter).ok().map(syslog::BasicLogger::new)
}

/// One record as the stderr sink writes it: `<process>[<pid>]: <LEVEL>: <message>` and a
/// newline, formatted whole so that it leaves in one `write`.
fn stderr_line(process: &str, pid: u32, record: &Record) -> String {
    format!("{process}[{pid}]: {}: {}\n", record.level(), record.args())
}

impl Log for ProcessLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match self.sink() {
            Sink::Syslog(l) => l.log(record),
            Sink::Stderr => {
                let line = stderr_line(&self.process, std::process::id(), record);
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        if let Some(Sink::Syslog(l)) = self.sink.get() {
            l.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("INFO"), Some(LevelFilter::Info));
        assert_eq!(parse_level("warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn stderr_line_is_one_whole_line() {
        let line = stderr_line(
            "tombstone",
            42,
            &Record::builder()
                .level(log::Level::Warn)
                .args(format_args!("network {}: {} left", "n", 3))
                .build(),
        );
        assert_eq!(line, "tombstone[42]: WARN: network n: 3 left\n");
    }
}
