//! Building blocks every service of the platform shares.
//!
//! - [`auth`]: JWT verification, role policy, the authentication middleware and OAuth metadata.
//! - [`config`]: the settings common to every service (bind address, logging, host and origin
//!   allow-lists), parsed by `clap` from flags with environment-variable fallbacks.
//! - [`telemetry`]: one way to initialise logging, OpenTelemetry traces and metrics (OTLP export,
//!   Prometheus endpoint) for every binary, and the W3C trace context in and out of a service.
//! - [`files`]: owner-only folders and files for what holds personal data or secrets.
//! - [`http`]: serving an axum router on a listener with graceful shutdown, the request
//!   middleware (request ids, access log with timing, panic capture) and the health endpoints.
//! - `azure` (feature `azure`): authenticating to Azure resources with a key or an Entra
//!   identity (managed identity), tokens cached and refreshed before they expire;
//! - `cosmos` (feature `cosmos`): the Cosmos DB settings (`COSMOSDB_*`), a client with our
//!   options, databases and containers created when missing, and the read, query and batch
//!   helpers every Cosmos backend uses;
//! - `mcp` (feature `mcp`): serving an MCP server over streamable HTTP, stateless, behind
//!   token verification, with its OAuth metadata;
//! - `sqlite` (feature `sqlite`): opening a service's SQLite file (WAL, busy timeout,
//!   migrations) the same way everywhere.
//! - `audit` (feature `audit`): the audit trail of tool calls: one event per call, allowed or
//!   refused, logged on the `audit` target and stored in batches off the request path, with
//!   redacted arguments, retention, and the `audit` subcommand that prints it.
//!
//! Library code here never reads the process environment: binaries parse their configuration
//! once and pass typed values in, so tests can run many services side by side in one process.
//! The one exception is the platform's own contract in `azure`: Azure tells a process where its
//! managed identity endpoint is through `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`, and the Azure SDK
//! reads those itself.

#[cfg(feature = "audit")]
pub mod audit;
pub mod auth;
#[cfg(feature = "azure")]
pub mod azure;
pub mod config;
#[cfg(feature = "cosmos")]
pub mod cosmos;
pub mod files;
pub mod http;
#[cfg(feature = "mcp")]
pub mod mcp;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod telemetry;
