-- Tether schema v17: workflow rollouts (ADR 84). Mirrors
-- store/postgres/migrations/0017_rollouts.sql.

-- Which version new tasks of `workflow` start on, for `tenant` ('*': every tenant
-- without a row of its own): `stable` (NULL: the newest registered but the canary),
-- and `canary` for a `share` of them, chosen by task id.
CREATE TABLE workflow_rollouts (
    tenant      TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    stable      INTEGER,
    canary      INTEGER,
    share       REAL NOT NULL DEFAULT 0 CHECK (share >= 0 AND share <= 1),
    started_at  REAL,
    updated_by  TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (tenant, workflow)
);

