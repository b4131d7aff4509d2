-- Jobs and their usage. The jobs table is the source of truth: the queue only carries ids.

CREATE TABLE jobs (
    id               text PRIMARY KEY,
    user_id          text NOT NULL,
    status           text NOT NULL CHECK (
                         status IN ('created', 'queued', 'processing', 'succeeded', 'failed',
                                    'canceled')
                     ),
    source_type      text NOT NULL CHECK (source_type IN ('local_file', 's3_presigned')),
    object_key       text NOT NULL,
    webhook_url      text,
    pipeline         jsonb NOT NULL,
    outputs          jsonb NOT NULL DEFAULT '[]',
    error            jsonb,
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    source_bytes     bigint,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    queued_at        timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_expires_at timestamptz,
    run_after        timestamptz,
    idempotency_key  text,
    request_hash     text,
    traceparent      text
);

-- Listing, newest first, with keyset pagination on (created_at, id).
CREATE INDEX jobs_user_created ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_user_status_created ON jobs (user_id, status, created_at DESC, id DESC);

-- The reconciler: stale queued jobs, and processing jobs whose worker stopped renewing its lease.
CREATE INDEX jobs_queued_updated ON jobs (updated_at) WHERE status = 'queued';
CREATE INDEX jobs_processing_lease ON jobs (lease_expires_at) WHERE status = 'processing';

-- Idempotency-Key: one live job per user and key (the store releases keys older than 24 h).
CREATE UNIQUE INDEX jobs_user_idempotency_key ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One row per job, upserted, written in the same transaction as the job's transition.
CREATE TABLE usage_logs (
    job_id           text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    user_id          text NOT NULL,
    pixels_processed bigint NOT NULL,
    bytes_in         bigint NOT NULL,
    bytes_out        bigint NOT NULL,
    bytes_saved      bigint NOT NULL,
    compute_time_ms  bigint NOT NULL,
    created_at       timestamptz NOT NULL
);

CREATE INDEX usage_logs_user_created ON usage_logs (user_id, created_at);
