//! Conversation memory (see the crate docs).
