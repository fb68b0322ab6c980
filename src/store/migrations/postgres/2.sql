-- SQLite's version 9.
ALTER TABLE deployments ADD COLUMN actor TEXT;
