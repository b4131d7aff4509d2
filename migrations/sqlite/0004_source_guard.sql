-- See ../0004_source_guard.sql.
ALTER TABLE jobs ADD COLUMN source_etag TEXT;
