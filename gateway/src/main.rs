//! `gateway` binary: parse the command line, run the subcommand, report on stdout and stderr.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use gateway::{
    Config,
    cli::{self, Cli, Command},
};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // The crate's errors carry their causes in their message already.
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::RenderApim(args) => {
            for path in cli::render_apim(&args)? {
                writeln!(stdout, "wrote {}", path.display()).context("writing to stdout")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            // Before the configuration is checked: its issuer is one of the URLs this admits.
            shared::auth::jwks::allow_plain_http_to(&args.allow_plain_http_hosts);
            let config = Config::load(&args.config.config)?;
            let quotas = args.quota_store()?;
            writeln!(stdout, "{}", cli::summary(&config)).context("writing to stdout")?;
            drop(stdout);
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = args.worker_threads {
                runtime.worker_threads(usize::from(threads));
            }
            let runtime = runtime
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(async {
                // In the runtime: the gRPC exporter and the metrics endpoint run on it.
                let _telemetry = shared::telemetry::init(&args.telemetry, "gateway")?;
                shared::auth::jwks::warn_plain_http();
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("cannot listen on {} (listen)", config.listen))?;
                gateway::run_with(config, &quotas, listener, shared::http::shutdown_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
