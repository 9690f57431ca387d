//! The command line: `serve`, `migrate`, `generate-key`, `rotate-keys` and `config check`.
//!
//! Failures print one line on stderr (`error: ...`) and exit 1; clap's own usage errors keep
//! clap's message and exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::server::{self, Roles};
use crate::{admin, crypto, db, telemetry};

#[derive(Debug, Parser)]
#[command(name = "relayit", version, about = "Self-hosted notification delivery")]
pub struct Cli {
    /// Configuration file [default: ./config.toml when present]
    #[arg(long, global = true, value_name = "PATH", env = "RELAYIT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service
    Serve {
        /// Roles this process runs, comma-separated
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        role: Vec<RoleArg>,
    },
    /// Apply pending database migrations and exit
    Migrate,
    /// Print a fresh master key (base64 of 32 random bytes)
    GenerateKey,
    /// Re-seal every stored secret under security.encryption_key (the previous keys must be in
    /// security.previous_keys). Safe while the service runs, once every process has the new key
    RotateKeys,
    /// Inspect the configuration
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create users, organizations and API keys without the HTTP API
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user (prints its id); the password is read from standard input
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Administrator")]
        name: String,
        /// Read the password from the first line of standard input
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Create an organization owned by an existing user (prints its id)
    CreateOrg {
        /// Email of the owner
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: Option<String>,
    },
    /// Create an API key (prints the key, shown only this once)
    CreateApiKey {
        /// Organization id or slug
        #[arg(long)]
        org: String,
        /// Bind the key to this project (id or slug)
        #[arg(long)]
        project: Option<String>,
        #[arg(long, value_delimiter = ',', default_value = "send")]
        scopes: Vec<String>,
        #[arg(long, default_value = "admin")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration, then print it with secrets redacted
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// api, worker and webhook in one process
    All,
    /// the HTTP API
    Api,
    /// the delivery worker
    Worker,
    /// the webhook worker
    Webhook,
}

pub fn roles_of(args: &[RoleArg]) -> Roles {
    if args.contains(&RoleArg::All) {
        return Roles::ALL;
    }
    Roles {
        api: args.contains(&RoleArg::Api),
        worker: args.contains(&RoleArg::Worker),
        webhook: args.contains(&RoleArg::Webhook),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::GenerateKey => {
            println!("{}", crypto::generate_key_base64());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Check } => {
            let config = Config::load(cli.config.as_deref())?;
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Migrate => {
            let config = Config::load(cli.config.as_deref())?;
            telemetry::init(&config.log);
            runtime()?.block_on(async {
                let url = config.database.migrate_url();
                let applied = db::migrate(url).await.map_err(|e| e.at(url))?;
                println!("applied {} migration(s)", applied.len());
                anyhow::Ok(())
            })
        }
        Command::Admin { command } => {
            let config = Config::load(cli.config.as_deref())?;
            runtime()?.block_on(async {
                let pool = db::pool(&config.database)?;
                let output = match command {
                    AdminCommand::CreateUser { email, name, password_stdin: _ } => {
                        let password = admin::read_password(std::io::stdin().lock())?;
                        admin::create_user(&pool, &email, &name, password).await?
                    }
                    AdminCommand::CreateOrg { owner, name, slug } => {
                        admin::create_org(&pool, &owner, &name, slug.as_deref()).await?
                    }
                    AdminCommand::CreateApiKey { org, project, scopes, name } => {
                        admin::create_api_key(&pool, &org, project.as_deref(), &name, scopes)
                            .await?
                    }
                };
                println!("{output}");
                anyhow::Ok(())
            })
        }
        Command::RotateKeys => {
            let config = Config::load(cli.config.as_deref())?;
            telemetry::init(&config.log);
            let (keys, _) = crypto::resolve_master_keys(&config, false)?;
            runtime()?.block_on(async {
                let report = db::rotation::rotate_at(&config.database.url, &keys)
                    .await
                    .map_err(|e| e.at(&config.database.url))?;
                print_rotation(&report, keys.current.id())
            })
        }
        Command::Serve { role } => {
            let config = Config::load(cli.config.as_deref())?;
            telemetry::init(&config.log);
            runtime()?.block_on(async {
                let running = server::start(config, roles_of(&role)).await?;
                running.run_until_stopped().await
            })
        }
    }
}

/// Prints what a rotation did; rows that did not open make it fail, naming them.
fn print_rotation(report: &db::rotation::RotationReport, key_id: &str) -> anyhow::Result<()> {
    println!(
        "re-sealed {} row(s) under key {key_id}: {} provider credential(s), {} webhook endpoint(s)",
        report.resealed(),
        report.providers_resealed,
        report.webhooks_resealed
    );
    if report.changed_meanwhile > 0 {
        println!(
            "{} row(s) changed while rotating and were left to that change; run again once every \
             process has the new key",
            report.changed_meanwhile
        );
    }
    const SHOWN: usize = 5;
    let failed = &report.failed;
    if failed.is_empty() {
        return Ok(());
    }
    let more = failed.len().saturating_sub(SHOWN);
    anyhow::bail!(
        "{} row(s) could not be opened ({}{}); add the keys that sealed them to \
         security.previous_keys and run again",
        failed.len(),
        failed[..failed.len().min(SHOWN)].join("; "),
        if more > 0 { format!("; and {more} more") } else { String::new() }
    )
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
