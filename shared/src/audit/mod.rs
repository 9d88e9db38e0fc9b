//! The audit trail of tool calls (feature `audit`): one [`AuditEvent`] per `tools/call`, allowed
//! or refused, on every service that serves tools.
//!
//! A service holds one [`AuditLog`] and, per call, [`AuditLog::begin`]s an [`AuditCall`] and
//! [`AuditCall::finish`]es it with the [`Outcome`]. The event then goes two ways:
//!
//! - to the log, as one JSON line on the tracing target `audit`: at INFO, and at WARN (an alert)
//!   for the [`RESTRICTED_TOOLS`], whether they ran or were refused;
//! - to an [`AuditStore`] (SQLite today, [`SqliteAuditStore`]; Cosmos DB later), through a
//!   bounded channel to one background task that inserts the events in batches, one transaction
//!   per batch, so a call never waits for the database. A full channel makes callers wait
//!   (backpressure) rather than drop events; [`AuditLog::close`] writes what is pending at
//!   shutdown. The same task prunes events older than the retention (`AUDIT_RETENTION_DAYS`) at
//!   start and then hourly.
//!
//! Arguments are kept for what an investigation needs (ids, amounts, statuses, dates, limits)
//! and nothing more: free text is reduced to its length, secret-looking fields are redacted, and
//! the whole is capped ([`redact_arguments`]), so neither personal data nor a hostile caller's
//! payload grows the log.
//!
//! [`AuditQueryArgs`] and [`print_events`] are the services' `audit` subcommand: the stored
//! events of a tenant since a time, as JSON lines, newest last.
//!
//! Parts: [`redact`] (what of the arguments is kept), [`store`] (the storage trait and SQLite),
//! [`log`] (the handle services call and its writer task), [`cli`] (the subcommand).

pub mod cli;
pub mod log;
pub mod redact;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use cli::{
    AuditQueryArgs, ServiceCommand, parse_since, print_events, print_policy, read_events,
};
pub use log::{AuditArgs, AuditCall, AuditLog, AuditSettings};
pub use redact::{MAX_ARGUMENTS_BYTES, redact_arguments};
pub use store::{AuditError, AuditFilter, AuditStore, SqliteAuditStore};

/// The writes whose use and refusal are alerts (WARN): moving money, changing a plan, unlocking
/// an account. (`get_security_logs` touches security too, but only reads.)
pub const RESTRICTED_TOOLS: [&str; 3] = ["pay_invoice", "update_subscription", "unlock_account"];

/// Whether calls of `tool` are logged as alerts.
pub fn is_restricted(tool: &str) -> bool {
    RESTRICTED_TOOLS.contains(&tool)
}

/// One tool call, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When the call arrived.
    pub time: DateTime<Utc>,
    /// The service that served it (`tools-service`, `agent-service`): devstack runs several in
    /// one process, so the log needs to say which.
    pub service: String,
    /// The request's `x-request-id`, which ties the event to the access log and the gateway's.
    pub request_id: Option<String>,
    /// Tenant (`tid`); empty when the call carried no identity.
    pub tenant: String,
    /// Subject (`sub`); empty when the call carried no identity.
    pub subject: String,
    /// The client application (`azp`).
    pub client: Option<String>,
    /// The delegation chain (`act`), current actor first; empty when not delegated.
    #[serde(default)]
    pub actors: Vec<String>,
    pub tool: String,
    /// The arguments, redacted by [`redact_arguments`].
    pub arguments: Value,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// From the call's arrival to its answer.
    pub duration_us: u64,
}

/// How a call ended: `{"outcome": "ok"}`, `{"outcome": "tool_error", "kind": ...}` or
/// `{"outcome": "refused", "reason": ..., "detail": ...}` within the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The tool ran and answered.
    Ok,
    /// The tool ran (or parsed its arguments) and answered with an error, e.g. `not_found`.
    ToolError { kind: String },
    /// The call was not run: `unknown_tool`, `missing_role`, `unauthenticated`.
    Refused {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The call stopped before it answered (the client disconnected, the server shut down):
    /// whether a write took effect is not known from this event.
    Abandoned,
}

impl Outcome {
    pub fn tool_error(kind: impl Into<String>) -> Self {
        Outcome::ToolError { kind: kind.into() }
    }

    pub fn refused(reason: impl Into<String>, detail: Option<String>) -> Self {
        Outcome::Refused {
            reason: reason.into(),
            detail,
        }
    }

    /// `ok`, `tool_error`, `refused` or `abandoned`: the stored `outcome` column.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError { .. } => "tool_error",
            Outcome::Refused { .. } => "refused",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// What the tests of every part build events and stores from.
#[cfg(test)]
pub(crate) mod testing {
    use std::{collections::BTreeSet, str::FromStr};

    use serde_json::{Map, Value, json};
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;
    use crate::auth::Identity;

    pub(crate) fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    pub(crate) fn identity(tenant: &str, actors: &[&str]) -> Identity {
        Identity {
            subject: "alice".into(),
            object_id: None,
            tenant: tenant.into(),
            roles: BTreeSet::from(["billing".to_owned()]),
            scopes: BTreeSet::new(),
            client_id: Some("contoso-billing".into()),
            expires_at: i64::MAX,
            audiences: Vec::new(),
            actors: actors.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    pub(crate) fn event(tenant: &str, time: &str, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            time: DateTime::parse_from_rfc3339(time)
                .expect("time")
                .with_timezone(&Utc),
            service: "tools-service".into(),
            request_id: Some("req-1".into()),
            tenant: tenant.into(),
            subject: "alice".into(),
            client: Some("contoso-billing".into()),
            actors: vec!["contoso-agent".into()],
            tool: "pay_invoice".into(),
            arguments: json!({"invoice_id": 7, "amount": 10.0}),
            outcome,
            duration_us: 1234,
        }
    }

    pub(crate) async fn memory_store() -> SqliteAuditStore {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").expect("options");
        let pool = crate::sqlite::connect(options, 1, &super::store::no_migrations())
            .await
            .expect("in-memory database");
        SqliteAuditStore::new(pool).await.expect("table")
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::event, *};

    #[test]
    fn an_event_encodes_flat_and_reads_back() {
        let refused = event(
            "t1",
            "2026-05-10T12:00:00.123456Z",
            Outcome::refused("missing_role", Some("needs billing".into())),
        );
        let value = serde_json::to_value(&refused).expect("encodes");
        assert_eq!(value["outcome"], "refused");
        assert_eq!(value["reason"], "missing_role");
        assert_eq!(value["detail"], "needs billing");
        assert_eq!(value["time"], "2026-05-10T12:00:00.123456Z");
        let back: AuditEvent = serde_json::from_value(value).expect("decodes");
        assert_eq!(back, refused);
        let ok = serde_json::to_value(event("t1", "2026-05-10T12:00:00Z", Outcome::Ok))
            .expect("encodes");
        assert_eq!(ok["outcome"], "ok");
        assert!(ok.get("reason").is_none());
        let failed = event(
            "t1",
            "2026-05-10T12:00:00Z",
            Outcome::tool_error("not_found"),
        );
        let value = serde_json::to_value(&failed).expect("encodes");
        assert_eq!(value["kind"], "not_found");
        assert_eq!(
            serde_json::from_value::<AuditEvent>(value).expect("decodes"),
            failed
        );
    }
}
