-- Settings the processes of one deployment must agree on, recorded by the first `pixelflow api`
-- or `pixelflow worker` to start (docs/operations.md, "One mode per deployment"). Today one:
-- auth_mode, the PIXELFLOW_AUTH that decides whose secret signs webhooks.

CREATE TABLE deployment_settings (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL
);
