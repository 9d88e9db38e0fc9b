//! What the benchmark programs (`tools-bench`, `gateway-bench`, `agent-bench`, `soak`) share:
//! starting a release binary of the workspace as a child process and learning its address, and a
//! lean MCP load generator.
//!
//! Each simulated client is one keep-alive HTTP connection sending JSON-RPC `tools/call` POSTs
//! as an MCP client of protocol 2025-11-25 does in stateless mode (initialize once, then calls
//! with the `MCP-Protocol-Version` header). It is deliberately lean so that on a small machine the
//! load generator takes as little CPU as possible from the servers it measures.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub const PROTOCOL: &str = "2025-11-25";

/// A workspace binary running as a child process, killed when dropped.
pub struct Process {
    pub child: Child,
    /// `host:port` from its `listening on http://ADDR` line.
    pub addr: String,
}

impl Process {
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process has exited")
    }
}

/// The release binary `name` next to the running program (both live in `target/release`), or a
/// clear error saying how to build it.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name(name);
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p {name}`",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts `bin` with `args` and `env` and waits for the `listening on http://ADDR` line every
/// service of the workspace prints once bound. Its output is drained (and dropped) from then on,
/// so it never blocks on a full pipe. `env` is its whole environment: nothing in the caller's
/// shell (a `RUST_LOG`, an `AZURE_OPENAI_API_KEY`) changes what is measured or tested.
pub async fn spawn<I, K, V>(bin: &Path, args: &[&str], env: I) -> anyhow::Result<Process>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let (child, addr) = spawn_until(bin, args, env, listening_addr, Arc::new(|_: &str| {})).await?;
    Ok(Process { child, addr })
}

/// The address of a `listening on http://ADDR` log line, text or JSON.
pub fn listening_addr(line: &str) -> Option<String> {
    let rest = line.split("listening on http://").nth(1)?;
    // The address ends the line in text logs; in JSON logs a quote follows it.
    Some(
        rest.trim()
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .to_owned(),
    )
}

/// Where a child's output goes once it is ready: each further line of its stdout and stderr.
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// [`spawn`] for a program that says it is ready in its own way: every line of its stdout goes
/// to `ready` until `ready` returns what it was waiting for; from then on every line of stdout,
/// and every line of stderr from the start, goes to `rest` (a panic message, say), so the child
/// never blocks on a full pipe.
pub async fn spawn_until<I, K, V, T>(
    bin: &Path,
    args: &[&str],
    env: I,
    mut ready: impl FnMut(&str) -> Option<T>,
    rest: LineSink,
) -> anyhow::Result<(Child, T)>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut child = Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let stderr = child.stderr.take().context("stderr")?;
    let errors = rest.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            errors(&line);
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let found = loop {
        let line = lines
            .next_line()
            .await?
            .with_context(|| format!("{} exited before it was ready", bin.display()))?;
        if let Some(found) = ready(&line) {
            break found;
        }
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            rest(&line);
        }
    });
    Ok((child, found))
}

/// What a benchmark starts with: a scratch folder named after `program`, and a development
/// identity provider in this process with a Contoso `query` token from it.
pub async fn bench_setup(
    program: &str,
    config: crate::idp::IdpConfig,
) -> anyhow::Result<(PathBuf, crate::idp::RunningIdp, String)> {
    use crate::idp::{self, TokenSpec, defaults};
    let dir = std::env::temp_dir().join(format!("{program}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let idp = idp::spawn(config)
        .await
        .context("starting the identity provider")?;
    // For the IdP's first audience.
    let token = idp.idp.mint(&TokenSpec {
        lifetime: Duration::from_secs(3600),
        ..TokenSpec::new(defaults::CONTOSO, ["query"], program)
    });
    Ok((dir, idp, token))
}

/// A POST of `body` to the MCP endpoint `url` with the headers an MCP client of [`PROTOCOL`]
/// sends (stateless: no session), and `token` as its bearer token if given.
pub fn mcp_post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL)
        .body(body);
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// One JSON-RPC request; an HTTP error, a JSON-RPC error or a tool error is an `Err`.
pub async fn rpc(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    method: &str,
    params: Value,
) -> anyhow::Result<Value> {
    let body = serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )?;
    let response = mcp_post(client, url, token, body).send().await?;
    if !response.status().is_success() {
        bail!("HTTP {}", response.status());
    }
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    if body.get("error").is_some() || body["result"]["isError"] == json!(true) {
        bail!("call failed: {body}");
    }
    Ok(body)
}

/// The JSON-RPC answer (a result or an error) in the body of an MCP response: the body itself when
/// it is JSON, else the answer among the `data:` lines of its event stream; the text as a JSON
/// string when neither holds one, so a failing test shows what came.
pub fn answer_in(body: &str) -> Value {
    let json = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .find(|data| data.contains("\"result\"") || data.contains("\"error\""))
        .unwrap_or(body);
    serde_json::from_str(json.trim()).unwrap_or_else(|_| Value::String(body.to_owned()))
}

/// Polls `tools/list` at `url` until it answers; returns how long that took.
pub async fn until_listing(
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        match rpc(&client, url, token, "tools/list", json!({})).await {
            Ok(_) => return Ok(started.elapsed()),
            Err(_) if started.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Err(e) => return Err(e.context(format!("{url} did not list its tools"))),
        }
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`).
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    pub calls_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The name and arguments of the `n`th call.
pub type Calls = Arc<dyn Fn(u64) -> (String, Value) + Send + Sync>;

/// `concurrency` clients calling tools at `url` as fast as answers come, for one second of
/// warm-up and then `seconds` of measurement.
pub async fn drive(
    url: &str,
    token: Option<&str>,
    concurrency: usize,
    seconds: u64,
    calls: Calls,
) -> anyhow::Result<Measurement> {
    let warmup = Duration::from_secs(1);
    let window = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (url, token, calls) = (url.to_owned(), token.map(str::to_owned), calls.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let token = token.as_deref();
            let hello = json!({
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "devstack-bench", "version": "1"}
            });
            rpc(&client, &url, token, "initialize", hello).await?;
            let mut latencies = Vec::new();
            let mut n = worker as u64;
            loop {
                let (name, args) = calls(n);
                n += concurrency as u64;
                let t = Instant::now();
                let params = json!({"name": name, "arguments": args});
                rpc(&client, &url, token, "tools/call", params).await?;
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
    for worker in workers {
        all.extend(worker.await??);
    }
    if all.is_empty() {
        bail!("no call completed within the measurement window");
    }
    all.sort_unstable();
    let percentile =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Ok(Measurement {
        calls_per_s: all.len() as f64 / window.as_secs_f64(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    })
}

/// The middle value (the upper middle of an even count); `None` when empty.
pub fn median<T: PartialOrd + Copy>(values: &[T]) -> Option<T> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    sorted.get(sorted.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4, 1, 3, 2]), Some(3));
        assert_eq!(median::<u32>(&[]), None);
    }
}
