//! `agent-service` binary: parse the command line, hand it to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    agent_service::cli::run(agent_service::Config::parse()).await
}
