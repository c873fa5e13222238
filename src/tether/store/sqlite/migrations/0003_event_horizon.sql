-- Nothing to do on SQLite: writers are serialized, so event ids appear in commit order.
-- (PostgreSQL's 0003 adds events.txid for its commit horizon; versions stay in step.)
SELECT 1;
