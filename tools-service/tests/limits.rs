//! The serving bounds of the real `tools-service` binary, set through its environment: oversized
//! bodies (by length and chunked) through the MCP transport, oversized heads, deep JSON, half-sent
//! and idle connections, the connection cap, and the request timeout against a slow diagnosis
//! whose streamed variant is not cut.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use shared::http::probe::{self, closed_within, read_answer, send};
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// Short bounds, so each test crosses them quickly.
const BOUNDS: &[(&str, &str)] = &[
    ("HEADER_READ_TIMEOUT_SECS", "0.3"),
    ("IDLE_TIMEOUT_SECS", "0.8"),
    ("REQUEST_TIMEOUT_SECS", "0.6"),
    ("MAX_JSON_DEPTH", "16"),
    ("TROUBLESHOOT_STEP_MS", "150"),
];

async fn server(extra: &[(&str, &str)]) -> Server {
    let env: Vec<(&str, &str)> = BOUNDS.iter().chain(extra).copied().collect();
    Server::start_with(&env).await
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n";

fn initialize(capabilities: serde_json::Value) -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"}
        }
    })
    .to_string()
}

async fn still_answers(server: &Server) {
    let answer = send(server.addr, HEALTH).await.expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn an_oversized_initialize_is_413_by_length_and_by_chunks() {
    // The default limit (1 MiB) against the 3.5 MB initialize of the issue.
    let server = server(&[]).await;
    let huge = initialize(json!({"experimental": {"blob": "x".repeat(3_500_000)}}));
    // The head only, as a client that waits for `100 Continue` sends it: refused up front.
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nexpect: 100-continue\r\n\
         content-length: {}\r\n\r\n",
        huge.len()
    );
    let answer = send(server.addr, head.as_bytes()).await.expect("answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(
        answer.json()["error"],
        "the request body is larger than the limit of 1048576 bytes"
    );

    // Chunked, no length: the MCP transport reads it and meets the limit midway; the caller gets
    // 413 JSON, not the transport's plain-text 500.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(
            b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
              accept: application/json, text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await
        .expect("head");
    // Exactly 1 MiB, then 16 bytes more: the server reads all that is sent, so its close is
    // clean and the answer cannot be lost to a reset.
    let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
    for _ in 0..16 {
        stream.write_all(chunk.as_bytes()).await.expect("chunk");
    }
    stream
        .write_all(b"10\r\nxxxxxxxxxxxxxxxx\r\n")
        .await
        .expect("the chunk past the limit");
    let answer = read_answer(&mut stream).await.expect("answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("1048576 bytes"), "{answer:?}");

    // A normal initialize is still served.
    let fine = initialize(json!({}));
    let answer = send(
        server.addr,
        probe::post("/mcp", "application/json", &fine).as_bytes(),
    )
    .await
    .expect("answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    still_answers(&server).await;
}

#[tokio::test]
async fn oversized_heads_are_431_and_deep_json_a_json_rpc_error() {
    let server = server(&[]).await;
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\n{many}\r\n");
    let answer = send(server.addr, request.as_bytes()).await.expect("answer");
    assert_eq!(answer.status, 431, "100 headers: {answer:?}");
    let large = format!(
        "GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "z".repeat(64 * 1024)
    );
    let answer = send(server.addr, large.as_bytes()).await.expect("answer");
    assert_eq!(answer.status, 431, "64 KiB header: {answer:?}");

    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"get_customer_detail","arguments":{{"customer_id":{}}}}}}}"#,
        probe::nested_json(40)
    );
    let answer = send(
        server.addr,
        probe::post("/mcp", "application/json", &deep).as_bytes(),
    )
    .await
    .expect("answer");
    assert_eq!(answer.status, 400, "{answer:?}");
    let error = answer.json();
    assert_eq!(error["jsonrpc"], "2.0", "{answer:?}");
    assert_eq!(error["error"]["code"], -32600, "{answer:?}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit of 16 levels")),
        "{answer:?}"
    );
    still_answers(&server).await;
}

#[tokio::test]
async fn half_sent_and_idle_connections_are_closed_in_time() {
    let server = server(&[]).await;
    // Half a head: 408 after the header-read timeout, then closed.
    let mut half = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    half.write_all(b"GET /healthz HTTP/1.1\r\nhos")
        .await
        .expect("write");
    let answer = read_answer(&mut half).await.expect("a 408");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(closed_within(&mut half, Duration::from_secs(1)).await);

    // A kept-alive connection: served, then its second request half-sent is timed out too.
    let mut kept = TcpStream::connect(server.addr).await.expect("connect");
    kept.write_all(HEALTH).await.expect("write");
    assert_eq!(read_answer(&mut kept).await.expect("answer").status, 200);
    kept.write_all(b"GET /healthz HT").await.expect("write");
    let answer = read_answer(&mut kept).await.expect("a 408");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(closed_within(&mut kept, Duration::from_secs(1)).await);

    // An idle kept-alive connection is closed after the idle timeout, not the header one.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
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
    let server = server(&[
        ("MAX_CONNECTIONS", "3"),
        ("IDLE_TIMEOUT_SECS", "30"),
        ("HEADER_READ_TIMEOUT_SECS", "30"),
    ])
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(HEALTH).await.expect("write");
        assert_eq!(read_answer(&mut stream).await.expect("answer").status, 200);
        open.push(stream);
    }
    let mut extra = TcpStream::connect(server.addr).await.expect("connect");
    extra.write_all(HEALTH).await.expect("write");
    let waiting = tokio::time::timeout(Duration::from_millis(400), read_answer(&mut extra)).await;
    assert!(waiting.is_err(), "served past the cap: {waiting:?}");
    drop(open.pop());
    let answer = tokio::time::timeout(Duration::from_secs(2), read_answer(&mut extra))
        .await
        .expect("served once one closed")
        .expect("answer");
    assert_eq!(answer.status, 200);
    assert!(
        server
            .logs()
            .contains("connection cap reached (MAX_CONNECTIONS)"),
        "warned once the cap was reached"
    );
}

#[tokio::test]
async fn a_slow_call_is_503_while_its_streamed_variant_runs_to_the_end() {
    let server = server(&[]).await;
    let call = |progress: Option<&str>| {
        let mut params = json!({"name": "trouble_shoot_device", "arguments": {"customer_id": 252}});
        if let Some(token) = progress {
            params["_meta"] = json!({"progressToken": token});
        }
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params}).to_string()
    };
    // Nine 150 ms steps answered as one JSON response: longer than the 0.6 s request timeout.
    let started = Instant::now();
    let slow = raw_mcp_post(&server, call(None))
        .send()
        .await
        .expect("answer");
    assert_eq!(slow.status(), 503);
    let body: serde_json::Value = slow.json().await.expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("took longer than")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_millis(1200));

    // With a progress token the answer is a stream from the first step on: not cut.
    let streamed = raw_mcp_post(&server, call(Some("p")))
        .send()
        .await
        .expect("answer");
    assert_eq!(streamed.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), streamed.text())
        .await
        .expect("the stream ends")
        .expect("body");
    assert!(text.contains("notifications/progress"), "{text}");
    assert!(text.contains(r#""id":3"#), "the result arrives: {text}");
    still_answers(&server).await;
}
