//! What the `agent-service` binary does with its command line: serve (the default), print the
//! effective role policy (`--print-policy`), or print the stored audit trail (`audit`).

use tokio::net::TcpListener;

use shared::audit::ServiceCommand;

use crate::Config;

/// Runs what `config` asks for; serving lasts until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if let Some(ServiceCommand::Audit(args)) = &config.command {
        // Only the events go to stdout: no logging is set up.
        shared::audit::print_events(args, &config.db_path, &mut std::io::stdout()).await?;
        return Ok(());
    }
    if config.print_policy {
        shared::audit::print_policy(&config.into_valid()?.auth.policy)?;
        return Ok(());
    }
    let _telemetry = shared::telemetry::init(&config.telemetry, "agent-service")?;
    let valid = config.into_valid()?;
    let addr = valid.config.bind_addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (BIND_ADDR): {e}"))?;
    crate::run(valid, listener, shared::http::shutdown_signal()).await
}
