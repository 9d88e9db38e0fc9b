//! `agent-service` binary: parse the configuration, start logging, run the service.

use agent_service::Config;
use clap::Parser;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init(&config.telemetry)?;
    let valid = config.into_valid()?;
    let addr = valid.config.bind_addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (BIND_ADDR): {e}"))?;
    agent_service::run(valid, listener, shared::http::shutdown_signal()).await
}
