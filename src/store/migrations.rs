//! The database schema, one migration per version (`PRAGMA user_version`).
//!
//! Changelog:
//! - 1: `deployments` (the columns of DESIGN.md section 7, plus inputs, snapshot, lease
//!   and cancel columns), `snapshots` (the pipeline files a run started with),
//!   `phase_history` (one row per phase update), `node_checkpoints` (one row per node).
//!   The two tables written on every node are `WITHOUT ROWID` on their natural key, so
//!   each write touches one B-tree (see the engine benchmark in the README).
//!
//! - 2: `events`, every event a run emits, with a sequence number that increases across
//!   the database (`INTEGER PRIMARY KEY AUTOINCREMENT`: never reused, even after the
//!   newest rows are deleted), so that event streams can replay from any point.
//! - 3: `node_checkpoints` rebuilt with its status check written as `status = ... OR
//!   ...`: SQLite compiles an `IN (...)` list into an ephemeral table, opened (and a
//!   page zeroed) on every insert and update; a node writes its checkpoint twice.
//!
//! - 4: `deployments.target` (the rendered `concurrency.key`; NULL without one) and
//!   `superseded_by` (the run that superseded a cancelled one); `cancel_requested` 2
//!   asks for a stop at the next node boundary (superseded) rather than at once.
//!
//! - 5: `tokens`, the API tokens of `phased serve`: a name, a role, and the SHA-256 of
//!   the token (the token itself is shown once, never stored).
//!
//! - 6: `deliveries`, the webhook deliveries seen (trigger, delivery id, the run it
//!   queued), so that a delivery sent twice runs once.
//!
//! - 7: `sessions`, the dashboard's sign-ins: the SHA-256 of the session cookie, the
//!   token it was made with (revoking the token ends them) and when it expires.
//!
//! - 8: `notifications`, the outbox of `notify:` webhooks: written in the transaction
//!   that ends the run, then delivered (retried with backoff, by whichever phased
//!   process comes next if this one dies); the URL is kept as its template, never
//!   rendered (it may hold a secret). `deployments(pipeline, created_at)`: the newest
//!   runs of a pipeline (the ETA reads them when a run starts).
//!
//! A migration is never edited once released: add a new one.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1
    r#"
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
    "#,
    // 2
    r#"
    CREATE TABLE events (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment_id  TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
        event          TEXT NOT NULL,                 -- run_started, node_started, ...
        node           TEXT,
        data           TEXT NOT NULL,                 -- the JSON of `--format jsonl`, without seq
        created_at     TEXT NOT NULL
    );
    CREATE INDEX events_deployment ON events(deployment_id, seq);
    "#,
    // 3
    r#"
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
    "#,
    // 4
    r#"
    ALTER TABLE deployments ADD COLUMN target TEXT;
    ALTER TABLE deployments ADD COLUMN superseded_by TEXT;
    CREATE INDEX deployments_target ON deployments(target, status);
    "#,
    // 5
    r#"
    CREATE TABLE tokens (
        name        TEXT PRIMARY KEY,
        role        TEXT NOT NULL CHECK (role = 'read' OR role = 'deploy' OR role = 'admin'),
        hash        TEXT NOT NULL UNIQUE,           -- sha256 of the token, hex
        created_at  TEXT NOT NULL,
        last_used_at TEXT
    );
    "#,
    // 6
    r#"
    CREATE TABLE deliveries (
        trigger     TEXT NOT NULL,
        delivery    TEXT NOT NULL,
        run_id      TEXT,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (trigger, delivery)
    ) WITHOUT ROWID;
    "#,
    // 7
    r#"
    CREATE TABLE sessions (
        hash        TEXT PRIMARY KEY,               -- sha256 of the cookie's value, hex
        token_name  TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        expires_at  INTEGER NOT NULL                -- unix ms
    ) WITHOUT ROWID;
    "#,
    // 8
    r#"
    CREATE TABLE notifications (
        id            INTEGER PRIMARY KEY,
        deployment_id TEXT NOT NULL,
        outcome       TEXT NOT NULL,                -- succeeded | failed | cancelled
        url_template  TEXT NOT NULL,                -- as written: rendered when sent
        format        TEXT NOT NULL,                -- json | slack
        body          TEXT NOT NULL,
        status        TEXT NOT NULL DEFAULT 'pending' CHECK (status = 'pending' OR status = 'delivered' OR status = 'failed'),
        attempts      INTEGER NOT NULL DEFAULT 0,
        next_at       INTEGER NOT NULL,             -- unix ms
        last_error    TEXT,
        created_at    TEXT NOT NULL,
        delivered_at  TEXT
    );
    CREATE INDEX notifications_due ON notifications(status, next_at);
    -- The newest runs of a pipeline, for the ETA at every run's start.
    CREATE INDEX deployments_pipeline ON deployments(pipeline, created_at);
    "#,
    // 9
    r#"
    -- Who started the run: `cli:user@host`, `token:NAME`, `webhook:TRIGGER#DELIVERY`,
    -- `rollback:RUN`, `watch`. NULL for runs recorded before version 9.
    ALTER TABLE deployments ADD COLUMN actor TEXT;
    "#,
];
