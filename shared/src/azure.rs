//! Authenticating requests to Azure resources (Azure OpenAI today, Cosmos DB next): with the
//! resource's key, or with an Entra token of the service's own identity, so a deployment in
//! Azure needs no secret at all.
//!
//! Tokens come from Microsoft's `azure_identity`, which caches each one and fetches a new one
//! when it is within five minutes of expiring; a request never carries an expired token and
//! the identity endpoint is asked about once an hour, not once a request.

use std::{sync::Arc, time::Duration};

use azure_core::credentials::TokenCredential;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

use crate::config::{AzureCredential, AzureOpenAiAuth};

/// How long getting one token may take. The identity endpoint is local to the host (Container
/// Apps, App Service) or link-local (VMs); longer means it is not there.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request could not be authenticated. Never contains a key or a token.
#[derive(Debug, thiserror::Error)]
pub enum AzureAuthError {
    #[error("setting up the {kind}: {message}")]
    Setup { kind: &'static str, message: String },
    #[error(
        "getting an Entra token for {scope} with the {kind} (AZURE_CREDENTIAL, AZURE_CLIENT_ID): \
         {message}"
    )]
    Token {
        kind: &'static str,
        scope: String,
        message: String,
    },
    #[error("the API key cannot be sent as an HTTP header (control characters?)")]
    MalformedKey,
}

/// The header that authenticates a request to one Azure resource.
#[derive(Clone)]
pub struct AzureAuth {
    kind: &'static str,
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Key(HeaderValue),
    Entra {
        credential: Arc<dyn TokenCredential>,
        scope: String,
    },
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureAuth")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl AzureAuth {
    /// Sets up what the settings describe; nothing is fetched until the first header.
    pub fn new(auth: &AzureOpenAiAuth) -> Result<Self, AzureAuthError> {
        let kind = auth.describe();
        let inner = match auth {
            AzureOpenAiAuth::ApiKey(key) => {
                let mut value = HeaderValue::from_str(key.expose())
                    .map_err(|_| AzureAuthError::MalformedKey)?;
                value.set_sensitive(true);
                Inner::Key(value)
            }
            AzureOpenAiAuth::Entra { credential, scope } => Inner::Entra {
                credential: entra_credential(credential)?,
                scope: scope.clone(),
            },
        };
        Ok(AzureAuth { kind, inner })
    }

    /// "API key" or "managed identity", for logs and readiness.
    pub fn describe(&self) -> &'static str {
        self.kind
    }

    /// The header to send: `api-key`, or `Authorization: Bearer` with a current token.
    pub async fn header(&self) -> Result<(HeaderName, HeaderValue), AzureAuthError> {
        match &self.inner {
            Inner::Key(value) => Ok((HeaderName::from_static("api-key"), value.clone())),
            Inner::Entra { credential, scope } => {
                let failed = |message: String| AzureAuthError::Token {
                    kind: self.kind,
                    scope: scope.clone(),
                    message,
                };
                let token = tokio::time::timeout(
                    TOKEN_TIMEOUT,
                    credential.get_token(&[scope.as_str()], None),
                )
                .await
                .map_err(|_| failed(format!("no answer within {TOKEN_TIMEOUT:?}")))?
                .map_err(|e| failed(e.to_string()))?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.token.secret()))
                    .map_err(|_| failed("the token is not a valid header value".into()))?;
                value.set_sensitive(true);
                Ok((AUTHORIZATION, value))
            }
        }
    }
}

/// The `azure_identity` credential for `credential`.
pub fn entra_credential(
    credential: &AzureCredential,
) -> Result<Arc<dyn TokenCredential>, AzureAuthError> {
    match credential {
        AzureCredential::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                ..ManagedIdentityCredentialOptions::default()
            };
            let credential = ManagedIdentityCredential::new(Some(options)).map_err(|e| {
                AzureAuthError::Setup {
                    kind: "managed identity",
                    message: e.to_string(),
                }
            })?;
            Ok(credential)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[tokio::test]
    async fn a_key_goes_in_the_api_key_header_and_is_never_printed() {
        let auth = AzureAuth::new(&AzureOpenAiAuth::ApiKey(Secret::new("k-123"))).expect("key");
        let (name, value) = auth.header().await.expect("header");
        assert_eq!(name.as_str(), "api-key");
        assert_eq!(value.to_str().expect("ascii"), "k-123");
        assert!(value.is_sensitive());
        assert!(!format!("{auth:?}").contains("k-123"));
        assert_eq!(auth.describe(), "API key");
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused() {
        let refused = AzureAuth::new(&AzureOpenAiAuth::ApiKey(Secret::new("a\nb")));
        assert!(matches!(refused, Err(AzureAuthError::MalformedKey)));
    }
}
