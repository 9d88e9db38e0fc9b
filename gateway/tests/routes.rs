//! What each route lets through, on live traffic: a token is accepted only on the route it was
//! issued for (RFC 8707; the MCP authorization specification), a delegated token not at all, and
//! only a route's MCP endpoint reaches its backend: its health and readiness endpoints, and
//! anything else under the prefix, get the gateway's 404 before any token check.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use devstack::idp::{TokenSpec, defaults};
use serde_json::{Value, json};

/// Three routes to `upstream`, all admitting Northwind so the tenant check never decides:
/// `/contoso-mcp` and `/fabrikam-mcp` with their default audience (the resource URL), and
/// `/woodgrove-mcp` listing an application ID URI instead, as a route behind Entra ID would.
fn routes(upstream: &str) -> String {
    let route = |name: &str, extra: &str| {
        format!(
            r#"
            [[routes]]
            name = "{name}"
            prefix = "/{name}-mcp"
            upstreams = ["{upstream}"]
            allowed_tenants = ["{northwind}"]
            {extra}
            "#,
            northwind = defaults::NORTHWIND,
        )
    };
    [
        route("contoso", ""),
        route("fabrikam", ""),
        route("woodgrove", r#"audiences = ["api://woodgrove-mcp"]"#),
    ]
    .concat()
}

fn challenge(gateway: &Gateway, prefix: &str) -> String {
    format!(
        "Bearer resource_metadata=\"{}\", error=\"invalid_token\"",
        gateway.url(&format!(
            "/.well-known/oauth-protected-resource{prefix}/mcp"
        ))
    )
}

/// `tools/list` with `token` at the MCP endpoint of `prefix`.
async fn call(gateway: &Gateway, prefix: &str, token: &str) -> reqwest::Response {
    mcp_post(gateway.url(&format!("{prefix}/mcp")), TOOLS_LIST)
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn refused_as_invalid(gateway: &Gateway, prefix: &str, token: &str) {
    let response = call(gateway, prefix, token).await;
    assert_eq!(response.status(), 401, "at {prefix}");
    assert_eq!(
        response.headers()["www-authenticate"],
        challenge(gateway, prefix).as_str(),
        "at {prefix}"
    );
    refusal(response, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_accepted_only_on_the_routes_it_was_issued_for() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = Gateway::start_with(&idp, &routes(&upstream)).await;
    let northwind = defaults::NORTHWIND;
    let (contoso, fabrikam) = (
        gateway.resource("/contoso-mcp"),
        gateway.resource("/fabrikam-mcp"),
    );

    // Issued for Fabrikam: refused at Contoso like any invalid token, and nothing forwarded.
    let for_fabrikam = mint_for(&idp, northwind, json!(fabrikam));
    refused_as_invalid(&gateway, "/contoso-mcp", &for_fabrikam).await;
    refused_as_invalid(&gateway, "/woodgrove-mcp", &for_fabrikam).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a refused token reaches nothing"
    );
    // ... and accepted where it was issued for.
    let response = call(&gateway, "/fabrikam-mcp", &for_fabrikam).await;
    assert_eq!(response.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The other way round.
    let for_contoso = mint_for(&idp, northwind, json!([contoso]));
    assert_eq!(
        call(&gateway, "/contoso-mcp", &for_contoso).await.status(),
        200
    );
    refused_as_invalid(&gateway, "/fabrikam-mcp", &for_contoso).await;

    // Issued for both: good on both, and on nothing else.
    let for_both = mint_for(&idp, northwind, json!([contoso, fabrikam]));
    for prefix in ["/contoso-mcp", "/fabrikam-mcp"] {
        assert_eq!(
            call(&gateway, prefix, &for_both).await.status(),
            200,
            "{prefix}"
        );
    }
    refused_as_invalid(&gateway, "/woodgrove-mcp", &for_both).await;

    // A route listing an application ID URI accepts that, and no longer its resource URL.
    let entra = mint_for(&idp, northwind, json!("api://woodgrove-mcp"));
    assert_eq!(call(&gateway, "/woodgrove-mcp", &entra).await.status(), 200);
    refused_as_invalid(&gateway, "/contoso-mcp", &entra).await;
    let by_url = mint_for(&idp, northwind, json!(gateway.resource("/woodgrove-mcp")));
    refused_as_invalid(&gateway, "/woodgrove-mcp", &by_url).await;

    // The IdP's default audience (what the backends accept) is no route's.
    let backend_only = idp.idp.mint(&TokenSpec::new(northwind, ["query"], "alice"));
    refused_as_invalid(&gateway, "/contoso-mcp", &backend_only).await;

    assert_eq!(hits.load(Ordering::SeqCst), 5, "only the accepted calls");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_token_is_refused_at_the_edge() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = Gateway::start_with(&idp, &routes(&upstream)).await;
    let mut spec = TokenSpec::new(defaults::NORTHWIND, ["query"], "alice");
    spec.extra
        .insert("aud".into(), json!(gateway.resource("/contoso-mcp")));
    let honest = idp.idp.mint(&spec);
    assert_eq!(call(&gateway, "/contoso-mcp", &honest).await.status(), 200);

    // The same token, but presented by an agent on alice's behalf (RFC 8693 `act`).
    spec.extra
        .insert("act".into(), json!({"sub": "contoso-agent"}));
    let delegated = idp.idp.mint(&spec);
    refused_as_invalid(&gateway, "/contoso-mcp", &delegated).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the delegated call reached nothing"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_mcp_endpoint_reaches_the_backend() {
    let idp = idp().await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = Gateway::start_with(&idp, &routes(&upstream)).await;
    let http = reqwest::Client::new();
    let token = gateway.token(&idp, defaults::NORTHWIND, "/contoso-mcp");

    // Paths under the prefix that are not the endpoint: 404, token or not, before any check.
    for path in [
        "/contoso-mcp/readyz",
        "/contoso-mcp/healthz",
        "/contoso-mcp/mcp/extra",
        "/contoso-mcp/",
        "/contoso-mcp",
        "/contoso-mcp/mcp/",
        "/contoso-mcp/.well-known/openid-configuration",
    ] {
        for with_token in [true, false] {
            let mut request = http.get(gateway.url(path));
            if with_token {
                request = request.bearer_auth(&token);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 404, "{path}");
            assert!(
                response.headers().get("www-authenticate").is_none(),
                "{path}: no token check"
            );
            let body = refusal(response, 404, "not_found").await;
            assert!(body["message"].is_string(), "{body}");
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the backend saw none of them"
    );

    // The endpoint itself, with any query, by each method of streamable HTTP.
    let response = get_as(&http, gateway.url("/contoso-mcp/mcp?x=1"), &token).await;
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.expect("JSON");
    assert_eq!(seen["uri"], "/mcp?x=1");
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let response = http
            .request(method.clone(), gateway.url("/contoso-mcp/mcp"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{method}");
        let seen: Value = response.json().await.expect("JSON");
        assert_eq!(seen["uri"], "/mcp", "{method}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Any other method: 405 naming the allowed ones, before the token check.
    for with_token in [true, false] {
        let mut request = http.put(gateway.url("/contoso-mcp/mcp"));
        if with_token {
            request = request.bearer_auth(&token);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.headers()["allow"], "POST, GET, DELETE");
        refusal(response, 405, "method_not_allowed").await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3, "nothing more forwarded");

    // The route's metadata, answered by the gateway itself at each of its paths.
    for path in [
        "/.well-known/oauth-protected-resource/contoso-mcp/mcp",
        "/contoso-mcp/.well-known/oauth-protected-resource",
        "/contoso-mcp/.well-known/oauth-protected-resource/mcp",
        "/contoso-mcp/mcp/.well-known/oauth-protected-resource",
    ] {
        let response = http.get(gateway.url(path)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let metadata: Value = response.json().await.expect("JSON");
        assert_eq!(
            metadata["resource"],
            gateway.resource("/contoso-mcp"),
            "{path}"
        );
        assert_eq!(metadata["authorization_servers"], json!([idp.url()]));
        assert_eq!(metadata["scopes_supported"], json!([]), "{path}");
    }
    // Behind Entra, the application ID URI is advertised as a scope.
    let metadata: Value = http
        .get(gateway.url("/.well-known/oauth-protected-resource/woodgrove-mcp/mcp"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(metadata["resource"], gateway.resource("/woodgrove-mcp"));
    assert_eq!(
        metadata["scopes_supported"],
        json!(["api://woodgrove-mcp/.default"])
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "metadata never goes upstream"
    );
    gateway.stop().await;
}
