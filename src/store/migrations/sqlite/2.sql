-- `events`, every event a run emits, with a sequence number that increases across the
-- database (`INTEGER PRIMARY KEY AUTOINCREMENT`: never reused, even after the newest
-- rows are deleted), so that event streams can replay from any point.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id  TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    event          TEXT NOT NULL,                 -- run_started, node_started, ...
    node           TEXT,
    data           TEXT NOT NULL,                 -- the JSON of `--format jsonl`, without seq
    created_at     TEXT NOT NULL
);
CREATE INDEX events_deployment ON events(deployment_id, seq);
