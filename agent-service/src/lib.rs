//! The agent service: domain expert agents exposed as MCP tools (`ask_billing_expert`,
//! `ask_account_expert`, `ask_product_expert`). Each expert chains the tools service's tools over
//! MCP with the caller's own bearer token, so it can never do what its caller could not.
//!
//! - [`experts`]: the three domain experts: tool name, instructions, tool subset;
//! - [`agent`]: one expert's turn with a model: tool calls in parallel with the caller's
//!   authority, errors fed back, a step limit and a time budget;
//! - [`memory`]: conversation turns, stored durably and keyed by tenant, subject and
//!   conversation id, so a restart or a second replica continues a conversation;
//! - [`model`]: the chat model the experts think with (Azure OpenAI or any OpenAI-compatible
//!   endpoint), chosen by settings; none means the offline planner;
//! - [`planner`]: the offline planner: with no model, recognises the intent and entities of a
//!   question, investigates through the same tools and writes a factual answer from the results;
//! - [`upstream`]: the MCP client of the tools service: the tools a caller may use, calls with
//!   the caller's token, progress relayed and cancellation passed on.

pub mod agent;
pub mod experts;
pub mod memory;
pub mod model;
pub mod planner;
pub mod upstream;
