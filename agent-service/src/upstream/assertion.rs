//! The agent service's proof of identity at the token endpoint without a secret: a token of its
//! managed identity, sent as a client assertion (RFC 7523 §2.2). This is Microsoft Entra's
//! workload identity federation: the agent's app registration has the managed identity as a
//! federated identity credential, and takes the identity's token for the audience
//! `api://AzureADTokenExchange` (another in sovereign clouds) instead of a client secret.
//!
//! The token comes from `shared::azure`, as for every Azure resource the service reaches with its
//! identity: `azure_identity` caches it and renews it five minutes before it expires, so an
//! exchange asks the identity endpoint about once an hour, not once per exchange, and never
//! sends an assertion that would expire in flight.

use reqwest::header::AUTHORIZATION;
use shared::{
    azure::{AzureAuth, AzureAuthError},
    config::{AzureCredential, AzureOpenAiAuth, Secret},
};

use super::token::TokenError;

/// RFC 7523 §2.2: the `client_assertion_type` of a JWT.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The audience of Entra's federated identity credentials in the public cloud.
pub const DEFAULT_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Which identity's tokens are the assertions, and for which audience; validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionSettings {
    pub identity: AzureCredential,
    /// The `aud` the app registration's federated credential expects.
    pub audience: String,
}

/// Client assertions from the managed identity.
#[derive(Debug, Clone)]
pub struct ClientAssertion {
    /// The identity's `Authorization` header for the audience's `/.default` scope: the same
    /// cached Entra token `shared::azure` gives every Azure resource.
    auth: AzureAuth,
}

impl ClientAssertion {
    /// Sets up the identity; nothing is fetched until the first exchange.
    pub fn new(settings: &AssertionSettings) -> Result<Self, AzureAuthError> {
        let auth = AzureAuth::new(&AzureOpenAiAuth::Entra {
            credential: settings.identity.clone(),
            scope: format!("{}/.default", settings.audience),
        })?;
        Ok(ClientAssertion { auth })
    }

    /// A current token of the identity. Why it failed (the identity endpoint's answer) is for
    /// the operator's log; the caller learns only that the agent could not prove who it is.
    pub async fn get(&self) -> Result<Secret, TokenError> {
        let refused = || {
            TokenError::new(
                "the agent service could not prove its identity to the token issuer (no token \
                 from its managed identity)",
            )
        };
        let (name, value) = self.auth.header().await.map_err(|error| {
            tracing::warn!(%error, "no client assertion from the managed identity");
            refused()
        })?;
        let token = (name == AUTHORIZATION)
            .then(|| value.to_str().ok()?.strip_prefix("Bearer "))
            .flatten()
            .ok_or_else(|| {
                tracing::error!("the managed identity's credential gave no bearer token");
                refused()
            })?;
        Ok(Secret::new(token))
    }
}
