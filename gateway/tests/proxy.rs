//! The proxy on live traffic: a real gateway on `127.0.0.1:0` in front of a real tools-service
//! (or a small echo upstream that shows what it received), with tokens from the devstack IdP.
//! Every refusal status, the metadata, a real MCP `tools/list` through the gateway, identity
//! headers replaced, a dead backend and an oversized body.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::Request, routing::get};
use devstack::idp::{self, IdpConfig, RunningIdp, TokenSpec, defaults};
use gateway::Config;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#;

/// A gateway serving in the background until dropped (or [`Gateway::stop`]).
struct Gateway {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    /// One route, `/contoso-mcp` -> `upstream`, admitting the Contoso tenant.
    async fn start(idp: &RunningIdp, upstream: &str) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let config = Config::from_toml(&format!(
            r#"
            listen = "{addr}"
            public_base_url = "http://{addr}"
            [auth]
            issuer = "{issuer}"
            audiences = ["{audience}"]
            [[routes]]
            name = "contoso"
            prefix = "/contoso-mcp"
            upstreams = ["{upstream}"]
            allowed_tenants = ["{contoso}"]
            connect_timeout_ms = 1000
            "#,
            issuer = idp.url(),
            audience = defaults::AUDIENCE,
            contoso = defaults::CONTOSO,
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Stops it; with nothing in flight, idle keep-alive connections must not delay that.
    async fn stop(mut self) {
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

async fn idp() -> RunningIdp {
    idp::spawn(IdpConfig::default()).await.expect("IdP")
}

fn token(idp: &RunningIdp, tenant: &str) -> String {
    idp.idp.mint(&TokenSpec::new(tenant, ["query"], "alice"))
}

fn mcp_post(url: String, body: impl Into<String>) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.into())
}

/// The JSON-RPC answer of a response that is JSON or a one-event SSE stream.
async fn json_rpc(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text);
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn refusal(response: reqwest::Response, status: u16, code: &str) -> Value {
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

/// A tools-service on `127.0.0.1:0` that verifies tokens of `issuer` itself.
async fn tools_service(
    issuer: &str,
) -> (
    String,
    tempfile::TempDir,
    oneshot::Sender<()>,
    JoinHandle<anyhow::Result<()>>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let config = tools_service::Config::try_parse_from_args(
        [
            "--disable-auth",
            "false",
            "--auth-issuer",
            issuer,
            "--mcp-api-audience",
            defaults::AUDIENCE,
            "--db-path",
            &dir.path().join("tools.db").display().to_string(),
            "--seed-customer-count",
            "5",
            "--bind-addr",
            "127.0.0.1:0",
        ]
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
    (addr.to_string(), dir, stop, task)
}

/// An upstream that answers every request with what it received, and counts them.
async fn echo_upstream() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(move |request: Request| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
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
                Json(json!({"uri": request.uri().to_string(), "headers": headers}))
            }
        });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_metadata_and_a_real_tools_list_through_the_gateway() {
    let idp = idp().await;
    let (backend, _dir, backend_stop, backend_task) = tools_service(idp.url()).await;
    let gateway = Gateway::start(&idp, &backend).await;
    let http = reqwest::Client::new();

    // Unknown path: 404 JSON.
    let response = http
        .get(gateway.url("/nowhere/mcp"))
        .send()
        .await
        .expect("request");
    refusal(response, 404, "not_found").await;

    // The route's metadata, without a token.
    let metadata_url = gateway.url("/.well-known/oauth-protected-resource/contoso-mcp/mcp");
    let response = http.get(&metadata_url).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let metadata: Value = response.json().await.expect("JSON");
    assert_eq!(metadata["resource"], gateway.url("/contoso-mcp/mcp"));
    assert_eq!(metadata["authorization_servers"], json!([idp.url()]));

    // No token: 401 with the challenge and nothing more.
    let response = mcp_post(gateway.url("/contoso-mcp/mcp"), TOOLS_LIST)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.headers()["www-authenticate"],
        format!("Bearer resource_metadata=\"{metadata_url}\"").as_str()
    );
    refusal(response, 401, "invalid_token").await;

    // A token that does not verify: 401 with error="invalid_token".
    let response = mcp_post(gateway.url("/contoso-mcp/mcp"), TOOLS_LIST)
        .bearer_auth("not.a.token")
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.headers()["www-authenticate"],
        format!("Bearer resource_metadata=\"{metadata_url}\", error=\"invalid_token\"").as_str()
    );
    refusal(response, 401, "invalid_token").await;

    // A valid token of a tenant the route does not admit: 403.
    let response = mcp_post(gateway.url("/contoso-mcp/mcp"), TOOLS_LIST)
        .bearer_auth(token(&idp, defaults::FABRIKAM))
        .send()
        .await
        .expect("request");
    refusal(response, 403, "tenant_not_allowed").await;

    // Contoso: the backend's own answer, the same as direct, with the gateway's request id.
    let contoso = token(&idp, defaults::CONTOSO);
    let response = mcp_post(gateway.url("/contoso-mcp/mcp"), TOOLS_LIST)
        .bearer_auth(&contoso)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_eq!(request_id.len(), 36, "{request_id}");
    let via_gateway = json_rpc(response).await;
    let tools = via_gateway["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a tools/list result: {via_gateway}"));
    let direct = json_rpc(
        mcp_post(format!("http://{backend}/mcp"), TOOLS_LIST)
            .bearer_auth(&contoso)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert!(tools.len() >= 18, "{} tools", tools.len());
    assert_eq!(via_gateway["result"], direct["result"]);

    // A 2 MiB body: 413 before anything is forwarded.
    let response = mcp_post(gateway.url("/contoso-mcp/mcp"), "x".repeat(2 * 1024 * 1024))
        .bearer_auth(&contoso)
        .send()
        .await
        .expect("request");
    refusal(response, 413, "body_too_large").await;

    gateway.stop().await;
    drop(backend_stop);
    let _ = backend_task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_are_the_gateways_and_refused_tenants_reach_nothing() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = Gateway::start(&idp, &upstream).await;
    let http = reqwest::Client::new();

    let response = http
        .get(gateway.url("/contoso-mcp/x?a=1"))
        .bearer_auth(token(&idp, defaults::FABRIKAM))
        .header("x-tenant-id", defaults::CONTOSO)
        .send()
        .await
        .expect("request");
    refusal(response, 403, "tenant_not_allowed").await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing forwarded");

    let contoso = token(&idp, defaults::CONTOSO);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = http
        .get(gateway.url("/contoso-mcp/x?a=1"))
        .bearer_auth(&contoso)
        .header("x-tenant-id", "spoofed-tenant")
        .header("x-user-roles", "admin")
        .header("x-forwarded-for", "10.9.9.9")
        .header("x-request-id", "caller-chosen")
        .header("traceparent", traceparent)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let seen: Value = response.json().await.expect("JSON");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(seen["uri"], "/x?a=1", "prefix stripped, query kept");
    let headers = &seen["headers"];
    assert_eq!(headers["x-tenant-id"], json!([defaults::CONTOSO]));
    assert_eq!(headers["x-user-roles"], Value::Null);
    assert_eq!(headers["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(headers["x-request-id"], json!([request_id]));
    assert_ne!(request_id, "caller-chosen");
    assert_eq!(headers["traceparent"], json!([traceparent]));
    assert_eq!(
        headers["authorization"],
        json!([format!("Bearer {contoso}")])
    );

    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_answered_with_json_at_once() {
    let idp = idp().await;
    // A port that was free a moment ago: nothing listens there.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address")
        .to_string();
    let gateway = Gateway::start(&idp, &dead).await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(gateway.url("/contoso-mcp/mcp"))
        .bearer_auth(token(&idp, defaults::CONTOSO))
        .body(TOOLS_LIST)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer, not a hang");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let status = response.status().as_u16();
    assert!(status == 502 || status == 503, "{status}");
    refusal(response, status, "upstream_unavailable").await;
    gateway.stop().await;
}
