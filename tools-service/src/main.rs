//! `tools-service` binary: parse the configuration, start logging, run the service.

use clap::Parser;
use tokio::net::TcpListener;
use tools_service::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init(&config.telemetry)?;
    config.validate()?;
    let listener = TcpListener::bind(config.bind_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (BIND_ADDR): {e}", config.bind_addr))?;
    tools_service::run(config, listener, shared::http::shutdown_signal()).await
}
