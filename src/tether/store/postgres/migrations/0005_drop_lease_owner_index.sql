-- `tasks_lease_owner` served only the heartbeat, which names its tasks by id (the
-- primary key finds them); every claim and every completion paid to maintain it.
DROP INDEX IF EXISTS tasks_lease_owner;
