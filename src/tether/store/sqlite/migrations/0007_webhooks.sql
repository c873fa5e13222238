-- Tether schema v7: webhook subscriptions, the delivery outbox, and the fan-out cursor
-- (docs/webhooks.md, ADR 67). Signing secrets are stored as given: HMAC needs them.
CREATE TABLE webhook_subscriptions (
    id                    TEXT PRIMARY KEY,
    tenant                TEXT NOT NULL,
    url                   TEXT NOT NULL,
    event_types           TEXT NOT NULL,
    workflows             TEXT,
    task_id               TEXT,
    description           TEXT,
    status                TEXT NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'disabled')),
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until REAL,
    disabled_reason       TEXT,
    disabled_at           REAL,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    created_at            REAL NOT NULL,
    updated_at            REAL NOT NULL,
    created_by            TEXT
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant, status)
    WHERE task_id IS NULL;
CREATE INDEX webhook_subscriptions_task ON webhook_subscriptions (task_id)
    WHERE task_id IS NOT NULL;

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    subscription_id  TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    event_id         INTEGER NOT NULL,
    task_id          TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    lease_owner      TEXT,
    lease_expires_at REAL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    delivered_at     REAL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_expires_at)
    WHERE status = 'delivering';
-- Per-task order: a delivery waits while an older one of its (subscription, task) is open.
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (subscription_id, task_id, event_id)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, id);
CREATE INDEX webhook_deliveries_task ON webhook_deliveries (task_id);

-- How far the fan-out has read the events feed. It starts at the present: a new
-- subscription gets events from its creation on (replay backfills).
CREATE TABLE webhook_cursor (
    name  TEXT PRIMARY KEY,
    after INTEGER NOT NULL
);
INSERT INTO webhook_cursor (name, after) SELECT 'fanout', COALESCE(MAX(id), 0) FROM events;
