-- Tether schema v12: the notification outbox and its events cursor (ADR 69), and the
-- receipts of inbound signed webhooks (deduplication by webhook-id). Mirrored in
-- store/postgres/migrations/0012_notifications_and_hooks.sql.

-- Where the notifier's fan-out stands in the events feed: every event with an id at or
-- below `position` has been looked at. One row per feed reader (`name`).
CREATE TABLE notify_cursors (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at REAL NOT NULL
);

-- One notification to send on one channel. `message` is the rendered text (JSON:
-- subject, text, link), never a channel's address or credentials: those stay in the
-- configuration and are looked up by `channel` when it is sent.
CREATE TABLE notifications (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    task_id     TEXT,
    event_id    INTEGER,
    trigger     TEXT NOT NULL,
    channel     TEXT NOT NULL,
    message     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    last_error  TEXT,
    created_at  REAL NOT NULL,
    sent_at     REAL,
    UNIQUE (event_id, channel)
);
CREATE INDEX notifications_due ON notifications (next_at) WHERE status = 'pending';
CREATE INDEX notifications_task ON notifications (task_id);

-- What an inbound webhook did, by (hook, webhook-id), until `expires_at`: a redelivery
-- of the same id answers with the same outcome instead of acting twice.
CREATE TABLE hook_receipts (
    hook        TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    action      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    signal_id   INTEGER,
    received_at REAL NOT NULL,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (hook, webhook_id)
);
CREATE INDEX hook_receipts_expiry ON hook_receipts (expires_at);
