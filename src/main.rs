//! The `tickcast` binary: command line, configuration, telemetry, run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tickcast::auth::{Scope, TokenLimits};
use tickcast::config::Config;
use tickcast::feed::replay::ReplayFormat;
use tickcast::import::{ImportError, ImportOptions, ImportSummary, LoadMode, import};
use tickcast::sd_notify;
use tickcast::server::Server;
use tickcast::store::Store;

/// Exit code for a configuration error (EX_USAGE in sysexits.h).
const EXIT_CONFIG: u8 = 64;
/// `import`: a file could not be opened, decompressed or read, or has no usable CSV header
/// (EX_NOINPUT).
const EXIT_IMPORT_INPUT: u8 = 66;
/// `import`: the store failed (unreachable, a migration or a write failed; EX_UNAVAILABLE).
const EXIT_IMPORT_STORE: u8 = 69;

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
        /// all (one process, the default), ingest or edge (`cluster.role`; see `[cluster]`).
        #[arg(long, value_parser = ["all", "ingest", "edge"])]
        role: Option<String>,
    },
    /// Load and validate the configuration, print it, and exit.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Apply the database migrations (`database.url` / `DATABASE_URL`) and exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Bulk-load history files (CSV or JSONL as the replay feed reads them; plain, gzip or zstd)
    /// into the store, with their bars at every `pipeline.bar_intervals`. Re-importing stores nothing twice.
    Import {
        #[arg(long)]
        config: Option<PathBuf>,
        /// csv or jsonl; by default each file's extension decides (under .gz / .zst).
        #[arg(long, value_parser = ["csv", "jsonl"])]
        format: Option<String>,
        /// The files, imported in this order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the configuration reference (docs/CONFIG.md) generated from the embedded defaults.
    ConfigReference,
    /// Manage REST API users.
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print its new API key (shown once; only a hash is stored).
    Add {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Change what a user's tokens may do (tokens issued from now on; those already issued keep
    /// theirs until they expire), and print the user's scope. Parts not given stay as they are.
    Set {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Lift the channel restriction: every channel.
        #[arg(long, conflicts_with = "channels")]
        clear_channels: bool,
        /// Lift the limits: the server's defaults.
        #[arg(long, conflicts_with = "limits")]
        clear_limits: bool,
    },
}

/// The scope of a user's tokens: their `channels` and `limits` claims (docs/PROTOCOL.md
/// "Authentication").
#[derive(clap::Args)]
struct ScopeArgs {
    /// Channel patterns the user's tokens may subscribe, comma-separated or repeated:
    /// `<kind|*>:<SYMBOL|PREFIX*|*>` (`ticks:AAPL,bars.1m:BTC-*`). Without it: every channel.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    channels: Option<Vec<String>>,
    /// Limits of the user's tokens, `name=number` comma-separated: subscriptions,
    /// min_throttle_ms, ops_per_second, connections (`subscriptions=10,connections=2`).
    #[arg(long)]
    limits: Option<String>,
}

impl ScopeArgs {
    /// `current` with the parts given here replaced, checked as a token's claims are.
    fn apply(self, mut current: Scope) -> anyhow::Result<Scope> {
        if let Some(channels) = self.channels {
            current.channels = Some(channels.into_iter().map(|c| c.trim().to_owned()).collect());
        }
        if let Some(limits) = self.limits {
            current.limits = Some(TokenLimits::parse_pairs(&limits).map_err(anyhow::Error::msg)?);
        }
        current.check().map_err(anyhow::Error::msg)?;
        Ok(current)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.command {
        Command::Serve { config, .. }
        | Command::CheckConfig { config }
        | Command::Migrate { config }
        | Command::Import { config, .. }
        | Command::User { config, .. } => config,
        // Needs no configuration: it documents the defaults.
        Command::ConfigReference => return config_reference(),
    };
    let overrides = match &cli.command {
        Command::Serve {
            role: Some(role), ..
        } => vec![("TICKCAST_CLUSTER__ROLE".to_owned(), role.clone())],
        _ => Vec::new(),
    };
    let config = match Config::load_with(config.as_deref(), overrides) {
        Ok(c) => c,
        Err(error) => {
            eprintln!("tickcast: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::CheckConfig { .. } => {
            // Secrets (the ingest token, a database password) are masked: this output ends up
            // in terminals, tickets and CI logs.
            println!("{:#?}", config.redacted());
            ExitCode::SUCCESS
        }
        Command::Serve { .. } => report(serve(config)),
        Command::ConfigReference => config_reference(),
        Command::Migrate { .. } => report(with_store(&config, |store| async move {
            store.migrate().await?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        })),
        Command::Import { format, files, .. } => {
            let format = match format.as_deref() {
                Some("csv") => ReplayFormat::Csv,
                Some(_) => ReplayFormat::Jsonl,
                None => ReplayFormat::Auto,
            };
            let intervals = config.pipeline.intervals();
            import_files(
                &config,
                ImportOptions {
                    files,
                    format,
                    intervals,
                },
            )
        }
        Command::User {
            command: UserCommand::Add { name, scope },
            ..
        } => report(with_store(&config, |store| async move {
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                anyhow::bail!("user name must be 1..=64 printable characters");
            }
            let scope = scope.apply(Scope::default())?;
            store.migrate().await?;
            let (id, key) = store.create_user_scoped(&name, &scope).await?;
            eprintln!(
                "created user {name:?} (id {id}, scope {}); its API key, shown only this once:",
                serde_json::to_string(&scope)?
            );
            println!("{key}");
            Ok(())
        })),
        Command::User {
            command:
                UserCommand::Set {
                    name,
                    scope,
                    clear_channels,
                    clear_limits,
                },
            ..
        } => report(with_store(&config, |store| async move {
            store.migrate().await?;
            let Some(mut current) = store.user_scope(&name).await? else {
                anyhow::bail!("no user {name:?}");
            };
            if clear_channels {
                current.channels = None;
            }
            if clear_limits {
                current.limits = None;
            }
            let scope = scope.apply(current)?;
            store.set_user_scope(&name, &scope).await?;
            println!("{}", serde_json::to_string(&scope)?);
            Ok(())
        })),
    }
}

fn config_reference() -> ExitCode {
    match tickcast::config_reference::render() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tickcast: {error}");
            ExitCode::FAILURE
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tickcast: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `f` with an open store on a small runtime, then closes the pool.
fn with_store<F, Fut>(config: &Config, f: F) -> anyhow::Result<()>
where
    F: FnOnce(std::sync::Arc<Store>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = std::sync::Arc::new(Store::open(&config.database)?);
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}

/// `tickcast import`: progress on stderr every second (rewritten in place on a terminal), the
/// summary on stdout.
fn import_files(config: &Config, options: ImportOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            eprintln!("tickcast: {error}");
            return ExitCode::FAILURE;
        }
    };
    let terminal = std::io::stderr().is_terminal();
    let result = runtime.block_on(async {
        let store = Arc::new(Store::open(&config.database)?);
        let result = import(store.clone(), &options, |p| {
            let rate = p.records as f64 / p.elapsed.as_secs_f64().max(1e-9);
            let line = format!(
                "import: {} records read, {} ticks written, {:.0} rows/s, {:.0} s",
                p.records,
                p.ticks_written,
                rate,
                p.elapsed.as_secs_f64()
            );
            if terminal {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
        })
        .await;
        store.close().await;
        result
    });
    if terminal {
        eprintln!();
    }
    match result {
        Ok(summary) => {
            print_summary(&summary);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tickcast import: {error}");
            ExitCode::from(match error {
                ImportError::Read { .. } => EXIT_IMPORT_INPUT,
                ImportError::Store(_) => EXIT_IMPORT_STORE,
            })
        }
    }
}

fn print_summary(s: &ImportSummary) {
    println!("records read:    {}", s.records);
    println!("ticks stored:    {}", s.stored);
    println!("already present: {}", s.already_present);
    println!("rejected:        {}", s.rejected);
    for r in &s.first_rejects {
        println!("  {}:{}: {}", r.file, r.line, r.reason);
    }
    if s.rejected > s.first_rejects.len() as u64 {
        println!("  ... ({} more)", s.rejected - s.first_rejects.len() as u64);
    }
    println!("bars written:    {}", s.bars_written);
    println!("late ticks:      {}", s.late_ticks);
    println!(
        "load:            {}",
        match s.mode {
            LoadMode::Indexed => "into the indexed tables".to_owned(),
            LoadMode::FreshStore => "empty store: indexes built after the load".to_owned(),
            LoadMode::NewDays(n) => format!("{n} new day partitions, indexed after the load"),
        }
    );
    println!("elapsed:         {:.3} s", s.elapsed.as_secs_f64());
    println!("rate:            {:.0} rows/s", s.rate());
}

fn serve(config: Config) -> anyhow::Result<()> {
    tickcast::telemetry::init(&config.log.level, config.log.format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tickcast-rt")
        .build()?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        // Listening: a `Type=notify` unit counts as started from here.
        sd_notify::notify(sd_notify::READY);
        let signal = async {
            tickcast::shutdown::signal().await;
            sd_notify::notify(sd_notify::STOPPING);
        };
        server.run_until(signal).await?;
        Ok(())
    })
}
