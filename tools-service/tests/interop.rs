//! Interop with third-party MCP peers, against the real binary:
//! - the official Python SDK (`mcp`) as a client: `tools-service/tests/interop/python_client.py`,
//!   against a service that verifies tokens, with a real one from a development identity provider;
//! - the official conformance suite (`@modelcontextprotocol/conformance`): `scripts/conformance.sh`,
//!   which compares the outcome with `scripts/interop/conformance-expected-failures.txt`. The
//!   suite cannot send tokens, so it runs against `DISABLE_AUTH=true`.
//!
//! The peers live in `<repo>/.interop/`, installed by `scripts/setup-interop.sh`. These tests are
//! ignored by a plain `cargo test`; `scripts/test.sh` installs the peers and runs them with
//! `--run-ignored all`. Run without the peers, they fail and say how to install them.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use common::{Server, jwt_auth};
use devstack::idp::{IdpConfig, TokenSpec, defaults};
use tokio::process::Command;

/// Both peers finish in seconds; this only stops a hung peer from hanging the test run.
const PEER_TIMEOUT: Duration = Duration::from_secs(600);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// Fails the test (never skips it) when a peer is not installed.
fn require_peer(path: &Path) {
    assert!(
        path.exists(),
        "interop peer not installed: {} is missing. Run scripts/setup-interop.sh \
         (or scripts/test.sh, which runs it) first.",
        path.display()
    );
}

/// Runs a peer against `server` to completion and asserts that it exits with status 0, showing
/// its output and the server's log if not.
async fn run_peer(server: &Server, program: &Path, args: &[&str]) {
    let label = format!("{} {}", program.display(), args.join(" "));
    let child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
    let output = tokio::time::timeout(PEER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{label} did not finish within {PEER_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let shown = format!(
        "$ {label}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{label} failed ({})\n{shown}\n--- tools-service log\n{}",
        output.status,
        server.logs()
    );
    eprintln!("{shown}");
}

#[tokio::test]
#[ignore = "needs the interop peers: run scripts/test.sh (or scripts/setup-interop.sh first)"]
async fn python_sdk_client() {
    let root = repo_root();
    let python = root.join(".interop/venv/bin/python");
    require_peer(&python);
    let idp = devstack::idp::spawn(IdpConfig::default())
        .await
        .expect("identity provider starts");
    let server = Server::start_with(&jwt_auth(idp.url())).await;
    let token = idp.idp.mint(&TokenSpec::new(
        defaults::CONTOSO,
        defaults::ROLES,
        "python-sdk",
    ));
    let client = root.join("tools-service/tests/interop/python_client.py");
    let client = client.to_str().expect("utf-8 path");
    run_peer(&server, &python, &[client, &server.url(), &token]).await;
}

#[tokio::test]
#[ignore = "needs the interop peers: run scripts/test.sh (or scripts/setup-interop.sh first)"]
async fn conformance_suite() {
    let root = repo_root();
    require_peer(&root.join(".interop/venv/bin/python"));
    require_peer(&root.join(".interop/node/node_modules/node/bin/node"));
    require_peer(
        &root.join(".interop/node/node_modules/@modelcontextprotocol/conformance/dist/index.js"),
    );
    // dns-rebinding-protection expects the default loopback-only host guard; say so explicitly.
    let server = Server::start_with(&[("ALLOWED_HOSTS", "localhost,127.0.0.1,::1")]).await;
    run_peer(
        &server,
        &root.join("scripts/conformance.sh"),
        &[&server.url()],
    )
    .await;
}
