-- Tether schema v20: circuit breakers and step limits, the state of two step gates
-- (ADR 91). Mirrors store/sqlite/migrations/0020_breakers_and_step_limits.sql.

-- One row per breaker: the fleet's ('*') or a tenant's, of an integration. Its row is
-- also the lock every change of it takes (on PostgreSQL).
CREATE TABLE breakers (
    tenant          TEXT NOT NULL,
    integration     TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'closed'
        CHECK (state IN ('closed', 'open', 'half_open')),
    manual          INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    window_start    DOUBLE PRECISION,
    window_calls    INTEGER NOT NULL DEFAULT 0,
    window_failures INTEGER NOT NULL DEFAULT 0,
    prev_calls      INTEGER NOT NULL DEFAULT 0,
    prev_failures   INTEGER NOT NULL DEFAULT 0,
    opened_at       DOUBLE PRECISION,
    open_until      DOUBLE PRECISION,
    opens           INTEGER NOT NULL DEFAULT 0,
    reason          TEXT,
    updated_by      TEXT,
    updated_at      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, integration)
);

-- One row per limited integration: the limit the workers use, and the lock every
-- acquisition and release of its slots takes (on PostgreSQL).
CREATE TABLE step_limits (
    integration TEXT PRIMARY KEY,
    max_running INTEGER NOT NULL CHECK (max_running >= 1),
    updated_at  DOUBLE PRECISION NOT NULL
);

-- Who holds a slot of a gate: a step limit's running steps (gate 'limit'), a half-open
-- breaker's probes (gate 'breaker'). A slot is held by (task, step) while that task
-- runs with `attempt` and its lease is live, or, handed to a woken waiter
-- (`attempt` NULL), until `reserved_until`: a holder whose worker died loses it with
-- its task's lease. Dead rows are swept by the next acquisition.
CREATE TABLE gate_slots (
    gate           TEXT NOT NULL,
    scope          TEXT NOT NULL,
    name           TEXT NOT NULL,
    task_id        TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL,
    attempt        INTEGER,
    reserved_until DOUBLE PRECISION,
    since          DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (gate, scope, name, task_id, seq)
);

-- Steps waiting at a gate, oldest first: a freed slot is handed to the oldest, a closed
-- breaker wakes them all. `woken` marks one that was woken (if its task was still
-- running, its suspension re-queues it at once: the wake-up is not lost).
CREATE TABLE gate_waiters (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    gate    TEXT NOT NULL,
    scope   TEXT NOT NULL,
    name    TEXT NOT NULL,
    since   DOUBLE PRECISION NOT NULL,
    woken   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, seq, gate, scope, name)
);
CREATE INDEX gate_waiters_line ON gate_waiters (gate, scope, name, since) WHERE woken = 0;
