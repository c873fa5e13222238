-- Tether schema v21: budgets in money and tokens, and the spend ledger (ADR 92).
-- Mirrors store/postgres/migrations/0021_spend_budgets.sql.

-- A task's own spend limit (`spend_budget=`): the JSON of a `Budget`, NULL for none.
ALTER TABLE tasks ADD COLUMN spend_budget TEXT;

-- The ledger: one line per task (day ''), per tenant and UTC day (subject ''), and per
-- tenant's workflow and UTC day. Money is in nano-dollars (integers: sums are exact).
-- `limit_*` is the configured limit last applied (NULL: none); `granted_*` a higher one
-- an approval granted for this line. Reservations are in `reserved_*` until settled.
CREATE TABLE spend_lines (
    tenant          TEXT NOT NULL,
    scope           TEXT NOT NULL CHECK (scope IN ('task', 'tenant', 'workflow')),
    subject         TEXT NOT NULL,
    day             TEXT NOT NULL,
    spent_nusd      INTEGER NOT NULL DEFAULT 0,
    spent_tokens    INTEGER NOT NULL DEFAULT 0,
    reserved_nusd   INTEGER NOT NULL DEFAULT 0,
    reserved_tokens INTEGER NOT NULL DEFAULT 0,
    limit_nusd      INTEGER,
    limit_tokens    INTEGER,
    granted_nusd    INTEGER,
    granted_tokens  INTEGER,
    approval_id     TEXT,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (tenant, scope, subject, day)
);
CREATE INDEX spend_lines_day ON spend_lines (tenant, day) WHERE scope <> 'task';

-- What a running step reserved from its estimate, on its task's line and the day lines
-- of `day`, until it settles; one per (task, step). A reservation whose task is no
-- longer running at `attempt` (its worker died, it was suspended) is released by the
-- next reservation that finds the budget short.
CREATE TABLE spend_reservations (
    task_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    tenant      TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    day         TEXT NOT NULL,
    nusd        INTEGER NOT NULL,
    tokens      INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (task_id, seq)
);
CREATE INDEX spend_reservations_day ON spend_reservations (tenant, day);

-- Tasks waiting (reason `budget`) for a line's limit to be raised: an approval's
-- decision wakes them, and marks them `poked` so that a task still suspending is queued
-- again at once instead of missing it.
CREATE TABLE spend_waiters (
    task_id  TEXT NOT NULL,
    tenant   TEXT NOT NULL,
    scope    TEXT NOT NULL,
    subject  TEXT NOT NULL,
    day      TEXT NOT NULL,
    poked    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, scope, subject, day)
);
CREATE INDEX spend_waiters_line ON spend_waiters (tenant, scope, subject, day);
