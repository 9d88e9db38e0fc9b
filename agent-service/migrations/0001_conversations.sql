-- Conversation memory of the expert agents. Times are Unix milliseconds (UTC), so expiry is an
-- integer comparison. A turn's content is one JSON document (the `Turn` struct), so fields
-- added to a turn later need no migration.

CREATE TABLE conversations (
    id             TEXT PRIMARY KEY,            -- conv_ + 22 URL-safe base64 characters
    tenant         TEXT NOT NULL,               -- owner: token tid
    subject        TEXT NOT NULL,               -- owner: token sub
    session_key    TEXT,                        -- SHA-256 of the MCP session id it stands in for
    created_at     INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,            -- creation or latest turn; the TTL counts from here
    last_seq       INTEGER NOT NULL DEFAULT 0   -- seq of the latest turn appended
) STRICT;

-- One conversation per (owner, session); expired ones are replaced, not reused.
CREATE UNIQUE INDEX conversations_by_session
    ON conversations (tenant, subject, session_key) WHERE session_key IS NOT NULL;
CREATE INDEX conversations_by_activity ON conversations (last_active_at);

CREATE TABLE turns (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,           -- 1, 2, ... within the conversation
    recorded_at     INTEGER NOT NULL,
    body            TEXT NOT NULL,              -- JSON of the turn
    PRIMARY KEY (conversation_id, seq)
) STRICT, WITHOUT ROWID;
