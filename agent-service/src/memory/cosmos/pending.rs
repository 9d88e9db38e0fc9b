//! Actions waiting for confirmation in Cosmos DB: one document each, in the owner's partition
//! beside the conversation it belongs to, under the digest of its confirmation id.
//!
//! Held in one batch with a conditional rewrite of the conversation's head, so an action lands
//! only in a conversation that is live and not being forgotten at that instant (SQLite's
//! `INSERT ... SELECT` from the live conversation). Claimed by one replace conditioned on the
//! document's ETag: of racing claims on any replicas exactly one sets `used_at`, and the others
//! read it again and are told it was used.

use async_trait::async_trait;
use azure_data_cosmos::{FeedScope, options::ItemWriteOptions};
use shared::cosmos::{Attempts, Written, commit, failed, read};

use super::{CosmosConversations, docs::*, native_ttl, with_head};
use crate::memory::{
    ConfirmationId, ConversationId, HeldAction, MemoryError, MemoryResult, Owner, PendingActions,
    ProposedAction, pending,
};

#[async_trait]
impl PendingActions for CosmosConversations {
    async fn hold(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        action: &ProposedAction,
    ) -> MemoryResult<HeldAction> {
        let id = ConfirmationId::generate()?;
        let arguments = pending::canonical(&serde_json::Value::Object(action.arguments.clone()));
        let binding = pending::binding(owner, conversation, action);
        let mut attempts = Attempts::new("hold an action");
        loop {
            attempts.next().await?;
            let now = self.now_millis();
            let expires_at = now.saturating_add(self.config.confirmation_ttl_millis());
            let (head, unchanged) = self.live_head(owner, conversation, now).await?;
            let doc = ActionDoc {
                id: action_id(&id),
                pk: head.pk.clone(),
                kind: ACTION.to_owned(),
                conversation_id: head.id.clone(),
                tenant: owner.tenant.clone(),
                subject: owner.subject.clone(),
                domain: action.domain.clone(),
                tool: action.tool.clone(),
                arguments: arguments.clone(),
                action: action.action.clone(),
                binding: binding.clone(),
                created_at: now,
                expires_at,
                used_at: None,
                ttl: native_ttl(self.config.confirmation_ttl),
            };
            // The head rewritten as read: the batch fails if it changed (a turn, or the first
            // step of forgetting it) since it was found live.
            let batch = with_head(&head, unchanged, &doc, "hold an action")?;
            match commit(&self.conversations, batch, "hold an action").await? {
                Written::Done => {
                    return Ok(HeldAction {
                        id,
                        expires_at: super::from_millis(expires_at)?,
                    });
                }
                Written::Stale | Written::Exists => continue,
            }
        }
    }

    async fn claim(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        domain: &str,
        id: &ConfirmationId,
    ) -> MemoryResult<ProposedAction> {
        let pk = owner_partition(owner);
        let mut attempts = Attempts::new("claim an action");
        let doc = loop {
            attempts.next().await?;
            let now = self.now_millis();
            let Some((mut doc, unchanged)) =
                read::<ActionDoc>(&self.conversations, &pk, &action_id(id), "read an action")
                    .await?
            else {
                return Err(MemoryError::UnknownConfirmation);
            };
            // Only the owner, in the same conversation with the same expert, learns it was used.
            let bound_here = doc.kind == ACTION
                && doc.tenant == owner.tenant
                && doc.subject == owner.subject
                && doc.conversation_id == conversation.as_str()
                && doc.domain == domain;
            if !bound_here {
                return Err(MemoryError::UnknownConfirmation);
            }
            if doc.used_at.is_some() {
                return Err(MemoryError::ConfirmationUsed);
            }
            if doc.expires_at <= now {
                return Err(MemoryError::UnknownConfirmation);
            }
            doc.used_at = Some(now);
            let options = ItemWriteOptions::default().with_precondition(unchanged);
            match self
                .conversations
                .replace_item(pk.clone(), &doc.id, &doc, Some(options))
                .await
            {
                Ok(_) => break doc,
                // Another claim came first (its `used_at` is read next time round).
                Err(e) if e.status().is_precondition_failed() => continue,
                // Swept or forgotten with its conversation meanwhile.
                Err(e) if e.status().is_not_found() => {
                    return Err(MemoryError::UnknownConfirmation);
                }
                Err(e) => return Err(failed("claim an action")(e).into()),
            }
        };
        let Ok(serde_json::Value::Object(arguments)) = serde_json::from_str(&doc.arguments) else {
            tracing::error!(tool = %doc.tool, "a held action's arguments are not a JSON object; refused");
            return Err(MemoryError::ActionAltered);
        };
        let action = ProposedAction {
            domain: domain.to_owned(),
            tool: doc.tool,
            arguments,
            action: doc.action,
        };
        if doc.binding != pending::binding(owner, conversation, &action) {
            tracing::error!(tool = %action.tool, "a held action no longer matches its binding; refused");
            return Err(MemoryError::ActionAltered);
        }
        Ok(action)
    }

    async fn sweep_actions(&self) -> MemoryResult<u64> {
        let expired: Vec<Key> = self
            .list(
                &self.conversations,
                "SELECT c.id, c.pk FROM c WHERE c.type = @type AND c.expires_at <= @now",
                &[("@type", ACTION.into()), ("@now", self.now_millis().into())],
                FeedScope::full_container(),
                "find expired actions",
            )
            .await?;
        self.delete_all(&self.conversations, expired, "delete expired actions")
            .await
    }
}
