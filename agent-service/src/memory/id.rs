//! Conversation and confirmation ids, minted from the operating system's CSPRNG and parsed
//! strictly on the way in, and the keys that bind an MCP session to a conversation.
//!
//! A conversation id is `conv_` followed by 22 URL-safe base64 characters (128 random bits, no
//! padding), so it can sit in JSON, URLs and logs without escaping. Ids are capabilities only in
//! part: the store also checks the owner, so a leaked id alone does not open someone's
//! conversation. A confirmation id ([`ConfirmationId`], `confirm_` + 22 characters) is made the
//! same way and names one action waiting for its owner's confirmation.
//!
//! MCP session ids and confirmation ids are stored only as SHA-256 digests ([`SessionKey`],
//! [`ConfirmationId::key`]): a copy of the database does not hand out live ids.

use std::fmt;

use aws_lc_rs::{
    digest::{SHA256, digest},
    rand::{SecureRandom, SystemRandom},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::MemoryError;

/// What every conversation id starts with, so an id is recognisable in a log or a bug report.
const PREFIX: &str = "conv_";
/// What every confirmation id starts with.
const CONFIRM_PREFIX: &str = "confirm_";
/// Random bytes per id: 128 bits, beyond guessing or colliding.
const RANDOM_BYTES: usize = 16;
/// Base64 characters that encode [`RANDOM_BYTES`] without padding.
const ENCODED_LEN: usize = 22;
/// The longest MCP session id accepted. The MCP specification only asks for visible ASCII;
/// servers mint UUIDs or similar, far below this.
const MAX_SESSION_ID_LEN: usize = 256;

/// A conversation id known to be well formed (it may still be unknown to the store).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationId(String);

/// `prefix` and 128 fresh bits from the operating system's CSPRNG.
fn mint(prefix: &str) -> Result<String, MemoryError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| MemoryError::Backend("the system random generator failed".into()))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Whether `text` is `prefix` and the canonical encoding of 128 bits.
fn well_formed(text: &str, prefix: &str) -> bool {
    let Some(encoded) = text.strip_prefix(prefix) else {
        return false;
    };
    // The strict decoder also refuses non-zero trailing bits, so each id has one spelling.
    encoded.len() == ENCODED_LEN
        && URL_SAFE_NO_PAD
            .decode(encoded)
            .is_ok_and(|bytes| bytes.len() == RANDOM_BYTES)
}

/// The SHA-256 digest of `text`, URL-safe base64: how ids are stored.
fn digest_of(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, text.as_bytes()).as_ref())
}

impl ConversationId {
    /// A fresh id from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, MemoryError> {
        mint(PREFIX).map(ConversationId)
    }

    /// Checks a caller-supplied id's shape; says what is wrong with it, never whether it exists.
    pub fn parse(text: &str) -> Result<Self, MemoryError> {
        if well_formed(text, PREFIX) {
            return Ok(ConversationId(text.to_owned()));
        }
        Err(MemoryError::MalformedId {
            expected: format!(
                "`{PREFIX}` followed by {ENCODED_LEN} URL-safe base64 characters (A-Z a-z 0-9 - _), \
                 as returned when the conversation was started"
            ),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The one-time id of an action waiting for its owner's confirmation, known to be well formed
/// (it may still be unknown, used or expired).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfirmationId(String);

impl ConfirmationId {
    /// A fresh id from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, MemoryError> {
        mint(CONFIRM_PREFIX).map(ConfirmationId)
    }

    /// Checks a caller-supplied id's shape; says what is wrong with it, never whether it exists.
    pub fn parse(text: &str) -> Result<Self, MemoryError> {
        if well_formed(text, CONFIRM_PREFIX) {
            return Ok(ConfirmationId(text.to_owned()));
        }
        Err(MemoryError::MalformedConfirmation {
            expected: format!(
                "`{CONFIRM_PREFIX}` followed by {ENCODED_LEN} URL-safe base64 characters, as \
                 returned in the `confirmation` of the answer that asked for it"
            ),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the store keeps instead of the id: its SHA-256 digest.
    pub fn key(&self) -> String {
        digest_of(&self.0)
    }
}

/// The stored stand-in for an MCP session id: its SHA-256 digest, URL-safe base64.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(String);

impl SessionKey {
    /// Checks the session id's shape (1 to 256 visible ASCII characters, as the MCP
    /// specification allows) and digests it.
    pub fn of_session(session_id: &str) -> Result<Self, MemoryError> {
        let visible_ascii = session_id.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if session_id.is_empty() || session_id.len() > MAX_SESSION_ID_LEN || !visible_ascii {
            return Err(MemoryError::MalformedSession {
                expected: format!("1 to {MAX_SESSION_ID_LEN} visible ASCII characters"),
            });
        }
        Ok(SessionKey(digest_of(session_id)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = ConversationId::generate().expect("randomness");
        let b = ConversationId::generate().expect("randomness");
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), PREFIX.len() + ENCODED_LEN);
        assert_eq!(ConversationId::parse(a.as_str()).expect("own id parses"), a);
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = ConversationId::generate().expect("randomness");
        let body = &good.as_str()[PREFIX.len()..];
        for bad in [
            String::new(),
            "conv_".into(),
            body.to_owned(),
            format!("sess_{body}"),
            format!("{PREFIX}{body}A"),
            format!("{PREFIX}{}", &body[1..]),
            format!("{PREFIX}{}+", &body[1..]),
            format!("{PREFIX}{}=", &body[1..]),
            format!("{PREFIX}{}/", &body[1..]),
            format!("{PREFIX}{} ", &body[1..]),
            format!("{PREFIX}{}é", &body[2..]),
        ] {
            if bad == good.as_str() {
                continue;
            }
            let refused = ConversationId::parse(&bad);
            assert!(
                matches!(refused, Err(MemoryError::MalformedId { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn trailing_bits_make_an_id_non_canonical() {
        // 16 zero bytes encode as 21 'A's and a final 'A'; 'B' sets a bit beyond the 128.
        let canonical = format!("{PREFIX}{}", "A".repeat(ENCODED_LEN));
        assert!(ConversationId::parse(&canonical).is_ok());
        let padded_bits = format!("{PREFIX}{}B", "A".repeat(ENCODED_LEN - 1));
        assert!(ConversationId::parse(&padded_bits).is_err());
    }

    #[test]
    fn confirmation_ids_are_their_own_kind_and_stored_as_digests() {
        let id = ConfirmationId::generate().expect("randomness");
        assert!(id.as_str().starts_with(CONFIRM_PREFIX));
        assert_eq!(ConfirmationId::parse(id.as_str()).expect("parses"), id);
        assert_ne!(id, ConfirmationId::generate().expect("randomness"));
        assert!(!id.key().contains(&id.as_str()[CONFIRM_PREFIX.len()..]));
        assert_eq!(id.key(), id.clone().key());
        let conversation = ConversationId::generate().expect("randomness");
        for bad in [
            conversation.as_str(),
            "confirm_",
            "",
            &format!("{}x", id.as_str()),
        ] {
            assert!(
                matches!(
                    ConfirmationId::parse(bad),
                    Err(MemoryError::MalformedConfirmation { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn session_keys_digest_and_validate() {
        let a = SessionKey::of_session("3f1c9a7e-5b2d-4c8e-9f00-1a2b3c4d5e6f").expect("uuid");
        assert_eq!(
            a,
            SessionKey::of_session("3f1c9a7e-5b2d-4c8e-9f00-1a2b3c4d5e6f").expect("uuid")
        );
        assert_ne!(a, SessionKey::of_session("another").expect("word"));
        assert!(!a.as_str().contains("3f1c"));
        for bad in [
            "",
            "with space",
            "tab\t",
            "é",
            &"x".repeat(MAX_SESSION_ID_LEN + 1),
        ] {
            assert!(
                matches!(
                    SessionKey::of_session(bad),
                    Err(MemoryError::MalformedSession { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
