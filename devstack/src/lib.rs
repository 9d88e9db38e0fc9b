//! Running the platform on a laptop with no cloud account.
//!
//! - [`idp`]: the development OpenID Connect identity provider, which signs real RS256 tokens
//!   for the development tenants and clients; tests spawn it on `127.0.0.1:0`.
//! - [`topology`]: the multi-tenant topology the stack runs: two tools-service backends, the
//!   tenants each admits, and the gateway configuration in front of them;
//! - [`stack`]: `devstack` with no arguments: the identity provider, both backends and the
//!   gateway, wired together with authentication on, on fixed ports, and the banner it prints;
//! - [`config`]: the `devstack` command line;
//! - [`load`]: what the benchmark programs (`tools-bench`, `gateway-bench`, ...) share;
//! - [`soak`]: the `soak` benchmark: the whole stack under mixed and hostile traffic for
//!   minutes, memory and descriptors watched;
//! - [`interop`]: finding and running the third-party MCP peers of the interop tests;
//! - [`managed_identity`]: a stand-in for Azure's managed identity endpoint, for the tests of
//!   the services' Entra authentication.
//!
//! [`token`] and [`run_idp`] are what the `devstack token` and `devstack idp` subcommands do.

mod banner;
pub mod config;
mod error;
pub mod idp;
pub mod interop;
pub mod load;
pub mod managed_identity;
pub mod soak;
pub mod stack;
pub mod topology;

use std::future::Future;

use tokio::net::TcpListener;

pub use error::Error;

use crate::{
    config::{IdpArgs, TokenArgs},
    idp::Idp,
};

/// `devstack token`: a token as the arguments say, signed with the key in the data folder
/// (created on first use), so it verifies against a devstack IdP sharing that folder.
pub fn token(args: &TokenArgs) -> Result<String, Error> {
    let idp = Idp::new(args.idp_config())?;
    Ok(idp.mint(&args.token_spec(&idp)?))
}

/// `devstack idp`: serves the identity provider on `listener` until `shutdown` completes;
/// refuses a listener off loopback unless `ALLOW_OPEN_NETWORK` (see [`config::check_bind`]).
pub async fn run_idp(
    args: IdpArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    // The address actually bound: the one the flag names, or the one a caller's listener has.
    let bound = listener.local_addr().map_err(Error::Serve)?;
    config::check_bind("IDP_BIND_ADDR", bound, args.allow_open_network)?;
    idp::serve(listener, args.idp_config(), shutdown).await
}
