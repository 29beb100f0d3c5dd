//! `tombstone-install`: see `--help` and install/README.md.

use tombstone_install::options::{self, Parsed};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "agent") {
        std::process::exit(tombstone_install::agent::main(&args[1..]));
    }
    let code = match options::parse(&args) {
        Ok(Parsed::Help) => {
            println!("{}", options::USAGE);
            0
        }
        Ok(Parsed::Version) => {
            println!("tombstone-install {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Parsed::Run(o)) if o.check => check(&o),
        Ok(Parsed::Run(o)) => {
            match tombstone_install::run::run(&o, &mut std::io::stdout().lock()) {
                Ok(outcome) => {
                    if !outcome.not_ready.is_empty() {
                        eprintln!(
                            "tombstone-install: {} not ready, left as it was:",
                            outcome.not_ready.len()
                        );
                        for line in &outcome.not_ready {
                            eprintln!("  {line}");
                        }
                    }
                    outcome.exit_code()
                }
                Err(e) => {
                    eprintln!("tombstone-install: error: {e}");
                    e.exit_code()
                }
            }
        }
        Err(e) => {
            eprintln!("tombstone-install: {e}\n\n{}", options::USAGE);
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// `--check`: the report on stdout; 0 no problem, 1 a problem (or a check that could not run).
fn check(o: &options::Options) -> i32 {
    use std::io::Write;
    match tombstone_install::check::check(o) {
        Ok(report) => {
            let text = if o.json {
                format!("{:#}\n", report.json())
            } else {
                report.table()
            };
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                eprintln!("tombstone-install: cannot write the report: {e}");
                return 1;
            }
            report.exit_code()
        }
        Err(e) => {
            eprintln!("tombstone-install: error: {e}");
            1
        }
    }
}
