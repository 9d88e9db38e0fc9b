//! The serving bounds of the agent service, set through its flags: oversized bodies (by length
//! before authentication, chunked through the MCP transport of an authenticated caller),
//! oversized heads, deep JSON, half-sent and idle connections, and the connection cap.
//! The request timeout itself is proven in `shared/tests/serving.rs`; here, that its default
//! outlasts the experts' time budget (see also `config.rs`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use shared::http::probe::{self, closed_within, read_answer, send};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n";

/// A tools service, and an agent service (offline planner) with short bounds plus `extra`.
async fn agent(extra: &[&str]) -> (Stack, AgentService, tempfile::TempDir) {
    let stack = Stack::start(10).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let bounds = [
        ("--header-read-timeout-secs", "0.3"),
        ("--idle-timeout-secs", "0.8"),
        ("--max-request-body-bytes", "65536"),
        ("--max-json-depth", "16"),
    ];
    let extra: Vec<(&str, &str)> = extra.chunks(2).map(|pair| (pair[0], pair[1])).collect();
    let flags = merge_flags(&bounds, &extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = AgentService::start(&stack, &dir.path().join("agent.db"), &flags).await;
    (stack, agent, dir)
}

fn addr(agent: &AgentService) -> std::net::SocketAddr {
    agent
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("the agent's address")
}

/// A POST to `/mcp` with a bearer token.
fn authorized_post(token: &str, body: &str) -> String {
    probe::post("/mcp", "application/json", body).replacen(
        "\r\n",
        &format!("\r\nauthorization: Bearer {token}\r\n"),
        1,
    )
}

#[tokio::test]
async fn oversized_and_deep_bodies_are_refused_with_their_own_answers() {
    let (stack, agent, _dir) = agent(&[]).await;
    let addr = addr(&agent);
    let token = stack.agent_token(&["query", "billing"], "alice");

    // Declared too large: 413 before authentication or a byte of the body.
    let head = "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                content-length: 3500000\r\n\r\n";
    let answer = send(addr, head.as_bytes()).await.expect("answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("65536 bytes"), "{answer:?}");

    // Chunked, from an authenticated caller: the MCP transport meets the limit midway.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
    for _ in 0..4 {
        stream.write_all(chunk.as_bytes()).await.expect("chunk");
    }
    stream
        .write_all(b"8\r\nxxxxxxxx\r\n")
        .await
        .expect("the chunk past the limit");
    let answer = read_answer(&mut stream).await.expect("answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(
        answer.json()["error"],
        "the request body is larger than the limit of 65536 bytes"
    );

    // Nested past MAX_JSON_DEPTH: 400 with a JSON-RPC error.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"ask_billing_expert","arguments":{{"question":{}}}}}}}"#,
        probe::nested_json(20)
    );
    let answer = send(addr, authorized_post(&token, &deep).as_bytes())
        .await
        .expect("answer");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json()["error"]["code"], -32600, "{answer:?}");

    // Heads: too many headers, too large a header.
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\n{many}\r\n");
    let answer = send(addr, request.as_bytes()).await.expect("answer");
    assert_eq!(answer.status, 431, "{answer:?}");
    let large = format!(
        "GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "z".repeat(64 * 1024)
    );
    let answer = send(addr, large.as_bytes()).await.expect("answer");
    assert_eq!(answer.status, 431, "{answer:?}");

    // Still answering, questions included.
    assert_eq!(send(addr, HEALTH).await.expect("answer").status, 200);
    let answer = ask(
        &agent.url,
        &token,
        "ask_billing_expert",
        serde_json::json!({"question": "What is the balance of customer 251?"}),
    )
    .await;
    assert!(answer.is_object(), "{answer}");
}

#[tokio::test]
async fn half_sent_and_idle_connections_are_closed_in_time() {
    let (_stack, agent, _dir) = agent(&[]).await;
    let addr = addr(&agent);
    let mut half = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    half.write_all(b"POST /mcp HTTP/1.1\r\nhost: loc")
        .await
        .expect("write");
    let answer = read_answer(&mut half).await.expect("a 408");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(closed_within(&mut half, Duration::from_secs(1)).await);

    let mut kept = TcpStream::connect(addr).await.expect("connect");
    kept.write_all(HEALTH).await.expect("write");
    assert_eq!(read_answer(&mut kept).await.expect("answer").status, 200);
    kept.write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("write");
    assert_eq!(read_answer(&mut kept).await.expect("a 408").status, 408);
    assert!(closed_within(&mut kept, Duration::from_secs(1)).await);

    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(HEALTH).await.expect("write");
    assert_eq!(read_answer(&mut idle).await.expect("answer").status, 200);
    let started = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(700)..Duration::from_millis(2000)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test]
async fn connections_past_the_cap_are_not_served_until_one_closes() {
    let (_stack, agent, _dir) = agent(&[
        "--max-connections",
        "2",
        "--idle-timeout-secs",
        "30",
        "--header-read-timeout-secs",
        "30",
    ])
    .await;
    let addr = addr(&agent);
    // The harness's readiness poll may still hold a connection for a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(HEALTH).await.expect("write");
        let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut stream))
            .await
            .expect("served within the cap")
            .expect("answer");
        assert_eq!(answer.status, 200);
        open.push(stream);
    }
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    extra.write_all(HEALTH).await.expect("write");
    let waiting = tokio::time::timeout(Duration::from_millis(400), read_answer(&mut extra)).await;
    assert!(waiting.is_err(), "served past the cap: {waiting:?}");
    drop(open.pop());
    let answer = tokio::time::timeout(Duration::from_secs(2), read_answer(&mut extra))
        .await
        .expect("served once one closed")
        .expect("answer");
    assert_eq!(answer.status, 200);
}

#[test]
fn the_request_timeout_outlasts_the_time_budget() {
    let parse = |extra: &[&str]| {
        agent_service::Config::try_parse_from_args(
            ["--disable-auth", "true", "--token-exchange", "passthrough"]
                .iter()
                .chain(extra)
                .map(|s| s.to_string()),
        )
        .expect("flags parse")
        .into_valid()
    };
    let valid = parse(&[]).expect("valid");
    assert_eq!(valid.bounds.request_timeout, Duration::from_secs(180));
    let longer = parse(&["--time-budget-secs", "300"]).expect("valid");
    assert_eq!(longer.bounds.request_timeout, Duration::from_secs(360));
    let cut = parse(&["--request-timeout-secs", "100"]).expect_err("refused");
    assert_eq!(cut.variable, "REQUEST_TIMEOUT_SECS");
}
