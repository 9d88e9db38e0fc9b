//! The compose stack (`compose.yaml`) on real containers under podman, as a user runs it: the
//! images built from `deploy/Dockerfile` (from this build's binaries, `BINARIES=prebuilt`), the
//! stack brought up with `podman-compose`, and everything asked through the gateway published on
//! `127.0.0.1:8080` with tokens from the identity provider's container, as the README says:
//! each of the four tenants reaches exactly its routes, an expert answers, a payment survives
//! `down` and `up` on the named volumes (and so does the identity provider's key), and `down`
//! leaves no container behind.
//!
//! Needs podman, `podman-compose` and the `debian:bookworm-slim` base image (`.ci/run` prepares
//! all three on a fresh machine, `scripts/setup-interop.sh` installs podman-compose); without
//! them the test is skipped with a note, unless `REQUIRE_CONTAINERS=1` (the test command).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use devstack::{idp::defaults, load};
use serde_json::{Value, json};

/// The compose project: its own name, so the test never touches a stack someone runs by hand.
const PROJECT: &str = "mcp-smoke";
const GATEWAY: &str = "http://127.0.0.1:8080";
/// The stack's containers, as podman-compose names them (`<project>_<service>_1`).
const SERVICES: [&str; 5] = [
    "idp",
    "tools-contoso",
    "tools-fabrikam",
    "agent-contoso",
    "gateway",
];
/// How long the stack may take to be healthy: the services fetch the issuer's keys and the tools
/// services seed their databases on a first start.
const STARTUP: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// `podman-compose` from the venv `scripts/setup-interop.sh` makes, else from PATH.
fn podman_compose() -> Option<PathBuf> {
    let venv = repo().join(".interop/deploy-venv/bin/podman-compose");
    if venv.is_file() {
        return Some(venv);
    }
    let on_path = Command::new("podman-compose").arg("--version").output();
    on_path
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("podman-compose"))
}

/// What is missing to run containers here, if anything.
fn missing() -> Option<String> {
    let podman = Command::new("podman").arg("--version").output();
    if !podman.is_ok_and(|o| o.status.success()) {
        return Some("podman is not installed".to_owned());
    }
    if podman_compose().is_none() {
        return Some("podman-compose is not installed".to_owned());
    }
    let base = Command::new("podman")
        .args(["image", "exists", "docker.io/library/debian:bookworm-slim"])
        .status();
    if !base.is_ok_and(|s| s.success()) {
        return Some("the debian:bookworm-slim base image is not there".to_owned());
    }
    None
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The stack of [`PROJECT`]; taken down with its volumes when dropped, whatever happened.
struct Stack {
    compose: PathBuf,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.compose);
        command
            .current_dir(repo())
            .env("BINARIES", "prebuilt")
            .args(["--project-name", PROJECT])
            .args(args);
        command
    }

    /// Builds the images from the binaries next to this test's, stripped into `deploy/bin/`.
    fn build(&self) {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_devstack"))
            .parent()
            .expect("the binaries' folder");
        run(Command::new(repo().join("scripts/container-binaries.sh")).env("BIN_DIR", bin_dir));
        run(&mut self.compose(&["--podman-build-args=--format docker", "build"]));
    }

    fn up(&self) {
        run(&mut self.compose(&["up", "-d"]));
    }

    fn down(&self, volumes: bool) {
        let args: &[&str] = if volumes { &["down", "-v"] } else { &["down"] };
        run(&mut self.compose(args));
    }

    /// Waits until every container's health check passes. Podman without systemd runs no health
    /// check by itself, so each is run here, as the engine would on its interval.
    async fn healthy(&self) {
        let deadline = Instant::now() + STARTUP;
        let mut waiting: Vec<&str> = SERVICES.to_vec();
        while !waiting.is_empty() {
            waiting.retain(|service| {
                let check = Command::new("podman")
                    .args(["healthcheck", "run", &container(service)])
                    .output();
                !check.is_ok_and(|o| o.status.success())
            });
            if Instant::now() > deadline {
                let logs: Vec<String> = waiting.iter().map(|s| self.logs(s)).collect();
                panic!(
                    "not healthy after {STARTUP:?}: {waiting:?}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn logs(&self, service: &str) -> String {
        let output = Command::new("podman")
            .args(["logs", "--tail", "20", &container(service)])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            })
            .unwrap_or_default();
        format!("--- {service}:\n{output}")
    }

    /// The containers of the project, running or not.
    fn containers(&self) -> Vec<String> {
        let label = format!("label=io.podman.compose.project={PROJECT}");
        let output = run(Command::new("podman").args([
            "ps",
            "--all",
            "--filter",
            &label,
            "--format",
            "{{.Names}}",
        ]));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A token from the identity provider's container, as the README tells people to get one.
    fn token(&self, tenant: &str, roles: &str, route: &str) -> String {
        let resource = format!("{GATEWAY}/{route}/mcp");
        let output = run(Command::new("podman").args([
            "exec",
            &container("idp"),
            "devstack",
            "token",
            "--tenant",
            tenant,
            "--roles",
            roles,
            "--resource",
            &resource,
        ]));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v"]).output();
    }
}

fn container(service: &str) -> String {
    format!("{PROJECT}_{service}_1")
}

/// `tools/call` of `tool` on `route` through the gateway: the HTTP status and the JSON-RPC answer.
async fn call(route: &str, token: &str, tool: &str, arguments: Value) -> (u16, Value) {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    });
    let url = format!("{GATEWAY}/{route}/mcp");
    let response = load::mcp_post(&reqwest::Client::new(), &url, Some(token), body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, load::answer_in(&text))
}

/// The structured result of a successful tool call.
fn result<'a>(answer: &'a (u16, Value), what: &str) -> &'a Value {
    let (status, message) = answer;
    assert_eq!(*status, 200, "{what}: {message}");
    assert_ne!(message["result"]["isError"], true, "{what}: {message}");
    &message["result"]["structuredContent"]
}

/// Which routes each tenant reaches (devstack/src/topology.rs): the same as devstack's.
const ROUTES: [(&str, &[&str]); 4] = [
    ("contoso", &["contoso-mcp", "contoso-agent"]),
    ("fabrikam", &["fabrikam-mcp"]),
    (
        "northwind",
        &["contoso-mcp", "fabrikam-mcp", "contoso-agent"],
    ),
    ("woodgrove", &[]),
];

#[tokio::test]
async fn the_compose_stack_serves_each_tenant_its_routes_and_keeps_its_data() {
    if let Some(missing) = missing() {
        assert_ne!(
            std::env::var("REQUIRE_CONTAINERS").as_deref(),
            Ok("1"),
            "REQUIRE_CONTAINERS=1 but {missing} (see .ci/run)"
        );
        eprintln!("note: {missing}; the container test is skipped");
        return;
    }
    let stack = Stack {
        compose: podman_compose().expect("found above"),
    };
    // Leftovers of an interrupted run would hide a fresh start.
    stack.down(true);
    stack.build();

    let started = Instant::now();
    stack.up();
    stack.healthy().await;
    let healthy = started.elapsed();
    let query = stack.token("contoso", "query", "contoso-mcp");
    let first = call(
        "contoso-mcp",
        &query,
        "get_customer_detail",
        json!({"customer_id": 251}),
    )
    .await;
    result(&first, "the first call");
    eprintln!(
        "compose up: healthy after {:.1} s, first call answered after {:.1} s",
        healthy.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    for (tenant, reaches) in ROUTES {
        for route in ["contoso-mcp", "fabrikam-mcp", "contoso-agent"] {
            let token = stack.token(tenant, "query", route);
            let (tool, arguments) = if route == "contoso-agent" {
                (
                    "ask_billing_expert",
                    json!({"question": "What do I owe? I am customer 258."}),
                )
            } else {
                ("get_customer_detail", json!({"customer_id": 251}))
            };
            let answer = call(route, &token, tool, arguments).await;
            if reaches.contains(&route) {
                result(&answer, &format!("{tenant} on {route}"));
            } else {
                assert_eq!(answer.0, 403, "{tenant} on {route}: {}", answer.1);
            }
        }
    }

    // An expert answers, through the gateway, with the tools it calls over the compose network.
    let expert = stack.token("contoso", "query", "contoso-agent");
    let asked = call(
        "contoso-agent",
        &expert,
        "ask_billing_expert",
        json!({"question": "Why is my invoice overdue? I am customer 258."}),
    )
    .await;
    let answer = result(&asked, "the billing expert");
    assert_eq!(answer["status"], "done", "{answer}");

    // A payment, then down and up: the payment is still there, and a token signed before is
    // still good (the identity provider's key is in its volume too).
    let billing = stack.token("contoso", "billing", "contoso-mcp");
    let summary = |token: String| async move {
        let read = call(
            "contoso-mcp",
            &token,
            "get_billing_summary",
            json!({"customer_id": 258}),
        )
        .await;
        result(&read, "the billing summary").clone()
    };
    let before = summary(billing.clone()).await;
    let invoice = before["open_invoices"][0]["invoice_id"].clone();
    assert!(
        invoice.is_i64(),
        "an open invoice of customer 258: {before}"
    );
    let paid = call(
        "contoso-mcp",
        &billing,
        "pay_invoice",
        json!({"invoice_id": invoice, "amount": 1.00}),
    )
    .await;
    result(&paid, "the payment");
    let after = summary(billing.clone()).await;
    assert_ne!(after, before, "the payment shows in the summary");

    stack.down(false);
    assert_eq!(
        stack.containers(),
        Vec::<String>::new(),
        "down leaves nothing"
    );
    stack.up();
    stack.healthy().await;
    assert_eq!(
        summary(billing).await,
        after,
        "the payment survived down and up"
    );

    stack.down(true);
    assert_eq!(
        stack.containers(),
        Vec::<String>::new(),
        "down leaves nothing"
    );
}

#[test]
fn the_compose_routes_are_devstacks() {
    let tenants = [
        ("contoso", defaults::CONTOSO),
        ("fabrikam", defaults::FABRIKAM),
        ("northwind", defaults::NORTHWIND),
        ("woodgrove", defaults::WOODGROVE),
    ];
    // As the gateway container is told (ALLOW_PLAIN_HTTP_HOSTS): its issuer is `http://idp:4444`.
    shared::auth::jwks::allow_plain_http_to(&["idp".to_owned()]);
    let gateway = std::fs::read_to_string(repo().join("deploy/compose/gateway.toml"))
        .expect("deploy/compose/gateway.toml");
    let config = gateway::Config::from_toml(&gateway).expect("a valid gateway configuration");
    for (name, tid) in tenants {
        let reached: Vec<&str> = config
            .routes
            .iter()
            .filter(|r| r.admits(tid))
            .map(|r| r.prefix.trim_start_matches('/'))
            .collect();
        let expected = ROUTES.iter().find(|(t, _)| *t == name).expect("listed").1;
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        let mut reached = reached;
        reached.sort_unstable();
        assert_eq!(reached, expected, "{name}");
    }
}
