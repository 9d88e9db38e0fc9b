//! `agent-bench`: what an expert agent adds to each tool call it makes, model time excluded.
//!
//! Starts a development identity provider and an instant OpenAI-compatible model (both in this
//! process), and the release `tools-service` and `agent-service` as child processes, the agent
//! using that model. The model asks for `get_customer_detail` `k` times, one call per step, then
//! answers. A turn with `k` calls costs `fixed + k * (inner call + agent overhead + model round
//! trip) + model round trip`, so the slope between `k = 1` and `k = K` is the cost per inner call;
//! subtracting a direct `tools/call` and a model round trip (both measured here too) leaves the
//! agent's own overhead per inner call. The inner calls carry delegated tokens, as in
//! production: the agent exchanges the caller's token at the identity provider (RFC 8693) once
//! and reuses it; what one exchange costs, and a cached one, is measured too. All figures are
//! medians of sequential requests.
//!
//! Run: `cargo build --release -p tools-service -p agent-service -p devstack && target/release/agent-bench`
#![allow(clippy::print_stdout)] // printing the report is this program's job

use std::time::{Duration, Instant};

use agent_service::upstream::{
    BearerToken, TokenSource,
    exchange::{ClientCredential, ExchangeSettings, Grant, TokenExchange},
};
use anyhow::Context;
use axum::{Json, Router, routing::post};
use clap::Parser;
use devstack::{
    idp::{IdpConfig, TokenSpec, defaults},
    load,
};
use serde_json::{Value, json};
use shared::config::Secret;
use tokio::net::TcpListener;

/// The agent service's resource, which the benchmark's caller has a token for.
const AGENT_AUDIENCE: &str = "api://contoso-agent";

#[derive(Debug, Parser)]
#[command(
    name = "agent-bench",
    about = "Measure the agent service's overhead per inner tool call"
)]
struct Args {
    /// Expert questions per measurement.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Inner calls per turn in the long case (the short case makes one).
    #[arg(long, default_value_t = 5)]
    calls: usize,
}

/// The instant model: calls the tool until the conversation holds `k` tool results, then
/// answers. `k` is read from the question ("calls=K").
async fn model(Json(request): Json<Value>) -> Json<Value> {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let results = messages.iter().filter(|m| m["role"] == "tool").count();
    let wanted = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .find_map(|c| c.split("calls=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|k| k.parse::<usize>().ok())
        .unwrap_or(1);
    let message = if results < wanted {
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": format!("call_{results}"),
            "type": "function",
            "function": {"name": "get_customer_detail", "arguments": "{\"customer_id\": 251}"}
        }]})
    } else {
        json!({"role": "assistant", "content": "Done."})
    };
    Json(json!({
        "id": "bench", "object": "chat.completion", "created": 1_790_000_000u32, "model": "instant",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]
    }))
}

async fn median_of<F, Fut>(n: usize, mut once: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // A few unmeasured rounds first: connections, caches, the allocator.
    for _ in 0..n.min(10) {
        once().await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        once().await?;
        times.push(started.elapsed());
    }
    load::median(&times).context("no measurement")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tools_bin = load::sibling_binary("tools-service")?;
    let agent_bin = load::sibling_binary("agent-service")?;
    // People get tokens for the agent service (the first audience); the agent's client
    // exchanges them for the tools service.
    let people = vec![AGENT_AUDIENCE.to_owned()];
    let tools = vec![defaults::AUDIENCE.to_owned()];
    let mut clients = defaults::clients_for(&people);
    clients.push(defaults::agent_client(
        defaults::AGENT_CLIENT_ID,
        &people,
        &tools,
    ));
    let config = IdpConfig {
        audiences: vec![AGENT_AUDIENCE.to_owned(), defaults::AUDIENCE.to_owned()],
        clients,
        ..IdpConfig::default()
    };
    let (dir, idp, token) = load::bench_setup("agent-bench", config).await?;
    let tools_token = idp.idp.mint(&TokenSpec {
        audience: Some(defaults::AUDIENCE.to_owned()),
        lifetime: Duration::from_secs(3600),
        ..TokenSpec::new(defaults::CONTOSO, ["query"], "agent-bench")
    });
    let secret = format!("{}-secret", defaults::AGENT_CLIENT_ID);
    let model_listener = TcpListener::bind("127.0.0.1:0").await?;
    let model_url = format!("http://{}/v1", model_listener.local_addr()?);
    let app = Router::new().route("/v1/chat/completions", post(model));
    tokio::spawn(async move { axum::serve(model_listener, app).await });

    let auth = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("BIND_ADDR", "127.0.0.1:0".to_owned()),
            ("AUTH_ISSUER", idp.url().to_owned()),
            ("DISABLE_AUTH", "false".to_owned()),
            ("USE_PASSTHROUGH_AUTH", "false".to_owned()),
            ("RUST_LOG", "warn,shared::http=info".to_owned()),
        ];
        env.extend(extra);
        env
    };
    let tools = load::spawn(
        &tools_bin,
        &[],
        auth(vec![
            ("DB_PATH", dir.join("tools.db").display().to_string()),
            ("SEED_CUSTOMER_COUNT", "250".to_owned()),
            ("MCP_API_AUDIENCE", defaults::AUDIENCE.to_owned()),
            ("TRUSTED_ACTORS", defaults::AGENT_CLIENT_ID.to_owned()),
        ]),
    )
    .await?;
    let tools_url = format!("http://{}/mcp", tools.addr);
    load::until_listing(&tools_url, Some(&tools_token), Duration::from_secs(60)).await?;
    let agent = load::spawn(
        &agent_bin,
        &[],
        auth(vec![
            ("DB_PATH", dir.join("agent.db").display().to_string()),
            ("MCP_SERVER_URI", tools_url.clone()),
            ("OPENAI_BASE_URL", model_url.clone()),
            ("OPENAI_MODEL", "instant".to_owned()),
            ("MCP_API_AUDIENCE", AGENT_AUDIENCE.to_owned()),
            ("AGENT_CLIENT_ID", defaults::AGENT_CLIENT_ID.to_owned()),
            ("AGENT_CLIENT_SECRET", secret.clone()),
            ("MCP_SERVER_AUDIENCE", defaults::AUDIENCE.to_owned()),
        ]),
    )
    .await?;
    let agent_url = format!("http://{}/mcp", agent.addr);
    load::until_listing(&agent_url, Some(&token), Duration::from_secs(30)).await?;

    let http = reqwest::Client::new();
    let direct = median_of(args.requests, || async {
        let params = json!({"name": "get_customer_detail", "arguments": {"customer_id": 251}});
        load::rpc(&http, &tools_url, Some(&tools_token), "tools/call", params).await?;
        Ok(())
    })
    .await?;
    let round_trip = median_of(args.requests, || async {
        let body = json!({"model": "instant", "messages": [{"role": "user", "content": "hi"}]});
        http.post(format!("{model_url}/chat/completions"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        Ok(())
    })
    .await?;
    let turn = |k: usize| {
        let (http, agent_url, token) = (&http, &agent_url, &token);
        median_of(args.requests, move || async move {
            let params = json!({
                "name": "ask_billing_expert",
                "arguments": {"question": format!("Look up customer 251, calls={k}")}
            });
            let answer = load::rpc(http, agent_url, Some(token), "tools/call", params).await?;
            anyhow::ensure!(
                answer["result"]["structuredContent"]["status"] == "done",
                "the expert did not finish: {answer}"
            );
            Ok(())
        })
    };
    let one = turn(1).await?;
    let many = turn(args.calls).await?;
    // The exchange alone, as the agent makes it: first sight of a caller's token (a round trip
    // to the identity provider, which verifies and signs), and the same token again (cached).
    let exchange = TokenExchange::new(
        ExchangeSettings {
            grant: Grant::Rfc8693,
            token_endpoint: format!("{}/token", idp.url()),
            client_id: defaults::AGENT_CLIENT_ID.to_owned(),
            credential: ClientCredential::Basic(Secret::new(secret.clone())),
            audience: defaults::AUDIENCE.to_owned(),
        },
        http.clone(),
    );
    let caller = BearerToken::new(token.clone());
    let first_exchange = median_of(args.requests, || async {
        exchange.exchange(&caller).await?;
        Ok(())
    })
    .await?;
    let cached_exchange = median_of(args.requests, || async {
        exchange.token_for(&caller).await?;
        Ok(())
    })
    .await?;
    let per_call = (many.saturating_sub(one)) / u32::try_from(args.calls - 1)?;
    let overhead = per_call.saturating_sub(direct).saturating_sub(round_trip);
    let fixed = one.saturating_sub(per_call).saturating_sub(round_trip);

    println!(
        "agent benchmark: ask_billing_expert with an instant model calling get_customer_detail, \
         medians of {} sequential requests, {} logical CPUs",
        args.requests,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| measure | ms |");
    println!("|---|---:|");
    println!(
        "| direct tools/call get_customer_detail | {:.3} |",
        ms(direct)
    );
    println!(
        "| model round trip (instant model) | {:.3} |",
        ms(round_trip)
    );
    println!("| expert turn with 1 inner call | {:.3} |", ms(one));
    println!(
        "| expert turn with {} inner calls | {:.3} |",
        args.calls,
        ms(many)
    );
    println!("| cost per inner call (slope) | {:.3} |", ms(per_call));
    println!(
        "| **agent overhead per inner call** (slope - direct call - model round trip) | {:.3} |",
        ms(overhead)
    );
    println!(
        "| agent fixed cost per turn (conversation, connection, memory write) | {:.3} |",
        ms(fixed)
    );
    println!(
        "| token exchange, first sight of a caller's token (RFC 8693 round trip) | {:.3} |",
        ms(first_exchange)
    );
    println!("| token exchange, cached | {:.4} |", ms(cached_exchange));
    drop(agent);
    drop(tools);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
