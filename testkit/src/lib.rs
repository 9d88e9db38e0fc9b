//! What the integration tests of several crates need and no crate should ship: test helpers in
//! one place, used only as a dev-dependency.
//!
//! - [`cosmos`]: a local Cosmos DB emulator started for a test, and a database of its own.
//! - [`otel`]: a real OTLP collector (rotel) started for a test, and the spans and metrics it
//!   received, read back from what it prints.
//! - [`redis`]: a real redis-server started for a test, which it can stop, restart and freeze.

pub mod cosmos;
pub mod otel;
pub mod redis;
