//! The test harness shared by the gateway's live-traffic tests: a real gateway on
//! `127.0.0.1:0` in front of real tools-services or small upstreams that show what they
//! received, with tokens from the devstack IdP.
//!
//! Routes keep their default audience, their resource URL, so a token must be minted for the
//! route it is sent to ([`Gateway::token`]); [`token`] makes one for no route at all.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::Request, response::IntoResponse};
use devstack::idp::{self, IdpConfig, RunningIdp, TokenSpec, defaults};
use gateway::Config;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;

/// A gateway serving in the background until dropped (or [`Gateway::stop`]).
pub struct Gateway {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    /// One route, `/contoso-mcp` -> `upstream`, admitting the Contoso tenant.
    pub async fn start(idp: &RunningIdp, upstream: &str) -> Gateway {
        let route = format!(
            r#"
            [[routes]]
            name = "contoso"
            prefix = "/contoso-mcp"
            upstreams = ["{upstream}"]
            allowed_tenants = ["{contoso}"]
            connect_timeout_ms = 1000
            "#,
            contoso = defaults::CONTOSO,
        );
        Gateway::start_with(idp, &route).await
    }

    /// A gateway with the given `[[routes]]` tables, on a port of its own.
    pub async fn start_with(idp: &RunningIdp, routes: &str) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let config = Config::from_toml(&format!(
            r#"
            listen = "{addr}"
            public_base_url = "http://{addr}"
            [auth]
            issuer = "{issuer}"
            {routes}
            "#,
            issuer = idp.url(),
        ))
        .expect("valid configuration");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let gateway = Gateway {
            url: format!("http://{addr}"),
            stop: Some(stop),
            task,
        };
        // The listener is bound already; wait for the verifier to be built.
        let deadline = Instant::now() + Duration::from_secs(10);
        while reqwest::get(gateway.url("/nowhere")).await.is_err() {
            assert!(Instant::now() < deadline, "gateway did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The resource URL of the route at `prefix`: its default audience.
    pub fn resource(&self, prefix: &str) -> String {
        self.url(&format!("{prefix}/mcp"))
    }

    /// A token of `tenant` (role `query`) for the route at `prefix`. It names the backends'
    /// audience too, as an Entra token for an application the route lists would, so that a real
    /// tools-service behind the route accepts it as well.
    pub fn token(&self, idp: &RunningIdp, tenant: &str, prefix: &str) -> String {
        mint_for(
            idp,
            tenant,
            json!([self.resource(prefix), defaults::AUDIENCE]),
        )
    }

    /// Stops it; with nothing in flight, idle keep-alive connections must not delay that.
    pub async fn stop(mut self) {
        self.stop.take();
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the gateway stops within the drain time");
        ended.expect("task").expect("the gateway ran without error");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "idle connections held the shutdown for {:?}",
            started.elapsed()
        );
    }
}

/// `/limited` with `limit` calls per tenant per minute and `/open` without a limit, both to
/// `upstream` and both admitting Contoso and Fabrikam.
pub fn limited_and_open_routes(upstream: &str, limit: u32) -> String {
    format!(
        r#"
        [[routes]]
        name = "limited"
        prefix = "/limited"
        upstreams = ["{upstream}"]
        allowed_tenants = ["{contoso}", "{fabrikam}"]
        rate_limit_per_minute = {limit}
        [[routes]]
        name = "open"
        prefix = "/open"
        upstreams = ["{upstream}"]
        allowed_tenants = ["{contoso}", "{fabrikam}"]
        "#,
        contoso = defaults::CONTOSO,
        fabrikam = defaults::FABRIKAM,
    )
}

pub async fn idp() -> RunningIdp {
    idp::spawn(IdpConfig::default()).await.expect("IdP")
}

/// A token of `tenant` for the IdP's default audience, which no gateway route accepts (a
/// tools-service called directly does).
pub fn token(idp: &RunningIdp, tenant: &str) -> String {
    idp.idp.mint(&TokenSpec::new(tenant, ["query"], "alice"))
}

/// A token of `tenant` (role `query`) whose `aud` is `aud`: a string or a list of them.
pub fn mint_for(idp: &RunningIdp, tenant: &str, aud: Value) -> String {
    let mut spec = TokenSpec::new(tenant, ["query"], "alice");
    spec.extra.insert("aud".to_owned(), aud);
    idp.idp.mint(&spec)
}

/// `GET url` with `token` as the bearer.
pub async fn get_as(http: &reqwest::Client, url: String, token: &str) -> reqwest::Response {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

pub fn mcp_post(url: String, body: impl Into<String>) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.into())
}

/// The JSON-RPC answer of a response that is JSON or a one-event SSE stream.
pub async fn json_rpc(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text);
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub async fn refusal(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "refusals are JSON"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["request_id"], request_id.as_str(), "{body}");
    body
}

/// A tools-service running in this process, stopped when dropped.
pub struct ToolsService {
    /// `host:port`
    pub addr: String,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ToolsService {
    /// Stops it and waits until it has.
    pub async fn stop(mut self) {
        self.stop.take();
        let _ = (&mut self.task).await;
    }
}

/// A tools-service on `127.0.0.1:0` that verifies tokens of `issuer` itself.
pub async fn tools_service(issuer: &str) -> ToolsService {
    tools_service_with(issuer, &[]).await
}

/// [`tools_service`] with more command-line flags.
pub async fn tools_service_with(issuer: &str, extra: &[&str]) -> ToolsService {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let db = dir.path().join("tools.db").display().to_string();
    let config = tools_service::Config::try_parse_from_args(
        [
            "--disable-auth",
            "false",
            "--auth-issuer",
            issuer,
            "--mcp-api-audience",
            defaults::AUDIENCE,
            "--db-path",
            &db,
            "--seed-customer-count",
            "5",
            "--bind-addr",
            "127.0.0.1:0",
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(str::to_owned),
    )
    .expect("tools-service flags")
    .into_valid()
    .expect("valid tools-service configuration");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(tools_service::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let ready = format!("http://{addr}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(&ready).await
            && r.status() == 200
        {
            break;
        }
        assert!(!task.is_finished(), "tools-service ended during start-up");
        assert!(Instant::now() < deadline, "tools-service did not get ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ToolsService {
        addr: addr.to_string(),
        _dir: dir,
        stop: Some(stop),
        task,
    }
}

/// An upstream that answers every request the gateway forwards with what it received, and
/// counts them (the gateway's health probes are answered `ok` and not counted).
pub async fn echo_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    echo_upstream_on(listener)
}

/// [`echo_upstream`] on a listener of the caller's (to bring an upstream back on its old port).
/// A request with `slow` in its query answers after 1.5 s of silence.
pub fn echo_upstream_on(listener: TcpListener) -> (String, Arc<AtomicUsize>) {
    let (addr, hits, stop) = stoppable_echo_upstream_on(listener);
    // Never stopped: the upstream lives as long as the test's runtime.
    std::mem::forget(stop);
    (addr, hits)
}

/// [`echo_upstream_on`] that stops, the way a process shuts down, when the sender is used or
/// dropped: no new connections, idle keep-alive connections closed.
pub fn stoppable_echo_upstream_on(
    listener: TcpListener,
) -> (String, Arc<AtomicUsize>, oneshot::Sender<()>) {
    let addr = listener.local_addr().expect("address").to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let name = addr.clone();
    let app = Router::new().fallback(move |request: Request| {
        let (counter, name) = (counter.clone(), name.clone());
        async move {
            // The gateway's own health probes carry no request id; everything it forwards
            // does, whatever the path (a forwarded /healthz counts too).
            if !request.headers().contains_key("x-request-id") {
                return "ok".into_response();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            if request.uri().query().is_some_and(|q| q.contains("slow")) {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                return "finally".into_response();
            }
            let headers: HashMap<String, Vec<String>> = request
                .headers()
                .keys()
                .map(|name| {
                    let values = request
                        .headers()
                        .get_all(name)
                        .iter()
                        .map(|v| v.to_str().unwrap_or("?").to_owned())
                        .collect();
                    (name.as_str().to_owned(), values)
                })
                .collect();
            Json(json!({"upstream": name, "uri": request.uri().to_string(), "headers": headers}))
                .into_response()
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    (addr, hits, stop)
}

/// An address nothing listens on (a port that was free a moment ago).
pub async fn dead_address() -> String {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address")
        .to_string()
}

/// An HTTP/1.1 response read off a raw socket: status, headers (names lowercase), body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl RawResponse {
    /// Asserts a gateway refusal: `status`, JSON with `code`, the request id of the header in the
    /// body, and `Connection: close`.
    pub fn assert_refusal(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.headers["content-type"], "application/json", "{self:?}");
        let body: Value = serde_json::from_str(&self.body).expect("a JSON body");
        assert_eq!(body["error"], code, "{body}");
        let request_id = self.headers.get("x-request-id").expect("a request id");
        assert_eq!(body["request_id"], request_id.as_str(), "{body}");
        assert_eq!(self.headers["connection"], "close", "{self:?}");
    }
}

/// Reads one response (a `Content-Length` body) from `stream`, within 10 s.
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> RawResponse {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed before a whole response head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .map_or(0, |l| l.parse().expect("a length"));
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before the whole body");
            body.extend_from_slice(&chunk[..n]);
        }
        RawResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response within 10 s")
}

/// How long until the peer closes `stream` (reads return 0 or fail), discarding what it sends;
/// panics after `limit`.
pub async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let closed = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after {limit:?}");
    started.elapsed()
}

/// A raw HTTP/1.1 request head for `path` with a bearer token and `extra` header lines (each
/// ending in CRLF), and the blank line.
pub fn raw_head(method: &str, path: &str, token: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {token}\r\n{extra}\r\n"
    )
}
