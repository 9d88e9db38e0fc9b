//! `tools-bench`: seeds a fresh database with the release `tools-service seed` job (timed), starts
//! the release binary on it and drives it with concurrent MCP clients over streamable HTTP,
//! printing calls/s and latency percentiles per tool and concurrency, resident memory, and time
//! to the first `tools/list`. With `--cosmos-endpoint` the data is in Cosmos DB (the local
//! emulator: `node scripts/cosmos-emulator/launch.mjs --port 8081 --no-stdin`).
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
use tools_service::seed::SCENARIO_IDS;

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
    /// Keep the data in this Cosmos DB account (USE_COSMOSDB) instead of SQLite; a fresh
    /// database of its own each run.
    #[arg(long)]
    cosmos_endpoint: Option<String>,
    /// The account key for --cosmos-endpoint (default: the emulator's well-known key).
    #[arg(
        long,
        default_value = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
    )]
    cosmos_key: String,
}

/// Where the data is: the environment that chooses it.
fn storage_env(args: &Args, db: &Path) -> Vec<(&'static str, String)> {
    let mut env = vec![("DB_PATH", db.display().to_string())];
    if let Some(endpoint) = &args.cosmos_endpoint {
        env.extend([
            ("USE_COSMOSDB", "true".to_owned()),
            ("COSMOSDB_ENDPOINT", endpoint.clone()),
            ("COSMOSDB_KEY", args.cosmos_key.clone()),
            (
                "COSMOS_DATABASE_NAME",
                format!("tools-bench-{}", std::process::id()),
            ),
        ]);
    }
    env
}

/// Runs `tools-service seed --force --count N` on the store; how long it took.
async fn seed(
    bin: &Path,
    storage: &[(&'static str, String)],
    customers: u32,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = tokio::process::Command::new(bin)
        .args(["seed", "--force", "--count", &customers.to_string()])
        .envs(storage.iter().cloned())
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "tools-service seed failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(started.elapsed())
}

/// Invoices with at least $50.00 outstanding, found through `get_billing_summary`: what the
/// `pay_invoice` case pays a cent at a time without running out.
async fn open_invoices(url: &str, customers: &[i64]) -> anyhow::Result<Vec<i64>> {
    let client = reqwest::Client::new();
    let mut found = Vec::new();
    for customer in customers {
        let body = load::rpc(
            &client,
            url,
            None,
            "tools/call",
            json!({"name": "get_billing_summary", "arguments": {"customer_id": customer}}),
        )
        .await?;
        let open = body["result"]["structuredContent"]["open_invoices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        found.extend(open.iter().filter_map(|invoice| {
            let outstanding = invoice["outstanding"].as_f64()?;
            (outstanding >= 50.0).then(|| invoice["invoice_id"].as_i64())?
        }));
    }
    anyhow::ensure!(!found.is_empty(), "no invoice with $50.00 outstanding");
    Ok(found)
}

/// Starts the service on `db` and returns it with the time from spawn to its first `tools/list`.
async fn start(
    bin: &Path,
    storage: &[(&'static str, String)],
) -> anyhow::Result<(load::Process, String, Duration)> {
    let started = Instant::now();
    let env = [
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("SEED_ON_STARTUP", "false".to_owned()),
        ("RUST_LOG", "warn,shared::http=info".to_owned()),
        // Token verification is measured on its own (devstack's verify_bench example): a
        // cached token costs well under a microsecond, so the service is measured without it.
        ("DISABLE_AUTH", "true".to_owned()),
    ];
    let service = load::spawn(bin, &[], env.into_iter().chain(storage.iter().cloned())).await?;
    let url = format!("http://{}/mcp", service.addr);
    load::until_listing(&url, None, Duration::from_secs(30)).await?;
    Ok((service, url, started.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match args.service_bin.clone() {
        Some(bin) => bin,
        None => load::sibling_binary("tools-service")?,
    };
    let dir = std::env::temp_dir().join(format!("tools-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("contoso.db");

    let storage = storage_env(&args, &db);
    let seeding = seed(&bin, &storage, args.customers).await?;
    let mut first_lists = Vec::new();
    for _ in 0..args.starts {
        let (service, _, first_list) = start(&bin, &storage).await?;
        first_lists.push(first_list);
        drop(service);
    }

    let (service, url, _) = start(&bin, &storage).await?;
    let pid = service.pid()?;
    let idle_rss = load::memory_kib(pid, "VmRSS:").unwrap_or(0);
    // The random customers' ids go round the scenario customers 251-259.
    let ids: Arc<Vec<i64>> = Arc::new(
        (1..)
            .filter(|id| !SCENARIO_IDS.contains(id))
            .take(args.customers as usize)
            .chain(SCENARIO_IDS)
            .collect(),
    );
    let customers = ids.len();
    // At most 2,000 customers' summaries: enough open invoices to spread the payments over.
    let invoices = Arc::new(open_invoices(&url, &ids[ids.len().saturating_sub(2_000)..]).await?);
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
            Arc::new({
                let ids = ids.clone();
                move |n| {
                    (
                        "get_customer_detail".into(),
                        json!({"customer_id": ids[n as usize % ids.len()]}),
                    )
                }
            }),
        ),
        (
            "get_billing_summary",
            Arc::new({
                let ids = ids.clone();
                move |n| {
                    (
                        "get_billing_summary".into(),
                        json!({"customer_id": ids[n as usize % ids.len()]}),
                    )
                }
            }),
        ),
        (
            "pay_invoice",
            Arc::new(move |n| {
                (
                    "pay_invoice".into(),
                    json!({"invoice_id": invoices[n as usize % invoices.len()], "amount": 0.01}),
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
        "tools-service benchmark: {} customers on {}, {} s per row, {} logical CPUs",
        customers,
        if args.cosmos_endpoint.is_some() {
            "Cosmos DB"
        } else {
            "SQLite"
        },
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
        "| seeding {} customers with `tools-service seed` (s) | {:.1} |",
        customers,
        seeding.as_secs_f64()
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
