//! tickcast-loadgen: bounded, loopback-only load against a tickcast server or a
//! protocol-compatible peer, reporting delivered rates, `now - ts` latency, `seq` gaps, protocol
//! events, and both its own and the server's CPU so a saturated loadgen is never mistaken for a
//! slow server.
//!
//! Crate map, in run order: `args` (CLI) → `target` (loopback check) → `run` (timeline,
//! progress) → `ws` (one task per socket, parsing with `frame`, counting with `stats`) and
//! `rest` (open-loop GETs) → `report` (human or JSON), with `sys` for rlimits and `/proc`.

mod args;
mod auth;
mod frame;
mod report;
mod rest;
mod run;
mod scan;
mod stats;
mod sys;
mod target;
mod ws;

use std::process::ExitCode;

use clap::Parser;

/// Bad usage or configuration (sysexits `EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// The run could not be carried out (target down, limits too low, ...).
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let args = args::Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("error: {e:#}");
        return ExitCode::from(EXIT_USAGE);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: building the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let json = args.json;
    match rt.block_on(run::run(args)) {
        Ok(report) => {
            if json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: encoding the report: {e}");
                        return ExitCode::from(EXIT_FAILURE);
                    }
                }
            } else {
                print!("{}", report.human());
            }
            // Sockets still closing must not keep the process alive.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
