//! The experts act on delegated tokens: the agent service exchanges each caller's token at the
//! issuer (RFC 8693) for a token issued to the tools service, carrying the caller's `sub`, `tid`
//! and roles and naming the agent in `act`, and never sends the caller's own token on.
//!
//! A recording proxy between the agent service and the tools service keeps every
//! `Authorization` header the tools service receives, so the tests assert on the very tokens of
//! the inner calls.
//!
//! With `AGENT_CLIENT_AUTH=managed_identity` the agent proves itself to the issuer with no
//! secret, by a token of its managed identity as the client assertion (Entra's workload identity
//! federation). The Azure SDK finds the identity endpoint in the process environment, so those
//! tests run the service binary as a child process with the environment Container Apps gives an
//! app, pointing at the stand-in endpoint, which hands out JWTs the devstack IdP signed (as Entra
//! signs a managed identity's tokens) and the IdP then checks against `contoso-agent`'s
//! federated credential.

mod common;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
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
use devstack::{
    idp::{self, ClientAuthMethod, Idp, IdpConfig, RunningIdp, TokenSpec, defaults},
    load,
    managed_identity::ManagedIdentity,
};
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
    failed_answer_at(&agent.url, caller).await
}

/// [`failed_answer`] of the agent service at `base`.
async fn failed_answer_at(base: &str, caller: &str) -> Value {
    let result = ask(
        base,
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

const BINARY: &str = env!("CARGO_BIN_EXE_agent-service");
/// The client id of the agent's user-assigned managed identity.
const IDENTITY_CLIENT_ID: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
/// Entra's audience of client assertions, which the stand-in endpoint is asked for.
const ASSERTION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The agent-service binary, authenticating as `contoso-agent` with the managed identity of
/// `identity`'s environment and no secret, calling the tools service through `tools_url`, with
/// `extra` flags. Its log is kept from the moment it listens.
struct IdentityAgent {
    base: String,
    log: Arc<Mutex<Vec<String>>>,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl IdentityAgent {
    async fn start(
        stack: &Stack,
        identity: &ManagedIdentity,
        tools_url: &str,
        extra: &[&str],
    ) -> IdentityAgent {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("agent.db").display().to_string();
        let mut args = vec![
            "--bind-addr",
            "127.0.0.1:0",
            "--disable-auth",
            "false",
            "--use-passthrough-auth",
            "false",
            "--auth-issuer",
            stack.idp.url(),
            "--db-path",
            &db,
            "--agent-client-auth",
            "managed_identity",
            "--azure-credential",
            "managed-identity",
            "--azure-client-id",
            IDENTITY_CLIENT_ID,
        ];
        args.extend(
            exchange_flags((defaults::AGENT_CLIENT_ID, ""), tools_url)
                .chunks(2)
                .filter(|pair| pair[0] != "--agent-client-secret")
                .flatten(),
        );
        args.extend(extra);
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        let (child, addr) = load::spawn_until(
            Path::new(BINARY),
            &args,
            identity.env(),
            |line| {
                let rest = line.split("listening on http://").nth(1)?;
                Some(rest.trim().to_owned())
            },
            Arc::new(move |line: &str| kept.lock().expect("lock").push(line.to_owned())),
        )
        .await
        .expect("the agent service starts with its identity and no secret");
        IdentityAgent {
            base: format!("http://{addr}"),
            log,
            _child: child,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("lock").join("\n")
    }
}

#[tokio::test]
async fn with_its_managed_identity_the_agent_exchanges_tokens_without_any_secret() {
    let stack = stack(defaults::AGENT_CLIENT_ID).await;
    let identity = ManagedIdentity::spawn_signing(
        Duration::from_secs(3600),
        &stack.idp.idp,
        defaults::AGENT_PRINCIPAL_ID,
    )
    .await
    .expect("identity endpoint");
    let recorder = Recorder::start(&stack.tools_url).await;
    let agent = IdentityAgent::start(&stack, &identity, &recorder.url, &[]).await;

    for subject in ["alice", "bob"] {
        let caller = stack.idp.idp.mint(&TokenSpec {
            audience: Some(AGENT_AUDIENCE.to_owned()),
            ..TokenSpec::new(defaults::CONTOSO, ["query", "billing"], subject)
        });
        let result = ask(
            &agent.base,
            &caller,
            "ask_billing_expert",
            json!({"question": QUESTION}),
        )
        .await;
        assert_eq!(result["structuredContent"]["status"], "done", "{result}");
    }

    // The tools service got delegated tokens: each caller, the agent as the actor.
    let tokens = recorder.tokens();
    assert!(!tokens.is_empty(), "the tools service was called");
    let mut subjects: Vec<String> = tokens
        .iter()
        .map(|token| {
            let inner = claims(token);
            assert_eq!(inner["aud"], TOOLS_AUDIENCE);
            assert_eq!(inner["act"], json!({"sub": defaults::AGENT_CLIENT_ID}));
            assert_eq!(inner["azp"], defaults::AGENT_CLIENT_ID);
            inner["sub"].as_str().expect("sub").to_owned()
        })
        .collect();
    subjects.dedup();
    assert_eq!(subjects, ["alice", "bob"]);

    // The issuer authenticated the agent twice (one exchange per caller), by assertion only.
    let authentications = stack.idp.idp.authentications();
    assert_eq!(authentications.len(), 2, "{authentications:?}");
    for authentication in &authentications {
        assert_eq!(authentication.client_id, defaults::AGENT_CLIENT_ID);
        assert_eq!(authentication.method, ClientAuthMethod::Assertion);
    }
    // The identity was asked for Entra's assertion audience, as the user-assigned identity, and
    // once: its token is cached across exchanges.
    identity
        .only_asked_for(ASSERTION_AUDIENCE, IDENTITY_CLIENT_ID)
        .expect("assertions for api://AzureADTokenExchange");
    assert_eq!(identity.requests().len(), 1, "{:?}", identity.requests());
}

#[tokio::test]
async fn assertions_the_issuer_does_not_trust_fail_the_answer_clearly_and_reach_nothing() {
    let stack = stack(defaults::AGENT_CLIENT_ID).await;
    let caller = caller_token(&stack.idp, &["query"]);
    let recorder = Recorder::start(&stack.tools_url).await;
    let hour = Duration::from_secs(3600);
    // Another key under the same issuer name: signatures the IdP's JWKS does not vouch for.
    let impostor = Idp::new(IdpConfig {
        issuer: Some(stack.idp.url().to_owned()),
        ..IdpConfig::default()
    })
    .expect("impostor IdP");
    let stranger = "0badc0de-0000-4000-8000-000000000000";
    let cases = [
        (
            "another audience",
            ManagedIdentity::spawn_signing(hour, &stack.idp.idp, defaults::AGENT_PRINCIPAL_ID)
                .await,
            &["--agent-assertion-audience", "api://elsewhere"][..],
            "the client assertion is for the audience api://elsewhere, not api://AzureADTokenExchange",
        ),
        (
            "another subject",
            ManagedIdentity::spawn_signing(hour, &stack.idp.idp, stranger).await,
            &[][..],
            "which no federated credential of client contoso-agent names",
        ),
        (
            "another key",
            ManagedIdentity::spawn_signing(hour, &impostor, defaults::AGENT_PRINCIPAL_ID).await,
            &[][..],
            "the client assertion was not signed by this IdP's published keys",
        ),
    ];
    for (case, identity, extra, refusal) in cases {
        let identity = identity.expect("identity endpoint");
        let agent = IdentityAgent::start(&stack, &identity, &recorder.url, extra).await;
        let answer = tokio::time::timeout(
            Duration::from_secs(60),
            failed_answer_at(&agent.base, &caller),
        )
        .await
        .unwrap_or_else(|_| panic!("{case}: the answer came"));
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("refused to exchange"), "{case}: {answer}");
        assert!(!error.contains("invalid_client"), "{case}: {answer}");
        assert!(!error.contains("http"), "{case}: no internal URL: {error}");
        // The issuer said why, to the agent's operator.
        assert!(
            logs().contains(refusal),
            "{case}: the IdP logged {refusal:?}"
        );
        let log = agent.log();
        assert!(
            log.contains("token exchange refused") && log.contains(refusal),
            "{case}: the agent's log says why: {log}"
        );
        assert!(stack.idp.idp.authentications().is_empty(), "{case}");
    }
    assert!(
        recorder.tokens().is_empty(),
        "nothing reached the tools service"
    );

    // No identity at all: the agent cannot get an assertion, and says so without a URL.
    let identity =
        ManagedIdentity::spawn_signing(hour, &stack.idp.idp, defaults::AGENT_PRINCIPAL_ID)
            .await
            .expect("identity endpoint");
    identity.refuse();
    let agent = IdentityAgent::start(&stack, &identity, &recorder.url, &[]).await;
    let answer = failed_answer_at(&agent.base, &caller).await;
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("could not prove its identity"), "{answer}");
    assert!(!error.contains("http"), "no internal URL: {error}");
    let log = agent.log();
    assert!(
        log.contains("WARN") && log.contains("no client assertion from the managed identity"),
        "{log}"
    );
    assert!(stack.idp.idp.authentications().is_empty());
}
