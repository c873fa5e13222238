-- Tether schema v1 (PostgreSQL). Mirrors store/sqlite/migrations/0001_initial.sql: same
-- tables, columns and semantics. Times are seconds since the epoch (DOUBLE PRECISION);
-- JSON is stored as TEXT, exactly as on SQLite, so the shared SQL runs unchanged.
CREATE TABLE tasks (
    id                TEXT PRIMARY KEY,
    tenant            TEXT NOT NULL,
    workflow          TEXT NOT NULL,
    workflow_version  INTEGER NOT NULL,
    queue             TEXT NOT NULL,
    priority          INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    wait_reason       TEXT,
    wait_signals      TEXT,
    input             TEXT NOT NULL,
    result            TEXT,
    error             TEXT,
    error_fingerprint TEXT,
    idempotency_key   TEXT,
    correlation_id    TEXT NOT NULL,
    created_by        TEXT,
    attempt           INTEGER NOT NULL DEFAULT 0,
    run_at            DOUBLE PRECISION,
    lease_owner       TEXT,
    lease_expires_at  DOUBLE PRECISION,
    deadline          DOUBLE PRECISION,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    forked_from       TEXT,
    fork_from_seq     INTEGER,
    steps_done        INTEGER NOT NULL DEFAULT 0,
    current_step      TEXT,
    created_at        DOUBLE PRECISION NOT NULL,
    updated_at        DOUBLE PRECISION NOT NULL,
    started_at        DOUBLE PRECISION,
    finished_at       DOUBLE PRECISION
);
-- The hot table is updated constantly: vacuum it early so dead rows do not pile up
-- under the claim indexes.
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

-- Claim paths: each is a partial index so history never slows them down.
CREATE INDEX tasks_queued ON tasks (queue, priority DESC, run_at) WHERE status = 'queued';
CREATE INDEX tasks_waiting_due ON tasks (run_at) WHERE status = 'waiting' AND run_at IS NOT NULL;
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_lease_owner ON tasks (lease_owner) WHERE status = 'running';
-- Listing and search.
CREATE INDEX tasks_tenant_id ON tasks (tenant, id);
CREATE INDEX tasks_correlation ON tasks (tenant, correlation_id);
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_forked_from ON tasks (forked_from) WHERE forked_from IS NOT NULL;
CREATE INDEX tasks_fingerprint ON tasks (tenant, error_fingerprint) WHERE status = 'failed';

-- Terminal states are immutable: no transition ever leaves them.
CREATE FUNCTION tether_terminal_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tether: a task in a terminal state cannot change'
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER tasks_terminal_immutable BEFORE UPDATE ON tasks
    FOR EACH ROW WHEN (OLD.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION tether_terminal_immutable();

-- Wake-ups across processes: NOTIFY is transactional, so listeners hear of new work and
-- of task changes only once they are committed. Identical notifications of one
-- transaction are folded into one by PostgreSQL (a batch submit notifies each queue once).
CREATE FUNCTION tether_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'queued' THEN
        PERFORM pg_notify('tether_work', NEW.queue);
    ELSIF NEW.status = 'waiting' AND NEW.run_at IS NOT NULL
        AND NEW.run_at <= extract(epoch FROM clock_timestamp()) THEN
        PERFORM pg_notify('tether_work', NEW.queue);  -- a backoff that is already due
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.status IN ('waiting', 'succeeded', 'failed', 'cancelled') THEN
        PERFORM pg_notify('tether_task', NEW.id || ':' || NEW.status);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_notify_insert AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION tether_notify();
CREATE TRIGGER tasks_notify_update AFTER UPDATE OF status, run_at ON tasks
    FOR EACH ROW WHEN (NEW.status <> 'running' AND (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.run_at IS DISTINCT FROM NEW.run_at))
    EXECUTE FUNCTION tether_notify();

CREATE TABLE steps (
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 1,
    result      TEXT,
    error       TEXT,
    started_at  DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    wake_at     DOUBLE PRECISION,
    meta        TEXT,
    PRIMARY KEY (task_id, seq)
);

CREATE FUNCTION tether_steps_of_terminal_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT status FROM tasks WHERE id = NEW.task_id)
        IN ('succeeded', 'failed', 'cancelled') THEN
        RAISE EXCEPTION 'tether: the step log of a terminal task cannot change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER steps_of_terminal_task BEFORE INSERT ON steps
    FOR EACH ROW EXECUTE FUNCTION tether_steps_of_terminal_task();

CREATE TABLE events (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    task_id      TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    at           DOUBLE PRECISION NOT NULL,
    type         TEXT NOT NULL,
    prior_status TEXT,
    new_status   TEXT,
    attempt      INTEGER,
    worker       TEXT,
    step         TEXT,
    error_class  TEXT,
    decision     TEXT,
    data         TEXT
);
CREATE INDEX events_task ON events (task_id, id);
CREATE INDEX events_tenant ON events (tenant, id);

-- The audit log is append-only.
CREATE FUNCTION tether_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tether: events are append-only'
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION tether_events_append_only();

CREATE TABLE idempotency_keys (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, key)
);
-- Purge deletes keys by task.
CREATE INDEX idempotency_keys_task ON idempotency_keys (task_id);

CREATE TABLE signals (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    task_id      TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    payload      TEXT,
    created_at   DOUBLE PRECISION NOT NULL,
    consumed_seq INTEGER
);
CREATE INDEX signals_pending ON signals (task_id, name, id) WHERE consumed_seq IS NULL;
-- Foreign keys are not indexed by PostgreSQL itself; purge and cascades need these.
CREATE INDEX signals_task ON signals (task_id);

CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    tenant      TEXT NOT NULL,
    workflow    TEXT,
    seq         INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    risk        TEXT NOT NULL,
    request     TEXT NOT NULL,
    required    INTEGER NOT NULL,
    submitter   TEXT,
    decisions   TEXT NOT NULL DEFAULT '[]',
    resolution  TEXT,
    changes     TEXT,
    reason      TEXT,
    created_at  DOUBLE PRECISION NOT NULL,
    expires_at  DOUBLE PRECISION,
    on_timeout  TEXT NOT NULL DEFAULT 'reject',
    decided_at  DOUBLE PRECISION,
    UNIQUE (task_id, seq)
);
CREATE INDEX approvals_inbox ON approvals (tenant, status, created_at);
