-- Tether schema v18: fair claiming and concurrency keys (ADRs 88, 89). Mirrors
-- store/postgres/migrations/0018_flow_control.sql.

-- A task's fairness key (its tenant unless its workflow picks one) and its place in
-- the claim order: its start in its queue's virtual time, less its priority's worth
-- of it (`store/sql/fairness.py`). NULL for a task not yet due when submitted: those
-- are claimed by due time.
ALTER TABLE tasks ADD COLUMN fair_key TEXT;
ALTER TABLE tasks ADD COLUMN fair_rank REAL;

-- Where each queue's virtual time stands (it never goes back), and each key's clock
-- in it; `batch` is what the last submit added (the upsert adds it to a clock it
-- meets).
CREATE TABLE fair_queues (
    queue  TEXT PRIMARY KEY,
    floor  REAL NOT NULL
);
CREATE TABLE fair_clocks (
    queue     TEXT NOT NULL,
    fair_key  TEXT NOT NULL,
    clock     REAL NOT NULL,
    batch     REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, fair_key)
);
CREATE INDEX fair_clocks_queue ON fair_clocks (queue, clock);

-- Tasks queued before fairness keep their order: priority, then due time.
UPDATE tasks SET fair_key = tenant,
    fair_rank = run_at - priority * 1000.0
    WHERE status = 'queued' AND run_at <= CAST(strftime('%s', 'now') AS REAL);

DROP INDEX tasks_queued;
CREATE INDEX tasks_fair ON tasks (queue, fair_rank)
    WHERE status = 'queued' AND fair_rank IS NOT NULL;
CREATE INDEX tasks_delayed ON tasks (queue, run_at)
    WHERE status = 'queued' AND fair_rank IS NULL;

-- Concurrency keys (ADR 89): a task of a key is admitted (queued, then run) while the
-- key has fewer than `max` holders; else it waits (`wait_reason = 'concurrency'`, no
-- run_at, `attempt = 0`: a step waiting for a step limit's slot has the same reason
-- but has run) until a holder ends. Admission at submit is `store/sql/concurrency.py`;
-- the two triggers below keep `holders` as tasks end and move the next waiter up.
ALTER TABLE tasks ADD COLUMN concurrency_key TEXT;
CREATE TABLE concurrency_keys (
    key      TEXT PRIMARY KEY,
    max      INTEGER NOT NULL,
    holders  INTEGER NOT NULL,
    granted  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_concurrency_waiting ON tasks (concurrency_key, fair_rank, created_at)
    WHERE status = 'waiting' AND wait_reason = 'concurrency' AND attempt = 0;

-- An admitted task of a key ended: one holder fewer, and the next waiter, if the key
-- has room, is queued (which counts it: `tasks_concurrency_admit`).
CREATE TRIGGER tasks_concurrency_release AFTER UPDATE OF status ON tasks
WHEN OLD.concurrency_key IS NOT NULL
    AND NEW.status IN ('succeeded', 'failed', 'cancelled')
    AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
    AND NOT (OLD.status = 'waiting' AND OLD.wait_reason IS 'concurrency' AND OLD.attempt = 0)
BEGIN
    UPDATE concurrency_keys SET holders = holders - 1 WHERE key = OLD.concurrency_key;
    UPDATE tasks SET status = 'queued', wait_reason = NULL, run_at = NEW.updated_at,
        updated_at = NEW.updated_at
    WHERE id = (SELECT id FROM tasks WHERE concurrency_key = OLD.concurrency_key
                AND status = 'waiting' AND wait_reason = 'concurrency' AND attempt = 0
                ORDER BY fair_rank, created_at LIMIT 1)
        AND (SELECT holders < max FROM concurrency_keys WHERE key = OLD.concurrency_key);
END;

-- A waiter of a key was queued: it holds the key now; its `task.queued` event.
CREATE TRIGGER tasks_concurrency_admit AFTER UPDATE OF status ON tasks
WHEN OLD.status = 'waiting' AND OLD.wait_reason IS 'concurrency' AND OLD.attempt = 0
    AND NEW.status = 'queued'
BEGIN
    UPDATE concurrency_keys SET holders = holders + 1 WHERE key = NEW.concurrency_key;
    INSERT INTO events (task_id, tenant, at, type, prior_status, new_status, attempt,
        worker, step, error_class, decision, data)
    VALUES (NEW.id, NEW.tenant, NEW.updated_at, 'task.queued', 'waiting', 'queued',
        NEW.attempt, NULL, NULL, NULL, 'concurrency', NULL);
END;
