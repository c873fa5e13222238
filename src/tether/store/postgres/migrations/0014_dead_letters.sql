-- Tether schema v14: the dead-letter queue (ADR 79). Mirrors
-- store/sqlite/migrations/0014_dead_letters.sql.

-- One row per (tenant, error fingerprint) with failed tasks: counters kept up to date
-- by the trigger below in the transaction that fails a task, whichever path fails it
-- (a run's completion, a batch, a lost worker), so listing groups never counts tasks.
-- `open_members` is the failed tasks not yet retried, dismissed or purged; `status` is
-- `open` while there are some, else how the last ones left.
CREATE TABLE dlq_groups (
    tenant          TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'retried', 'compensated', 'dismissed', 'expired')),
    failures        BIGINT NOT NULL,
    open_members    BIGINT NOT NULL,
    first_seen      DOUBLE PRECISION NOT NULL,
    last_seen       DOUBLE PRECISION NOT NULL,
    step            TEXT,
    error_type      TEXT NOT NULL,
    workflows       TEXT NOT NULL,
    example_task_id TEXT NOT NULL,
    example_error   TEXT NOT NULL,
    assignee        TEXT,
    note            TEXT,
    escalated_at    DOUBLE PRECISION,
    updated_at      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, fingerprint)
);
CREATE INDEX dlq_groups_recent ON dlq_groups (tenant, status, last_seen);
CREATE INDEX dlq_groups_quiet ON dlq_groups (updated_at) WHERE open_members <= 0;

-- Failures per group per UTC hour (`hour`: its first second), for the trend; kept a week
-- (the sweep that drops older hours scans the table: an index on `hour` alone would
-- tempt SQLite's planner away from the primary key when reading a page's trends).
CREATE TABLE dlq_hours (
    tenant      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    failures    BIGINT NOT NULL,
    PRIMARY KEY (tenant, fingerprint, hour)
);

-- Failed tasks that left their group's open members, and how (tasks are immutable once
-- ended, so the member's state lives here). Deleted with the task by retention.
CREATE TABLE dlq_resolved (
    task_id     TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resolution  TEXT NOT NULL CHECK (resolution IN ('retried', 'compensated', 'dismissed')),
    retried_as  TEXT,
    action_id   TEXT,
    at          DOUBLE PRECISION NOT NULL
);

-- The audit trail of the groups: every action, who, why, when, which tasks (JSON
-- lists). Outlives the tasks; purged with its group (`dlq_retention_days`).
CREATE TABLE dlq_actions (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('retry', 'compensate', 'escalate', 'dismiss', 'expire')),
    actor           TEXT NOT NULL,
    reason          TEXT,
    assignee        TEXT,
    task_ids        TEXT NOT NULL,
    created         TEXT NOT NULL,
    requested       TEXT,
    idempotency_key TEXT,
    at              DOUBLE PRECISION NOT NULL
);
CREATE INDEX dlq_actions_group ON dlq_actions (tenant, fingerprint, at);
CREATE UNIQUE INDEX dlq_actions_key ON dlq_actions (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- A group's members, newest first: the failed tasks of a tenant with a fingerprint.
DROP INDEX tasks_fingerprint;
CREATE INDEX tasks_dead_letters ON tasks (tenant, error_fingerprint, finished_at, id)
    WHERE status = 'failed';

CREATE FUNCTION tether_dead_letter() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    failed_at DOUBLE PRECISION := COALESCE(NEW.finished_at, NEW.updated_at);
    err JSONB := COALESCE(NEW.error, '{}')::jsonb;
BEGIN
    INSERT INTO dlq_groups (tenant, fingerprint, status, failures, open_members, first_seen,
        last_seen, step, error_type, workflows, example_task_id, example_error, updated_at)
    VALUES (NEW.tenant, NEW.error_fingerprint, 'open', 1, 1, failed_at, failed_at,
        err->>'step', COALESCE(err->>'type', ''), jsonb_build_array(NEW.workflow)::text,
        NEW.id, COALESCE(NEW.error, '{}'), failed_at)
    ON CONFLICT (tenant, fingerprint) DO UPDATE SET
        status = 'open',
        failures = dlq_groups.failures + 1,
        open_members = dlq_groups.open_members + 1,
        first_seen = LEAST(dlq_groups.first_seen, excluded.first_seen),
        last_seen = GREATEST(dlq_groups.last_seen, excluded.last_seen),
        example_task_id = CASE WHEN excluded.last_seen >= dlq_groups.last_seen
            THEN excluded.example_task_id ELSE dlq_groups.example_task_id END,
        example_error = CASE WHEN excluded.last_seen >= dlq_groups.last_seen
            THEN excluded.example_error ELSE dlq_groups.example_error END,
        workflows = CASE WHEN jsonb_array_length(dlq_groups.workflows::jsonb) >= 20
            OR dlq_groups.workflows::jsonb ? NEW.workflow
            THEN dlq_groups.workflows
            ELSE (dlq_groups.workflows::jsonb || to_jsonb(NEW.workflow))::text END,
        updated_at = GREATEST(dlq_groups.updated_at, excluded.updated_at);
    INSERT INTO dlq_hours (tenant, fingerprint, hour, failures)
    VALUES (NEW.tenant, NEW.error_fingerprint, floor(failed_at / 3600)::bigint * 3600, 1)
    ON CONFLICT (tenant, fingerprint, hour) DO UPDATE SET failures = dlq_hours.failures + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_dead_letter AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.status = 'failed' AND OLD.status <> 'failed'
                       AND NEW.error_fingerprint IS NOT NULL)
    EXECUTE FUNCTION tether_dead_letter();

-- The failed tasks already there: those re-run before count as retried.
INSERT INTO dlq_resolved (task_id, tenant, fingerprint, resolution, retried_as, at)
SELECT t.id, t.tenant, t.error_fingerprint, 'retried', MAX(f.id), MAX(f.created_at)
FROM tasks t JOIN tasks f ON f.forked_from = t.id
WHERE t.status = 'failed' AND t.error_fingerprint IS NOT NULL
GROUP BY t.id, t.tenant, t.error_fingerprint;

INSERT INTO dlq_groups (tenant, fingerprint, status, failures, open_members, first_seen,
    last_seen, step, error_type, workflows, example_task_id, example_error, updated_at)
SELECT g.tenant, g.fingerprint, CASE WHEN g.open_members > 0 THEN 'open' ELSE 'retried' END,
    g.failures, g.open_members, g.first_seen, g.last_seen,
    COALESCE(x.error, '{}')::jsonb->>'step', COALESCE(COALESCE(x.error, '{}')::jsonb->>'type', ''),
    g.workflows, x.id, COALESCE(x.error, '{}'), g.last_seen
FROM (
    SELECT t.tenant, t.error_fingerprint AS fingerprint, COUNT(*) AS failures,
        COUNT(*) FILTER (WHERE r.task_id IS NULL) AS open_members,
        MIN(COALESCE(t.finished_at, t.updated_at)) AS first_seen,
        MAX(COALESCE(t.finished_at, t.updated_at)) AS last_seen,
        jsonb_agg(DISTINCT t.workflow)::text AS workflows,
        MAX(t.id) AS latest
    FROM tasks t LEFT JOIN dlq_resolved r ON r.task_id = t.id
    WHERE t.status = 'failed' AND t.error_fingerprint IS NOT NULL
    GROUP BY t.tenant, t.error_fingerprint
) g JOIN tasks x ON x.id = g.latest;

INSERT INTO dlq_hours (tenant, fingerprint, hour, failures)
SELECT tenant, error_fingerprint,
    floor(COALESCE(finished_at, updated_at) / 3600)::bigint * 3600, COUNT(*)
FROM tasks
WHERE status = 'failed' AND error_fingerprint IS NOT NULL
    AND COALESCE(finished_at, updated_at) >= EXTRACT(EPOCH FROM now()) - 8 * 86400
GROUP BY 1, 2, 3;
