//! `devstack` binary: parse the command line, run the subcommand.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use devstack::config::{Cli, Command};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => {
            let _telemetry = shared::telemetry::init(&cli.stack.telemetry, "devstack")?;
            let stack = devstack::stack::start(cli.stack).await?;
            writeln!(std::io::stdout(), "{}", stack.banner()).context("writing to stdout")?;
            shared::http::shutdown_signal().await;
            stack.stop().await?;
        }
        Some(Command::Token(args)) => {
            let token = devstack::token(&args)?;
            writeln!(std::io::stdout(), "{token}").context("writing the token to stdout")?;
        }
        Some(Command::Idp(args)) => {
            let _telemetry = shared::telemetry::init(&args.telemetry, "devstack-idp")?;
            // Before binding: a refused address is never open, not even for a moment.
            args.check_exposure()?;
            let listener = TcpListener::bind(args.bind)
                .await
                .with_context(|| format!("cannot listen on {} (IDP_BIND_ADDR)", args.bind))?;
            devstack::run_idp(args, listener, shared::http::shutdown_signal()).await?;
        }
    }
    Ok(())
}
