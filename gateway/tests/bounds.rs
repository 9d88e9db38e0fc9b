//! The `[server]` bounds and the chunked body limit against hostile clients, with raw sockets:
//! half-sent and trickled heads are cut at the header-read timeout (on a fresh connection and on
//! a kept-alive one), idle keep-alive connections are closed, oversized heads get 431, a chunked
//! body over the limit gets 413 without a byte of it reaching the upstream, a body that falls
//! silent or trickles is cut at the body-read timeout, and connections past
//! the cap get 503; a normal client is served all along. Timeouts are set short here (a few
//! hundred milliseconds) so the tests stay fast; the defaults are seconds.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::Request, response::IntoResponse};
use common::*;
use devstack::idp::{RunningIdp, defaults};
use futures::StreamExt;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};

const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

/// The `[server]` table `server` (key lines) and one route `/contoso-mcp` to `upstream`.
fn config(server: &str, upstream: &str, route_extra: &str) -> String {
    format!(
        r#"
        [server]
        {server}
        [[routes]]
        name = "contoso"
        prefix = "/contoso-mcp"
        upstreams = ["{upstream}"]
        allowed_tenants = ["{contoso}"]
        connect_timeout_ms = 1000
        {route_extra}
        "#,
        contoso = defaults::CONTOSO,
    )
}

async fn start(idp: &RunningIdp, server: &str, upstream: &str) -> Gateway {
    Gateway::start_with(idp, &config(server, upstream, "")).await
}

async fn connect(gateway: &Gateway) -> TcpStream {
    let addr = gateway.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// One whole request of a normal client, on a connection of its own: 200 from the upstream.
async fn normal_client_is_served(gateway: &Gateway, token: &str) {
    let response = reqwest::Client::new()
        .get(gateway.url("/contoso-mcp/mcp"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the normal client's request");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_and_trickled_heads_are_cut_at_the_header_timeout() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = start(&idp, "header_read_timeout_ms = 300", &upstream).await;
    let token = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");

    // Half a head, then silence: 408 and closed at the timeout.
    let mut half = connect(&gateway).await;
    let sent = Instant::now();
    half.write_all(b"GET /contoso-mcp/mcp HTTP/1.1\r\nhost: gateway\r\n")
        .await
        .expect("write");
    // Meanwhile a normal client is served.
    normal_client_is_served(&gateway, &token).await;
    read_response(&mut half)
        .await
        .assert_refusal(408, "request_timeout");
    closed_within(&mut half, Duration::from_secs(2)).await;
    let took = sent.elapsed();
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(50) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // A byte every 50 ms: every read is prompt, but the head is not complete in time. (Pingora
    // alone times each read, 60 s, and would wait for this one for ever.)
    let mut trickle = connect(&gateway).await;
    let head = raw_head("GET", "/contoso-mcp/mcp", &token, "");
    let sent = Instant::now();
    for byte in head.as_bytes() {
        if trickle.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if sent.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    read_response(&mut trickle)
        .await
        .assert_refusal(408, "request_timeout");
    closed_within(&mut trickle, Duration::from_secs(2)).await;

    // A connection that sends nothing at all: closed at the timeout, without an answer.
    let mut silent = connect(&gateway).await;
    let took = closed_within(&mut silent, Duration::from_secs(2)).await;
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(50),
        "{took:?}"
    );

    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "only the normal request was forwarded"
    );
    normal_client_is_served(&gateway, &token).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let idp = idp().await;
    let (upstream, _hits) = echo_upstream().await;
    let gateway = start(
        &idp,
        "header_read_timeout_ms = 5000\nidle_timeout_ms = 400",
        &upstream,
    )
    .await;
    let token = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");

    let mut kept = connect(&gateway).await;
    for _ in 0..2 {
        // Within the idle timeout, the connection serves request after request.
        let head = raw_head("GET", "/contoso-mcp/mcp", &token, "");
        kept.write_all(head.as_bytes()).await.expect("write");
        let response = read_response(&mut kept).await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.headers["connection"], "keep-alive", "{response:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let took = closed_within(&mut kept, Duration::from_secs(3)).await;
    // 400 ms after the last response, less the 150 ms already waited.
    assert!(took >= Duration::from_millis(150), "closed after {took:?}");
    normal_client_is_served(&gateway, &token).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_second_request_on_a_kept_alive_connection_is_cut() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    // The idle timeout is long: what closes the connection must be the header timeout.
    let gateway = start(
        &idp,
        "header_read_timeout_ms = 300\nidle_timeout_ms = 20000",
        &upstream,
    )
    .await;
    let token = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");

    let mut kept = connect(&gateway).await;
    let head = raw_head("GET", "/contoso-mcp/mcp", &token, "");
    kept.write_all(head.as_bytes()).await.expect("write");
    assert_eq!(read_response(&mut kept).await.status, 200);
    // Idle for longer than the header timeout is fine between requests...
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...but the next head, once begun, must be complete within it.
    let sent = Instant::now();
    kept.write_all(&head.as_bytes()[..head.len() / 2])
        .await
        .expect("write");
    normal_client_is_served(&gateway, &token).await;
    read_response(&mut kept)
        .await
        .assert_refusal(408, "request_timeout");
    closed_within(&mut kept, Duration::from_secs(2)).await;
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_headers_get_431() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = start(&idp, "max_headers = 20\nmax_header_bytes = 4096", &upstream).await;
    let token = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");

    // 30 fields (the head is small): 431.
    let extra: String = (0..30).map(|i| format!("x-field-{i}: {i}\r\n")).collect();
    let mut many = connect(&gateway).await;
    many.write_all(raw_head("GET", "/contoso-mcp/mcp", &token, &extra).as_bytes())
        .await
        .expect("write");
    read_response(&mut many)
        .await
        .assert_refusal(431, "headers_too_large");
    closed_within(&mut many, Duration::from_secs(2)).await;

    // 17 fields in all is within the count.
    let extra: String = (0..15).map(|i| format!("x-field-{i}: {i}\r\n")).collect();
    let mut fine = connect(&gateway).await;
    fine.write_all(raw_head("GET", "/contoso-mcp/mcp", &token, &extra).as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut fine).await.status, 200);

    // One 8 KiB field, complete: 431.
    let big = format!("x-big: {}\r\n", "a".repeat(8 * 1024));
    let mut large = connect(&gateway).await;
    large
        .write_all(raw_head("GET", "/contoso-mcp/mcp", &token, &big).as_bytes())
        .await
        .expect("write");
    read_response(&mut large)
        .await
        .assert_refusal(431, "headers_too_large");

    // A head that never ends, sent as fast as the socket takes it: 431 once past the size,
    // not a wait for the timeout.
    let mut endless = connect(&gateway).await;
    let started = Instant::now();
    let _ = endless
        .write_all(
            format!(
                "GET /contoso-mcp/mcp HTTP/1.1\r\nx-big: {}",
                "a".repeat(64 * 1024)
            )
            .as_bytes(),
        )
        .await;
    read_response(&mut endless)
        .await
        .assert_refusal(431, "headers_too_large");
    assert!(started.elapsed() < Duration::from_secs(2));

    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "only the request within bounds was forwarded"
    );
    normal_client_is_served(&gateway, &token).await;
    gateway.stop().await;
}

/// An upstream that counts the requests the gateway forwards and the body bytes that reach it,
/// as they arrive (not only whole bodies), and answers with the number of body bytes.
async fn body_counting_upstream() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let (requests, body_bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, b) = (requests.clone(), body_bytes.clone());
    let app = Router::new().fallback(move |request: Request| {
        let (requests, body_bytes) = (r.clone(), b.clone());
        async move {
            if !request.headers().contains_key("x-request-id") {
                return "ok".into_response();
            }
            requests.fetch_add(1, Ordering::SeqCst);
            let mut body = request.into_body().into_data_stream();
            let mut received = 0;
            while let Some(Ok(chunk)) = body.next().await {
                received += chunk.len();
                body_bytes.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            received.to_string().into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, requests, body_bytes)
}

/// A chunked POST head and `chunks` chunks of `size` bytes each, then the last chunk.
fn chunked_request(token: &str, chunks: usize, size: usize) -> Vec<u8> {
    let mut request = raw_head(
        "POST",
        "/contoso-mcp/mcp",
        token,
        "content-type: application/json\r\ntransfer-encoding: chunked\r\n",
    )
    .into_bytes();
    for _ in 0..chunks {
        request.extend_from_slice(format!("{size:x}\r\n{}\r\n", "x".repeat(size)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_gets_413_and_none_of_it_reaches_the_upstream() {
    let idp = idp().await;
    let (upstream, _requests, body_bytes) = body_counting_upstream().await;
    let gateway = Gateway::start_with(&idp, &config("", &upstream, "max_body_bytes = 1024")).await;
    let token = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");

    // 8 chunks of 512 bytes against a limit of 1024.
    let mut over = connect(&gateway).await;
    over.write_all(&chunked_request(&token, 8, 512))
        .await
        .expect("write");
    let response = read_response(&mut over).await;
    assert_eq!(response.status, 413, "{response:?}");
    let body: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
    assert_eq!(body["error"], "body_too_large");
    assert_eq!(
        body["request_id"],
        response.headers["x-request-id"].as_str()
    );
    closed_within(&mut over, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        body_bytes.load(Ordering::SeqCst),
        0,
        "no body byte was forwarded"
    );

    // A chunked body within the limit goes through whole.
    let mut within = connect(&gateway).await;
    within
        .write_all(&chunked_request(&token, 3, 300))
        .await
        .expect("write");
    let response = read_response(&mut within).await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "900"),
        "{response:?}"
    );
    assert_eq!(body_bytes.load(Ordering::SeqCst), 900);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_falls_silent_or_trickles_is_cut_at_the_body_timeout() {
    const BODY_TIMEOUT: Duration = Duration::from_millis(800);
    let idp = idp().await;
    let (upstream, _requests, body_bytes) = body_counting_upstream().await;
    let gateway = start(&idp, "body_read_timeout_ms = 800", &upstream).await;
    let token = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");
    let declared = |length: usize| {
        raw_head(
            "POST",
            "/contoso-mcp/mcp",
            &token,
            &format!("content-type: application/json\r\ncontent-length: {length}\r\n"),
        )
    };

    // Ten bytes of a declared hundred, then silence: 408 at the timeout, closed.
    let mut silent = connect(&gateway).await;
    let sent = Instant::now();
    silent
        .write_all(format!("{}{}", declared(100), "x".repeat(10)).as_bytes())
        .await
        .expect("write");
    read_response(&mut silent)
        .await
        .assert_refusal(408, "request_timeout");
    let took = sent.elapsed();
    assert!(
        took >= BODY_TIMEOUT - Duration::from_millis(50) && took < Duration::from_secs(3),
        "{took:?}"
    );
    closed_within(&mut silent, Duration::from_secs(2)).await;

    // A byte every 100 ms: every read is prompt, the body is not complete in time. (Pingora
    // alone times each read, 60 s, and would take this one for ever.)
    let mut trickle = connect(&gateway).await;
    trickle
        .write_all(declared(100).as_bytes())
        .await
        .expect("write");
    let sent = Instant::now();
    while sent.elapsed() < Duration::from_secs(3) {
        if trickle.write_all(b"x").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if sent.elapsed() > BODY_TIMEOUT + Duration::from_millis(300) {
            break;
        }
    }
    read_response(&mut trickle)
        .await
        .assert_refusal(408, "request_timeout");
    closed_within(&mut trickle, Duration::from_secs(2)).await;

    // A chunked body that stops halfway: the same, and none of it reached the upstream (a
    // declared body is streamed as it comes, a chunked one held back until it ends).
    let forwarded = body_bytes.load(Ordering::SeqCst);
    let mut chunked = connect(&gateway).await;
    let whole = chunked_request(&token, 2, 50);
    chunked
        .write_all(&whole[..whole.len() - 60])
        .await
        .expect("write");
    read_response(&mut chunked)
        .await
        .assert_refusal(408, "request_timeout");
    assert_eq!(body_bytes.load(Ordering::SeqCst), forwarded);

    // A whole body sent promptly is served, on a connection that keeps serving.
    let mut prompt = connect(&gateway).await;
    for _ in 0..2 {
        prompt
            .write_all(format!("{}{}", declared(100), "x".repeat(100)).as_bytes())
            .await
            .expect("write");
        let response = read_response(&mut prompt).await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, "100"),
            "{response:?}"
        );
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_503_until_one_closes() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = start(
        &idp,
        "max_connections = 2\nheader_read_timeout_ms = 5000\nidle_timeout_ms = 20000",
        &upstream,
    )
    .await;
    let token = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");
    let head = raw_head("GET", "/contoso-mcp/mcp", &token, "");

    // Two clients hold both slots (one kept alive after a request; the start-up probe's
    // connection may still be closing, so retry briefly).
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.len() < 2 {
        let mut stream = connect(&gateway).await;
        stream.write_all(head.as_bytes()).await.expect("write");
        let response = read_response(&mut stream).await;
        if response.status == 200 {
            held.push(stream);
        } else {
            assert!(Instant::now() < deadline, "{response:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let forwarded = hits.load(Ordering::SeqCst);

    // A third: 503 with Retry-After, closed, nothing forwarded.
    for _ in 0..3 {
        let mut third = connect(&gateway).await;
        third.write_all(head.as_bytes()).await.expect("write");
        let response = read_response(&mut third).await;
        response.assert_refusal(503, "too_many_connections");
        assert_eq!(response.headers["retry-after"], "1");
        closed_within(&mut third, Duration::from_secs(2)).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), forwarded);

    // The kept-alive ones are still served.
    for stream in &mut held {
        stream.write_all(head.as_bytes()).await.expect("write");
        assert_eq!(read_response(stream).await.status, 200);
    }

    // One closes: its slot serves a normal client.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let response = reqwest::Client::new()
            .get(gateway.url("/contoso-mcp/mcp"))
            .bearer_auth(&token)
            .header("connection", "close")
            .send()
            .await
            .expect("request");
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    gateway.stop().await;
}
