//! What the `agent-service` binary does with its command line: serve (the default), print the
//! effective role policy (`--print-policy`), or print the stored audit trail (`audit`).

use std::io::Write;

use tokio::net::TcpListener;

use crate::{Config, config::Command};

/// Runs what `config` asks for; serving lasts until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if let Some(Command::Audit(args)) = &config.command {
        // Only the events go to stdout: no logging is set up.
        shared::audit::print_events(args, &config.db_path, &mut std::io::stdout()).await?;
        return Ok(());
    }
    if config.print_policy {
        let valid = config.into_valid()?;
        let mut out = std::io::stdout();
        out.write_all(valid.auth.policy.to_toml().as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    shared::telemetry::init(&config.telemetry)?;
    let valid = config.into_valid()?;
    let addr = valid.config.bind_addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (BIND_ADDR): {e}"))?;
    crate::run(valid, listener, shared::http::shutdown_signal()).await
}
