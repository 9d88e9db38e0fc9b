//! `tools-bench`: starts the release `tools-service` binary on a fresh seeded database and drives
//! it with concurrent MCP clients over streamable HTTP, printing calls/s and latency
//! percentiles per tool and concurrency, resident memory, and time to the first `tools/list`.
//!
//! Run: `cargo build --release -p tools-service -p devstack && target/release/tools-bench`
//!
//! The clients are [`devstack::load`]'s.
#![allow(clippy::print_stdout)] // printing the report is this program's job

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use devstack::load::{self, Calls};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "tools-bench", about = "Benchmark the tools service over MCP")]
struct Args {
    /// Seconds of measurement per tool and concurrency (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrency levels (number of parallel clients).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    /// Random customers in the database.
    #[arg(long, default_value_t = 250)]
    customers: u32,
    /// Start-up measurements (the median is reported).
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// The service binary; default: `tools-service` next to this program.
    #[arg(long)]
    service_bin: Option<PathBuf>,
}

/// Starts the service on `db` and returns it with the time from spawn to its first `tools/list`.
async fn start(
    bin: &Path,
    db: &Path,
    customers: u32,
) -> anyhow::Result<(load::Process, String, Duration)> {
    let started = Instant::now();
    let service = load::spawn(
        bin,
        &[],
        [
            ("BIND_ADDR", "127.0.0.1:0".to_owned()),
            ("DB_PATH", db.display().to_string()),
            ("SEED_CUSTOMER_COUNT", customers.to_string()),
            ("RUST_LOG", "warn,shared::http=info".to_owned()),
            // Token verification is measured on its own (devstack's verify_bench example): a
            // cached token costs well under a microsecond, so the service is measured without it.
            ("DISABLE_AUTH", "true".to_owned()),
        ],
    )
    .await?;
    let url = format!("http://{}/mcp", service.addr);
    load::until_listing(&url, None, Duration::from_secs(30)).await?;
    Ok((service, url, started.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match args.service_bin {
        Some(bin) => bin,
        None => load::sibling_binary("tools-service")?,
    };
    let dir = std::env::temp_dir().join(format!("tools-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("contoso.db");

    // First start seeds the database; later starts measure start-up on a seeded database.
    let (seeding, _, _) = start(&bin, &db, args.customers).await?;
    drop(seeding);
    let mut first_lists = Vec::new();
    for _ in 0..args.starts {
        let (service, _, first_list) = start(&bin, &db, args.customers).await?;
        first_lists.push(first_list);
        drop(service);
    }

    let (service, url, _) = start(&bin, &db, args.customers).await?;
    let pid = service.pid()?;
    let idle_rss = load::memory_kib(pid, "VmRSS:").unwrap_or(0);
    let customers = i64::from(args.customers) + 9;
    let queries = [
        "data overage policy",
        "refund for a returned phone",
        "roaming activation",
        "slow internet",
        "late payment fee",
    ];
    type Case = (&'static str, Calls);
    let cases: Vec<Case> = vec![
        (
            "get_customer_detail",
            Arc::new(move |n| {
                (
                    "get_customer_detail".into(),
                    json!({"customer_id": 1 + (n as i64 % customers)}),
                )
            }),
        ),
        (
            "get_billing_summary",
            Arc::new(move |n| {
                (
                    "get_billing_summary".into(),
                    json!({"customer_id": 1 + (n as i64 % customers)}),
                )
            }),
        ),
        (
            "search_knowledge_base",
            Arc::new(move |n| {
                (
                    "search_knowledge_base".into(),
                    json!({"query": queries[n as usize % queries.len()]}),
                )
            }),
        ),
    ];
    println!(
        "tools-service benchmark: {} customers, {} s per row, {} logical CPUs",
        customers,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| tool | concurrency | calls/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, make) in &cases {
        for &c in &args.concurrency {
            let m = load::drive(&url, None, c, args.seconds, make.clone()).await?;
            println!(
                "| {name} | {c} | {:.0} | {:.2} | {:.2} |",
                m.calls_per_s, m.p50_ms, m.p99_ms
            );
        }
    }
    let rss = load::memory_kib(pid, "VmRSS:").unwrap_or(0);
    let peak = load::memory_kib(pid, "VmHWM:").unwrap_or(0);
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| resident memory idle (MiB) | {:.1} |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| resident memory after load (MiB) | {:.1} |",
        rss as f64 / 1024.0
    );
    println!(
        "| peak resident memory (MiB) | {:.1} |",
        peak as f64 / 1024.0
    );
    println!(
        "| start to first tools/list, seeded DB (ms, median of {}) | {:.0} |",
        args.starts,
        load::median(&first_lists).unwrap_or_default().as_secs_f64() * 1000.0
    );
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
