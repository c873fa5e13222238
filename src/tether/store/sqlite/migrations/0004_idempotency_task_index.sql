-- Retention deletes idempotency keys by task id; PostgreSQL's 0001 has this index.
CREATE INDEX IF NOT EXISTS idempotency_keys_task ON idempotency_keys (task_id);
