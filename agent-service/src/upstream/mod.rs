//! The MCP client of the tools service (see the crate docs).

pub mod token;
