//! How the gateway treats its upstreams, on live traffic: round robin over a pool that contains
//! a dead member, an upstream coming back, a silent upstream past the route's read timeout, and a
//! backend killed in the middle of a streamed response (the client sees an error, other routes go
//! on, and the route recovers when the backend returns).

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::*;
use devstack::idp::defaults;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinSet,
};

fn route(name: &str, upstreams: &[&str], extra: &str) -> String {
    let upstreams: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"
        [[routes]]
        name = "{name}"
        prefix = "/{name}"
        upstreams = [{upstreams}]
        allowed_tenants = ["{contoso}"]
        connect_timeout_ms = 500
        health_check_interval_ms = 100
        {extra}
        "#,
        upstreams = upstreams.join(", "),
        contoso = defaults::CONTOSO,
    )
}

/// Which upstream answered each of `n` calls to `path`, all of which must be 200.
async fn answered_by(
    gateway: &Gateway,
    path: &str,
    token: &str,
    n: usize,
) -> HashMap<String, usize> {
    let http = reqwest::Client::new();
    let mut seen = HashMap::new();
    for i in 0..n {
        let response = get_as(&http, gateway.url(path), token).await;
        assert_eq!(response.status(), 200, "call {i} to {path}");
        let body: Value = response.json().await.expect("JSON");
        let upstream = body["upstream"].as_str().expect("upstream").to_owned();
        *seen.entry(upstream).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_dies_between_health_checks_costs_no_request() {
    let idp = idp().await;
    let (a, _) = echo_upstream().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (b, _, kill_b) = stoppable_echo_upstream_on(listener);
    // No active check will run during the test: only passive failover can save the calls.
    let pool = route("pool", &[&a, &b], "").replace(
        "health_check_interval_ms = 100",
        "health_check_interval_ms = 300000",
    );
    let gateway = Gateway::start_with(&idp, &pool).await;
    let contoso = gateway.token(&idp, defaults::CONTOSO, "/pool");

    let seen = answered_by(&gateway, "/pool/mcp", &contoso, 4).await;
    assert_eq!(
        (seen.get(&a), seen.get(&b)),
        (Some(&2), Some(&2)),
        "{seen:?}"
    );
    drop(kill_b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = answered_by(&gateway, "/pool/mcp", &contoso, 10).await;
    assert_eq!(seen.get(&a), Some(&10), "{seen:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_skips_a_dead_member_and_takes_back_one_that_returns() {
    let idp = idp().await;
    let (a, _) = echo_upstream().await;
    let late = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let b = late.local_addr().expect("address").to_string();
    drop(late);
    let gateway = Gateway::start_with(&idp, &route("pool", &[&a, &b], "")).await;
    let contoso = gateway.token(&idp, defaults::CONTOSO, "/pool");

    // At once, before any health check has marked b down, and after: every call answered by a.
    let seen = answered_by(&gateway, "/pool/mcp", &contoso, 10).await;
    assert_eq!(seen.get(&a), Some(&10), "{seen:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let seen = answered_by(&gateway, "/pool/mcp", &contoso, 10).await;
    assert_eq!(seen.get(&a), Some(&10), "{seen:?}");

    // b starts listening on its address: the health checks put it back in rotation.
    let (b_again, _) = echo_upstream_on(TcpListener::bind(&b).await.expect("rebind b"));
    assert_eq!(b_again, b);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = answered_by(&gateway, "/pool/mcp", &contoso, 10).await;
        if seen.get(&b).is_some_and(|n| *n >= 4) && seen.get(&a).is_some_and(|n| *n >= 4) {
            break;
        }
        assert!(Instant::now() < deadline, "b never rejoined: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_cut_only_after_the_routes_read_timeout() {
    let idp = idp().await;
    let (upstream, _) = echo_upstream().await;
    // `?slow` is silent for 1.5 s.
    let routes = [
        route("short", &[&upstream], "read_timeout_ms = 300"),
        route("long", &[&upstream], "read_timeout_ms = 5000"),
    ]
    .concat();
    let gateway = Gateway::start_with(&idp, &routes).await;
    let http = reqwest::Client::new();
    let contoso = mint_for(
        &idp,
        defaults::CONTOSO,
        serde_json::json!([gateway.resource("/short"), gateway.resource("/long")]),
    );

    let started = Instant::now();
    let response = get_as(&http, gateway.url("/short/mcp?slow"), &contoso).await;
    let waited = started.elapsed();
    refusal(response, 504, "upstream_timeout").await;
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1400),
        "cut after {waited:?}"
    );

    let response = get_as(&http, gateway.url("/long/mcp?slow"), &contoso).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "finally");
    gateway.stop().await;
}

/// A backend written at the socket level so that it can die like a process does: `/healthz`
/// answers 200, and any other path gets a chunked `text/event-stream` that sends an event every
/// 50 ms until the backend is killed. Killing it (dropping the returned set) closes the listener
/// and every connection at once, mid-response, with no terminating chunk.
async fn killable_streaming_backend(listener: TcpListener) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                if request.starts_with(b"GET /healthz ") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                        .await;
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for n in 0.. {
                    let event = format!("data: event {n}\n\n");
                    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_stream_fails_that_stream_only_and_the_route_recovers() {
    let idp = idp().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let backend = listener.local_addr().expect("address").to_string();
    let killable = killable_streaming_backend(listener).await;
    let (other, _) = echo_upstream().await;
    let routes = [
        route("streaming", &[&backend], ""),
        route("other", &[&other], ""),
    ]
    .concat();
    let gateway = Gateway::start_with(&idp, &routes).await;
    let http = reqwest::Client::new();
    let contoso = mint_for(
        &idp,
        defaults::CONTOSO,
        serde_json::json!([gateway.resource("/streaming"), gateway.resource("/other")]),
    );

    let mut stream = get_as(&http, gateway.url("/streaming/mcp"), &contoso).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut received = String::new();
    while !received.contains("event 2") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .expect("events flow")
            .expect("a chunk")
            .expect("not the end yet");
        received.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
    }

    // The backend dies with the response under way.
    drop(killable);
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    })
    .await
    .expect("the client learns of it, no hang");
    assert!(
        end.is_err(),
        "a cut stream must not look like a complete response"
    );

    // Other routes are served throughout; the dead route answers JSON at once.
    let seen = answered_by(&gateway, "/other/mcp", &contoso, 3).await;
    assert_eq!(seen.get(&other), Some(&3));
    let response = get_as(&http, gateway.url("/streaming/mcp"), &contoso).await;
    let status = response.status().as_u16();
    assert!(status == 502 || status == 503, "{status}");
    refusal(response, status, "upstream_unavailable").await;

    // The backend comes back on its address: the route serves again.
    let (back, _) = echo_upstream_on(TcpListener::bind(&backend).await.expect("rebind"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = get_as(&http, gateway.url("/streaming/mcp"), &contoso).await;
        if response.status() == 200 {
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["upstream"], back.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "the route did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.stop().await;
}
