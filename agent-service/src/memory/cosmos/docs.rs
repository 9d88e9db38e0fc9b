//! The documents of the Cosmos DB memory: what each record looks like, and the keys that place
//! it (partition, id).
//!
//! Every document has the envelope Cosmos needs (`id`, the partition key `pk`) and its kind
//! (`type`). Times are Unix milliseconds of the store's clock, as in SQLite. A turn, a session
//! handshake and an action's arguments are kept as the JSON *text* SQLite keeps: Cosmos stores
//! numbers as doubles, and a model's arguments or a client's capabilities may hold integers a
//! double cannot, so text is what round-trips exactly.
//!
//! Document ids never contain what Cosmos refuses in one (`/ \ ? #`): they are conversation ids,
//! SHA-256 digests in URL-safe base64, and decimal numbers, joined by `:`.

use aws_lc_rs::digest::{SHA256, digest};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::memory::{ConfirmationId, ConversationId, Owner, SessionKey};

pub(super) const CONVERSATION: &str = "conversation";
pub(super) const TURN: &str = "turn";
pub(super) const ACTION: &str = "action";
pub(super) const SESSION_LINK: &str = "session_link";
pub(super) const HANDSHAKE: &str = "handshake";
pub(super) const SESSION_OWNER: &str = "session_owner";
pub(super) const ROSTER: &str = "roster";

/// The id of a session's handshake, and of its owner, within the session's partition.
pub(super) const HANDSHAKE_ID: &str = "handshake";
pub(super) const OWNER_ID: &str = "owner";
/// The id of an owner's list of sessions, within the owner's partition.
pub(super) const ROSTER_ID: &str = "roster";

/// The partition of everything an owner has: `owner_` and the SHA-256 of the tenant's length,
/// `:`, the tenant and the subject. The length prefix makes the encoding injective (no two
/// pairs spell the same text, whatever characters they hold), the digest makes the key a fixed
/// 49 characters whatever the token's claims hold (Cosmos caps a key at 2 KiB).
pub(super) fn owner_partition(owner: &Owner) -> String {
    let encoded = format!("{}:{}{}", owner.tenant.len(), owner.tenant, owner.subject);
    format!(
        "owner_{}",
        URL_SAFE_NO_PAD.encode(digest(&SHA256, encoded.as_bytes()).as_ref())
    )
}

/// The partition of one MCP session (handshake and owner): `session_` and the session key.
pub(super) fn session_partition(session: &SessionKey) -> String {
    format!("session_{}", session.as_str())
}

pub(super) fn turn_id(conversation: &str, seq: i64) -> String {
    format!("{TURN}:{conversation}:{seq}")
}

pub(super) fn action_id(id: &ConfirmationId) -> String {
    format!("{ACTION}:{}", id.key())
}

pub(super) fn link_id(session: &SessionKey) -> String {
    format!("session:{}", session.as_str())
}

/// A conversation: whose it is, when it was last active, and which turns it keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Head {
    pub id: String,
    pub pk: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub tenant: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    pub created_at: i64,
    /// Creation or the latest turn: the TTL counts from here.
    pub last_active_at: i64,
    /// The seq of the latest turn (0 before the first).
    pub last_seq: i64,
    /// The seq of the oldest turn kept (`last_seq + 1` when none is kept).
    pub first_seq: i64,
    /// Set by the first step of forgetting it (see `forget`): no turn or action lands after.
    #[serde(default)]
    pub forgotten: bool,
}

impl Head {
    pub fn new(id: &ConversationId, owner: &Owner, session: Option<&SessionKey>, now: i64) -> Self {
        Head {
            id: id.as_str().to_owned(),
            pk: owner_partition(owner),
            kind: CONVERSATION.to_owned(),
            tenant: owner.tenant.clone(),
            subject: owner.subject.clone(),
            session_key: session.map(|s| s.as_str().to_owned()),
            created_at: now,
            last_active_at: now,
            last_seq: 0,
            first_seq: 1,
            forgotten: false,
        }
    }

    /// Whether it is `owner`'s (the partition says so already; the fields say it again).
    pub fn owned_by(&self, owner: &Owner) -> bool {
        self.tenant == owner.tenant && self.subject == owner.subject
    }
}

/// One turn of a conversation, in the conversation's (its owner's) partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TurnDoc {
    pub id: String,
    pub pk: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub conversation_id: String,
    pub seq: i64,
    pub recorded_at: i64,
    /// The turn's JSON text.
    pub body: String,
}

/// An action held for confirmation, under the digest of its confirmation id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ActionDoc {
    pub id: String,
    pub pk: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub conversation_id: String,
    pub tenant: String,
    pub subject: String,
    pub domain: String,
    pub tool: String,
    /// Canonical JSON text of the arguments.
    pub arguments: String,
    pub action: String,
    pub binding: String,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// The conversation an MCP session stands for, in the owner's partition: one per owner and
/// session, since its id is made of the session key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionLink {
    pub id: String,
    pub pk: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub conversation_id: String,
}

/// An MCP session's handshake, in the session's partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Handshake {
    pub id: String,
    pub pk: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// JSON text of the initialize parameters.
    pub state: String,
    pub stored_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// Who initialized an MCP session, in the session's partition: how `forget`, which knows only
/// the session id, finds the owner's roster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionOwner {
    pub id: String,
    pub pk: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The owner's partition, where their roster is.
    pub owner: String,
    pub tenant: String,
    pub subject: String,
    pub bound_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// The MCP sessions an owner holds, newest first, in the owner's partition: the one document
/// that says whether a session is theirs, so the per-owner cap and every ownership check are
/// decided on one ETag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Roster {
    pub id: String,
    pub pk: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub tenant: String,
    pub subject: String,
    pub sessions: Vec<RosterEntry>,
    /// The latest `bound_at` of its sessions: once expired, so is every entry.
    pub last_bound_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RosterEntry {
    /// The session key (SHA-256 of the session id).
    pub key: String,
    pub bound_at: i64,
}

impl Roster {
    pub fn new(owner: &Owner) -> Self {
        Roster {
            id: ROSTER_ID.to_owned(),
            pk: owner_partition(owner),
            kind: ROSTER.to_owned(),
            tenant: owner.tenant.clone(),
            subject: owner.subject.clone(),
            sessions: Vec::new(),
            last_bound_at: 0,
            ttl: None,
        }
    }

    pub fn owned_by(&self, owner: &Owner) -> bool {
        self.tenant == owner.tenant && self.subject == owner.subject
    }
}

/// A document as a query returns it, with the ETag a conditional write of it needs.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Versioned<T> {
    #[serde(flatten)]
    pub doc: T,
    #[serde(rename = "_etag")]
    pub etag: String,
}

/// Where a document is: what a query lists for deletion.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Key {
    pub id: String,
    pub pk: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(tenant: &str, subject: &str) -> Owner {
        Owner {
            tenant: tenant.into(),
            subject: subject.into(),
        }
    }

    #[test]
    fn owner_partitions_never_collide_and_have_one_length() {
        // Pairs that a plain concatenation (or one with a separator) would confuse.
        let pairs = [
            owner("ab", "c"),
            owner("a", "bc"),
            owner("a:b", "c"),
            owner("a", "b:c"),
            owner("1:a", "b"),
            owner("", "1:ab"),
            owner("", ""),
        ];
        let keys: std::collections::BTreeSet<String> = pairs.iter().map(owner_partition).collect();
        assert_eq!(keys.len(), pairs.len(), "{keys:?}");
        assert!(
            keys.iter()
                .all(|k| k.len() == 49 && k.starts_with("owner_"))
        );
        assert_eq!(
            owner_partition(&pairs[0]),
            owner_partition(&owner("ab", "c"))
        );
        let long = owner(&"t".repeat(5000), &"s".repeat(5000));
        assert_eq!(owner_partition(&long).len(), 49);
    }

    #[test]
    fn session_and_owner_partitions_are_told_apart_by_their_prefix() {
        let session = SessionKey::of_session("3f1c9a7e").expect("a session id");
        assert!(session_partition(&session).starts_with("session_"));
        assert!(!owner_partition(&owner("t", "s")).starts_with("session_"));
    }
}
