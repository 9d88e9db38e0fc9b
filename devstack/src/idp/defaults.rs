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

use shared::config::Secret;

use super::{Client, Tenant};

/// The audience tokens are issued for unless a scope or spec asks for another.
pub const AUDIENCE: &str = "api://contoso-mcp";

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

/// One client per tenant and role, plus `contoso-admin` with every role.
pub fn clients() -> Vec<Client> {
    let mut clients: Vec<Client> = tenants()
        .iter()
        .flat_map(|tenant| {
            ROLES
                .iter()
                .map(|role| client(&format!("{}-{role}", tenant.name), &tenant.tid, &[role]))
        })
        .collect();
    clients.push(client("contoso-admin", CONTOSO, &ROLES));
    clients
}

fn client(id: &str, tid: &str, roles: &[&str]) -> Client {
    Client {
        client_id: id.to_owned(),
        client_secret: Secret::new(format!("{id}-secret")),
        tenant: tid.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        subject: id.to_owned(),
    }
}
