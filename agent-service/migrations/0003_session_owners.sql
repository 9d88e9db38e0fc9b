-- Who owns each MCP session (MCP_SESSIONS=true): the tenant and subject whose token initialized
-- it. Only they may use it; to anyone else it is unknown. Keyed like mcp_sessions, by the SHA-256
-- of the session id.

CREATE TABLE mcp_session_owners (
    session_key TEXT PRIMARY KEY,               -- SHA-256 of the Mcp-Session-Id, URL-safe base64
    tenant      TEXT NOT NULL,                  -- token tid
    subject     TEXT NOT NULL,                  -- token sub
    bound_at    INTEGER NOT NULL                -- Unix milliseconds; expires with CONVERSATION_TTL_SECS
) STRICT, WITHOUT ROWID;

-- The owner's sessions, newest first, for the per-owner cap.
CREATE INDEX mcp_session_owners_by_owner ON mcp_session_owners (tenant, subject, bound_at);
CREATE INDEX mcp_session_owners_by_age ON mcp_session_owners (bound_at);

-- The owner's conversations, for the per-owner cap.
CREATE INDEX conversations_by_owner ON conversations (tenant, subject, last_active_at);
