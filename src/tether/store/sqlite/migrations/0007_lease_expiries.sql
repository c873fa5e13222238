-- How many times in a row a task's lease expired (its worker was lost) with no step
-- recorded in between: `lease_expiries` counts them, `lease_expiry_steps` is the task's
-- `steps_done` at the last one (a step recorded since starts the count again). A claim
-- fails the task as WorkerLost once the count reaches `max_lease_expiries` (ADR 64).
-- Mirrors store/postgres/migrations/0007_lease_expiries.sql.
ALTER TABLE tasks ADD COLUMN lease_expiries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN lease_expiry_steps INTEGER;
