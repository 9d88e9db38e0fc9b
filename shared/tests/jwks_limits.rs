//! Fetching an issuer's discovery document and keys from an issuer that misbehaves: a real HTTP
//! server on `127.0.0.1:0`, written on raw sockets so it can serve what no honest server would
//! (a body past the cap with no `Content-Length`, one that drips a byte at a time, garbage, an
//! empty key set), then good keys. Every fetch ends within its bounds, and a failed refresh keeps
//! the last good keys.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::json;
use shared::auth::jwks::{self, FetchLimits, Jwks};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What the issuer serves on every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// The discovery document and a key set with one RSA key (`kid` = [`KID`]).
    Good,
    /// 2 MiB of JSON-looking bytes, without `Content-Length` (the body ends when the connection
    /// closes), so only counting what arrives can stop it.
    Oversized,
    /// `Content-Length` far over the cap, and a short body.
    DeclaredTooLong,
    /// Headers, then a byte every 50 ms for 10 s.
    Drip,
    /// Not JSON.
    Garbage,
    /// A valid, empty key set.
    NoKeys,
    /// A discovery document naming a `jwks_uri` on plain http to the network.
    InsecureJwksUri,
}

const KID: &str = "rfc7638-example";
/// The example key of RFC 7638 §3.1.
const N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

/// Short bounds, so the slow cases stay fast.
const LIMITS: FetchLimits = FetchLimits {
    max_bytes: 1024 * 1024,
    timeout: Duration::from_millis(300),
};

struct Issuer {
    url: String,
    serve: Arc<Mutex<Serve>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Issuer {
    async fn start() -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let serve = Arc::new(Mutex::new(Serve::Good));
        let (issuer, mode) = (url.clone(), serve.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let what = *mode.lock().expect("mode");
                tokio::spawn(answer(socket, what, issuer.clone()));
            }
        });
        Issuer { url, serve, task }
    }

    fn serve(&self, what: Serve) {
        *self.serve.lock().expect("mode") = what;
    }

    fn jwks(&self) -> Jwks {
        Jwks::with_limits(reqwest::Client::new(), format!("{}/jwks", self.url), LIMITS)
    }
}

async fn answer(mut socket: TcpStream, what: Serve, issuer: String) {
    // The request: read up to the end of its headers (a GET has no body).
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let path = String::from_utf8_lossy(&request)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let head = |length: Option<usize>| {
        let length = length.map_or(String::new(), |l| format!("content-length: {l}\r\n"));
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}connection: close\r\n\r\n"
        )
    };
    let json_body = |body: String| format!("{}{body}", head(Some(body.len())));
    let discovery = |jwks_uri: String| {
        json!({"issuer": issuer, "jwks_uri": jwks_uri, "token_endpoint": format!("{issuer}/token")})
            .to_string()
    };
    // Write errors are the client hanging up, which is what the hostile cases expect.
    match what {
        Serve::Good | Serve::InsecureJwksUri if path.ends_with("/openid-configuration") => {
            let jwks_uri = match what {
                Serve::Good => format!("{issuer}/jwks"),
                _ => "http://keys.example.com/jwks".to_owned(),
            };
            let _ = socket
                .write_all(json_body(discovery(jwks_uri)).as_bytes())
                .await;
        }
        Serve::Good | Serve::InsecureJwksUri => {
            let set =
                json!({"keys": [{"kty": "RSA", "use": "sig", "kid": KID, "n": N, "e": "AQAB"}]});
            let _ = socket
                .write_all(json_body(set.to_string()).as_bytes())
                .await;
        }
        Serve::Oversized => {
            let _ = socket.write_all(head(None).as_bytes()).await;
            let _ = socket.write_all(b"{\"keys\": [").await;
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..32 {
                if socket.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        Serve::DeclaredTooLong => {
            let _ = socket
                .write_all(head(Some(50 * 1024 * 1024)).as_bytes())
                .await;
            let _ = socket.write_all(b"{\"keys\": [").await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        Serve::Drip => {
            let _ = socket.write_all(head(None).as_bytes()).await;
            for _ in 0..200 {
                if socket.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Serve::Garbage => {
            let _ = socket
                .write_all(json_body("<html>not json</html>".into()).as_bytes())
                .await;
        }
        Serve::NoKeys => {
            let _ = socket
                .write_all(json_body(r#"{"keys": []}"#.into()).as_bytes())
                .await;
        }
    }
    let _ = socket.shutdown().await;
}

/// Refreshes `jwks`, which must fail within a second, with an error containing `expected`.
async fn refresh_fails(jwks: &Jwks, what: &str, expected: &str) {
    let started = Instant::now();
    let error = jwks.refresh().await.expect_err(what);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
    assert!(error.contains(expected), "{what}: {error}");
    // The last good keys stay in use.
    assert_eq!(jwks.key_count(), 1, "{what}");
    jwks.key(KID)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_keys_whatever_the_issuer_sends() {
    let issuer = Issuer::start().await;
    let jwks = issuer.jwks();
    assert_eq!(jwks.refresh().await.expect("good keys"), 1);

    issuer.serve(Serve::Oversized);
    refresh_fails(&jwks, "a body past the cap", "larger than 1048576 bytes").await;
    issuer.serve(Serve::DeclaredTooLong);
    refresh_fails(&jwks, "a declared length past the cap", "larger than").await;
    issuer.serve(Serve::Drip);
    refresh_fails(&jwks, "a body that drips", "within 300ms").await;
    issuer.serve(Serve::Garbage);
    refresh_fails(&jwks, "garbage", "reading").await;
    issuer.serve(Serve::NoKeys);
    refresh_fails(&jwks, "an empty key set", "no usable signing key").await;

    issuer.serve(Serve::Good);
    assert_eq!(jwks.refresh().await.expect("good keys again"), 1);
}

#[tokio::test]
async fn discovery_is_bounded_and_names_only_secure_urls() {
    let issuer = Issuer::start().await;
    let http = reqwest::Client::new();
    let doc = jwks::discover_document_within(&http, &issuer.url, LIMITS)
        .await
        .expect("discovered");
    assert_eq!(doc.jwks_uri, format!("{}/jwks", issuer.url));

    for (what, serve, expected) in [
        ("a body past the cap", Serve::Oversized, "larger than"),
        ("a body that drips", Serve::Drip, "within 300ms"),
        ("garbage", Serve::Garbage, "reading"),
        ("a plain-http jwks_uri", Serve::InsecureJwksUri, "jwks_uri"),
    ] {
        issuer.serve(serve);
        let started = Instant::now();
        let error = jwks::discover_document_within(&http, &issuer.url, LIMITS)
            .await
            .expect_err(what);
        assert!(started.elapsed() < Duration::from_secs(1), "{what}");
        assert!(error.contains(expected), "{what}: {error}");
    }

    // An issuer on plain http to the network is not even asked.
    let error = jwks::discover(&http, "http://idp.example.com")
        .await
        .expect_err("plain http");
    assert!(error.contains("https://"), "{error}");
}

#[test]
fn the_default_bounds_are_one_mebibyte_and_ten_seconds() {
    assert_eq!(
        FetchLimits::default(),
        FetchLimits {
            max_bytes: 1024 * 1024,
            timeout: Duration::from_secs(10)
        }
    );
    for secure in [
        "https://login.microsoftonline.com/x/v2.0",
        "http://127.0.0.1:4444/jwks",
        "http://[::1]/jwks",
        "http://localhost/jwks",
    ] {
        jwks::check_secure_url(secure).unwrap_or_else(|e| panic!("{secure}: {e}"));
    }
    for insecure in [
        "http://10.1.2.3/jwks",
        "http://[::ffff:10.0.0.1]/",
        "file:///etc/keys",
    ] {
        jwks::check_secure_url(insecure).expect_err(insecure);
    }
}
