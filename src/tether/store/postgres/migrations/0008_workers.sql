-- Worker presence (ADR 64): each worker records itself, what it claims and when it was
-- last seen, so a task queued for a (workflow, version) no live worker claims can be
-- told apart from one that merely waits its turn. Mirrors the SQLite 0008.
CREATE TABLE workers (
    id          TEXT PRIMARY KEY,
    queues      TEXT NOT NULL,
    workflows   TEXT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    seen_at     DOUBLE PRECISION NOT NULL
);
