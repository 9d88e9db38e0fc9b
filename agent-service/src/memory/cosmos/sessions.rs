//! MCP sessions' records in Cosmos DB (`MCP_SESSIONS=true`): each session's handshake and owner
//! in a partition of the session's own, found by the session id alone as rmcp asks; and each
//! owner's roster of live sessions in the owner's partition, which decides ownership and the
//! per-owner cap on one ETag (see the parent module). Same lifetime as SQLite's: a record older
//! than the TTL is unknown at once, and the sweep deletes it.

use std::sync::Arc;

use async_trait::async_trait;
use azure_data_cosmos::{FeedScope, options::ItemWriteOptions};
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use shared::{
    auth::Identity,
    cosmos::{Attempts, failed, read},
    mcp::{LegacySessionStore, SessionOwners},
};

use super::{CosmosConversations, deleted, docs::*, native_ttl};
use crate::memory::{MemoryResult, Owner, SessionKey, bounded_handshake};

/// What an ownership call returns: the database's words, for the log.
fn owner_error(error: impl std::fmt::Display) -> String {
    error.to_string()
}

impl CosmosConversations {
    /// Deletes one session's handshake and owner, any already gone.
    async fn delete_session(&self, session_pk: &str) -> MemoryResult<()> {
        for id in [HANDSHAKE_ID, OWNER_ID] {
            deleted(
                self.sessions
                    .delete_item(session_pk.to_owned(), id, None)
                    .await,
                "delete a session",
            )?;
        }
        Ok(())
    }

    /// Writes `roster` as read (`unchanged`), or creates it when there was none; false when
    /// someone else wrote it first.
    async fn write_roster(
        &self,
        roster: &Roster,
        unchanged: Option<azure_data_cosmos::options::Precondition>,
    ) -> MemoryResult<bool> {
        let written = match unchanged {
            Some(unchanged) => {
                let options = ItemWriteOptions::default().with_precondition(unchanged);
                self.sessions
                    .replace_item(roster.pk.clone(), &roster.id, roster, Some(options))
                    .await
            }
            None => {
                self.sessions
                    .create_item(roster.pk.clone(), &roster.id, roster, None)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(e)
                if e.status().is_precondition_failed()
                    || e.status().is_conflict()
                    || e.status().is_not_found() =>
            {
                Ok(false)
            }
            Err(e) => Err(failed("write a roster")(e).into()),
        }
    }

    /// Deletes expired handshakes, owners and rosters (the sweep's part for sessions).
    pub(super) async fn sweep_sessions(&self, cutoff: i64) -> MemoryResult<()> {
        for (kind, field) in [(HANDSHAKE, "stored_at"), (SESSION_OWNER, "bound_at")] {
            let expired: Vec<Key> = self
                .list(
                    &self.sessions,
                    &format!(
                        "SELECT c.id, c.pk FROM c WHERE c.type = @type AND c.{field} <= @cutoff"
                    ),
                    &[("@type", kind.into()), ("@cutoff", cutoff.into())],
                    FeedScope::full_container(),
                    "find expired sessions",
                )
                .await?;
            self.delete_all(&self.sessions, expired, "delete expired sessions")
                .await?;
        }
        let rosters: Vec<Versioned<Roster>> = self
            .list(
                &self.sessions,
                "SELECT * FROM c WHERE c.type = @type AND c.last_bound_at <= @cutoff",
                &[("@type", ROSTER.into()), ("@cutoff", cutoff.into())],
                FeedScope::full_container(),
                "find expired rosters",
            )
            .await?;
        for Versioned { doc, etag } in rosters {
            // Conditioned: a session bound since the query keeps its roster.
            let options = ItemWriteOptions::default()
                .with_precondition(azure_data_cosmos::options::Precondition::if_match(etag));
            match self
                .sessions
                .delete_item(doc.pk, &doc.id, Some(options))
                .await
            {
                Ok(_) => {}
                Err(e) if e.status().is_precondition_failed() || e.status().is_not_found() => {}
                Err(e) => return Err(failed("delete an expired roster")(e).into()),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for CosmosConversations {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let key = SessionKey::of_session(session_id)?;
        let cutoff = self.expiry_cutoff(self.now_millis());
        let found = read::<Handshake>(
            &self.sessions,
            &session_partition(&key),
            HANDSHAKE_ID,
            "load a session",
        )
        .await?;
        match found {
            Some((handshake, _)) if handshake.stored_at > cutoff => {
                Ok(Some(serde_json::from_str(&handshake.state)?))
            }
            _ => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let key = SessionKey::of_session(session_id)?;
        let handshake = Handshake {
            id: HANDSHAKE_ID.to_owned(),
            pk: session_partition(&key),
            kind: HANDSHAKE.to_owned(),
            state: bounded_handshake(state, self.config.max_handshake_bytes)?,
            stored_at: self.now_millis(),
            ttl: native_ttl(self.config.ttl),
        };
        self.sessions
            .upsert_item(handshake.pk.clone(), &handshake.id, &handshake, None)
            .await
            .map_err(failed("store a session"))?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let key = SessionKey::of_session(session_id)?;
        deleted(
            self.sessions
                .delete_item(session_partition(&key), HANDSHAKE_ID, None)
                .await,
            "delete a session",
        )?;
        Ok(())
    }
}

#[async_trait]
impl SessionOwners for CosmosConversations {
    async fn bind(&self, session_id: &str, owner: &Identity) -> Result<(), String> {
        let key = SessionKey::of_session(session_id).map_err(owner_error)?;
        let owner = Owner::from(owner);
        let now = self.now_millis();
        let cutoff = self.expiry_cutoff(now);
        let ttl = native_ttl(self.config.ttl);
        let record = SessionOwner {
            id: OWNER_ID.to_owned(),
            pk: session_partition(&key),
            kind: SESSION_OWNER.to_owned(),
            owner: owner_partition(&owner),
            tenant: owner.tenant.clone(),
            subject: owner.subject.clone(),
            bound_at: now,
            ttl,
        };
        self.sessions
            .upsert_item(record.pk.clone(), &record.id, &record, None)
            .await
            .map_err(owner_error)?;
        let mut attempts = Attempts::new("bind a session's owner");
        let evicted = loop {
            attempts.next().await.map_err(owner_error)?;
            let found = read::<Roster>(&self.sessions, &record.owner, ROSTER_ID, "read a roster")
                .await
                .map_err(owner_error)?;
            let (mut roster, unchanged) = match found {
                Some((roster, unchanged)) if roster.owned_by(&owner) => (roster, Some(unchanged)),
                Some(_) => return Err("an owner's roster names someone else".into()),
                None => (Roster::new(&owner), None),
            };
            // Newest first; expired entries go, and so does the oldest beyond the cap.
            let mut sessions = vec![RosterEntry {
                key: key.as_str().to_owned(),
                bound_at: now,
            }];
            sessions.extend(
                roster
                    .sessions
                    .iter()
                    .filter(|e| e.bound_at > cutoff && e.key != key.as_str())
                    .cloned(),
            );
            sessions.sort_by_key(|e| std::cmp::Reverse(e.bound_at));
            let cap = usize::try_from(self.config.max_sessions_per_owner).unwrap_or(usize::MAX);
            let evicted = sessions.split_off(cap.min(sessions.len()));
            roster.last_bound_at = sessions.first().map_or(now, |e| e.bound_at).max(now);
            roster.sessions = sessions;
            roster.ttl = ttl;
            if self
                .write_roster(&roster, unchanged)
                .await
                .map_err(owner_error)?
            {
                break evicted;
            }
        };
        // No longer owned by anyone from the roster's write on; their records go now, or with
        // the sweep if this fails.
        for entry in &evicted {
            let pk = format!("session_{}", entry.key);
            if let Err(error) = self.delete_session(&pk).await {
                tracing::warn!(%error, "memory: deleting an MCP session past the owner's cap failed");
            }
        }
        if !evicted.is_empty() {
            tracing::info!(tenant = %owner.tenant, evicted = evicted.len(), "oldest MCP sessions ended: the owner is at the cap");
        }
        Ok(())
    }

    async fn owned_by(&self, session_id: &str, caller: &Identity) -> Result<bool, String> {
        let Ok(key) = SessionKey::of_session(session_id) else {
            // Not even a well-formed id: unknown to everyone.
            return Ok(false);
        };
        let caller = Owner::from(caller);
        let cutoff = self.expiry_cutoff(self.now_millis());
        let found = read::<Roster>(
            &self.sessions,
            &owner_partition(&caller),
            ROSTER_ID,
            "read a roster",
        )
        .await
        .map_err(owner_error)?;
        Ok(found.is_some_and(|(roster, _)| {
            roster.owned_by(&caller)
                && roster
                    .sessions
                    .iter()
                    .any(|e| e.key == key.as_str() && e.bound_at > cutoff)
        }))
    }

    async fn forget(&self, session_id: &str) -> Result<(), String> {
        let key = SessionKey::of_session(session_id).map_err(owner_error)?;
        let pk = session_partition(&key);
        let Some((record, _)) =
            read::<SessionOwner>(&self.sessions, &pk, OWNER_ID, "read a session's owner")
                .await
                .map_err(owner_error)?
        else {
            return Ok(());
        };
        let mut attempts = Attempts::new("forget a session's owner");
        loop {
            attempts.next().await.map_err(owner_error)?;
            let Some((mut roster, unchanged)) =
                read::<Roster>(&self.sessions, &record.owner, ROSTER_ID, "read a roster")
                    .await
                    .map_err(owner_error)?
            else {
                break;
            };
            let before = roster.sessions.len();
            roster.sessions.retain(|e| e.key != key.as_str());
            if roster.sessions.len() == before
                || self
                    .write_roster(&roster, Some(unchanged))
                    .await
                    .map_err(owner_error)?
            {
                break;
            }
        }
        deleted(
            self.sessions.delete_item(pk, OWNER_ID, None).await,
            "forget a session's owner",
        )
        .map_err(owner_error)?;
        Ok(())
    }
}

impl LegacySessionStore for CosmosConversations {
    fn as_session_store(self: Arc<Self>) -> Arc<dyn SessionStore> {
        self
    }
}
