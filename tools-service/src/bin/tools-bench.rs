//! `tools-bench`: starts the release `tools-service` binary on a fresh seeded database and drives
//! it with concurrent MCP clients over streamable HTTP, printing calls/s and latency
//! percentiles per tool and concurrency, resident memory, and time to the first `tools/list`.
//!
//! Run: `cargo build --release -p tools-service && target/release/tools-bench`
//!
//! Each client is a keep-alive HTTP connection sending JSON-RPC `tools/call` POSTs exactly as
//! an MCP client of protocol 2025-11-25 does in stateless mode (initialize once, then calls
//! with the `MCP-Protocol-Version` header). The client is deliberately lean so that on a small
//! machine the load generator takes as little CPU as possible from the server it measures.
#![allow(clippy::print_stdout)] // printing the report is this program's job

use std::{
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

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

const PROTOCOL: &str = "2025-11-25";

struct Service {
    child: Child,
    url: String,
}

async fn start(
    bin: &PathBuf,
    db: &std::path::Path,
    customers: u32,
) -> anyhow::Result<(Service, Duration)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DB_PATH", db)
        .env("SEED_CUSTOMER_COUNT", customers.to_string())
        .env("RUST_LOG", "warn,shared::http=info")
        // Token verification is measured on its own (devstack's verify_bench example): a cached
        // token costs well under a microsecond, so the service is measured without it.
        .env("DISABLE_AUTH", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await?
            .context("service exited before listening")?;
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().to_owned();
        }
    };
    // Keep draining the log so the service never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = format!("http://{addr}/mcp");
    let client = reqwest::Client::new();
    let first_list = loop {
        match rpc(&client, &url, "tools/list", json!({})).await {
            Ok(_) => break started.elapsed(),
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Err(e) => return Err(e),
        }
    };
    Ok((Service { child, url }, first_list))
}

async fn rpc(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> anyhow::Result<Value> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL)
        .body(serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
        )?)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("HTTP {}", response.status());
    }
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    if body.get("error").is_some() || body["result"]["isError"] == json!(true) {
        bail!("call failed: {body}");
    }
    Ok(body)
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Measurement {
    calls_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn drive(
    url: &str,
    concurrency: usize,
    seconds: u64,
    make_args: Arc<dyn Fn(u64) -> (String, Value) + Send + Sync>,
) -> anyhow::Result<Measurement> {
    let warmup = Duration::from_secs(1);
    let window = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let url = url.to_owned();
        let make_args = make_args.clone();
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
            rpc(&client, &url, "initialize", json!({
                "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "tools-bench", "version": "1"}
            })).await?;
            let mut latencies = Vec::new();
            let mut n = worker as u64;
            loop {
                let (name, args) = make_args(n);
                n += concurrency as u64;
                let t = Instant::now();
                rpc(&client, &url, "tools/call", json!({"name": name, "arguments": args})).await?;
                let done = Instant::now();
                if done - start > warmup + window {
                    break;
                }
                if t - start >= warmup {
                    latencies.push((done - t).as_micros() as u32);
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Ok(Measurement {
        calls_per_s: all.len() as f64 / window.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match args.service_bin {
        Some(bin) => bin,
        None => std::env::current_exe()?.with_file_name("tools-service"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p tools-service`",
            bin.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("tools-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("contoso.db");

    // First start seeds the database; later starts measure start-up on a seeded database.
    let (seeding, _) = start(&bin, &db, args.customers).await?;
    drop(seeding);
    let mut first_lists = Vec::new();
    for _ in 0..args.starts {
        let (service, first_list) = start(&bin, &db, args.customers).await?;
        first_lists.push(first_list);
        drop(service);
    }

    let (service, _) = start(&bin, &db, args.customers).await?;
    let pid = service.child.id().context("service pid")?;
    let idle_rss = rss_kib(pid, "VmRSS:").unwrap_or(0);
    let customers = i64::from(args.customers) + 9;
    let queries = [
        "data overage policy",
        "refund for a returned phone",
        "roaming activation",
        "slow internet",
        "late payment fee",
    ];
    type Case = (
        &'static str,
        Arc<dyn Fn(u64) -> (String, Value) + Send + Sync>,
    );
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
            let m = drive(&service.url, c, args.seconds, make.clone()).await?;
            println!(
                "| {name} | {c} | {:.0} | {:.2} | {:.2} |",
                m.calls_per_s, m.p50_ms, m.p99_ms
            );
        }
    }
    let rss = rss_kib(pid, "VmRSS:").unwrap_or(0);
    let peak = rss_kib(pid, "VmHWM:").unwrap_or(0);
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
        median(first_lists).as_secs_f64() * 1000.0
    );
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
