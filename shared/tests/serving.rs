//! The serving layer's bounds against real sockets: a server on `127.0.0.1:0` with short
//! timeouts, driven with raw `TcpStream`s for the slow, partial and oversized requests.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use shared::http::{
    Bounds,
    probe::{closed_within, nested_json, read_answer, send},
    serve_with, with_middleware,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

/// Bounds small enough for a test to cross each one quickly.
fn bounds() -> Bounds {
    Bounds {
        max_request_body_bytes: 4096,
        max_header_bytes: 4096,
        max_headers: 16,
        max_json_depth: 8,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(900),
        max_connections: 64,
        request_timeout: Duration::from_millis(400),
    }
}

/// Reads the body the way the MCP transport does: a body error becomes a plain-text 500.
async fn echo_len(body: Body) -> impl IntoResponse {
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => (StatusCode::OK, format!("{}", bytes.len())),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to read request body: {error}"),
        ),
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

/// A streamed body whose head is sent at once and whose three events, 250 ms apart, take longer
/// than the request timeout: what an SSE response looks like to the serving layer.
async fn stream() -> impl IntoResponse {
    let events = futures::stream::unfold(0, |sent| async move {
        if sent == 3 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let event = axum::body::Bytes::from_static(b"data: tick\n\n");
        Some((Ok::<_, std::io::Error>(event), sent + 1))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(events),
    )
}

fn app() -> Router {
    with_middleware(
        Router::new()
            .route("/healthz", get(shared::http::healthz))
            .route("/echo", post(echo_len))
            .route("/slow", get(slow))
            .route("/stream", get(stream)),
    )
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(bounds: Bounds) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(listener, app(), bounds, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n";

async fn still_answers(addr: SocketAddr) {
    let answer = send(addr, HEALTH).await.expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_by_content_length_and_by_chunks() {
    let server = start(bounds()).await;
    let fits = format!(
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/plain\r\ncontent-length: 4096\r\n\r\n{}",
        "x".repeat(4096)
    );
    let answer = send(server.addr, fits.as_bytes()).await.expect("answer");
    assert_eq!((answer.status, answer.body.as_str()), (200, "4096"));

    // Declared too large: refused before a byte of the body is read.
    let declared = b"POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/plain\r\ncontent-length: 3500000\r\n\r\n";
    let answer = send(server.addr, declared).await.expect("answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.head.contains("application/json"), "{answer:?}");
    // Refused inside the service's middleware: the refusal has its request id and access log.
    assert!(answer.head.contains("x-request-id"), "{answer:?}");
    assert_eq!(
        answer.body,
        r#"{"error":"the request body is larger than the limit of 4096 bytes"}"#
    );

    // Chunked, no length given: refused once it grows past the limit, not the handler's 500.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .expect("head");
    let chunk = format!("400\r\n{}\r\n", "y".repeat(0x400));
    for _ in 0..5 {
        stream.write_all(chunk.as_bytes()).await.expect("chunk");
    }
    let answer = read_answer(&mut stream).await.expect("answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("4096 bytes"), "{answer:?}");
    still_answers(server.addr).await;
}

#[tokio::test]
async fn json_nested_past_the_limit_is_a_json_rpc_error() {
    let server = start(bounds()).await;
    let request = |body: &str| {
        format!(
            "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let deep = nested_json(9);
    let answer = send(server.addr, request(&deep).as_bytes())
        .await
        .expect("answer");
    assert_eq!(answer.status, 400, "{answer:?}");
    let error = answer.json();
    assert_eq!(error["jsonrpc"], "2.0");
    assert_eq!(error["id"], serde_json::Value::Null);
    assert_eq!(error["error"]["code"], -32600);
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("deeper than the limit of 8"), "{message}");

    // At the limit, and deep-looking text inside strings, pass.
    let fine = format!(
        r#"{{"s":"{}","a":{}{}}}"#,
        "[".repeat(50),
        "[".repeat(7),
        "]".repeat(7)
    );
    let answer = send(server.addr, request(&fine).as_bytes())
        .await
        .expect("answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    // Not JSON: not scanned.
    let text = "[".repeat(50);
    let plain = format!(
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/plain\r\ncontent-length: 50\r\n\r\n{text}"
    );
    assert_eq!(
        send(server.addr, plain.as_bytes())
            .await
            .expect("answer")
            .status,
        200
    );
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
    let server = start(bounds()).await;
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\n{many}\r\n");
    let answer = send(server.addr, request.as_bytes()).await.expect("answer");
    assert_eq!(answer.status, 431, "{answer:?}");

    let large = format!(
        "GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "z".repeat(64 * 1024)
    );
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    // The server may answer and close before all of it is written.
    let _ = stream.write_all(large.as_bytes()).await;
    let answer = read_answer(&mut stream).await.expect("answer");
    assert_eq!(answer.status, 431, "{answer:?}");
    still_answers(server.addr).await;
}

#[tokio::test]
async fn a_half_sent_head_is_answered_408_and_closed_within_the_timeout() {
    let server = start(bounds()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: loc")
        .await
        .expect("half a head");
    let answer = read_answer(&mut stream).await.expect("a 408");
    let waited = started.elapsed();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.has_header("connection", "close"), "{answer:?}");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    assert!(closed_within(&mut stream, Duration::from_secs(1)).await);

    // A connection that sends nothing at all is timed out the same way.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let answer = read_answer(&mut silent).await.expect("a 408");
    assert_eq!(answer.status, 408);
    still_answers(server.addr).await;
}

#[tokio::test]
async fn a_kept_alive_connection_idles_longer_than_the_header_timeout_then_closes() {
    let server = start(bounds()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(HEALTH).await.expect("write");
    assert_eq!(read_answer(&mut stream).await.expect("answer").status, 200);
    // Past the header-read timeout, within the idle timeout: still open, and serves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(HEALTH).await.expect("write");
    assert_eq!(read_answer(&mut stream).await.expect("answer").status, 200);
    // Then closed after the idle timeout, quietly (no 408 on an idle connection).
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?} {rest:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(800), "{waited:?}");
    assert!(waited < Duration::from_millis(2000), "{waited:?}");
}

#[tokio::test]
async fn a_second_request_half_sent_on_a_kept_alive_connection_is_timed_out() {
    let server = start(bounds()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(HEALTH).await.expect("write");
    assert_eq!(read_answer(&mut stream).await.expect("answer").status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nho")
        .await
        .expect("half a head");
    let answer = read_answer(&mut stream).await.expect("a 408");
    assert_eq!(answer.status, 408, "{answer:?}");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(800),
        "header timeout, not idle: {waited:?}"
    );
    assert!(closed_within(&mut stream, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let server = start(Bounds {
        max_connections: 2,
        idle_timeout: Duration::from_secs(30),
        header_read_timeout: Duration::from_secs(30),
        ..bounds()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(HEALTH).await.expect("write");
        assert_eq!(read_answer(&mut stream).await.expect("answer").status, 200);
        open.push(stream);
    }
    // The kernel completes the handshake, but nothing serves the extra connections.
    let mut extra = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(HEALTH).await.expect("write");
        extra.push(stream);
    }
    for stream in &mut extra {
        let waited = tokio::time::timeout(Duration::from_millis(300), read_answer(stream)).await;
        assert!(waited.is_err(), "served past the cap: {waited:?}");
    }
    // One closes: exactly one waiting connection gets its place.
    drop(open.pop());
    let first = tokio::time::timeout(Duration::from_secs(2), read_answer(&mut extra[0]))
        .await
        .expect("served once a place is free")
        .expect("answer");
    assert_eq!(first.status, 200);
    let second = tokio::time::timeout(Duration::from_millis(300), read_answer(&mut extra[1])).await;
    assert!(second.is_err(), "still two at most: {second:?}");
}

#[tokio::test]
async fn a_slow_handler_is_answered_503_but_a_stream_is_not_cut() {
    let server = start(bounds()).await;
    let started = Instant::now();
    let answer = send(
        server.addr,
        b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n",
    )
    .await
    .expect("answer");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.head.contains("x-request-id"), "{answer:?}");
    assert!(answer.body.contains("took longer than"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Three events 250 ms apart: 750 ms, longer than the 400 ms request timeout.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut all))
        .await
        .expect("the stream ends")
        .expect("read");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(text.matches("data: tick").count(), 3, "{text}");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let mut server = start(Bounds {
        request_timeout: Duration::from_secs(10),
        ..bounds()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    server
        .stop
        .take()
        .expect("once")
        .send(())
        .expect("server running");
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut all))
        .await
        .expect("finished, then closed")
        .expect("read");
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("data: tick").count(), 3, "{text}");
    tokio::time::timeout(Duration::from_secs(3), server.task)
        .await
        .expect("the server returns")
        .expect("task")
        .expect("served");
    assert!(TcpStream::connect(server.addr).await.is_err());
}
