//! `soak`: the whole stack under mixed and hostile traffic for minutes, memory and descriptors
//! watched. Starts the release `devstack` beside this program as a child process (every port on
//! `127.0.0.1:0`, its data in a scratch folder, legacy MCP sessions on, the offline planner
//! answering the experts) and drives it through the gateway with concurrent clients: tool calls,
//! expert questions, progress streams dropped midway, legacy sessions opened and abandoned, bad
//! input, 2 MiB bodies, half-sent request heads and idle keep-alive connections. Prints a
//! Markdown row per interval (resident memory and open descriptors of `devstack` and of itself,
//! the agent's sessions and conversations, answers and errors per kind) and the verdict: memory
//! and descriptors flat within the tolerance after the warm-up. Exits 2 when the verdict fails.
//!
//! Run: `cargo build --release -p devstack && target/release/soak --minutes 10`
#![allow(clippy::print_stdout)] // printing the report is this program's job

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use devstack::soak::{self, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "soak",
    about = "Drive the whole local stack through its gateway for minutes and watch it for growth"
)]
struct Args {
    /// How long the traffic runs, in minutes.
    #[arg(long, env = "SOAK_MINUTES", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1440))]
    minutes: u64,
    /// Concurrent clients; also how many slow or idle connections are held at once, at most.
    #[arg(long, env = "SOAK_CLIENTS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    clients: u64,
    /// One table row per this many seconds.
    #[arg(long, env = "SOAK_SECONDS_PER_ROW", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds_per_row: u64,
    /// Requests per second of all clients together, at most. The gateway allows each tenant 600
    /// calls a minute per route; above about 25 some requests meet its 429 (counted apart).
    #[arg(long, env = "SOAK_RATE", default_value_t = 25.0)]
    rate: f64,
    /// Seconds at the start left out of the verdict: the abandoned MCP sessions pile up in memory
    /// until the first of them idles out (MCP_SESSION_IDLE_SECS, 120), so the stack's steady
    /// state starts after that, and a row later.
    #[arg(long, env = "SOAK_WARMUP_SECS", default_value_t = 180)]
    warmup_secs: u64,
    /// Growth of memory or descriptors after the warm-up that still counts as flat, in percent.
    #[arg(long, env = "SOAK_TOLERANCE_PCT", default_value_t = 10.0)]
    tolerance_pct: f64,
    /// Seconds a request may take before it counts as a hang.
    #[arg(long, env = "SOAK_REQUEST_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: u64,
    /// Seconds a half-sent or idle connection is held waiting for the server to close it; one
    /// still open then counts as an error of its kind.
    #[arg(long, env = "SOAK_HOLD_SECS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..))]
    hold_secs: u64,
    /// `TROUBLESHOOT_STEP_MS` of the tools services: the device diagnosis that progress streams
    /// follow takes nine steps.
    #[arg(long, env = "SOAK_TROUBLESHOOT_STEP_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    troubleshoot_step_ms: u64,
    /// `CONVERSATIONS_PER_OWNER` of the experts. Each expert question of the soak starts a
    /// conversation, and a few people ask them all: at the service's default (1,000) the store
    /// would still be filling up to its cap an hour in, at 100 it is full within minutes, so the
    /// run shows the steady state of a store at its cap.
    #[arg(long, env = "SOAK_CONVERSATIONS_PER_OWNER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    conversations_per_owner: u32,
    /// The `devstack` binary to soak; by default the one beside this program.
    #[arg(long, env = "SOAK_DEVSTACK")]
    devstack: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate (SOAK_RATE) must be a positive number of requests per second"
    );
    anyhow::ensure!(
        args.tolerance_pct.is_finite() && args.tolerance_pct >= 0.0,
        "--tolerance-pct (SOAK_TOLERANCE_PCT) must be a percentage, 0 or more"
    );
    let settings = Settings {
        duration: Duration::from_secs(args.minutes * 60),
        clients: usize::try_from(args.clients)?,
        row_every: Duration::from_secs(args.seconds_per_row),
        rate: args.rate,
        warmup: Duration::from_secs(args.warmup_secs),
        tolerance_pct: args.tolerance_pct,
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        hold: Duration::from_secs(args.hold_secs),
        troubleshoot_step_ms: args.troubleshoot_step_ms,
        conversations_per_owner: args.conversations_per_owner,
        devstack: args.devstack,
    };
    let outcome = soak::run(&settings, &mut std::io::stdout()).await?;
    Ok(if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
        let args = Args::try_parse_from(["soak", "--minutes", "3", "--seconds-per-row", "30"])
            .expect("parses");
        assert_eq!((args.minutes, args.seconds_per_row), (3, 30));
        assert!(Args::try_parse_from(["soak", "--minutes", "0"]).is_err());
    }
}
