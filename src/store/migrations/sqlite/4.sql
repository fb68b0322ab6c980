-- `deployments.target` (the rendered `concurrency.key`; NULL without one) and
-- `superseded_by` (the run that superseded a cancelled one); `cancel_requested` 2
-- asks for a stop at the next node boundary (superseded) rather than at once.
ALTER TABLE deployments ADD COLUMN target TEXT;
ALTER TABLE deployments ADD COLUMN superseded_by TEXT;
CREATE INDEX deployments_target ON deployments(target, status);
