-- Event ids are allocated before commit, so on PostgreSQL id order is not commit order.
-- Each event records the id of the transaction that wrote it; readers only return events
-- whose transaction is older than every transaction still running (ADR 13), so a reader
-- tailing by id never moves its cursor past an event that has yet to appear.
ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
