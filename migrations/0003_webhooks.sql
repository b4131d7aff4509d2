-- Webhooks (SPEC §5): one event per job outcome, one row per delivery attempt, and the
-- per-user signing secrets of `api_key` mode.

-- One row per event, inserted in the same transaction as the job's terminal transition.
-- The delivery loop claims due rows with a compare-and-set lease; `attempts` counts the
-- rows of webhook_deliveries (both are written in one transaction).
CREATE TABLE webhook_events (
    id               text PRIMARY KEY,
    job_id           text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    user_id          text NOT NULL,
    event            text NOT NULL CHECK (event IN ('job.completed', 'job.failed', 'job.canceled')),
    url              text NOT NULL,
    -- The exact bytes every attempt sends (text, not jsonb: jsonb would reorder the keys).
    payload          text NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_status      integer,
    last_error       text,
    next_attempt_at  timestamptz,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- One event per job and outcome: a retried transition cannot record a second one.
CREATE UNIQUE INDEX webhook_events_job_event ON webhook_events (job_id, event);
-- The delivery loop: pending events, earliest due first.
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE state = 'pending';

-- One row per delivery attempt, as it happened.
CREATE TABLE webhook_deliveries (
    event_id        text NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    attempt         integer NOT NULL CHECK (attempt >= 1),
    attempted_at    timestamptz NOT NULL,
    status_code     integer,
    error           text,
    duration_ms     integer NOT NULL,
    next_attempt_at timestamptz,
    PRIMARY KEY (event_id, attempt)
);

-- `api_key` mode: each user's signing secret, and the previous one for 24 h after a rotation.
-- Kept in clear: an HMAC key must be readable to sign with.
CREATE TABLE webhook_secrets (
    user_id             text PRIMARY KEY,
    secret              text NOT NULL,
    created_at          timestamptz NOT NULL,
    previous_secret     text,
    previous_expires_at timestamptz
);
