//! Authentication settings, validated into a plan before any port is bound, then built into an
//! [`AuthMode`] (which may need the network, for OIDC discovery and the first key load).
//!
//! JWT verification is the default whenever an issuer is configured. The two development modes
//! (`USE_PASSTHROUGH_AUTH`, `DISABLE_AUTH`) must be asked for by name and are announced loudly;
//! with no issuer and neither flag, the service refuses to start and says what to set.

use std::{collections::BTreeSet, path::PathBuf, sync::Arc, time::Duration};

use clap::ArgAction;

use super::{
    RolePolicy,
    jwks::{Jwks, check_secure_url, discover},
    policy::PlatformRoles,
    verifier::{JwtVerifier, VerifierSettings},
};
use crate::config::{ConfigError, boolish};

#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Host names other than the loopback that the issuer, its keys and Cosmos DB may be reached
    /// at over plain http://, comma separated: only hosts of a private network nobody else is on
    /// (a compose network's `idp`). Warned about at start. None by default.
    #[arg(long, env = "ALLOW_PLAIN_HTTP_HOSTS", value_delimiter = ',')]
    pub allow_plain_http_hosts: Vec<String>,
    /// OIDC issuer whose tokens are accepted (discovery at `<issuer>/.well-known/openid-configuration`).
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// JWKS URL, to skip discovery.
    #[arg(long, env = "AUTH_JWKS_URI")]
    pub auth_jwks_uri: Option<String>,
    /// Microsoft Entra tenant id: shorthand for the issuer `https://login.microsoftonline.com/<id>/v2.0`.
    #[arg(long, env = "AAD_TENANT_ID")]
    pub aad_tenant_id: Option<String>,
    /// Accepted token audiences (`aud`), comma separated: this server's own resource
    /// identifiers, e.g. its public MCP URL and its Entra application ID URI. Default: the
    /// resource URL `<PUBLIC_BASE_URL>/mcp`, the `resource` of the RFC 9728 metadata.
    #[arg(long, env = "MCP_API_AUDIENCE", value_delimiter = ',')]
    pub mcp_api_audience: Vec<String>,
    /// Client ids trusted to present delegated tokens (`act`, RFC 8693) on their subject's behalf,
    /// comma separated, e.g. the agent service's client id. Default: none, so every delegated
    /// token is refused.
    #[arg(long, env = "TRUSTED_ACTORS", value_delimiter = ',')]
    pub trusted_actors: Vec<String>,
    /// Tenant ids (`tid`) admitted, comma separated; empty admits every tenant of the issuer.
    #[arg(long, env = "ALLOWED_TENANTS", value_delimiter = ',')]
    pub allowed_tenants: Vec<String>,
    /// DEVELOPMENT ONLY: accept any well-formed token without checking its signature.
    #[arg(long, env = "USE_PASSTHROUGH_AUTH", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub use_passthrough_auth: bool,
    /// DEVELOPMENT ONLY: accept every request, token or not.
    #[arg(long, env = "DISABLE_AUTH", default_value_t = false, action = ArgAction::Set, value_parser = boolish())]
    pub disable_auth: bool,
    /// Roles given to callers in the development modes when the token carries none
    /// (default: every role the policy names).
    #[arg(long, env = "AUTH_DEFAULT_ROLES", value_delimiter = ',')]
    pub auth_default_roles: Vec<String>,
    /// Role of read-only staff in the default policy: every read tool, no write.
    #[arg(long, env = "QUERY_ROLE", default_value = "query")]
    pub query_role: String,
    /// Role of billing staff in the default policy: the read tools, `pay_invoice` and
    /// `update_subscription`.
    #[arg(long, env = "BILLING_ROLE", default_value = "billing")]
    pub billing_role: String,
    /// Role of security staff in the default policy: the read tools, `get_security_logs` and
    /// `unlock_account`.
    #[arg(long, env = "SECURITY_ROLE", default_value = "security")]
    pub security_role: String,
    /// Role policy file (TOML) replacing the default policy.
    #[arg(long, env = "ROLE_POLICY_FILE")]
    pub role_policy_file: Option<PathBuf>,
    /// Public URL of this service as clients see it (for the OAuth metadata); default: the bound address.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// Scopes advertised in the OAuth metadata; default: none for a resource URL audience
    /// (clients send `resource`), `<audience>/.default` for an application ID URI.
    #[arg(long, env = "AUTH_SCOPES", value_delimiter = ',')]
    pub auth_scopes: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "AUTH_LEEWAY_SECS", default_value_t = 60)]
    pub auth_leeway_secs: u64,
}

/// The validated settings; building it into an [`AuthMode`] is the only step that can need the network.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub kind: PlanKind,
    pub policy: RolePolicy,
    pub public_base_url: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum PlanKind {
    Jwt {
        settings: VerifierSettings,
        jwks_uri: Option<String>,
    },
    Passthrough {
        default_roles: BTreeSet<String>,
    },
    Disabled {
        default_roles: BTreeSet<String>,
    },
}

/// How requests are authenticated, ready to use.
#[derive(Debug, Clone)]
pub enum AuthMode {
    Jwt(Arc<JwtVerifier>),
    Passthrough { default_roles: BTreeSet<String> },
    Disabled { roles: BTreeSet<String> },
}

impl AuthMode {
    /// A short description for `/readyz` and the start-up log.
    pub fn describe(&self) -> &'static str {
        match self {
            AuthMode::Jwt(_) => "jwt",
            AuthMode::Passthrough { .. } => {
                "passthrough (DEVELOPMENT ONLY: signatures are not checked)"
            }
            AuthMode::Disabled { .. } => "disabled (DEVELOPMENT ONLY: every request is accepted)",
        }
    }

    /// Whether the mode can admit anyone: JWT needs its keys loaded.
    pub fn ready(&self) -> bool {
        match self {
            AuthMode::Jwt(v) => v.jwks().key_count() > 0,
            _ => true,
        }
    }
}

fn non_empty(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

impl AuthArgs {
    pub fn plan(&self) -> Result<AuthPlan, ConfigError> {
        // Before any URL is checked: the issuer's below, Cosmos DB's after.
        super::jwks::allow_plain_http_to(&self.allow_plain_http_hosts);
        super::jwks::warn_plain_http();
        let policy = match &self.role_policy_file {
            None => RolePolicy::least_privilege(&self.platform_roles()?),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(
                        "ROLE_POLICY_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                RolePolicy::from_toml(&text).map_err(|e| {
                    ConfigError::new("ROLE_POLICY_FILE", format!("{}: {e}", path.display()))
                })?
            }
        };
        let default_roles: BTreeSet<String> = match non_empty(&self.auth_default_roles) {
            roles if roles.is_empty() => policy.roles(),
            roles => roles.into_iter().collect(),
        };
        let audiences = non_empty(&self.mcp_api_audience);
        let issuer = match (&self.auth_issuer, &self.aad_tenant_id) {
            (Some(issuer), _) if !issuer.trim().is_empty() => {
                Some(issuer.trim().trim_end_matches('/').to_owned())
            }
            (_, Some(tenant)) if !tenant.trim().is_empty() => Some(format!(
                "https://login.microsoftonline.com/{}/v2.0",
                tenant.trim()
            )),
            _ => None,
        };
        if self.use_passthrough_auth && self.disable_auth {
            return Err(ConfigError::new(
                "DISABLE_AUTH",
                "USE_PASSTHROUGH_AUTH and DISABLE_AUTH are both true; choose one",
            ));
        }
        let kind = if self.disable_auth {
            PlanKind::Disabled { default_roles }
        } else if self.use_passthrough_auth {
            PlanKind::Passthrough { default_roles }
        } else {
            let Some(issuer) = issuer else {
                return Err(ConfigError::new(
                    "AUTH_ISSUER",
                    "no token issuer configured: set AUTH_ISSUER (or AAD_TENANT_ID) and MCP_API_AUDIENCE to verify \
                     tokens, or for local development only USE_PASSTHROUGH_AUTH=true or DISABLE_AUTH=true",
                ));
            };
            // Keys and tokens are trusted from there: nobody on the network may change them.
            let issuer_setting = match &self.auth_issuer {
                Some(given) if !given.trim().is_empty() => "AUTH_ISSUER",
                _ => "AAD_TENANT_ID",
            };
            check_secure_url(&issuer).map_err(|e| ConfigError::new(issuer_setting, e))?;
            let jwks_uri = self.auth_jwks_uri.clone().filter(|u| !u.trim().is_empty());
            if let Some(uri) = &jwks_uri {
                check_secure_url(uri.trim()).map_err(|e| ConfigError::new("AUTH_JWKS_URI", e))?;
            }
            let allowed = non_empty(&self.allowed_tenants);
            PlanKind::Jwt {
                settings: VerifierSettings {
                    issuer,
                    audiences: audiences.clone(),
                    allowed_tenants: (!allowed.is_empty()).then(|| allowed.into_iter().collect()),
                    leeway: Duration::from_secs(self.auth_leeway_secs),
                    trusted_actors: non_empty(&self.trusted_actors).into_iter().collect(),
                },
                jwks_uri: jwks_uri.map(|u| u.trim().to_owned()),
            }
        };
        // A URL audience is asked for with RFC 8707 `resource`; an application ID URI
        // (`api://...`, Entra) with the `<uri>/.default` scope.
        let scopes = match non_empty(&self.auth_scopes) {
            scopes if !scopes.is_empty() => scopes,
            _ => audiences
                .iter()
                .find(|a| !a.starts_with("http://") && !a.starts_with("https://"))
                .map(|a| vec![format!("{a}/.default")])
                .unwrap_or_default(),
        };
        Ok(AuthPlan {
            kind,
            policy,
            public_base_url: self
                .public_base_url
                .clone()
                .map(|u| u.trim_end_matches('/').to_owned()),
            scopes,
        })
    }
}

impl AuthArgs {
    /// The roles the default policy gives out; three distinct, non-empty names.
    fn platform_roles(&self) -> Result<PlatformRoles, ConfigError> {
        let roles = PlatformRoles {
            query: self.query_role.trim().to_owned(),
            billing: self.billing_role.trim().to_owned(),
            security: self.security_role.trim().to_owned(),
        };
        for (variable, role) in [
            ("QUERY_ROLE", &roles.query),
            ("BILLING_ROLE", &roles.billing),
            ("SECURITY_ROLE", &roles.security),
        ] {
            if role.is_empty() {
                return Err(ConfigError::new(variable, "the role name is empty"));
            }
        }
        if roles.query == roles.billing
            || roles.query == roles.security
            || roles.billing == roles.security
        {
            return Err(ConfigError::new(
                "QUERY_ROLE",
                "QUERY_ROLE, BILLING_ROLE and SECURITY_ROLE must be three different roles",
            ));
        }
        Ok(roles)
    }
}

impl AuthPlan {
    /// The public URL of a service whose listener is bound to `bound`: `PUBLIC_BASE_URL`, else
    /// the bound address.
    pub fn public_base_url(&self, bound: &std::io::Result<std::net::SocketAddr>) -> String {
        self.public_base_url.clone().unwrap_or_else(|| {
            format!(
                "http://{}",
                bound.as_ref().map(|a| a.to_string()).unwrap_or_default()
            )
        })
    }

    /// The request authenticator of a service whose listener is bound to `bound`: the public
    /// URL (metadata, `WWW-Authenticate`) is [`AuthPlan::public_base_url`].
    pub fn authenticator(
        &self,
        mode: AuthMode,
        bound: std::io::Result<std::net::SocketAddr>,
    ) -> super::middleware::Authenticator {
        let public_base_url = self.public_base_url(&bound);
        super::middleware::Authenticator::new(mode, &public_base_url, self.scopes.clone())
    }

    /// Refuses to serve unverified callers (`DISABLE_AUTH`, `USE_PASSTHROUGH_AUTH`) on an address
    /// other machines can reach, unless `ALLOW_OPEN_NETWORK` says the network is trusted.
    pub fn check_exposure(
        &self,
        bind_addr: std::net::SocketAddr,
        allow_open_network: bool,
    ) -> Result<(), ConfigError> {
        let unverified = !matches!(self.kind, PlanKind::Jwt { .. });
        if unverified && !bind_addr.ip().is_loopback() && !allow_open_network {
            return Err(ConfigError::new(
                "BIND_ADDR",
                format!(
                    "{bind_addr} is not a loopback address and tokens are not verified \
                     (DISABLE_AUTH or USE_PASSTHROUGH_AUTH); bind 127.0.0.1, configure \
                     AUTH_ISSUER, or set ALLOW_OPEN_NETWORK=true on a trusted network"
                ),
            ));
        }
        Ok(())
    }

    /// Builds the mode of a service bound to `bound`: for JWT, discovers the JWKS URI, loads the
    /// keys and starts their background refresh; with no `MCP_API_AUDIENCE` the service accepts
    /// tokens for its own resource URL only. Fails (naming the setting) when the issuer cannot be
    /// reached.
    pub async fn build(
        &self,
        http: reqwest::Client,
        bound: &std::io::Result<std::net::SocketAddr>,
    ) -> Result<AuthMode, ConfigError> {
        match &self.kind {
            PlanKind::Disabled { default_roles } => {
                tracing::warn!(roles = ?default_roles, "DISABLE_AUTH=true: authentication is OFF, every request is accepted. Development only!");
                Ok(AuthMode::Disabled {
                    roles: default_roles.clone(),
                })
            }
            PlanKind::Passthrough { default_roles } => {
                tracing::warn!(
                    "USE_PASSTHROUGH_AUTH=true: token signatures are NOT checked, any well-formed token is accepted. Development only!"
                );
                Ok(AuthMode::Passthrough {
                    default_roles: default_roles.clone(),
                })
            }
            PlanKind::Jwt { settings, jwks_uri } => {
                let mut settings = settings.clone();
                if settings.audiences.is_empty() {
                    settings.audiences = vec![format!(
                        "{}{}",
                        self.public_base_url(bound),
                        super::middleware::MCP_PATH
                    )];
                }
                if !settings.trusted_actors.is_empty() {
                    tracing::info!(actors = ?settings.trusted_actors, "delegated tokens accepted from these actors (TRUSTED_ACTORS)");
                }
                let uri = match jwks_uri {
                    Some(uri) => uri.clone(),
                    None => discover(&http, &settings.issuer)
                        .await
                        .map_err(|e| ConfigError::new("AUTH_ISSUER", e))?,
                };
                let jwks = Arc::new(Jwks::new(http, uri));
                let count = jwks
                    .refresh()
                    .await
                    .map_err(|e| ConfigError::new("AUTH_JWKS_URI", e))?;
                jwks.spawn_refresh();
                tracing::info!(issuer = %settings.issuer, audiences = ?settings.audiences, keys = count, "verifying bearer tokens");
                Ok(AuthMode::Jwt(Arc::new(JwtVerifier::new(settings, jwks))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthArgs,
    }

    /// The plan of these flags (and no environment: every flag the plan reads is given).
    fn plan(args: &[&str]) -> Result<AuthPlan, ConfigError> {
        let base = [
            "test",
            "--disable-auth",
            "false",
            "--use-passthrough-auth",
            "false",
        ];
        Cli::try_parse_from(base.iter().chain(args))
            .expect("flags parse")
            .auth
            .plan()
    }

    #[test]
    fn an_issuer_must_be_https_unless_it_is_a_loopback_address() {
        for issuer in [
            "https://login.example.com/tenant/v2.0",
            "http://127.0.0.1:4444",
            "http://127.8.9.10",
            "http://[::1]:4444",
            "http://localhost:4444",
            "http://LOCALHOST",
        ] {
            plan(&["--auth-issuer", issuer]).unwrap_or_else(|e| panic!("{issuer}: {e}"));
        }
        for issuer in [
            "http://idp.example.com",
            "http://10.0.0.5:4444",
            "http://0.0.0.0:4444",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "ftp://idp.example.com",
            "idp.example.com",
        ] {
            let error = plan(&["--auth-issuer", issuer]).expect_err(issuer);
            assert_eq!(error.variable, "AUTH_ISSUER", "{issuer}");
        }
        let error = plan(&["--auth-issuer", "http://idp.example.com"]).expect_err("refused");
        assert!(error.to_string().contains("https://"), "{error}");
    }

    #[test]
    fn a_jwks_uri_must_be_https_unless_it_is_a_loopback_address() {
        let issuer = ["--auth-issuer", "https://idp.example.com"];
        plan(
            &[
                &issuer[..],
                &["--auth-jwks-uri", "https://idp.example.com/keys"],
            ]
            .concat(),
        )
        .expect("https");
        plan(
            &[
                &issuer[..],
                &["--auth-jwks-uri", "http://127.0.0.1:4444/jwks"],
            ]
            .concat(),
        )
        .expect("loopback");
        let error = plan(
            &[
                &issuer[..],
                &["--auth-jwks-uri", "http://keys.example.com/jwks"],
            ]
            .concat(),
        )
        .expect_err("plain http to the network");
        assert_eq!(error.variable, "AUTH_JWKS_URI");
    }
}
