-- SQLite twin of ../0003_webhooks.sql. Times are integer microseconds since the epoch.

CREATE TABLE IF NOT EXISTS webhook_events (
    id               TEXT PRIMARY KEY,
    job_id           TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL,
    event            TEXT NOT NULL CHECK (event IN ('job.completed', 'job.failed', 'job.canceled')),
    url              TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_status      INTEGER,
    last_error       TEXT,
    next_attempt_at  INTEGER,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_events_job_event ON webhook_events (job_id, event);
CREATE INDEX IF NOT EXISTS webhook_events_due
    ON webhook_events (next_attempt_at) WHERE state = 'pending';

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    event_id        TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    attempted_at    INTEGER NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    duration_ms     INTEGER NOT NULL,
    next_attempt_at INTEGER,
    PRIMARY KEY (event_id, attempt)
);

CREATE TABLE IF NOT EXISTS webhook_secrets (
    user_id             TEXT PRIMARY KEY,
    secret              TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    previous_secret     TEXT,
    previous_expires_at INTEGER
);
