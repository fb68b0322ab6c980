-- Who started the run: `cli:user@host`, `token:NAME`, `webhook:TRIGGER#DELIVERY`,
-- `rollback:RUN`, `watch`. NULL for runs recorded before version 9.
ALTER TABLE deployments ADD COLUMN actor TEXT;
