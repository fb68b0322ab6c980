-- `deployments` (the columns of DESIGN.md section 7, plus inputs, snapshot, lease and
-- cancel columns), `snapshots` (the pipeline files a run started with),
-- `phase_history` (one row per phase update), `node_checkpoints` (one row per node).
-- The two tables written on every node are `WITHOUT ROWID` on their natural key, so
-- each write touches one B-tree (see the engine benchmark in the README).
CREATE TABLE snapshots (
    id          INTEGER PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,        -- sha256 of root + files
    root        TEXT NOT NULL,               -- the catalog name of the root pipeline
    files       TEXT NOT NULL,               -- JSON {name: {path, text}} of every file used
    created_at  TEXT NOT NULL
);
CREATE TABLE deployments (
    id               TEXT PRIMARY KEY,
    pipeline         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted', 'cancelled')),
    phase            TEXT NOT NULL,
    phase_progress   INTEGER NOT NULL CHECK (phase_progress BETWEEN 0 AND 100),
    phase_metadata   TEXT NOT NULL DEFAULT '{}',
    phase_updated_at TEXT NOT NULL,
    inputs           TEXT NOT NULL DEFAULT '{}',
    snapshot_id      INTEGER NOT NULL REFERENCES snapshots(id),
    attempt          INTEGER NOT NULL DEFAULT 1,   -- 1 for the first start, +1 per resume
    best_progress    INTEGER NOT NULL DEFAULT 0,   -- highest progress reached (kept on FAILED)
    error            TEXT,
    created_at       TEXT NOT NULL,
    finished_at      TEXT,
    lease_owner      TEXT,                         -- a random id per process
    lease_pid        INTEGER,
    lease_pid_start  INTEGER,                      -- /proc start time, against pid reuse
    lease_host       TEXT,
    heartbeat_at     INTEGER,                      -- unix ms
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX deployments_status ON deployments(status);
CREATE TABLE phase_history (
    deployment_id  TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL,              -- 1, 2, ... within the run
    phase          TEXT NOT NULL,
    progress       INTEGER NOT NULL,
    metadata       TEXT NOT NULL DEFAULT '{}',
    node           TEXT,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
) WITHOUT ROWID;                                  -- one B-tree: a history row costs one page
CREATE TABLE node_checkpoints (
    deployment_id  TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    node           TEXT NOT NULL,                 -- qualified id: `source.clone`
    status         TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    attempt        INTEGER NOT NULL DEFAULT 1,
    outputs        TEXT,                          -- JSON; for a sub-pipeline node while it runs: {selected, inputs}
    error          TEXT,
    started_at     TEXT,
    finished_at    TEXT,
    PRIMARY KEY (deployment_id, node)
) WITHOUT ROWID;                                  -- the key is the row: one B-tree per write
