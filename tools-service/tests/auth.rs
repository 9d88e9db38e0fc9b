//! Authentication and role-based authorization at the tools service: the real binary verifying
//! the tokens of a development identity provider (`devstack::idp`) that signs real RS256 tokens.
//!
//! - The attack suite: every request that must not pass (no token, another scheme, garbage,
//!   `alg: none`, HS256 keyed with the public key, unknown or unpublished keys, expired, not yet
//!   valid, wrong issuer or audience, no tenant, tampered, oversized, two headers, a token in the
//!   query string) gets the same 401 with an RFC 6750 challenge, and the four writes attempted
//!   with each of them change nothing; a tenant outside `ALLOWED_TENANTS` gets 403.
//! - The signing keys: a JWKS outage, key rotation, the re-fetch rate limit, keys without `alg`.
//! - The OAuth protected-resource metadata (RFC 9728) and the endpoints that stay public.
//! - Roles: under the least-privilege default policy and under a policy file, `tools/list` and
//!   `tools/call` agree for every set of roles and every tool, `query` cannot write, a token
//!   without a platform role gets nothing, and a refused write changes nothing. A policy naming
//!   an unknown tool stops the start.
//! - Delegated tokens (`act`): accepted only from `TRUSTED_ACTORS`, one level deep.
//! - The development modes, `USE_PASSTHROUGH_AUTH` and `DISABLE_AUTH`.

// Amounts in cents are written dollars_cents, e.g. 100_00.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::*;
use devstack::idp::{self, Idp, IdpConfig, KeySource, RunningIdp, TokenSpec, defaults, forge};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use rmcp::model::CacheScope;
use serde_json::{Map, Value, json};
use shared::auth::jwks::Jwks;

const ROLES: [&str; 3] = defaults::ROLES;

const WRITES: [&str; 4] = [
    "pay_invoice",
    "create_support_ticket",
    "update_subscription",
    "unlock_account",
];

/// Starts an identity provider on `127.0.0.1:0`.
async fn spawn_idp(config: IdpConfig) -> RunningIdp {
    idp::spawn(IdpConfig {
        allow_rotation: true,
        ..config
    })
    .await
    .expect("identity provider starts")
}

/// Starts the service verifying `idp`'s tokens, with `extra` settings on top.
async fn jwt_server(idp: &RunningIdp, extra: &[(&str, &str)]) -> Server {
    let mut env = jwt_auth(idp.url());
    env.extend_from_slice(extra);
    Server::start_with(&env).await
}

/// An identity provider with default settings and the service trusting it.
async fn stack(extra: &[(&str, &str)]) -> (RunningIdp, Server) {
    let idp = spawn_idp(IdpConfig::default()).await;
    let server = jwt_server(&idp, extra).await;
    (idp, server)
}

/// A contoso token for `alice` with `roles`.
fn spec(roles: &[&str]) -> TokenSpec {
    TokenSpec::new(defaults::CONTOSO, roles.iter().copied(), "alice")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn call_body(name: &str, arguments: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
        .to_string()
}

const LIST_TOOLS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

/// POSTs a JSON-RPC body to `/mcp` with exactly these `Authorization` header values.
async fn post_mcp(server: &Server, authorization: &[String], body: &str) -> reqwest::Response {
    let mut headers = HeaderMap::new();
    for value in authorization {
        headers.append(
            AUTHORIZATION,
            HeaderValue::from_str(value).expect("a valid header value"),
        );
    }
    raw_mcp_post(server, body)
        .headers(headers)
        .send()
        .await
        .expect("request")
}

/// The challenge of a 401 (RFC 6750 §3, RFC 9728 §5.1): where the metadata is, and
/// `error="invalid_token"` only when a bearer token was sent.
fn challenge(base: &str, token_sent: bool) -> String {
    let metadata = format!("{base}/.well-known/oauth-protected-resource/mcp");
    if token_sent {
        format!("Bearer resource_metadata=\"{metadata}\", error=\"invalid_token\"")
    } else {
        format!("Bearer resource_metadata=\"{metadata}\"")
    }
}

fn local_base(server: &Server) -> String {
    format!("http://{}", server.addr)
}

/// Asserts a 401 carrying exactly `expected_challenge` and a JSON body, and returns the body.
async fn assert_unauthorized(
    what: &str,
    response: reqwest::Response,
    expected_challenge: &str,
) -> Value {
    assert_eq!(response.status(), 401, "{what}");
    let challenges: Vec<&str> = response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ASCII challenge"))
        .collect();
    assert_eq!(challenges, [expected_challenge], "{what}: WWW-Authenticate");
    assert_json(what, &response);
    response.json().await.expect("a JSON body")
}

fn assert_json(what: &str, response: &reqwest::Response) {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type:?}"
    );
}

/// Words that would tell an attacker which check failed.
const REVEALING: [&str; 12] = [
    "expired",
    "signature",
    "kid",
    "key",
    "alg",
    "audience",
    "issuer",
    "tenant",
    "nbf",
    "large",
    "malformed",
    "header",
];

fn assert_reveals_nothing(what: &str, body: &Value) {
    let text = body.to_string().to_lowercase();
    for word in REVEALING {
        assert!(
            !text.contains(word),
            "{what}: the refusal says {word:?}: {body}"
        );
    }
}

/// One way of presenting (or not) a credential that must be refused.
struct Attack {
    what: &'static str,
    /// `Authorization` header values, in order: none, one, or two.
    authorization: Vec<String>,
    /// Whether a bearer token was sent, so the challenge says `error="invalid_token"`.
    token_sent: bool,
}

impl Attack {
    fn token(what: &'static str, token: &str) -> Attack {
        Attack {
            what,
            authorization: vec![bearer(token)],
            token_sent: true,
        }
    }
}

/// A token for every role, with its claims edited, signed by the published key.
fn edited(idp: &Idp, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut claims = idp.claims(&spec(&ROLES));
    edit(claims.as_object_mut().expect("claims are an object"));
    idp.mint_with(&idp.header(), &claims)
}

/// `token` with its claims edited in place and the original header and signature kept.
fn tampered(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url"))
            .expect("JSON claims");
    edit(&mut claims);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// Every credential the service must refuse. Tokens carry every role where they carry claims,
/// so a bypass would show as a write that happened.
fn attacks(idp: &Idp) -> Vec<Attack> {
    let claims = idp.claims(&spec(&ROLES));
    let kid = idp.current_kid();
    let foreign = idp.foreign_key().expect("foreign key");
    let other_issuer = Idp::new(IdpConfig {
        issuer: Some("http://127.0.0.1:9/another-issuer".into()),
        key: KeySource::Key(idp.signing_key()),
        ..IdpConfig::default()
    })
    .expect("second issuer sharing the key");
    let unprivileged = idp.mint(&spec(&[]));
    let (signed, _signature) = unprivileged.rsplit_once('.').expect("three segments");
    let huge = TokenSpec {
        extra: Map::from_iter([("padding".to_owned(), json!("x".repeat(17 * 1024)))]),
        ..spec(&ROLES)
    };
    vec![
        Attack {
            what: "no Authorization header",
            authorization: vec![],
            token_sent: false,
        },
        Attack {
            // RFC 6750 §3.1: another scheme is no bearer credential, so no error code.
            what: "Basic credentials",
            authorization: vec!["Basic YWxpY2U6c2VjcmV0".into()],
            token_sent: false,
        },
        Attack {
            what: "an empty bearer token",
            authorization: vec!["Bearer ".into()],
            token_sent: true,
        },
        Attack::token("garbage", "not-a-jwt"),
        Attack::token("alg none, unsigned", &forge::unsigned(&claims)),
        Attack::token(
            "HS256 keyed with the RSA public key (key confusion)",
            &forge::hs256(
                &json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
                &claims,
                idp.signing_key().public_key_pem().as_bytes(),
            ),
        ),
        Attack::token(
            "a genuine signature under a header claiming RS512",
            &idp.mint_with(&json!({"alg": "RS512", "typ": "JWT", "kid": kid}), &claims),
        ),
        Attack::token(
            "no kid",
            &idp.mint_with(&json!({"alg": "RS256", "typ": "JWT"}), &claims),
        ),
        Attack::token("an unknown kid", &foreign.sign(&foreign.header(), &claims)),
        Attack::token(
            "the published kid, signed by another key",
            &idp.foreign_key_token(&spec(&ROLES)).expect("foreign token"),
        ),
        Attack::token("the signature stripped", &format!("{signed}.")),
        Attack::token(
            "expired beyond the leeway",
            &edited(idp, |c| {
                c.insert("iat".into(), json!(now() - 7200));
                c.insert("nbf".into(), json!(now() - 7200));
                c.insert("exp".into(), json!(now() - 120));
            }),
        ),
        Attack::token(
            "not valid before a time beyond the leeway",
            &edited(idp, |c| {
                c.insert("nbf".into(), json!(now() + 120));
            }),
        ),
        Attack::token(
            "no exp",
            &edited(idp, |c| {
                c.remove("exp");
            }),
        ),
        Attack::token(
            "another issuer signing with the same key",
            &other_issuer.mint(&spec(&ROLES)),
        ),
        Attack::token(
            "another audience",
            &idp.mint(&TokenSpec {
                audience: Some("api://another-api".into()),
                ..spec(&ROLES)
            }),
        ),
        Attack::token(
            "no tid",
            &edited(idp, |c| {
                c.remove("tid");
            }),
        ),
        Attack::token(
            "an empty tid",
            &edited(idp, |c| {
                c.insert("tid".into(), json!(""));
            }),
        ),
        Attack::token(
            "no sub",
            &edited(idp, |c| {
                c.remove("sub");
            }),
        ),
        Attack::token(
            "roles added to a genuine token's payload",
            &tampered(&unprivileged, |c| {
                c["roles"] = json!(ROLES);
            }),
        ),
        Attack::token("a genuine token over 16 KiB", &idp.mint(&huge)),
        Attack {
            what: "two Authorization headers, each with a genuine token",
            authorization: vec![
                bearer(&idp.mint(&spec(&ROLES))),
                bearer(&idp.mint(&spec(&ROLES))),
            ],
            token_sent: true,
        },
    ]
}

/// The four writes with valid arguments (paying the whole $100.00 due).
fn write_attempts(calls: &[(&'static str, Value)]) -> Vec<(&'static str, String)> {
    calls
        .iter()
        .filter(|(name, _)| WRITES.contains(name))
        .map(|(name, args)| {
            let mut args = args.clone();
            if *name == "pay_invoice" {
                args["amount"] = json!(100);
            }
            (*name, call_body(name, &args))
        })
        .collect()
}

#[tokio::test]
async fn forged_and_invalid_credentials_get_the_same_401_and_write_nothing() {
    let (idp, server) = stack(&[]).await;
    let honest = idp.idp.mint(&spec(&ROLES));
    let c = server.client_with_token(&honest).await;
    let invoice = latest_invoice(&c, 251).await;
    assert_eq!(
        money(&payments(&c, invoice).await["invoice"]["outstanding"]),
        100_00
    );
    assert_eq!(security_log(&c, 254).await["account_locked"], true);
    let writes = write_attempts(&valid_calls(&c).await);
    assert_eq!(writes.len(), 4);
    let before = writable_state(&c).await;

    let attacks = attacks(&idp.idp);
    let mut bodies = BTreeSet::new();
    for attack in &attacks {
        let expected = challenge(&local_base(&server), attack.token_sent);
        for (tool, body) in &writes {
            let what = format!("{} ({tool})", attack.what);
            let response = post_mcp(&server, &attack.authorization, body).await;
            let body = assert_unauthorized(&what, response, &expected).await;
            assert_reveals_nothing(&what, &body);
            if attack.token_sent {
                // The request id differs per request by design; the rest must not.
                let mut same = body.clone();
                if let Some(fields) = same.as_object_mut() {
                    fields.remove("request_id");
                }
                bodies.insert(same.to_string());
            }
        }
    }
    assert_eq!(
        bodies.len(),
        1,
        "every refused token gets the same body: {bodies:?}"
    );

    // The bearer method is the header only: a token in the query string is no token.
    let query = reqwest::Client::new()
        .post(format!("{}?access_token={honest}", server.url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(writes[0].1.clone())
        .send()
        .await
        .expect("request");
    assert_unauthorized(
        "a token in the query string",
        query,
        &challenge(&local_base(&server), false),
    )
    .await;

    // An MCP client with a bad token cannot even connect.
    let expired = attacks
        .iter()
        .find(|a| a.what.starts_with("expired"))
        .expect("the expired case")
        .authorization[0]
        .trim_start_matches("Bearer ")
        .to_owned();
    let refused = server
        .try_client_with_token(&expired)
        .await
        .expect_err("the MCP client is refused");
    let shown = format!("{refused:?}");
    assert!(
        shown.contains("AuthRequired") && shown.contains("invalid_token"),
        "{shown}"
    );

    assert_eq!(
        writable_state(&c).await,
        before,
        "a refused request wrote something"
    );
    assert!(
        !server.logs().contains(&honest),
        "tokens are never logged:\n{}",
        server.logs()
    );

    // The same requests with the honest token do write: the refusals were the token's doing.
    for (tool, body) in &writes {
        let response = post_mcp(&server, &[bearer(&honest)], body).await;
        assert_eq!(response.status(), 200, "{tool}");
        let answer: Value = response.json().await.expect("JSON-RPC answer");
        assert_ne!(answer["result"]["isError"], true, "{tool}: {answer}");
    }
    assert_eq!(
        money(&payments(&c, invoice).await["invoice"]["outstanding"]),
        0
    );
    assert_eq!(security_log(&c, 254).await["account_locked"], false);

    // Clock skew within the 60 s leeway is tolerated.
    let late = edited(&idp.idp, |c| {
        c.insert("iat".into(), json!(now() - 3600));
        c.insert("nbf".into(), json!(now() - 3600));
        c.insert("exp".into(), json!(now() - 30));
    });
    let early = edited(&idp.idp, |c| {
        c.insert("nbf".into(), json!(now() + 30));
    });
    for token in [late, early] {
        let c = server.client_with_token(&token).await;
        assert_eq!(c.list_all_tools().await.expect("tools/list").len(), 19);
    }
}

#[tokio::test]
async fn a_tenant_outside_allowed_tenants_is_forbidden_and_nothing_runs() {
    let (idp, server) = stack(&[("ALLOWED_TENANTS", defaults::CONTOSO)]).await;
    let contoso = server.client_with_token(&idp.idp.mint(&spec(&ROLES))).await;
    let writes = write_attempts(&valid_calls(&contoso).await);
    let before = writable_state(&contoso).await;

    for tenant in [defaults::FABRIKAM, defaults::NORTHWIND] {
        let token = idp.idp.mint(&TokenSpec::new(tenant, ROLES, "mallory"));
        for (tool, body) in &writes {
            let response = post_mcp(&server, &[bearer(&token)], body).await;
            assert_eq!(response.status(), 403, "{tenant} {tool}");
            assert_json(tool, &response);
            let body: Value = response.json().await.expect("JSON body");
            assert_eq!(body["error"], "forbidden", "{body}");
            assert!(!body.to_string().contains(tenant), "{body}");
        }
        let refused = server
            .try_client_with_token(&token)
            .await
            .expect_err("the MCP client is refused");
        assert!(format!("{refused:?}").contains("403"), "{refused:?}");
    }
    // The tenant check comes after the signature: a forged fabrikam token learns nothing.
    let forged = idp
        .idp
        .foreign_key_token(&TokenSpec::new(defaults::FABRIKAM, ROLES, "mallory"))
        .expect("forged");
    let response = post_mcp(&server, &[bearer(&forged)], &writes[0].1).await;
    assert_unauthorized(
        "a forged token of a refused tenant",
        response,
        &challenge(&local_base(&server), true),
    )
    .await;

    assert_eq!(
        writable_state(&contoso).await,
        before,
        "a refused tenant wrote something"
    );
}

#[tokio::test]
async fn metadata_health_and_readiness_are_public() {
    let (idp, server) = stack(&[]).await;
    let base = local_base(&server);
    let expected = json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": [idp.url()],
        "scopes_supported": ["api://contoso-mcp/.default"],
        "bearer_methods_supported": ["header"],
    });
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/mcp/.well-known/oauth-protected-resource",
    ] {
        let response = reqwest::get(server.http(path)).await.expect(path);
        assert_eq!(response.status(), 200, "{path}");
        assert_json(path, &response);
        assert_eq!(
            response.json::<Value>().await.expect("JSON"),
            expected,
            "{path}"
        );
    }

    // A client that knows nothing follows the challenge to the metadata, then to the issuer.
    let response = post_mcp(&server, &[], LIST_TOOLS).await;
    assert_unauthorized("no token", response, &challenge(&base, false)).await;
    let metadata: Value = reqwest::get(format!("{base}/.well-known/oauth-protected-resource/mcp"))
        .await
        .expect("metadata")
        .json()
        .await
        .expect("JSON");
    let issuer = metadata["authorization_servers"][0]
        .as_str()
        .expect("an issuer");
    let discovery: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .expect("discovery")
        .json()
        .await
        .expect("JSON");
    assert_eq!(discovery["issuer"], idp.url());

    let health = reqwest::get(server.http("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(server.http("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.expect("JSON");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["auth"], "jwt", "{ready}");
}

#[tokio::test]
async fn public_base_url_is_the_resource_the_metadata_and_challenges_name() {
    let (idp, server) = stack(&[("PUBLIC_BASE_URL", "https://tools.contoso.example/")]).await;
    let metadata: Value = reqwest::get(server.http("/.well-known/oauth-protected-resource"))
        .await
        .expect("metadata")
        .json()
        .await
        .expect("JSON");
    assert_eq!(metadata["resource"], "https://tools.contoso.example/mcp");
    assert_eq!(metadata["authorization_servers"], json!([idp.url()]));
    let response = post_mcp(&server, &[bearer("garbage")], LIST_TOOLS).await;
    assert_unauthorized(
        "garbage",
        response,
        &challenge("https://tools.contoso.example", true),
    )
    .await;
}

#[tokio::test]
async fn a_jwks_outage_keeps_the_cached_keys_and_fails_closed_on_unknown_ones() {
    let (idp, server) = stack(&[]).await;
    idp.idp.set_jwks_available(false);
    // Past the re-fetch interval (the start-up load counts), an unknown kid makes the verifier
    // try the JWKS again, and that fetch fails.
    tokio::time::sleep(Jwks::MIN_REFETCH + Duration::from_millis(500)).await;
    let fetches = idp.idp.jwks_fetches();
    let foreign = idp.idp.foreign_key().expect("foreign key");
    let unknown = foreign.sign(&foreign.header(), &idp.idp.claims(&spec(&ROLES)));
    let response = post_mcp(&server, &[bearer(&unknown)], LIST_TOOLS).await;
    assert_unauthorized(
        "an unknown kid during the outage",
        response,
        &challenge(&local_base(&server), true),
    )
    .await;
    assert_eq!(
        idp.idp.jwks_fetches(),
        fetches + 1,
        "the verifier tried the JWKS once"
    );

    // The failed fetch kept the cached keys: a fresh token with the known kid verifies.
    let c = server
        .client_with_token(&idp.idp.mint(&spec(&["query"])))
        .await;
    let john = ok(&c, "get_customer_detail", json!({"customer_id": 251})).await;
    assert_eq!(john["first_name"], "John");
    // A key the service has never seen cannot be trusted while the JWKS is down.
    idp.idp.rotate().expect("rotate");
    let rotated = idp.idp.mint(&spec(&["query"]));
    let response = post_mcp(&server, &[bearer(&rotated)], LIST_TOOLS).await;
    assert_unauthorized(
        "a rotated key during the outage",
        response,
        &challenge(&local_base(&server), true),
    )
    .await;
    let ready = server.readyz().await;
    assert_eq!(
        ready["status"], "ready",
        "cached keys keep the service ready"
    );
}

#[tokio::test]
async fn rotated_keys_are_accepted_without_a_restart() {
    let (idp, server) = stack(&[]).await;
    let first = server
        .client_with_token(&idp.idp.mint(&spec(&["query"])))
        .await;
    assert_eq!(first.list_all_tools().await.expect("tools/list").len(), 15);
    // The start-up load counts against the re-fetch interval: rotate once it has passed.
    tokio::time::sleep(Jwks::MIN_REFETCH + Duration::from_millis(500)).await;
    let old_key = idp.idp.signing_key();
    let new_kid = idp.idp.rotate().expect("rotate");
    assert_ne!(new_kid, old_key.kid());

    let rotated = idp.idp.mint(&spec(&ROLES));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(rotated.split('.').next().expect("header"))
            .expect("base64url"),
    )
    .expect("JSON header");
    assert_eq!(header["kid"], new_kid.as_str());
    let c = server.client_with_token(&rotated).await;
    assert_eq!(c.list_all_tools().await.expect("tools/list").len(), 19);
    // The previous key is still published, so tokens it signs keep verifying.
    let old = old_key.sign(&old_key.header(), &idp.idp.claims(&spec(&["query"])));
    let c = server.client_with_token(&old).await;
    assert_eq!(c.list_all_tools().await.expect("tools/list").len(), 15);
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_per_interval() {
    let (idp, server) = stack(&[]).await;
    // Let the interval since the start-up load pass, so the first unknown kid may re-fetch.
    tokio::time::sleep(Jwks::MIN_REFETCH + Duration::from_millis(500)).await;
    let before = idp.idp.jwks_fetches();
    for wave in 0..2 {
        let authorizations: Vec<[String; 1]> = (0..50)
            .map(|_| {
                let claims = idp.idp.claims(&spec(&ROLES));
                // A random kid each time (the claims' jti is a fresh UUID), genuinely signed.
                let header = json!({"alg": "RS256", "typ": "JWT", "kid": claims["jti"]});
                [bearer(&idp.idp.mint_with(&header, &claims))]
            })
            .collect();
        let responses = futures::future::join_all(
            authorizations
                .iter()
                .map(|authorization| post_mcp(&server, authorization, LIST_TOOLS)),
        )
        .await;
        for response in responses {
            assert_eq!(response.status(), 401, "wave {wave}");
        }
    }
    let fetched = idp.idp.jwks_fetches() - before;
    assert!(
        (1..=2).contains(&fetched),
        "100 unknown kids made {fetched} JWKS fetches"
    );
    // The flood did not hurt honest callers.
    let c = server
        .client_with_token(&idp.idp.mint(&spec(&["query"])))
        .await;
    assert_eq!(c.list_all_tools().await.expect("tools/list").len(), 15);
}

#[tokio::test]
async fn keys_published_without_alg_still_verify() {
    // Entra ID publishes its keys without `alg`.
    let idp = spawn_idp(IdpConfig {
        publish_key_alg: false,
        ..IdpConfig::default()
    })
    .await;
    assert!(
        idp.idp.jwks()["keys"][0].get("alg").is_none(),
        "{}",
        idp.idp.jwks()
    );
    let server = jwt_server(&idp, &[]).await;
    let c = server
        .client_with_token(&idp.idp.mint(&spec(&["query"])))
        .await;
    let john = ok(&c, "get_customer_detail", json!({"customer_id": 251})).await;
    assert_eq!(john["first_name"], "John");
    // A key without `alg` does not open the door to other algorithms.
    let claims = idp.idp.claims(&spec(&ROLES));
    let hs256 = forge::hs256(
        &json!({"alg": "HS256", "typ": "JWT", "kid": idp.idp.current_kid()}),
        &claims,
        idp.idp.signing_key().public_key_pem().as_bytes(),
    );
    for (what, token) in [("HS256", hs256), ("alg none", forge::unsigned(&claims))] {
        let response = post_mcp(&server, &[bearer(&token)], LIST_TOOLS).await;
        assert_unauthorized(what, response, &challenge(&local_base(&server), true)).await;
    }
}

fn tool_names(tools: &[rmcp::model::Tool]) -> BTreeSet<String> {
    tools.iter().map(|t| t.name.to_string()).collect()
}

/// The least-privilege default: the roles of which a tool needs one.
fn required_by_default(tool: &str) -> &'static [&'static str] {
    match tool {
        "pay_invoice" | "update_subscription" => &["billing"],
        "get_security_logs" | "unlock_account" => &["security"],
        _ => &ROLES,
    }
}

#[tokio::test]
async fn under_the_default_policy_query_cannot_write_and_a_token_without_roles_gets_nothing() {
    let (idp, server) = stack(&[]).await;
    // Tools seen by each subset of {query, billing, security}: 15 need any role, 2 billing, 2
    // security.
    let expected_counts = [
        (&[][..], 0),
        (&["query"][..], 15),
        (&["billing"][..], 17),
        (&["security"][..], 17),
        (&["query", "billing"][..], 17),
        (&["query", "security"][..], 17),
        (&["billing", "security"][..], 19),
        (&ROLES[..], 19),
    ];
    list_and_call_agree(&idp, &server, &expected_counts, required_by_default).await;

    // A role the platform does not know is no role at all.
    let stranger = server
        .client_with_token(&idp.idp.mint(&spec(&["admin"])))
        .await;
    assert!(
        stranger
            .list_all_tools()
            .await
            .expect("tools/list")
            .is_empty()
    );
    let message = tool_error(
        &stranger,
        "get_customer_detail",
        json!({"customer_id": 251}),
    )
    .await;
    assert!(message.starts_with("not allowed"), "{message}");

    // The list depends on the caller: 2026-07-28 clients are told not to share it.
    let query = idp.idp.mint(&spec(&["query"]));
    let new = server.client_2026_with_token(&query).await;
    let listed = new.list_tools(None).await.expect("tools/list (2026-07-28)");
    assert_eq!(listed.cache_scope, Some(CacheScope::Private));
    assert_eq!(listed.tools.len(), 15);
}

#[tokio::test]
async fn the_role_names_of_the_default_policy_are_settings() {
    let (idp, server) = stack(&[
        ("QUERY_ROLE", "reader"),
        ("BILLING_ROLE", "cashier"),
        ("SECURITY_ROLE", "soc"),
    ])
    .await;
    for (roles, count) in [
        (&["query"][..], 0),
        (&["reader"][..], 15),
        (&["cashier"][..], 17),
        (&["soc"][..], 17),
    ] {
        let c = server.client_with_token(&idp.idp.mint(&spec(roles))).await;
        let listed = c.list_all_tools().await.expect("tools/list").len();
        assert_eq!(listed, count, "{roles:?}");
    }
}

/// For each role set: `tools/list` shows `count` tools, exactly those whose `required` roles
/// the set meets; every tool's call is refused exactly when it is not listed, with a message
/// naming the roles it needs; and a refused write changes nothing.
async fn list_and_call_agree(
    idp: &RunningIdp,
    server: &Server,
    expected_counts: &[(&[&str], usize)],
    required: fn(&str) -> &'static [&'static str],
) {
    let admin = server.client_with_token(&idp.idp.mint(&spec(&ROLES))).await;
    let calls = valid_calls(&admin).await;
    assert_eq!(calls.len(), 19);
    for (roles, count) in expected_counts {
        let c = server.client_with_token(&idp.idp.mint(&spec(roles))).await;
        let listed = tool_names(&c.list_all_tools().await.expect("tools/list"));
        let expected: BTreeSet<String> = calls
            .iter()
            .map(|(tool, _)| *tool)
            .filter(|tool| required(tool).iter().any(|r| roles.contains(r)))
            .map(str::to_owned)
            .collect();
        assert_eq!(listed, expected, "{roles:?}");
        assert_eq!(listed.len(), *count, "{roles:?}");
        for (tool, args) in &calls {
            let writes = WRITES.contains(tool);
            let before = if writes {
                Some(writable_state(&admin).await)
            } else {
                None
            };
            let result = call(&c, tool, args.clone()).await;
            let message = text(&result);
            let refused = result.is_error == Some(true) && message.starts_with("not allowed");
            assert_eq!(
                listed.contains(*tool),
                !refused,
                "{roles:?}: {tool} listed={} but the call said: {message}",
                listed.contains(*tool)
            );
            if refused {
                for role in required(tool) {
                    assert!(message.contains(role), "{roles:?} {tool}: {message}");
                }
                if let Some(before) = before {
                    assert_eq!(
                        writable_state(&admin).await,
                        before,
                        "{roles:?}: the refused {tool} wrote something"
                    );
                }
            } else if *tool != "unlock_account" {
                // (254 unlocks once; later unlocks are refused as "not locked", not for roles.)
                assert_ne!(result.is_error, Some(true), "{roles:?} {tool}: {message}");
            }
        }
    }
}

const POLICY: &str = r#"
default = ["query", "billing", "security"]
[tools]
pay_invoice = ["billing"]
update_subscription = ["billing"]
create_support_ticket = ["billing", "security"]
unlock_account = ["security"]
"#;

/// The roles of which [`POLICY`] asks at least one.
fn required_by_policy(tool: &str) -> &'static [&'static str] {
    match tool {
        "pay_invoice" | "update_subscription" => &["billing"],
        "create_support_ticket" => &["billing", "security"],
        "unlock_account" => &["security"],
        _ => &ROLES,
    }
}

#[tokio::test]
async fn under_a_policy_file_list_and_call_agree_for_every_role_set_and_tool() {
    let idp = spawn_idp(IdpConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("write the policy");
    let policy = policy.to_str().expect("UTF-8 path");
    let mut env = jwt_auth(idp.url());
    env.push(("ROLE_POLICY_FILE", policy));
    let server = Server::start_in(dir, &env).await;
    // Tools seen by each subset of {query, billing, security}: 15 need any role, 4 are narrower.
    let expected_counts = [
        (&[][..], 0),
        (&["query"][..], 15),
        (&["billing"][..], 18),
        (&["security"][..], 17),
        (&["query", "billing"][..], 18),
        (&["query", "security"][..], 17),
        (&["billing", "security"][..], 19),
        (&ROLES[..], 19),
    ];
    list_and_call_agree(&idp, &server, &expected_counts, required_by_policy).await;
}

#[tokio::test]
async fn a_policy_file_naming_an_unknown_tool_stops_the_service() {
    let idp = spawn_idp(IdpConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[tools]\nrefund_everything = [\"billing\"]\n").expect("write");
    let mut env = jwt_auth(idp.url());
    env.push(("ROLE_POLICY_FILE", policy.to_str().expect("UTF-8 path")));
    let output = run_binary(dir.path(), &[], &env).await;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "started anyway:\n{printed}");
    for word in ["ROLE_POLICY_FILE", "refund_everything"] {
        assert!(printed.contains(word), "should name {word}:\n{printed}");
    }
    assert!(
        !dir.path().join("contoso.db").exists(),
        "the policy is checked before the database is touched"
    );
}

#[tokio::test]
async fn passthrough_mode_trusts_unsigned_tokens_but_still_requires_one() {
    let server =
        Server::start_with(&[("DISABLE_AUTH", "false"), ("USE_PASSTHROUGH_AUTH", "true")]).await;
    wait_for_log(&server, "USE_PASSTHROUGH_AUTH=true").await;
    let logs = server.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("USE_PASSTHROUGH_AUTH=true"))
        .expect("warning");
    assert!(warning.contains("WARN"), "{warning}");
    let ready = server.readyz().await;
    assert!(
        ready["auth"]
            .as_str()
            .is_some_and(|a| a.starts_with("passthrough")),
        "{ready}"
    );

    let base = local_base(&server);
    let response = post_mcp(&server, &[], LIST_TOOLS).await;
    assert_unauthorized("no token", response, &challenge(&base, false)).await;
    let response = post_mcp(&server, &[bearer("garbage")], LIST_TOOLS).await;
    assert_unauthorized("garbage", response, &challenge(&base, true)).await;

    let unsigned = |roles: &[&str]| {
        forge::unsigned(&json!({
            "sub": "dev", "tid": defaults::CONTOSO, "roles": roles, "exp": now() + 3600,
        }))
    };
    let query = server.client_with_token(&unsigned(&["query"])).await;
    assert_eq!(query.list_all_tools().await.expect("tools/list").len(), 15);
    let message = tool_error(&query, "unlock_account", json!({"customer_id": 254})).await;
    assert!(message.contains("security"), "{message}");
    let security = server.client_with_token(&unsigned(&["security"])).await;
    assert_eq!(
        security.list_all_tools().await.expect("tools/list").len(),
        17
    );
    ok(&security, "unlock_account", json!({"customer_id": 254})).await;
}

#[tokio::test]
async fn disabled_mode_admits_requests_without_a_token() {
    let server = Server::start_with(&[("DISABLE_AUTH", "true")]).await;
    wait_for_log(&server, "authentication is OFF").await;
    let logs = server.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("authentication is OFF"))
        .expect("warning");
    assert!(warning.contains("WARN"), "{warning}");
    let c = server.client().await;
    assert_eq!(c.list_all_tools().await.expect("tools/list").len(), 19);
    let response = post_mcp(&server, &[], LIST_TOOLS).await;
    assert_eq!(response.status(), 200);
    let ready = server.readyz().await;
    assert!(
        ready["auth"]
            .as_str()
            .is_some_and(|a| a.starts_with("disabled")),
        "{ready}"
    );
}

#[tokio::test]
async fn delegated_tokens_are_accepted_only_from_trusted_actors_one_level_deep() {
    let (idp, server) = stack(&[("TRUSTED_ACTORS", "contoso-agent")]).await;
    let delegated = |act: Value| {
        let mut spec = spec(&["query"]);
        spec.extra.insert("act".into(), act);
        idp.idp.mint(&spec)
    };
    let trusted = delegated(json!({"sub": "contoso-agent"}));
    let c = server.client_with_token(&trusted).await;
    assert_eq!(
        c.list_all_tools().await.expect("tools/list").len(),
        15,
        "the subject's roles apply to the agent acting for them"
    );
    for (what, act) in [
        ("an actor nobody trusts", json!({"sub": "mallory"})),
        (
            "a trusted actor acting for another actor",
            json!({"sub": "contoso-agent", "act": {"sub": "other-agent"}}),
        ),
        ("an actor without a name", json!({})),
    ] {
        let response = post_mcp(&server, &[bearer(&delegated(act))], LIST_TOOLS).await;
        assert_unauthorized(what, response, &challenge(&local_base(&server), true)).await;
    }

    // Without TRUSTED_ACTORS no delegated token is accepted at all.
    let strict = jwt_server(&idp, &[]).await;
    let response = post_mcp(&strict, &[bearer(&trusted)], LIST_TOOLS).await;
    assert_unauthorized(
        "a delegated token, no actor trusted",
        response,
        &challenge(&local_base(&strict), true),
    )
    .await;
}

#[tokio::test]
async fn without_mcp_api_audience_only_tokens_for_the_services_own_resource_are_accepted() {
    let idp = spawn_idp(IdpConfig::default()).await;
    let public = "https://tools.example.com";
    let server = Server::start_with(&[
        ("DISABLE_AUTH", "false"),
        ("AUTH_ISSUER", idp.url()),
        ("PUBLIC_BASE_URL", public),
    ])
    .await;
    let own = TokenSpec {
        audience: Some(format!("{public}/mcp")),
        ..spec(&["query"])
    };
    let c = server.client_with_token(&idp.idp.mint(&own)).await;
    assert_eq!(c.list_all_tools().await.expect("tools/list").len(), 15);
    for other in [
        "api://contoso-mcp",
        "https://tools.example.com",
        "https://other.example.com/mcp",
    ] {
        let token = idp.idp.mint(&TokenSpec {
            audience: Some(other.to_owned()),
            ..spec(&["query"])
        });
        let response = post_mcp(&server, &[bearer(&token)], LIST_TOOLS).await;
        assert_unauthorized(other, response, &challenge(public, true)).await;
    }
}
