//! The command line (SPEC §2). Flags are parsed here into a configuration layer; the
//! environment and config file are merged in `config`.

use crate::config::{self, Layer};
use clap::{Args, Parser, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "footfall", version, about = "Self-hosted, privacy-friendly web analytics")]
pub struct Cli {
    /// A TOML file with settings (same keys as the flags, in snake case).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: tracker, ingestion, API and dashboard.
    Serve(ServeArgs),
    /// Manage sites.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage a site's goals (pageview and custom-event conversions).
    #[command(subcommand)]
    Goal(GoalCommand),
    /// Import events from a file.
    Import(ImportArgs),
}

/// Storage flags, taken by every command.
#[derive(Debug, Clone, Default, Args)]
pub struct StorageArgs {
    /// Directory of the embedded database [default: ./footfall-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL for cluster mode.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Redis URL for cluster mode.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address to listen on [default: 0.0.0.0:8000]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A proxy (CIDR or address) whose X-Forwarded-For / Forwarded headers are believed.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxy: Vec<String>,
    /// The public URL of this installation, used in links.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// A MaxMind-format GeoIP database to use instead of the embedded DB-IP country one.
    #[arg(long, value_name = "PATH")]
    pub geoip: Option<PathBuf>,
    /// How many accepted requests may wait for the writer before new ones get 503.
    #[arg(long, value_name = "N")]
    pub queue_capacity: Option<usize>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Stats API requests per minute per API key [default: 600]
    #[arg(long, value_name = "N")]
    pub api_rate_limit: Option<u32>,
    /// Seconds between day-close runs [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub day_close_every: Option<u64>,
    /// Seconds a cluster leader's lease lasts without renewal [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub leader_lease: Option<u64>,
    /// This worker's name in health, logs and job records [default: host name and pid]
    #[arg(long, value_name = "NAME")]
    pub worker_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Register a site so its events are accepted.
    Add {
        domain: String,
        /// IANA timezone for the site's days and reports.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List the registered sites.
    List {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required, so it never shows in `ps`).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Make the user an administrator of the installation.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it (alone) on standard output.
    Create {
        #[arg(long)]
        name: String,
        /// Limit the key to one site; without it the key reads every site.
        #[arg(long, value_name = "DOMAIN")]
        site: Option<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum GoalCommand {
    /// Add a goal: `--page PATH` (with `*` wildcards) or `--event NAME`.
    Add {
        #[arg(long, value_name = "DOMAIN")]
        site: String,
        /// A pageview goal: visits to this path; `*` matches any characters.
        #[arg(long, value_name = "PATH", conflicts_with = "event", required_unless_present = "event")]
        page: Option<String>,
        /// A custom-event goal: events with this name.
        #[arg(long, value_name = "NAME")]
        event: Option<String>,
        /// The name shown in reports and used in `event:goal` [default: "Visit PATH" or NAME]
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List a site's goals.
    List {
        #[arg(long, value_name = "DOMAIN")]
        site: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[arg(long, value_name = "DOMAIN")]
    pub site: String,
    #[arg(long, value_enum)]
    pub format: ImportFormat,
    /// The file to read, or `-` for standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ImportFormat {
    Ndjson,
}

impl StorageArgs {
    pub fn layer(&self) -> Layer {
        Layer { data_dir: self.data_dir.clone(), database: self.database.clone(), redis: self.redis.clone(), ..Default::default() }
    }
}

impl ServeArgs {
    pub fn layer(&self) -> Layer {
        Layer {
            listen: self.listen.clone(),
            trusted_proxy: (!self.trusted_proxy.is_empty()).then(|| self.trusted_proxy.clone()),
            base_url: self.base_url.clone(),
            geoip: self.geoip.clone(),
            queue_capacity: self.queue_capacity,
            log_format: self.log_format.clone(),
            api_rate_limit: self.api_rate_limit,
            day_close_every: self.day_close_every,
            leader_lease: self.leader_lease,
            worker_name: self.worker_name.clone(),
            ..self.storage.layer()
        }
    }
}

/// Loads the configuration for a command from its flags, the environment and the file.
pub fn load_config(cli_config: Option<&std::path::Path>, flags: Layer) -> anyhow::Result<config::Config> {
    let env: HashMap<String, String> = std::env::vars().collect();
    config::load(flags, cli_config, &env)
}

/// Runs a parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    use crate::{admin, import, startup};
    use anyhow::{anyhow, Context};
    use std::io::{IsTerminal, Read};

    let cfg_path = cli.config.as_deref();
    match cli.command {
        Command::Serve(args) => {
            let config = load_config(cfg_path, args.layer())?;
            init_logging(config.log_format);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("while listening on {}", config.listen))?;
            startup::serve(config, listener, shutdown_signal()).await?;
            Ok(0)
        }
        Command::Site(SiteCommand::Add { domain, timezone, storage }) => {
            let config = load_config(cfg_path, storage.layer())?;
            let store = startup::open_store(&config.storage).await?;
            let site = admin::add_site(store.as_ref(), &domain, &timezone).await?;
            println!("Added site {} (timezone {}).", site.domain, site.timezone);
            println!("Add this to the <head> of its pages:");
            let base = config.base_url.map(|u| u.as_str().trim_end_matches('/').to_string());
            let base = base.unwrap_or_else(|| "https://YOUR-FOOTFALL-HOST".to_string());
            println!("  <script defer data-domain=\"{}\" src=\"{base}/js/script.js\"></script>", site.domain);
            Ok(0)
        }
        Command::Site(SiteCommand::List { storage }) => {
            let config = load_config(cfg_path, storage.layer())?;
            let store = startup::open_store(&config.storage).await?;
            for site in store.sites().await? {
                println!("{}\t{}", site.domain, site.timezone);
            }
            Ok(0)
        }
        Command::User(UserCommand::Add { email, password_stdin: _, admin: is_admin, storage }) => {
            let config = load_config(cfg_path, storage.layer())?;
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password).context("while reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let store = startup::open_store(&config.storage).await?;
            admin::add_user(store.as_ref(), &email, password, is_admin).await?;
            println!("Added user {}{}.", email.trim().to_ascii_lowercase(), if is_admin { " (administrator)" } else { "" });
            Ok(0)
        }
        Command::Key(KeyCommand::Create { name, site, storage }) => {
            let config = load_config(cfg_path, storage.layer())?;
            let store = startup::open_store(&config.storage).await?;
            let secret = admin::create_api_key(store.as_ref(), &name, site.as_deref()).await?;
            println!("{secret}");
            Ok(0)
        }
        Command::Goal(GoalCommand::Add { site, page, event, display_name, storage }) => {
            let config = load_config(cfg_path, storage.layer())?;
            let store = startup::open_store(&config.storage).await?;
            let kind = match (page, event) {
                (Some(p), _) => crate::domain::GoalKind::Page(p),
                (None, Some(e)) => crate::domain::GoalKind::Event(e),
                (None, None) => return Err(anyhow!("goal: give --page PATH or --event NAME")),
            };
            let goal = admin::add_goal(store.as_ref(), &site, kind, display_name).await?;
            println!("Added goal {:?} to {}.", goal.display_name, site.trim());
            Ok(0)
        }
        Command::Goal(GoalCommand::List { site, storage }) => {
            let config = load_config(cfg_path, storage.layer())?;
            let store = startup::open_store(&config.storage).await?;
            let site = admin::find_site(store.as_ref(), &site).await?;
            for goal in store.goals(site.id).await? {
                let (kind, value) = match &goal.kind {
                    crate::domain::GoalKind::Page(p) => ("page", p),
                    crate::domain::GoalKind::Event(n) => ("event", n),
                };
                println!("{}\t{kind}\t{value}", goal.display_name);
            }
            Ok(0)
        }
        Command::Import(args) => {
            let config = load_config(cfg_path, args.storage.layer())?;
            let ImportFormat::Ndjson = args.format;
            let store = startup::open_store(&config.storage).await?;
            let site = admin::find_site(store.as_ref(), &args.site).await?;
            let geo = startup::load_geoip(&config)?;
            let mut file = if args.file.as_os_str() == "-" {
                import::spool_stdin()?
            } else {
                std::fs::File::open(&args.file).with_context(|| format!("while opening {}", args.file.display()))?
            };
            let bar = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new_spinner()
            } else {
                indicatif::ProgressBar::hidden()
            };
            let report = import::import_file(store.as_ref(), &site, &mut file, &geo, |phase, n| {
                bar.set_message(format!("{phase}: {n} lines"));
                bar.tick();
            })
            .await;
            bar.finish_and_clear();
            let report = report?;
            println!(
                "Imported {} events into {} ({} already imported, {} rejected).",
                report.imported,
                site.domain,
                report.already_imported,
                report.rejected.len()
            );
            const SHOWN: usize = 1000;
            for (line, why) in report.rejected.iter().take(SHOWN) {
                println!("line {line}: {why}");
            }
            if report.rejected.len() > SHOWN {
                println!("... and {} more rejected lines", report.rejected.len() - SHOWN);
            }
            Ok(if report.rejected.is_empty() { 0 } else { 1 })
        }
    }
}

fn init_logging(format: config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FOOTFALL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}
