//! Bearer tokens as the services read them (`shared::auth`), before and after the signature check.
//!
//! Each input is used twice:
//! 1. as the text after `Bearer ` in an `Authorization` header: [`bearer`] takes it out, then
//!    [`unverified_identity`] (the passthrough development mode) and
//!    [`JwtVerifier::verify_uncached`] read it: JOSE header decoding, the algorithm allow-list,
//!    the key lookup, the signature check;
//! 2. as the claims of a token this target signs (ES256, with a P-256 key generated at start and
//!    published by a JWKS server on loopback, so the verifier takes it like an issuer's), so the
//!    checks *after* the signature are fuzzed too: `iss`, `aud`, `exp`/`nbf`, the claims into
//!    an [`Identity`], the delegation chain (`act`), the tenant allow-list. An input holding a
//!    `0xFF` byte (never part of UTF-8 JSON) is split there: the JOSE header before it, signed as
//!    well, and the claims after.
//!
//! Checks, besides no panic: an accepted identity has a subject and a tenant, the tenant is an
//! admitted one, the audience is ours, the delegation chain is empty or our one trusted actor,
//! it has not expired beyond the leeway; the cached `verify` agrees with `verify_uncached`; and
//! the unverified reading of an accepted token says the same as the verified one.
//!
//! Seeds: `corpus/jwt/` holds devstack IdP tokens (RS256, signed by another key: they exercise
//! step 1 up to the signature) and the claims of such tokens (step 2 accepts them).
#![no_main]

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::TcpListener,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use libfuzzer_sys::fuzz_target;
use shared::auth::{
    Identity,
    jwks::Jwks,
    middleware::bearer,
    verifier::{JwtVerifier, VerifierSettings, unverified_identity},
};

/// What the fuzzed claims must say to be accepted; the devstack IdP's issuer and Contoso route,
/// so the claims of a real devstack token are accepted as they are.
const ISSUER: &str = "http://127.0.0.1:4444";
const AUDIENCE: &str = "http://127.0.0.1:8080/contoso-mcp/mcp";
const CONTOSO: &str = "c0a7050c-0000-4000-8000-000000000001";
const NORTHWIND: &str = "4e077d00-0000-4000-8000-000000000003";
const TRUSTED_ACTOR: &str = "contoso-agent";
const KID: &str = "fuzz-p256";
const LEEWAY: Duration = Duration::from_secs(60);
/// The JOSE header of the tokens this target signs, unless the input brings its own.
const HEADER: &str = r#"{"alg":"ES256","typ":"JWT","kid":"fuzz-p256"}"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: JwtVerifier,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    default_roles: BTreeSet<String>,
}

/// Built once per process: the key, the JWKS server, the verifier with the key loaded.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a P-256 key");
        let point = key.public_key().as_ref();
        assert!(point.len() == 65 && point[0] == 4, "an uncompressed P-256 point");
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":"{KID}","x":"{}","y":"{}"}}]}}"#,
            B64.encode(&point[1..33]),
            B64.encode(&point[33..65]),
        );
        let uri = serve_jwks(jwks);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let jwks = Arc::new(Jwks::new(reqwest::Client::new(), uri));
        let loaded = runtime
            .block_on(jwks.refresh())
            .expect("the JWKS server answers");
        assert_eq!(loaded, 1, "the fuzz key is usable");
        let verifier = JwtVerifier::new(
            VerifierSettings {
                issuer: ISSUER.to_owned(),
                audiences: vec![AUDIENCE.to_owned()],
                allowed_tenants: Some(BTreeSet::from([CONTOSO.to_owned(), NORTHWIND.to_owned()])),
                leeway: LEEWAY,
                trusted_actors: BTreeSet::from([TRUSTED_ACTOR.to_owned()]),
            },
            jwks,
        );
        Fixture {
            runtime,
            verifier,
            key,
            rng: SystemRandom::new(),
            default_roles: BTreeSet::from(["query".to_owned()]),
        }
    })
}

/// Answers every request with the key set, on a loopback port; for the whole process. Also
/// serves the re-fetches the verifier makes (at most one per `Jwks::MIN_REFETCH`) when a
/// fuzzed token names an unknown `kid`.
fn serve_jwks(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let uri = format!(
        "http://{}/jwks",
        listener.local_addr().expect("its address")
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    uri
}

fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit i64")
}

/// `header.claims.signature`, signed with the fuzz key whatever the header says.
fn sign(f: &Fixture, header: &[u8], claims: &[u8]) -> String {
    let message = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let signature = f
        .key
        .sign(&f.rng, message.as_bytes())
        .expect("signing succeeds");
    format!("{message}.{}", B64.encode(signature.as_ref()))
}

/// Reads `token` as a service does and checks what it accepts.
fn check(f: &Fixture, token: &str) {
    let loose = unverified_identity(token, &f.default_roles);
    let Ok(identity) = f.runtime.block_on(f.verifier.verify_uncached(token)) else {
        return;
    };
    assert!(!identity.subject.is_empty(), "no subject: {identity:?}");
    assert!(
        [CONTOSO, NORTHWIND].contains(&identity.tenant.as_str()),
        "tenant not admitted: {identity:?}"
    );
    assert!(
        identity.audiences.iter().any(|a| a == AUDIENCE),
        "audience not ours: {identity:?}"
    );
    assert!(
        identity.actors.is_empty() || identity.actors == [TRUSTED_ACTOR],
        "untrusted delegation accepted: {identity:?}"
    );
    let leeway = i64::try_from(LEEWAY.as_secs()).expect("small");
    assert!(
        identity.expires_at.saturating_add(leeway) >= now(),
        "expired token accepted: {identity:?}"
    );

    let cached = f.runtime.block_on(f.verifier.verify(token));
    assert_eq!(cached.as_ref(), Ok(&identity), "the cache disagrees");

    let loose: Identity = loose.unwrap_or_else(|e| {
        panic!("accepted once verified, refused unverified ({e}): {identity:?}")
    });
    assert_eq!(loose.subject, identity.subject);
    assert_eq!(loose.tenant, identity.tenant);
    assert_eq!(loose.expires_at, identity.expires_at);
    assert_eq!(loose.audiences, identity.audiences);
    assert_eq!(loose.actors, identity.actors);
    if !identity.roles.is_empty() {
        assert_eq!(loose.roles, identity.roles);
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();

    // 1. The input as the token of an Authorization header (a header value is visible ASCII).
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {text}"))
    {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        if let Ok(token) = bearer(&headers) {
            check(f, token);
        }
    }

    // 2. The input as the claims (and, before a 0xFF, the header) of a token signed with our key.
    let (header, claims) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (HEADER.as_bytes(), data),
    };
    check(f, &sign(f, header, claims));
});
