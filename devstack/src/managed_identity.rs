//! A stand-in for the managed identity endpoint Azure gives an app in Container Apps and App
//! Service (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, API version 2019-08-01), so the services'
//! Entra authentication to Azure resources can be tested on a laptop: a service started with
//! [`ManagedIdentity::env`] gets its tokens here.
//!
//! Tokens are opaque and numbered (`mi-token-1`, `mi-token-2`, ...) so a test can tell which
//! one a request carried ([`ManagedIdentity::spawn`]), or real JWTs signed by a devstack
//! [`Idp`] ([`ManagedIdentity::spawn_signing`]), with the managed identity's principal id as
//! `sub` and `oid` and the resource asked for as `aud`, as Entra issues them: what a service
//! sends as a client assertion, which the same IdP then verifies against the federated
//! credentials of its client. Every request is recorded; [`ManagedIdentity::refuse`] makes it
//! answer as Azure does for an app with no such identity.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    routing::get,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::idp::{Idp, TokenSpec, defaults};

/// The path Container Apps serves tokens on (`http://localhost:42356/msi/token` there).
const PATH: &str = "/msi/token";

/// One token request as the endpoint saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub api_version: Option<String>,
    /// The resource the token is for (the scope without `/.default`).
    pub resource: Option<String>,
    /// Set when a user-assigned identity is asked for.
    pub client_id: Option<String>,
    /// Whether `X-IDENTITY-HEADER` carried the secret; a token is issued only then.
    pub secret_ok: bool,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<TokenRequest>>,
    issued: Mutex<u64>,
    refusing: Mutex<bool>,
}

/// What the endpoint hands out.
enum Minting {
    /// `mi-token-N`.
    Opaque,
    /// JWTs `idp` signs for the managed identity `principal_id`.
    Jwt { idp: Idp, principal_id: String },
}

struct EndpointState {
    secret: String,
    lifetime: Duration,
    minting: Minting,
    shared: Arc<Shared>,
}

/// The endpoint, serving on `127.0.0.1` until dropped.
pub struct ManagedIdentity {
    /// What `IDENTITY_ENDPOINT` is set to.
    pub endpoint: String,
    /// What `IDENTITY_HEADER` is set to; requests must echo it in `X-IDENTITY-HEADER`.
    pub secret: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for ManagedIdentity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ManagedIdentity {
    /// Starts one issuing tokens valid for `lifetime`. Azure's last an hour or more; SDKs renew
    /// them five minutes before they expire, so a lifetime under five minutes makes every token
    /// request fetch a new one.
    pub async fn spawn(lifetime: Duration) -> std::io::Result<ManagedIdentity> {
        Self::start(lifetime, Minting::Opaque).await
    }

    /// Starts one issuing JWTs that `idp` signs for the managed identity `principal_id`
    /// (`sub`, `oid`), in tenant `contoso`, valid for `lifetime`; `aud` is the resource asked
    /// for, `azp` the user-assigned identity's client id asked for (or `principal_id`).
    pub async fn spawn_signing(
        lifetime: Duration,
        idp: &Idp,
        principal_id: &str,
    ) -> std::io::Result<ManagedIdentity> {
        let minting = Minting::Jwt {
            idp: idp.clone(),
            principal_id: principal_id.to_owned(),
        };
        Self::start(lifetime, minting).await
    }

    async fn start(lifetime: Duration, minting: Minting) -> std::io::Result<ManagedIdentity> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let secret = format!("identity-header-{}", std::process::id());
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route(PATH, get(token))
            .with_state(Arc::new(EndpointState {
                secret: secret.clone(),
                lifetime,
                minting,
                shared: shared.clone(),
            }));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ManagedIdentity {
            endpoint: format!("http://{addr}{PATH}"),
            secret,
            shared,
            task,
        })
    }

    /// The environment Azure sets for an app with a managed identity, pointing here.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("IDENTITY_ENDPOINT", self.endpoint.clone()),
            ("IDENTITY_HEADER", self.secret.clone()),
        ]
    }

    /// Every token request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Whether tokens were asked for, and every one of them for `resource` and the
    /// user-assigned identity `client_id`, with the secret header: what a service configured
    /// with that identity must do. `Err` says which request was not.
    pub fn only_asked_for(&self, resource: &str, client_id: &str) -> Result<(), String> {
        let requests = self.requests();
        if requests.is_empty() {
            return Err("no token was asked for".to_owned());
        }
        match requests.iter().find(|r| {
            r.resource.as_deref() != Some(resource)
                || r.client_id.as_deref() != Some(client_id)
                || !r.secret_ok
        }) {
            Some(other) => Err(format!("not for {resource} as {client_id}: {other:?}")),
            None => Ok(()),
        }
    }

    /// From now on, answer as Azure does when the app has no identity of the kind asked for.
    pub fn refuse(&self) {
        *self.shared.refusing.lock().expect("lock") = true;
    }
}

async fn token(
    State(state): State<Arc<EndpointState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let secret_ok = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        == Some(state.secret.as_str());
    let request = TokenRequest {
        api_version: query.get("api-version").cloned(),
        resource: query.get("resource").cloned(),
        client_id: query.get("client_id").cloned(),
        secret_ok,
    };
    state
        .shared
        .requests
        .lock()
        .expect("lock")
        .push(request.clone());
    if !secret_ok {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "X-IDENTITY-HEADER is missing or wrong",
        );
    }
    if *state.shared.refusing.lock().expect("lock") {
        return refusal(
            StatusCode::BAD_REQUEST,
            "No Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
        );
    }
    let Some(resource) = request.resource else {
        return refusal(StatusCode::BAD_REQUEST, "resource is required");
    };
    let number = {
        let mut issued = state.shared.issued.lock().expect("lock");
        *issued += 1;
        *issued
    };
    let expires_on = (SystemTime::now() + state.lifetime)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let access_token = match &state.minting {
        Minting::Opaque => format!("mi-token-{number}"),
        Minting::Jwt { idp, principal_id } => {
            let client_id = request.client_id.as_deref().unwrap_or(principal_id);
            idp.mint(&TokenSpec {
                audience: Some(resource.clone()),
                lifetime: state.lifetime,
                client_id: Some(client_id.to_owned()),
                // Entra's tokens of a managed identity: `oid` is its principal id, `appid` the
                // client id of its service principal.
                extra: serde_json::Map::from_iter([
                    ("oid".to_owned(), json!(principal_id)),
                    ("appid".to_owned(), json!(client_id)),
                ]),
                ..TokenSpec::new(defaults::CONTOSO, Vec::<String>::new(), principal_id)
            })
        }
    };
    (
        StatusCode::OK,
        Json(json!({
            "access_token": access_token,
            // A string of Unix seconds, as this API version sends it.
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": request.client_id.unwrap_or_else(|| "system-assigned".into()),
        })),
    )
}

fn refusal(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({"statusCode": status.as_u16(), "message": message})),
    )
}
