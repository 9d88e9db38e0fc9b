-- Writes an expert decided on, held until their owner confirms them (`confirm` of an expert
-- tool), at most once, before they expire. Keyed by the SHA-256 of the confirmation id, so the
-- file holds no usable id. Times are Unix milliseconds (UTC), as in conversations.

CREATE TABLE pending_actions (
    confirmation_key TEXT PRIMARY KEY,          -- SHA-256 of the confirm_ id, URL-safe base64
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    tenant           TEXT NOT NULL,             -- owner: token tid
    subject          TEXT NOT NULL,             -- owner: token sub
    domain           TEXT NOT NULL,             -- the expert that may run it
    tool             TEXT NOT NULL,             -- the tools service's tool
    arguments        TEXT NOT NULL,             -- its exact arguments, canonical JSON
    action           TEXT NOT NULL,             -- the words the person was asked to confirm
    binding          TEXT NOT NULL,             -- SHA-256 over all of the above, checked on claim
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used_at          INTEGER                    -- set once, by the one claim that succeeds
) STRICT, WITHOUT ROWID;

CREATE INDEX pending_actions_by_expiry ON pending_actions (expires_at);
CREATE INDEX pending_actions_by_conversation ON pending_actions (conversation_id);
