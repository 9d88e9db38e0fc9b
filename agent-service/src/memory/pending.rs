//! Actions waiting for the person's confirmation: a write an expert decided on (a payment, an
//! unlock, a subscription change, a new ticket), held instead of run until its owner confirms it
//! with the one-time [`ConfirmationId`] the answer carried.
//!
//! A held action is bound to its owner (tenant and subject), its conversation, the expert's
//! domain, the tool, its exact arguments (kept as canonical JSON, see [`canonical`]) and the words
//! the person was shown. A [`binding`] digest over all of them is stored beside them and checked
//! again when the action is claimed, so a row changed after it was held cannot be confirmed.
//!
//! Claiming is one conditional update: of any number of concurrent claims exactly one succeeds,
//! and every later one is told the id was already used. An id that never existed, has expired, or
//! belongs to someone else, another conversation or another expert is refused with the same
//! [`MemoryError::UnknownConfirmation`], so an id reveals nothing to anyone but its owner.
//! Actions nobody confirmed simply expire; [`PendingActions::sweep_actions`] deletes them.
//!
//! The trait is shaped for a document store too (Cosmos DB, partition key = owner, see
//! `cosmos`): every call names the owner, and a claim is a single-document conditional write
//! (ETag).

use async_trait::async_trait;
use aws_lc_rs::digest::{SHA256, digest};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{ConfirmationId, ConversationId, MemoryResult, Owner};

/// A write an expert wants to make, as held for confirmation and as handed back when claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposedAction {
    /// The expert's domain (`billing`, `account`, `product`): only that expert may run it.
    pub domain: String,
    /// The tools service's tool.
    pub tool: String,
    /// Its exact arguments.
    pub arguments: Map<String, Value>,
    /// What the person was asked to confirm, in words ("Pay $100.00 on invoice 3754 by credit
    /// card").
    pub action: String,
}

/// An action held for confirmation: the id to confirm it with, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldAction {
    pub id: ConfirmationId,
    pub expires_at: DateTime<Utc>,
}

/// Writes waiting for their owner's confirmation.
#[async_trait]
pub trait PendingActions: Send + Sync {
    /// Holds `action` in one of `owner`'s live conversations under a fresh id, for
    /// [`super::MemoryConfig::confirmation_ttl`].
    async fn hold(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        action: &ProposedAction,
    ) -> MemoryResult<HeldAction>;

    /// Claims the action held under `id` for `owner` in `conversation` with the expert of
    /// `domain`, once: the first claim gets it, every later one
    /// [`super::MemoryError::ConfirmationUsed`].
    async fn claim(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        domain: &str,
        id: &ConfirmationId,
    ) -> MemoryResult<ProposedAction>;

    /// Deletes expired actions, confirmed or not; returns how many went.
    async fn sweep_actions(&self) -> MemoryResult<u64>;
}

/// `value` as JSON text with every object's keys in sorted order and no whitespace: one spelling
/// per value, whatever order the model wrote the keys in.
pub fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(object) => {
                let mut keys: Vec<&String> = object.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|key| (key.clone(), sorted(&object[key])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // A `Map` keeps insertion order with serde_json's `preserve_order` and sorts without it:
    // sorting first gives the same text either way.
    sorted(value).to_string()
}

/// The digest that ties a held action to everything it was held with (SHA-256 of the canonical
/// JSON of owner, conversation, domain, tool, arguments and words, URL-safe base64).
pub fn binding(owner: &Owner, conversation: &ConversationId, action: &ProposedAction) -> String {
    let bound = serde_json::json!({
        "tenant": owner.tenant,
        "subject": owner.subject,
        "conversation_id": conversation.as_str(),
        "domain": action.domain,
        "tool": action.tool,
        "arguments": Value::Object(action.arguments.clone()),
        "action": action.action,
    });
    URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical(&bound).as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_has_one_spelling() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, {"z": 0, "y": 2}], "c": null}}"#)
                .expect("json");
        let b: Value =
            serde_json::from_str(r#"{"a":{"c":null,"d":[1,{"y":2,"z":0}]},"b":1}"#).expect("json");
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(
            canonical(&a),
            r#"{"a":{"c":null,"d":[1,{"y":2,"z":0}]},"b":1}"#
        );
    }

    #[test]
    fn the_binding_changes_with_every_field() {
        let owner = Owner {
            tenant: "t".into(),
            subject: "s".into(),
        };
        let conversation = ConversationId::generate().expect("randomness");
        let action = ProposedAction {
            domain: "billing".into(),
            tool: "pay_invoice".into(),
            arguments: json!({"invoice_id": 1, "amount": 10.0})
                .as_object()
                .cloned()
                .expect("object"),
            action: "Pay $10.00 on invoice 1 by credit card".into(),
        };
        let original = binding(&owner, &conversation, &action);
        assert_eq!(original, binding(&owner, &conversation, &action.clone()));
        let mut other = action.clone();
        other.arguments.insert("invoice_id".into(), json!(2));
        assert_ne!(original, binding(&owner, &conversation, &other));
        let mut other = action.clone();
        other.action.push('!');
        assert_ne!(original, binding(&owner, &conversation, &other));
        let someone = Owner {
            subject: "x".into(),
            ..owner.clone()
        };
        assert_ne!(original, binding(&someone, &conversation, &action));
        let elsewhere = ConversationId::generate().expect("randomness");
        assert_ne!(original, binding(&owner, &elsewhere, &action));
    }
}
