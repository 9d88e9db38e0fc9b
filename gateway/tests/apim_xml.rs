//! The committed API Management policies parsed with a real XML parser (roxmltree): each is
//! well-formed and says what the configuration says, in the order API Management must apply it.

use std::{fs, path::Path};

use gateway::{
    Config, apim,
    config::Route,
    policy::{Refusal, SPOOFABLE_HEADERS},
};
use roxmltree::{Document, Node};

const CONTOSO: &str = "c0a7050c-0000-4000-8000-000000000001";
const FABRIKAM: &str = "fab1ca70-0000-4000-8000-000000000002";
const NORTHWIND: &str = "4e077d00-0000-4000-8000-000000000003";

fn apim_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../apim"))
}

fn example_config() -> Config {
    Config::load(&apim_dir().join("gateway.toml")).expect("apim/gateway.toml is valid")
}

fn committed_policy(route: &Route) -> String {
    fs::read_to_string(apim_dir().join("policies").join(apim::file_name(route)))
        .expect("the committed policy (see apim_golden.rs to render it)")
}

fn elements<'a, 'input>(node: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(Node::is_element)
}

fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Node<'a, 'input> {
    elements(node)
        .find(|n| n.has_tag_name(name))
        .unwrap_or_else(|| panic!("<{}> has no <{name}>", node.tag_name().name()))
}

fn names<'a>(node: Node<'a, '_>) -> Vec<&'a str> {
    elements(node).map(|n| n.tag_name().name()).collect()
}

fn texts<'a>(node: Node<'a, '_>, name: &str) -> Vec<&'a str> {
    elements(node)
        .filter(|n| n.has_tag_name(name))
        .map(|n| n.text().unwrap_or_default())
        .collect()
}

fn attr<'a>(node: Node<'a, '_>, name: &str) -> &'a str {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name} attribute", node.tag_name().name()))
}

fn position(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("no <{name}> in {names:?}"))
}

/// Checks one route's policy against the configuration.
fn check_policy(config: &Config, route: &Route, xml: &str) {
    let doc = Document::parse(xml).unwrap_or_else(|e| panic!("{}: {e}", route.name));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "policies");
    assert_eq!(names(root), ["inbound", "backend", "outbound", "on-error"]);

    let inbound = child(root, "inbound");
    let order = names(inbound);
    assert_eq!(order[0], "base", "inherited policies run first");
    // The metadata, without a token; then authenticate, then limit, then forward.
    assert_eq!(
        order[1], "choose",
        "the metadata comes before the token check"
    );
    assert!(position(&order, "validate-jwt") < position(&order, "rate-limit-by-key"));
    assert!(position(&order, "rate-limit-by-key") < position(&order, "set-backend-service"));

    let jwt = child(inbound, "validate-jwt");
    assert_eq!(attr(jwt, "header-name"), "Authorization");
    assert_eq!(attr(jwt, "failed-validation-httpcode"), "401");
    assert_eq!(
        attr(jwt, "failed-validation-error-message"),
        Refusal::InvalidToken.message()
    );
    assert_eq!(
        attr(jwt, "clock-skew"),
        config.auth.leeway.as_secs().to_string()
    );
    assert_eq!(
        attr(child(jwt, "openid-config"), "url"),
        format!("{}/.well-known/openid-configuration", config.auth.issuer)
    );
    assert_eq!(
        texts(child(jwt, "audiences"), "audience"),
        route.audiences,
        "{}: this route's audiences, and only them",
        route.name
    );
    assert_eq!(
        texts(child(jwt, "issuers"), "issuer"),
        [config.auth.issuer.as_str()]
    );
    let claims: Vec<Node> = elements(child(jwt, "required-claims")).collect();
    assert_eq!(claims.len(), 1, "only tid is required");
    assert_eq!(attr(claims[0], "name"), "tid");
    assert_eq!(attr(claims[0], "match"), "any");
    assert_eq!(texts(claims[0], "value"), route.allowed_tenants);

    let limit = child(inbound, "rate-limit-by-key");
    assert_eq!(
        Some(attr(limit, "calls").to_owned()),
        route.rate_limit_per_minute.map(|n| n.to_string())
    );
    assert_eq!(attr(limit, "renewal-period"), "60");
    let key = attr(limit, "counter-key");
    assert!(
        key.starts_with(&format!("@(\"{}:\" + ", route.name)),
        "{key}"
    );
    assert!(key.contains("(Jwt)context.Variables[\"jwt\"]"), "{key}");
    assert!(key.contains("GetValueOrDefault(\"tid\""), "{key}");

    let headers: Vec<Node> = elements(inbound)
        .filter(|n| n.has_tag_name("set-header"))
        .collect();
    let deleted: Vec<&str> = headers
        .iter()
        .filter(|h| attr(**h, "exists-action") == "delete")
        .map(|h| attr(*h, "name"))
        .collect();
    for header in SPOOFABLE_HEADERS {
        assert!(deleted.contains(&header), "{header} is not deleted");
    }
    for header in ["X-Tenant-Id", "X-User-Roles", "X-Forwarded-Host"] {
        assert!(deleted.contains(&header), "{header} is not deleted");
    }
    let set = |name: &str| {
        headers
            .iter()
            .find(|h| attr(**h, "name") == name && attr(**h, "exists-action") == "override")
            .map(|h| child(*h, "value").text().unwrap_or_default())
            .unwrap_or_else(|| panic!("{name} is not set"))
    };
    assert!(set("X-Tenant-Id").contains("(Jwt)context.Variables[\"jwt\"]"));
    assert_eq!(set("X-Request-Id"), "@(context.RequestId.ToString())");
    let tenant_set = headers
        .iter()
        .position(|h| attr(*h, "name") == "X-Tenant-Id" && attr(*h, "exists-action") == "override");
    let tenant_deleted = headers
        .iter()
        .position(|h| attr(*h, "name") == "X-Tenant-Id" && attr(*h, "exists-action") == "delete");
    assert!(
        tenant_deleted < tenant_set,
        "the client's value goes before ours is set"
    );

    assert_eq!(
        attr(child(inbound, "set-backend-service"), "base-url"),
        route.apim_backend_url
    );
    let rewrite = child(inbound, "rewrite-uri");
    assert_eq!(attr(rewrite, "copy-unmatched-params"), "true");
    assert_eq!(attr(rewrite, "template"), "/mcp", "only the MCP endpoint");

    check_metadata(
        config,
        route,
        elements(inbound).nth(1).expect("the metadata <choose>"),
    );

    let chooses: Vec<Node> = elements(inbound)
        .filter(|n| n.has_tag_name("choose"))
        .collect();
    let condition_of = |choose: &Node| attr(child(*choose, "when"), "condition").to_owned();
    // After the token check, before anything is counted or forwarded: no delegated token.
    let act = chooses
        .iter()
        .position(|c| condition_of(c).contains("Claims.ContainsKey(\"act\")"))
        .expect("a refusal of delegated tokens");
    let act_response = child(child(chooses[act], "when"), "return-response");
    assert_eq!(attr(child(act_response, "set-status"), "code"), "401");
    let inbound_nodes: Vec<Node> = elements(inbound).collect();
    let index_of = |node: Node| {
        inbound_nodes
            .iter()
            .position(|n| *n == node)
            .expect("an inbound element")
    };
    assert!(index_of(jwt) < index_of(chooses[act]));
    assert!(index_of(chooses[act]) < index_of(child(inbound, "rate-limit-by-key")));

    let body_check = child(
        *chooses
            .iter()
            .find(|c| condition_of(c).contains("Content-Length"))
            .expect("the body limit <choose>"),
        "when",
    );
    assert!(
        attr(body_check, "condition").ends_with(&format!("> {})", route.max_body_bytes)),
        "{}",
        attr(body_check, "condition")
    );
    assert_eq!(
        attr(
            child(child(body_check, "return-response"), "set-status"),
            "code"
        ),
        "413"
    );

    let backend = child(root, "backend");
    assert_eq!(
        names(backend),
        ["forward-request"],
        "no <base />: one forward-request"
    );
    let forward = child(backend, "forward-request");
    assert_eq!(
        attr(forward, "timeout"),
        route.read_timeout.as_secs().to_string()
    );
    assert_eq!(attr(forward, "buffer-response"), "false");

    let on_error = child(child(root, "on-error"), "choose");
    let mut statuses = Vec::new();
    for branch in elements(on_error) {
        let response = child(branch, "return-response");
        let status = attr(child(response, "set-status"), "code");
        let response_headers: Vec<&str> = elements(response)
            .filter(|n| n.has_tag_name("set-header"))
            .map(|h| attr(h, "name"))
            .collect();
        assert!(response_headers.contains(&"Content-Type"));
        match status {
            "401" => {
                let challenge = elements(response)
                    .find(|h| {
                        h.has_tag_name("set-header") && attr(*h, "name") == "WWW-Authenticate"
                    })
                    .map(|h| child(h, "value").text().unwrap_or_default())
                    .expect("WWW-Authenticate on 401");
                let metadata = format!("resource_metadata=\\\"{}\\\"", config.metadata_url(route));
                assert!(
                    challenge.contains(&metadata),
                    "{challenge} lacks {metadata}"
                );
                assert!(
                    challenge.contains("ContainsKey(\"Authorization\")"),
                    "{challenge}"
                );
                assert!(
                    challenge.contains("error=\\\"invalid_token\\\""),
                    "{challenge}"
                );
            }
            "429" => assert!(response_headers.contains(&"Retry-After")),
            _ => {}
        }
        let body = child(response, "set-body").text().unwrap_or_default();
        assert!(body.contains("new JProperty(\"error\""), "{body}");
        assert!(body.contains("request_id"), "{body}");
        statuses.push((branch.attribute("condition").unwrap_or("otherwise"), status));
    }
    assert_eq!(
        statuses,
        [
            (
                "@(context.LastError.Reason == \"TokenClaimValueNotAllowed\")",
                "403"
            ),
            ("@(context.LastError.Source == \"validate-jwt\")", "401"),
            (
                "@(context.LastError.Reason == \"RateLimitExceeded\")",
                "429"
            ),
            ("@(context.LastError.Reason == \"Timeout\")", "504"),
            (
                "@(context.LastError.Reason == \"BackendConnectionFailure\")",
                "502"
            ),
            ("otherwise", "500"),
        ],
        "the tenant check must come before the generic token failure"
    );
}

/// The `<choose>` that answers the route's metadata: on exactly its metadata paths, with the
/// document the local gateway serves.
fn check_metadata(config: &Config, route: &Route, choose: Node) {
    assert_eq!(choose.tag_name().name(), "choose");
    let when = child(choose, "when");
    let condition = attr(when, "condition");
    for path in gateway::routing::metadata_paths(route) {
        assert!(
            condition.contains(&format!("context.Request.OriginalUrl.Path == \"{path}\"")),
            "{condition} lacks {path}"
        );
    }
    assert_eq!(condition.matches("==").count(), 4, "{condition}");
    let response = child(when, "return-response");
    assert_eq!(attr(child(response, "set-status"), "code"), "200");
    let body: serde_json::Value =
        serde_json::from_str(child(response, "set-body").text().unwrap_or_default())
            .expect("the metadata is JSON");
    let expected =
        serde_json::to_value(config.protected_resource(route)).expect("metadata as JSON");
    assert_eq!(body, expected);
    assert_eq!(body["resource"], config.resource_url(route));
}

#[test]
fn every_committed_policy_parses_and_matches_the_configuration() {
    let config = example_config();
    assert_eq!(config.routes.len(), 3);
    for route in &config.routes {
        check_policy(&config, route, &committed_policy(route));
    }
}

#[test]
fn each_tenant_reaches_exactly_its_routes() {
    let config = example_config();
    let tenants_of = |name: &str| {
        let route = config
            .routes
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("route {name}"));
        let xml = committed_policy(route);
        let doc = Document::parse(&xml).expect("well-formed");
        doc.descendants()
            .filter(|n| n.has_tag_name("claim") && n.attribute("name") == Some("tid"))
            .flat_map(|claim| texts(claim, "value"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(tenants_of("contoso"), [CONTOSO, NORTHWIND]);
    assert_eq!(tenants_of("fabrikam"), [FABRIKAM, NORTHWIND]);
    assert_eq!(tenants_of("contoso-agent"), [CONTOSO, NORTHWIND]);
}

#[test]
fn each_route_validates_its_own_audiences() {
    let config = example_config();
    let audiences_of = |name: &str| {
        let route = config
            .routes
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("route {name}"));
        let xml = committed_policy(route);
        let doc = Document::parse(&xml).expect("well-formed");
        doc.descendants()
            .filter(|n| n.has_tag_name("audience"))
            .filter_map(|n| n.text())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        audiences_of("contoso"),
        ["http://127.0.0.1:8080/contoso-mcp/mcp"]
    );
    assert_eq!(
        audiences_of("fabrikam"),
        ["http://127.0.0.1:8080/fabrikam-mcp/mcp"]
    );
    assert_eq!(
        audiences_of("contoso-agent"),
        ["http://127.0.0.1:8080/contoso-agent/mcp"]
    );
}

#[test]
fn values_survive_a_real_parser() {
    // Characters that must be escaped, in the values a configuration can put in the policy.
    let audience = r#"api://a&b<c>"d'e"#;
    let toml = fs::read_to_string(apim_dir().join("gateway.toml"))
        .expect("example")
        .replacen(
            r#"audiences = ["http://127.0.0.1:8080/contoso-mcp/mcp"]"#,
            &format!(
                "audiences = [\"http://127.0.0.1:8080/contoso-mcp/mcp\", {}]",
                toml_string(audience)
            ),
            1,
        );
    let config = Config::from_toml(&toml).expect("valid");
    assert_eq!(
        config.routes[0].audiences,
        ["http://127.0.0.1:8080/contoso-mcp/mcp", audience]
    );
    let xml = apim::render(&config, &config.routes[0]);
    let doc = Document::parse(&xml).expect("well-formed");
    let read: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("audience"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(read, ["http://127.0.0.1:8080/contoso-mcp/mcp", audience]);
    // The scope the metadata advertises for it survives too, as JSON inside XML.
    let body = doc
        .descendants()
        .find(|n| n.has_tag_name("set-body") && n.text().is_some_and(|t| t.starts_with('{')))
        .and_then(|n| n.text())
        .expect("the metadata body");
    let metadata: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(
        metadata["scopes_supported"],
        serde_json::json!([format!("{audience}/.default")])
    );
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
