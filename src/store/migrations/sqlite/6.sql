-- `deliveries`, the webhook deliveries seen (trigger, delivery id, the run it
-- queued), so that a delivery sent twice runs once.
CREATE TABLE deliveries (
    trigger     TEXT NOT NULL,
    delivery    TEXT NOT NULL,
    run_id      TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (trigger, delivery)
) WITHOUT ROWID;
