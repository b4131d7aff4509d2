-- SQLite twin of ../0001_jobs.sql (the embedded default). Times are integer microseconds since
-- the epoch, JSON is text. IF NOT EXISTS: databases made before numbered SQLite migrations
-- already hold these tables and adopt this version as applied.

CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (
                         status IN ('created', 'queued', 'processing', 'succeeded', 'failed',
                                    'canceled')
                     ),
    source_type      TEXT NOT NULL CHECK (source_type IN ('local_file', 's3_presigned')),
    object_key       TEXT NOT NULL,
    webhook_url      TEXT,
    pipeline         TEXT NOT NULL,
    outputs          TEXT NOT NULL DEFAULT '[]',
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    source_bytes     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    queued_at        INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    lease_expires_at INTEGER,
    run_after        INTEGER,
    idempotency_key  TEXT,
    request_hash     TEXT,
    traceparent      TEXT
);
CREATE INDEX IF NOT EXISTS jobs_user_created ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_user_status_created
    ON jobs (user_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_queued_updated ON jobs (updated_at) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_processing_lease
    ON jobs (lease_expires_at) WHERE status = 'processing';
CREATE UNIQUE INDEX IF NOT EXISTS jobs_user_idempotency_key
    ON jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS usage_logs (
    job_id           TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL,
    pixels_processed INTEGER NOT NULL,
    bytes_in         INTEGER NOT NULL,
    bytes_out        INTEGER NOT NULL,
    bytes_saved      INTEGER NOT NULL,
    compute_time_ms  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_logs_user_created ON usage_logs (user_id, created_at);
