//! Delegated tokens for the inner calls: the caller's token exchanged at the issuer for one
//! issued to the tools service, on the caller's behalf.
//!
//! The MCP authorization specification forbids passing a client's token on to another server.
//! Instead, for each caller the agent service asks the issuer's token endpoint for a token whose
//! audience is the tools service, proving who it is with its own client credentials (its secret,
//! or with [`ClientAuth::ManagedIdentity`] a token of its managed identity as a client assertion,
//! see [`super::assertion`]):
//!
//! - [`Grant::Rfc8693`]: OAuth 2.0 Token Exchange (RFC 8693), `subject_token` = the caller's
//!   token; the issued token keeps the caller's `sub`, `tid` and roles and names the agent in
//!   `act`, so the tools service sees a person *and* the agent acting for them;
//! - [`Grant::EntraObo`]: Microsoft Entra's on-behalf-of flow (the JWT bearer grant with
//!   `requested_token_use=on_behalf_of`), for which Entra asks `scope=<app ID URI>/.default`.
//!
//! The `oauth2` crate has neither grant (it covers the RFC 6749 grants and device code), so the
//! two form posts are written here with `reqwest`, which the service already uses.
//!
//! An exchange is a round trip to the issuer; an agent turn makes several inner calls, and a
//! conversation several turns with the same caller token. Exchanged tokens are therefore kept per
//! caller token (by its SHA-256, never the token itself) until [`EXPIRY_MARGIN`] before they
//! expire, in a bounded map.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use aws_lc_rs::digest::{SHA256, digest};
use serde::Deserialize;
use shared::config::Secret;

use super::{
    assertion::{CLIENT_ASSERTION_TYPE, ClientAssertion},
    token::{BearerToken, TokenError, TokenSource},
};

/// A cached token is not handed out this close to its expiry, so it cannot expire in flight.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Cached tokens kept at most; beyond, expired ones are dropped, then all.
const CACHE_MAX: usize = 10_000;
/// An issuer that does not answer within this fails the call, rather than holding it.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which exchange the issuer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Rfc8693,
    EntraObo,
}

/// How the agent proves its identity at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret.
    Basic,
    /// `client_id` and `client_secret` in the form.
    Post,
    /// `client_id` and a token of the managed identity as `client_assertion` (RFC 7523 §2.2),
    /// no secret: Entra's workload identity federation.
    ManagedIdentity,
}

/// What the agent proves its identity with, sent as its [`ClientAuth`] says.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    /// [`ClientAuth::Basic`] with this secret.
    Basic(Secret),
    /// [`ClientAuth::Post`] with this secret.
    Post(Secret),
    /// [`ClientAuth::ManagedIdentity`]: the identity's tokens as assertions.
    Assertion(ClientAssertion),
}

impl ClientCredential {
    /// The [`ClientAuth`] of the configuration, with what it needs: `secret` for the first two,
    /// `assertion` for the managed identity (the configuration has checked which is given).
    pub fn new(
        auth: ClientAuth,
        secret: Option<Secret>,
        assertion: Option<ClientAssertion>,
    ) -> Option<Self> {
        match auth {
            ClientAuth::Basic => secret.map(ClientCredential::Basic),
            ClientAuth::Post => secret.map(ClientCredential::Post),
            ClientAuth::ManagedIdentity => assertion.map(ClientCredential::Assertion),
        }
    }
}

/// Everything an exchange needs, validated by the service's configuration.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    pub grant: Grant,
    pub token_endpoint: String,
    pub client_id: String,
    pub credential: ClientCredential,
    /// The tools service's audience (its resource URL, or an Entra application ID URI).
    pub audience: String,
}

/// A [`TokenSource`] that exchanges each caller's token, with a cache.
#[derive(Debug)]
pub struct TokenExchange {
    settings: ExchangeSettings,
    http: reqwest::Client,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

#[derive(Debug)]
struct Cached {
    token: BearerToken,
    /// When it stops being handed out (its expiry minus [`EXPIRY_MARGIN`]).
    until: Instant,
}

/// The token response (RFC 6749 §5.1); `expires_in` is optional there.
#[derive(Deserialize)]
struct Issued {
    access_token: String,
    expires_in: Option<u64>,
}

/// An error response (RFC 6749 §5.2).
#[derive(Deserialize)]
struct Refused {
    error: String,
    error_description: Option<String>,
}

/// RFC 8693 §3: the caller's token is an OAuth access token.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

impl TokenExchange {
    pub fn new(settings: ExchangeSettings, http: reqwest::Client) -> Self {
        TokenExchange {
            settings,
            http,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &ExchangeSettings {
        &self.settings
    }

    /// Asks the issuer, bypassing the cache (for measuring what an exchange costs).
    pub async fn exchange(
        &self,
        caller: &BearerToken,
    ) -> Result<(BearerToken, Duration), TokenError> {
        let s = &self.settings;
        let assertion = match &s.credential {
            ClientCredential::Assertion(assertion) => Some(assertion.get().await?),
            ClientCredential::Basic(_) | ClientCredential::Post(_) => None,
        };
        let mut form: Vec<(&str, &str)> = match s.grant {
            Grant::Rfc8693 => vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", caller.expose()),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("requested_token_type", ACCESS_TOKEN_TYPE),
            ],
            Grant::EntraObo => vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", caller.expose()),
                ("requested_token_use", "on_behalf_of"),
            ],
        };
        let scope = format!("{}/.default", s.audience);
        match s.grant {
            // RFC 8707: a URI names the resource; RFC 8693 `audience` is for logical names.
            Grant::Rfc8693 if is_url(&s.audience) => form.push(("resource", &s.audience)),
            Grant::Rfc8693 => form.push(("audience", &s.audience)),
            Grant::EntraObo => form.push(("scope", &scope)),
        }
        let mut request = self.http.post(&s.token_endpoint).timeout(EXCHANGE_TIMEOUT);
        match &s.credential {
            ClientCredential::Basic(secret) => {
                request = request.basic_auth(
                    form_urlencode(&s.client_id),
                    Some(form_urlencode(secret.expose())),
                );
            }
            ClientCredential::Post(secret) => {
                form.push(("client_id", &s.client_id));
                form.push(("client_secret", secret.expose()));
            }
            ClientCredential::Assertion(_) => {
                form.push(("client_id", &s.client_id));
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE));
                if let Some(assertion) = &assertion {
                    form.push(("client_assertion", assertion.expose()));
                }
            }
        }
        let response = request.form(&form).send().await.map_err(|error| {
            tracing::warn!(endpoint = %s.token_endpoint, %error, "token endpoint unreachable");
            TokenError::new("the token issuer is unreachable")
        })?;
        let status = response.status();
        if !status.is_success() {
            let refused: Option<Refused> = response.json().await.ok();
            let reason = match refused {
                Some(Refused {
                    error,
                    error_description: Some(description),
                }) => format!("{error}: {description}"),
                Some(Refused { error, .. }) => error,
                None => format!("HTTP {status}"),
            };
            // The issuer's words are for the operator: they describe the agent's own client.
            tracing::warn!(status = status.as_u16(), %reason, "token exchange refused");
            return Err(TokenError::new(
                "the token issuer refused to exchange the caller's token",
            ));
        }
        let issued: Issued = response.json().await.map_err(|error| {
            tracing::warn!(%error, "unreadable token response");
            TokenError::new("the token issuer answered with no usable token")
        })?;
        if issued.access_token.is_empty() {
            return Err(TokenError::new(
                "the token issuer answered with an empty token",
            ));
        }
        // Without `expires_in`, keep it briefly rather than guess its lifetime.
        let lifetime = Duration::from_secs(issued.expires_in.unwrap_or(60));
        Ok((BearerToken::new(issued.access_token), lifetime))
    }

    fn cached(&self, key: &[u8; 32]) -> Option<BearerToken> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(key)?;
        (Instant::now() < entry.until).then(|| entry.token.clone())
    }

    fn remember(&self, key: [u8; 32], token: &BearerToken, lifetime: Duration) {
        let Some(usable) = lifetime.checked_sub(EXPIRY_MARGIN) else {
            return;
        };
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let now = Instant::now();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, entry| entry.until > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Cached {
                token: token.clone(),
                until: now + usable,
            },
        );
    }
}

#[async_trait]
impl TokenSource for TokenExchange {
    async fn token_for(&self, caller: &BearerToken) -> Result<BearerToken, TokenError> {
        let mut key = [0; 32];
        key.copy_from_slice(digest(&SHA256, caller.expose().as_bytes()).as_ref());
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let (token, lifetime) = self.exchange(caller).await?;
        self.remember(key, &token, lifetime);
        Ok(token)
    }

    fn describe(&self) -> String {
        let grant = match self.settings.grant {
            Grant::Rfc8693 => "token exchange (RFC 8693)",
            Grant::EntraObo => "Entra on-behalf-of",
        };
        let proof = match self.settings.credential {
            ClientCredential::Assertion(_) => " with its managed identity",
            ClientCredential::Basic(_) | ClientCredential::Post(_) => "",
        };
        format!(
            "delegated tokens: {grant} as {}{proof}",
            self.settings.client_id
        )
    }

    fn mode(&self) -> &'static str {
        match self.settings.grant {
            Grant::Rfc8693 => "token_exchange",
            Grant::EntraObo => "entra_on_behalf_of",
        }
    }
}

fn is_url(value: &str) -> bool {
    value.starts_with("https://") || value.starts_with("http://")
}

/// `application/x-www-form-urlencoded` encoding, which RFC 6749 §2.3.1 applies to the client id
/// and secret before HTTP Basic joins them.
fn form_urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_form_encoded_for_basic() {
        assert_eq!(form_urlencode("contoso-agent"), "contoso-agent");
        assert_eq!(form_urlencode("a b:c%/é"), "a+b%3Ac%25%2F%C3%A9");
    }

    fn exchange() -> TokenExchange {
        TokenExchange::new(
            ExchangeSettings {
                grant: Grant::Rfc8693,
                token_endpoint: "http://127.0.0.1:9/token".into(),
                client_id: "agent".into(),
                credential: ClientCredential::Basic(Secret::new("s")),
                audience: "http://127.0.0.1:8001/mcp".into(),
            },
            reqwest::Client::new(),
        )
    }

    #[test]
    fn cached_tokens_are_given_until_shortly_before_expiry() {
        let exchange = exchange();
        let token = BearerToken::new("issued");
        exchange.remember([1; 32], &token, Duration::from_secs(300));
        assert_eq!(exchange.cached(&[1; 32]), Some(token.clone()));
        assert_eq!(exchange.cached(&[2; 32]), None);
        // A token that would expire within the margin is not kept at all.
        exchange.remember([3; 32], &token, EXPIRY_MARGIN);
        assert_eq!(exchange.cached(&[3; 32]), None);
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_a_token_error_without_its_url() {
        let error = exchange()
            .token_for(&BearerToken::new("caller"))
            .await
            .expect_err("nothing listens on port 9");
        assert_eq!(error.reason, "the token issuer is unreachable");
    }
}
