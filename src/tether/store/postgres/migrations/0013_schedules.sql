-- Tether schema v13: cron schedules (ADR 77). Mirrors
-- store/sqlite/migrations/0013_schedules.sql.

-- A tenant's schedule `name`: start `workflow` with `input` (JSON text) at each tick
-- of `cron` in the time zone `timezone`. `next_at` is the next tick to fire (NULL
-- while paused); a firing moves it on and bumps `revision` in the transaction that
-- creates the tick's task, and applies only to the revision it read, so two schedulers
-- racing on one tick create one task (the tick is also the task's idempotency key).
CREATE TABLE schedules (
    tenant       TEXT NOT NULL,
    name         TEXT NOT NULL,
    workflow     TEXT NOT NULL,
    input        TEXT NOT NULL,
    cron         TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    missed       TEXT NOT NULL CHECK (missed IN ('skip', 'once', 'all')),
    max_missed   INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'paused')),
    next_at      DOUBLE PRECISION,
    origin       TEXT NOT NULL CHECK (origin IN ('api', 'code')),
    last_tick_at DOUBLE PRECISION,
    last_task_id TEXT,
    last_error   TEXT,
    revision     BIGINT NOT NULL DEFAULT 0,
    created_by   TEXT,
    created_at   DOUBLE PRECISION NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE next_at IS NOT NULL;
