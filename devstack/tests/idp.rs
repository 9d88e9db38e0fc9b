//! The development identity provider from the outside: over real HTTP on `127.0.0.1:0`, and
//! through the `devstack` binary. Tokens are checked with `jsonwebtoken`, an implementation
//! nobody here wrote, using only what the IdP publishes (discovery and JWKS).

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use devstack::idp::{
    self, Idp, IdpConfig, KeySource, RunningIdp, TokenSpec, defaults, forge, spawn,
};
use jsonwebtoken::{Algorithm, EncodingKey, decode_header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

mod common;

use common::{get_json, jwks_of, verify};

/// A fresh folder for one test, under cargo's scratch space for integration tests.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("idp-{test}"));
    // Left over from an earlier run, or absent: either way it must not hold a key now.
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn spawn_default() -> RunningIdp {
    spawn(IdpConfig::default()).await.expect("spawn IdP")
}

#[tokio::test]
async fn discovery_describes_the_bound_issuer() {
    let running = spawn_default().await;
    let url = running.url();
    assert_eq!(url, format!("http://{}", running.addr));
    let doc = get_json(&format!("{url}/.well-known/openid-configuration")).await;
    assert_eq!(
        doc,
        json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "token_endpoint": format!("{url}/token"),
            "response_types_supported": ["token"],
            "grant_types_supported": [
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
            ],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
        })
    );
    assert_eq!(
        get_json(&format!("{url}/healthz")).await,
        json!({"status": "ok"})
    );

    let url = url.to_owned();
    running.stop().await.expect("stops cleanly");
    assert!(reqwest::get(&url).await.is_err(), "no longer listening");
}

#[tokio::test]
async fn minted_tokens_verify_with_the_published_keys() {
    let running = spawn_default().await;
    let jwks = jwks_of(&running).await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["kid"], running.idp.current_kid());

    let spec = TokenSpec::new(defaults::NORTHWIND, ["security"], "carol");
    let token = running.idp.mint(&spec);
    let claims =
        verify(&token, &jwks, running.url(), defaults::AUDIENCE).expect("verifies as issued");
    assert_eq!(claims["tid"], defaults::NORTHWIND);
    assert_eq!(claims["roles"], json!(["security"]));
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["azp"], defaults::CLI_CLIENT_ID);
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        3600
    );

    let error = verify(&token, &jwks, running.url(), "api://other").expect_err("other audience");
    assert!(error.contains("InvalidAudience"), "{error}");
    let error =
        verify(&token, &jwks, "http://elsewhere", defaults::AUDIENCE).expect_err("other issuer");
    assert!(error.contains("InvalidIssuer"), "{error}");
}

#[tokio::test]
async fn keys_can_be_published_without_alg_as_entra_does() {
    let running = spawn(IdpConfig {
        publish_key_alg: false,
        ..IdpConfig::default()
    })
    .await
    .expect("spawn");
    let jwks = jwks_of(&running).await;
    assert!(jwks["keys"][0].get("alg").is_none(), "{jwks}");
    let token = running.idp.mint(&TokenSpec::default());
    verify(&token, &jwks, running.url(), defaults::AUDIENCE).expect("still verifies");
}

async fn post_token(url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(form)
        .send()
        .await
        .expect("POST /token")
}

/// The claims of the token in a successful token response, checked against `jwks`.
async fn granted_claims(response: reqwest::Response, jwks: &Value, issuer: &str) -> Value {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().expect("access_token");
    verify(token, jwks, issuer, defaults::AUDIENCE).expect("verifies")
}

#[tokio::test]
async fn the_token_endpoint_issues_for_form_and_basic_credentials() {
    let running = spawn_default().await;
    let url = running.url();
    let jwks = jwks_of(&running).await;

    let response = post_token(
        url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "contoso-query"),
            ("client_secret", "contoso-query-secret"),
        ],
    )
    .await;
    let claims = granted_claims(response, &jwks, url).await;
    assert_eq!(claims["tid"], defaults::CONTOSO);
    assert_eq!(claims["roles"], json!(["query"]));
    assert_eq!(claims["sub"], "contoso-query");
    assert_eq!(claims["azp"], "contoso-query");

    let response = reqwest::Client::new()
        .post(format!("{url}/token"))
        .basic_auth("fabrikam-billing", Some("fabrikam-billing-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "api://contoso-mcp/.default"),
        ])
        .send()
        .await
        .expect("POST /token");
    let claims = granted_claims(response, &jwks, url).await;
    assert_eq!(claims["tid"], defaults::FABRIKAM);
    assert_eq!(claims["roles"], json!(["billing"]));
}

#[tokio::test]
async fn the_token_endpoint_refuses_as_rfc6749_says() {
    let running = spawn_default().await;
    let url = running.url();
    let good = [
        ("grant_type", "client_credentials"),
        ("client_id", "contoso-query"),
        ("client_secret", "contoso-query-secret"),
    ];
    type Fields = Vec<(&'static str, &'static str)>;
    let with = |name: &str, value: &'static str| -> Fields {
        good.iter()
            .map(|&(n, v)| if n == name { (n, value) } else { (n, v) })
            .collect()
    };
    let cases: Vec<(Fields, u16, &str)> = vec![
        (with("client_secret", "wrong"), 401, "invalid_client"),
        (with("client_id", "nobody"), 401, "invalid_client"),
        (good[..1].to_vec(), 401, "invalid_client"),
        (
            with("grant_type", "password"),
            400,
            "unsupported_grant_type",
        ),
        (good[1..].to_vec(), 400, "invalid_request"),
        (
            [&good[..], &[("scope", "api://elsewhere/.default")]].concat(),
            400,
            "invalid_scope",
        ),
    ];
    for (form, status, error) in cases {
        let response = post_token(url, &form).await;
        assert_eq!(response.status(), status, "{form:?}");
        if status == 401 {
            assert!(response.headers().contains_key("www-authenticate"));
        }
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"], error, "{form:?}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert!(body.get("access_token").is_none());
    }

    // Two ways of authenticating at once, and a body that is not a form.
    let both = reqwest::Client::new()
        .post(format!("{url}/token"))
        .basic_auth("contoso-query", Some("contoso-query-secret"))
        .form(&good)
        .send()
        .await
        .expect("POST");
    assert_eq!(both.status(), 400);
    assert_eq!(
        both.json::<Value>().await.expect("JSON")["error"],
        "invalid_request"
    );
    let json_body = reqwest::Client::new()
        .post(format!("{url}/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(json_body.status(), 400);
    assert_eq!(
        json_body.json::<Value>().await.expect("JSON")["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn rotation_publishes_both_keys_until_the_old_one_is_retired() {
    let running = spawn(IdpConfig {
        allow_rotation: true,
        ..IdpConfig::default()
    })
    .await
    .expect("spawn");
    let url = running.url();
    let old_kid = running.idp.current_kid();
    let before = running.idp.mint(&TokenSpec::default());

    let client = reqwest::Client::new();
    let rotated: Value = client
        .post(format!("{url}/rotate"))
        .send()
        .await
        .expect("POST /rotate")
        .json()
        .await
        .expect("JSON");
    let new_kid = rotated["kid"].as_str().expect("kid").to_owned();
    assert_ne!(new_kid, old_kid);

    let jwks = jwks_of(&running).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
    let after = running.idp.mint(&TokenSpec::default());
    assert_eq!(decode_header(&after).expect("header").kid, Some(new_kid));
    verify(&before, &jwks, url, defaults::AUDIENCE).expect("old token still verifies");
    verify(&after, &jwks, url, defaults::AUDIENCE).expect("new token verifies");

    let retired: Value = client
        .post(format!("{url}/retire"))
        .send()
        .await
        .expect("POST /retire")
        .json()
        .await
        .expect("JSON");
    assert_eq!(retired, json!({"retired": 1}));
    let jwks = jwks_of(&running).await;
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 1);
    let error = verify(&before, &jwks, url, defaults::AUDIENCE).expect_err("retired key");
    assert!(error.contains("not in the JWKS"), "{error}");
    verify(&after, &jwks, url, defaults::AUDIENCE).expect("current key verifies");
}

#[tokio::test]
async fn rotation_over_http_needs_to_be_enabled() {
    let running = spawn_default().await;
    for path in ["rotate", "retire"] {
        let response = reqwest::Client::new()
            .post(format!("{}/{path}", running.url()))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn a_jwks_outage_answers_503_and_every_fetch_is_counted() {
    let running = spawn_default().await;
    let url = format!("{}/jwks", running.url());
    assert_eq!(running.idp.jwks_fetches(), 0);
    get_json(&url).await;
    running.idp.set_jwks_available(false);
    for _ in 0..2 {
        let response = reqwest::get(&url).await.expect("GET");
        assert_eq!(response.status(), 503);
        assert!(response.json::<Value>().await.expect("JSON")["error"].is_string());
    }
    running.idp.set_jwks_available(true);
    get_json(&url).await;
    assert_eq!(running.idp.jwks_fetches(), 4);
    // Discovery is not a JWKS fetch.
    get_json(&format!(
        "{}/.well-known/openid-configuration",
        running.url()
    ))
    .await;
    assert_eq!(running.idp.jwks_fetches(), 4);
}

#[tokio::test]
async fn forged_tokens_do_not_verify() {
    let running = spawn_default().await;
    let idp = &running.idp;
    let jwks = jwks_of(&running).await;
    let spec = TokenSpec::new(defaults::CONTOSO, ["security"], "mallory");
    let issuer = idp.issuer();

    // A real RSA signature by a key the JWKS does not have, claiming the published kid.
    let foreign = idp.foreign_key_token(&spec).expect("foreign token");
    assert_eq!(
        decode_header(&foreign).expect("header").kid,
        Some(idp.current_kid())
    );
    let error = verify(&foreign, &jwks, issuer, defaults::AUDIENCE).expect_err("foreign key");
    assert!(error.contains("InvalidSignature"), "{error}");
    assert_eq!(
        idp.foreign_key().expect("key").kid(),
        idp.foreign_key().expect("same key").kid()
    );
    assert!(
        !jwks
            .to_string()
            .contains(idp.foreign_key().expect("key").kid()),
        "the foreign key is never published"
    );

    // The key-confusion attack: HS256 keyed with the published public key. A verifier that
    // allows only RS256 refuses it.
    let public_pem = idp.signing_key().public_key_pem();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let confused = forge::hs256(
        &json!({"alg": "HS256", "typ": "JWT", "kid": idp.current_kid()}),
        &idp.claims(&spec),
        public_pem.as_bytes(),
    );
    assert!(verify(&confused, &jwks, issuer, defaults::AUDIENCE).is_err());
    assert!(
        verify(
            &forge::unsigned(&idp.claims(&spec)),
            &jwks,
            issuer,
            defaults::AUDIENCE
        )
        .is_err()
    );

    // A genuine signature under a header that lies about the algorithm.
    let mut header = idp.header();
    header["alg"] = "RS512".into();
    let lying = idp.mint_with(&header, &idp.claims(&spec));
    assert!(verify(&lying, &jwks, issuer, defaults::AUDIENCE).is_err());
    // The same call with the honest header is a valid token: mint_with signs what it is given.
    let honest = idp.mint_with(&idp.header(), &idp.claims(&spec));
    verify(&honest, &jwks, issuer, defaults::AUDIENCE).expect("honest header verifies");
}

#[test]
fn instances_sharing_a_key_file_verify_each_others_tokens() {
    let dir = scratch_dir("shared-key");
    let path = dir.join(idp::KEY_FILE);
    let config = || IdpConfig {
        key: KeySource::File(path.clone()),
        ..IdpConfig::default()
    };
    let first = Idp::new(config()).expect("creates the key");
    let second = Idp::new(config()).expect("loads the key");
    // Handing a loaded key to another IdP (say, one with the wrong issuer) signs alike.
    let third = Idp::new(IdpConfig {
        key: KeySource::Key(first.signing_key()),
        ..IdpConfig::default()
    })
    .expect("shares the key");
    assert_eq!(third.jwks(), first.jwks());
    assert_eq!(first.current_kid(), second.current_kid());
    let token = first.mint(&TokenSpec::default());
    verify(&token, &second.jwks(), second.issuer(), defaults::AUDIENCE).expect("cross-verifies");
    let token = second.mint(&TokenSpec::default());
    verify(&token, &first.jwks(), first.issuer(), defaults::AUDIENCE).expect("cross-verifies");

    let pem = std::fs::read(&path).expect("key file");
    assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the key");
    }
    let litter: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(litter, [idp::KEY_FILE], "no temporary files left");

    // jsonwebtoken signs with the file as it is (PKCS#8 PEM), and the IdP's JWKS verifies it.
    let key = EncodingKey::from_rsa_pem(&pem).expect("jsonwebtoken reads the key file");
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some(first.current_kid());
    let token = jsonwebtoken::encode(&header, &first.claims(&TokenSpec::default()), &key)
        .expect("jsonwebtoken signs");
    verify(&token, &first.jwks(), first.issuer(), defaults::AUDIENCE).expect("verifies");
}

#[test]
fn a_der_key_file_works_too() {
    let path = scratch_dir("der-key").join("nested").join("key.der");
    let first = Idp::new(IdpConfig {
        key: KeySource::File(path.clone()),
        ..IdpConfig::default()
    })
    .expect("creates");
    let der = std::fs::read(&path).expect("key file");
    assert_eq!(der[0], 0x30, "a DER SEQUENCE, not PEM");
    let again = idp::SigningKey::from_bytes(&der, "key.der").expect("loads");
    assert_eq!(again.kid(), first.current_kid());
}

#[test]
fn a_corrupt_key_file_is_an_error_naming_the_file() {
    let dir = scratch_dir("corrupt-key");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(idp::KEY_FILE);
    std::fs::write(&path, "garbage").expect("write");
    let error = Idp::new(IdpConfig {
        key: KeySource::File(path.clone()),
        ..IdpConfig::default()
    })
    .expect_err("corrupt");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

fn devstack(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(args)
        .env_remove("DEVSTACK_ISSUER")
        .env_remove("DEVSTACK_DATA_DIR")
        .env_remove("MCP_API_AUDIENCE")
        .output()
        .expect("run devstack")
}

#[test]
fn the_cli_prints_a_token_as_asked() {
    let dir = scratch_dir("cli-token");
    let data_dir = dir.to_str().expect("utf-8 path");
    let output = devstack(&[
        "token",
        "--tenant",
        "fabrikam",
        "--roles",
        "query,security",
        "--sub",
        "bob",
        "--lifetime-secs",
        "120",
        "--data-dir",
        data_dir,
    ]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let token = stdout.trim_end();
    assert_eq!(stdout, format!("{token}\n"), "one line, only the token");

    // An IdP on the same data folder publishes the key that signed it.
    let idp = Idp::new(IdpConfig {
        key: KeySource::File(dir.join(idp::KEY_FILE)),
        ..IdpConfig::default()
    })
    .expect("idp");
    // For the Contoso route of the local gateway unless told otherwise.
    let claims = verify(
        token,
        &idp.jwks(),
        defaults::ISSUER,
        defaults::CONTOSO_ROUTE_RESOURCE,
    )
    .expect("verifies");
    assert_eq!(claims["tid"], defaults::FABRIKAM);
    assert_eq!(claims["roles"], json!(["query", "security"]));
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["azp"], defaults::CLI_CLIENT_ID);
    assert!(claims.get("act").is_none());
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        120
    );

    // A tid works as well as a name.
    let output = devstack(&[
        "token",
        "--tenant",
        defaults::NORTHWIND,
        "--audience",
        "api://agents",
        "--data-dir",
        data_dir,
    ]);
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let claims = verify(token.trim(), &idp.jwks(), defaults::ISSUER, "api://agents").expect("ok");
    assert_eq!(claims["tid"], defaults::NORTHWIND);
    assert_eq!(claims["roles"], json!([]));

    // `--resource` is the flag's name (`--audience` its alias), and `--act` mints a delegated
    // token, as the token exchange issues it.
    let output = devstack(&[
        "token",
        "--tenant",
        "contoso",
        "--resource",
        "http://127.0.0.1:8080/fabrikam-mcp/mcp",
        "--act",
        defaults::AGENT_CLIENT_ID,
        "--act",
        "upstream-agent",
        "--data-dir",
        data_dir,
    ]);
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let claims = verify(
        token.trim(),
        &idp.jwks(),
        defaults::ISSUER,
        "http://127.0.0.1:8080/fabrikam-mcp/mcp",
    )
    .expect("ok");
    assert_eq!(claims["azp"], defaults::AGENT_CLIENT_ID);
    assert_eq!(
        claims["act"],
        json!({"sub": defaults::AGENT_CLIENT_ID, "act": {"sub": "upstream-agent"}})
    );
}

#[test]
fn the_cli_lists_the_known_tenants_for_an_unknown_one() {
    let dir = scratch_dir("cli-unknown");
    let output = devstack(&[
        "token",
        "--tenant",
        "initech",
        "--data-dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    for word in ["initech", "contoso", "fabrikam", "northwind"] {
        assert!(stderr.contains(word), "{stderr}");
    }
}

#[test]
fn the_cli_explains_itself() {
    for args in [&["--help"][..], &["token", "--help"], &["idp", "--help"]] {
        let output = devstack(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert!(!output.stdout.is_empty());
    }
    let help = String::from_utf8(devstack(&["token", "--help"]).stdout).expect("utf-8");
    for flag in [
        "--tenant",
        "--roles",
        "--sub",
        "--resource",
        "--audience",
        "--act",
        "--lifetime-secs",
        "--issuer",
        "--data-dir",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

/// The promise of the issue: `devstack idp` serves, and `devstack token` for its issuer and
/// data folder prints a token its published keys verify.
#[tokio::test]
async fn a_cli_token_verifies_against_the_idp_process() {
    let dir = scratch_dir("cli-and-server");
    let data_dir = dir.to_str().expect("utf-8");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_devstack"))
        .args(["idp", "--bind", "127.0.0.1:0", "--data-dir", data_dir])
        .env_remove("DEVSTACK_ISSUER")
        .env_remove("MCP_API_AUDIENCE")
        .env("LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start devstack idp");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("log line") {
            if let Some((_, addr)) = line.split_once("listening on ") {
                return addr.trim().to_owned();
            }
        }
        panic!("devstack idp exited before listening");
    })
    .await
    .expect("listening within 30 s");

    let discovery = get_json(&format!("{url}/.well-known/openid-configuration")).await;
    assert_eq!(discovery["issuer"], url.as_str());
    let jwks = get_json(discovery["jwks_uri"].as_str().expect("jwks_uri")).await;

    let output = devstack(&[
        "token",
        "--tenant",
        "contoso",
        "--roles",
        "billing",
        "--issuer",
        &url,
        "--data-dir",
        data_dir,
    ]);
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let claims =
        verify(token.trim(), &jwks, &url, defaults::CONTOSO_ROUTE_RESOURCE).expect("verifies");
    assert_eq!(claims["roles"], json!(["billing"]));

    // The agent client of `devstack idp` serves the IdP's audiences: it exchanges a token for
    // one of them, and refuses this one, which is for a resource (the gateway's Contoso route)
    // the agent does not serve.
    let exchange = |subject: String| {
        reqwest::Client::new()
            .post(format!("{url}/token"))
            .basic_auth(defaults::AGENT_CLIENT_ID, Some("contoso-agent-secret"))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", subject.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ])
            .send()
    };
    let refused = exchange(token.trim().to_owned())
        .await
        .expect("POST /token");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.contains(defaults::CONTOSO_ROUTE_RESOURCE)
            && description.contains(defaults::AUDIENCE),
        "{description}"
    );

    let output = devstack(&[
        "token",
        "--tenant",
        "contoso",
        "--resource",
        defaults::AUDIENCE,
        "--issuer",
        &url,
        "--data-dir",
        data_dir,
    ]);
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let exchanged = exchange(token.trim().to_owned())
        .await
        .expect("POST /token");
    assert_eq!(exchanged.status(), 200);
    let body: Value = exchanged.json().await.expect("JSON");
    let claims = verify(
        body["access_token"].as_str().expect("access_token"),
        &jwks,
        &url,
        defaults::AUDIENCE,
    )
    .expect("verifies");
    assert_eq!(claims["act"], json!({"sub": defaults::AGENT_CLIENT_ID}));
    server.kill().await.expect("stop devstack idp");
}
