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
            let config = Config::load(&args.config.config)?;
            writeln!(stdout, "{}", cli::summary(&config)).context("writing to stdout")?;
            eprintln!(
                "gateway run: the configuration is valid, but the proxy is not built yet, so nothing \
                 is listening (exit status {}). `gateway render-apim` renders the production \
                 policy from this configuration meanwhile.",
                cli::RUN_NOT_BUILT_EXIT_CODE
            );
            Ok(ExitCode::from(cli::RUN_NOT_BUILT_EXIT_CODE))
        }
    }
}
