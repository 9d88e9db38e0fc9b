//! The planner's tool calls: made with the caller's authority through the same connection the
//! model loop uses, recorded as the loop records them, and only ever to tools the caller may
//! call within the expert's subset. A write is never made by [`Probe::call`]: the planner
//! proposes it ([`Probe::propose`]) for the person to confirm, and makes it with
//! [`Probe::call_confirmed`] only once they have.
//!
//! A tool that is not available or that reports an error is a finding the answer states ("I
//! could not check ..."); only a failure to reach the tools service, or the caller cancelling,
//! stops the investigation.

use std::{collections::HashSet, sync::Mutex};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{PendingWrite, ToolCallRecord, writes},
    upstream::{CallOptions, ProgressSender, ToolOutcome, ToolsConnection, UpstreamError},
};

/// Why the investigation stopped before it could answer.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("the planner could not list its tools: {0}")]
    Tools(UpstreamError),
    #[error("{0}")]
    Upstream(UpstreamError),
    #[error("the request was cancelled")]
    Cancelled,
}

/// The records of `records`; they are pushed whole, so a panic elsewhere cannot leave the
/// list half-written.
pub fn lock(
    records: &Mutex<Vec<ToolCallRecord>>,
) -> std::sync::MutexGuard<'_, Vec<ToolCallRecord>> {
    records.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one call found.
#[derive(Debug)]
pub enum Found<T> {
    Got(T),
    /// Why there is nothing: the tool is not available to the caller, or it reported an error.
    Missing(String),
}

/// Calls tools for one turn and keeps the record of every call.
pub struct Probe<'a> {
    tools: &'a ToolsConnection,
    /// The tools the caller may call within the expert's subset.
    available: HashSet<String>,
    /// Those of them that change something.
    writes: HashSet<String>,
    progress: Option<ProgressSender>,
    cancel: CancellationToken,
    /// Kept by the caller, so the calls made are reported even when the turn is cut short.
    records: &'a Mutex<Vec<ToolCallRecord>>,
}

impl<'a> Probe<'a> {
    /// Lists what the caller may call within `allowed` (the expert's subset).
    pub async fn new(
        tools: &'a ToolsConnection,
        allowed: &[&str],
        progress: Option<ProgressSender>,
        cancel: CancellationToken,
        records: &'a Mutex<Vec<ToolCallRecord>>,
    ) -> Result<Probe<'a>, Stop> {
        let listed = tools.tools_within(allowed).await.map_err(Stop::Tools)?;
        let writes = listed
            .iter()
            .filter(|tool| writes::is_write(tool))
            .map(|tool| tool.name.to_string())
            .collect();
        let available = listed
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect();
        Ok(Probe {
            tools,
            available,
            writes,
            progress,
            cancel,
            records,
        })
    }

    pub fn can(&self, tool: &str) -> bool {
        self.available.contains(tool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ToolCallRecord>> {
        lock(self.records)
    }

    /// The write of `tool` with `arguments` (a JSON object), described for the person to confirm;
    /// `None` if the caller may not call it.
    pub fn propose(&self, tool: &str, arguments: Value) -> Option<PendingWrite> {
        match arguments {
            Value::Object(object) if self.can(tool) => Some(PendingWrite::new(tool, object)),
            _ => None,
        }
    }

    /// Calls the read-only `tool` with `arguments` (a JSON object) and reads its structured
    /// result as `T`. A write is not made: see [`Probe::propose`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        tool: &str,
        arguments: Value,
    ) -> Result<Found<T>, Stop> {
        if self.writes.contains(tool) {
            // Not attempted, so not recorded: the planner proposes writes instead.
            return Ok(Found::Missing(format!(
                "{tool} changes something and needs your confirmation first"
            )));
        }
        self.make(tool, arguments).await
    }

    /// Makes the call the person confirmed (a write included) and reads its structured result
    /// as `T`.
    pub async fn call_confirmed<T: DeserializeOwned>(
        &self,
        tool: &str,
        arguments: Value,
    ) -> Result<Found<T>, Stop> {
        self.make(tool, arguments).await
    }

    async fn make<T: DeserializeOwned>(
        &self,
        tool: &str,
        arguments: Value,
    ) -> Result<Found<T>, Stop> {
        if !self.can(tool) {
            // Not attempted, so not recorded: the caller could not have made this call either.
            return Ok(Found::Missing(format!(
                "the tool {tool} is not available to you (your roles do not allow it)"
            )));
        }
        let Value::Object(object) = &arguments else {
            // Every call site passes `json!({...})`: this is a bug in the planner, not the caller.
            return Ok(Found::Missing(format!(
                "the planner built arguments for {tool} that are not an object"
            )));
        };
        let object = object.clone();
        let mut options = CallOptions::default().cancel(self.cancel.child_token());
        if let Some(progress) = &self.progress {
            options = options.progress(progress.clone());
        }
        let outcome = match self.tools.call(tool, object, options).await {
            Ok(outcome) => outcome,
            Err(UpstreamError::Cancelled { .. }) => return Err(Stop::Cancelled),
            Err(error) => {
                self.record(tool, arguments, Some(error.to_string()));
                return Err(Stop::Upstream(error));
            }
        };
        let (found, error) = match outcome {
            ToolOutcome::Done {
                structured: Some(structured),
                ..
            } => match serde_json::from_value::<T>(structured) {
                Ok(value) => (Found::Got(value), None),
                Err(e) => {
                    let why = format!("the result of {tool} was not in the expected form: {e}");
                    (Found::Missing(why.clone()), Some(why))
                }
            },
            ToolOutcome::Done {
                structured: None, ..
            } => {
                let why = format!("{tool} returned no structured result");
                (Found::Missing(why.clone()), Some(why))
            }
            ToolOutcome::ToolError { message } | ToolOutcome::Rejected { message, .. } => {
                (Found::Missing(message.clone()), Some(message))
            }
        };
        self.record(tool, arguments, error);
        Ok(found)
    }

    fn record(&self, tool: &str, arguments: Value, error: Option<String>) {
        self.lock().push(ToolCallRecord {
            name: tool.to_owned(),
            arguments,
            ok: error.is_none(),
            error,
        });
    }
}
