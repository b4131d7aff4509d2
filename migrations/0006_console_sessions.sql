-- Web console sessions (docs/console.md), shared by every API replica. The browser holds a
-- random session id; only its SHA-256 is stored, so a dump of this table signs nobody in. An
-- api_key session names its key by id, never by the key itself: the key is checked (not
-- revoked) on every request.

CREATE TABLE console_sessions (
    id_hash    text PRIMARY KEY,
    csrf_token text NOT NULL,
    user_id    text,
    key_id     text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Expired sessions are deleted in passing.
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
