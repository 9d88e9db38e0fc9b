//! Hybrid knowledge search against a scripted Azure OpenAI embeddings endpoint (a test double
//! for a paid cloud service): documents are embedded once and stored, the request has Azure's
//! shape (with a key, or a managed identity's token), and a failing embedding service degrades
//! search to BM25 instead of breaking it.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use common::*;
use devstack::managed_identity::ManagedIdentity;
use serde_json::{Value, json};

#[derive(Default)]
struct Scripted {
    /// Texts embedded so far, per request.
    requests: std::sync::Mutex<Vec<usize>>,
    texts: AtomicUsize,
    fail: AtomicBool,
    /// How each request authenticated: `api-key <key>` or `bearer <token>`.
    credentials: std::sync::Mutex<Vec<String>>,
}

/// A deterministic bag-of-words embedding: similar words, similar vectors.
fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0.0_f32; 64];
    for word in text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 3)
    {
        let h = word
            .bytes()
            .fold(7_u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        v[(h % 64) as usize] += 1.0;
    }
    v
}

async fn embeddings(
    State(state): State<Arc<Scripted>>,
    Path(deployment): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    if deployment != "emb" || query.get("api-version").map(String::as_str) != Some("2024-10-21") {
        return Err(StatusCode::NOT_FOUND);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let credential = match (header("api-key"), header("authorization")) {
        (Some(key), None) => format!("api-key {key}"),
        (None, Some(bearer)) => bearer.replacen("Bearer ", "bearer ", 1),
        _ => return Err(StatusCode::UNAUTHORIZED),
    };
    let accepted = credential == "api-key test-key" || credential.starts_with("bearer mi-token-");
    state.credentials.lock().expect("lock").push(credential);
    if !accepted {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if state.fail.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let inputs: Vec<String> =
        serde_json::from_value(body["input"].clone()).map_err(|_| StatusCode::BAD_REQUEST)?;
    state.requests.lock().expect("lock").push(inputs.len());
    state.texts.fetch_add(inputs.len(), Ordering::SeqCst);
    // Answer out of order: the client must sort by `index`.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embed(text)}))
        .collect();
    Ok(Json(
        json!({"object": "list", "data": data, "model": "scripted"}),
    ))
}

async fn scripted_server() -> (String, Arc<Scripted>) {
    let state = Arc::new(Scripted::default());
    let app = Router::new()
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(embeddings),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), state)
}

/// The settings that point the service at the scripted embedding endpoint.
fn azure_env(endpoint: &str) -> [(&'static str, &str); 3] {
    [
        ("AZURE_OPENAI_ENDPOINT", endpoint),
        ("AZURE_OPENAI_EMBEDDING_DEPLOYMENT", "emb"),
        ("AZURE_OPENAI_API_KEY", "test-key"),
    ]
}

/// `search_knowledge_base` for `query`, through a new MCP session.
async fn search(server: &Server, query: &str) -> Value {
    let c = server.client().await;
    ok(&c, "search_knowledge_base", json!({ "query": query })).await
}

/// Searches for the overage policy, which both rankings must find first.
async fn hybrid_overage_search(server: &Server) {
    let hits = search(server, "data overage policy").await;
    assert_eq!(hits["mode"], "hybrid");
    assert_eq!(hits["results"][0]["title"], "Data Overage Policy");
}

#[tokio::test]
async fn documents_are_embedded_once_and_search_blends_both_rankings() {
    let (endpoint, scripted) = scripted_server().await;
    let env = azure_env(&endpoint);
    let server = Server::start_with(&env).await;
    assert_eq!(
        *scripted.requests.lock().expect("lock"),
        vec![17],
        "all documents in one batch"
    );
    let ready = server.readyz().await;
    assert_eq!(ready["search"], "hybrid");

    hybrid_overage_search(&server).await;
    assert_eq!(
        scripted.texts.load(Ordering::SeqCst),
        18,
        "the query was embedded too"
    );
    assert!(
        !server.logs().contains("test-key"),
        "the API key never reaches the log"
    );

    // A restart reuses the stored vectors: only queries are embedded from now on.
    let (dir, _) = server.stop().await;
    let server = Server::start_in(dir, &env).await;
    assert_eq!(
        scripted.requests.lock().expect("lock").len(),
        2,
        "no new document batch"
    );

    // When the embedding service fails, search still answers, lexically.
    scripted.fail.store(true, Ordering::SeqCst);
    let hits = search(&server, "refund for a returned phone").await;
    assert_eq!(hits["results"][0]["title"], "Returns and Refunds Policy");
    assert!(server.logs().contains("query embedding failed"));
}

#[tokio::test]
async fn an_unreachable_embedding_service_at_start_leaves_search_lexical() {
    let (endpoint, scripted) = scripted_server().await;
    scripted.fail.store(true, Ordering::SeqCst);
    let server = Server::start_with(&azure_env(&endpoint)).await;
    let ready = server.readyz().await;
    assert_eq!(ready["search"], "lexical");
    let hits = search(&server, "data overage policy").await;
    assert_eq!(hits["results"][0]["title"], "Data Overage Policy");
}

#[tokio::test]
async fn with_a_managed_identity_and_no_key_embeddings_carry_its_token() {
    let identity = ManagedIdentity::spawn(Duration::from_secs(3600))
        .await
        .expect("identity endpoint");
    let (endpoint, scripted) = scripted_server().await;
    let [
        (endpoint_var, identity_endpoint),
        (header_var, identity_header),
    ] = identity.env();
    let env = [
        ("AZURE_OPENAI_ENDPOINT", endpoint.as_str()),
        ("AZURE_OPENAI_EMBEDDING_DEPLOYMENT", "emb"),
        ("AZURE_CREDENTIAL", "managed-identity"),
        (endpoint_var, identity_endpoint.as_str()),
        (header_var, identity_header.as_str()),
    ];
    let server = Server::start_with(&env).await;
    assert_eq!(server.readyz().await["search"], "hybrid");
    hybrid_overage_search(&server).await;

    // The documents at start and the query: one token, reused while it is fresh.
    assert_eq!(
        *scripted.credentials.lock().expect("lock"),
        ["bearer mi-token-1", "bearer mi-token-1"]
    );
    let requests = identity.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].secret_ok);
    assert_eq!(
        requests[0].resource.as_deref(),
        Some("https://cognitiveservices.azure.com")
    );
    assert_eq!(requests[0].client_id, None, "the system-assigned identity");
    assert!(
        !server.logs().contains("mi-token-1"),
        "tokens never reach the log"
    );
}
