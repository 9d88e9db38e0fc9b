//! `devstack` with no arguments, in process: the identity provider, the Contoso and Fabrikam
//! tools services, the Contoso experts and the gateway come up wired together with
//! authentication on. Through the
//! gateway, with real MCP calls: every tenant reaches exactly the routes the topology gives it,
//! a token is accepted only by the route (and the backend behind it) it was issued for, the
//! printed tokens work as their roles say, the experts act on delegated tokens, and the two
//! backends serve different data.

use devstack::{
    config::{DataArgs, StackArgs},
    idp::{TokenSpec, defaults},
    stack::{self, RunningStack},
};
use serde_json::{Value, json};
use shared::config::{LogFormat, TelemetryArgs};

/// Settings for the stack on `127.0.0.1:0` ports with its state in `dir`.
fn args(dir: &tempfile::TempDir) -> StackArgs {
    let any_port = || "127.0.0.1:0".parse().expect("addr");
    StackArgs {
        idp_bind: any_port(),
        tools_bind: any_port(),
        fabrikam_bind: any_port(),
        gateway_bind: any_port(),
        agent_bind: any_port(),
        token_lifetime_secs: 600,
        allow_open_network: false,
        data: DataArgs {
            data_dir: dir.path().join("devstack"),
        },
        telemetry: TelemetryArgs {
            log_format: LogFormat::Text,
            log_filter: "warn".into(),
            otel: Default::default(),
        },
    }
}

async fn start(dir: &tempfile::TempDir) -> RunningStack {
    stack::start(args(dir)).await.expect("stack starts")
}

/// An MCP JSON-RPC POST; the service is stateless, so no `initialize` comes first.
async fn mcp(url: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

/// `get_customer_detail` of `customer_id` at `url`: the status and the body.
async fn customer(url: &str, token: &str, customer_id: i64) -> (u16, Value) {
    let response = mcp(
        url,
        Some(token),
        json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "get_customer_detail", "arguments": {"customer_id": customer_id}},
        }),
    )
    .await;
    // The service answers plain JSON (not SSE) to calls that report no progress; refusals are
    // JSON too.
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// A `query` token of `tenant` (a name) for the gateway route called `route`.
fn token_for(stack: &RunningStack, tenant: &str, route: &str) -> String {
    let tid = stack.idp.tenant_id(tenant).expect("a known tenant");
    let prefix = match route {
        "contoso" => "/contoso-mcp",
        "fabrikam" => "/fabrikam-mcp",
        "contoso-agent" => "/contoso-agent",
        other => panic!("no route {other}"),
    };
    stack.idp.mint(&TokenSpec {
        audience: Some(format!("{}{prefix}/mcp", stack.gateway_url)),
        ..TokenSpec::new(&tid, ["query"], "query-user")
    })
}

/// The customer a successful `get_customer_detail` returned.
fn customer_of(body: &Value) -> &Value {
    assert_eq!(body["result"]["isError"], false, "{body}");
    &body["result"]["structuredContent"]
}

#[tokio::test]
async fn each_tenant_reaches_exactly_its_routes_through_the_gateway() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = start(&dir).await;
    let contoso = running.backend("contoso").expect("contoso backend");
    let fabrikam = running.backend("fabrikam").expect("fabrikam backend");
    assert!(contoso.mcp_url.starts_with(&running.gateway_url));
    assert!(contoso.mcp_url.ends_with("/contoso-mcp/mcp"));
    assert!(fabrikam.mcp_url.ends_with("/fabrikam-mcp/mcp"));

    let expected = [
        ("contoso", true, false),
        ("fabrikam", false, true),
        ("northwind", true, true),
        ("woodgrove", false, false),
    ];
    for (tenant, reaches_contoso, reaches_fabrikam) in expected {
        for (route, reaches) in [(contoso, reaches_contoso), (fabrikam, reaches_fabrikam)] {
            let name = route.backend.name;
            let token = token_for(&running, tenant, name);
            let (status, body) = customer(&route.mcp_url, &token, 251).await;
            if reaches {
                assert_eq!(status, 200, "{tenant} on {name}: {body}");
                assert_eq!(customer_of(&body)["first_name"], "John", "{body}");
            } else {
                assert_eq!(status, 403, "{tenant} on {name}: {body}");
                assert_eq!(
                    body["error"], "tenant_not_allowed",
                    "the gateway refused {tenant} on {name}, not the backend: {body}"
                );
            }
        }
    }

    // Past the gateway the backend applies the same list itself.
    for (tenant, url) in [
        ("woodgrove", &contoso.direct_mcp_url),
        ("woodgrove", &fabrikam.direct_mcp_url),
        ("fabrikam", &contoso.direct_mcp_url),
    ] {
        let route = if url == &contoso.direct_mcp_url {
            "contoso"
        } else {
            "fabrikam"
        };
        let (status, body) = customer(url, &token_for(&running, tenant, route), 251).await;
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(body["error"], "forbidden", "the backend refused: {body}");
    }

    // A token is good for the route it was issued for only: northwind may use both routes, but
    // its token for Fabrikam is refused at Contoso, by the gateway and by the backend alike.
    let for_fabrikam = token_for(&running, "northwind", "fabrikam");
    for url in [&contoso.mcp_url, &contoso.direct_mcp_url] {
        let (status, body) = customer(url, &for_fabrikam, 251).await;
        assert_eq!(status, 401, "a Fabrikam token at {url}: {body}");
    }
    let (status, _) = customer(&fabrikam.mcp_url, &for_fabrikam, 251).await;
    assert_eq!(status, 200);

    // The gateway forwards a route's MCP endpoint only: the backend's other paths stay inside.
    for path in [
        "/contoso-mcp/readyz",
        "/contoso-mcp/healthz",
        "/contoso-mcp/",
    ] {
        let response = reqwest::get(format!("{}{path}", running.gateway_url))
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{path}");
    }
    let anonymous = mcp(
        &contoso.mcp_url,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(anonymous.status(), 401, "authentication is on");
    running.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn the_two_backends_serve_different_random_customers_and_the_same_scenarios() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = start(&dir).await;
    let northwind_contoso = token_for(&running, "northwind", "contoso");
    let northwind_fabrikam = token_for(&running, "northwind", "fabrikam");
    let (contoso, fabrikam) = (
        running.backend("contoso").expect("contoso"),
        running.backend("fabrikam").expect("fabrikam"),
    );
    let person = |c: &Value| {
        ["first_name", "last_name", "email", "phone", "address"].map(|k| c[k].to_string())
    };

    let (_, at_contoso) = customer(&contoso.mcp_url, &northwind_contoso, 1).await;
    let (_, at_fabrikam) = customer(&fabrikam.mcp_url, &northwind_fabrikam, 1).await;
    let (at_contoso, at_fabrikam) = (customer_of(&at_contoso), customer_of(&at_fabrikam));
    assert_eq!(at_contoso["customer_id"], 1);
    assert_eq!(at_fabrikam["customer_id"], 1);
    assert_ne!(
        person(at_contoso),
        person(at_fabrikam),
        "customer 1 is someone else at each company"
    );

    let (_, john_contoso) = customer(&contoso.mcp_url, &northwind_contoso, 251).await;
    let (_, john_fabrikam) = customer(&fabrikam.mcp_url, &northwind_fabrikam, 251).await;
    assert_eq!(
        person(customer_of(&john_contoso)),
        person(customer_of(&john_fabrikam)),
        "the scenario customers are the same everywhere"
    );

    // Fabrikam has fewer random customers: its customer 200 does not exist.
    let (status, missing) = customer(&fabrikam.mcp_url, &northwind_fabrikam, 200).await;
    assert_eq!(status, 200);
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    let (_, present) = customer(&contoso.mcp_url, &northwind_contoso, 200).await;
    customer_of(&present);
    running.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn the_banner_lists_every_url_and_token_and_the_contoso_tokens_work_by_role() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = start(&dir).await;
    let banner = running.banner();
    assert!(banner.contains("authentication ON"), "{banner}");
    assert!(banner.contains(&running.issuer), "{banner}");
    for backend in &running.backends {
        assert!(banner.contains(&backend.mcp_url), "{banner}");
        assert!(banner.contains(&backend.direct_mcp_url), "{banner}");
    }
    for tid in [
        defaults::CONTOSO,
        defaults::FABRIKAM,
        defaults::NORTHWIND,
        defaults::WOODGROVE,
    ] {
        let row = banner
            .lines()
            .find(|l| l.contains(tid))
            .unwrap_or_else(|| panic!("a row for {tid} in {banner}"));
        let cells: Vec<&str> = row.split_whitespace().skip(2).collect();
        let expected = match tid {
            // /contoso-mcp, /fabrikam-mcp, /contoso-agent
            defaults::CONTOSO => ["yes", "403", "yes"],
            defaults::FABRIKAM => ["403", "yes", "403"],
            defaults::NORTHWIND => ["yes", "yes", "yes"],
            _ => ["403", "403", "403"],
        };
        assert_eq!(cells, expected, "{row}");
    }
    let tenants: Vec<&str> = running.tokens.iter().map(|t| t.tenant.as_str()).collect();
    for tenant in ["contoso", "fabrikam", "northwind", "woodgrove"] {
        assert!(
            tenants.contains(&tenant),
            "a token of {tenant}: {tenants:?}"
        );
    }

    let contoso_url = &running.backend("contoso").expect("contoso").mcp_url;
    let contoso_tokens = running
        .tokens
        .iter()
        .filter(|t| t.tenant == "contoso" && t.route == "contoso");
    assert_eq!(contoso_tokens.clone().count(), stack::SAMPLE_USERS.len());
    assert_eq!(
        running
            .tokens
            .iter()
            .filter(|t| t.tenant == "contoso" && t.route == "contoso-agent")
            .count(),
        stack::SAMPLE_USERS.len(),
        "every Contoso user gets a token for the experts too"
    );
    for sample in contoso_tokens {
        let (subject, roles) = (&sample.subject, &sample.roles);
        assert!(
            banner.contains(sample.token.as_str()),
            "{subject}'s token is printed"
        );
        let body: Value = mcp(
            contoso_url,
            Some(&sample.token),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await
        .json()
        .await
        .expect("JSON body");
        let names: Vec<&str> = body["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        // The least-privilege default: 15 read tools for any role, writes for their role only.
        let has = |role: &str| roles.iter().any(|r| r == role);
        let expected = 15 + 2 * usize::from(has("billing")) + 2 * usize::from(has("security"));
        assert_eq!(names.len(), expected, "{subject} {roles:?}: {names:?}");
        assert_eq!(names.contains(&"unlock_account"), has("security"));
        assert_eq!(names.contains(&"pay_invoice"), has("billing"));
    }
    running.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn a_taken_port_fails_the_start_naming_its_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = taken.local_addr().expect("address");
    for (setting, args) in [
        (
            "FABRIKAM_BIND_ADDR",
            StackArgs {
                fabrikam_bind: addr,
                ..args(&dir)
            },
        ),
        (
            "GATEWAY_BIND_ADDR",
            StackArgs {
                gateway_bind: addr,
                ..args(&dir)
            },
        ),
    ] {
        let error = stack::start(args).await.expect_err("the port is taken");
        let message = format!("{error:#}");
        assert!(
            message.contains(setting) && message.contains(&addr.to_string()),
            "{message}"
        );
    }
    // Ports are bound before anything starts: no database was created.
    assert!(!dir.path().join("devstack/contoso.db").exists());
}

#[tokio::test]
async fn the_contoso_experts_answer_through_the_gateway_for_the_contoso_tenants_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stack = start(&dir).await;
    let url = &stack.agents.mcp_url;
    assert!(url.ends_with("/contoso-agent/mcp"), "{url}");
    assert!(stack.banner().contains(url.as_str()));
    let question = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "ask_billing_expert",
            "arguments": {"question": "Why is my bill so high this month? I'm customer 251."}
        },
    });
    let contoso = stack
        .token_of("contoso", "contoso-agent")
        .expect("a contoso token for the experts");
    let response = mcp(url, Some(contoso), question.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let answer = &body["result"]["structuredContent"];
    assert_eq!(answer["domain"], "billing", "{body}");
    assert_eq!(answer["status"], "done", "{body}");
    let text = answer["answer"].as_str().expect("text");
    assert!(text.contains("offline planner"), "{text}");
    assert!(text.contains("100.00"), "the facts of customer 251: {text}");

    // The expert's inner calls went to the tools service on a delegated token: the caller's
    // (for the experts' route) would not have been accepted there.
    let calls = answer["tool_calls"].as_array().expect("tool calls");
    assert!(!calls.is_empty(), "{body}");

    for tenant in ["fabrikam", "woodgrove"] {
        let token = token_for(&stack, tenant, "contoso-agent");
        let response = mcp(url, Some(&token), question.clone()).await;
        assert_eq!(response.status(), 403, "{tenant}");
    }
    // A token for the Contoso tools is no token for the experts.
    let for_tools = stack.token_of("contoso", "contoso").expect("a token");
    let response = mcp(url, Some(for_tools), question.clone()).await;
    assert_eq!(response.status(), 401);
    stack.stop().await.expect("stops");
}
