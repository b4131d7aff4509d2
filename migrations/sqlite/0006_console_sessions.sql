-- SQLite twin of ../0006_console_sessions.sql. Times are integer microseconds since the epoch.

CREATE TABLE console_sessions (
    id_hash    TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    user_id    TEXT,
    key_id     TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
