//! The experts act on delegated tokens: the agent service exchanges each caller's token at the
//! issuer (RFC 8693) for a token issued to the tools service, carrying the caller's `sub`, `tid`
//! and roles and naming the agent in `act`, and never sends the caller's own token on.
//!
//! A recording proxy between the agent service and the tools service keeps every
//! `Authorization` header the tools service receives, so the tests assert on the very tokens of
//! the inner calls.

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::*;
use devstack::idp::{self, IdpConfig, RunningIdp, TokenSpec, defaults};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The agent service's resource, which callers get tokens for.
const AGENT_AUDIENCE: &str = "api://contoso-agent";
/// The tools service's resource, which the agent exchanges callers' tokens for.
const TOOLS_AUDIENCE: &str = "api://contoso-tools";

/// An identity provider that knows both resources: people's clients may target the agent, the
/// agent's client may exchange for the tools service.
async fn identity_provider() -> RunningIdp {
    let people = vec![AGENT_AUDIENCE.to_owned()];
    let tools = vec![TOOLS_AUDIENCE.to_owned()];
    let mut clients = defaults::clients_for(&people);
    clients.push(defaults::agent_client(
        defaults::AGENT_CLIENT_ID,
        &people,
        &tools,
    ));
    idp::spawn(IdpConfig {
        audiences: vec![AGENT_AUDIENCE.to_owned(), TOOLS_AUDIENCE.to_owned()],
        clients,
        ..IdpConfig::default()
    })
    .await
    .expect("IdP")
}

/// Forwards every request to the tools service and keeps the `Authorization` header of each.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    _task: JoinHandle<()>,
    _stop: oneshot::Sender<()>,
}

#[derive(Clone)]
struct Upstream {
    mcp_url: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn forward(
    State(upstream): State<Upstream>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(authorization) = headers.get("authorization") {
        let value = authorization.to_str().unwrap_or_default().to_owned();
        upstream.seen.lock().expect("lock").push(value);
    }
    let mut request = upstream
        .http
        .request(method, &upstream.mcp_url)
        .body(body.to_vec());
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let Ok(answer) = request.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let mut response_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response_headers.insert(name, value.clone());
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    (status, response_headers, body).into_response()
}

impl Recorder {
    async fn start(tools_mcp_url: &str) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let app = Router::new()
            .route("/mcp", axum::routing::any(forward))
            .with_state(Upstream {
                mcp_url: tools_mcp_url.to_owned(),
                http: reqwest::Client::new(),
                seen: seen.clone(),
            });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Recorder {
            url: format!("http://{addr}/mcp"),
            seen,
            _task: task,
            _stop: stop,
        }
    }

    /// The bearer tokens the tools service was sent, in order.
    fn tokens(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|h| h.strip_prefix("Bearer ").unwrap_or(h).to_owned())
            .collect()
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// The flags of an agent service exchanging tokens as `client` (id, secret), calling the
/// tools service through `tools_url`.
fn exchange_flags<'a>(client: (&'a str, &'a str), tools_url: &'a str) -> Vec<&'a str> {
    vec![
        "--mcp-api-audience",
        AGENT_AUDIENCE,
        "--token-exchange",
        "rfc8693",
        "--agent-client-id",
        client.0,
        "--agent-client-secret",
        client.1,
        "--mcp-server-uri",
        tools_url,
        "--mcp-server-audience",
        TOOLS_AUDIENCE,
    ]
}

fn caller_token(idp: &RunningIdp, roles: &[&str]) -> String {
    idp.idp.mint(&TokenSpec {
        audience: Some(AGENT_AUDIENCE.to_owned()),
        ..TokenSpec::new(defaults::CONTOSO, roles.iter().copied(), "alice")
    })
}

const QUESTION: &str = "Why is my bill so high this month? I am customer 1.";

/// The identity provider above and a tools service accepting [`TOOLS_AUDIENCE`] and trusting
/// `trusted_actors` (comma separated; empty: none).
async fn stack(trusted_actors: &str) -> Stack {
    Stack::start_on(
        identity_provider().await,
        20,
        &[
            ("--mcp-api-audience", TOOLS_AUDIENCE),
            ("--trusted-actors", trusted_actors),
        ],
    )
    .await
}

/// An agent service exchanging tokens as `client` (id, secret), calling the tools service at
/// `tools_url`, with its memory in `db`.
async fn agent(
    stack: &Stack,
    db: &std::path::Path,
    client: (&str, &str),
    tools_url: &str,
) -> AgentService {
    AgentService::start(stack, db, &exchange_flags(client, tools_url)).await
}

/// The agent's own, valid credentials.
const AGENT_SECRET: &str = "contoso-agent-secret";

#[tokio::test]
async fn inner_calls_carry_an_exchanged_token_for_the_tools_service_never_the_callers() {
    let stack = stack(defaults::AGENT_CLIENT_ID).await;
    let recorder = Recorder::start(&stack.tools_url).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = agent(
        &stack,
        &dir.path().join("agent.db"),
        (defaults::AGENT_CLIENT_ID, AGENT_SECRET),
        &recorder.url,
    )
    .await;
    let caller = caller_token(&stack.idp, &["query", "billing"]);
    let result = ask(
        &agent.url,
        &caller,
        "ask_billing_expert",
        json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(result["structuredContent"]["status"], "done", "{result}");
    assert!(
        !result["structuredContent"]["tool_calls"]
            .as_array()
            .expect("tool calls")
            .is_empty()
    );

    let tokens = recorder.tokens();
    assert!(!tokens.is_empty(), "the tools service was called");
    let caller_claims = claims(&caller);
    for token in &tokens {
        assert_ne!(token, &caller, "the caller's own token was sent on");
        let inner = claims(token);
        assert_eq!(inner["aud"], TOOLS_AUDIENCE);
        assert_eq!(inner["sub"], "alice");
        assert_eq!(inner["tid"], defaults::CONTOSO);
        assert_eq!(inner["roles"], json!(["query", "billing"]));
        assert_eq!(inner["act"], json!({"sub": defaults::AGENT_CLIENT_ID}));
        assert_eq!(inner["azp"], defaults::AGENT_CLIENT_ID);
        assert!(inner["exp"].as_i64() <= caller_claims["exp"].as_i64());
    }

    // A second question of the same caller: the exchanged token is reused, not asked again.
    let again = ask(
        &agent.url,
        &caller,
        "ask_billing_expert",
        json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(again["structuredContent"]["status"], "done", "{again}");
    let all = recorder.tokens();
    assert!(all.len() > tokens.len());
    assert!(
        all.iter().all(|t| t == &tokens[0]),
        "one exchange serves the caller's inner calls until it nears expiry"
    );

    // Another caller gets a token of their own.
    let bob = stack.idp.idp.mint(&TokenSpec {
        audience: Some(AGENT_AUDIENCE.to_owned()),
        ..TokenSpec::new(defaults::CONTOSO, ["query"], "bob")
    });
    let seen = recorder.tokens().len();
    let bobs = ask(
        &agent.url,
        &bob,
        "ask_billing_expert",
        json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(bobs["structuredContent"]["status"], "done", "{bobs}");
    let bob_tokens = &recorder.tokens()[seen..];
    assert!(!bob_tokens.is_empty());
    for token in bob_tokens {
        assert_eq!(claims(token)["sub"], "bob");
        assert_eq!(claims(token)["roles"], json!(["query"]));
    }
}

#[tokio::test]
async fn a_token_for_another_server_is_refused_by_the_agent_service() {
    let stack = stack(defaults::AGENT_CLIENT_ID).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = agent(
        &stack,
        &dir.path().join("agent.db"),
        (defaults::AGENT_CLIENT_ID, AGENT_SECRET),
        &stack.tools_url,
    )
    .await;
    for audience in [TOOLS_AUDIENCE, defaults::AUDIENCE] {
        let replayed = stack.idp.idp.mint(&TokenSpec {
            audience: Some(audience.to_owned()),
            ..TokenSpec::new(defaults::CONTOSO, ["query"], "alice")
        });
        let response = post(
            &agent.url,
            &replayed,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
        assert_eq!(response.status(), 401, "a token for {audience}");
    }
}

/// The answer of an expert whose inner calls could not get a token, or were refused one.
async fn failed_answer(agent: &AgentService, caller: &str) -> Value {
    let result = ask(
        &agent.url,
        caller,
        "ask_billing_expert",
        json!({"question": QUESTION}),
    )
    .await;
    let answer = result["structuredContent"].clone();
    assert_eq!(answer["status"], "error", "{result}");
    answer
}

#[tokio::test]
async fn exchanges_the_issuer_refuses_and_actors_the_tools_service_does_not_trust_fail_the_answer()
{
    let stack = stack(defaults::AGENT_CLIENT_ID).await;
    let caller = caller_token(&stack.idp, &["query"]);

    // A client the issuer does not let exchange tokens (a person's client).
    let recorder = Recorder::start(&stack.tools_url).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let not_allowed = agent(
        &stack,
        &dir.path().join("one.db"),
        ("contoso-query", "contoso-query-secret"),
        &recorder.url,
    )
    .await;
    let answer = failed_answer(&not_allowed, &caller).await;
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused to exchange"), "{answer}");
    // The issuer's reply describes the agent's own client: it is for the log, not the caller.
    assert!(!error.contains("unauthorized_client"), "{answer}");
    assert!(!error.contains("http://"), "no internal URL: {error}");
    assert!(
        recorder.tokens().is_empty(),
        "nothing reached the tools service"
    );

    // The agent's own client with a wrong secret.
    let wrong_secret = agent(
        &stack,
        &dir.path().join("two.db"),
        (defaults::AGENT_CLIENT_ID, "not-the-secret"),
        &recorder.url,
    )
    .await;
    let answer = failed_answer(&wrong_secret, &caller).await;
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused to exchange"), "{answer}");
    assert!(!error.contains("invalid_client"), "{answer}");
    assert!(
        recorder.tokens().is_empty(),
        "nothing reached the tools service"
    );
}

#[tokio::test]
async fn a_tools_service_that_does_not_trust_the_agent_refuses_its_delegated_tokens() {
    // No TRUSTED_ACTORS: every delegated token is refused.
    let stack = stack("").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = agent(
        &stack,
        &dir.path().join("agent.db"),
        (defaults::AGENT_CLIENT_ID, AGENT_SECRET),
        &stack.tools_url,
    )
    .await;
    let answer = failed_answer(&agent, &caller_token(&stack.idp, &["query"])).await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the token"),
        "{answer}"
    );
}
