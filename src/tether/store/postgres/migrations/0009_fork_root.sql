-- A re-run (fork) remembers the first task of its chain of re-runs: a step it executes
-- again presents that task's idempotency key for the same position (ADR 63), even after
-- the tasks between them were purged. NULL for a task that is not a re-run.
ALTER TABLE tasks ADD COLUMN fork_root TEXT;
