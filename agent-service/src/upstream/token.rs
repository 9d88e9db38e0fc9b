//! Where the bearer token of an inner call comes from.
//!
//! Every call to the tools service carries a token that the tools service verifies and applies
//! its role policy to, so the token decides what an agent may do. By default it is a delegated
//! token the issuer gives in exchange for the caller's ([`super::exchange`]); [`PassThrough`],
//! the caller's own token, is a development choice (`TOKEN_EXCHANGE=passthrough`) that the
//! MCP authorization specification forbids in production.

use std::fmt;

use async_trait::async_trait;

/// A bearer token. `Debug` and `Display` never show it; only [`BearerToken::expose`] does,
/// at the one place that puts it in an `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(token.into())
    }

    /// The token itself, for the `Authorization` header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why no token could be had for the tools service (an exchange refused or unreachable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no token for the tools service: {reason}")]
pub struct TokenError {
    /// What went wrong, in words a caller may read: never a token, nor the issuer's address or
    /// its error reply (those are logged where the exchange fails).
    pub reason: String,
}

impl TokenError {
    pub fn new(reason: impl Into<String>) -> Self {
        TokenError {
            reason: reason.into(),
        }
    }
}

/// Gives the token an inner call is made with, on behalf of the caller who sent `caller`.
///
/// Implementations hold whatever they need for every caller (an exchange client, a cache);
/// the per-caller input is the caller's own token, which is also what an on-behalf-of exchange
/// takes as its assertion.
#[async_trait]
pub trait TokenSource: fmt::Debug + Send + Sync {
    async fn token_for(&self, caller: &BearerToken) -> Result<BearerToken, TokenError>;

    /// How inner calls are authorized, for the start-up log.
    fn describe(&self) -> String;

    /// The mode's name alone (no address, no client id), for `/readyz`, which anyone may read.
    fn mode(&self) -> &'static str;
}

/// The caller's own token, unchanged (`TOKEN_EXCHANGE=passthrough`, development only): the
/// tools service sees the caller as if they had called it directly, and cannot tell the agent
/// is involved. The token must then be issued for the tools service as well.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

#[async_trait]
impl TokenSource for PassThrough {
    async fn token_for(&self, caller: &BearerToken) -> Result<BearerToken, TokenError> {
        Ok(caller.clone())
    }

    fn describe(&self) -> String {
        "passthrough (DEVELOPMENT ONLY: callers' own tokens are sent on)".to_owned()
    }

    fn mode(&self) -> &'static str {
        "passthrough"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let token = BearerToken::new("eyJhbGciOiJSUzI1NiJ9.secret.sig");
        let shown = format!("{token:?} {:?}", Some(&token));
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(token.expose(), "eyJhbGciOiJSUzI1NiJ9.secret.sig");
    }

    #[tokio::test]
    async fn pass_through_gives_the_callers_token() {
        let caller = BearerToken::new("caller-token");
        let token = PassThrough.token_for(&caller).await.expect("no exchange");
        assert_eq!(token, caller);
    }
}
