-- Nothing changes on SQLite: migration 6 changes PostgreSQL's task-change NOTIFY
-- (SQLite has no NOTIFY; other processes' commits are seen through `data_version`).
-- The number is kept so that both backends stay at the same schema version.
SELECT 1;
