-- Tether schema v18: fair claiming (ADR 88). Mirrors
-- store/sqlite/migrations/0018_fair_claims.sql.

-- A task's fairness key (its tenant unless its workflow picks one) and its place in
-- the claim order: its start in its queue's virtual time, less its priority's worth
-- of it (`store/sql/fairness.py`). NULL for a task not yet due when submitted: those
-- are claimed by due time.
ALTER TABLE tasks ADD COLUMN fair_key TEXT;
ALTER TABLE tasks ADD COLUMN fair_rank DOUBLE PRECISION;

-- Where each queue's virtual time stands (it never goes back), and each key's clock
-- in it; `batch` is what the last submit added (the upsert adds it to a clock it
-- meets).
CREATE TABLE fair_queues (
    queue  TEXT PRIMARY KEY,
    floor  DOUBLE PRECISION NOT NULL
);
CREATE TABLE fair_clocks (
    queue     TEXT NOT NULL,
    fair_key  TEXT NOT NULL,
    clock     DOUBLE PRECISION NOT NULL,
    batch     DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, fair_key)
);
CREATE INDEX fair_clocks_queue ON fair_clocks (queue, clock);

-- Tasks queued before fairness keep their order: priority, then due time.
UPDATE tasks SET fair_key = tenant,
    fair_rank = run_at - priority * 1000.0
    WHERE status = 'queued' AND run_at <= extract(epoch FROM now());

DROP INDEX tasks_queued;
CREATE INDEX tasks_fair ON tasks (queue, fair_rank)
    WHERE status = 'queued' AND fair_rank IS NOT NULL;
CREATE INDEX tasks_delayed ON tasks (queue, run_at)
    WHERE status = 'queued' AND fair_rank IS NULL;
