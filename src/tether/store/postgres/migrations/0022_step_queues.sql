-- Tether schema v22: steps that name their queue (ADR 93). Mirrors
-- store/sqlite/migrations/0022_step_queues.sql.

-- The queue a task was submitted to, once a step that names another queue has
-- routed it there (NULL: never routed; `queue` is where it is now).
ALTER TABLE tasks ADD COLUMN home_queue TEXT;
