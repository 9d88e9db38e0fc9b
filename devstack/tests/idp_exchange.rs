//! The identity provider's per-resource tokens (RFC 8707), token exchange (RFC 8693) and
//! Entra on-behalf-of grant, over real HTTP on `127.0.0.1:0`. Issued tokens are checked with
//! `jsonwebtoken` against the published JWKS only.

use devstack::idp::{Idp, IdpConfig, KeySource, RunningIdp, TokenSpec, defaults, forge, spawn};
use jsonwebtoken::decode_header;
use serde_json::{Map, Value, json};

mod common;

use common::{jwks_of, verify};

/// The agent service's route: what the user-facing clients' tokens are for by default, and the
/// one resource the agent serves (the only subject tokens it may exchange).
const AGENTS: &str = "http://127.0.0.1:8080/contoso-agent/mcp";
/// The tools service's route: what the agent exchanges its callers' tokens for.
const TOOLS: &str = "http://127.0.0.1:8080/contoso-mcp/mcp";
/// Known to the IdP, but no client here may target it but the second agent.
const FABRIKAM: &str = "http://127.0.0.1:8080/fabrikam-mcp/mcp";

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// An agent serving the tools route that may exchange only for the Fabrikam route: the second
/// hop of a chain, trading the tokens the first agent got for the tools route.
const SECOND_AGENT: &str = "second-agent";

/// A service client registered with targets but no resource of its own: it may not exchange.
const IDLE_AGENT: &str = "idle-agent";

fn config() -> IdpConfig {
    let mut clients = defaults::clients_for(&[AGENTS.to_owned(), TOOLS.to_owned()]);
    clients.push(defaults::agent_client(
        defaults::AGENT_CLIENT_ID,
        &[AGENTS.to_owned()],
        &[TOOLS.to_owned()],
    ));
    clients.push(defaults::agent_client(
        SECOND_AGENT,
        &[TOOLS.to_owned()],
        &[FABRIKAM.to_owned()],
    ));
    clients.push(defaults::agent_client(IDLE_AGENT, &[], &[TOOLS.to_owned()]));
    IdpConfig {
        audiences: vec![AGENTS.to_owned(), TOOLS.to_owned(), FABRIKAM.to_owned()],
        clients,
        ..IdpConfig::default()
    }
}

async fn spawn_idp() -> RunningIdp {
    spawn(config()).await.expect("spawn IdP")
}

/// `POST /token` with `form`, the client's secret in HTTP Basic when `basic` names a client.
async fn post_token(
    running: &RunningIdp,
    basic: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(format!("{}/token", running.url()));
    if let Some(client) = basic {
        request = request.basic_auth(client, Some(format!("{client}-secret")));
    }
    request.form(form).send().await.expect("POST /token")
}

/// The body of a successful token response, after checking the status and `no-store`.
async fn granted(response: reqwest::Response) -> Value {
    let status = response.status();
    let no_store = response.headers().get("cache-control").cloned();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    assert_eq!(no_store.expect("cache-control"), "no-store");
    assert_eq!(body["token_type"], "Bearer");
    body
}

fn access_token(body: &Value) -> &str {
    body["access_token"].as_str().expect("access_token")
}

/// The `error` of a refusal with `status`, after checking it has a description that does not
/// repeat `secret` (the subject token) and issues nothing.
async fn refused(response: reqwest::Response, status: u16, secret: &str) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("JSON");
    let description = body["error_description"].as_str().expect("description");
    assert!(!description.is_empty());
    assert!(
        secret.is_empty() || !body.to_string().contains(secret),
        "the token is not echoed: {body}"
    );
    assert!(body.get("access_token").is_none());
    body["error"].as_str().expect("error").to_owned()
}

/// A user's token for the agent service, from `client_credentials` as `client`.
async fn user_token(running: &RunningIdp, client: &str) -> String {
    let body = granted(
        post_token(
            running,
            Some(client),
            &[("grant_type", "client_credentials"), ("resource", AGENTS)],
        )
        .await,
    )
    .await;
    access_token(&body).to_owned()
}

/// The exchange request of the agent service for `subject` and extra fields.
async fn exchange(
    running: &RunningIdp,
    client: &str,
    subject: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let form = [
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN),
        ][..],
        extra,
    ]
    .concat();
    post_token(running, Some(client), &form).await
}

fn int(claims: &Value, name: &str) -> i64 {
    claims[name].as_i64().unwrap_or_else(|| panic!("{name}"))
}

#[tokio::test]
async fn client_credentials_issue_for_one_registered_resource() {
    let running = spawn_idp().await;
    let jwks = jwks_of(&running).await;
    let issuer = running.url();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], AGENTS),
        (&[("resource", TOOLS)], TOOLS),
        (&[("scope", &format!("{TOOLS}/.default"))], TOOLS),
        (
            &[("resource", TOOLS), ("scope", &format!("{TOOLS}/.default"))],
            TOOLS,
        ),
    ];
    for (target, audience) in cases {
        let form = [&[("grant_type", "client_credentials")][..], target].concat();
        let body = granted(post_token(&running, Some("fabrikam-billing"), &form).await).await;
        assert_eq!(body["expires_in"], 3600);
        assert!(body.get("issued_token_type").is_none());
        let claims = verify(access_token(&body), &jwks, issuer, audience)
            .unwrap_or_else(|e| panic!("{target:?}: {e}"));
        assert_eq!(claims["aud"], audience, "one audience, not a list");
        assert_eq!(claims["tid"], defaults::FABRIKAM);
        assert_eq!(claims["azp"], "fabrikam-billing");
        assert!(claims.get("act").is_none());
    }

    // The agent's own client gets a token for itself (no roles), for its one resource.
    let body = granted(
        post_token(
            &running,
            Some(defaults::AGENT_CLIENT_ID),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    let claims = verify(access_token(&body), &jwks, issuer, TOOLS).expect("verifies");
    assert_eq!(claims["sub"], defaults::AGENT_CLIENT_ID);
    assert_eq!(claims["roles"], json!([]));
}

#[tokio::test]
async fn client_credentials_refuse_targets_the_client_may_not_have() {
    let running = spawn_idp().await;
    let tools_scope = format!("{TOOLS}/.default");
    let fabrikam_scope = format!("{FABRIKAM}/.default");
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("resource", FABRIKAM)], "invalid_target"),
        (&[("scope", &fabrikam_scope)], "invalid_target"),
        (
            &[("resource", "http://127.0.0.1:9/unknown")],
            "invalid_target",
        ),
        (&[("resource", "contoso-mcp")], "invalid_target"),
        (
            &[("resource", AGENTS), ("resource", TOOLS)],
            "invalid_target",
        ),
        (
            &[("resource", AGENTS), ("scope", &tools_scope)],
            "invalid_target",
        ),
        (&[("scope", "api://unknown/.default")], "invalid_scope"),
    ];
    for (target, error) in cases {
        let form = [&[("grant_type", "client_credentials")][..], target].concat();
        let response = post_token(&running, Some("contoso-query"), &form).await;
        assert_eq!(refused(response, 400, "").await, error, "{target:?}");
    }
    // The description says what the client may target.
    let response = post_token(
        &running,
        Some("contoso-query"),
        &[("grant_type", "client_credentials"), ("resource", FABRIKAM)],
    )
    .await;
    let body: Value = response.json().await.expect("JSON");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.contains("contoso-query")
            && description.contains(FABRIKAM)
            && description.contains(&format!("{AGENTS}, {TOOLS}")),
        "{description}"
    );
}

#[tokio::test]
async fn an_exchanged_token_keeps_the_caller_and_names_the_agent_as_actor() {
    let running = spawn_idp().await;
    let jwks = jwks_of(&running).await;
    let issuer = running.url();
    let subject = user_token(&running, "contoso-admin").await;
    let caller = verify(&subject, &jwks, issuer, AGENTS).expect("the caller's token");

    for target in [
        &[("audience", TOOLS)][..],
        &[("resource", TOOLS)],
        &[("scope", &format!("{TOOLS}/.default"))],
        &[("audience", TOOLS), ("resource", TOOLS)],
        &[],
        &[("requested_token_type", JWT)],
        &[("requested_token_type", ACCESS_TOKEN)],
    ] {
        let body =
            granted(exchange(&running, defaults::AGENT_CLIENT_ID, &subject, target).await).await;
        assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
        let claims = verify(access_token(&body), &jwks, issuer, TOOLS)
            .unwrap_or_else(|e| panic!("{target:?}: {e}"));
        for same in ["sub", "oid", "tid", "roles"] {
            assert_eq!(claims[same], caller[same], "{same}");
        }
        assert_eq!(claims["roles"], json!(defaults::ROLES));
        assert_eq!(claims["aud"], TOOLS);
        assert_eq!(claims["azp"], defaults::AGENT_CLIENT_ID);
        assert_eq!(claims["act"], json!({"sub": defaults::AGENT_CLIENT_ID}));
        assert_ne!(claims["jti"], caller["jti"]);
        assert_eq!(claims["nbf"], claims["iat"]);
        assert!(int(&claims, "exp") <= int(&caller, "exp"));
        assert_eq!(
            body["expires_in"].as_i64().expect("expires_in"),
            int(&claims, "exp") - int(&claims, "iat")
        );
    }

    // A subject token that expires sooner caps the new one; `scp` is kept; `jwt` is accepted
    // as the subject token type.
    let spec = TokenSpec {
        audience: Some(AGENTS.to_owned()),
        lifetime: std::time::Duration::from_secs(120),
        extra: Map::from_iter([("scp".to_owned(), json!("tools.read"))]),
        ..TokenSpec::new(defaults::FABRIKAM, ["billing"], "bob")
    };
    let short = running.idp.mint(&spec);
    let caller = verify(&short, &jwks, issuer, AGENTS).expect("minted");
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", short.as_str()),
        ("subject_token_type", JWT),
        ("audience", TOOLS),
    ];
    let body = granted(post_token(&running, Some(defaults::AGENT_CLIENT_ID), &form).await).await;
    let claims = verify(access_token(&body), &jwks, issuer, TOOLS).expect("verifies");
    assert_eq!(claims["exp"], caller["exp"]);
    assert!(body["expires_in"].as_i64().expect("expires_in") <= 120);
    assert_eq!(claims["scp"], "tools.read");
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["tid"], defaults::FABRIKAM);
    assert_eq!(claims["roles"], json!(["billing"]));

    // The exchanging client may also authenticate in the form.
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("client_id", defaults::AGENT_CLIENT_ID),
        ("client_secret", "contoso-agent-secret"),
        ("subject_token", subject.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
    ];
    granted(post_token(&running, None, &form).await).await;
}

#[tokio::test]
async fn on_behalf_of_issues_the_same_delegated_token() {
    let running = spawn_idp().await;
    let jwks = jwks_of(&running).await;
    let issuer = running.url();
    let subject = user_token(&running, "northwind-security").await;
    let caller = verify(&subject, &jwks, issuer, AGENTS).expect("the caller's token");
    let scope = format!("{TOOLS}/.default");
    let form = [
        ("grant_type", JWT_BEARER),
        ("client_id", defaults::AGENT_CLIENT_ID),
        ("client_secret", "contoso-agent-secret"),
        ("assertion", subject.as_str()),
        ("requested_token_use", "on_behalf_of"),
        ("scope", scope.as_str()),
    ];
    let body = granted(post_token(&running, None, &form).await).await;
    let claims = verify(access_token(&body), &jwks, issuer, TOOLS).expect("verifies");
    for same in ["sub", "oid", "tid", "roles"] {
        assert_eq!(claims[same], caller[same], "{same}");
    }
    assert_eq!(claims["tid"], defaults::NORTHWIND);
    assert_eq!(claims["azp"], defaults::AGENT_CLIENT_ID);
    assert_eq!(claims["act"], json!({"sub": defaults::AGENT_CLIENT_ID}));
    assert!(int(&claims, "exp") <= int(&caller, "exp"));
    assert!(body["expires_in"].as_i64().expect("expires_in") > 0);
}

#[tokio::test]
async fn exchanging_a_delegated_token_nests_the_earlier_actors() {
    let running = spawn_idp().await;
    let jwks = jwks_of(&running).await;
    let issuer = running.url();
    let subject = user_token(&running, "contoso-query").await;
    let first = granted(
        exchange(
            &running,
            defaults::AGENT_CLIENT_ID,
            &subject,
            &[("audience", TOOLS)],
        )
        .await,
    )
    .await;
    let second = granted(
        exchange(
            &running,
            SECOND_AGENT,
            access_token(&first),
            &[("resource", FABRIKAM)],
        )
        .await,
    )
    .await;
    let claims = verify(access_token(&second), &jwks, issuer, FABRIKAM).expect("verifies");
    assert_eq!(
        claims["act"],
        json!({"sub": SECOND_AGENT, "act": {"sub": defaults::AGENT_CLIENT_ID}})
    );
    assert_eq!(claims["sub"], "contoso-query");
    assert_eq!(claims["azp"], SECOND_AGENT);

    // The same with a delegated token minted directly (as `devstack token --act` does).
    let spec = TokenSpec {
        audience: Some(AGENTS.to_owned()),
        extra: Map::from_iter([("act".to_owned(), json!({"sub": "a", "act": {"sub": "b"}}))]),
        ..TokenSpec::default()
    };
    let body = granted(
        exchange(
            &running,
            defaults::AGENT_CLIENT_ID,
            &running.idp.mint(&spec),
            &[],
        )
        .await,
    )
    .await;
    let claims = verify(access_token(&body), &jwks, issuer, TOOLS).expect("verifies");
    assert_eq!(
        claims["act"],
        json!({"sub": defaults::AGENT_CLIENT_ID, "act": {"sub": "a", "act": {"sub": "b"}}})
    );
}

#[tokio::test]
async fn exchanges_are_refused_as_rfc8693_says() {
    let running = spawn_idp().await;
    let idp = &running.idp;
    let agent = defaults::AGENT_CLIENT_ID;
    let subject = user_token(&running, "contoso-query").await;
    let spec = TokenSpec {
        audience: Some(AGENTS.to_owned()),
        ..TokenSpec::new(defaults::CONTOSO, ["security"], "mallory")
    };

    // Authentication comes first, then the client's right to exchange.
    let wrong_secret = reqwest::Client::new()
        .post(format!("{}/token", running.url()))
        .basic_auth(agent, Some("wrong"))
        .form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
        ])
        .send()
        .await
        .expect("POST");
    assert!(wrong_secret.headers().contains_key("www-authenticate"));
    assert_eq!(refused(wrong_secret, 401, &subject).await, "invalid_client");
    for user_client in ["contoso-query", "contoso-admin"] {
        let response = exchange(&running, user_client, &subject, &[]).await;
        assert_eq!(
            refused(response, 400, &subject).await,
            "unauthorized_client",
            "{user_client}"
        );
    }

    // Missing or unsupported parameters.
    let missing_subject = post_token(
        &running,
        Some(agent),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    assert_eq!(refused(missing_subject, 400, "").await, "invalid_request");
    let missing_type = post_token(
        &running,
        Some(agent),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject.as_str()),
        ],
    )
    .await;
    assert_eq!(
        refused(missing_type, 400, &subject).await,
        "invalid_request"
    );
    let invalid_request: [&[(&str, &str)]; 4] = [
        &[(
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:id_token",
        )],
        &[(
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        )],
        &[("actor_token", "x")],
        &[("audience", TOOLS), ("scope", "a"), ("scope", "b")],
    ];
    for extra in invalid_request {
        // A later `subject_token_type` repeats the first: the form is given it only once here.
        let form: Vec<(&str, &str)> = [
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject.as_str()),
        ]
        .into_iter()
        .chain(
            extra
                .iter()
                .all(|(name, _)| *name != "subject_token_type")
                .then_some(("subject_token_type", ACCESS_TOKEN)),
        )
        .chain(extra.iter().copied())
        .collect();
        let response = post_token(&running, Some(agent), &form).await;
        assert_eq!(
            refused(response, 400, &subject).await,
            "invalid_request",
            "{extra:?}"
        );
    }

    // Targets the agent may not have: known to the IdP but not its, not known, or several.
    let invalid_target: [&[(&str, &str)]; 5] = [
        &[("audience", AGENTS)],
        &[("resource", FABRIKAM)],
        &[("audience", "api://unknown")],
        &[("audience", TOOLS), ("audience", FABRIKAM)],
        &[("audience", TOOLS), ("resource", FABRIKAM)],
    ];
    for target in invalid_target {
        let response = exchange(&running, agent, &subject, target).await;
        assert_eq!(
            refused(response, 400, &subject).await,
            "invalid_target",
            "{target:?}"
        );
    }

    // Subject tokens this IdP did not sign, does not honour, or cannot read.
    let other_issuer = Idp::new(IdpConfig {
        issuer: Some("http://127.0.0.1:1".into()),
        key: KeySource::Key(idp.signing_key()),
        ..config()
    })
    .expect("another issuer, same key");
    let mut expired = idp.claims(&spec);
    let now = int(&expired, "iat");
    expired["iat"] = json!(now - 600);
    expired["nbf"] = json!(now - 600);
    expired["exp"] = json!(now - 5);
    let mut not_yet = idp.claims(&spec);
    not_yet["nbf"] = json!(now + 600);
    let mut no_tid = idp.claims(&spec);
    no_tid.as_object_mut().expect("object").remove("tid");
    let mut hs256_header = idp.header();
    hs256_header["alg"] = "HS256".into();
    let mut no_kid = idp.header();
    no_kid.as_object_mut().expect("object").remove("kid");
    let foreign = idp.foreign_key().expect("foreign key");
    let invalid_grant = [
        ("foreign key", idp.foreign_key_token(&spec).expect("token")),
        (
            "unknown kid",
            foreign.sign(&foreign.header(), &idp.claims(&spec)),
        ),
        ("no kid", idp.mint_with(&no_kid, &idp.claims(&spec))),
        ("other issuer", other_issuer.mint(&spec)),
        ("expired", idp.mint_with(&idp.header(), &expired)),
        ("not yet valid", idp.mint_with(&idp.header(), &not_yet)),
        ("no tid", idp.mint_with(&idp.header(), &no_tid)),
        ("alg none", forge::unsigned(&idp.claims(&spec))),
        (
            "HS256 keyed with the public key",
            forge::hs256(
                &hs256_header,
                &idp.claims(&spec),
                idp.signing_key().public_key_pem().as_bytes(),
            ),
        ),
        ("not a JWT", "not-a-token".to_owned()),
    ];
    for (what, token) in &invalid_grant {
        let response = exchange(&running, agent, token, &[]).await;
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
        assert!(!body.to_string().contains(token.as_str()), "{what}: {body}");
        if *what == "expired" {
            let description = body["error_description"].as_str().expect("description");
            assert!(description.contains("expired"), "{description}");
        }
    }
    // The same refusals on the on-behalf-of grant.
    let scope = format!("{TOOLS}/.default");
    for (what, token) in &invalid_grant[..4] {
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", token.as_str()),
            ("requested_token_use", "on_behalf_of"),
            ("scope", scope.as_str()),
        ];
        let response = post_token(&running, Some(agent), &form).await;
        assert_eq!(
            refused(response, 400, token).await,
            "invalid_grant",
            "{what}"
        );
    }
}

/// The on-behalf-of request of `client` for `assertion`, for the tools route.
async fn on_behalf_of(running: &RunningIdp, client: &str, assertion: &str) -> reqwest::Response {
    let scope = format!("{TOOLS}/.default");
    let form = [
        ("grant_type", JWT_BEARER),
        ("assertion", assertion),
        ("requested_token_use", "on_behalf_of"),
        ("scope", scope.as_str()),
    ];
    post_token(running, Some(client), &form).await
}

/// The refusal's `error` and `error_description`, after the checks of [`refused`].
async fn refusal(response: reqwest::Response, secret: &str) -> (String, String) {
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("JSON");
    assert!(!body.to_string().contains(secret), "not echoed: {body}");
    assert!(body.get("access_token").is_none());
    let text = |name: &str| body[name].as_str().expect(name).to_owned();
    (text("error"), text("error_description"))
}

#[tokio::test]
async fn a_subject_token_for_another_audience_is_refused() {
    let running = spawn_idp().await;
    let idp = &running.idp;
    let agent = defaults::AGENT_CLIENT_ID;
    let for_audience = |audience: &str| {
        idp.mint(&TokenSpec {
            audience: Some(audience.to_owned()),
            ..TokenSpec::new(defaults::CONTOSO, ["billing"], "alice")
        })
    };
    // A token the user got for another service, one from the token endpoint for the tools
    // route, and the agent's own exchanged token (no exchanging what it already exchanged).
    let from_endpoint = granted(
        post_token(
            &running,
            Some("contoso-query"),
            &[("grant_type", "client_credentials"), ("resource", TOOLS)],
        )
        .await,
    )
    .await;
    let exchanged = granted(
        exchange(
            &running,
            agent,
            &user_token(&running, "contoso-admin").await,
            &[],
        )
        .await,
    )
    .await;
    let mut no_aud = idp.claims(&TokenSpec::default());
    no_aud.as_object_mut().expect("object").remove("aud");
    let cases = [
        ("for Fabrikam", for_audience(FABRIKAM), FABRIKAM),
        (
            "for a resource unknown here",
            for_audience("api://elsewhere"),
            "api://elsewhere",
        ),
        (
            "for the tools route",
            access_token(&from_endpoint).to_owned(),
            TOOLS,
        ),
        (
            "exchanged already",
            access_token(&exchanged).to_owned(),
            TOOLS,
        ),
        (
            "an array without the agent's resource",
            idp.mint(&TokenSpec {
                extra: Map::from_iter([("aud".to_owned(), json!([FABRIKAM, TOOLS]))]),
                ..TokenSpec::default()
            }),
            FABRIKAM,
        ),
        ("no aud", idp.mint_with(&idp.header(), &no_aud), "no aud"),
    ];
    for (what, token, named) in &cases {
        for (grant, response) in [
            ("exchange", exchange(&running, agent, token, &[]).await),
            ("on-behalf-of", on_behalf_of(&running, agent, token).await),
        ] {
            let (error, description) = refusal(response, token).await;
            assert_eq!(error, "invalid_grant", "{what}, {grant}: {description}");
            assert!(
                description.contains(named),
                "{what}, {grant}: {description}"
            );
            if *what != "no aud" {
                assert!(
                    description.contains(&format!("serves ({AGENTS})"))
                        && description.contains("its own callers sent it"),
                    "{what}, {grant}: {description}"
                );
            }
        }
    }
    // The second agent serves the tools route: there the tools token is its caller's.
    granted(exchange(&running, SECOND_AGENT, access_token(&from_endpoint), &[]).await).await;
}

#[tokio::test]
async fn a_subject_token_with_an_array_aud_including_a_served_audience_is_accepted() {
    let running = spawn_idp().await;
    let jwks = jwks_of(&running).await;
    let issuer = running.url();
    let subject = running.idp.mint(&TokenSpec {
        extra: Map::from_iter([("aud".to_owned(), json!([FABRIKAM, AGENTS]))]),
        ..TokenSpec::new(defaults::FABRIKAM, ["query"], "bob")
    });
    for response in [
        exchange(&running, defaults::AGENT_CLIENT_ID, &subject, &[]).await,
        on_behalf_of(&running, defaults::AGENT_CLIENT_ID, &subject).await,
    ] {
        let body = granted(response).await;
        let claims = verify(access_token(&body), &jwks, issuer, TOOLS).expect("verifies");
        assert_eq!(claims["aud"], TOOLS, "one audience, the target");
        assert_eq!(claims["sub"], "bob");
        assert_eq!(claims["tid"], defaults::FABRIKAM);
        assert_eq!(claims["act"], json!({"sub": defaults::AGENT_CLIENT_ID}));
    }
}

#[tokio::test]
async fn a_client_serving_no_resource_may_not_exchange() {
    let running = spawn_idp().await;
    let subject = user_token(&running, "contoso-query").await;
    let for_tools = running.idp.mint(&TokenSpec {
        audience: Some(TOOLS.to_owned()),
        ..TokenSpec::default()
    });
    for token in [&subject, &for_tools] {
        for (grant, response) in [
            ("exchange", exchange(&running, IDLE_AGENT, token, &[]).await),
            (
                "on-behalf-of",
                on_behalf_of(&running, IDLE_AGENT, token).await,
            ),
        ] {
            let (error, description) = refusal(response, token).await;
            assert_eq!(error, "unauthorized_client", "{grant}: {description}");
            assert!(description.contains(IDLE_AGENT), "{description}");
        }
    }
    // It is still a client: `client_credentials` gets it a token for its target.
    granted(
        post_token(
            &running,
            Some(IDLE_AGENT),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn on_behalf_of_refuses_incomplete_requests_and_user_clients() {
    let running = spawn_idp().await;
    let subject = user_token(&running, "contoso-query").await;
    let scope = format!("{TOOLS}/.default");
    let full = [
        ("grant_type", JWT_BEARER),
        ("assertion", subject.as_str()),
        ("requested_token_use", "on_behalf_of"),
        ("scope", scope.as_str()),
    ];
    let without = |name: &str| -> Vec<(&str, &str)> {
        full.iter().copied().filter(|(n, _)| *n != name).collect()
    };
    let with = |name: &str, value: &'static str| -> Vec<(&str, &str)> {
        full.iter()
            .map(|&(n, v)| if n == name { (n, value) } else { (n, v) })
            .collect()
    };
    let agent = Some(defaults::AGENT_CLIENT_ID);
    /// Who authenticates, the form, and the error expected.
    type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (Some("contoso-admin"), full.to_vec(), "unauthorized_client"),
        (agent, without("assertion"), "invalid_request"),
        (agent, without("requested_token_use"), "invalid_request"),
        (
            agent,
            with("requested_token_use", "other"),
            "invalid_request",
        ),
        (agent, without("scope"), "invalid_request"),
        (
            agent,
            with("scope", "api://unknown/.default"),
            "invalid_scope",
        ),
        (
            agent,
            with("scope", "http://127.0.0.1:8080/contoso-agent/mcp/.default"),
            "invalid_target",
        ),
    ];
    for (client, form, error) in cases {
        let response = post_token(&running, client, &form).await;
        assert_eq!(
            refused(response, 400, &subject).await,
            error,
            "{client:?} {form:?}"
        );
    }
    granted(post_token(&running, agent, &full).await).await;
}

#[tokio::test]
async fn subject_tokens_verify_with_rotated_keys_until_they_are_retired() {
    let running = spawn_idp().await;
    let subject = user_token(&running, "contoso-query").await;
    running.idp.rotate().expect("rotate");
    let body = granted(exchange(&running, defaults::AGENT_CLIENT_ID, &subject, &[]).await).await;
    assert_eq!(
        decode_header(access_token(&body)).expect("header").kid,
        Some(running.idp.current_kid()),
        "signed with the new key"
    );
    running.idp.retire_old_keys();
    let response = exchange(&running, defaults::AGENT_CLIENT_ID, &subject, &[]).await;
    assert_eq!(refused(response, 400, &subject).await, "invalid_grant");
}
