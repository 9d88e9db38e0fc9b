//! The platform's edge, configured from one TOML file.
//!
//! - [`config`]: the configuration file, parsed (unknown keys refused) and validated into a
//!   [`Config`], with errors that name the key;
//! - [`routing`]: which route's MCP endpoint (the only path forwarded) a request is for, the path
//!   its upstream sees, where each route's OAuth metadata lives, and the resource URL its tokens
//!   are issued for (its default audience);
//! - [`policy`]: the rules both edges apply the same way: the identity headers a client may not
//!   supply, and the refusals (status, code, message) callers get;
//! - [`apim`]: the Azure API Management policy rendered from the same configuration, one XML
//!   document per route, so production and the local gateway cannot drift;
//! - [`limits`]: the per-tenant rate limit of each route, counted in this process or in a Redis
//!   shared by every replica;
//! - `metrics`: request durations and the gateway's own refusals (OpenTelemetry);
//! - [`proxy`]: the local edge itself, a pingora proxy applying the same rules on live traffic,
//!   and [`run`], which serves it on a listener;
//! - `connection`: each client connection before pingora sees a request: the connection cap,
//!   header-read and idle timeouts, and head size and field-count limits (`[server]`);
//! - [`cli`]: the `gateway` command line (`render-apim`, `run`).

pub mod apim;
pub mod cli;
pub mod config;
mod connection;
mod error;
pub mod limits;
mod metrics;
pub mod policy;
pub mod proxy;
pub mod routing;
mod xml;

pub use config::Config;
pub use error::{ConfigError, Error};
pub use proxy::{run, run_with};
