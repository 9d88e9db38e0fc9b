//! `gateway-bench`: what the gateway costs. Starts a development identity provider (in this
//! process), the release `tools-service` with token verification on, and the release `gateway` in
//! front of it, then drives the same MCP `tools/call` load direct to the backend and through the
//! gateway, alternating the two in rounds so that drift on a busy machine hits both alike. Prints
//! the median of the rounds for each side, the throughput ratio and the latency the hop adds.
//!
//! Run: `cargo build --release -p tools-service -p gateway -p devstack && target/release/gateway-bench`
#![allow(clippy::print_stdout)] // printing the report is this program's job

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use devstack::{
    idp::{IdpConfig, defaults},
    load::{self, Calls, Measurement},
};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "gateway-bench",
    about = "Benchmark MCP calls direct to a backend and through the gateway"
)]
struct Args {
    /// Seconds of measurement per run (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrency levels (number of parallel clients).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    /// Direct/gateway pairs per concurrency level; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Random customers in the backend's database.
    #[arg(long, default_value_t = 250)]
    customers: u32,
    /// Keep the gateway's access log on (one line per request, as in production); by default
    /// both processes log warnings only, so the hop itself is measured.
    #[arg(long)]
    access_log: bool,
    /// The gateway's worker threads (`GATEWAY_WORKER_THREADS`); default: one per CPU.
    #[arg(long)]
    gateway_threads: Option<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tools_bin = load::sibling_binary("tools-service")?;
    let gateway_bin = load::sibling_binary("gateway")?;
    let (dir, idp, token) = load::bench_setup("gateway-bench", IdpConfig::default()).await?;

    let backend = load::spawn(
        &tools_bin,
        &[],
        [
            ("BIND_ADDR", "127.0.0.1:0".to_owned()),
            ("DB_PATH", dir.join("contoso.db").display().to_string()),
            ("SEED_CUSTOMER_COUNT", args.customers.to_string()),
            ("AUTH_ISSUER", idp.url().to_owned()),
            ("MCP_API_AUDIENCE", defaults::AUDIENCE.to_owned()),
            ("DISABLE_AUTH", "false".to_owned()),
            ("USE_PASSTHROUGH_AUTH", "false".to_owned()),
            ("RUST_LOG", "warn,shared::http=info".to_owned()),
        ],
    )
    .await?;
    let direct = format!("http://{}/mcp", backend.addr);
    load::until_listing(&direct, Some(&token), Duration::from_secs(60)).await?;

    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:0"
public_base_url = "http://127.0.0.1"
[auth]
issuer = "{issuer}"
[[routes]]
name = "contoso"
prefix = "/contoso-mcp"
upstreams = ["{backend}"]
allowed_tenants = ["{tenant}"]
# The backend's audience, as a route behind Entra lists its application ID URI: one token
# serves both sides of the comparison.
audiences = ["{audience}"]
"#,
            issuer = idp.url(),
            audience = defaults::AUDIENCE,
            backend = backend.addr,
            tenant = defaults::CONTOSO,
        ),
    )?;
    let gateway_log = if args.access_log {
        "warn,gateway=info"
    } else {
        "warn,gateway::proxy=info"
    };
    let mut gateway_env = vec![("RUST_LOG", gateway_log.to_owned())];
    if let Some(threads) = args.gateway_threads {
        gateway_env.push(("GATEWAY_WORKER_THREADS", threads.to_string()));
    }
    let gateway = load::spawn(
        &gateway_bin,
        &["run", "--config", &config.display().to_string()],
        gateway_env,
    )
    .await?;
    let through = format!("http://{}/contoso-mcp/mcp", gateway.addr);
    load::until_listing(&through, Some(&token), Duration::from_secs(30)).await?;

    let customers = i64::from(args.customers) + 9;
    let calls: Calls = Arc::new(move |n| {
        (
            "get_customer_detail".into(),
            json!({"customer_id": 1 + (n as i64 % customers)}),
        )
    });

    println!(
        "gateway benchmark: get_customer_detail, {} s per run, median of {} rounds, {} logical CPUs, gateway access log {}",
        args.seconds,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if args.access_log { "on" } else { "off" },
    );
    println!();
    println!(
        "| concurrency | direct calls/s | gateway calls/s | ratio | direct p50 ms | gateway p50 ms | added p50 ms | direct p99 ms | gateway p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &concurrency in &args.concurrency {
        let (mut direct_runs, mut gateway_runs) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            for (url, runs) in [(&direct, &mut direct_runs), (&through, &mut gateway_runs)] {
                let run = load::drive(url, Some(&token), concurrency, args.seconds, calls.clone());
                runs.push(run.await?);
            }
        }
        let d = medians(&direct_runs)?;
        let g = medians(&gateway_runs)?;
        // The hop's cost per round, then its median: pairs ran back to back.
        let added: Vec<f64> = direct_runs
            .iter()
            .zip(&gateway_runs)
            .map(|(d, g)| g.p50_ms - d.p50_ms)
            .collect();
        let ratio: Vec<f64> = direct_runs
            .iter()
            .zip(&gateway_runs)
            .map(|(d, g)| g.calls_per_s / d.calls_per_s)
            .collect();
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            d.calls_per_s,
            g.calls_per_s,
            load::median(&ratio).unwrap_or(0.0) * 100.0,
            d.p50_ms,
            g.p50_ms,
            load::median(&added).unwrap_or(0.0),
            d.p99_ms,
            g.p99_ms,
        );
    }
    let gateway_pid = gateway.pid()?;
    println!();
    println!(
        "gateway resident memory after load: {:.1} MiB (peak {:.1} MiB)",
        load::memory_kib(gateway_pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
        load::memory_kib(gateway_pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0,
    );
    drop(gateway);
    drop(backend);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The median of each figure over the runs, taken separately.
fn medians(runs: &[Measurement]) -> anyhow::Result<Measurement> {
    let pick = |f: fn(&Measurement) -> f64| {
        load::median(&runs.iter().map(f).collect::<Vec<_>>()).context("no run")
    };
    Ok(Measurement {
        calls_per_s: pick(|m| m.calls_per_s)?,
        p50_ms: pick(|m| m.p50_ms)?,
        p99_ms: pick(|m| m.p99_ms)?,
    })
}
