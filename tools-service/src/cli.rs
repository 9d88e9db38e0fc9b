//! What the `tools-service` binary does with its command line: serve (the default), print the
//! effective role policy (`--print-policy`), print the stored audit trail (`audit`), or seed the
//! store and exit (`seed`).

use tokio::net::TcpListener;

use anyhow::Context;
use shared::audit::ServiceCommand;

use crate::{
    Config,
    config::{Command, SeedArgs, check_seed_count},
};

/// Runs what `config` asks for; serving lasts until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    match &config.command {
        Some(Command::Service(ServiceCommand::Audit(args))) => {
            // Only the events go to stdout: no logging is set up.
            shared::audit::print_events(args, &config.db_path, &mut std::io::stdout()).await?;
            return Ok(());
        }
        Some(Command::Seed(args)) => {
            let _telemetry = shared::telemetry::init(&config.telemetry, "tools-service")?;
            return seed(&config, args).await;
        }
        None => {}
    }
    if config.print_policy {
        shared::audit::print_policy(&config.into_valid()?.auth.policy)?;
        return Ok(());
    }
    let _telemetry = shared::telemetry::init(&config.telemetry, "tools-service")?;
    let valid = config.into_valid()?;
    let addr = valid.config.bind_addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (BIND_ADDR): {e}"))?;
    crate::run(valid, listener, shared::http::shutdown_signal()).await
}

/// `tools-service seed`: the store the settings choose, seeded unless it holds data (or with
/// `--force`); the token issuer and the rest of the serving settings are not needed.
async fn seed(config: &Config, args: &SeedArgs) -> anyhow::Result<()> {
    let count = match args.count {
        Some(count) => check_seed_count("--count", count)?,
        None => check_seed_count("SEED_CUSTOMER_COUNT", config.seed_customer_count)?,
    };
    let storage = config.storage()?;
    let opened = storage
        .open()
        .await
        .with_context(|| format!("opening {}", storage.describe()))?;
    let seeding = opened.seeding.as_ref();
    if !args.force && !seeding.is_empty().await? {
        tracing::info!(
            database = %opened.health.database(),
            "the store already holds customers: left as it is (--force replaces them)"
        );
        return Ok(());
    }
    let reason = if args.force {
        "--force"
    } else {
        "empty database"
    };
    crate::seed_store(seeding, reason, count, config.seed_random).await
}
