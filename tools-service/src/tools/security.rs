//! Account security: a customer's security log (sign-ins, locks, unlocks) and whether the account
//! is locked, and unlocking it after identity verification.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use shared::auth::Identity;

use super::{
    CallContext, Entry,
    common::{CustomerId, DEFAULT_PAGE, MAX_PAGE, Result, bounded, customer},
    entry, read_only,
    render::{Render, ln},
    store_tool, writes,
};
use crate::{
    domain::{SecurityEventType, SecurityLog, writes},
    store::Storage,
};

pub(super) fn entries() -> Vec<Entry> {
    vec![
        store_tool!(
            "get_security_logs",
            "A customer's security events (sign-ins, locks, unlocks), newest first, and whether the account is locked now.",
            read_only(),
            SecurityLogs,
            get_security_logs
        ),
        entry(
            "unlock_account",
            "Unlock a customer's locked account after identity verification; recorded in the security log. Restricted to security staff.",
            writes(false),
            |s, a: CustomerId, ctx: CallContext| async move {
                unlock_account(&s.storage, a, &ctx.identity).await
            },
        ),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityLogs {
    /// The customer's id.
    pub customer_id: i64,
    /// Most recent entries to return (1-500, default 50).
    pub limit: Option<u32>,
}

pub async fn get_security_logs(store: &Storage, p: SecurityLogs) -> Result<SecurityLogReport> {
    let limit = bounded(p.limit, DEFAULT_PAGE, MAX_PAGE, "limit")?;
    customer(store, p.customer_id).await?;
    let entries = store.customers.security_logs(p.customer_id, limit).await?;
    let last_lock_event = entries.iter().find(|e| {
        matches!(
            e.event_type,
            SecurityEventType::AccountLocked | SecurityEventType::AccountUnlocked
        )
    });
    let locked_since = last_lock_event
        .filter(|e| e.event_type == SecurityEventType::AccountLocked)
        .map(|e| e.occurred_at);
    Ok(SecurityLogReport {
        customer_id: p.customer_id,
        account_locked: locked_since.is_some(),
        locked_since,
        entries,
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SecurityLogReport {
    pub customer_id: i64,
    /// Whether the latest lock has not been lifted.
    pub account_locked: bool,
    pub locked_since: Option<DateTime<Utc>>,
    /// Newest first.
    pub entries: Vec<SecurityLog>,
}

impl Render for SecurityLogReport {
    fn render(&self) -> String {
        let mut out = String::new();
        match self.locked_since {
            Some(at) if self.account_locked => ln!(
                &mut out,
                "Account of customer {} is LOCKED since {}.",
                self.customer_id,
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            _ => ln!(
                &mut out,
                "Account of customer {} is not locked.",
                self.customer_id
            ),
        }
        for e in &self.entries {
            ln!(
                &mut out,
                "- {} {}: {}",
                e.occurred_at.format("%Y-%m-%d %H:%M UTC"),
                e.event_type,
                e.description
            );
        }
        out
    }
}

pub async fn unlock_account(
    store: &Storage,
    p: CustomerId,
    by: &Identity,
) -> Result<AccountUnlocked> {
    let note = unlock_note(by);
    let at = Utc::now();
    let receipt = store
        .customers
        .unlock_account(p.customer_id, &|latest, id| {
            writes::unlock(p.customer_id, latest, at, &note, id)
        })
        .await?;
    tracing::info!(customer_id = p.customer_id, "account unlocked");
    Ok(AccountUnlocked {
        customer_id: p.customer_id,
        locked_at: receipt.locked_at,
        unlocked_at: receipt.unlocked.occurred_at,
        log_entry: receipt.unlocked,
    })
}

/// The security-log entry of an unlock, naming who did it: the subject and tenant, and the
/// agent that acted for them when the token was delegated.
fn unlock_note(by: &Identity) -> String {
    let via = match by.actors.as_slice() {
        [] => String::new(),
        actors => format!(" via {}", actors.join(" via ")),
    };
    format!(
        "Account unlocked by {} (tenant {}){via} after identity verification",
        by.subject, by.tenant
    )
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AccountUnlocked {
    pub customer_id: i64,
    pub locked_at: DateTime<Utc>,
    pub unlocked_at: DateTime<Utc>,
    /// The security-log entry written for the unlock.
    pub log_entry: SecurityLog,
}

impl Render for AccountUnlocked {
    fn render(&self) -> String {
        format!(
            "Account of customer {} unlocked at {} (it was locked at {}).\n",
            self.customer_id,
            self.unlocked_at.format("%Y-%m-%d %H:%M UTC"),
            self.locked_at.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn identity(actors: &[&str]) -> Identity {
        Identity {
            subject: "alice".into(),
            object_id: None,
            tenant: "c0a7".into(),
            roles: BTreeSet::from(["security".to_owned()]),
            scopes: BTreeSet::new(),
            client_id: None,
            expires_at: i64::MAX,
            audiences: Vec::new(),
            actors: actors.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn an_unlock_note_names_the_subject_and_any_agent() {
        assert_eq!(
            unlock_note(&identity(&[])),
            "Account unlocked by alice (tenant c0a7) after identity verification"
        );
        assert_eq!(
            unlock_note(&identity(&["contoso-agent"])),
            "Account unlocked by alice (tenant c0a7) via contoso-agent after identity verification"
        );
    }
}
