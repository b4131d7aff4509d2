-- API keys (PIXELFLOW_AUTH=api_key). A key reads pf_<id>_<secret>; only its public id and the
-- SHA-256 of the whole key are stored, so a dump of this table cannot call the API.

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    user_id      text NOT NULL,
    name         text NOT NULL DEFAULT '',
    key_hash     text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- `pixelflow keys list --user ID`.
CREATE INDEX api_keys_user_created ON api_keys (user_id, created_at);
