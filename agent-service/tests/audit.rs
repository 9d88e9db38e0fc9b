//! The audit trail of the agent service: over real MCP HTTP with real tokens, every expert call
//! (answered, failed, refused; delegated or not) is one stored event with the caller, the
//! redacted question and the outcome, and the binary's `audit` subcommand prints a tenant's
//! events and no other tenant's.
//!
//! Events are read after the service stopped: it stores them off the request path and writes
//! what is pending when it shuts down, so reading then is exact.

mod common;

use std::path::Path;

use common::*;
use devstack::idp::{TokenSpec, defaults};
use serde_json::{Map, json};
use shared::audit::{AuditEvent, AuditFilter, Outcome, read_events};

const EXPERT: &str = "ask_billing_expert";
const QUESTION: &str = "Why is my bill so high this month? I am customer 251.";
/// A client that acts for people towards the agent service (a portal), trusted by it.
const PORTAL: &str = "contoso-portal";

/// A token for the agent service of `subject` in `tenant`, issued to `client`, acting for the
/// subject through `actor` if given.
fn token(
    stack: &Stack,
    tenant: &str,
    subject: &str,
    roles: &[&str],
    client: &str,
    actor: Option<&str>,
) -> String {
    let mut extra = Map::new();
    if let Some(actor) = actor {
        extra.insert("act".into(), json!({"sub": actor}));
    }
    stack.idp.idp.mint(&TokenSpec {
        audience: Some(AGENT_AUDIENCE.to_owned()),
        client_id: Some(client.to_owned()),
        extra,
        ..TokenSpec::new(tenant, roles.iter().copied(), subject)
    })
}

/// Every event of `tenant`.
fn of(tenant: &str) -> AuditFilter {
    AuditFilter {
        tenant: Some(tenant.to_owned()),
        since: None,
        limit: 10_000,
    }
}

async fn stored(db: &Path, tenant: &str) -> Vec<AuditEvent> {
    read_events(db, &of(tenant))
        .await
        .expect("the stored events")
}

/// A loopback address nothing listens on.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}/mcp")
}

/// A tools service, and an agent service with its database in a fresh folder, trusting the
/// portal to act for people.
struct Setup {
    stack: Stack,
    agent: AgentService,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let stack = Stack::start(20).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("agent.db");
    let agent = AgentService::start(&stack, &db, &["--trusted-actors", PORTAL]).await;
    Setup {
        stack,
        agent,
        db,
        _dir: dir,
    }
}

fn alice(stack: &Stack) -> String {
    token(
        stack,
        defaults::CONTOSO,
        "alice",
        &["query", "billing"],
        "contoso-billing",
        None,
    )
}

#[tokio::test]
async fn every_expert_call_answered_refused_or_failed_is_one_event() {
    let Setup {
        stack,
        agent,
        db,
        _dir,
    } = setup().await;
    let alice = alice(&stack);
    let bob = token(
        &stack,
        defaults::CONTOSO,
        "bob",
        &["query"],
        "contoso-query",
        None,
    );

    // Answered.
    let answered = ask(&agent.url, &alice, EXPERT, json!({"question": QUESTION})).await;
    assert_eq!(answered["isError"], false, "{answered}");
    let conversation = answered["structuredContent"]["conversation_id"]
        .as_str()
        .expect("a conversation id")
        .to_owned();
    // Invalid arguments.
    let empty = ask(&agent.url, &alice, EXPERT, json!({"question": "   "})).await;
    assert_eq!(empty["isError"], true, "{empty}");
    // Someone else's conversation: refused.
    let not_bobs = ask(
        &agent.url,
        &bob,
        EXPERT,
        json!({"question": "And now?", "conversation_id": conversation}),
    )
    .await;
    assert_eq!(not_bobs["isError"], true, "{not_bobs}");
    // An unknown tool: a protocol error, and refused.
    let unknown = post(
        &agent.url,
        &alice,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "ask_everything_expert", "arguments": {"question": "?"}}}),
    )
    .await;
    assert!(unknown.text().await.expect("body").contains("\"error\""));
    agent.stop().await;

    // A replica on the same database whose tools service is unreachable: the expert answers
    // with status error, a tool error in the audit trail.
    let dead = dead_url().await;
    let cut_off = AgentService::start(
        &stack,
        &db,
        &["--mcp-server-uri", &dead, "--trusted-actors", PORTAL],
    )
    .await;
    let failed = ask(&cut_off.url, &alice, EXPERT, json!({"question": QUESTION})).await;
    assert_eq!(failed["structuredContent"]["status"], "error", "{failed}");
    cut_off.stop().await;

    let events = stored(&db, defaults::CONTOSO).await;
    let summary: Vec<(&str, &str, &Outcome)> = events
        .iter()
        .map(|e| (e.subject.as_str(), e.tool.as_str(), &e.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            ("alice", EXPERT, &Outcome::Ok),
            ("alice", EXPERT, &Outcome::tool_error("invalid_arguments")),
            (
                "bob",
                EXPERT,
                &Outcome::refused("conversation_not_open", None)
            ),
            (
                "alice",
                "ask_everything_expert",
                &Outcome::refused("unknown_tool", None)
            ),
            ("alice", EXPERT, &Outcome::tool_error("expert_error")),
        ],
        "one event per call, in order: {events:#?}"
    );
    for event in &events {
        assert_eq!(event.service, "agent-service");
        assert_eq!(event.tenant, defaults::CONTOSO);
        assert!(event.actors.is_empty(), "not delegated: {event:?}");
        assert!(event.request_id.is_some(), "{event:?}");
    }
    assert_eq!(events[0].client.as_deref(), Some("contoso-billing"));
    assert_eq!(events[2].client.as_deref(), Some("contoso-query"));
    // The question is reduced to its length; the conversation id is kept.
    let chars = format!("<{} chars>", QUESTION.chars().count());
    assert_eq!(events[0].arguments, json!({"question": chars}));
    assert_eq!(
        events[2].arguments,
        json!({"question": "<8 chars>", "conversation_id": conversation})
    );
}

#[tokio::test]
async fn a_delegated_callers_event_carries_the_actor_chain() {
    let Setup {
        stack,
        agent,
        db,
        _dir,
    } = setup().await;
    // A portal acting for alice (RFC 8693 `act`).
    let portal = token(
        &stack,
        defaults::CONTOSO,
        "alice",
        &["query", "billing"],
        PORTAL,
        Some(PORTAL),
    );
    ask(&agent.url, &portal, EXPERT, json!({"question": ""})).await;
    agent.stop().await;
    let events = stored(&db, defaults::CONTOSO).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].subject, "alice");
    assert_eq!(events[0].client.as_deref(), Some(PORTAL));
    assert_eq!(events[0].actors, [PORTAL]);
    assert_eq!(events[0].outcome, Outcome::tool_error("invalid_arguments"));
}

#[tokio::test]
async fn the_audit_subcommand_prints_a_tenants_events_and_no_others() {
    let Setup {
        stack,
        agent,
        db,
        _dir,
    } = setup().await;
    let alice = alice(&stack);
    let frank = token(
        &stack,
        defaults::FABRIKAM,
        "frank",
        &["query"],
        "fabrikam-query",
        None,
    );
    for question in ["", "  ", "   "] {
        ask(&agent.url, &alice, EXPERT, json!({"question": question})).await;
        ask(&agent.url, &frank, EXPERT, json!({"question": question})).await;
    }
    agent.stop().await;

    // As a process, not starting the server.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-service"))
        .env_clear()
        .args(["audit", "--tenant", defaults::CONTOSO, "--since", "1h"])
        .arg("--db-path")
        .arg(&db)
        .output()
        .await
        .expect("run agent-service audit");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Vec<AuditEvent> = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON event"))
        .collect();
    assert_eq!(
        printed,
        stored(&db, defaults::CONTOSO).await,
        "the stored events, oldest first"
    );
    let questions: Vec<&str> = printed
        .iter()
        .map(|e| e.arguments["question"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(questions, ["<0 chars>", "<2 chars>", "<3 chars>"]);
    assert!(printed.iter().all(|e| e.subject == "alice"));
    assert_eq!(stored(&db, defaults::FABRIKAM).await.len(), 3);
}
