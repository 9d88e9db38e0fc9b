//! The Azure API Management policy of each route, rendered from the gateway configuration, so the
//! production edge enforces what the local gateway enforces.
//!
//! Each route becomes one APIM API mounted at the route prefix (path `contoso-mcp` for prefix
//! `/contoso-mcp`, deployed by `apim/main.bicep`) with one catch-all operation `/*` per method,
//! and this document as its API-scope policy. In order, the policy:
//!
//! 1. validates the bearer token (`validate-jwt`): signature with the issuer's keys found by OIDC
//!    discovery, `iss`, `aud`, `exp` with the configured clock skew, and `tid` among the route's
//!    tenants. A failed check is a 401, except a valid token of another tenant, which `on-error`
//!    turns into 403 (APIM reports it as `TokenClaimValueNotAllowed`), the status the local gateway
//!    gives;
//! 2. limits calls per tenant and route (`rate-limit-by-key`, 60 s window). APIM counts a key
//!    across every API that uses it, so the key is `<route>:<tid>`, not the tid alone;
//! 3. refuses a body whose `Content-Length` is over `max_body_bytes` with 413 (a chunked body
//!    has no length to check; the backend's own limit applies to it);
//! 4. deletes every client-supplied identity header ([`SPOOFABLE_HEADERS`]) and sets
//!    `X-Tenant-Id` from the verified token, `X-Forwarded-For` from the connection and
//!    `X-Request-Id` from APIM's request id;
//! 5. sends the request to `apim_backend_url` with the prefix stripped: APIM already forwards
//!    only what follows the API path, and `rewrite-uri` states it explicitly from the original
//!    URL (the bare prefix becomes `/`, the query string is kept), so the backend sees exactly the
//!    path [`Config::route_for`] gives locally;
//! 6. forwards without buffering the response, so `text/event-stream` progress reaches the
//!    client as it is sent, with the route's read timeout (whole seconds, at most 240);
//! 7. answers every refusal and failure with the JSON body the local gateway is to give too
//!    (`error`, `message`, `request_id`; [`Refusal`]).
//!
//! Output is deterministic: configuration order, four-space indent, a trailing newline, every
//! value escaped (see the XML writer). The files are committed under `apim/policies/` and a
//! golden test compares them with this renderer.

use crate::{
    config::{Config, Route},
    policy::{FORWARDED_FOR_HEADER, REQUEST_ID_HEADER, Refusal, SPOOFABLE_HEADERS, TENANT_HEADER},
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
        w.element("on-error", &[], on_error);
    });
    w.finish()
}

fn inbound(w: &mut XmlWriter, config: &Config, route: &Route) {
    w.empty("base", &[]);
    validate_jwt(w, config, route);
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
        "The API is mounted at {prefix}: the backend gets the rest of the path (\"/\" for the bare \
         prefix) and the query string, as the local gateway sends it.",
        prefix = route.prefix
    ));
    let prefix = csharp_string(&route.prefix);
    let template = format!(
        "@(context.Request.OriginalUrl.Path.Length > {prefix}.Length \
         ? context.Request.OriginalUrl.Path.Substring({prefix}.Length) : \"/\")"
    );
    w.empty(
        "rewrite-uri",
        &[("template", &template), ("copy-unmatched-params", "true")],
    );
}

fn validate_jwt(w: &mut XmlWriter, config: &Config, route: &Route) {
    let auth = &config.auth;
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
                for audience in &auth.audiences {
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
            refusal_response(w, Refusal::BodyTooLarge);
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

fn on_error(w: &mut XmlWriter) {
    w.empty("base", &[]);
    w.element("choose", &[], |w| {
        let when = |w: &mut XmlWriter, condition: &str, refusal: Refusal| {
            w.element("when", &[("condition", condition)], |w| {
                refusal_response(w, refusal);
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
            refusal_response(w, Refusal::EdgeError);
        });
    });
}

/// `return-response` with the refusal's status, JSON body, request id, and the headers its
/// status calls for (`WWW-Authenticate` on 401, `Retry-After` on 429).
fn refusal_response(w: &mut XmlWriter, refusal: Refusal) {
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
            Refusal::InvalidToken => set_header(w, "WWW-Authenticate", "Bearer"),
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
audiences = ["api://contoso-mcp", "api://a&b<c>"]
[[routes]]
name = "contoso"
prefix = "/contoso-mcp"
upstreams = ["127.0.0.1:8001"]
allowed_tenants = ["c0a7050c-0000-4000-8000-000000000001", "4e077d00-0000-4000-8000-000000000003"]
{extra}
"#
        ))
        .expect("valid configuration")
    }

    #[test]
    fn one_file_per_route_named_after_it() {
        let config = config("");
        let files = render_all(&config);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "contoso.policy.xml");
        assert!(files[0].1.ends_with("</policies>\n"));
        assert_eq!(files[0].1, render(&config, &config.routes[0]));
    }

    #[test]
    fn rendering_is_deterministic() {
        let config = config("rate_limit_per_minute = 10");
        assert_eq!(render_all(&config), render_all(&config));
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
