-- `node_checkpoints` rebuilt with its status check written as `status = ... OR ...`:
-- SQLite compiles an `IN (...)` list into an ephemeral table, opened (and a page
-- zeroed) on every insert and update; a node writes its checkpoint twice.
CREATE TABLE node_checkpoints_v3 (
    deployment_id  TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    node           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status = 'running' OR status = 'succeeded' OR status = 'failed' OR status = 'skipped'),
    attempt        INTEGER NOT NULL DEFAULT 1,
    outputs        TEXT,
    error          TEXT,
    started_at     TEXT,
    finished_at    TEXT,
    PRIMARY KEY (deployment_id, node)
) WITHOUT ROWID;
INSERT INTO node_checkpoints_v3 SELECT deployment_id, node, status, attempt, outputs, error, started_at, finished_at
    FROM node_checkpoints;
DROP TABLE node_checkpoints;
ALTER TABLE node_checkpoints_v3 RENAME TO node_checkpoints;
