-- Tether schema v15: child workflows (ADR 82). Mirrored in
-- store/sqlite/migrations/0015_child_workflows.sql.

-- A child task remembers its parent, the parent's call site (`parent_seq`: the step-log
-- position of the `ctx.start_child` that started it, where the parent records its
-- outcome) and what happens to it when the parent ends first (`parent_policy`:
-- `cancel` it, or `abandon` it to run on). All NULL for a task that is not a child.
ALTER TABLE tasks ADD COLUMN parent_id TEXT;
ALTER TABLE tasks ADD COLUMN parent_seq INTEGER;
ALTER TABLE tasks ADD COLUMN parent_policy TEXT CHECK (parent_policy IN ('cancel', 'abandon'));
CREATE INDEX tasks_parent ON tasks (parent_id, parent_seq) WHERE parent_id IS NOT NULL;
