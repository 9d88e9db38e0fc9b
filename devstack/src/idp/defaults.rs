//! The development tenants, clients and roles every devstack starts with, so tests, docs and
//! people at a terminal can name them without configuring anything.
//!
//! | tenant      | tid                                    |
//! |-------------|----------------------------------------|
//! | `contoso`   | `c0a7050c-0000-4000-8000-000000000001` |
//! | `fabrikam`  | `fab1ca70-0000-4000-8000-000000000002` |
//! | `northwind` | `4e077d00-0000-4000-8000-000000000003` |
//! | `woodgrove` | `b00d6a0e-0000-4000-8000-000000000004` |
//!
//! `woodgrove` is the outsider: its tokens are valid, but the local stack admits it on no route,
//! so it shows what a real customer of the issuer that nobody onboarded gets (403, not 401).
//!
//! Roles: `query` (read-only tools), `billing` (payments, plan changes), `security` (security
//! logs, account unlock).
//!
//! Clients (`client_credentials`): for every tenant `T` and role `R`, client id `T-R` with
//! secret `T-R-secret`, roles `[R]` and subject `T-R`; plus `contoso-admin` (secret
//! `contoso-admin-secret`) with all three roles. For example `fabrikam-billing` /
//! `fabrikam-billing-secret` gets a `fabrikam` token with `roles: ["billing"]`. The secrets are
//! public by design: these tokens are only trusted by services pointed at a devstack issuer.
//!
//! Every client is registered for the resources (audiences) it may get tokens for, the first
//! being its default: [`clients`] registers them for [`AUDIENCE`] only, [`clients_for`] for the
//! resources a caller names (say, each gateway route's resource identifier). These user-facing
//! clients serve no resource of their own (no [`Client::subject_audiences`]), so they may not
//! exchange tokens.
//!
//! The exchanging client is separate: [`agent_client`] makes a service's own client (secret
//! `<id>-secret`, tenant `contoso`, no roles, subject = its id) that may use the token exchange
//! (RFC 8693) and on-behalf-of grants to trade its caller's token for one for the resources it
//! is registered for (`targets`). It trades only tokens its callers sent it: tokens for the
//! resources it serves itself (`serves`, its [`Client::subject_audiences`]), as Entra's
//! on-behalf-of takes only an assertion issued for the middle-tier application. A token a user
//! got for another service is refused (`invalid_grant`). [`AGENT_CLIENT_ID`] (`contoso-agent`)
//! is the agent service's. It also trusts the managed identity [`AGENT_PRINCIPAL_ID`] (a
//! federated credential for [`ASSERTION_AUDIENCE`]), so an agent service given that identity by
//! the stand-in endpoint ([`crate::managed_identity::ManagedIdentity::spawn_signing`]) exchanges
//! tokens with no secret at all, as in Azure.

use shared::config::Secret;

use super::{Client, FederatedCredential, Tenant};

/// The audience tokens are issued for unless a scope or spec asks for another.
pub const AUDIENCE: &str = "api://contoso-mcp";

/// The resource identifier of the Contoso route of the default local gateway
/// (`127.0.0.1:8080`): what `devstack token` issues for unless told otherwise.
pub const CONTOSO_ROUTE_RESOURCE: &str = "http://127.0.0.1:8080/contoso-mcp/mcp";

/// The client id of the agent service: the client that exchanges its callers' tokens for
/// tokens for the tools service.
pub const AGENT_CLIENT_ID: &str = "contoso-agent";

/// The audience of client assertions, Entra's for workload identity federation in its public
/// cloud (sovereign clouds have their own).
pub const ASSERTION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The principal (object) id of the agent service's managed identity in development: the
/// subject of the federated credential of [`agent_client`]s.
pub const AGENT_PRINCIPAL_ID: &str = "a9e7d0c1-0000-4000-8000-00000000a9e7";

/// Where a devstack identity provider listens by default, and so its default issuer.
pub const ISSUER: &str = "http://127.0.0.1:4444";

/// The `azp` of tokens minted directly (by [`super::Idp::mint`] or `devstack token`) rather
/// than through the token endpoint.
pub const CLI_CLIENT_ID: &str = "devstack-cli";

/// The subject of minted tokens unless the spec names one.
pub const SUBJECT: &str = "alice";

/// Tenant ids of the development tenants.
pub const CONTOSO: &str = "c0a7050c-0000-4000-8000-000000000001";
pub const FABRIKAM: &str = "fab1ca70-0000-4000-8000-000000000002";
pub const NORTHWIND: &str = "4e077d00-0000-4000-8000-000000000003";
pub const WOODGROVE: &str = "b00d6a0e-0000-4000-8000-000000000004";

/// The roles of the platform, least powerful first.
pub const ROLES: [&str; 3] = ["query", "billing", "security"];

/// `contoso`, `fabrikam`, `northwind` and `woodgrove`.
pub fn tenants() -> Vec<Tenant> {
    [
        ("contoso", CONTOSO),
        ("fabrikam", FABRIKAM),
        ("northwind", NORTHWIND),
        ("woodgrove", WOODGROVE),
    ]
    .into_iter()
    .map(|(name, tid)| Tenant::new(name, tid))
    .collect()
}

/// One client per tenant and role, plus `contoso-admin` with every role, registered for
/// [`AUDIENCE`].
pub fn clients() -> Vec<Client> {
    clients_for(&[AUDIENCE.to_owned()])
}

/// The clients of [`clients`], each registered for every one of `resources` (the first is
/// their default target).
pub fn clients_for(resources: &[String]) -> Vec<Client> {
    let mut clients: Vec<Client> = tenants()
        .iter()
        .flat_map(|tenant| {
            ROLES.iter().map(|role| {
                client(
                    &format!("{}-{role}", tenant.name),
                    &tenant.tid,
                    &[role],
                    resources,
                )
            })
        })
        .collect();
    clients.push(client("contoso-admin", CONTOSO, &ROLES, resources));
    clients
}

/// A service's own confidential client that may exchange its callers' tokens (token exchange
/// and on-behalf-of) for tokens for `targets` (its [`Client::resources`], the first being the
/// default): secret `<client_id>-secret`, tenant `contoso`, no roles of its own, subject = its
/// id. `serves` are the service's own resources (its [`Client::subject_audiences`]): only a
/// subject token issued for one of them is exchanged. With `serves` empty the client may not
/// exchange at all. Instead of its secret, a token of the managed identity
/// [`AGENT_PRINCIPAL_ID`] for [`ASSERTION_AUDIENCE`] authenticates it too.
pub fn agent_client(client_id: &str, serves: &[String], targets: &[String]) -> Client {
    Client {
        subject_audiences: serves.to_vec(),
        federated_credentials: vec![FederatedCredential::managed_identity(AGENT_PRINCIPAL_ID)],
        ..client(client_id, CONTOSO, &[], targets)
    }
}

fn client(id: &str, tid: &str, roles: &[&str], resources: &[String]) -> Client {
    Client {
        client_id: id.to_owned(),
        client_secret: Secret::new(format!("{id}-secret")),
        tenant: tid.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        subject: id.to_owned(),
        resources: resources.to_vec(),
        subject_audiences: Vec::new(),
        federated_credentials: Vec::new(),
    }
}
