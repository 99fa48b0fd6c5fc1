//! The `tickcast` binary: command line, configuration, telemetry, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tickcast::config::Config;
use tickcast::server::Server;

/// Exit code for a configuration error (EX_USAGE in sysexits.h).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "tickcast",
    version,
    about = "Real-time market-data streaming server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (synthetic feed and embedded defaults unless configured otherwise).
    Serve {
        /// A TOML file layered over the embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, print it, and exit.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (Command::Serve { config } | Command::CheckConfig { config }) = &cli.command;
    let config = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(error) => {
            eprintln!("tickcast: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::CheckConfig { .. } => {
            println!("{config:#?}");
            ExitCode::SUCCESS
        }
        Command::Serve { .. } => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tickcast: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    tickcast::telemetry::init(&config.log.level, config.log.format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tickcast-rt")
        .build()?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        server.run_until(tickcast::shutdown::signal()).await;
        Ok(())
    })
}
