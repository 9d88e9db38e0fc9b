//! The Azure API Management policy of each route, rendered from the gateway configuration, so the
//! production edge enforces what the local gateway enforces.
//!
//! Each route becomes one APIM API mounted at the route prefix (path `contoso-mcp` for prefix
//! `/contoso-mcp`, deployed by `apim/route-api.bicep`) whose only operations are the ones the
//! local gateway answers: `POST`, `GET` and `DELETE /mcp` (MCP streamable HTTP), and `GET` on the
//! metadata paths below the prefix ([`crate::routing::PREFIXED_METADATA_PATHS`]); a second API at
//! `.well-known/oauth-protected-resource<prefix>` has the one operation `GET /mcp`, the RFC 9728
//! metadata path. Both carry this document as their API-scope policy. APIM answers any other
//! path or method itself (404), without reaching the backend. In order, the policy:
//!
//! 1. answers the route's RFC 9728 metadata (the same document as the local gateway's) on its
//!    metadata paths, before any token check, since a client reads it to learn where to get one;
//! 2. validates the bearer token (`validate-jwt`): signature with the issuer's keys found by OIDC
//!    discovery, `iss`, `aud` among *this route's* audiences (a token for another route is a 401),
//!    `exp` with the configured clock skew, and `tid` among the route's tenants. A failed check
//!    is a 401, except a valid token of another tenant, which `on-error` turns into 403 (APIM
//!    reports it as `TokenClaimValueNotAllowed`), the status the local gateway gives;
//!    A token with an `act` claim (delegated, RFC 8693) is refused with 401 too: the local
//!    gateway's verifier trusts no actor;
//! 3. limits calls per tenant and route (`rate-limit-by-key`, 60 s window). APIM counts a key
//!    across every API that uses it, so the key is `<route>:<tid>`, not the tid alone;
//! 4. refuses a body whose `Content-Length` is over `max_body_bytes` with 413 (a chunked body
//!    has no length to check; the backend's own limit applies to it);
//! 5. deletes every client-supplied identity header ([`SPOOFABLE_HEADERS`]) and sets
//!    `X-Tenant-Id` from the verified token, `X-Forwarded-For` from the connection and
//!    `X-Request-Id` from APIM's request id;
//! 6. sends the request to `apim_backend_url` as `/mcp` with the query string
//!    (`rewrite-uri`), exactly the path [`Config::route_for`] gives locally;
//! 7. forwards without buffering the response, so `text/event-stream` progress reaches the
//!    client as it is sent, with the route's read timeout (whole seconds, at most 240);
//! 8. answers every refusal and failure with the JSON body the local gateway is to give too
//!    (`error`, `message`, `request_id`; [`Refusal`]); a 401 carries the local gateway's
//!    `WWW-Authenticate: Bearer resource_metadata="<metadata URL>"`, with `error="invalid_token"`
//!    when the request had an `Authorization` header.
//!
//! Output is deterministic: configuration order, four-space indent, a trailing newline, every
//! value escaped (see the XML writer). The files are committed under `apim/policies/` and a
//! golden test compares them with this renderer.

use crate::{
    config::{Config, Route},
    policy::{FORWARDED_FOR_HEADER, REQUEST_ID_HEADER, Refusal, SPOOFABLE_HEADERS, TENANT_HEADER},
    routing::{MCP_PATH, metadata_paths},
    xml::XmlWriter,
};

/// The context variable `validate-jwt` stores the verified token in; later expressions read the
/// tenant from it rather than from the raw header.
const JWT_VARIABLE: &str = "jwt";
/// The context variable `rate-limit-by-key` stores the seconds to wait in.
const RETRY_AFTER_VARIABLE: &str = "retryAfter";

/// The file name of a route's policy: `<route name>.policy.xml`.
pub fn file_name(route: &Route) -> String {
    format!("{}.policy.xml", route.name)
}

/// Every route's policy as `(file name, XML)`, in configuration order.
pub fn render_all(config: &Config) -> Vec<(String, String)> {
    config
        .routes
        .iter()
        .map(|route| (file_name(route), render(config, route)))
        .collect()
}

/// The API-scope policy document of one route.
pub fn render(config: &Config, route: &Route) -> String {
    let mut w = XmlWriter::new();
    w.element("policies", &[], |w| {
        w.comment(&format!(
            "Rendered by gateway render-apim from the gateway configuration, route \"{}\" ({}). \
             Do not edit by hand: change the configuration and render again.",
            route.name, route.prefix
        ));
        w.element("inbound", &[], |w| inbound(w, config, route));
        w.element("backend", &[], |w| backend(w, route));
        w.element("outbound", &[], outbound);
        w.element("on-error", &[], |w| on_error(w, &challenge(config, route)));
    });
    w.finish()
}

fn inbound(w: &mut XmlWriter, config: &Config, route: &Route) {
    w.empty("base", &[]);
    metadata(w, config, route);
    validate_jwt(w, config, route);
    no_delegation(w, &challenge(config, route));
    if let Some(calls) = route.rate_limit_per_minute {
        w.comment(&format!(
            "{calls} calls per minute per tenant on this route. APIM counts a key across all APIs, \
             hence the route name in it."
        ));
        let counter_key = format!(
            "@({} + {})",
            csharp_string(&format!("{}:", route.name)),
            tenant_expression("anonymous")
        );
        w.empty(
            "rate-limit-by-key",
            &[
                ("calls", &calls.to_string()),
                ("renewal-period", "60"),
                ("counter-key", &counter_key),
                ("retry-after-variable-name", RETRY_AFTER_VARIABLE),
            ],
        );
    }
    body_limit(w, route);
    w.comment("Identity reaches the backend only from the verified token, never from the client.");
    for header in SPOOFABLE_HEADERS {
        w.empty(
            "set-header",
            &[("name", header), ("exists-action", "delete")],
        );
    }
    set_header(w, TENANT_HEADER, &format!("@({})", tenant_expression("")));
    set_header(w, FORWARDED_FOR_HEADER, "@(context.Request.IpAddress)");
    set_header(w, REQUEST_ID_HEADER, "@(context.RequestId.ToString())");
    w.empty(
        "set-backend-service",
        &[("base-url", &route.apim_backend_url)],
    );
    w.comment(&format!(
        "The only operations forwarded are POST, GET and DELETE {prefix}{MCP_PATH}: the backend \
         gets {MCP_PATH} and the query string, as the local gateway sends it.",
        prefix = route.prefix
    ));
    w.empty(
        "rewrite-uri",
        &[("template", MCP_PATH), ("copy-unmatched-params", "true")],
    );
}

/// The route's RFC 9728 metadata on its metadata paths, answered before the token is checked.
fn metadata(w: &mut XmlWriter, config: &Config, route: &Route) {
    w.comment(
        "The route's protected-resource metadata (RFC 9728), without a token: a client reads it \
         to learn where to get one.",
    );
    let condition = metadata_paths(route)
        .iter()
        .map(|path| {
            format!(
                "context.Request.OriginalUrl.Path == {}",
                csharp_string(path)
            )
        })
        .collect::<Vec<_>>()
        .join(" || ");
    // serde_json writes a struct of strings and string lists; it cannot fail.
    let document = serde_json::to_string(&config.protected_resource(route)).unwrap_or_default();
    w.element("choose", &[], |w| {
        w.element("when", &[("condition", &format!("@({condition})"))], |w| {
            w.element("return-response", &[], |w| {
                w.empty("set-status", &[("code", "200"), ("reason", "OK")]);
                set_header(w, "Content-Type", "application/json");
                set_header(w, REQUEST_ID_HEADER, "@(context.RequestId.ToString())");
                w.text("set-body", &[], &document);
            });
        });
    });
}

/// A delegated token (`act`, RFC 8693: an agent acting for its subject) is for calls inside the
/// platform; the edge refuses it like any invalid token, as the local gateway does (its
/// verifier trusts no actor).
fn no_delegation(w: &mut XmlWriter, challenge: &str) {
    w.comment(
        "Delegated tokens (act, RFC 8693) are for calls inside the platform, never through the edge.",
    );
    let condition = format!(
        "@(((Jwt)context.Variables[{}]).Claims.ContainsKey(\"act\"))",
        csharp_string(JWT_VARIABLE)
    );
    w.element("choose", &[], |w| {
        w.element("when", &[("condition", &condition)], |w| {
            refusal_response(w, Refusal::InvalidToken, Some(challenge));
        });
    });
}

/// The `WWW-Authenticate` value of a 401 on this route, as a policy expression: the local
/// gateway's challenge, with `error="invalid_token"` when a token (any `Authorization`) was sent.
fn challenge(config: &Config, route: &Route) -> String {
    let without = format!(
        "Bearer resource_metadata=\"{}\"",
        config.metadata_url(route)
    );
    let with = format!("{without}, error=\"invalid_token\"");
    format!(
        "@(context.Request.Headers.ContainsKey(\"Authorization\") ? {} : {})",
        csharp_string(&with),
        csharp_string(&without)
    )
}

fn validate_jwt(w: &mut XmlWriter, config: &Config, route: &Route) {
    let auth = &config.auth;
    w.comment(
        "Only tokens issued for this route (RFC 8707): a token for another route, another \
         company's, is a 401 here.",
    );
    let clock_skew = auth.leeway.as_secs().to_string();
    w.element(
        "validate-jwt",
        &[
            ("header-name", "Authorization"),
            ("require-scheme", "Bearer"),
            ("failed-validation-httpcode", "401"),
            (
                "failed-validation-error-message",
                Refusal::InvalidToken.message(),
            ),
            ("require-expiration-time", "true"),
            ("require-signed-tokens", "true"),
            ("clock-skew", &clock_skew),
            ("output-token-variable-name", JWT_VARIABLE),
        ],
        |w| {
            let discovery = format!("{}/.well-known/openid-configuration", auth.issuer);
            w.empty("openid-config", &[("url", &discovery)]);
            w.element("audiences", &[], |w| {
                for audience in &route.audiences {
                    w.text("audience", &[], audience);
                }
            });
            w.element("issuers", &[], |w| w.text("issuer", &[], &auth.issuer));
            w.element("required-claims", &[], |w| {
                w.element("claim", &[("name", "tid"), ("match", "any")], |w| {
                    for tid in &route.allowed_tenants {
                        w.text("value", &[], tid);
                    }
                });
            });
        },
    );
}

fn body_limit(w: &mut XmlWriter, route: &Route) {
    let limit = route.max_body_bytes;
    w.comment(&format!(
        "413 for a body over {limit} bytes, as announced by Content-Length."
    ));
    let condition = format!(
        "@(long.Parse(context.Request.Headers.GetValueOrDefault(\"Content-Length\", \"0\")) > {limit})"
    );
    w.element("choose", &[], |w| {
        w.element("when", &[("condition", &condition)], |w| {
            refusal_response(w, Refusal::BodyTooLarge, None);
        });
    });
}

fn backend(w: &mut XmlWriter, route: &Route) {
    // Whole seconds, rounded up so a timeout is never shorter than configured.
    let timeout = route.read_timeout.as_millis().div_ceil(1000).to_string();
    w.comment(
        "No base: one forward-request per request. Unbuffered, so text/event-stream progress \
         reaches the client as it is sent.",
    );
    w.empty(
        "forward-request",
        &[("timeout", &timeout), ("buffer-response", "false")],
    );
}

fn outbound(w: &mut XmlWriter) {
    w.empty("base", &[]);
    set_header(w, REQUEST_ID_HEADER, "@(context.RequestId.ToString())");
}

fn on_error(w: &mut XmlWriter, challenge: &str) {
    w.empty("base", &[]);
    w.element("choose", &[], |w| {
        let when = |w: &mut XmlWriter, condition: &str, refusal: Refusal| {
            w.element("when", &[("condition", condition)], |w| {
                refusal_response(w, refusal, Some(challenge));
            });
        };
        // First: the only required claim is tid, so this reason means a valid token of a tenant
        // the route does not list.
        when(
            w,
            "@(context.LastError.Reason == \"TokenClaimValueNotAllowed\")",
            Refusal::TenantNotAllowed,
        );
        when(
            w,
            "@(context.LastError.Source == \"validate-jwt\")",
            Refusal::InvalidToken,
        );
        when(
            w,
            "@(context.LastError.Reason == \"RateLimitExceeded\")",
            Refusal::RateLimited,
        );
        when(
            w,
            "@(context.LastError.Reason == \"Timeout\")",
            Refusal::UpstreamTimeout,
        );
        when(
            w,
            "@(context.LastError.Reason == \"BackendConnectionFailure\")",
            Refusal::UpstreamUnavailable,
        );
        w.element("otherwise", &[], |w| {
            refusal_response(w, Refusal::EdgeError, None);
        });
    });
}

/// `return-response` with the refusal's status, JSON body, request id, and the headers its
/// status calls for (`WWW-Authenticate` on 401, `challenge` or a bare `Bearer`; `Retry-After` on
/// 429).
fn refusal_response(w: &mut XmlWriter, refusal: Refusal, challenge: Option<&str>) {
    w.element("return-response", &[], |w| {
        w.empty(
            "set-status",
            &[
                ("code", &refusal.status().to_string()),
                ("reason", refusal.reason()),
            ],
        );
        set_header(w, "Content-Type", "application/json");
        set_header(w, REQUEST_ID_HEADER, "@(context.RequestId.ToString())");
        match refusal {
            Refusal::InvalidToken => {
                set_header(w, "WWW-Authenticate", challenge.unwrap_or("Bearer"));
            }
            Refusal::RateLimited => set_header(
                w,
                "Retry-After",
                &format!(
                    "@(context.Variables.GetValueOrDefault<object>({}, 60).ToString())",
                    csharp_string(RETRY_AFTER_VARIABLE)
                ),
            ),
            _ => {}
        }
        let body = format!(
            "@(new JObject(new JProperty(\"error\", {}), new JProperty(\"message\", {}), \
             new JProperty(\"request_id\", context.RequestId.ToString())).ToString())",
            csharp_string(refusal.code()),
            csharp_string(refusal.message())
        );
        w.text("set-body", &[], &body);
    });
}

fn set_header(w: &mut XmlWriter, name: &str, value: &str) {
    w.element(
        "set-header",
        &[("name", name), ("exists-action", "override")],
        |w| w.text("value", &[], value),
    );
}

/// The verified token's `tid`, or `default` when it has none, as a C# expression.
fn tenant_expression(default: &str) -> String {
    format!(
        "((Jwt)context.Variables[{}]).Claims.GetValueOrDefault(\"tid\", {})",
        csharp_string(JWT_VARIABLE),
        csharp_string(default)
    )
}

/// `value` as a C# string literal. Configuration values that reach expressions are already
/// restricted to plain characters; escaping anyway keeps that an optimisation, not a premise.
fn csharp_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!(
            r#"
listen = "127.0.0.1:8080"
public_base_url = "http://127.0.0.1:8080"
[auth]
issuer = "https://login.example.com/t/v2.0"
[[routes]]
name = "contoso"
prefix = "/contoso-mcp"
upstreams = ["127.0.0.1:8001"]
allowed_tenants = ["c0a7050c-0000-4000-8000-000000000001", "4e077d00-0000-4000-8000-000000000003"]
audiences = ["api://contoso-mcp", "api://a&b<c>"]
{extra}
[[routes]]
name = "fabrikam"
prefix = "/fabrikam-mcp"
upstreams = ["127.0.0.1:8002"]
allowed_tenants = ["fab1ca70-0000-4000-8000-000000000002"]
"#
        ))
        .expect("valid configuration")
    }

    /// The texts of `<audience>` in `xml`, in order.
    fn audiences(xml: &str) -> Vec<&str> {
        xml.lines()
            .filter_map(|l| l.trim().strip_prefix("<audience>"))
            .filter_map(|l| l.strip_suffix("</audience>"))
            .collect()
    }

    #[test]
    fn one_file_per_route_named_after_it() {
        let config = config("");
        let files = render_all(&config);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "contoso.policy.xml");
        assert_eq!(files[1].0, "fabrikam.policy.xml");
        assert!(files[0].1.ends_with("</policies>\n"));
        assert_eq!(files[0].1, render(&config, &config.routes[0]));
    }

    #[test]
    fn rendering_is_deterministic() {
        let config = config("rate_limit_per_minute = 10");
        assert_eq!(render_all(&config), render_all(&config));
    }

    #[test]
    fn each_route_validates_its_own_audiences_only() {
        let config = config("");
        let contoso = render(&config, &config.routes[0]);
        let fabrikam = render(&config, &config.routes[1]);
        assert_eq!(
            audiences(&contoso),
            ["api://contoso-mcp", "api://a&amp;b&lt;c&gt;"]
        );
        // The default: the route's resource URL, and nothing of the other route's.
        assert_eq!(
            audiences(&fabrikam),
            ["http://127.0.0.1:8080/fabrikam-mcp/mcp"]
        );
    }

    #[test]
    fn values_are_escaped() {
        let plain = config("");
        let xml = render(&plain, &plain.routes[0]);
        assert!(
            xml.contains("<audience>api://a&amp;b&lt;c&gt;</audience>"),
            "{xml}"
        );
        assert!(!xml.contains("a&b"));
    }

    #[test]
    fn metadata_is_answered_before_the_token_check() {
        let config = config("");
        let xml = render(&config, &config.routes[1]);
        let metadata = xml
            .find("<set-status code=\"200\"")
            .expect("a metadata answer");
        assert!(metadata < xml.find("<validate-jwt").expect("validate-jwt"));
        for path in [
            "/.well-known/oauth-protected-resource/fabrikam-mcp/mcp",
            "/fabrikam-mcp/.well-known/oauth-protected-resource",
            "/fabrikam-mcp/.well-known/oauth-protected-resource/mcp",
            "/fabrikam-mcp/mcp/.well-known/oauth-protected-resource",
        ] {
            assert!(
                xml.contains(&format!("context.Request.OriginalUrl.Path == \"{path}\"")),
                "{path} in {xml}"
            );
        }
        assert!(
            xml.contains(
                r#"<set-body>{"resource":"http://127.0.0.1:8080/fabrikam-mcp/mcp","authorization_servers":["https://login.example.com/t/v2.0"],"scopes_supported":[],"bearer_methods_supported":["header"]}</set-body>"#
            ),
            "{xml}"
        );
        // An application ID URI among the audiences is advertised as its .default scope.
        let contoso = render(&config, &config.routes[0]);
        assert!(
            contoso.contains(r#""scopes_supported":["api://contoso-mcp/.default"]"#),
            "{contoso}"
        );
    }

    #[test]
    fn only_the_mcp_endpoint_is_forwarded() {
        let config = config("");
        let xml = render(&config, &config.routes[0]);
        assert!(
            xml.contains("<rewrite-uri template=\"/mcp\" copy-unmatched-params=\"true\" />"),
            "{xml}"
        );
    }

    #[test]
    fn the_401_points_at_the_routes_metadata() {
        let config = config("");
        let xml = render(&config, &config.routes[1]);
        let expected = r#"@(context.Request.Headers.ContainsKey("Authorization") ? "Bearer resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/fabrikam-mcp/mcp\", error=\"invalid_token\"" : "Bearer resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/fabrikam-mcp/mcp\"")"#;
        assert!(xml.contains(&format!("<value>{expected}</value>")), "{xml}");
    }

    #[test]
    fn delegated_tokens_are_refused_after_the_token_check() {
        let config = config("");
        let xml = render(&config, &config.routes[0]);
        let check = xml
            .find(r#"Claims.ContainsKey("act")"#)
            .expect("an act check");
        assert!(xml.find("</validate-jwt>").expect("validate-jwt") < check);
        assert!(check < xml.find("<set-backend-service").expect("forwarding"));
        let refusal = &xml[check..];
        let refusal = &refusal[..refusal.find("</when>").expect("when")];
        assert!(refusal.contains("<set-status code=\"401\""), "{refusal}");
        assert!(refusal.contains("resource_metadata="), "{refusal}");
    }

    #[test]
    fn rate_limit_only_when_configured() {
        let plain = config("");
        let without = render(&plain, &plain.routes[0]);
        assert!(!without.contains("rate-limit-by-key"));
        let limited = config("rate_limit_per_minute = 10");
        let with = render(&limited, &limited.routes[0]);
        assert!(with.contains("<rate-limit-by-key calls=\"10\" renewal-period=\"60\""));
        assert!(with.contains(r#"counter-key='@("contoso:" + ((Jwt)context.Variables["jwt"]).Claims.GetValueOrDefault("tid", "anonymous"))'"#), "{with}");
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        let config = config("read_timeout_ms = 1500");
        let xml = render(&config, &config.routes[0]);
        assert!(xml.contains("<forward-request timeout=\"2\" buffer-response=\"false\" />"));
    }

    #[test]
    fn the_backend_is_the_apim_url_or_the_first_upstream() {
        let local = config("");
        assert!(
            render(&local, &local.routes[0])
                .contains("<set-backend-service base-url=\"http://127.0.0.1:8001\" />")
        );
        let azure = config("apim_backend_url = \"https://contoso.example.azurecontainerapps.io\"");
        assert!(render(&azure, &azure.routes[0]).contains(
            "<set-backend-service base-url=\"https://contoso.example.azurecontainerapps.io\" />"
        ));
    }

    #[test]
    fn csharp_strings_are_escaped() {
        assert_eq!(csharp_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
