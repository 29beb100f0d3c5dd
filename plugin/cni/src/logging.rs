//! Logging for plugins: syslog over the local socket, or stderr when there is none (or when
//! `TOMBSTONE_LOG=stderr`). Never stdout, which belongs to the CNI result.

use std::io::Write;

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
    let force_stderr = std::env::var("TOMBSTONE_LOG").is_ok_and(|v| v == "stderr");
    let logger: Box<dyn Log> = match (force_stderr, syslog_logger(process)) {
        (false, Some(l)) => Box::new(l),
        _ => Box::new(StderrLogger {
            process: process.to_string(),
        }),
    };
    // Fails only when a logger is already installed, which is fine.
    let _ = log::set_boxed_logger(logger);
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

struct StderrLogger {
    process: String,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}[{}]: {}: {}",
                self.process,
                std::process::id(),
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
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
}
