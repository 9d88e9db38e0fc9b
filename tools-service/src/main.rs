//! `tools-service` binary: parse the command line, hand it to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tools_service::cli::run(tools_service::Config::parse()).await
}
