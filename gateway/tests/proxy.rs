//! The proxy on live traffic: a real gateway on `127.0.0.1:0` in front of a real tools-service
//! (or a small echo upstream that shows what it received), with tokens from the devstack IdP.
//! Its liveness probe, every refusal status, the metadata, a real MCP `tools/list` through the gateway, identity
//! headers replaced, a dead backend and an oversized body.

mod common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use common::*;
use devstack::idp::defaults;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_metadata_and_a_real_tools_list_through_the_gateway() {
    let idp = idp().await;
    let backend = tools_service(idp.url()).await;
    let gateway = Gateway::start(&idp, &backend.addr).await;
    let http = reqwest::Client::new();

    // The gateway's own liveness, without a token: for container engines and Container Apps.
    let response = http
        .get(gateway.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let alive: Value = response.json().await.expect("JSON");
    assert_eq!(alive, json!({"status": "ok"}));
    // Only the probe: a backend's own health stays inside.
    let response = http
        .get(gateway.url("/contoso-mcp/healthz"))
        .send()
        .await
        .expect("request");
    refusal(response, 404, "not_found").await;

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

    // A valid token, but issued for the backends' audience and not for this route: 401.
    let response = mcp_post(gateway.url("/contoso-mcp/mcp"), TOOLS_LIST)
        .bearer_auth(token(&idp, defaults::CONTOSO))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.headers()["www-authenticate"],
        format!("Bearer resource_metadata=\"{metadata_url}\", error=\"invalid_token\"").as_str()
    );
    refusal(response, 401, "invalid_token").await;

    // A valid token for the route, of a tenant the route does not admit: 403.
    let response = mcp_post(gateway.url("/contoso-mcp/mcp"), TOOLS_LIST)
        .bearer_auth(gateway.token(&idp, defaults::FABRIKAM, "/contoso-mcp"))
        .send()
        .await
        .expect("request");
    refusal(response, 403, "tenant_not_allowed").await;

    // Contoso: the backend's own answer, the same as direct, with the gateway's request id.
    let contoso = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");
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
        mcp_post(format!("http://{}/mcp", backend.addr), TOOLS_LIST)
            .bearer_auth(&contoso)
            .send()
            .await
            .expect("request"),
    )
    .await;
    // How many depends on the backend's role policy, not on the gateway.
    assert!(!tools.is_empty(), "{via_gateway}");
    assert_eq!(via_gateway["result"], direct["result"]);

    // A 2 MiB body: 413 before anything is forwarded.
    let response = mcp_post(gateway.url("/contoso-mcp/mcp"), "x".repeat(2 * 1024 * 1024))
        .bearer_auth(&contoso)
        .send()
        .await
        .expect("request");
    refusal(response, 413, "body_too_large").await;

    gateway.stop().await;
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_are_the_gateways_and_refused_tenants_reach_nothing() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = Gateway::start(&idp, &upstream).await;
    let http = reqwest::Client::new();

    let response = http
        .get(gateway.url("/contoso-mcp/mcp?a=1"))
        .bearer_auth(gateway.token(&idp, defaults::FABRIKAM, "/contoso-mcp"))
        .header("x-tenant-id", defaults::CONTOSO)
        .send()
        .await
        .expect("request");
    refusal(response, 403, "tenant_not_allowed").await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing forwarded");

    let contoso = gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = http
        .get(gateway.url("/contoso-mcp/mcp?a=1"))
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
    assert_eq!(seen["uri"], "/mcp?a=1", "prefix stripped, query kept");
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

    // Without a usable traceparent the gateway starts a trace whose id is the request id.
    for sent in [None, Some("00-not-a-trace-01")] {
        let mut request = http
            .get(gateway.url("/contoso-mcp/mcp"))
            .bearer_auth(&contoso);
        if let Some(sent) = sent {
            request = request.header("traceparent", sent);
        }
        let response = request.send().await.expect("request");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .expect("ASCII")
            .replace('-', "");
        let seen: Value = response.json().await.expect("JSON");
        let started = seen["headers"]["traceparent"][0]
            .as_str()
            .unwrap_or_else(|| panic!("a traceparent: {seen}"));
        let parts: Vec<&str> = started.split('-').collect();
        assert_eq!(parts.len(), 4, "{started}");
        assert_eq!(
            (parts[0], parts[1], parts[3]),
            ("00", request_id.as_str(), "01")
        );
        assert_eq!(parts[2].len(), 16, "{started}");
        assert_ne!(parts[2], "0000000000000000");
    }

    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_answered_with_json_at_once() {
    let idp = idp().await;
    let dead = dead_address().await;
    let gateway = Gateway::start(&idp, &dead).await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(gateway.url("/contoso-mcp/mcp"))
        .bearer_auth(gateway.token(&idp, defaults::CONTOSO, "/contoso-mcp"))
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
