//! The one error type of the tools, and how it reaches a caller: always as a tool result with
//! `isError: true` and a sentence a person (or a model) can act on, never as a protocol error,
//! so an agent can read the problem and correct its call.

use crate::{domain::writes::Refusal, money::MoneyError, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments are wrong; the message says which and how.
    #[error("{0}")]
    Invalid(String),
    /// Something named in the arguments does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the current state does not allow it (e.g. nothing to unlock).
    #[error("{0}")]
    Conflict(String),
    /// The store is over its throughput for the moment; nothing was done.
    #[error(
        "the service is busy; the request was not completed, please try again in a few seconds"
    )]
    Busy,
    /// A failure on our side; details are in the log, not in the answer.
    #[error("internal error; the request was not completed, please retry later")]
    Internal,
}

impl ToolError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ToolError::Invalid(message.into())
    }

    pub fn not_found(entity: &str, id: i64) -> Self {
        ToolError::NotFound(format!("{entity} {id} does not exist"))
    }

    /// The sentence the caller reads. An internal failure names the request id (the
    /// `X-Request-Id` of the HTTP request) so the caller can quote it; its detail is only in the
    /// log, which carries the same id.
    pub fn for_caller(&self, request_id: Option<&str>) -> String {
        match self {
            ToolError::Internal => format!(
                "internal error (request {}); the request was not completed, please retry later",
                request_id.unwrap_or("-")
            ),
            other => other.to_string(),
        }
    }

    /// Short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::Invalid(_) => "invalid",
            ToolError::NotFound(_) => "not_found",
            ToolError::Conflict(_) => "conflict",
            ToolError::Busy => "busy",
            ToolError::Internal => "internal",
        }
    }
}

impl From<StoreError> for ToolError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => ToolError::NotFound(error.to_string()),
            StoreError::Refused(refusal) => refusal.into(),
            // The tools quote the cursor themselves; this is the fallback.
            StoreError::BadCursor => ToolError::Invalid(error.to_string()),
            StoreError::Busy(detail) => {
                tracing::warn!(%detail, "storage backend busy (throttled past its retries)");
                ToolError::Busy
            }
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "storage backend failed");
                ToolError::Internal
            }
        }
    }
}

impl From<Refusal> for ToolError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(message) => ToolError::Invalid(message),
            Refusal::Overpayment { .. }
            | Refusal::AlreadyPaid { .. }
            | Refusal::NotLocked { .. } => ToolError::Conflict(refusal.to_string()),
        }
    }
}

impl From<MoneyError> for ToolError {
    fn from(error: MoneyError) -> Self {
        ToolError::Invalid(error.to_string())
    }
}
