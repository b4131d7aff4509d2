-- The version of an uploaded source that `start` verified (its S3 ETag, or the local store's
-- inode-mtime-size tag): the worker fetches exactly that object (If-Match) and fails the job
-- with `source_changed` if it was replaced after start. NULL for local_file sources and for
-- jobs started before this migration.
ALTER TABLE jobs ADD COLUMN source_etag text;
