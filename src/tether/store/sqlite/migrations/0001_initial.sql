-- Tether schema v1 (SQLite). Times are seconds since the epoch (REAL).
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
    run_at            REAL,
    lease_owner       TEXT,
    lease_expires_at  REAL,
    deadline          REAL,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    forked_from       TEXT,
    fork_from_seq     INTEGER,
    steps_done        INTEGER NOT NULL DEFAULT 0,
    current_step      TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    started_at        REAL,
    finished_at       REAL
);
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
CREATE TRIGGER tasks_terminal_immutable BEFORE UPDATE ON tasks
WHEN OLD.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    SELECT RAISE(ABORT, 'tether: a task in a terminal state cannot change');
END;

CREATE TABLE steps (
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 1,
    result      TEXT,
    error       TEXT,
    started_at  REAL,
    finished_at REAL,
    wake_at     REAL,
    meta        TEXT,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;

CREATE TRIGGER steps_of_terminal_task BEFORE INSERT ON steps
WHEN (SELECT status FROM tasks WHERE id = NEW.task_id) IN ('succeeded', 'failed', 'cancelled')
BEGIN
    SELECT RAISE(ABORT, 'tether: the step log of a terminal task cannot change');
END;

CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id      TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    at           REAL NOT NULL,
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
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'tether: events are append-only');
END;

CREATE TABLE idempotency_keys (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;

CREATE TABLE signals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id      TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    payload      TEXT,
    created_at   REAL NOT NULL,
    consumed_seq INTEGER
);
CREATE INDEX signals_pending ON signals (task_id, name, id) WHERE consumed_seq IS NULL;

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
    created_at  REAL NOT NULL,
    expires_at  REAL,
    on_timeout  TEXT NOT NULL DEFAULT 'reject',
    decided_at  REAL,
    UNIQUE (task_id, seq)
);
CREATE INDEX approvals_inbox ON approvals (tenant, status, created_at);
