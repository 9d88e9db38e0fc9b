//! Interop with the official Python MCP SDK (`mcp`) as a client of the agent service:
//! `agent-service/tests/interop/python_client.py`, against an in-process agent answering with the
//! offline planner, in front of a tools service, both verifying real tokens of a development
//! identity provider. Once stateless, once with MCP sessions (`--mcp-sessions true`), which the
//! SDK (a client of a protocol older than 2026-07-28) holds and which continue its conversation.
//!
//! The SDK lives in `<repo>/.interop/venv`, installed by `scripts/setup-interop.sh`. These tests
//! are ignored by a plain `cargo test`; `scripts/test.sh` installs the SDK and runs them with
//! `--run-ignored all`. Run without it, they fail and say how to install it.

mod common;

use common::{AgentService, Stack, logs};
use devstack::{
    idp::{TokenSpec, defaults},
    interop::{repo_root, require_peer, run_peer},
};

/// The Python SDK client against an agent service with `flags`, answering with the offline
/// planner (no model flags); `client_flags` tell the client what to expect.
async fn python_sdk_client(flags: &[&str], client_flags: &[&str]) {
    let root = repo_root();
    let python = root.join(".interop/venv/bin/python");
    require_peer(&python);
    // Nine diagnosis steps of 50 ms: progress to relay, quickly.
    let stack = Stack::start(50).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = AgentService::start(&stack, &dir.path().join("agent.db"), flags).await;
    let token = stack
        .idp
        .idp
        .mint(&TokenSpec::new(defaults::CONTOSO, ["query"], "python-sdk"));
    let client = root.join("agent-service/tests/interop/python_client.py");
    let url = format!("{}/mcp", agent.url);
    let mut args = vec![client.to_str().expect("utf-8 path"), &url, &token];
    args.extend(client_flags);
    run_peer(&python, &args, logs).await;
}

#[tokio::test]
#[ignore = "needs the interop peers: run scripts/test.sh (or scripts/setup-interop.sh first)"]
async fn python_sdk_client_stateless() {
    python_sdk_client(&[], &[]).await;
}

#[tokio::test]
#[ignore = "needs the interop peers: run scripts/test.sh (or scripts/setup-interop.sh first)"]
async fn python_sdk_client_with_mcp_sessions() {
    python_sdk_client(&["--mcp-sessions", "true"], &["--sessions"]).await;
}
