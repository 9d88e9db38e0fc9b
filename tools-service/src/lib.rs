//! The Contoso tools service: an MCP server that exposes a telecom's customer-service operations
//! as typed tools over streamable HTTP.
pub mod domain;
pub mod money;
pub mod seed;
pub mod store;
