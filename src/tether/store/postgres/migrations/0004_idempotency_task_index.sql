-- SQLite gains the index PostgreSQL's 0001 already has; versions stay in step.
CREATE INDEX IF NOT EXISTS idempotency_keys_task ON idempotency_keys (task_id);
