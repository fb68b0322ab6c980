-- `notifications`, the outbox of `notify:` webhooks: written in the transaction that
-- ends the run, then delivered (retried with backoff, by whichever phased process
-- comes next if this one dies); the URL is kept as its template, never rendered (it
-- may hold a secret). `deployments(pipeline, created_at)`: the newest runs of a
-- pipeline (the ETA reads them when a run starts).
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
