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

use common::{Server, jwt_auth};
use devstack::{
    idp::{IdpConfig, TokenSpec, defaults},
    interop::{repo_root, require_peer, run_peer},
};

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
    run_peer(&python, &[client, &server.url(), &token], || server.logs()).await;
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
        &root.join("scripts/conformance.sh"),
        &[&server.url()],
        || server.logs(),
    )
    .await;
}
