-- Tether schema v16: a task's phase (ADR 83). Mirrors
-- store/postgres/migrations/0016_task_phase.sql.

-- `execution` while the workflow runs; `compensation` once a saga's compensations undo
-- its completed steps (set by the run's `compensating` step record, by a cancellation
-- that asks for compensation, or on the fork an operator's compensate creates).
ALTER TABLE tasks ADD COLUMN phase TEXT NOT NULL DEFAULT 'execution'
    CHECK (phase IN ('execution', 'compensation'));
