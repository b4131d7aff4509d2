-- SQLite twin of ../0007_deployment_settings.sql. Times are integer microseconds since the epoch.

CREATE TABLE deployment_settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
