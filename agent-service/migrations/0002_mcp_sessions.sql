-- MCP sessions of legacy clients (MCP_SESSIONS=true): the handshake of each, so any replica, or
-- this one after a restart, can take a session over without the client initializing again.
-- Keyed by the SHA-256 of the session id (as conversations.session_key), so the file holds no
-- usable session id.

CREATE TABLE mcp_sessions (
    session_key TEXT PRIMARY KEY,               -- SHA-256 of the Mcp-Session-Id, URL-safe base64
    state       TEXT NOT NULL,                  -- JSON of the initialize parameters
    stored_at   INTEGER NOT NULL                -- Unix milliseconds; expires with CONVERSATION_TTL_SECS
) STRICT, WITHOUT ROWID;

CREATE INDEX mcp_sessions_by_age ON mcp_sessions (stored_at);
